//! The Slack relay's families, read from its counters at each scrape
//! ([`RelayCollector`]): the relay keeps atomics and a [`Snapshot`] of them
//! (data, not text), and this is the one place they become Prometheus text.
//!
//! - `limitree_notify_requests_total{outcome}`: `accepted`, `limited`,
//!   `queue_full`, `no_route`.
//! - `limitree_notify_digests_total`: suppression digests queued.
//! - `limitree_notify_deliveries_total{webhook,outcome}`: webhook calls,
//!   `delivered`, `rate_limited`, `failed`, `dead_lettered`.
//! - `limitree_notify_retries_total{webhook}`: calls made again after a 429
//!   or a failure.
//! - `limitree_notify_queue_depth{webhook}` (gauge): notifications waiting.
//! - `limitree_notify_delivery_latency_seconds{webhook}` (histogram):
//!   acceptance to Slack's 2xx, queueing, pacing and retries included.
//!
//! Webhook labels are `default` or `routes.<category>` from the config, never
//! URLs (a URL is a secret).

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::Collector;
use crate::notify::Relay;
use crate::notify::metrics::Snapshot;

/// Renders a relay's counters at each scrape.
#[derive(Debug)]
pub struct RelayCollector(pub Relay);

impl Collector for RelayCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        encode_snapshot(&self.0.metrics(), &mut encoder)?;
        let mut family = encoder.encode_descriptor(
            "limitree_notify_delivery_latency_seconds",
            "Seconds from a notification's acceptance to Slack's 2xx for it, per webhook",
            None,
            MetricType::Histogram,
        )?;
        for (webhook, histogram) in self.0.delivery_latencies() {
            histogram.encode(family.encode_family(&[("webhook", webhook.as_str())])?)?;
        }
        Ok(())
    }
}

/// The counter and gauge families of `snapshot`.
pub fn encode_snapshot(
    snapshot: &Snapshot,
    encoder: &mut DescriptorEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "limitree_notify_requests",
        "Notifications posted, by outcome",
        None,
        MetricType::Counter,
    )?;
    for (outcome, value) in snapshot.requests.by_outcome() {
        ConstCounter::new(value).encode(family.encode_family(&[("outcome", outcome)])?)?;
    }
    ConstCounter::new(snapshot.digests).encode(encoder.encode_descriptor(
        "limitree_notify_digests",
        "Suppression digests queued",
        None,
        MetricType::Counter,
    )?)?;
    let mut family = encoder.encode_descriptor(
        "limitree_notify_deliveries",
        "Webhook call outcomes, per webhook",
        None,
        MetricType::Counter,
    )?;
    for w in &snapshot.webhooks {
        for (outcome, value) in w.deliveries.by_outcome() {
            ConstCounter::new(value).encode(
                family.encode_family(&[("webhook", w.webhook.as_str()), ("outcome", outcome)])?,
            )?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "limitree_notify_retries",
        "Webhook calls made again after a 429 or a failure, per webhook",
        None,
        MetricType::Counter,
    )?;
    for w in &snapshot.webhooks {
        ConstCounter::new(w.deliveries.retries)
            .encode(family.encode_family(&[("webhook", w.webhook.as_str())])?)?;
    }
    let mut family = encoder.encode_descriptor(
        "limitree_notify_queue_depth",
        "Notifications waiting, per webhook",
        None,
        MetricType::Gauge,
    )?;
    for w in &snapshot.webhooks {
        ConstGauge::new(i64::try_from(w.queue_depth).unwrap_or(i64::MAX))
            .encode(family.encode_family(&[("webhook", w.webhook.as_str())])?)?;
    }
    Ok(())
}
