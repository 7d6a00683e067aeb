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
    /// The limiter's clock: "now" on the page.
    pub clock: Arc<dyn Clock>,
}

impl StatusState {
    /// For `policy`, on `clock`. (When the policy was loaded, and the last
    /// reload, come from [`crate::reload::Reloader::status`].)
    pub fn new(policy: &Policy, clock: Arc<dyn Clock>) -> StatusState {
        StatusState {
            denials: Arc::new(Denials::new(policy, Arc::clone(&clock))),
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

/// The policy in force, and the last reload.
#[derive(Debug, Serialize)]
pub struct PolicyStatus {
    /// When it was loaded (ms since the epoch): at start-up or its reload.
    pub loaded_at_ms: u64,
    /// Its hash (as `limitree_policy_info{hash}` says).
    pub hash: String,
    /// Since when the running policy is stale (the config file has an
    /// invalid change it refused), ms since the epoch; `null` when not.
    pub stale_since_ms: Option<u64>,
    /// The last reload attempt, if any.
    pub last_reload: Option<ReloadView>,
    /// One line on the above, for people.
    pub note: String,
}

/// One reload attempt as the status shows it.
#[derive(Debug, Serialize)]
pub struct ReloadView {
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// `SIGHUP`, `file change` or `POST /v1/reload`.
    pub trigger: String,
    /// `ok` or `error`.
    pub result: &'static str,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

impl PolicyStatus {
    fn new(reload: crate::reload::ReloadStatus) -> PolicyStatus {
        let last_reload = reload.last_attempt.map(|a| ReloadView {
            at_ms: a.at_ms,
            trigger: a.trigger,
            result: if a.error.is_some() { "error" } else { "ok" },
            error: a.error,
        });
        let note = match (&last_reload, reload.stale_since_ms) {
            (None, _) => "not reloaded since start-up".to_owned(),
            (Some(r), Some(_)) => format!(
                "stale: the last reload ({}) was refused, the previous policy keeps serving",
                r.trigger
            ),
            (Some(r), None) => format!("last reload ({}): {}", r.trigger, r.result),
        };
        PolicyStatus {
            loaded_at_ms: reload.loaded_at_ms,
            hash: reload.policy_hash,
            stale_since_ms: reload.stale_since_ms,
            last_reload,
            note,
        }
    }
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
        policy: PolicyStatus::new(state.reload.status()),
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

/// A bucket's last admission as the page writes it: `4s ago` (rounded
/// down to the second from a second on: it did happen at least that long
/// ago), `—` when the store cannot tell.
pub fn ago_text(ms: Option<u64>) -> String {
    match ms {
        None => "—".to_owned(),
        Some(ms) => {
            let ms = if ms >= 1000 { ms / 1000 * 1000 } else { ms };
            format!(
                "{} ago",
                limitree::policy::format_duration(ms.saturating_mul(1000))
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_config_durations() {
        assert_eq!(super::duration_text(1_800_000), "30m");
        assert_eq!(super::duration_text(250), "250ms");
        assert_eq!(super::duration_text(1_799_001), "30m");
    }

    #[test]
    fn last_admissions_round_down() {
        assert_eq!(super::ago_text(Some(0)), "0s ago");
        assert_eq!(super::ago_text(Some(250)), "250ms ago");
        assert_eq!(super::ago_text(Some(61_999)), "1m 1s ago");
        assert_eq!(super::ago_text(None), "—");
    }
}
