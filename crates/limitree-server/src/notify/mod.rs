//! The Slack relay: `POST /v1/notify` → the limiter → an outbox → a paced
//! worker per webhook → Slack.
//!
//! A notification's path through the modules:
//! - [`route`]: its category picks a [`route::Webhook`] (URLs expanded from the
//!   environment and never shown);
//! - [`Relay::submit`]: a place is reserved in the webhook's [`queue`], the
//!   limiter decides (`{"category": C}`, cost 1), and an admitted notification
//!   is written to the [`outbox`] before the 202; a suppressed one is tallied
//!   for a [`digest`];
//! - [`deliver`]: the webhook's worker sends it, paced, retrying 429s and
//!   transient failures, dead-lettering what Slack refuses, and marks it done.
//!
//! Every worker and the digest loop run in the server's `TaskTracker`; after the
//! shutdown signal they keep delivering for `[notify] drain`, and whatever is
//! left stays in the outbox and is sent on the next start.

pub mod config;
pub mod deliver;
pub mod digest;
pub mod outbox;
pub mod queue;
#[cfg(feature = "redis")]
pub mod redis_outbox;
pub mod route;
pub mod tally;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use limitree::{CheckError, CheckRequest, Clock, Decision, Limiter};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use self::config::NotifyConfig;
use self::digest::Digests;
use self::outbox::{FileOutbox, Kind, Notification, Outbox, OutboxError};
use self::queue::Queue;
use self::route::{NoRoute, Routes};
use crate::lock::{DirLock, LockError};

/// A notification as posted: what the handler validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// The tree, when named (else `[notify] tree`, else the only tree).
    pub tree: Option<String>,
    /// The category: the descriptor the limiter decides on, and the route.
    pub category: String,
    /// The Slack body: `text`, and `blocks` / `attachments` as given.
    pub payload: serde_json::Value,
}

/// What became of a submission.
#[derive(Debug)]
pub enum Submitted {
    /// Admitted, persisted and queued.
    Accepted {
        /// The notification's id.
        id: String,
        /// The limiter's decision.
        decision: Decision,
    },
    /// Denied by the limiter; tallied for the category's digest.
    Suppressed(Decision),
}

/// Why a submission was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// No usable webhook for the category.
    #[error(transparent)]
    NoRoute(#[from] NoRoute),
    /// The webhook's queue is full.
    #[error(
        "the queue of webhook `{webhook}` is full ({capacity} notifications waiting); retry later"
    )]
    QueueFull {
        /// The webhook's label.
        webhook: String,
        /// `[notify] queue_capacity`.
        capacity: usize,
    },
    /// The limiter could not decide.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// The outbox could not record it.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The relay's outbox is not open (the server has not started it).
    #[error("the notification relay is not running")]
    NotStarted,
}

/// Counts of every outcome, per webhook where it has one. Rendered by
/// `GET /metrics`; labels are webhook labels, never URLs, and never
/// categories (a client could invent unboundedly many).
#[derive(Debug, Default)]
pub struct Counters {
    /// Admitted and queued.
    pub accepted: AtomicU64,
    /// Denied by the limiter.
    pub suppressed: AtomicU64,
    /// Refused: queue full.
    pub queue_full: AtomicU64,
    /// Refused: no route.
    pub no_route: AtomicU64,
    /// Digests queued.
    pub digests: AtomicU64,
}

/// Per-webhook delivery outcomes.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    /// Slack answered 2xx.
    pub delivered: AtomicU64,
    /// Slack answered 429 (then waited `Retry-After` and retried).
    pub rate_limited: AtomicU64,
    /// A 5xx, timeout or connection error (then retried, or dead-lettered when out of attempts).
    pub failed: AtomicU64,
    /// Given up: kept in `dead-letters.jsonl`.
    pub dead_lettered: AtomicU64,
}

/// The relay. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Relay {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) settings: NotifyConfig,
    pub(crate) routes: Routes,
    pub(crate) limiter: Limiter,
    /// The limiter's clock: digests compare its times with `retry_after`.
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) client: reqwest::Client,
    /// One per webhook, in [`Routes::webhooks`] order.
    pub(crate) queues: Vec<Arc<Queue>>,
    pub(crate) webhook_counters: Vec<WebhookCounters>,
    pub(crate) counters: Counters,
    pub(crate) digests: Digests,
    /// Set by [`Relay::start`]; the outbox is opened only when a route exists.
    pub(crate) outbox: OnceLock<Arc<dyn Outbox>>,
    /// The lock on `[notify] data_dir`, held while the relay lives.
    pub(crate) dir_lock: OnceLock<DirLock>,
    /// With the Redis store: the outbox lives in a Redis stream instead of the
    /// data dir, so any instance can finish what a crashed one accepted.
    #[cfg(feature = "redis")]
    pub(crate) redis_outbox: OnceLock<redis_outbox::RedisOutboxConfig>,
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Another server uses the data dir (or it cannot be locked).
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The outbox could not be opened.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
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
                webhook_counters: (0..webhooks).map(|_| WebhookCounters::default()).collect(),
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
                digests: Digests::new(config.digest_samples),
                outbox: OnceLock::new(),
                dir_lock: OnceLock::new(),
                #[cfg(feature = "redis")]
                redis_outbox: OnceLock::new(),
            }),
        }
    }

    /// The `[notify]` settings.
    pub fn settings(&self) -> &NotifyConfig {
        &self.shared.settings
    }

    /// The routes.
    pub fn routes(&self) -> &Routes {
        &self.shared.routes
    }

    /// Locks `[notify] data_dir` and opens the outbox there (when any webhook
    /// is configured), queues what it still holds, and starts a worker per
    /// webhook and the digest loop in `tracker`. They stop, after draining for
    /// `[notify] drain`, once `cancel` fires.
    ///
    /// Fails with [`StartError::Lock`] when another process holds the data
    /// dir (see [`crate::lock`]): two relays must not share one journal.
    pub fn start(
        &self,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) -> Result<(), StartError> {
        for problem in self.shared.routes.problems() {
            tracing::warn!("notify: {problem}");
        }
        if self.shared.routes.webhooks().is_empty() {
            tracing::info!(
                "notify: no Slack webhook configured (set SLACK_WEBHOOK_URL); POST /v1/notify answers 503"
            );
            return Ok(());
        }
        let dir = &self.shared.settings.data_dir;
        let lock = DirLock::acquire(dir)?;
        let outbox = FileOutbox::open(dir, self.shared.settings.fsync)?;
        // Held as long as the relay lives.
        let _ = self.shared.dir_lock.set(lock);
        self.start_with(Arc::new(outbox), tracker, cancel);
        Ok(())
    }

    /// Keeps the outbox in Redis (a stream under `{<key_prefix>:notify}`)
    /// instead of the data dir: what the server does with the Redis store, so
    /// the instances sharing limits also share what they accepted. Takes
    /// effect at start; a second call is ignored.
    #[cfg(feature = "redis")]
    pub fn use_redis_outbox(&self, config: redis_outbox::RedisOutboxConfig) {
        let _ = self.shared.redis_outbox.set(config);
    }

    /// Starts the relay as [`Relay::start`] does, but over the Redis outbox when
    /// one was chosen ([`Relay::use_redis_outbox`]): connecting to it is
    /// retried with backoff in `tracker` until it succeeds or `cancel` fires,
    /// and until then `POST /v1/notify` answers 503 (nothing is accepted that
    /// could not be persisted).
    pub fn start_any(
        &self,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) -> Result<(), StartError> {
        #[cfg(feature = "redis")]
        if let Some(config) = self.shared.redis_outbox.get().cloned() {
            if self.shared.routes.webhooks().is_empty() {
                return self.start(tracker, cancel);
            }
            let (relay, tracker_for_task, cancel_for_task) =
                (self.clone(), tracker.clone(), cancel.clone());
            tracker.spawn(async move {
                relay
                    .connect_redis_outbox(config, &tracker_for_task, &cancel_for_task)
                    .await;
            });
            return Ok(());
        }
        self.start(tracker, cancel)
    }

    #[cfg(feature = "redis")]
    async fn connect_redis_outbox(
        &self,
        config: redis_outbox::RedisOutboxConfig,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) {
        let mut wait = std::time::Duration::from_millis(200);
        loop {
            match redis_outbox::RedisOutbox::connect(config.clone()).await {
                Ok(outbox) => {
                    tracing::info!("notify: the outbox is a Redis stream");
                    self.start_with(Arc::new(outbox), tracker, cancel);
                    return;
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    retry_in_ms = wait.as_millis() as u64,
                    "notify: the Redis outbox is unreachable; POST /v1/notify answers 503 until it is"
                ),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(std::time::Duration::from_secs(10));
        }
    }

    /// [`Relay::start`] over a given outbox (another kind of outbox, or a test's).
    pub fn start_with(
        &self,
        outbox: Arc<dyn Outbox>,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) {
        let shared = &self.shared;
        // What has no route is kept in the outbox until the route works again.
        let (resent, unroutable) = Relay::restore(shared, outbox.pending());
        if resent > 0 || unroutable > 0 {
            tracing::info!(
                resent,
                unroutable,
                "notify: sending again what the outbox held from the last run"
            );
        }
        shared.digests.restore(outbox.take_digests());
        if shared.outbox.set(outbox).is_err() {
            tracing::warn!("notify: the relay was started twice; keeping the first outbox");
            return;
        }
        // The workers run in the server's tracker; `workers` only tells the
        // upkeep loop when the last one has stopped delivering.
        let workers = TaskTracker::new();
        for (at, webhook) in shared.routes.webhooks().iter().enumerate() {
            let worker = deliver::Worker::new(Arc::clone(shared), at);
            let span = tracing::info_span!("webhook", webhook = webhook.label());
            tracker.spawn(workers.track_future(worker.run(cancel.clone()).instrument(span)));
        }
        workers.close();
        tracker.spawn(digest_loop(Arc::clone(shared), cancel.clone()));
        if let Some(every) = shared.outbox.get().and_then(|o| o.upkeep_every()) {
            tracker.spawn(upkeep_loop(
                Arc::clone(shared),
                every,
                workers,
                cancel.clone(),
            ));
        }
    }

    /// Queues notifications read back from the outbox (at start, or taken
    /// over from another instance); returns how many were queued and how many
    /// have no route here (they stay in the outbox).
    fn restore(shared: &Shared, pending: Vec<Notification>) -> (usize, usize) {
        let mut resent = 0usize;
        let mut unroutable = 0usize;
        for n in pending {
            match shared.routes.route(&n.category) {
                Ok(at) => {
                    shared.queues[at].restore(n);
                    resent += 1;
                }
                Err(_) => unroutable += 1,
            }
        }
        (resent, unroutable)
    }

    /// Decides, persists and queues one notification.
    pub async fn submit(
        &self,
        submission: Submission,
        request_id: Option<&str>,
    ) -> Result<Submitted, NotifyError> {
        let shared = &self.shared;
        let counters = &shared.counters;
        let at = shared.routes.route(&submission.category).inspect_err(|_| {
            counters.no_route.fetch_add(1, Ordering::Relaxed);
        })?;
        let outbox = shared.outbox.get().ok_or(NotifyError::NotStarted)?;
        let Some(slot) = shared.queues[at].reserve() else {
            counters.queue_full.fetch_add(1, Ordering::Relaxed);
            return Err(NotifyError::QueueFull {
                webhook: shared.routes.webhooks()[at].label().to_owned(),
                capacity: shared.queues[at].capacity(),
            });
        };
        let tree = submission
            .tree
            .as_deref()
            .or(shared.settings.tree.as_deref());
        let decision = shared
            .limiter
            .check(CheckRequest {
                tree,
                descriptors: &[("category", submission.category.as_str())],
                cost: 1,
                dry_run: false,
            })
            .await?;
        if !decision.allowed {
            counters.suppressed.fetch_add(1, Ordering::Relaxed);
            if let Some(retry_after) = decision.retry_after {
                let text = submission.payload["text"].as_str().unwrap_or_default();
                shared.digests.record(
                    (decision.tree.clone(), submission.category),
                    text,
                    shared.clock.now(),
                    retry_after,
                    request_id,
                );
            }
            return Ok(Submitted::Suppressed(decision));
        }
        let n = Notification {
            id: uuid::Uuid::new_v4().to_string(),
            kind: Kind::Message,
            tree: decision.tree.clone(),
            category: submission.category,
            payload: submission.payload,
            request_id: request_id.map(str::to_owned),
            accepted_at: shared.clock.now(),
        };
        let id = n.id.clone();
        outbox.append(n.clone()).await?;
        slot.fill(n);
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(id, "notification queued");
        Ok(Submitted::Accepted { id, decision })
    }

    /// Tallies waiting for a digest.
    pub fn pending_digests(&self) -> usize {
        self.shared.digests.pending()
    }

    /// The counters in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let shared = &self.shared;
        let c = &shared.counters;
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.push_str("# HELP limitree_notify_requests_total Notifications posted, by outcome.\n");
        out.push_str("# TYPE limitree_notify_requests_total counter\n");
        for (outcome, value) in [
            ("accepted", &c.accepted),
            ("suppressed", &c.suppressed),
            ("queue_full", &c.queue_full),
            ("no_route", &c.no_route),
        ] {
            let _ = writeln!(
                out,
                "limitree_notify_requests_total{{outcome=\"{outcome}\"}} {}",
                load(value)
            );
        }
        out.push_str("# HELP limitree_notify_digests_total Suppression digests queued.\n");
        out.push_str("# TYPE limitree_notify_digests_total counter\n");
        let _ = writeln!(out, "limitree_notify_digests_total {}", load(&c.digests));
        out.push_str(
            "# HELP limitree_notify_deliveries_total Webhook call outcomes, per webhook.\n",
        );
        out.push_str("# TYPE limitree_notify_deliveries_total counter\n");
        for (webhook, w) in shared
            .routes
            .webhooks()
            .iter()
            .zip(&shared.webhook_counters)
        {
            for (outcome, value) in [
                ("delivered", &w.delivered),
                ("rate_limited", &w.rate_limited),
                ("failed", &w.failed),
                ("dead_lettered", &w.dead_lettered),
            ] {
                let _ = writeln!(
                    out,
                    "limitree_notify_deliveries_total{{webhook=\"{}\",outcome=\"{outcome}\"}} {}",
                    webhook.label(),
                    load(value)
                );
            }
        }
        out.push_str("# HELP limitree_notify_queue_depth Notifications waiting, per webhook.\n");
        out.push_str("# TYPE limitree_notify_queue_depth gauge\n");
        for (webhook, queue) in shared.routes.webhooks().iter().zip(&shared.queues) {
            let _ = writeln!(
                out,
                "limitree_notify_queue_depth{{webhook=\"{}\"}} {}",
                webhook.label(),
                queue.len()
            );
        }
        out
    }
}

/// For a shared outbox: every `every`, renews this instance's claim and
/// queues what it took over from instances that stopped; after `cancel` it only
/// renews the claim, until the last worker has stopped, then releases what is
/// left so another instance (or the next start) sends it without waiting.
async fn upkeep_loop(
    shared: Arc<Shared>,
    every: std::time::Duration,
    workers: TaskTracker,
    cancel: CancellationToken,
) {
    let Some(outbox) = shared.outbox.get() else {
        return;
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the outbox has just read what was pending.
    ticks.tick().await;
    loop {
        tokio::select! {
            () = workers.wait() => break,
            _ = ticks.tick() => {
                let take_over = !cancel.is_cancelled();
                match outbox.upkeep(take_over).await {
                    Ok(taken) if taken.is_empty() => {}
                    Ok(taken) => {
                        let (resent, unroutable) = Relay::restore(&shared, taken);
                        tracing::info!(
                            resent,
                            unroutable,
                            "notify: took over notifications from an instance that stopped"
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "notify: outbox upkeep failed"),
                }
            }
        }
    }
    if let Err(e) = outbox.release().await {
        tracing::warn!(error = %e, "notify: could not release the outbox claim");
    }
}

/// Every `[notify] digest_interval`, tries the digests whose categories the
/// limiter said would have room by now, until `cancel`.
async fn digest_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut ticks = tokio::time::interval(shared.settings.digest_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = ticks.tick() => try_digests(&shared).await,
        }
    }
    // Suppressions not yet told of are told after the restart.
    let tallies = shared.digests.save();
    if let (false, Some(outbox)) = (tallies.is_empty(), shared.outbox.get()) {
        let count = tallies.len();
        match outbox.save_digests(tallies).await {
            Ok(()) => tracing::info!(
                count,
                "notify: kept the pending digest tallies for the next start"
            ),
            Err(e) => tracing::warn!(error = %e, "notify: could not keep the digest tallies"),
        }
    }
}

/// One pass over the due digests: each is charged through the limiter like any
/// notification; admitted ones are persisted and queued.
pub(crate) async fn try_digests(shared: &Shared) {
    let Some(outbox) = shared.outbox.get() else {
        return;
    };
    let now = shared.clock.now();
    for key in shared.digests.due(now) {
        let (tree, category) = &key;
        let Ok(at) = shared.routes.route(category) else {
            continue;
        };
        let Some(slot) = shared.queues[at].reserve() else {
            // The queue is full: look again next time.
            continue;
        };
        let decision = shared
            .limiter
            .check(CheckRequest {
                tree: Some(tree),
                descriptors: &[("category", category.as_str())],
                cost: 1,
                dry_run: false,
            })
            .await;
        let decision = match decision {
            Ok(decision) => decision,
            Err(e) => {
                tracing::warn!(category, error = %e, "notify: a digest could not be decided");
                continue;
            }
        };
        if !decision.allowed {
            let wait = decision.retry_after.unwrap_or(0);
            shared.digests.reschedule(&key, now.saturating_add(wait));
            continue;
        }
        let Some(tally) = shared.digests.take(&key) else {
            continue;
        };
        let n = Notification {
            id: uuid::Uuid::new_v4().to_string(),
            kind: Kind::Digest,
            tree: tree.clone(),
            category: category.clone(),
            payload: serde_json::json!({ "text": digest::text(category, &tally) }),
            request_id: tally.request_id.clone(),
            accepted_at: now,
        };
        match outbox.append(n.clone()).await {
            Ok(()) => {
                tracing::info!(
                    category,
                    suppressed = tally.count,
                    id = n.id,
                    "notify: digest queued"
                );
                slot.fill(n);
                shared.counters.digests.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(category, error = %e, "notify: a digest could not be persisted");
                shared.digests.put_back(&key, tally, now);
            }
        }
    }
}
