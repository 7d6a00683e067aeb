//! Prometheus metrics: one registry per server, rendered by `GET /metrics`.
//!
//! # Why `prometheus-client`
//!
//! The `metrics` facade records into one process-wide recorder (or, through
//! `metrics::with_local_recorder`, into a recorder scoped to a synchronous
//! closure, which an async handler cannot hold across an `.await`). The tests
//! run many servers in one process, and each must count only its own traffic,
//! so a global recorder is the wrong shape. `prometheus-client` (the
//! Prometheus project's Rust client) keeps every family in a [`Registry`]
//! *value*: each [`Metrics`] owns one, the handlers reach it through
//! `AppState`, and the counters themselves are shared atomics (`Counter` is an
//! `Arc<AtomicU64>`) that the hot path bumps without a lock or a lookup. It
//! writes the Prometheus text format (0.0.4, what `GET /metrics` has always
//! served) and escapes `\`, `"` and newlines in label values.
//!
//! # Layout
//!
//! - [`decisions`]: [`decisions::CountedStore`] wraps the limiter's store and
//!   counts every decision, from any endpoint: by tree and reason, by tree,
//!   level and outcome (which level denied), near-limit, overflow-bucket hits,
//!   peeks and dry runs apart, and per value for `detailed` levels (capped).
//! - [`store`]: [`store::TimedStore`] wraps the store that decides (memory, or
//!   Redis inside its fallback): the latency of each call, and its errors by kind.
//! - [`http`]: the router's layer: responses by route template and status,
//!   and their latency by route.
//! - [`relay`]: the Slack relay's counts, read at scrape time.
//! - [`reload`]: policy reloads and the policy in force, read at scrape time.
//!
//! The listeners' connection counters (HTTP and gRPC, one
//! `ConnectionMetrics` each) and the rate limit service's counters are
//! collectors next to the atomics they read (`crate::listener`,
//! `crate::grpc`).
//!
//! # Labels stay bounded
//!
//! Every label value comes from the policy (tree and level names), the config
//! (webhook labels), the code (route templates, reasons, outcomes) or a fixed
//! set (status codes, error kinds). Descriptor values appear only on levels
//! marked `detailed`, at most `[server] detailed_max_values` of them per level;
//! past that they share one `value="__other__"` series.
//!
//! # Adding a family
//!
//! One line where the counted thing lives, then bump the handle it returns:
//!
//! ```
//! # use limitree_server::metrics::{Metrics, Counter};
//! let metrics = Metrics::new();
//! let reloads: Counter = metrics.register("limitree_example_reloads", "Policy reloads.", Counter::default());
//! reloads.inc();
//! assert!(metrics.render().contains("limitree_example_reloads_total 1\n"));
//! ```

pub mod decisions;
pub mod http;
pub mod relay;
pub mod reload;
pub mod store;

use parking_lot::Mutex;
pub use prometheus_client::collector::Collector;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};

/// The `Content-Type` of `GET /metrics` (Prometheus text, version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A server's metric families.
///
/// The registry is behind a mutex only for registering (which needs `&mut`)
/// and rendering; recording never touches it (each part keeps the handles
/// [`Metrics::register`] returned).
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry holding `limitree_build_info{version}` and nothing else yet.
    pub fn new() -> Metrics {
        let metrics = Metrics {
            registry: Mutex::new(Registry::default()),
        };
        metrics.registry.lock().register(
            "limitree_build",
            "The running limitree's version (always 1)",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        metrics
    }

    /// Registers `metric` as `name` (a counter gets `_total` appended) and
    /// returns it: metrics are handles onto shared values, so the returned one
    /// counts into what `/metrics` shows.
    pub fn register<M: Metric + Clone>(&self, name: &str, help: &str, metric: M) -> M {
        self.registry
            .lock()
            .register(name, help.trim_end_matches('.'), metric.clone());
        metric
    }

    /// Registers a collector: families computed at each scrape from values
    /// kept elsewhere (queue depths, a component's own atomics).
    pub fn register_collector(&self, collector: impl Collector) {
        self.registry.lock().register_collector(Box::new(collector));
    }

    /// The exposition, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry.lock())
            .expect("writing to a String does not fail");
        text
    }
}

/// Buckets of a latency histogram (seconds): a decision in memory takes a few
/// microseconds, one through Redis a few hundred, a slow store up to its
/// timeout; the top buckets catch the outliers.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// A latency histogram with [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Measures real elapsed time for a latency histogram, on the TSC through
/// `quanta` where it is stable (as the library's `SystemClock`): a few
/// instructions, where `std::time::Instant` makes a `clock_gettime` call at
/// each end, on every request.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(quanta::Instant);

impl Stopwatch {
    /// Starts now.
    pub fn start() -> Stopwatch {
        Stopwatch(quanta::Instant::now())
    }

    /// Seconds since [`Stopwatch::start`].
    pub fn seconds(self) -> f64 {
        quanta::Instant::now().duration_since(self.0).as_secs_f64()
    }
}
