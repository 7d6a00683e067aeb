//! The relay's counters, and the same counts as plain values.
//!
//! Submit, the digest loop and the delivery workers bump atomics ([`Counters`],
//! [`WebhookCounters`]); `GET /metrics` reads a [`Snapshot`] of them, which is
//! data, not text, so whoever writes the Prometheus exposition decides its
//! format in one place (`crate::http::metrics`).
//!
//! The delivery latency is a histogram (`prometheus_client`'s, a shared
//! handle like the atomics); `crate::metrics::relay` renders all of it.
//!
//! Labels are webhook labels, never URLs (a URL is a secret), and never
//! categories (a client could invent unboundedly many).

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::histogram::Histogram;

/// Counts of what became of every notification posted, and of digests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Admitted and queued.
    pub accepted: AtomicU64,
    /// Denied by the limiter (then suppressed: tallied for a digest).
    pub limited: AtomicU64,
    /// Refused: queue full.
    pub queue_full: AtomicU64,
    /// Refused: no route.
    pub no_route: AtomicU64,
    /// Digests queued.
    pub digests: AtomicU64,
}

/// One webhook's delivery outcomes; its worker is the only writer.
#[derive(Debug)]
pub struct WebhookCounters {
    /// Slack answered 2xx.
    pub delivered: AtomicU64,
    /// Slack answered 429 (then waited `Retry-After` and retried).
    pub rate_limited: AtomicU64,
    /// A 5xx, timeout or connection error (then retried, or dead-lettered when out of attempts).
    pub failed: AtomicU64,
    /// Given up: kept as a dead letter.
    pub dead_lettered: AtomicU64,
    /// Calls made again after a 429 or a failure.
    pub retries: AtomicU64,
    /// Seconds from a notification's acceptance to Slack's 2xx for it, on the
    /// relay's clock: queueing, pacing and retries included.
    pub delivery_latency: Histogram,
}

/// Buckets of the delivery latency (seconds): pacing spaces messages a second
/// apart by default and retries back off up to a minute, so they reach minutes.
pub const DELIVERY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

impl Default for WebhookCounters {
    fn default() -> Self {
        WebhookCounters {
            delivered: AtomicU64::default(),
            rate_limited: AtomicU64::default(),
            failed: AtomicU64::default(),
            dead_lettered: AtomicU64::default(),
            retries: AtomicU64::default(),
            delivery_latency: Histogram::new(DELIVERY_BUCKETS),
        }
    }
}

/// The relay's counts at one moment, as plain values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// What became of the notifications posted.
    pub requests: Requests,
    /// Digests queued.
    pub digests: u64,
    /// One entry per webhook, in route order.
    pub webhooks: Vec<WebhookSnapshot>,
}

/// `POST /v1/notify` outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    /// Admitted and queued.
    pub accepted: u64,
    /// Denied by the limiter.
    pub limited: u64,
    /// Refused: the webhook's queue was full.
    pub queue_full: u64,
    /// Refused: no route for the category.
    pub no_route: u64,
}

/// One webhook's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookSnapshot {
    /// The webhook's label (`default`, `routes.<category>`), never its URL.
    pub webhook: String,
    /// Its delivery outcomes.
    pub deliveries: Deliveries,
    /// Notifications waiting in its queue now.
    pub queue_depth: u64,
}

/// One webhook's delivery outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deliveries {
    /// Slack answered 2xx.
    pub delivered: u64,
    /// Slack answered 429.
    pub rate_limited: u64,
    /// A 5xx, timeout or connection error.
    pub failed: u64,
    /// Given up.
    pub dead_lettered: u64,
    /// Calls made again after a 429 or a failure.
    pub retries: u64,
}

impl Counters {
    /// The request counts now.
    pub fn requests(&self) -> Requests {
        Requests {
            accepted: load(&self.accepted),
            limited: load(&self.limited),
            queue_full: load(&self.queue_full),
            no_route: load(&self.no_route),
        }
    }

    /// Digests queued so far.
    pub fn digests(&self) -> u64 {
        load(&self.digests)
    }
}

impl WebhookCounters {
    /// The delivery counts now.
    pub fn deliveries(&self) -> Deliveries {
        Deliveries {
            delivered: load(&self.delivered),
            rate_limited: load(&self.rate_limited),
            failed: load(&self.failed),
            dead_lettered: load(&self.dead_lettered),
            retries: load(&self.retries),
        }
    }
}

impl Requests {
    /// `(outcome label, count)`, in the order the metric lists them.
    pub fn by_outcome(&self) -> [(&'static str, u64); 4] {
        [
            ("accepted", self.accepted),
            ("limited", self.limited),
            ("queue_full", self.queue_full),
            ("no_route", self.no_route),
        ]
    }
}

impl Deliveries {
    /// `(outcome label, count)`, in the order the metric lists them.
    pub fn by_outcome(&self) -> [(&'static str, u64); 4] {
        [
            ("delivered", self.delivered),
            ("rate_limited", self.rate_limited),
            ("failed", self.failed),
            ("dead_lettered", self.dead_lettered),
        ]
    }
}

/// Counts one more: every counter here only ever counts up.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Counters only ever count up and are read one by one: no ordering between
/// them is promised, so relaxed loads are enough.
fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
