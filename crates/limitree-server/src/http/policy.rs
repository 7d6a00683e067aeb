//! `GET /v1/policy`: the running policy as resolved — what
//! `limitree config check` prints about trees, as JSON.

use axum::Json;
use axum::extract::State;
use limitree::clock::micros_to_millis_ceil;
use limitree::policy::{Level, LimitSpec, Tree, format_duration};
use limitree::{Algorithm, Policy};
use serde::Serialize;

use super::AppState;

/// The reply.
#[derive(Debug, Serialize)]
pub struct PolicyView {
    /// Every tree, in policy order.
    pub trees: Vec<TreeView>,
    /// What `config check` warns about the policy.
    pub warnings: Vec<String>,
}

/// One tree.
#[derive(Debug, Serialize)]
pub struct TreeView {
    /// Its name (`tree` in requests; the Envoy domain).
    pub name: String,
    /// `native` (TOML) or `envoy` (an envoyproxy/ratelimit domain).
    pub kind: &'static str,
    /// Root first.
    pub levels: Vec<LevelView>,
    /// For an envoyproxy/ratelimit domain: where it was read, its rules as
    /// `config check` prints them, and its warnings.
    pub domain: Option<DomainView>,
}

/// An envoyproxy/ratelimit domain's own description.
#[derive(Debug, Serialize)]
pub struct DomainView {
    /// The file it was read from.
    pub source: String,
    /// Each rule, as `config check` prints it.
    pub rules: Vec<String>,
    /// What was noticed while reading it.
    pub warnings: Vec<String>,
}

/// One level.
#[derive(Debug, Serialize)]
pub struct LevelView {
    /// Its name.
    pub name: String,
    /// Descriptor keys picking the bucket; empty: one bucket (`*`).
    pub by: Vec<String>,
    /// Its limit.
    #[serde(flatten)]
    pub spec: SpecView,
    /// Counted and reported, never denies.
    pub shadow: bool,
    /// A request without the `by` descriptors is rejected (else the level is skipped).
    pub required: bool,
    /// The memory store's cap on the level's buckets; null for a global level.
    pub max_buckets: Option<usize>,
    /// Per-value limits.
    pub overrides: Vec<OverrideView>,
}

/// A limit.
#[derive(Debug, Serialize)]
pub struct SpecView {
    /// `sliding_log`, `sliding_window`, `gcra`, `fixed_window`.
    pub algorithm: &'static str,
    /// Units per window.
    pub limit: u64,
    /// The window as a duration (`30m`).
    pub window: String,
    /// The window in milliseconds.
    pub window_ms: u64,
    /// gcra only: units that may go at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
}

/// One override.
#[derive(Debug, Serialize)]
pub struct OverrideView {
    /// The values it applies to, by key.
    pub when: serde_json::Map<String, serde_json::Value>,
    /// Its limit.
    #[serde(flatten)]
    pub spec: SpecView,
}

impl SpecView {
    fn new(spec: &LimitSpec) -> SpecView {
        SpecView {
            algorithm: spec.algorithm.as_str(),
            limit: spec.limit,
            window: format_duration(spec.window),
            window_ms: micros_to_millis_ceil(spec.window),
            burst: (spec.algorithm == Algorithm::Gcra).then_some(spec.burst),
        }
    }
}

impl LevelView {
    /// `level` as the API shows it.
    pub fn new(level: &Level) -> LevelView {
        LevelView {
            name: level.name.clone(),
            by: level.by.clone(),
            spec: SpecView::new(&level.spec),
            shadow: level.shadow,
            required: level.required,
            max_buckets: (!level.is_global()).then_some(level.max_buckets),
            overrides: level
                .overrides
                .iter()
                .map(|o| OverrideView {
                    when: level
                        .by
                        .iter()
                        .zip(&o.values)
                        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                        .collect(),
                    spec: SpecView::new(&o.spec),
                })
                .collect(),
        }
    }
}

impl TreeView {
    /// `tree` as the API shows it.
    pub fn new(tree: &Tree) -> TreeView {
        TreeView {
            name: tree.name.clone(),
            kind: if tree.envoy().is_some() {
                "envoy"
            } else {
                "native"
            },
            levels: tree.levels.iter().map(LevelView::new).collect(),
            domain: tree.envoy().map(|envoy| DomainView {
                source: envoy.domain.source.clone(),
                rules: envoy.domain.rules.iter().map(|r| r.to_string()).collect(),
                warnings: envoy.domain.warnings.clone(),
            }),
        }
    }
}

impl PolicyView {
    /// `policy` as the API shows it.
    pub fn new(policy: &Policy) -> PolicyView {
        PolicyView {
            trees: policy.trees().iter().map(TreeView::new).collect(),
            warnings: policy.warnings().to_vec(),
        }
    }
}

/// `GET /v1/policy`.
pub async fn policy(State(state): State<AppState>) -> Json<PolicyView> {
    Json(PolicyView::new(&state.limiter.policy()))
}
