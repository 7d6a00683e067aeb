//! The relay handle ([`Relay`]) and the state its parts share (`Shared`).
//!
//! Submit (`submit.rs`), start-up (`start.rs`) and the digest loop
//! (`digest_loop.rs`) work on `Shared`; the delivery workers do not: each
//! gets its own narrow `deliver::Worker` at start. Nothing here imports those
//! modules, so the dependencies run one way.

use std::sync::{Arc, OnceLock};

use limitree::{Clock, Limiter};
use parking_lot::Mutex;

use super::config::NotifyConfig;
use super::digest::Digests;
use super::metrics::{Counters, Snapshot, WebhookCounters, WebhookSnapshot};
use super::outbox::Outbox;
use super::queue::Queue;
use super::route::Routes;
use crate::lock::DirLock;

/// Where the relay keeps what it accepted; chosen before
/// [`Relay::start`] with [`Relay::use_outbox`].
#[derive(Debug, Clone, Default)]
pub enum OutboxSource {
    /// A journal in `[notify] data_dir`, locked against a second server (the
    /// default; what the memory store uses).
    #[default]
    DataDir,
    /// A Redis stream under `{<key_prefix>:notify}`: what the server uses with
    /// the Redis store, so the instances sharing limits also share what they
    /// accepted. Connecting is retried in the background at start.
    #[cfg(feature = "redis")]
    Redis(super::redis_outbox::RedisOutboxConfig),
    /// An outbox already opened (another kind of outbox, or a test's).
    Given(Arc<dyn Outbox>),
}

/// The relay. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Relay {
    pub(super) shared: Arc<Shared>,
}

/// What submit, start-up and the digest loop share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) settings: NotifyConfig,
    pub(super) routes: Routes,
    pub(super) limiter: Limiter,
    /// The limiter's clock: digests compare its times with `retry_after`.
    pub(super) clock: Arc<dyn Clock>,
    /// One client for every webhook (connection reuse); handed to the workers.
    pub(super) client: reqwest::Client,
    /// One per webhook, in [`Routes::webhooks`] order.
    pub(super) queues: Vec<Arc<Queue>>,
    /// One per webhook, in [`Routes::webhooks`] order; each worker gets its own.
    pub(super) webhook_counters: Vec<Arc<WebhookCounters>>,
    pub(super) counters: Counters,
    /// Shared with the workers, which say when a queued digest is finished.
    pub(super) digests: Arc<Digests>,
    /// Chosen by [`Relay::use_outbox`]; read once, by [`Relay::start`].
    pub(super) source: Mutex<OutboxSource>,
    /// Set at start once the outbox is open: until then nothing is accepted
    /// (nothing could be persisted), and only when a route exists.
    pub(super) outbox: OnceLock<Arc<dyn Outbox>>,
    /// The lock on `[notify] data_dir`, held while the relay lives.
    pub(super) dir_lock: OnceLock<DirLock>,
}

impl Relay {
    /// A relay over `limiter`, routing by `config` with webhook URLs expanded
    /// from `env`. Nothing is opened or started yet.
    pub fn new(
        config: &NotifyConfig,
        limiter: Limiter,
        clock: Arc<dyn Clock>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Relay {
        let routes = Routes::resolve(config, env);
        let webhooks = routes.webhooks().len();
        Relay {
            shared: Arc::new(Shared {
                settings: config.clone(),
                queues: (0..webhooks)
                    .map(|_| Arc::new(Queue::new(config.queue_capacity)))
                    .collect(),
                webhook_counters: (0..webhooks).map(|_| Arc::default()).collect(),
                routes,
                limiter,
                clock,
                // Timeouts are per request (`[notify] timeout`); no redirects:
                // a webhook answers, it does not send us elsewhere.
                client: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap_or_default(),
                counters: Counters::default(),
                digests: Arc::new(Digests::new(config.digest_samples)),
                source: Mutex::default(),
                outbox: OnceLock::new(),
                dir_lock: OnceLock::new(),
            }),
        }
    }

    /// Chooses where the outbox lives (default: [`OutboxSource::DataDir`]);
    /// the last choice before [`Relay::start`] counts. Once started the relay
    /// keeps its outbox (a second start is refused), so a later call changes
    /// nothing.
    pub fn use_outbox(&self, source: OutboxSource) {
        *self.shared.source.lock() = source;
    }

    /// The `[notify]` settings.
    pub fn settings(&self) -> &NotifyConfig {
        &self.shared.settings
    }

    /// The routes.
    pub fn routes(&self) -> &Routes {
        &self.shared.routes
    }

    /// Tallies waiting for a digest.
    pub fn pending_digests(&self) -> usize {
        self.shared.digests.pending()
    }

    /// Per webhook (label, in route order), its delivery latency histogram:
    /// a handle onto the one its worker records into.
    pub fn delivery_latencies(
        &self,
    ) -> Vec<(String, prometheus_client::metrics::histogram::Histogram)> {
        let shared = &self.shared;
        shared
            .routes
            .webhooks()
            .iter()
            .zip(&shared.webhook_counters)
            .map(|(webhook, counters)| {
                (
                    webhook.label().to_owned(),
                    counters.delivery_latency.clone(),
                )
            })
            .collect()
    }

    /// The counters now, as plain values (per webhook in route order).
    pub fn metrics(&self) -> Snapshot {
        let shared = &self.shared;
        Snapshot {
            requests: shared.counters.requests(),
            digests: shared.counters.digests(),
            webhooks: shared
                .routes
                .webhooks()
                .iter()
                .zip(&shared.webhook_counters)
                .zip(&shared.queues)
                .map(|((webhook, counters), queue)| WebhookSnapshot {
                    webhook: webhook.label().to_owned(),
                    deliveries: counters.deliveries(),
                    queue_depth: queue.len() as u64,
                })
                .collect(),
        }
    }
}
