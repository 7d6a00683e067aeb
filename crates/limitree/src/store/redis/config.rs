//! How to reach Redis, and how the store behaves there.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

/// The prefix of every key unless configured otherwise.
pub const DEFAULT_KEY_PREFIX: &str = "limitree";
/// The default per-call deadline: a rate limiter that stalls is worse than one
/// that answers "store unavailable" fast and lets `on_error` decide.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);

/// Which Redis deployment holds the buckets.
///
/// Its `Debug` output hides passwords ([`redact_url`]), so a store or config
/// printed in a log or a panic message never shows one.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server (or a primary behind a proxy): `redis://[:password@]host:port[/db]`
    /// or `rediss://…` for TLS.
    Standalone(String),
    /// A Redis Cluster, given one or more of its nodes' URLs (the client learns
    /// the rest and follows MOVED/ASK redirections).
    Cluster(Vec<String>),
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Standalone(url) => {
                f.debug_tuple("Standalone").field(&redact_url(url)).finish()
            }
            RedisTarget::Cluster(urls) => f
                .debug_tuple("Cluster")
                .field(&urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// `url` with the password (if any) replaced by `***`, for logs and messages:
/// `redis://user:secret@host:6379` → `redis://user:***@host:6379`. Works on
/// text that does not parse as a URL too: it looks at the part between `://`
/// and the last `@` before the path, and without a `://` hides everything
/// before the last `@`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        // Not a URL: hide everything before an `@`, which may be a password.
        return match url.rfind('@') {
            Some(at) => format!("***{}", &url[at..]),
            None => url.to_owned(),
        };
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

/// Checks that `url` is a Redis URL the store can use (`redis://` or
/// `rediss://`, a host, a numeric database). The message never repeats the URL
/// (it may hold a password).
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err("must start with redis:// (or rediss:// for TLS)".to_owned());
    }
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| format!("not a usable Redis URL: {e}"))
}

/// `url` with `password` set as its password (percent-encoded as URLs need),
/// keeping any user name. Fails if `url` does not parse or already has a
/// password (it should come from one place only).
pub fn url_with_password(url: &str, password: &str) -> Result<String, String> {
    let mut parsed = redis::parse_redis_url(url).ok_or_else(|| "not a Redis URL".to_owned())?;
    if parsed.password().is_some() {
        return Err("the URL already holds a password".to_owned());
    }
    parsed
        .set_password(Some(password))
        .map_err(|()| "this URL cannot hold a password".to_owned())?;
    Ok(parsed.to_string())
}

/// Configuration of a [`super::RedisStore`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Where Redis is.
    pub target: RedisTarget,
    /// The first part of every key's hash tag, `{<key_prefix>:<tree>}`: lets
    /// several deployments (or tests) share one Redis without sharing buckets.
    /// Must not contain `{` or `}` (it is inside the hash tag).
    pub key_prefix: String,
    /// Deadline for every call (a decision, a readiness ping, connecting): past
    /// it the call fails with [`crate::StoreError::Timeout`].
    pub timeout: Duration,
    /// **For tests only.** Take `now` from this clock and pass it to the script
    /// instead of reading Redis `TIME`, so tests run on a
    /// [`crate::ManualClock`]. Keys then live a day longer than their state
    /// (test time and real time differ). Never set this in production: instances
    /// whose clocks disagree would then disagree on every window.
    pub clock_override: Option<Arc<dyn Clock>>,
}

impl RedisConfig {
    /// A standalone Redis at `url`, with default prefix and timeout.
    pub fn standalone(url: impl Into<String>) -> Self {
        Self::new(RedisTarget::Standalone(url.into()))
    }

    /// A Redis Cluster reached through `urls`, with default prefix and timeout.
    pub fn cluster<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(RedisTarget::Cluster(
            urls.into_iter().map(Into::into).collect(),
        ))
    }

    /// `target` with default prefix and timeout.
    pub fn new(target: RedisTarget) -> Self {
        RedisConfig {
            target,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            clock_override: None,
        }
    }

    /// Sets [`RedisConfig::key_prefix`].
    pub fn with_key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.key_prefix = key_prefix.into();
        self
    }

    /// Sets [`RedisConfig::timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`RedisConfig::clock_override`] — for tests only.
    pub fn with_clock_override(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock_override = Some(clock);
        self
    }

    /// Checks what can be checked without connecting: the key prefix, the
    /// timeout and every URL ([`check_url`]).
    pub fn validate(&self) -> Result<(), String> {
        if self.key_prefix.is_empty() || self.key_prefix.contains(['{', '}']) {
            return Err(format!(
                "redis key_prefix `{}` must be non-empty and contain no `{{` or `}}` (it is part of a hash tag)",
                self.key_prefix
            ));
        }
        if self.timeout.is_zero() {
            return Err("redis timeout must be above zero".to_owned());
        }
        let urls = match &self.target {
            RedisTarget::Cluster(urls) if urls.is_empty() => {
                return Err("redis cluster needs at least one node URL".to_owned());
            }
            RedisTarget::Cluster(urls) => urls.as_slice(),
            RedisTarget::Standalone(url) => std::slice::from_ref(url),
        };
        for url in urls {
            check_url(url).map_err(|e| format!("redis URL `{}`: {e}", redact_url(url)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:s3cret@host:1/0", "redis://:***@host:1/0"),
            ("rediss://me:p@ss:w@host", "rediss://me:***@host"),
            ("redis://user@host", "redis://user@host"),
            ("not a url :x@y", "***@y"),
            ("redis//:pw@host", "***@host"),
            ("redis://:pw@host/db?x=a@b", "redis://:***@host/db?x=a@b"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        let target = RedisTarget::Cluster(vec!["redis://:pw@a:1".to_owned()]);
        assert!(!format!("{target:?}").contains("pw"));
    }

    #[test]
    fn passwords_are_injected_encoded() {
        let url = url_with_password("redis://host:6379/2", "p@ss word:").unwrap();
        assert_eq!(url, "redis://:p%40ss%20word%3A@host:6379/2");
        assert!(url_with_password("redis://:already@host", "x").is_err());
        assert!(check_url(&url).is_ok());
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("rediss://example.com").is_ok());
        assert!(check_url("http://example.com").is_err());
        assert!(check_url("redis://host/notanumber").is_err());
    }
}
