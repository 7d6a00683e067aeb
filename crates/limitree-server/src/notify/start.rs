//! Start-up: [`Relay::start`], the one way the relay begins work. It opens the
//! chosen outbox ([`OutboxSource`]), queues what the outbox still holds, and
//! starts in the server's `TaskTracker` a delivery worker per webhook, the
//! digest loop and, for an outbox shared between instances, its upkeep.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::config::NotifyConfig;
use super::deliver::{self, Worker};
use super::digest_loop;
use super::outbox::{FileOutbox, Notification, Outbox, OutboxError};
use super::relay::{OutboxSource, Relay, Shared};
use crate::lock::{DirLock, LockError};

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
    /// Opens the outbox chosen with [`Relay::use_outbox`] (when any webhook is
    /// configured; without one `POST /v1/notify` answers 503 and nothing is
    /// opened), queues what it still holds, and starts a worker per webhook
    /// and the digest loop in `tracker`. They stop, after draining for
    /// `[notify] drain`, once `cancel` fires.
    ///
    /// - [`OutboxSource::DataDir`]: locks `[notify] data_dir` first, and fails
    ///   with [`StartError::Lock`] when another process holds it (see
    ///   [`crate::lock`]): two relays must not share one journal.
    /// - `OutboxSource::Redis`: returns at once; connecting is retried with
    ///   backoff in `tracker` until it succeeds or `cancel` fires, and until
    ///   then `POST /v1/notify` answers 503 (nothing is accepted that could
    ///   not be persisted).
    /// - [`OutboxSource::Given`]: starts over that outbox.
    pub fn start(
        &self,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) -> Result<(), StartError> {
        let shared = &self.shared;
        for problem in shared.routes.problems() {
            tracing::warn!("notify: {problem}");
        }
        if shared.routes.webhooks().is_empty() {
            tracing::info!(
                "notify: no Slack webhook configured (set SLACK_WEBHOOK_URL); POST /v1/notify answers 503"
            );
            return Ok(());
        }
        let source = shared.source.lock().clone();
        match source {
            OutboxSource::DataDir => {
                let dir = &shared.settings.data_dir;
                let lock = DirLock::acquire(dir)?;
                let outbox = FileOutbox::open(dir, shared.settings.fsync)?;
                // Held as long as the relay lives.
                let _ = shared.dir_lock.set(lock);
                begin(shared, Arc::new(outbox), tracker, cancel);
            }
            #[cfg(feature = "redis")]
            OutboxSource::Redis(config) => {
                let (shared, tracker_for_task, cancel_for_task) =
                    (Arc::clone(shared), tracker.clone(), cancel.clone());
                tracker.spawn(async move {
                    connect_redis_outbox(&shared, config, &tracker_for_task, &cancel_for_task)
                        .await;
                });
            }
            OutboxSource::Given(outbox) => begin(shared, outbox, tracker, cancel),
        }
        Ok(())
    }
}

/// Connects to the Redis outbox, retrying with backoff (200 ms doubling up to
/// 10 s) until it answers or `cancel` fires, then begins delivering over it.
#[cfg(feature = "redis")]
async fn connect_redis_outbox(
    shared: &Arc<Shared>,
    config: super::redis_outbox::RedisOutboxConfig,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) {
    let mut wait = Duration::from_millis(200);
    loop {
        match super::redis_outbox::RedisOutbox::connect(config.clone()).await {
            Ok(outbox) => {
                tracing::info!("notify: the outbox is a Redis stream");
                begin(shared, Arc::new(outbox), tracker, cancel);
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
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

/// With `outbox` open: queues what it holds, makes it the relay's (from here
/// on submissions are accepted), and starts the tasks.
fn begin(
    shared: &Arc<Shared>,
    outbox: Arc<dyn Outbox>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) {
    // What has no route is kept in the outbox until the route works again.
    let (resent, unroutable) = restore(shared, outbox.pending());
    if resent > 0 || unroutable > 0 {
        tracing::info!(
            resent,
            unroutable,
            "notify: sending again what the outbox held from the last run"
        );
    }
    shared.digests.restore(outbox.take_digests());
    if shared.outbox.set(Arc::clone(&outbox)).is_err() {
        tracing::warn!("notify: the relay was started twice; keeping the first outbox");
        return;
    }
    // The workers run in the server's tracker; `workers` only tells the
    // upkeep loop when the last one has stopped delivering.
    let workers = TaskTracker::new();
    let settings = delivery_settings(&shared.settings);
    for (at, webhook) in shared.routes.webhooks().iter().enumerate() {
        let worker = Worker {
            webhook: webhook.clone(),
            queue: Arc::clone(&shared.queues[at]),
            outbox: Arc::clone(&outbox),
            client: shared.client.clone(),
            settings,
            counters: Arc::clone(&shared.webhook_counters[at]),
            digests: Arc::clone(&shared.digests),
            clock: Arc::clone(&shared.clock),
        };
        let span = tracing::info_span!("webhook", webhook = webhook.label());
        tracker.spawn(workers.track_future(worker.run(cancel.clone()).instrument(span)));
    }
    workers.close();
    tracker.spawn(digest_loop::run(Arc::clone(shared), cancel.clone()));
    if let Some(every) = outbox.upkeep_every() {
        tracker.spawn(upkeep_loop(
            Arc::clone(shared),
            outbox,
            every,
            workers,
            cancel.clone(),
        ));
    }
}

/// The part of `[notify]` a delivery worker uses.
fn delivery_settings(config: &NotifyConfig) -> deliver::Settings {
    deliver::Settings {
        pace: config.pace,
        burst: config.burst,
        timeout: config.timeout,
        max_attempts: config.max_attempts,
        backoff_initial: config.backoff_initial,
        backoff_max: config.backoff_max,
        drain: config.drain,
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

/// For a shared outbox: every `every`, renews this instance's claim and
/// queues what it took over from instances that stopped; after `cancel` it only
/// renews the claim, until the last worker has stopped, then releases what is
/// left so another instance (or the next start) sends it without waiting.
async fn upkeep_loop(
    shared: Arc<Shared>,
    outbox: Arc<dyn Outbox>,
    every: Duration,
    workers: TaskTracker,
    cancel: CancellationToken,
) {
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
                        let (resent, unroutable) = restore(&shared, taken);
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
