//! How long the store takes to decide, and how it fails:
//! `limitree_store_duration_seconds{store}` (a histogram of every
//! `Store::decide` call) and `limitree_store_errors_total{store,error}` (by
//! [`StoreError::kind`]: `unavailable`, `timeout`, `timeout_connecting`,
//! `unknown_tree`, `protocol`).
//!
//! [`TimedStore`] wraps the store that does the deciding — the memory store,
//! or the Redis store *inside* its fallback, so a Redis outage is counted as
//! the errors it is, while the fallback's `on_error` answers are counted as
//! decisions (`reason="store_unavailable"`) by `CountedStore` outside.

use std::sync::Arc;

use limitree::store::BoxFuture;
use limitree::{Chain, ChainOutcome, Mode, Policy, Store, StoreError};
use prometheus_client::encoding::EncodeLabelSet;

use super::{Counter, Family, Histogram, Metrics, Stopwatch, latency_histogram};

/// Every [`StoreError::kind`], so each error series exists (at 0) from start.
const ERROR_KINDS: [&str; 5] = [
    "unavailable",
    "timeout",
    "timeout_connecting",
    "unknown_tree",
    "protocol",
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    store: &'static str,
    error: &'static str,
}

/// A store whose calls are timed and whose errors are counted.
#[derive(Debug)]
pub struct TimedStore {
    inner: Arc<dyn Store>,
    duration: Histogram,
    errors: Family<ErrorLabels, Counter>,
}

/// The store families, registered once per server and shared by its stores.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    duration: Family<StoreLabels, Histogram, fn() -> Histogram>,
    errors: Family<ErrorLabels, Counter>,
}

impl StoreMetrics {
    /// Registers the store families in `metrics`.
    pub fn new(metrics: &Metrics) -> StoreMetrics {
        StoreMetrics {
            duration: metrics.register(
                "limitree_store_duration_seconds",
                "Store::decide calls: how long the store took to decide a chain, by store.",
                Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            ),
            errors: metrics.register(
                "limitree_store_errors",
                "Store::decide calls that failed, by store and error kind.",
                Family::default(),
            ),
        }
    }

    /// `inner`, timed and counted under its own [`Store::kind`].
    pub fn wrap(&self, inner: Arc<dyn Store>) -> TimedStore {
        let store = inner.kind();
        for error in ERROR_KINDS {
            drop(self.errors.get_or_create(&ErrorLabels { store, error }));
        }
        TimedStore {
            duration: self.duration.get_or_create_owned(&StoreLabels { store }),
            errors: self.errors.clone(),
            inner,
        }
    }
}

impl Store for TimedStore {
    fn decide<'a>(
        &'a self,
        chain: &'a Chain<'a>,
        mode: Mode,
    ) -> BoxFuture<'a, Result<ChainOutcome, StoreError>> {
        Box::pin(async move {
            let watch = Stopwatch::start();
            let result = self.inner.decide(chain, mode).await;
            self.duration.observe(watch.seconds());
            if let Err(e) = &result {
                self.errors
                    .get_or_create(&ErrorLabels {
                        store: self.inner.kind(),
                        error: e.kind(),
                    })
                    .inc();
            }
            result
        })
    }

    fn check_ready(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.check_ready()
    }

    fn expire_idle(&self) -> usize {
        self.inner.expire_idle()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn scan_buckets<'a>(
        &'a self,
        scan: limitree::store::BucketScan<'a>,
    ) -> BoxFuture<'a, Result<limitree::store::ScannedBuckets, StoreError>> {
        self.inner.scan_buckets(scan)
    }

    fn reset<'a>(&'a self, chain: &'a Chain<'a>) -> BoxFuture<'a, Result<usize, StoreError>> {
        self.inner.reset(chain)
    }

    /// The store a reload installs ([`limitree::Limiter::reload`]), timed
    /// and counted as this one.
    fn for_policy(&self, old: &Policy, policy: &Policy) -> Option<Arc<dyn Store>> {
        let inner = self.inner.for_policy(old, policy)?;
        Some(Arc::new(TimedStore {
            inner,
            duration: self.duration.clone(),
            errors: self.errors.clone(),
        }))
    }
}
