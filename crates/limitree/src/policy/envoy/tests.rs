//! Every example of envoyproxy/ratelimit's README "Configuration" section, as
//! config + descriptor → rule, limit and bucket; then bad input.
//!
//! The examples' YAML lives in `tests/envoy_examples/`, one file each, so the
//! server's tests (`limitree-server/tests/http/envoy_examples.rs`) serve the
//! very same files through `limitree serve` and check the answers.

use proptest::prelude::*;
use rstest::rstest;

use super::*;
use crate::policy::Algorithm;

const EX1: &str = include_str!("../../../tests/envoy_examples/ex1_mongo_cps.yaml");
const EX2: &str = include_str!("../../../tests/envoy_examples/ex2_messaging.yaml");
const EX3: &str = include_str!("../../../tests/envoy_examples/ex3_edge_proxy_per_ip.yaml");
const EX4_FLAT: &str = include_str!("../../../tests/envoy_examples/ex4_flat.yaml");
const EX4_NESTED: &str = include_str!("../../../tests/envoy_examples/ex4_nested.yaml");
const EX5: &str = include_str!("../../../tests/envoy_examples/ex5_internal.yaml");
const EX6: &str = include_str!("../../../tests/envoy_examples/ex6_shadow_mode.yaml");
const EX7: &str = include_str!("../../../tests/envoy_examples/ex7_replaces.yaml");
const EX8: &str = include_str!("../../../tests/envoy_examples/ex8_detailed_metric.yaml");
const EX9_TRAILING: &str = include_str!("../../../tests/envoy_examples/ex9_wildcard_trailing.yaml");
const EX9_MIDDLE: &str = include_str!("../../../tests/envoy_examples/ex9_wildcard_middle.yaml");
const EX9_MULTIPLE: &str = include_str!("../../../tests/envoy_examples/ex9_wildcard_multiple.yaml");
const EX10: &str = include_str!("../../../tests/envoy_examples/ex10_value_to_metric.yaml");
const EX10_WILDCARD: &str =
    include_str!("../../../tests/envoy_examples/ex10_value_to_metric_wildcard.yaml");
const EX11: &str = include_str!("../../../tests/envoy_examples/ex11_share_threshold.yaml");
const EX11_METRICS: &str =
    include_str!("../../../tests/envoy_examples/ex11_share_threshold_metrics.yaml");

fn domain(yaml: &str) -> Domain {
    match EnvoyConfig::from_yaml_str(yaml, "test.yaml") {
        Ok(d) => d,
        Err(e) => panic!("config rejected:\n{e}"),
    }
}

fn pairs<'a>(items: &[(&'a str, &'a str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// What a match should be: rule name, requests per unit, unit, bucket.
type Expected<'a> = Option<(&'a str, u64, Option<Unit>, &'a [(&'a str, &'a str)])>;

#[rstest]
#[case::ex1_users(EX1, &[("database", "users")], Some(("database=users", 500, Some(Unit::Second), &[("database", "users")][..])))]
#[case::ex1_default(EX1, &[("database", "default")], Some(("database=default", 500, Some(Unit::Second), &[("database", "default")][..])))]
#[case::ex1_other_value_no_limit(EX1, &[("database", "orders")], None)]
#[case::ex2_marketing_to_number(EX2, &[("message_type", "marketing"), ("to_number", "2061111111")], Some(("message_type=marketing.to_number", 5, Some(Unit::Day), &[("message_type", "marketing"), ("to_number", "2061111111")][..])))]
#[case::ex2_marketing_other_number_own_bucket(EX2, &[("message_type", "marketing"), ("to_number", "2062222222")], Some(("message_type=marketing.to_number", 5, Some(Unit::Day), &[("message_type", "marketing"), ("to_number", "2062222222")][..])))]
#[case::ex2_any_number(EX2, &[("to_number", "2061111111")], Some(("to_number", 100, Some(Unit::Day), &[("to_number", "2061111111")][..])))]
#[case::ex2_placeholder_has_no_limit(EX2, &[("message_type", "marketing")], None)]
#[case::ex2_other_message_type(EX2, &[("message_type", "transactional"), ("to_number", "1")], None)]
#[case::ex3_generic_ip(EX3, &[("remote_address", "50.0.0.1")], Some(("remote_address", 10, Some(Unit::Second), &[("remote_address", "50.0.0.1")][..])))]
#[case::ex3_blocked_ip_most_specific(EX3, &[("remote_address", "50.0.0.5")], Some(("remote_address=50.0.0.5", 0, Some(Unit::Second), &[("remote_address", "50.0.0.5")][..])))]
#[case::ex4_longer_descriptor_no_match(EX4_FLAT, &[("key", "value"), ("subkey", "subvalue")], None)]
#[case::ex4_same_depth_matches(EX4_FLAT, &[("key", "value")], Some(("key=value", 300, Some(Unit::Second), &[("key", "value")][..])))]
#[case::ex4_nested_matches(EX4_NESTED, &[("key", "value"), ("subkey", "subvalue")], Some(("key=value.subkey", 300, Some(Unit::Second), &[("key", "value"), ("subkey", "subvalue")][..])))]
#[case::ex4_nested_shorter_no_match(EX4_NESTED, &[("key", "value")], None)]
#[case::ex5_unlimited(EX5, &[("ldap", "cn=admin")], Some(("ldap", 0, None, &[("ldap", "cn=admin")][..])))]
#[case::ex5_limited(EX5, &[("azure", "blob")], Some(("azure", 100, Some(Unit::Minute), &[("azure", "blob")][..])))]
#[case::ex6_shadow_user_a(EX6, &[("service", "auth-service"), ("user", "user-a")], Some(("service.user=user-a", 10, Some(Unit::Second), &[("service", "auth-service"), ("user", "user-a")][..])))]
#[case::ex6_user_b(EX6, &[("service", "auth-service"), ("user", "user-b")], Some(("service.user=user-b", 20, Some(Unit::Second), &[("service", "auth-service"), ("user", "user-b")][..])))]
#[case::ex6_unknown_user(EX6, &[("service", "auth-service"), ("user", "user-c")], None)]
#[case::ex7_named(EX7, &[("key_1", "value_1"), ("user", "bkthomps")], Some(("specific_limit", 5, Some(Unit::Second), &[("key_1", "value_1"), ("user", "bkthomps")][..])))]
#[case::ex7_replacing(EX7, &[("key_2", "value_2"), ("user", "bkthomps")], Some(("key_2=value_2.user=bkthomps", 10, Some(Unit::Second), &[("key_2", "value_2"), ("user", "bkthomps")][..])))]
#[case::ex8_unspecified_value(EX8, &[("key1", "unspecified_value")], Some(("key1", 10, Some(Unit::Minute), &[("key1", "unspecified_value")][..])))]
#[case::ex8_exact_before_key_only(EX8, &[("key1", "value1")], Some(("key1=value1", 20, Some(Unit::Minute), &[("key1", "value1")][..])))]
#[case::ex9_trailing(EX9_TRAILING, &[("key1", "valueXYZ")], Some(("key1=value*", 20, Some(Unit::Minute), &[("key1", "valueXYZ")][..])))]
#[case::ex9_trailing_empty_star(EX9_TRAILING, &[("key1", "value")], Some(("key1=value*", 20, Some(Unit::Minute), &[("key1", "value")][..])))]
#[case::ex9_trailing_no_prefix(EX9_TRAILING, &[("key1", "valu")], None)]
#[case::ex9_middle(EX9_MIDDLE, &[("path", "/api/user-id/action")], Some(("path=/api/*/action", 20, Some(Unit::Minute), &[("path", "/api/user-id/action")][..])))]
#[case::ex9_middle_wrong_suffix(EX9_MIDDLE, &[("path", "/api/123/other")], None)]
#[case::ex9_multiple(EX9_MULTIPLE, &[("route", "/api/v2/resource/456/action")], Some(("route=/api/*/resource/*/action", 20, Some(Unit::Minute), &[("route", "/api/v2/resource/456/action")][..])))]
#[case::ex9_multiple_missing_segment(EX9_MULTIPLE, &[("route", "/api/v2/other/456/action")], None)]
#[case::ex10_value_to_metric(EX10, &[("route", "api"), ("http_method", "GET"), ("subject_id", "123")], Some(("route.http_method.subject_id", 60, Some(Unit::Minute), &[("route", "api"), ("http_method", "GET"), ("subject_id", "123")][..])))]
#[case::ex10_wildcard(EX10_WILDCARD, &[("user", "alice"), ("action", "readfile"), ("resource", "documents")], Some(("user.action=read*.resource", 100, Some(Unit::Minute), &[("user", "alice"), ("action", "readfile"), ("resource", "documents")][..])))]
#[case::ex10_wildcard_no_match(EX10_WILDCARD, &[("user", "alice"), ("action", "write"), ("resource", "documents")], None)]
#[case::ex11_shared_bucket(EX11, &[("files", "files/a.pdf")], Some(("files=files/*", 10, Some(Unit::Hour), &[("files", "files/*")][..])))]
#[case::ex11_isolated_bucket(EX11, &[("files_no_share", "files_no_share/a.pdf")], Some(("files_no_share=files_no_share/*", 10, Some(Unit::Hour), &[("files_no_share", "files_no_share/a.pdf")][..])))]
#[case::ex11_shared_prefix_nested(EX11_METRICS, &[("route", "api/v1"), ("method", "GET")], Some(("route=api/*.method", 60, Some(Unit::Minute), &[("route", "api/*"), ("method", "GET")][..])))]
fn readme_examples(
    #[case] yaml: &str,
    #[case] descriptor: &[(&str, &str)],
    #[case] expected: Expected<'_>,
) {
    let d = domain(yaml);
    let got = d.matches(descriptor);
    match (got, expected) {
        (None, None) => {}
        (Some(m), Some((name, rpu, unit, bucket))) => {
            assert_eq!(m.rule.name, name);
            assert_eq!(m.rule.requests_per_unit, rpu);
            assert_eq!(m.rule.unit, unit);
            assert_eq!(m.bucket, pairs(bucket));
            assert_eq!(&d.rules[m.rule_index], m.rule);
        }
        (got, expected) => panic!("got {got:?}, expected {expected:?}"),
    }
}

#[test]
fn ex1_domain_and_default_algorithm() {
    let d = domain(EX1);
    assert_eq!(d.name, "mongo_cps");
    assert_eq!(d.rules.len(), 2);
    let spec = d.rules[0].spec().unwrap();
    assert_eq!(spec.algorithm, Algorithm::FixedWindow);
    assert_eq!(spec.limit, 500);
    assert_eq!(spec.burst, 500);
    assert_eq!(spec.window, 1_000_000);
}

#[test]
fn ex3_zero_is_always_over_limit() {
    let d = domain(EX3);
    let m = d.matches(&[("remote_address", "50.0.0.5")]).unwrap();
    assert_eq!(m.rule.limit, RuleLimit::Blocked { window: 1_000_000 });
    assert!(m.rule.spec().is_none());
}

#[test]
fn ex5_unlimited_rule() {
    let d = domain(EX5);
    let m = d.matches(&[("ldap", "x")]).unwrap();
    assert!(m.rule.unlimited());
    assert_eq!(m.rule.limit, RuleLimit::Unlimited);
}

#[test]
fn ex6_shadow_flag() {
    let d = domain(EX6);
    assert!(d.rule("service.user=user-a").unwrap().shadow);
    assert!(!d.rule("service.user=user-b").unwrap().shadow);
}

#[test]
fn ex7_replaces_across_a_request() {
    let d = domain(EX7);
    let first: &[(&str, &str)] = &[("key_1", "value_1"), ("user", "bkthomps")];
    let second: &[(&str, &str)] = &[("key_2", "value_2"), ("user", "bkthomps")];
    // Alone, each descriptor has its own limit.
    let alone = d.match_request(&[first]);
    assert_eq!(alone[0].as_ref().unwrap().rule.requests_per_unit, 5);
    // Together, the replaced rule is dropped (OK, its bucket untouched) and the
    // replacing one applies.
    let both = d.match_request(&[first, second]);
    assert!(both[0].is_none());
    let m = both[1].as_ref().unwrap();
    assert_eq!(m.rule.requests_per_unit, 10);
    assert_eq!(m.rule.replaces, vec!["specific_limit".to_owned()]);
    // Order does not matter.
    let both = d.match_request(&[second, first]);
    assert!(both[0].is_some());
    assert!(both[1].is_none());
}

#[test]
fn rules_print_what_they_became() {
    let d = domain(EX3);
    assert_eq!(
        d.rules[0].to_string(),
        "remote_address: 10 per second (1s, fixed_window)"
    );
    assert_eq!(
        d.rules[1].to_string(),
        "remote_address=50.0.0.5: 0 per second (always over limit)"
    );
    let d = domain(
        "domain: d\ndescriptors:\n  - key: a\n    shadow_mode: true\n    rate_limit: {name: n, window: 30m, algorithm: gcra, burst: 3, requests_per_unit: 10, replaces: [{name: x}]}\n  - key: u\n    rate_limit: {unlimited: true}\n",
    );
    assert_eq!(
        d.rules[0].to_string(),
        "n [a]: 10 per 30m (30m, gcra, burst 3), shadow mode, replaces x"
    );
    assert_eq!(d.rules[1].to_string(), "u: unlimited");
}

#[test]
fn unlimited_rules_replace_but_are_not_replaced() {
    let d = domain(
        r"
domain: d
descriptors:
  - key: a
    rate_limit: {name: a_limit, unlimited: true, replaces: [{name: b_limit}]}
  - key: b
    rate_limit: {name: b_limit, unit: second, requests_per_unit: 1, replaces: [{name: a_limit}]}
",
    );
    let got = d.match_request(&[&[("a", "1")], &[("b", "1")]]);
    assert!(got[0].as_ref().unwrap().rule.unlimited());
    assert!(got[1].is_none());
}

#[test]
fn ex8_detailed_metric_flag() {
    let d = domain(EX8);
    assert!(d.rule("key1").unwrap().detailed_metric);
    assert!(!d.rule("key1=value1").unwrap().detailed_metric);
}

#[test]
fn wildcards_match_in_file_order_after_exact() {
    let d = domain(
        r"
domain: d
descriptors:
  - key: k
    value: ab*
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: k
    value: a*
    rate_limit: {unit: second, requests_per_unit: 2}
  - key: k
    value: abc
    rate_limit: {unit: second, requests_per_unit: 3}
  - key: k
    rate_limit: {unit: second, requests_per_unit: 4}
",
    );
    let rpu = |v: &str| d.matches(&[("k", v)]).unwrap().rule.requests_per_unit;
    assert_eq!(rpu("abc"), 3);
    assert_eq!(rpu("abd"), 1);
    assert_eq!(rpu("ax"), 2);
    assert_eq!(rpu("zzz"), 4);
}

#[test]
fn exact_match_does_not_fall_back_to_key_only_deeper() {
    // The search never backtracks: `a=x` matched, has no `b` child → no limit,
    // although the key-only `a` node has one.
    let d = domain(
        r"
domain: d
descriptors:
  - key: a
    value: x
    descriptors:
      - key: c
        rate_limit: {unit: second, requests_per_unit: 1}
  - key: a
    descriptors:
      - key: b
        rate_limit: {unit: second, requests_per_unit: 2}
",
    );
    assert!(d.matches(&[("a", "x"), ("b", "1")]).is_none());
    assert_eq!(
        d.matches(&[("a", "y"), ("b", "1")])
            .unwrap()
            .rule
            .requests_per_unit,
        2
    );
    assert!(d.matches(&[]).is_none());
}

#[test]
fn limitree_extensions() {
    let d = domain(
        r"
domain: d
descriptors:
  - key: a
    rate_limit: {window: 30m, algorithm: sliding_window, requests_per_unit: 100}
  - key: b
    rate_limit: {window: 1h, requests_per_unit: 5}
  - key: c
    rate_limit: {unit: minute, algorithm: gcra, burst: 20, requests_per_unit: 10}
  - key: m
    rate_limit: {unit: MONTH, requests_per_unit: 1}
  - key: y
    rate_limit: {unit: Year, requests_per_unit: 1}
",
    );
    let a = d.rule("a").unwrap();
    assert_eq!(a.unit, None, "30m is no single unit");
    assert_eq!(
        a.spec(),
        Some(&LimitSpec::new(
            Algorithm::SlidingWindow,
            100,
            1_800_000_000,
            100
        ))
    );
    assert_eq!(d.rule("b").unwrap().unit, Some(Unit::Hour));
    let c = d.rule("c").unwrap().spec().unwrap();
    assert_eq!((c.algorithm, c.limit, c.burst), (Algorithm::Gcra, 10, 20));
    assert_eq!(
        d.rule("m").unwrap().spec().unwrap().window,
        30 * 86_400_000_000
    );
    assert_eq!(
        d.rule("y").unwrap().spec().unwrap().window,
        365 * 86_400_000_000
    );
}

#[test]
fn anchors_and_flow_style_are_read() {
    let d = domain(
        r"
domain: d
descriptors:
  - key: a
    rate_limit: &per_second {unit: second, requests_per_unit: 7}
  - key: b
    rate_limit: *per_second
",
    );
    assert_eq!(d.rule("b").unwrap().requests_per_unit, 7);
}

#[test]
fn descriptor_without_limit_or_children_is_allowed() {
    let d = domain("domain: d\ndescriptors:\n  - key: a\n");
    assert!(d.rules.is_empty());
    assert!(d.matches(&[("a", "1")]).is_none());
    let d = domain("domain: d\n");
    assert!(d.rules.is_empty());
}

#[test]
fn metadata_is_accepted_with_a_warning() {
    let d = domain(
        "domain: d\ndescriptors:\n  - key: a\n    metadata:\n      any: [thing, {at: all}]\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
    );
    assert_eq!(d.rules.len(), 1);
    assert_eq!(d.warnings.len(), 1);
    assert!(
        d.warnings[0].contains("test.yaml: line 4: `descriptors[0].metadata`"),
        "{:?}",
        d.warnings
    );
}

#[test]
fn replaces_of_unknown_name_warns() {
    let d = domain(
        r"
domain: d
descriptors:
  - key: a
    rate_limit: {unit: second, requests_per_unit: 1, replaces: [{name: nope}]}
",
    );
    assert_eq!(d.warnings.len(), 1);
    assert!(
        d.warnings[0].contains("replaces `nope`"),
        "{:?}",
        d.warnings
    );
}

#[test]
fn files_with_the_same_domain_are_refused() {
    let err = EnvoyConfig::from_yaml_files([
        ("a.yaml", "domain: d\n"),
        ("b.yaml", "domain: e\n"),
        ("c.yaml", "domain: d\n"),
    ])
    .unwrap_err();
    assert_eq!(err.0.len(), 1);
    let text = err.to_string();
    assert!(text.starts_with("c.yaml: "), "{text}");
    assert!(text.contains("already defined in a.yaml"), "{text}");
    let ok = EnvoyConfig::from_yaml_files([("a.yaml", "domain: d\n"), ("b.yaml", "domain: e\n")])
        .unwrap();
    assert_eq!(ok.len(), 2);
}

fn errors(yaml: &str) -> String {
    match EnvoyConfig::from_yaml_str(yaml, "bad.yaml") {
        Ok(d) => panic!("accepted: {d:?}"),
        Err(e) => e.to_string(),
    }
}

const RULE_HEAD: &str = "domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n";

#[rstest]
#[case::unknown_key_with_suggestion(
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: second\n      requests_per_unti: 5\n",
    &["bad.yaml: line 6, column 7, `descriptors[0].rate_limit.requests_per_unti`", "did you mean `requests_per_unit`?"]
)]
#[case::key_at_wrong_level(
    "domain: d\ndescriptors:\n  - key: k\n    unit: second\n",
    &["line 4, column 5", "`unit` does not belong here; it is a key of a `rate_limit` block"]
)]
#[case::wrong_type_text_for_number(
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: second\n      requests_per_unit: ten\n",
    &["line 6, column 26, `descriptors[0].rate_limit.requests_per_unit`", "expected a whole number", "`ten`"]
)]
#[case::wrong_type_quoted_number(
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: second\n      requests_per_unit: \"5\"\n",
    &["without quotes"]
)]
#[case::negative_number(
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: -1}\n",
    &["expected a whole number from 0"]
)]
#[case::too_large(
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 99999999999}\n",
    &["too large; the largest allowed is 1000000000"]
)]
#[case::wrong_type_bool(
    "domain: d\ndescriptors:\n  - key: k\n    shadow_mode: maybe\n",
    &["`descriptors[0].shadow_mode`", "expected `true` or `false`, found `maybe`"]
)]
#[case::descriptors_not_a_list(
    "domain: d\ndescriptors:\n  key: k\n",
    &["line 3, column 3, `descriptors`", "expected a list of descriptors"]
)]
#[case::top_level_list("- domain: d\n", &["line 1, column 1", "expected the top of the file"])]
#[case::bad_unit(
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: minutes\n      requests_per_unit: 5\n",
    &["line 5, column 13, `descriptors[0].rate_limit.unit`", "unit `minutes` is unknown; did you mean `minute`?"]
)]
#[case::missing_unit(
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n      requests_per_unit: 5\n",
    &["`descriptors[0].rate_limit`", "`unit` is missing"]
)]
#[case::missing_requests_per_unit(
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: second\n",
    &["`requests_per_unit` is missing"]
)]
#[case::missing_domain(
    "descriptors:\n  - key: k\n",
    &["bad.yaml: line 1, column 1: `domain` is missing"]
)]
#[case::empty_domain("domain: \"\"\n", &["`domain`", "the domain is empty"])]
#[case::empty_file("# nothing\n", &["holds no YAML document"])]
#[case::missing_key(
    "domain: d\ndescriptors:\n  - value: v\n",
    &["`descriptors[0].key`", "needs a non-empty `key`"]
)]
#[case::duplicate_key_value(
    "domain: d\ndescriptors:\n  - key: k\n    value: v\n  - key: k\n    value: v\n",
    &["line 5, column 5, `descriptors[1]`", "`key: k` with `value: v` is already defined at this level (line 3)"]
)]
#[case::duplicate_key_only(
    "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - key: k\n      - key: k\n",
    &["`descriptors[0].descriptors[1]`", "`key: k` without a value is already defined"]
)]
#[case::duplicate_map_key(
    "domain: d\ndomain: e\n",
    &["line 2, column 1, `domain`", "given twice (first on line 1)"]
)]
#[case::unlimited_with_unit(
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unlimited: true, unit: second}\n",
    &["`descriptors[0].rate_limit.unit`", "counts nothing"]
)]
#[case::replaces_self(
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {name: me, unit: second, requests_per_unit: 1, replaces: [{name: me}]}\n",
    &["cannot replace itself"]
)]
#[case::replaces_empty(
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1, replaces: [{name: \"\"}]}\n",
    &["`descriptors[0].rate_limit.replaces[0]`", "needs the `name`"]
)]
#[case::duplicate_rule_name(
    "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {name: n, unit: second, requests_per_unit: 1}\n  - key: b\n    rate_limit: {name: n, unit: second, requests_per_unit: 1}\n",
    &["`descriptors[1].rate_limit.name`", "already used on line 4"]
)]
#[case::share_threshold_without_wildcard(
    "domain: d\ndescriptors:\n  - key: k\n    value: v\n    share_threshold: true\n",
    &["only applies to a wildcard"]
)]
#[case::burst_without_gcra(
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1, burst: 5}\n",
    &["`burst` applies only to `algorithm: gcra`, not `fixed_window`"]
)]
#[case::unit_and_window(
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, window: 30m, requests_per_unit: 1}\n",
    &["either `unit` or limitree's `window`"]
)]
#[case::window_without_unit(
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {window: 30, requests_per_unit: 1}\n",
    &["window `30` has no unit; write `30s`"]
)]
#[case::window_in_words(
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {window: 30 minutes, requests_per_unit: 1}\n",
    &["`30m`"]
)]
#[case::bad_algorithm(
    "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, algorithm: leaky, requests_per_unit: 1}\n",
    &["algorithm `leaky` is unknown"]
)]
#[case::unsupported_quota_mode(
    "domain: d\ndescriptors:\n  - key: k\n    quota_mode: true\n",
    &["`quota_mode` is an envoyproxy/ratelimit setting limitree does not support: there is no quota mode"]
)]
#[case::yaml_name_equals_a_path(
    "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1}\n  - key: b\n    rate_limit: {name: a, unit: second, requests_per_unit: 1}\n",
    &["line 6", "would be called `a`, like the rule on line 4"]
)]
#[case::paths_coincide(
    "domain: d\ndescriptors:\n  - key: a\n    value: b.c\n    rate_limit: {unit: second, requests_per_unit: 1}\n  - key: a\n    value: b\n    descriptors:\n      - key: c\n        rate_limit: {unit: second, requests_per_unit: 1}\n",
    &["would be called `a=b.c`"]
)]
#[case::not_yaml("domain: d\ndescriptors: [\n", &["bad.yaml: line", "not valid YAML"])]
#[case::non_scalar_key("domain: d\n? [a, b]\n: c\n", &["keys must be plain names"])]
fn bad_input(#[case] yaml: &str, #[case] expected: &[&str]) {
    let text = errors(yaml);
    for part in expected {
        assert!(text.contains(part), "missing {part:?} in:\n{text}");
    }
}

#[test]
fn rule_head_is_a_valid_prefix() {
    // The constant the next tests build on parses with a unit added.
    domain(&format!(
        "{RULE_HEAD}      unit: second\n      requests_per_unit: 1\n"
    ));
}

#[test]
fn collects_every_error() {
    let text = errors(&format!(
        "{RULE_HEAD}      unit: sekond\n      requests_per_unit: x\n  - key: k2\n    shadow_mod: true\n"
    ));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains("line 5") && lines[0].contains("did you mean `second`"));
    assert!(lines[1].contains("line 6"));
    assert!(lines[2].contains("line 8") && lines[2].contains("did you mean `shadow_mode`"));
}

#[test]
fn depth_bomb_is_refused() {
    let mut text = String::from("domain: d\ndescriptors:\n");
    for depth in 0..100 {
        let pad = "  ".repeat(depth * 2);
        text.push_str(&format!("{pad}  - key: k{depth}\n{pad}    descriptors:\n"));
    }
    let err = errors(&text);
    assert!(err.contains("nested more than 64 deep"), "{err}");
    // 32 descriptor levels (a list and a mapping each) fit; the 33rd does not.
    assert!(err.contains("bad.yaml: line 65"), "{err}");
    let flow = format!("domain: d\ndescriptors: {}", "[".repeat(1_000_000));
    assert!(errors(&flow).contains("bad.yaml: line 2"));
}

#[test]
fn huge_values_are_cut_in_messages() {
    let long = "x".repeat(100_000);
    let text = errors(&format!(
        "domain: d\ndescriptors:\n  - key: k\n    shadow_mode: {long}\n"
    ));
    assert!(text.len() < 1_000, "{} bytes", text.len());
    assert!(text.contains("(100000 characters)"), "{text}");
    let text = errors(&format!(
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {{unit: {long}, requests_per_unit: 1}}\n"
    ));
    assert!(text.len() < 1_000, "{} bytes", text.len());
}

#[test]
fn pattern_matching() {
    let p = Pattern::new("a*b*c");
    assert!(p.matches("abc"));
    assert!(p.matches("a-b-c"));
    assert!(!p.matches("ac"));
    assert!(!p.matches("abca-"));
    // Prefix and suffix may not overlap.
    assert!(!Pattern::new("ab*ba").matches("aba"));
    assert!(Pattern::new("*").matches(""));
    assert!(Pattern::new("**").matches("anything"));
}

proptest! {
    #[test]
    fn never_panics(text in "[a-z:\\- \\n\\[\\]{}&*!|>'\"#0-9_,?]{0,200}") {
        let _ = EnvoyConfig::from_yaml_str(&text, "fuzz.yaml");
    }

    #[test]
    fn never_panics_on_config_shapes(
        key in "[a-z_]{1,20}",
        value in "[a-z*]{0,6}",
        unit in "[a-z]{0,8}",
        n in 0u64..3_000_000_000,
    ) {
        let text = format!(
            "domain: d\ndescriptors:\n  - key: {key}\n    value: \"{value}\"\n    rate_limit:\n      unit: {unit}\n      requests_per_unit: {n}\n"
        );
        if let Ok(d) = EnvoyConfig::from_yaml_str(&text, "fuzz.yaml") {
            let _ = d.matches(&[("k", "v")]);
        }
    }
}

const SHARED_NESTED: &str = r"
domain: d
descriptors:
  - key: tenant
    value: t-*
    share_threshold: true
    descriptors:
      - key: path
        value: /v1/*
        descriptors:
          - key: method
            rate_limit: {unit: minute, requests_per_unit: 5}
  - key: tenant
    value: x-*
    descriptors:
      - key: path
        value: /v1/*
        share_threshold: true
        rate_limit: {unit: minute, requests_per_unit: 6}
";

/// `share_threshold` acts at the level it is written on, also above the rule's
/// level: only that entry of the bucket becomes the pattern.
#[rstest]
#[case::shared_above_the_rule(
    &[("tenant", "t-1"), ("path", "/v1/a"), ("method", "GET")],
    &[("tenant", "t-*"), ("path", "/v1/a"), ("method", "GET")]
)]
#[case::shared_at_the_rule(
    &[("tenant", "x-1"), ("path", "/v1/a")],
    &[("tenant", "x-1"), ("path", "/v1/*")]
)]
fn share_threshold_per_level(#[case] descriptor: &[(&str, &str)], #[case] bucket: &[(&str, &str)]) {
    let d = domain(SHARED_NESTED);
    assert_eq!(d.matches(descriptor).unwrap().bucket, pairs(bucket));
}

#[test]
fn non_utf8_bytes_name_the_line() {
    let err = EnvoyConfig::from_yaml_bytes(b"domain: d\ndescriptors:\n  - key: \xff\n", "bin.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("bin.yaml: line 3, byte 10 of the line: the file is not UTF-8"),
        "{err}"
    );
    assert!(EnvoyConfig::from_yaml_bytes(b"domain: d\n", "ok.yaml").is_ok());
}
