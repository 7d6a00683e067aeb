//! `GET /metrics` (Prometheus text format), and the one family only
//! `POST /v1/check` knows: `limitree_check_decisions_total{tree,reason}`.
//!
//! Every family lives in the server's [`Metrics`] registry
//! ([`crate::metrics`] says which part records what); this handler only
//! renders it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use limitree::{Decision, Policy};
use prometheus_client::encoding::EncodeLabelSet;

use super::AppState;
use crate::metrics::decisions::REASONS;
use crate::metrics::{CONTENT_TYPE, Counter, Family, Metrics};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    tree: Arc<str>,
    reason: &'static str,
}

/// `POST /v1/check` decisions (commits: not peeks or dry runs), per tree and
/// reason. The series of every tree are made at start, so each shows from the
/// first scrape, and recording is an atomic add.
#[derive(Debug)]
pub struct CheckCounters {
    family: Family<Labels, Counter>,
    /// Per tree. Trees a reloaded policy adds are added
    /// ([`CheckCounters::track`]); none is removed, so a counter never goes
    /// back.
    trees: parking_lot::RwLock<Vec<(String, [Counter; REASONS.len()])>>,
}

impl CheckCounters {
    /// Zeroed counters for every tree of `policy`, registered in `metrics`.
    pub fn new(policy: &Policy, metrics: &Metrics) -> CheckCounters {
        let counters = CheckCounters {
            family: metrics.register(
                "limitree_check_decisions",
                "POST /v1/check decisions (not peeks or dry runs), by tree and reason.",
                Family::default(),
            ),
            trees: parking_lot::RwLock::default(),
        };
        counters.track(policy);
        counters
    }

    /// Adds zeroed series for the trees of `policy` (a reloaded one) not yet
    /// counted.
    pub fn track(&self, policy: &Policy) {
        let mut trees = self.trees.write();
        for t in policy.trees() {
            if trees.iter().any(|(name, _)| *name == t.name) {
                continue;
            }
            let tree: Arc<str> = Arc::from(t.name.as_str());
            let counters = REASONS.map(|r| {
                self.family.get_or_create_owned(&Labels {
                    tree: Arc::clone(&tree),
                    reason: r.as_str(),
                })
            });
            trees.push((t.name.clone(), counters));
        }
    }

    /// Counts one decision.
    pub fn record(&self, decision: &Decision) {
        let reason = REASONS.iter().position(|r| *r == decision.reason);
        let trees = self.trees.read();
        let tree = trees.iter().find(|(name, _)| *name == decision.tree);
        if let (Some(reason), Some((_, counts))) = (reason, tree) {
            counts[reason].inc();
        }
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut response = state.metrics.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}
