//! `POST /v1/check`: one rate-limit question, one decision.
//!
//! The body is deserialized by hand-written visitors (no `serde_json::Value`
//! in between) so every problem is reported with the field and the fix, all at
//! once. A limited check is still `200`: the decision *is* the answer.

use std::borrow::Cow;
use std::fmt;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use limitree::chain::Descriptors;
use limitree::{CheckRequest, MAX_COST};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::AppState;
use super::body::{read_body, require_json};
use super::headers;
use super::problem::ApiError;
use super::reply;
use crate::denials::Source;

/// Fields a check body may carry.
const FIELDS: &str = "`tree`, `descriptors`, `cost`, `dry_run`";

/// A valid body, shown when the body is some other JSON value.
const EXAMPLE: &str = r#"{"descriptors": {"category": "errors"}}"#;

/// A validated check body; its strings borrow from the request bytes unless
/// they held JSON escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckBody<'a> {
    /// The tree, when named.
    pub tree: Option<Cow<'a, str>>,
    /// Descriptor key → value, in the order given (each key once).
    pub descriptors: DescriptorList<'a>,
    /// Units to take (default 1; 0 peeks).
    pub cost: u64,
    /// Answer without recording.
    pub dry_run: bool,
}

/// A check's descriptors: few (one per keyed level), so a list searched in
/// order beats a map. Keys are unique (a repeated key is refused by [`parse`]).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct DescriptorList<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl Descriptors for DescriptorList<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v.as_ref())
    }
}

/// Shown like a map (`{"category": "errors"}`): this is what the request
/// span's `descriptors` field reads.
impl fmt::Debug for DescriptorList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

/// The handler.
pub async fn check(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    // The headers are read in place (the `HeaderMap` extractor clones them).
    let (parts, body) = request.into_parts();
    require_json(&parts.headers)?;
    let bytes = read_body(body, &parts.headers, state.max_body_bytes).await?;
    let request = parse(&bytes)?;

    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("descriptors", tracing::field::debug(&request.descriptors));
    }

    let decision = state
        .limiter
        .check(CheckRequest {
            tree: request.tree.as_deref(),
            descriptors: &request.descriptors,
            cost: request.cost,
            dry_run: request.dry_run,
        })
        .await?;
    // The tree actually decided (it may have been left to the default).
    span.record("tree", decision.tree.as_str());
    tracing::debug!(allowed = decision.allowed, reason = %decision.reason, "decided");
    if limitree::Mode::for_request(request.cost, request.dry_run) == limitree::Mode::Commit {
        state.checks.record(&decision);
    }
    state.status.denials.record(Source::Check, &decision);

    let mut response = Response::new(Body::from(reply::check_json(&decision)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers::insert_for_decision(headers, &decision);
    Ok(response)
}

/// Parses and validates a check body, collecting every problem.
///
/// The body is deserialized straight into [`CheckBody`], borrowing strings
/// from `bytes` when they hold no escapes. A value of the wrong type is still
/// read to its end, so every problem of the body is listed at once; a key given
/// twice is a problem naming the key (rather than the last one silently winning).
pub fn parse(bytes: &[u8]) -> Result<CheckBody<'_>, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Top::deserialize(&mut de)
        .and_then(|top| de.end().map(|()| top))
        .map_err(malformed)?;
    match parsed {
        Top::Object(body, problems) if problems.is_empty() => Ok(body),
        Top::Object(_, problems) => Err(ApiError::InvalidBody(problems)),
        Top::Other(kind) => Err(ApiError::InvalidBody(vec![format!(
            "the body must be a JSON object such as {EXAMPLE}; got {kind}"
        )])),
    }
}

/// Not JSON at all: serde_json's message without its trailing
/// " at line L column C", which [`ApiError::MalformedJson`] states itself.
fn malformed(e: serde_json::Error) -> ApiError {
    let text = e.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    };
    ApiError::MalformedJson {
        message,
        line: e.line(),
        column: e.column(),
    }
}

/// The whole body: an object (with the problems found in it), or the type of
/// whatever else it was.
enum Top<'a> {
    Object(CheckBody<'a>, Vec<String>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TopVisitor;
        impl<'de> Visitor<'de> for TopVisitor {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
                let mut problems = Vec::new();
                let mut body = CheckBody {
                    tree: None,
                    descriptors: DescriptorList::default(),
                    cost: 1,
                    dry_run: false,
                };
                // Which known fields were seen: tree, descriptors, cost, dry_run.
                let mut seen = [false; 4];
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    let slot = match key.as_ref() {
                        "tree" => Some(0),
                        "descriptors" => Some(1),
                        "cost" => Some(2),
                        "dry_run" => Some(3),
                        _ => None,
                    };
                    if let Some(slot) = slot
                        && std::mem::replace(&mut seen[slot], true)
                    {
                        map.next_value::<IgnoredAny>()?;
                        let problem = format!("`{key}` is given twice; give each field once");
                        if !problems.contains(&problem) {
                            problems.push(problem);
                        }
                        continue;
                    }
                    match slot {
                        Some(0) => match map.next_value::<Loose<'de>>()? {
                            Loose::Str(tree) => body.tree = Some(tree),
                            Loose::Null => {}
                            other => problems.push(format!(
                                "`tree` must be a string naming a tree; got {}",
                                other.type_name()
                            )),
                        },
                        Some(1) => match map.next_value::<DescriptorsField<'de>>()? {
                            DescriptorsField::Object(list, mut found) => {
                                body.descriptors = list;
                                problems.append(&mut found);
                            }
                            DescriptorsField::Other(kind) => problems.push(format!(
                                "`descriptors` must be an object of strings such as {{\"category\": \"errors\"}}; got {kind}"
                            )),
                        },
                        Some(2) => match cost(&map.next_value::<Loose<'de>>()?) {
                            Ok(cost) => body.cost = cost,
                            Err(problem) => problems.push(problem),
                        },
                        Some(_) => match map.next_value::<Loose<'de>>()? {
                            Loose::Bool(dry_run) => body.dry_run = dry_run,
                            other => problems.push(format!(
                                "`dry_run` must be true or false; got {}",
                                other.type_name()
                            )),
                        },
                        None => {
                            map.next_value::<IgnoredAny>()?;
                            let problem =
                                format!("unknown field `{key}`; a check body has {FIELDS}");
                            if !problems.contains(&problem) {
                                problems.push(problem);
                            }
                        }
                    }
                }
                Ok(Top::Object(body, problems))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Top<'de>, A::Error> {
                drain_seq(seq).map(|()| Top::Other(ARRAY))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Top<'de>, E> {
                Ok(Top::Other(BOOLEAN))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Top<'de>, E> {
                Ok(Top::Other(NUMBER))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Top<'de>, E> {
                Ok(Top::Other(NUMBER))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Top<'de>, E> {
                Ok(Top::Other(NUMBER))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Top<'de>, E> {
                Ok(Top::Other(STRING))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Top<'de>, E> {
                Ok(Top::Other(NULL))
            }
        }
        d.deserialize_any(TopVisitor)
    }
}

/// `descriptors`: an object (with the problems of its values), or the type of
/// whatever else it was.
enum DescriptorsField<'a> {
    Object(DescriptorList<'a>, Vec<String>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for DescriptorsField<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DescriptorsVisitor;
        impl<'de> Visitor<'de> for DescriptorsVisitor {
            type Value = DescriptorsField<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<DescriptorsField<'de>, A::Error> {
                let mut list = Vec::with_capacity(map.size_hint().unwrap_or(2).min(8));
                let mut problems = Vec::new();
                // Keys whose value was refused: not in `list`, still a repeat if given again.
                let mut refused: Vec<Cow<'de, str>> = Vec::new();
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    let value = map.next_value::<Loose<'de>>()?;
                    if list.iter().any(|(k, _): &(Cow<'de, str>, _)| *k == key)
                        || refused.contains(&key)
                    {
                        let problem =
                            format!("descriptor `{key}` is given twice; give each descriptor once");
                        if !problems.contains(&problem) {
                            problems.push(problem);
                        }
                        continue;
                    }
                    match value {
                        Loose::Str(v) => list.push((key, v)),
                        other => {
                            problems.push(format!(
                                "descriptor `{key}` must be a string; got {} (write it in quotes)",
                                other.type_name()
                            ));
                            refused.push(key);
                        }
                    }
                }
                Ok(DescriptorsField::Object(DescriptorList(list), problems))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<DescriptorsField<'de>, A::Error> {
                drain_seq(seq).map(|()| DescriptorsField::Other(ARRAY))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<DescriptorsField<'de>, E> {
                Ok(DescriptorsField::Other(BOOLEAN))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<DescriptorsField<'de>, E> {
                Ok(DescriptorsField::Other(NUMBER))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<DescriptorsField<'de>, E> {
                Ok(DescriptorsField::Other(NUMBER))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<DescriptorsField<'de>, E> {
                Ok(DescriptorsField::Other(NUMBER))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<DescriptorsField<'de>, E> {
                Ok(DescriptorsField::Other(STRING))
            }
            fn visit_unit<E: de::Error>(self) -> Result<DescriptorsField<'de>, E> {
                Ok(DescriptorsField::Other(NULL))
            }
        }
        d.deserialize_any(DescriptorsVisitor)
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

const NULL: &str = "null";
const BOOLEAN: &str = "a boolean";
const NUMBER: &str = "a number";
const STRING: &str = "a string";
const ARRAY: &str = "an array";
const OBJECT: &str = "an object";

/// An object key, borrowed when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

/// Any JSON value, kept only as far as a field needs it: scalars and strings
/// as they are, arrays and objects read to their end and remembered by type.
#[derive(Debug, Clone, PartialEq)]
enum Loose<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl Loose<'_> {
    /// How the value's type reads in a sentence.
    fn type_name(&self) -> &'static str {
        match self {
            Loose::Null => NULL,
            Loose::Bool(_) => BOOLEAN,
            Loose::U64(_) | Loose::I64(_) | Loose::F64(_) => NUMBER,
            Loose::Str(_) => STRING,
            Loose::Array => ARRAY,
            Loose::Object => OBJECT,
        }
    }
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LooseVisitor;
        impl<'de> Visitor<'de> for LooseVisitor {
            type Value = Loose<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Loose<'de>, E> {
                Ok(Loose::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Loose<'de>, E> {
                Ok(Loose::Bool(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Loose<'de>, E> {
                Ok(Loose::U64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Loose<'de>, E> {
                Ok(Loose::I64(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Loose<'de>, E> {
                Ok(Loose::F64(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Loose<'de>, E> {
                Ok(Loose::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Loose<'de>, E> {
                Ok(Loose::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Loose<'de>, E> {
                Ok(Loose::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Loose<'de>, A::Error> {
                drain_seq(seq).map(|()| Loose::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose::Object)
            }
        }
        d.deserialize_any(LooseVisitor)
    }
}

/// A number as JSON writes it (`1.5`, `1e30`), for messages.
fn show_f64(v: f64) -> String {
    serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string())
}

fn cost(value: &Loose<'_>) -> Result<u64, String> {
    match *value {
        // The limiter enforces MAX_COST too; checking here keeps every cost
        // problem in one message.
        Loose::U64(cost) if cost > MAX_COST => Err(format!(
            "`cost` {cost} is larger than the maximum {MAX_COST}"
        )),
        Loose::U64(cost) => Ok(cost),
        // serde_json hands non-negative integers to `visit_u64`.
        Loose::I64(cost) => Err(format!("`cost` must not be negative; got {cost}")),
        Loose::F64(cost) if cost < 0.0 => Err(format!(
            "`cost` must not be negative; got {}",
            show_f64(cost)
        )),
        Loose::F64(cost) if cost > MAX_COST as f64 => Err(format!(
            "`cost` {} is larger than the maximum {MAX_COST}",
            show_f64(cost)
        )),
        Loose::F64(cost) => Err(format!(
            "`cost` must be a whole number; got {}",
            show_f64(cost)
        )),
        ref other => Err(format!(
            "`cost` must be a whole number from 0 to {MAX_COST}; got {}",
            other.type_name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(body: &str) -> String {
        parse(body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn defaults_apply() {
        let body = parse(br#"{"descriptors": {"category": "errors"}}"#).unwrap();
        assert_eq!(body.cost, 1);
        assert!(!body.dry_run);
        assert_eq!(body.tree, None);
        assert_eq!(body.descriptors.get("category"), Some("errors"));
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let body =
            parse(br#"{"tree": "t", "descriptors": {"category": "a\"b", "x": "y"}}"#).unwrap();
        assert!(matches!(body.tree, Some(Cow::Borrowed("t"))));
        assert_eq!(body.descriptors.get("category"), Some("a\"b"));
        assert!(matches!(body.descriptors.0[1].1, Cow::Borrowed("y")));
        assert_eq!(
            format!("{:?}", body.descriptors),
            r#"{"category": "a\"b", "x": "y"}"#
        );
    }

    #[test]
    fn every_problem_is_listed() {
        let err =
            problems(r#"{"cost": -1, "dry_run": "yes", "colour": 1, "descriptors": {"n": 5}}"#);
        for needle in ["negative", "`dry_run`", "`colour`", "descriptor `n`"] {
            assert!(err.contains(needle), "{needle} not in {err}");
        }
    }

    #[test]
    fn nested_values_of_the_wrong_type_are_read_past() {
        let err = problems(r#"{"tree": {"a": [1, {"b": 2}]}, "cost": [1, [2]], "dry_run": true}"#);
        assert!(
            err.contains("`tree` must be a string naming a tree; got an object"),
            "{err}"
        );
        assert!(
            err.contains("`cost` must be a whole number from 0 to 1000000000; got an array"),
            "{err}"
        );
        assert_eq!(
            problems("[1, 2]"),
            format!("the body must be a JSON object such as {EXAMPLE}; got an array")
        );
        assert!(problems("null").ends_with("got null"));
    }

    #[test]
    fn a_repeated_key_names_the_key() {
        // Issue 11: this used to be a silent peek (the last `cost` won).
        assert_eq!(
            problems(r#"{"cost": 5, "cost": 0}"#),
            "`cost` is given twice; give each field once"
        );
        assert_eq!(
            problems(r#"{"descriptors": {"category": "a", "category": "b"}}"#),
            "descriptor `category` is given twice; give each descriptor once"
        );
        let err = problems(r#"{"descriptors": {"n": 5, "n": "b"}, "tree": "a", "tree": null}"#);
        assert!(err.contains("descriptor `n` must be a string"), "{err}");
        assert!(err.contains("descriptor `n` is given twice"), "{err}");
        assert!(err.contains("`tree` is given twice"), "{err}");
    }

    #[test]
    fn costs_read_as_before() {
        for (body, message) in [
            (r#"{"cost": 1.5}"#, "`cost` must be a whole number; got 1.5"),
            (r#"{"cost": -0.5}"#, "`cost` must not be negative; got -0.5"),
            (
                r#"{"cost": 1e30}"#,
                "`cost` 1e+30 is larger than the maximum 1000000000",
            ),
            (
                r#"{"cost": 1000000001}"#,
                "`cost` 1000000001 is larger than the maximum 1000000000",
            ),
            (
                r#"{"cost": "1"}"#,
                "`cost` must be a whole number from 0 to 1000000000; got a string",
            ),
        ] {
            assert_eq!(problems(body), message, "{body}");
        }
        assert_eq!(parse(br#"{"cost": 0}"#).unwrap().cost, 0);
    }

    #[test]
    fn malformed_json_says_where() {
        let err = problems("{\n  \"cost\": }");
        assert!(err.contains("line 2 column"), "{err}");
        let err = problems(r#"{"cost": 1} x"#);
        assert!(err.contains("trailing characters"), "{err}");
    }
}
