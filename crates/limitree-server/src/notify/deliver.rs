//! A webhook's worker: sends its queue in order, paced, and finishes each
//! notification as delivered or dead-lettered.
//!
//! - Pacing: at most `burst` messages back to back, then one per `pace`: the
//!   library's GCRA ([`limitree::algo::gcra`]) on tokio time, so paused-time
//!   tests drive it.
//! - 429: Slack says when to come back (`Retry-After`); the worker waits that
//!   long and sends the same message again. It is Slack's pacing, not a
//!   failure, so it does not use up attempts.
//! - 5xx, 408, timeouts, connection errors: exponential backoff with jitter,
//!   up to `max_attempts`, then a dead letter.
//! - Any other answer (`invalid_payload`, `no_service`, `channel_not_found`,
//!   `channel_is_archived`, `action_prohibited`, other 4xx): sending again
//!   would get the same answer, so it is dead-lettered with Slack's reason.
//!
//! The message stays at the head of the queue (and in the outbox) until it is
//! finished, so a shutdown in between leaves it for the next start. An
//! in-flight call is never cut short by shutdown (its `timeout` bounds it):
//! cutting it would leave Slack's answer unknown and risk a duplicate.

use std::sync::Arc;
use std::time::Duration;

use limitree::algo::{BucketView as _, gcra};
use limitree::{Algorithm, Clock, LimitSpec, Micros};
use rand::Rng as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::digest::Digests;
use super::metrics::{WebhookCounters, bump};
use super::outbox::{DeadLetter, Kind, Notification, Outbox};
use super::queue::Queue;
use super::route::Webhook;

/// Longest `Retry-After` honoured as given; a larger (or absurd) value is cut
/// to this so one answer cannot park a webhook for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);
/// Wait after a 429 that gave no usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Most characters of a Slack answer kept as a dead letter's reason.
const MAX_REASON_CHARS: usize = 200;

/// Pacing: one webhook's GCRA bucket (`limit` 1 per `pace`, depth `burst`),
/// decided by [`limitree::algo::gcra`] on tokio time measured in µs from the
/// pacer's creation. The same algorithm as a `gcra` level, so there is one
/// GCRA to trust, not two.
#[derive(Debug, Clone)]
pub struct Pacer {
    spec: LimitSpec,
    state: gcra::State,
    /// Time zero of the bucket's µs clock.
    origin: Instant,
}

impl Pacer {
    /// A full burst is available from `now`.
    pub fn new(pace: Duration, burst: u32, now: Instant) -> Pacer {
        // Rounded up, so a sub-µs pace never sends faster than asked, and at
        // least 1 µs: the GCRA divides by it (the config refuses a pace of 0).
        let window = u64::try_from(pace.as_nanos().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .max(1);
        Pacer {
            spec: LimitSpec::new(Algorithm::Gcra, 1, window, u64::from(burst.max(1))),
            state: gcra::State::default(),
            origin: now,
        }
    }

    /// `at` on the bucket's clock.
    fn micros(&self, at: Instant) -> Micros {
        u64::try_from(at.saturating_duration_since(self.origin).as_micros()).unwrap_or(u64::MAX)
    }

    /// When the next message may go, as seen at `now` (`now` itself when it
    /// may go at once).
    pub fn ready_at(&self, now: Instant) -> Instant {
        let at = self.micros(now);
        let bucket = gcra::view(&self.state, at, &self.spec);
        if bucket.available() >= 1 {
            return now;
        }
        // On the bucket's clock, so it is never a µs early.
        self.origin + Duration::from_micros(at + bucket.retry_after(1))
    }

    /// A message went at `now`.
    pub fn sent(&mut self, now: Instant) {
        let at = self.micros(now);
        gcra::charge(&mut self.state, at, &self.spec, 1);
    }
}

/// The backoff before retry `attempt` (1 = the first retry): `initial · 2^(attempt-1)`
/// up to `max`, then a random point in its upper half ("equal jitter"), so
/// retries from many relays do not line up yet still grow.
pub fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = initial
        .checked_mul(1u32 << attempt.saturating_sub(1).min(20))
        .unwrap_or(max)
        .min(max);
    let half = exp / 2;
    half + rand::rng().random_range(Duration::ZERO..=exp - half)
}

/// What one webhook call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx.
    Delivered,
    /// 429: wait this long.
    RateLimited(Duration),
    /// Worth trying again (5xx, 408, timeout, connection error).
    Transient(String),
    /// Slack refused it for good.
    Refused {
        /// HTTP status.
        status: u16,
        /// Slack's error (`invalid_payload`, …) or the status line.
        reason: String,
    },
}

/// Classifies a webhook's answer.
pub fn classify(status: u16, retry_after: Option<&str>, body: &str) -> Attempt {
    let body = body.trim();
    match status {
        200..=299 => Attempt::Delivered,
        429 => Attempt::RateLimited(
            retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs)
                .min(MAX_RETRY_AFTER),
        ),
        408 | 500..=599 => Attempt::Transient(if body.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {}", truncate(body))
        }),
        _ => Attempt::Refused {
            status,
            reason: if body.is_empty() {
                format!("HTTP {status}")
            } else {
                truncate(body)
            },
        },
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(MAX_REASON_CHARS).collect()
}

/// The part of `[notify]` a worker uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// One message per `pace` after a burst…
    pub(crate) pace: Duration,
    /// …of `burst` messages back to back.
    pub(crate) burst: u32,
    /// Bounds each webhook call.
    pub(crate) timeout: Duration,
    /// Failed calls (not 429s) before a dead letter.
    pub(crate) max_attempts: u32,
    /// First backoff after a failure.
    pub(crate) backoff_initial: Duration,
    /// Longest backoff.
    pub(crate) backoff_max: Duration,
    /// How long delivery goes on after the shutdown signal.
    pub(crate) drain: Duration,
}

/// The worker of one webhook, holding only what it uses: its webhook, its
/// queue and counters, the outbox to mark what it finished, and the digests
/// to say when a digest is finished (so the next may be queued). Built at
/// start-up; nothing else in the relay is reachable from here.
#[derive(Debug)]
pub(crate) struct Worker {
    /// Where it sends (the URL is used only in [`Worker::call`]).
    pub(crate) webhook: Webhook,
    /// Its webhook's queue; this worker is its only consumer.
    pub(crate) queue: Arc<Queue>,
    /// Marks notifications done or dead-lettered.
    pub(crate) outbox: Arc<dyn Outbox>,
    /// Shared by every worker (one connection pool).
    pub(crate) client: reqwest::Client,
    pub(crate) settings: Settings,
    /// Its webhook's delivery outcomes.
    pub(crate) counters: Arc<WebhookCounters>,
    pub(crate) digests: Arc<Digests>,
    /// The limiter's clock, for dead letters' times (µs since the epoch).
    pub(crate) clock: Arc<dyn Clock>,
}

impl Worker {
    /// Delivers until `cancel`, then for at most `[notify] drain` more (or
    /// until the queue is empty).
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let settings = self.settings;
        let drain = settings.drain;
        // Completes `drain` after the shutdown signal: the end of delivering.
        let stop = async {
            cancel.cancelled().await;
            tokio::time::sleep(drain).await;
        };
        let mut stop = std::pin::pin!(stop);
        let queue = &self.queue;
        let mut pacer = Pacer::new(settings.pace, settings.burst, Instant::now());
        loop {
            let n = tokio::select! {
                biased;
                n = queue.next() => n,
                () = cancel.cancelled(), if queue.is_empty() => break,
                () = &mut stop => break,
            };
            let span = tracing::info_span!(
                "deliver",
                request_id = %n.request_id.as_deref().unwrap_or("-"),
                id = %n.id,
                category = %n.category,
                kind = ?n.kind,
            );
            let finished = self
                .deliver(&n, &mut pacer, stop.as_mut())
                .instrument(span)
                .await;
            if !finished {
                break;
            }
            queue.pop();
            if n.kind == Kind::Digest {
                self.digests.finished(&(n.tree, n.category));
            }
        }
        let left = queue.len();
        if left > 0 {
            tracing::info!(
                left,
                "stopped delivering; the rest stays in the outbox for the next start"
            );
        }
    }

    /// Sends `n` until it is finished (`true`) or `stop` fires while waiting
    /// (`false`: it stays in the outbox).
    async fn deliver(
        &self,
        n: &Notification,
        pacer: &mut Pacer,
        mut stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> bool {
        let settings = &self.settings;
        let counters = &self.counters;
        let mut failures = 0u32;
        let mut attempts = 0u32;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(pacer.ready_at(Instant::now())) => {}
                () = stop.as_mut() => return false,
            }
            pacer.sent(Instant::now());
            attempts += 1;
            let wait = match self.call(n).await {
                Attempt::Delivered => {
                    bump(&counters.delivered);
                    let waited = self.clock.now().saturating_sub(n.accepted_at);
                    counters
                        .delivery_latency
                        .observe(Duration::from_micros(waited).as_secs_f64());
                    tracing::info!(attempts, "delivered");
                    self.done(n).await;
                    return true;
                }
                Attempt::RateLimited(wait) => {
                    bump(&counters.rate_limited);
                    tracing::info!(wait = ?wait, "webhook rate-limited (429); waiting Retry-After");
                    wait
                }
                Attempt::Transient(reason) => {
                    bump(&counters.failed);
                    failures += 1;
                    if failures >= settings.max_attempts {
                        let reason =
                            format!("gave up after {failures} failed attempts; last: {reason}");
                        self.dead_letter(n, reason, None, attempts).await;
                        return true;
                    }
                    let wait = backoff(settings.backoff_initial, settings.backoff_max, failures);
                    tracing::warn!(reason, wait = ?wait, failures, "delivery failed; retrying");
                    wait
                }
                Attempt::Refused { status, reason } => {
                    self.dead_letter(n, reason, Some(status), attempts).await;
                    return true;
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.as_mut() => return false,
            }
            bump(&counters.retries);
        }
    }

    /// One webhook call. Errors are shown without their URL (reqwest puts it in
    /// its messages; it is a secret).
    async fn call(&self, n: &Notification) -> Attempt {
        let response = self
            .client
            .post(self.webhook.url().clone())
            .json(&n.payload)
            .timeout(self.settings.timeout)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) => return Attempt::Transient(redacted(e)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match response.text().await {
            Ok(body) => body,
            Err(e) if (200..300).contains(&status) => {
                // Slack took it; only its "ok" was lost.
                tracing::debug!(error = redacted(e), "could not read the webhook's answer");
                String::new()
            }
            Err(e) => return Attempt::Transient(redacted(e)),
        };
        classify(status, retry_after.as_deref(), &body)
    }

    async fn done(&self, n: &Notification) {
        if let Err(e) = self.outbox.done(n.id.clone()).await {
            // It will be sent again on the next start: a duplicate, not a loss.
            tracing::error!(error = %e, "could not mark the notification done");
        }
    }

    async fn dead_letter(
        &self,
        n: &Notification,
        reason: String,
        status: Option<u16>,
        attempts: u32,
    ) {
        bump(&self.counters.dead_lettered);
        tracing::warn!(reason, status, attempts, "dead-lettered");
        let letter = DeadLetter {
            dead_at: self.clock.now(),
            reason,
            status,
            attempts,
            webhook: self.webhook.label().to_owned(),
            notification: n.clone(),
        };
        if let Err(e) = self.outbox.dead_letter(letter).await {
            tracing::error!(error = %e, "could not keep the dead letter; leaving it in the outbox");
            return;
        }
        self.done(n).await;
    }
}

/// A reqwest error's message and causes, without the URL.
fn redacted(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_answers_are_classified() {
        assert_eq!(classify(200, None, "ok"), Attempt::Delivered);
        assert_eq!(
            classify(429, Some("7"), "rate_limited"),
            Attempt::RateLimited(Duration::from_secs(7))
        );
        assert_eq!(
            classify(429, None, ""),
            Attempt::RateLimited(DEFAULT_RETRY_AFTER)
        );
        assert_eq!(
            classify(429, Some("99999999"), ""),
            Attempt::RateLimited(MAX_RETRY_AFTER)
        );
        assert!(matches!(classify(503, None, ""), Attempt::Transient(_)));
        for (status, reason) in [
            (400, "invalid_payload"),
            (403, "action_prohibited"),
            (404, "no_service"),
            (404, "channel_not_found"),
            (410, "channel_is_archived"),
        ] {
            assert_eq!(
                classify(status, None, reason),
                Attempt::Refused {
                    status,
                    reason: reason.to_owned()
                }
            );
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_up_to_the_bound() {
        let (initial, max) = (Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..50 {
            let first = backoff(initial, max, 1);
            assert!(first >= Duration::from_millis(500) && first <= initial);
            let fourth = backoff(initial, max, 4);
            assert!(fourth >= Duration::from_secs(4) && fourth <= Duration::from_secs(8));
            assert!(backoff(initial, max, 30) <= max);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_allows_a_burst_then_one_per_pace() {
        let start = Instant::now();
        let pace = Duration::from_secs(1);
        let mut pacer = Pacer::new(pace, 3, start);
        let mut sent = Vec::new();
        for _ in 0..6 {
            tokio::time::sleep_until(pacer.ready_at(Instant::now())).await;
            let now = Instant::now();
            pacer.sent(now);
            sent.push(now - start);
        }
        let secs: Vec<u64> = sent.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [0, 0, 0, 1, 2, 3]);
    }

    /// After an idle spell the burst is back, and the next message after it is
    /// ready exactly one `pace` on: not a microsecond early.
    #[tokio::test(start_paused = true)]
    async fn pacing_refills_while_idle_and_is_never_early() {
        let start = Instant::now();
        let pace = Duration::from_millis(250);
        let mut pacer = Pacer::new(pace, 2, start);
        pacer.sent(start);
        pacer.sent(start);
        assert_eq!(pacer.ready_at(start), start + pace);
        let almost = start + pace - Duration::from_micros(1);
        assert_eq!(
            pacer.ready_at(almost),
            start + pace,
            "one µs early is too early"
        );

        tokio::time::advance(Duration::from_secs(10)).await;
        let later = Instant::now();
        assert_eq!(pacer.ready_at(later), later, "the burst refilled");
        pacer.sent(later);
        assert_eq!(pacer.ready_at(later), later, "…both of it");
        pacer.sent(later);
        assert_eq!(pacer.ready_at(later), later + pace);
    }
}
