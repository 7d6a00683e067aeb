//! How a bucket is named in `/v1/buckets/{tree}/{level}/{bucket}`.
//!
//! - A global level's one bucket is `*`.
//! - A keyed level's bucket is its `by` keys in order, `key=value` joined by
//!   `,` — the way check replies name it (`category=errors`,
//!   `team=a,user=b`) — with every byte of a key or value outside
//!   `A-Z a-z 0-9 - . _ ~` percent-encoded (UTF-8), so a value holding `,`,
//!   `=`, `/` or `%` stays one value: `user=a%2Cb` is the value `a,b`.
//!
//! Tree and level names are percent-encoded the same way (an
//! envoyproxy/ratelimit rule's level name may hold any character). The
//! handlers read the raw segments and decode each piece once, here.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use limitree::policy::{Level, MAX_ECHO, cut};

/// Everything but the unreserved characters of RFC 3986.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` percent-encoded for a path segment.
pub fn encode(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// A raw path segment (tree or level name) decoded.
pub fn decode(raw: &str, what: &str) -> Result<String, String> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("the {what} in the path is not UTF-8 once percent-decoded"))
}

/// The bucket segment for `values` of `level` (see the module docs).
pub fn bucket_segment(level: &Level, values: &[String]) -> String {
    if level.by.is_empty() {
        return "*".to_owned();
    }
    level
        .by
        .iter()
        .zip(values)
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The whole path of a bucket.
pub fn bucket_path(tree: &str, level: &Level, values: &[String]) -> String {
    format!(
        "/v1/buckets/{}/{}/{}",
        encode(tree),
        encode(&level.name),
        bucket_segment(level, values)
    )
}

/// The values a raw bucket segment names, in `level`'s `by` order. Keys may
/// come in any order; each of the level's keys must come exactly once.
pub fn parse_bucket(raw: &str, level: &Level) -> Result<Vec<String>, String> {
    if raw == "*" {
        return if level.by.is_empty() {
            Ok(Vec::new())
        } else {
            Err(format!(
                "`*` names a global level's bucket, but level `{}` is keyed by {}; name the bucket as {}",
                level.name,
                level.by.join(", "),
                example(level)
            ))
        };
    }
    if level.by.is_empty() {
        return Err(format!(
            "level `{}` is not keyed: its one bucket is `*`",
            level.name
        ));
    }
    let mut values: Vec<Option<String>> = vec![None; level.by.len()];
    for pair in raw.split(',') {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!(
                "`{}` is not `key=value`; name the bucket as {}",
                cut(pair, MAX_ECHO),
                example(level)
            ));
        };
        let key = decode(key, "key")?;
        let value = decode(value, "value")?;
        let Some(i) = level.by.iter().position(|k| *k == key) else {
            return Err(format!(
                "level `{}` is not keyed by `{}`; its keys: {}",
                level.name,
                cut(&key, MAX_ECHO),
                level.by.join(", ")
            ));
        };
        if values[i].replace(value).is_some() {
            return Err(format!("key `{key}` is given twice"));
        }
    }
    values
        .into_iter()
        .zip(&level.by)
        .map(|(v, k)| {
            v.ok_or_else(|| {
                format!(
                    "key `{k}` is missing; level `{}` is keyed by {}",
                    level.name,
                    level.by.join(", ")
                )
            })
        })
        .collect()
}

fn example(level: &Level) -> String {
    let pairs: Vec<String> = level.by.iter().map(|k| format!("{k}=…")).collect();
    format!("`{}`", pairs.join(","))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn level(by: &[&str]) -> Level {
        let policy = limitree::Policy::default_notifications();
        let mut level = policy.trees()[0].levels[1].clone();
        level.by = by.iter().map(|k| (*k).to_owned()).collect();
        level
    }

    #[rstest]
    #[case::plain(&["category"], &["errors"], "category=errors")]
    #[case::two_keys(&["team", "user"], &["a", "b"], "team=a,user=b")]
    #[case::separators(&["user"], &["a,b=c/d%e f"], "user=a%2Cb%3Dc%2Fd%25e%20f")]
    #[case::unicode(&["user"], &["é"], "user=%C3%A9")]
    #[case::global(&[], &[], "*")]
    fn segments_round_trip(#[case] by: &[&str], #[case] values: &[&str], #[case] segment: &str) {
        let level = level(by);
        let values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        assert_eq!(bucket_segment(&level, &values), segment);
        assert_eq!(parse_bucket(segment, &level).unwrap(), values);
    }

    #[rstest]
    #[case::star_on_keyed(&["category"], "*", "keyed by category")]
    #[case::keyed_on_global(&[], "category=a", "not keyed")]
    #[case::no_equals(&["category"], "errors", "is not `key=value`")]
    #[case::unknown_key(&["category"], "user=a", "not keyed by `user`")]
    #[case::twice(&["category"], "category=a,category=b", "given twice")]
    #[case::missing(&["team", "user"], "team=a", "key `user` is missing")]
    #[case::not_utf8(&["category"], "category=%FF", "not UTF-8")]
    fn bad_segments_say_why(#[case] by: &[&str], #[case] segment: &str, #[case] says: &str) {
        let e = parse_bucket(segment, &level(by)).unwrap_err();
        assert!(e.contains(says), "{e}");
    }

    #[test]
    fn keys_may_come_in_any_order() {
        let level = level(&["team", "user"]);
        assert_eq!(parse_bucket("user=b,team=a", &level).unwrap(), ["a", "b"]);
    }
}
