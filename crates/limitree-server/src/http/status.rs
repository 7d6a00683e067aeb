//! `GET /v1/status`: everything the status page shows, as JSON — the trees
//! and levels with their limits and denial counts, the busiest buckets of
//! each level, recent denials, the relay's queues, dead letters and pending
//! digests, the store's health, and when the policy was loaded. The page
//! (`GET /`, [`super::page`]) renders the same [`Status`], and its script
//! polls this endpoint to refresh itself.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use limitree::{Clock, Micros, Policy};
use serde::Serialize;

use super::AppState;
use super::buckets::{BucketView, busiest};
use super::policy::LevelView;
use crate::denials::Denials;

/// Buckets shown per level.
pub const BUCKETS_PER_LEVEL: usize = 5;

/// What the status endpoints need besides the limiter and the relay.
#[derive(Debug, Clone)]
pub struct StatusState {
    /// Recent denials, fed by every API that decides.
    pub denials: Arc<Denials>,
    /// When the policy in force was loaded (the limiter's clock).
    pub loaded_at: Micros,
    /// The limiter's clock: "now" on the page.
    pub clock: Arc<dyn Clock>,
}

impl StatusState {
    /// For `policy`, loaded now by `clock`.
    pub fn new(policy: &Policy, clock: Arc<dyn Clock>) -> StatusState {
        StatusState {
            denials: Arc::new(Denials::new(policy, Arc::clone(&clock))),
            loaded_at: clock.now(),
            clock,
        }
    }
}

/// The reply.
#[derive(Debug, Serialize)]
pub struct Status {
    /// When this was put together (ms since the epoch).
    pub generated_at_ms: u64,
    /// The store's health (what `/readyz` says).
    pub store: StoreStatus,
    /// The policy in force.
    pub policy: PolicyStatus,
    /// Every tree and level, with usage.
    pub trees: Vec<TreeStatus>,
    /// The last denials, newest first.
    pub denials: Vec<DenialView>,
    /// The Slack relay.
    pub relay: RelayStatus,
}

/// The store's health.
#[derive(Debug, Serialize)]
pub struct StoreStatus {
    /// `memory` or `redis`.
    pub kind: &'static str,
    /// It can decide now.
    pub ready: bool,
    /// Why not, when not.
    pub detail: Option<String>,
}

/// The policy in force.
#[derive(Debug, Serialize)]
pub struct PolicyStatus {
    /// When it was loaded (ms since the epoch): at start-up.
    pub loaded_at_ms: u64,
    /// How the policy was loaded.
    pub note: &'static str,
}

/// One tree.
#[derive(Debug, Serialize)]
pub struct TreeStatus {
    /// Its name.
    pub name: String,
    /// `native` or `envoy`.
    pub kind: &'static str,
    /// Root first.
    pub levels: Vec<LevelUsage>,
}

/// One level with its usage.
#[derive(Debug, Serialize)]
pub struct LevelUsage {
    /// The level as `GET /v1/policy` shows it.
    #[serde(flatten)]
    pub level: LevelView,
    /// Requests this level denied since start.
    pub denied: u64,
    /// Its busiest buckets (at most [`BUCKETS_PER_LEVEL`]), busiest first.
    pub buckets: Vec<BucketView>,
    /// Buckets looked at.
    pub scanned: usize,
    /// The scan stopped early (see `GET /v1/buckets`).
    pub truncated: bool,
    /// Why the buckets could not be read, if they could not.
    pub error: Option<String>,
}

/// One recent denial.
#[derive(Debug, Serialize)]
pub struct DenialView {
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// `check`, `notify` or `rls` (gRPC or `POST /json`).
    pub source: &'static str,
    /// The tree.
    pub tree: String,
    /// `limited` or `insufficient_capacity`.
    pub reason: &'static str,
    /// The levels that denied, with their buckets.
    pub levels: Vec<DeniedLevel>,
}

/// A level that denied.
#[derive(Debug, Serialize)]
pub struct DeniedLevel {
    /// The level.
    pub level: String,
    /// Its bucket (names longer than 128 bytes cut, ending in `…`).
    pub bucket: String,
}

/// The Slack relay.
#[derive(Debug, Serialize)]
pub struct RelayStatus {
    /// Notifications admitted and queued since start.
    pub accepted: u64,
    /// Suppressed by the limiter.
    pub limited: u64,
    /// Refused: a full queue.
    pub queue_full: u64,
    /// Refused: no route.
    pub no_route: u64,
    /// Categories with suppressed notifications waiting for a digest.
    pub pending_digests: usize,
    /// One per webhook (none when no route is configured).
    pub webhooks: Vec<WebhookStatus>,
}

/// One webhook's queue and deliveries.
#[derive(Debug, Serialize)]
pub struct WebhookStatus {
    /// `default` or `routes.<category>` (never the URL).
    pub webhook: String,
    /// Notifications waiting now.
    pub queue_depth: u64,
    /// `[notify] queue_capacity`.
    pub queue_capacity: usize,
    /// Delivered (Slack answered 2xx).
    pub delivered: u64,
    /// Answers 429 (then retried).
    pub rate_limited: u64,
    /// 5xx, timeouts, connection errors (then retried).
    pub failed: u64,
    /// Given up and kept as dead letters.
    pub dead_lettered: u64,
}

fn millis(at: Micros) -> u64 {
    at / 1000
}

/// Puts the status together (store health and every level's buckets are
/// read now; each listing is bounded as `GET /v1/buckets`'s is).
pub async fn collect(state: &AppState) -> Status {
    let snapshot = state.limiter.snapshot();
    let limiter = &*snapshot;
    let store = limiter.store();
    let ready = store.check_ready().await;
    let mut trees = Vec::new();
    for tree in limiter.policy().trees() {
        let mut levels = Vec::new();
        for (i, level) in tree.levels.iter().enumerate() {
            let found = busiest(limiter, tree, i, None, BUCKETS_PER_LEVEL).await;
            let (buckets, scanned, truncated, error) = match found {
                Ok(list) => (list.buckets, list.scanned, list.truncated, None),
                Err(e) => (Vec::new(), 0, false, Some(e.to_string())),
            };
            levels.push(LevelUsage {
                level: LevelView::new(level),
                denied: state.status.denials.count(&tree.name, &level.name),
                buckets,
                scanned,
                truncated,
                error,
            });
        }
        trees.push(TreeStatus {
            name: tree.name.clone(),
            kind: if tree.envoy().is_some() {
                "envoy"
            } else {
                "native"
            },
            levels,
        });
    }
    let relay = state.notify.metrics();
    let capacity = state.notify.settings().queue_capacity;
    Status {
        generated_at_ms: millis(state.status.clock.now()),
        store: StoreStatus {
            kind: store.kind(),
            ready: ready.is_ok(),
            detail: ready.err().map(|e| e.to_string()),
        },
        policy: PolicyStatus {
            loaded_at_ms: millis(state.status.loaded_at),
            note: "loaded at start-up; this server does not reload its policy yet",
        },
        trees,
        denials: state
            .status
            .denials
            .recent()
            .into_iter()
            .map(|d| DenialView {
                at_ms: millis(d.at),
                source: d.source.as_str(),
                tree: d.tree,
                reason: d.reason.as_str(),
                levels: d
                    .levels
                    .into_iter()
                    .map(|(level, bucket)| DeniedLevel { level, bucket })
                    .collect(),
            })
            .collect(),
        relay: RelayStatus {
            accepted: relay.requests.accepted,
            limited: relay.requests.limited,
            queue_full: relay.requests.queue_full,
            no_route: relay.requests.no_route,
            pending_digests: state.notify.pending_digests(),
            webhooks: relay
                .webhooks
                .into_iter()
                .map(|w| WebhookStatus {
                    webhook: w.webhook,
                    queue_depth: w.queue_depth,
                    queue_capacity: capacity,
                    delivered: w.deliveries.delivered,
                    rate_limited: w.deliveries.rate_limited,
                    failed: w.deliveries.failed,
                    dead_lettered: w.deliveries.dead_lettered,
                })
                .collect(),
        },
    }
}

/// `GET /v1/status`.
pub async fn status(State(state): State<AppState>) -> Json<Status> {
    Json(collect(&state).await)
}

/// A duration in ms as the page writes it: rounded up to the second from a
/// second on (`30m`, `1m 30s`, `250ms`).
pub fn duration_text(ms: u64) -> String {
    let ms = if ms >= 1000 {
        ms.div_ceil(1000) * 1000
    } else {
        ms
    };
    limitree::policy::format_duration(ms.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_config_durations() {
        assert_eq!(super::duration_text(1_800_000), "30m");
        assert_eq!(super::duration_text(250), "250ms");
        assert_eq!(super::duration_text(1_799_001), "30m");
    }
}
