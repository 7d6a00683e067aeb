//! Where a bucket lives in Redis.
//!
//! ```text
//! {<key_prefix>:<tree>}:<level>:<algorithm>[:<len>:<by key>=<len>:<value>]…
//! {limitree:notifications}:global:sl
//! {limitree:notifications}:category:sl:8:category=6:errors
//! ```
//!
//! - The part in braces is a Redis Cluster **hash tag**: only it is hashed, so
//!   every bucket of a tree lands in one slot and one script may touch them all
//!   (a script may only use keys of one slot).
//! - Level names of native trees are plain (`[A-Za-z0-9_.-]`, checked by the
//!   policy) and written as they are. An envoyproxy/ratelimit rule's name may
//!   hold any character (`key=value` paths, values with `:`), so a name that is
//!   not plain is written `~<byte length>:<name>`: `~` is never in a plain
//!   name, and the length keeps the name from running into what follows.
//! - The algorithm's key code (`sl`, `sw2`, `gc2`, `fw2`) is part of the key, so a
//!   policy reload that changes a level's algorithm starts its buckets afresh, as
//!   the memory store does, instead of reading another algorithm's state. The
//!   digit is the state's encoding: sliding_window, gcra and fixed_window states
//!   are packed doubles (`decide.lua`), where the first encoding, decimal text,
//!   lived under `sw`, `gc` and `fw`. Distinct keys keep instances of the two
//!   encodings apart during a rolling upgrade (each side counts its own buckets
//!   until the old instances stop: one window may admit up to the limit on each
//!   side) instead of one misreading the other's state; the text keys expire by
//!   their TTL.
//! - Each descriptor value is written with its `by` key, as
//!   `<byte length>:<key>=<byte length>:<value>`: keys and values may hold any
//!   byte, including `:`, `=` and `,`, and the length prefixes keep `["a,b"]`,
//!   `["a", "b"]` and `["a:1:b"]` apart. The keys are there so that a bucket is
//!   named by everything that identifies it: a reload that changes a level's
//!   `by` keys (same level, same algorithm) starts its buckets afresh, as the
//!   memory store does, instead of reading the old keys' counts. (Keys written
//!   before the `by` keys were part of them, `…:sl:6:errors`, are not read
//!   any more and expire by their TTL.)
//! - A sliding_log bucket also has `<bucket key>:m`, a packed summary of its log
//!   (entries, units beyond one per entry, oldest and newest time), so most
//!   decisions read one small string instead of the sorted set; see
//!   `decide.lua`. (limitree 0.1 kept the extra units in `<bucket key>:u`
//!   instead; such a bucket is rebuilt from its log on first use.) Neither can be
//!   another bucket's key: after the algorithm code comes either nothing or
//!   `:<digits>:`.

use std::fmt::Write as _;

use crate::chain::Bucket;
use crate::policy::Algorithm;

/// The short code of an algorithm, in script arguments.
pub(super) fn algorithm_code(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::SlidingLog => "sl",
        Algorithm::SlidingWindow => "sw",
        Algorithm::Gcra => "gc",
        Algorithm::FixedWindow => "fw",
    }
}

/// The code of an algorithm and its state's encoding, in keys.
fn key_code(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::SlidingLog => "sl",
        Algorithm::SlidingWindow => "sw2",
        Algorithm::Gcra => "gc2",
        Algorithm::FixedWindow => "fw2",
    }
}

/// The hash tag every key of `tree` starts with: `{<key_prefix>:<tree>}`.
pub fn tree_tag(key_prefix: &str, tree: &str) -> String {
    let mut tag = String::with_capacity(key_prefix.len() + tree.len() + 3);
    push_tree_tag(&mut tag, key_prefix, tree);
    tag
}

fn push_tree_tag(out: &mut String, key_prefix: &str, tree: &str) {
    out.push('{');
    out.push_str(key_prefix);
    out.push(':');
    out.push_str(tree);
    out.push('}');
}

/// The key of `bucket` (of a chain in `tree`) in Redis.
pub fn bucket_key(key_prefix: &str, tree: &str, bucket: &Bucket<'_>) -> String {
    let mut key = String::new();
    push_bucket_key(&mut key, key_prefix, tree, bucket);
    key
}

/// Appends [`bucket_key`] to `out`: on the hot path a decision's keys share one
/// buffer, sized up front rather than grown piece by piece.
pub(super) fn push_bucket_key(out: &mut String, key_prefix: &str, tree: &str, bucket: &Bucket<'_>) {
    let level = bucket.level.name.as_str();
    let code = key_code(bucket.spec.algorithm);
    // Per value: its key, three colons, `=` and two lengths of at most 3
    // digits (keys and values are at most 256 bytes, checked by the chain).
    let values: usize = bucket
        .values
        .iter()
        .zip(&bucket.level.by)
        .map(|(v, k)| v.len() + k.len() + 10)
        .sum();
    out.reserve(key_prefix.len() + tree.len() + level.len() + 16 + values);
    push_level_key(out, key_prefix, tree, level, code);
    for (value, key) in bucket.values.iter().zip(&bucket.level.by) {
        // Writing to a String cannot fail.
        let _ = write!(out, ":{}:{key}={}:{value}", key.len(), value.len());
    }
}

/// Appends what every bucket key of one level starts with:
/// `{<key_prefix>:<tree>}:<level>:<algorithm code>`.
fn push_level_key(out: &mut String, key_prefix: &str, tree: &str, level: &str, code: &str) {
    push_tree_tag(out, key_prefix, tree);
    out.push(':');
    if is_plain(level) {
        out.push_str(level);
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "~{}:{level}", level.len());
    }
    out.push(':');
    out.push_str(code);
}

/// What every bucket key of `level` (counting with `algorithm`) starts with;
/// a global level's one bucket has exactly this key.
pub fn level_key(key_prefix: &str, tree: &str, level: &str, algorithm: Algorithm) -> String {
    let mut key = String::new();
    push_level_key(&mut key, key_prefix, tree, level, key_code(algorithm));
    key
}

/// A SCAN `MATCH` pattern for every key that starts with `prefix` (glob
/// characters in it escaped).
pub fn match_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

/// The values of the bucket whose key is `key`, when it is a bucket key of
/// the level whose keys start with `level_key` and which has `by_keys` keys;
/// `None` for anything else (a sliding log's `:m` summary, another level's
/// key that happens to share the start).
pub fn bucket_values(key: &[u8], level_key: &str, by: &[String]) -> Option<Vec<String>> {
    let (values, rest) = values_and_rest(key, level_key, by)?;
    rest.is_empty().then_some(values)
}

/// The values of the split bucket (fair sharing) that `key` is a part of —
/// its pool (`push_pool_key`) or one of its guarantees
/// (`push_guarantee_key`, or such a key's `:m` summary): a split bucket
/// has no key of its own, its parts stand for it. `None` for anything else.
pub fn split_bucket_values(key: &[u8], level_key: &str, by: &[String]) -> Option<Vec<String>> {
    let (values, rest) = values_and_rest(key, level_key, by)?;
    (rest == b":pool" || rest == b":pool:m" || rest.starts_with(b":g:")).then_some(values)
}

/// The values of a key of the level whose keys start with `level_key`, and
/// what follows them.
fn values_and_rest<'k>(
    key: &'k [u8],
    level_key: &str,
    by: &[String],
) -> Option<(Vec<String>, &'k [u8])> {
    let mut rest = key.strip_prefix(level_key.as_bytes())?;
    let mut values = Vec::with_capacity(by.len());
    for by_key in by {
        rest = rest.strip_prefix(b":")?;
        let (key, after) = length_prefixed(rest)?;
        if key != by_key.as_bytes() {
            return None;
        }
        rest = after.strip_prefix(b"=")?;
        let (value, after) = length_prefixed(rest)?;
        values.push(String::from_utf8(value.to_vec()).ok()?);
        rest = after;
    }
    Some((values, rest))
}

/// `<digits>:<that many bytes>` at the start of `bytes`: those bytes, and
/// what follows them.
fn length_prefixed(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = bytes.iter().position(|&b| b == b':')?;
    let digits = std::str::from_utf8(&bytes[..colon]).ok()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len: usize = digits.parse().ok()?;
    let start = colon + 1;
    let end = start.checked_add(len)?;
    Some((bytes.get(start..end)?, &bytes[end..]))
}

/// The other keys a bucket's state may occupy besides its own (a sliding
/// log's summary, and limitree 0.1's unit counts): a reset deletes them too.
pub fn companion_keys(bucket_key: &str) -> [String; 2] {
    [format!("{bucket_key}:m"), format!("{bucket_key}:u")]
}

/// Appends the key of a shared parent's pool (fair sharing) to `out`: the
/// parent's bucket key and `:pool`. Neither it nor [`push_guarantee_key`]'s
/// can be a bucket's key: after a bucket key's algorithm code comes nothing
/// or `:<digits>:`.
pub(super) fn push_pool_key(out: &mut String, key_prefix: &str, tree: &str, parent: &Bucket<'_>) {
    push_bucket_key(out, key_prefix, tree, parent);
    out.push_str(":pool");
}

/// Appends the key of the guarantee of the child `values` (fair sharing) of
/// the shared `parent` to `out`: the parent's bucket key, `:g`, then each value
/// as a bucket key writes it.
pub(super) fn push_guarantee_key(
    out: &mut String,
    key_prefix: &str,
    tree: &str,
    parent: &Bucket<'_>,
    values: &[String],
) {
    push_bucket_key(out, key_prefix, tree, parent);
    out.push_str(":g");
    for value in values {
        // Writing to a String cannot fail.
        let _ = write!(out, ":{}:{value}", value.len());
    }
}

/// A name written into keys as it is (see the module docs).
fn is_plain(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn key(values: &[(&str, &str)]) -> String {
        let policy = Policy::from_toml_str(
            r#"
[[trees]]
name = "t"
[[trees.levels]]
name = "global"
limit = 10
window = "1m"
[[trees.levels]]
name = "pair"
by = ["a", "b"]
required = false
limit = 10
window = "1m"
algorithm = "gcra"
"#,
            "test",
        )
        .unwrap();
        let tree = &policy.trees()[0];
        let chain = tree.chain(values, 1).unwrap();
        chain
            .buckets
            .iter()
            .map(|l| bucket_key("limitree", &tree.name, l))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn keys_share_the_tree_hash_tag() {
        assert_eq!(key(&[]), "{limitree:t}:global:sl");
        assert_eq!(
            key(&[("a", "x"), ("b", "yz")]),
            "{limitree:t}:global:sl {limitree:t}:pair:gc2:1:a=1:x:1:b=2:yz"
        );
    }

    #[test]
    fn lengths_are_written_in_decimal() {
        let long = "v".repeat(256);
        assert_eq!(
            key(&[("a", "0123456789"), ("b", &long)]),
            format!(
                "{{limitree:t}}:global:sl {{limitree:t}}:pair:gc2:1:a=10:0123456789:1:b=256:{long}"
            )
        );
    }

    #[test]
    fn envoy_rule_names_are_escaped() {
        let domain = crate::policy::envoy::EnvoyConfig::from_yaml_str(
            "domain: d\ndescriptors:\n  - key: a\n    value: 'x:1'\n    rate_limit:\n      unit: second\n      requests_per_unit: 1\n",
            "d.yaml",
        )
        .unwrap();
        let policy = Policy::from_envoy_domains(vec![domain]).unwrap();
        let tree = &policy.trees()[0];
        let descriptors = [vec![("a", "x:1")]];
        let (chain, _) = tree.chain_for_descriptors(&descriptors, &[1]).unwrap();
        assert_eq!(
            bucket_key("limitree", &tree.name, &chain.buckets[0]),
            "{limitree:d}:~5:a=x:1:fw2:1:a=3:x:1"
        );
    }

    /// The same level and values under other `by` keys is another bucket.
    #[test]
    fn by_keys_name_the_bucket() {
        let policy = |by: &str| {
            Policy::from_toml_str(
                &format!("[[trees]]\nname = \"t\"\n[[trees.levels]]\nname = \"l\"\nby = [\"{by}\"]\nlimit = 1\nwindow = \"1m\"\n"),
                "test",
            )
            .unwrap()
        };
        let key = |by: &str| {
            let policy = policy(by);
            let descriptors = [(by, "v")];
            let chain = policy.trees()[0].chain(&descriptors, 1).unwrap();
            bucket_key("limitree", "t", &chain.buckets[0])
        };
        assert_eq!(key("team"), "{limitree:t}:l:sl:4:team=1:v");
        assert_ne!(key("team"), key("user"));
    }

    #[test]
    fn bucket_keys_read_back_into_their_values() {
        let key = key(&[("a", "x:1:y"), ("b", "z")]);
        let pair = key.split(' ').nth(1).unwrap();
        let level = level_key("limitree", "t", "pair", Algorithm::Gcra);
        let by = ["a".to_owned(), "b".to_owned()];
        assert_eq!(
            bucket_values(pair.as_bytes(), &level, &by),
            Some(vec!["x:1:y".to_owned(), "z".to_owned()])
        );
        assert_eq!(
            bucket_values(format!("{pair}:m").as_bytes(), &level, &by),
            None
        );
        assert_eq!(bucket_values(pair.as_bytes(), &level, &by[..1]), None);
        let other_keys = ["a".to_owned(), "c".to_owned()];
        assert_eq!(bucket_values(pair.as_bytes(), &level, &other_keys), None);
        assert_eq!(bucket_values(b"{limitree:t}:pairs:gc2", &level, &[]), None);
    }

    /// A split bucket (fair sharing) has no key: its pool and guarantees
    /// (and their summaries) name it; nothing else does.
    #[test]
    fn a_split_bucket_is_read_back_from_its_parts() {
        let key = key(&[("a", "x"), ("b", "z")]);
        let pair = key.split(' ').nth(1).unwrap();
        let level = level_key("limitree", "t", "pair", Algorithm::Gcra);
        let by = ["a".to_owned(), "b".to_owned()];
        let want = Some(vec!["x".to_owned(), "z".to_owned()]);
        for suffix in [":pool", ":pool:m", ":g:6:errors", ":g:6:errors:m"] {
            let part = format!("{pair}{suffix}");
            assert_eq!(
                split_bucket_values(part.as_bytes(), &level, &by),
                want,
                "{suffix}"
            );
            assert_eq!(
                bucket_values(part.as_bytes(), &level, &by),
                None,
                "{suffix}"
            );
        }
        for other in ["", ":m", ":u", ":poolx"] {
            let other = format!("{pair}{other}");
            assert_eq!(
                split_bucket_values(other.as_bytes(), &level, &by),
                None,
                "{other}"
            );
        }
    }

    #[test]
    fn match_patterns_escape_glob_characters() {
        assert_eq!(match_pattern("{p:t}:a[1]*?"), "{p:t}:a\\[1\\]\\*\\?*");
    }

    #[test]
    fn values_never_collide() {
        let joined = key(&[("a", "x:1:y"), ("b", "z")]);
        let split = key(&[("a", "x"), ("b", "y:1:z")]);
        assert_ne!(joined, split);
        assert_ne!(
            key(&[("a", "a,b"), ("b", "c")]),
            key(&[("a", "a"), ("b", "b,c")])
        );
    }
}
