//! Field parsers every config section shares: durations, listen addresses,
//! `${VAR}` references, and toml errors on one line.
//!
//! Sections (and components that own their section, such as
//! [`crate::notify::config`]) import only this module, so the config's
//! dependencies point one way: `config` gathers sections; sections use `fields`.

use std::net::SocketAddr;
use std::time::Duration;

use limitree::policy::parse_duration;

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
    text.parse()
        .map_err(|_| format!("`{text}` is not a socket address; write e.g. \"{example}\""))
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

/// A toml error on one line: deserializing a detached `Value` has no source
/// snippet to show, only the message.
pub fn toml_message(e: &toml::de::Error) -> String {
    e.message().trim_end().to_owned()
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
    }
}
