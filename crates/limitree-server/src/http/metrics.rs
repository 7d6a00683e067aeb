//! `GET /metrics` (Prometheus text format): the limiter's decisions and the
//! relay's counters.
//!
//! Counters are plain atomics owned by the server's state rather than a
//! process-global `metrics` recorder, so several servers in one process (the
//! tests run many) each count only their own traffic. Labels come from the
//! policy (tree names) and fixed sets (reasons): a client cannot create new
//! series, so the output stays bounded under any input.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use limitree::{Decision, Policy, Reason};

use super::AppState;
use crate::grpc::GrpcCounters;
use crate::listener::ConnectionMetrics;
use crate::notify::metrics::Snapshot;

/// Every reason, in the order counters are kept and shown.
const REASONS: [Reason; 5] = [
    Reason::Ok,
    Reason::Limited,
    Reason::InsufficientCapacity,
    Reason::StoreUnavailable,
    Reason::Shadow,
];

/// `POST /v1/check` decisions, per tree and reason.
#[derive(Debug)]
pub struct CheckCounters {
    /// Per tree. Trees a reloaded policy adds are added
    /// ([`CheckCounters::track`]); none is removed, so a counter never goes
    /// back.
    trees: parking_lot::RwLock<Vec<(String, Arc<[AtomicU64; REASONS.len()]>)>>,
}

impl CheckCounters {
    /// Zeroed counters for every tree of `policy`.
    pub fn new(policy: &Policy) -> CheckCounters {
        let counters = CheckCounters {
            trees: parking_lot::RwLock::default(),
        };
        counters.track(policy);
        counters
    }

    /// Adds counters for the trees of `policy` (a reloaded one) not yet
    /// counted.
    pub fn track(&self, policy: &Policy) {
        let mut trees = self.trees.write();
        for tree in policy.trees() {
            if !trees.iter().any(|(name, _)| *name == tree.name) {
                trees.push((tree.name.clone(), Arc::default()));
            }
        }
    }

    /// Counts one decision.
    pub fn record(&self, decision: &Decision) {
        let reason = REASONS.iter().position(|r| *r == decision.reason);
        let trees = self.trees.read();
        let tree = trees.iter().find(|(name, _)| *name == decision.tree);
        if let (Some(reason), Some((_, counts))) = (reason, tree) {
            counts[reason].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text for these counters.
    pub fn render(&self, out: &mut String) {
        const NAME: &str = "limitree_check_decisions_total";
        write_header(
            out,
            NAME,
            MetricType::Counter,
            "POST /v1/check decisions, by tree and reason.",
        );
        for (tree, counts) in self.trees.read().iter() {
            for (reason, count) in REASONS.iter().zip(counts.iter()) {
                write_sample(
                    out,
                    NAME,
                    &[("tree", tree), ("reason", reason.as_str())],
                    count.load(Ordering::Relaxed),
                );
            }
        }
    }
}

/// The relay's counters ([`crate::notify::Relay::metrics`]) in the Prometheus text format.
pub fn render_relay(metrics: &Snapshot, out: &mut String) {
    const REQUESTS: &str = "limitree_notify_requests_total";
    write_header(
        out,
        REQUESTS,
        MetricType::Counter,
        "Notifications posted, by outcome.",
    );
    for (outcome, value) in metrics.requests.by_outcome() {
        write_sample(out, REQUESTS, &[("outcome", outcome)], value);
    }
    const DIGESTS: &str = "limitree_notify_digests_total";
    write_header(
        out,
        DIGESTS,
        MetricType::Counter,
        "Suppression digests queued.",
    );
    write_sample(out, DIGESTS, &[], metrics.digests);
    const DELIVERIES: &str = "limitree_notify_deliveries_total";
    write_header(
        out,
        DELIVERIES,
        MetricType::Counter,
        "Webhook call outcomes, per webhook.",
    );
    for w in &metrics.webhooks {
        for (outcome, value) in w.deliveries.by_outcome() {
            write_sample(
                out,
                DELIVERIES,
                &[("webhook", &w.webhook), ("outcome", outcome)],
                value,
            );
        }
    }
    const QUEUE_DEPTH: &str = "limitree_notify_queue_depth";
    write_header(
        out,
        QUEUE_DEPTH,
        MetricType::Gauge,
        "Notifications waiting, per webhook.",
    );
    for w in &metrics.webhooks {
        write_sample(out, QUEUE_DEPTH, &[("webhook", &w.webhook)], w.queue_depth);
    }
}

/// The rate limit service's counters (gRPC and `POST /json`).
pub fn render_grpc(counters: &GrpcCounters, out: &mut String) {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    const DECISIONS: &str = "limitree_rls_decisions_total";
    write_header(
        out,
        DECISIONS,
        MetricType::Counter,
        "ShouldRateLimit answers (gRPC and POST /json), by domain and overall code.",
    );
    for (domain, codes) in counters.by_domain.read().iter() {
        for (code, value) in ["ok", "over_limit"].iter().zip(codes.iter()) {
            write_sample(
                out,
                DECISIONS,
                &[("domain", domain), ("code", code)],
                load(value),
            );
        }
    }
    const UNKNOWN: &str = "limitree_rls_unknown_domain_total";
    write_header(
        out,
        UNKNOWN,
        MetricType::Counter,
        "ShouldRateLimit calls for a domain that names no tree.",
    );
    write_sample(out, UNKNOWN, &[], load(&counters.unknown_domain));
    const ERRORS: &str = "limitree_rls_errors_total";
    write_header(
        out,
        ERRORS,
        MetricType::Counter,
        "ShouldRateLimit calls answered with an error status (invalid argument, store failure).",
    );
    write_sample(out, ERRORS, &[], load(&counters.errors));
}

/// A metric family's type, as `# TYPE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (a `_total`).
    Counter,
    /// Goes up and down (a depth).
    Gauge,
}

/// Writes a family's `# HELP` and `# TYPE` lines; its samples follow
/// ([`write_sample`]). Names and help text are ours (fixed strings), so they
/// are written as given.
pub fn write_header(out: &mut String, name: &str, kind: MetricType, help: &str) {
    let kind = match kind {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
    };
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes one sample line, `name{label="value",…} value`. Label values come
/// from the config (tree names, webhook labels), so `\`, `"` and newlines in
/// them are escaped as the text format requires: one odd name must not break
/// the whole scrape.
pub fn write_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, label_value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            for c in label_value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Policy reloads, whether the running policy is stale, and its hash.
pub fn render_reload(reload: &crate::reload::Reloader, out: &mut String) {
    let (ok, error) = reload.counts();
    let status = reload.status();
    const RELOADS: &str = "limitree_policy_reloads_total";
    write_header(
        out,
        RELOADS,
        MetricType::Counter,
        "Policy reloads (SIGHUP, file change, POST /v1/reload), by result.",
    );
    write_sample(out, RELOADS, &[("result", "ok")], ok);
    write_sample(out, RELOADS, &[("result", "error")], error);
    const STALE: &str = "limitree_policy_stale";
    write_header(
        out,
        STALE,
        MetricType::Gauge,
        "1 while the config file holds an invalid change and the previous policy serves.",
    );
    write_sample(out, STALE, &[], u64::from(status.stale_since_ms.is_some()));
    const INFO: &str = "limitree_policy_info";
    write_header(
        out,
        INFO,
        MetricType::Gauge,
        "The policy in force, by its hash (always 1).",
    );
    write_sample(out, INFO, &[("hash", &status.policy_hash)], 1);
}

/// `GET /metrics`. The connection counters come with each request from
/// [`crate::listener`] (absent when the router is served some other way).
pub async fn metrics(
    State(state): State<AppState>,
    connections: Option<Extension<Arc<ConnectionMetrics>>>,
) -> Response {
    let mut text = String::new();
    state.checks.render(&mut text);
    render_relay(&state.notify.metrics(), &mut text);
    render_grpc(state.rls.counters(), &mut text);
    render_reload(&state.reload, &mut text);
    if let Some(Extension(connections)) = connections {
        connections.render(&mut text);
    }
    state.rls.connections().render(&mut text);
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::metrics;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        write_sample(&mut out, "m", &[("a", "x\\y\"z\nw"), ("b", "c")], 3);
        assert_eq!(out, "m{a=\"x\\\\y\\\"z\\nw\",b=\"c\"} 3\n");
        out.clear();
        write_sample(&mut out, "m", &[], 0);
        assert_eq!(out, "m 0\n");
    }

    #[test]
    fn a_snapshot_renders_every_outcome_per_webhook() {
        let counters = metrics::Counters::default();
        metrics::bump(&counters.limited);
        let hook = metrics::WebhookCounters::default();
        metrics::bump(&hook.delivered);
        let snapshot = Snapshot {
            requests: counters.requests(),
            digests: 0,
            webhooks: vec![metrics::WebhookSnapshot {
                webhook: "default".to_owned(),
                deliveries: hook.deliveries(),
                queue_depth: 2,
            }],
        };
        let mut text = String::new();
        render_relay(&snapshot, &mut text);
        assert!(text.contains("limitree_notify_requests_total{outcome=\"limited\"} 1\n"));
        assert!(text.contains("limitree_notify_requests_total{outcome=\"accepted\"} 0\n"));
        assert!(text.contains(
            "limitree_notify_deliveries_total{webhook=\"default\",outcome=\"delivered\"} 1\n"
        ));
        assert!(text.contains("limitree_notify_queue_depth{webhook=\"default\"} 2\n"));
    }
}
