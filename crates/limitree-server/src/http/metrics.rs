//! `GET /metrics` (Prometheus text format): the limiter's decisions and the
//! relay's counters.
//!
//! Counters are plain atomics owned by the server's state rather than a
//! process-global `metrics` recorder, so several servers in one process (the
//! tests run many) each count only their own traffic. Labels come from the
//! policy (tree names) and fixed sets (reasons): a client cannot create new
//! series, so the output stays bounded under any input.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use limitree::{Decision, Policy, Reason};

use super::AppState;

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
    trees: Vec<(String, [AtomicU64; REASONS.len()])>,
}

impl CheckCounters {
    /// Zeroed counters for every tree of `policy`.
    pub fn new(policy: &Policy) -> CheckCounters {
        CheckCounters {
            trees: policy
                .trees()
                .iter()
                .map(|t| (t.name.clone(), Default::default()))
                .collect(),
        }
    }

    /// Counts one decision.
    pub fn record(&self, decision: &Decision) {
        let reason = REASONS.iter().position(|r| *r == decision.reason);
        let tree = self.trees.iter().find(|(name, _)| *name == decision.tree);
        if let (Some(reason), Some((_, counts))) = (reason, tree) {
            counts[reason].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text for these counters.
    pub fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP limitree_check_decisions_total POST /v1/check decisions, by tree and reason.\n",
        );
        out.push_str("# TYPE limitree_check_decisions_total counter\n");
        for (tree, counts) in &self.trees {
            for (reason, count) in REASONS.iter().zip(counts) {
                let _ = writeln!(
                    out,
                    "limitree_check_decisions_total{{tree=\"{tree}\",reason=\"{}\"}} {}",
                    reason.as_str(),
                    count.load(Ordering::Relaxed)
                );
            }
        }
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = String::new();
    state.checks.render(&mut text);
    text.push_str(&state.notify.render_metrics());
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
