//! Field parsers every config section shares: durations, listen addresses,
//! `${VAR}` references, and [`Section`], which reads a section and says where
//! each problem is (`c.toml: line 3, column 18: [server] shutdown_grace: …`).
//!
//! Sections (and components that own their section, such as
//! [`crate::notify::config`]) import only this module, so the config's
//! dependencies point one way: `config` gathers sections; sections use `fields`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use limitree::policy::{PolicyError, Step, TomlDocument, parse_duration, render_path};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// One top-level section of a parsed config file: reads it and places its
/// problems (file, line, column, key).
#[derive(Debug, Clone, Copy)]
pub struct Section<'d, 'a> {
    doc: &'d TomlDocument<'a>,
    name: &'static str,
}

impl<'d, 'a> Section<'d, 'a> {
    /// The section `name` (`"server"`, `"store"`, `"notify"`) of `doc`.
    pub fn new(doc: &'d TomlDocument<'a>, name: &'static str) -> Self {
        Section { doc, name }
    }

    /// The file the section is in, for messages.
    pub fn source(&self) -> &str {
        self.doc.source()
    }

    /// The section as `T`. Every key of the wrong type and every unknown key
    /// is pushed to `errors` (with line, column, key and what to write), not
    /// only the first; the keys that did read are returned, so the caller
    /// goes on to check them too. `None` when the section as a whole is not
    /// a table of `T`'s keys, or is absent.
    pub fn read<T: DeserializeOwned>(&self, errors: &mut Vec<String>) -> Option<T> {
        let (value, problems) = self.doc.deserialize::<T>(self.name);
        errors.extend(problems.into_iter().map(|(_, e)| e.to_string()));
        value
    }

    /// A message about `key` of this section (`"http"`, `"cluster[1]"`,
    /// `"routes.errors"`), placed at its value, or at the section when the key
    /// is not in the file (a default, or a key that is missing).
    pub fn error(&self, key: &str, message: impl fmt::Display) -> String {
        let (location, place) = self.place(key);
        PolicyError::located(self.doc.source(), location, &place, message.to_string()).to_string()
    }

    /// Where `key` is (line and column, as [`Section::error`] places it) and
    /// how it is named (`[server.auth] check[0]`), for a message written
    /// later, e.g. when a `${VAR}` is resolved at start-up.
    pub fn place(&self, key: &str) -> (Option<(usize, usize)>, String) {
        let mut path = vec![Step::Key(self.name.to_owned())];
        for part in key.split('.').filter(|p| !p.is_empty()) {
            let (name, index) = match part.split_once('[') {
                Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            path.push(Step::Key(name.to_owned()));
            if let Some(index) = index {
                path.push(Step::Index { index, name: None });
            }
        }
        (self.doc.location_of(&path), render_path(&path))
    }
}

/// A duration as written (`"30s"`), checked by [`positive_duration`] after
/// reading; a value of another type is refused as "expected a duration such
/// as \"30s\"" rather than "expected a string".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationText(pub String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DurationText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_owned()))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// A duration such as `"250ms"`, `"30s"` or `"1m"`, longer than zero: every
/// duration in the config is a period, deadline or bound, and zero would mean
/// "never" or "at once" silently. The error says how to write one.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        0 => Err("must be longer than 0s".to_owned()),
        us => Ok(Duration::from_micros(us)),
    }
}

/// A socket address such as `"127.0.0.1:8080"`; the error shows `example`.
pub fn socket_addr(text: &str, example: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "`{}` is not a socket address; write e.g. \"{example}\"",
            limitree::policy::cut(text, limitree::policy::MAX_ECHO)
        )
    })
}

/// Replaces every `${VAR}` in `raw` from `env`; `Err(VAR)` names the first
/// unset (or empty) one. Text without `${` is returned as is, and an unclosed
/// `${` is literal text. Secrets (webhook URLs, tokens) are written this way so
/// a config file can be shared, and are expanded only when they are used.
pub fn expand_env(raw: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let var = &after[..end];
        match env(var) {
            Some(value) if !value.is_empty() => out.push_str(&value),
            _ => return Err(var.to_owned()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The variables `raw` refers to as `${VAR}`, in order (an unclosed `${`
/// is literal text, as in [`expand_env`]).
pub fn env_references(raw: &str) -> Vec<&str> {
    let mut vars = Vec::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        vars.push(&after[..end]);
        rest = &after[end + 1..];
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_must_be_positive() {
        assert_eq!(positive_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(
            positive_duration("0s"),
            Err("must be longer than 0s".to_owned())
        );
        assert!(positive_duration("soon").unwrap_err().contains("`soon`"));
    }

    #[test]
    fn references_are_expanded_or_named() {
        let env = |var: &str| (var == "A").then(|| "x".to_owned());
        assert_eq!(expand_env("a${A}b", &env), Ok("axb".to_owned()));
        assert_eq!(expand_env("${B}", &env), Err("B".to_owned()));
        assert_eq!(expand_env("${A", &env), Ok("${A".to_owned()));
        assert_eq!(env_references("${A}x${B}${C"), ["A", "B"]);
    }
}
