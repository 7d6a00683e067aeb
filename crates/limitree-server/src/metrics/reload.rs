//! Policy reloads, read from the [`Reloader`] at each scrape
//! ([`ReloadCollector`]):
//!
//! - `limitree_policy_reloads_total{result}`: `ok`, `error` (SIGHUP, file
//!   change, `POST /v1/reload`).
//! - `limitree_policy_stale` (gauge): 1 while the config file holds an
//!   invalid change and the previous policy serves.
//! - `limitree_policy_info{hash}` (gauge, always 1): the policy in force, by
//!   its stable hash ([`crate::reload::policy_hash`]).

use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::Collector;
use crate::reload::Reloader;

/// Renders a reloader's counts and status at each scrape.
#[derive(Debug)]
pub struct ReloadCollector(pub Arc<Reloader>);

impl Collector for ReloadCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (ok, error) = self.0.counts();
        let status = self.0.status();
        let mut family = encoder.encode_descriptor(
            "limitree_policy_reloads",
            "Policy reloads (SIGHUP, file change, POST /v1/reload), by result",
            None,
            MetricType::Counter,
        )?;
        for (result, count) in [("ok", ok), ("error", error)] {
            ConstCounter::new(count).encode(family.encode_family(&[("result", result)])?)?;
        }
        ConstGauge::new(i64::from(status.stale_since_ms.is_some())).encode(
            encoder.encode_descriptor(
                "limitree_policy_stale",
                "1 while the config file holds an invalid change and the previous policy serves",
                None,
                MetricType::Gauge,
            )?,
        )?;
        let mut family = encoder.encode_descriptor(
            "limitree_policy_info",
            "The policy in force, by its hash (always 1)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1_i64)
            .encode(family.encode_family(&[("hash", status.policy_hash.as_str())])?)
    }
}
