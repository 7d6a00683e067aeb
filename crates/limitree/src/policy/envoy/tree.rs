//! An envoyproxy/ratelimit [`Domain`] as a limitree [`Tree`].
//!
//! Each domain becomes a tree named after it, and each rule with a counted
//! limit a [`Level`] of that tree: named after the rule ([`Rule::name`]), `by`
//! the keys of the rule's descriptor path, holding the rule's [`LimitSpec`],
//! `shadow` its `shadow_mode`, never required, with the default
//! `max_buckets`. Rules that count nothing have no level: `unlimited: true`
//! is always `OK`, and `requests_per_unit: 0` ([`RuleLimit::Blocked`]) makes
//! the call over the limit without charging anything (decided by
//! [`ChainOutcome::combine`](crate::ChainOutcome::combine) from the chain's
//! [`Chain::blocked`](crate::Chain::blocked) rules). The tree keeps its
//! domain for matching ([`Selection::Envoy`]): a request's chain is the
//! bucket of every rule its descriptors match
//! ([`Tree::chain_for_descriptors`]).
//!
//! A domain may have any number of rules; only a chain is bounded
//! ([`MAX_LEVELS`](crate::policy::MAX_LEVELS) buckets). A rule deeper than
//! [`MAX_BY_KEYS`] descriptor entries is refused here, with its line.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Domain, Level as NodeLevel, Rule, RuleLimit};
use crate::policy::{
    DEFAULT_MAX_BUCKETS, Level, MAX_BY_KEYS, Policy, PolicyError, PolicyErrors, Selection, Tree,
};

/// An envoyproxy/ratelimit domain kept by its tree, for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainTree {
    /// The domain.
    pub domain: Domain,
    /// Per rule (by index in the domain's [`Domain::rules`]), the index of its
    /// level in the tree: `Some` for a counted rule, `None` for an unlimited or
    /// blocking one.
    pub rule_levels: Vec<Option<usize>>,
}

impl DomainTree {
    /// The level of the rule at `rule_index`, if it is counted.
    pub fn level_of(&self, rule_index: usize) -> Option<usize> {
        self.rule_levels.get(rule_index).copied().flatten()
    }
}

/// [`Policy::from_envoy_domains`].
pub(crate) fn policy_from_domains(domains: Vec<Domain>) -> Result<Policy, PolicyErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if domains.is_empty() {
        errors.push(PolicyError::new(
            "<envoy config>",
            "",
            "no domains; give at least one envoyproxy/ratelimit YAML file with `domain:` and `descriptors:`",
        ));
    }
    let mut names = HashSet::new();
    let mut trees = Vec::with_capacity(domains.len());
    for (index, domain) in domains.into_iter().enumerate() {
        if !names.insert(domain.name.clone()) {
            errors.push(PolicyError::new(
                &domain.source,
                "",
                format!(
                    "domain `{}` is defined twice; each domain must be in one file",
                    super::load::shorten(&domain.name)
                ),
            ));
            continue;
        }
        warnings.extend(domain.warnings.iter().cloned());
        match tree_of(domain, index) {
            Ok(tree) => trees.push(tree),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(Policy::from_parts(trees, warnings))
    } else {
        Err(PolicyErrors(errors))
    }
}

fn tree_of(domain: Domain, index: usize) -> Result<Tree, Vec<PolicyError>> {
    let mut keys: Vec<Option<Vec<String>>> = vec![None; domain.rules.len()];
    rule_keys(&domain, &domain.root, &mut Vec::new(), &mut keys);
    let mut errors = Vec::new();
    let mut levels = Vec::new();
    let mut rule_levels = Vec::with_capacity(domain.rules.len());
    for (rule, keys) in domain.rules.iter().zip(keys) {
        let keys = keys.unwrap_or_default();
        if keys.len() > MAX_BY_KEYS {
            errors.push(PolicyError::new(
                &domain.source,
                &format!("line {}", rule.line),
                format!(
                    "rule `{}` sits {} descriptor entries deep; limitree counts rules at most \
                     {MAX_BY_KEYS} entries deep; shorten its descriptor path",
                    super::load::shorten(&rule.name),
                    keys.len()
                ),
            ));
            rule_levels.push(None);
            continue;
        }
        match &rule.limit {
            RuleLimit::Limited(spec) => {
                rule_levels.push(Some(levels.len()));
                levels.push(level_of(rule, keys, *spec));
            }
            RuleLimit::Blocked { .. } | RuleLimit::Unlimited => rule_levels.push(None),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Tree {
        name: domain.name.clone(),
        levels,
        index,
        selection: Selection::Envoy(Arc::new(DomainTree {
            domain,
            rule_levels,
        })),
        shares: Vec::new(),
    })
}

fn level_of(rule: &Rule, by: Vec<String>, spec: crate::policy::LimitSpec) -> Level {
    // A rule whose entries all have fixed values has one bucket: its values
    // are in its name already.
    let detailed = rule.detailed_metric && !by.is_empty();
    Level {
        name: rule.name.clone(),
        by,
        spec,
        overrides: Vec::new(),
        override_index: crate::values::ValuesIndex::default(),
        shadow: rule.shadow,
        required: false,
        max_buckets: DEFAULT_MAX_BUCKETS,
        detailed,
    }
}

/// Each rule's descriptor keys, root first, from the node tree.
fn rule_keys(
    domain: &Domain,
    level: &NodeLevel,
    trail: &mut Vec<String>,
    out: &mut [Option<Vec<String>>],
) {
    for (key, entries) in &level.by_key {
        let ids = entries
            .exact
            .values()
            .copied()
            .chain(entries.wildcards.iter().map(|&(_, id)| id))
            .chain(entries.key_only);
        for id in ids {
            let node = &domain.nodes[id];
            trail.push(key.clone());
            if let Some(rule) = node.rule {
                out[rule] = Some(trail.clone());
            }
            rule_keys(domain, &node.children, trail, out);
            trail.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::envoy::EnvoyConfig;

    const YAML: &str = r#"
domain: messaging
descriptors:
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit:
          unit: day
          requests_per_unit: 5
  - key: to_number
    rate_limit:
      unit: day
      requests_per_unit: 100
    shadow_mode: true
  - key: blocked
    rate_limit:
      unit: second
      requests_per_unit: 0
  - key: free
    rate_limit:
      unlimited: true
"#;

    #[test]
    fn counted_rules_become_levels() {
        let domain = EnvoyConfig::from_yaml_str(YAML, "messaging.yaml").unwrap();
        let policy = Policy::from_envoy_domains(vec![domain]).unwrap();
        let tree = policy.tree("messaging").unwrap();
        let levels: Vec<(&str, Vec<&str>, u64, bool, bool)> = tree
            .levels
            .iter()
            .map(|l| {
                (
                    l.name.as_str(),
                    l.by.iter().map(String::as_str).collect(),
                    l.spec.limit,
                    l.shadow,
                    l.required,
                )
            })
            .collect();
        assert_eq!(
            levels,
            [
                (
                    "message_type=marketing.to_number",
                    vec!["message_type", "to_number"],
                    5,
                    false,
                    false
                ),
                ("to_number", vec!["to_number"], 100, true, false),
            ]
        );
        let envoy = tree.envoy().unwrap();
        assert_eq!(envoy.rule_levels, [Some(0), Some(1), None, None]);
    }

    #[test]
    fn detailed_metric_marks_the_level_detailed() {
        let yaml = "domain: d\ndescriptors:\n  - key: a\n    detailed_metric: true\n    rate_limit: {unit: second, requests_per_unit: 1}\n  - key: b\n    rate_limit: {unit: second, requests_per_unit: 1}\n";
        let domain = EnvoyConfig::from_yaml_str(yaml, "d.yaml").unwrap();
        let policy = Policy::from_envoy_domains(vec![domain]).unwrap();
        let detailed: Vec<(&str, bool)> = policy
            .tree("d")
            .unwrap()
            .levels
            .iter()
            .map(|l| (l.name.as_str(), l.detailed))
            .collect();
        assert_eq!(detailed, [("a", true), ("b", false)]);
    }

    #[test]
    fn a_domain_given_twice_is_an_error() {
        let domain = EnvoyConfig::from_yaml_str(YAML, "a.yaml").unwrap();
        let err = Policy::from_envoy_domains(vec![domain.clone(), domain]).unwrap_err();
        assert!(err.to_string().contains("defined twice"), "{err}");
    }

    #[test]
    fn rules_deeper_than_max_by_keys_are_refused() {
        let mut yaml = String::from("domain: deep\ndescriptors:\n");
        let depth = MAX_BY_KEYS + 1;
        for i in 0..depth {
            let pad = "  ".repeat(2 * i);
            yaml.push_str(&format!("{pad}  - key: k{i}\n"));
            if i + 1 == depth {
                yaml.push_str(&format!(
                    "{pad}    rate_limit:\n{pad}      unit: second\n{pad}      requests_per_unit: 1\n"
                ));
            } else {
                yaml.push_str(&format!("{pad}    descriptors:\n"));
            }
        }
        let domain = EnvoyConfig::from_yaml_str(&yaml, "deep.yaml").unwrap();
        let err = Policy::from_envoy_domains(vec![domain]).unwrap_err();
        assert!(
            err.to_string().contains("9 descriptor entries deep"),
            "{err}"
        );
    }
}
