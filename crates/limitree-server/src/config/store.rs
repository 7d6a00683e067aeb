//! The `[store]` section: which store holds bucket state, and how to reach
//! and use Redis.
//!
//! ```toml
//! [store]
//! kind = "memory"             # or "redis": buckets shared by many instances
//! # url = "redis://127.0.0.1:6379"        # kind = "redis": one server (rediss:// for TLS)
//! # cluster = ["redis://10.0.0.1:7000"]   # …or a Redis Cluster (not both)
//! # password_env = "REDIS_PASSWORD"       # password from this variable, not the file
//! # key_prefix = "limitree"               # keys are {<key_prefix>:<tree>}:…
//! # timeout = "100ms"                     # per call; past it on_error decides
//! # on_error = "deny"                     # "deny" | "allow" | "local"
//! ```
//!
//! The section is parsed here; the Redis the server uses is the library's
//! [`limitree::store::redis::RedisConfig`], made in one place
//! ([`RedisSettings::redis_config`]) so its defaults (`key_prefix`,
//! `timeout`) and rules (what a key prefix may hold) are the library's alone.

use std::fmt;
use std::time::Duration;

use limitree::policy::{MAX_ECHO, cut};
use limitree::store::fallback::OnError;
use serde::Deserialize;

use super::fields::{DurationText, Section, positive_duration};

/// Which store holds bucket state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// In-process state ([`limitree::MemoryStore`]).
    Memory,
    /// Shared state in Redis (standalone or Cluster), behind `on_error`.
    Redis,
}

impl StoreKind {
    /// The name in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Redis => "redis",
        }
    }
}

/// The `[store]` section: the kind, and how to reach and use Redis. The Redis
/// settings are kept even for `kind = "memory"` so that `serve --redis URL`
/// can switch to Redis with the file's prefix, timeout and `on_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Which store.
    pub kind: StoreKind,
    /// Used when `kind` is [`StoreKind::Redis`].
    pub redis: RedisSettings,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Memory,
            redis: RedisSettings::default(),
        }
    }
}

/// Where Redis is: one server or a Cluster.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisNodes {
    /// `[store] url`: one server.
    Url(String),
    /// `[store] cluster`: seed nodes of a Redis Cluster.
    Cluster(Vec<String>),
}

/// The Redis keys of `[store]` as written. URLs are kept as written; the
/// password from `password_env` is added only in
/// [`RedisSettings::redis_config`]. `Debug` hides passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `url` or `cluster`; `None` until one is given.
    pub nodes: Option<RedisNodes>,
    /// `password_env`: the environment variable the password was read from.
    pub password_env: Option<String>,
    /// The password read from `password_env` at load time.
    password: Option<String>,
    /// `key_prefix`: the first part of every key's hash tag; `None`: the
    /// library's default.
    pub key_prefix: Option<String>,
    /// `timeout`: deadline of every Redis call; `None`: the library's default.
    pub timeout: Option<Duration>,
    /// `on_error`: what decides while Redis fails.
    pub on_error: OnError,
}

impl Default for RedisSettings {
    /// Nothing given: no node, the library's prefix and timeout, and
    /// `on_error = "deny"` (fail closed: an outage never admits more than the
    /// limits allow).
    fn default() -> Self {
        RedisSettings {
            nodes: None,
            password_env: None,
            password: None,
            key_prefix: None,
            timeout: None,
            on_error: OnError::Deny,
        }
    }
}

impl fmt::Debug for RedisNodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisNodes::Url(url) => f.debug_tuple("Url").field(&redact_url(url)).finish(),
            RedisNodes::Cluster(urls) => f
                .debug_tuple("Cluster")
                .field(&urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>())
                .finish(),
        }
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("nodes", &self.nodes)
            .field("password_env", &self.password_env)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("on_error", &self.on_error)
            .finish()
    }
}

impl RedisSettings {
    /// Checks the nodes and the password together (as the store will use
    /// them); each problem names its key (`what`: `[store] url`, `--redis`, …).
    fn check_nodes(&self, what: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let urls: Vec<(String, &String)> = match &self.nodes {
            None => return problems,
            Some(RedisNodes::Url(url)) => vec![(what.to_owned(), url)],
            Some(RedisNodes::Cluster(urls)) => urls
                .iter()
                .enumerate()
                .map(|(i, url)| (format!("[store] cluster[{i}]"), url))
                .collect(),
        };
        for (key, url) in urls {
            if let Err(e) = check_url(url) {
                problems.push(format!(
                    "{key}: `{}` {e}; write e.g. \"redis://127.0.0.1:6379\" (rediss:// for TLS)",
                    cut(&redact_url(url), MAX_ECHO)
                ));
            } else if let Some(password) = &self.password
                && let Err(e) = with_password(url, password)
            {
                problems.push(format!(
                        "[store] password_env: cannot use it with `{}`: {e}; give the password in one place",
                        cut(&redact_url(url), MAX_ECHO)
                    ));
            }
        }
        problems
    }
}

#[cfg(feature = "redis")]
mod with_redis {
    use std::time::Duration;

    use limitree::store::redis::{RedisConfig, RedisTarget};

    use super::{RedisNodes, RedisSettings, with_password};

    impl RedisSettings {
        /// The node URLs with the `password_env` password set in each (as given
        /// when there is none). These hold the password: never log them; log
        /// [`StoreConfig::describe`] instead.
        fn urls_with_password(&self) -> Result<Vec<String>, String> {
            let urls: &[String] = match &self.nodes {
                None => return Err("no url or cluster is given".to_owned()),
                Some(RedisNodes::Url(url)) => std::slice::from_ref(url),
                Some(RedisNodes::Cluster(urls)) => urls,
            };
            urls.iter()
                .map(|url| match &self.password {
                    None => Ok(url.clone()),
                    Some(password) => with_password(url, password),
                })
                .collect()
        }

        /// The Redis the store and the relay's outbox use: the one conversion
        /// from `[store]` to the library's type, which fills in its defaults
        /// and checks its rules ([`RedisConfig::validate`]). The config holds
        /// the password: never log it. Fails when no node is given, or on a
        /// value the library refuses (the message holds no password).
        pub fn redis_config(&self) -> Result<RedisConfig, String> {
            let mut urls = self.urls_with_password()?;
            let target = match self.nodes {
                Some(RedisNodes::Cluster(_)) => RedisTarget::Cluster(urls),
                _ => RedisTarget::Standalone(urls.pop().unwrap_or_default()),
            };
            let mut config = RedisConfig::new(target);
            if let Some(prefix) = &self.key_prefix {
                config = config.with_key_prefix(prefix.clone());
            }
            if let Some(timeout) = self.timeout {
                config = config.with_timeout(timeout);
            }
            config.validate()?;
            Ok(config)
        }
    }

    /// Checks `prefix` by the library's rule before any node is known (a
    /// memory store's file may give it for `--redis`), against a placeholder
    /// URL that is never used.
    pub(super) fn check_key_prefix(prefix: &str) -> Result<(), String> {
        RedisConfig::standalone("redis://127.0.0.1:6379")
            .with_key_prefix(prefix)
            .validate()
    }

    /// `key_prefix` and `timeout` as the store will use them.
    pub(super) fn effective(settings: &RedisSettings) -> (String, Duration) {
        use limitree::store::redis::{DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT};
        (
            settings
                .key_prefix
                .clone()
                .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned()),
            settings.timeout.unwrap_or(DEFAULT_TIMEOUT),
        )
    }
}

impl StoreConfig {
    /// `serve --redis URL`: Redis at `url`, with the file's other Redis keys.
    /// The message names `--redis` and never repeats a password.
    pub fn use_redis_url(&mut self, url: &str) -> Result<(), String> {
        let mut redis = self.redis.clone();
        redis.nodes = Some(RedisNodes::Url(url.to_owned()));
        let problems = redis.check_nodes("--redis");
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        self.kind = StoreKind::Redis;
        self.redis = redis;
        Ok(())
    }

    /// One line for logs and `config check`, passwords redacted:
    /// `memory`, or `redis, url …, key_prefix …, timeout …, on_error …`.
    pub fn describe(&self) -> String {
        match self.kind {
            StoreKind::Memory => "memory".to_owned(),
            StoreKind::Redis => format!("redis, {}", self.redis.describe()),
        }
    }
}

impl RedisSettings {
    /// [`StoreConfig::describe`] for the Redis keys.
    fn describe(&self) -> String {
        let nodes = match &self.nodes {
            None => "no url".to_owned(),
            Some(RedisNodes::Url(url)) => format!("url {}", redact_url(url)),
            Some(RedisNodes::Cluster(urls)) => format!(
                "cluster [{}]",
                urls.iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        #[cfg(feature = "redis")]
        let (prefix, timeout) = with_redis::effective(self);
        #[cfg(not(feature = "redis"))]
        let (prefix, timeout) = (
            self.key_prefix.clone().unwrap_or_default(),
            self.timeout.unwrap_or_default(),
        );
        let mut text = format!(
            "{nodes}, key_prefix {prefix}, timeout {}, on_error {}",
            limitree::policy::format_duration(limitree::clock::duration_to_micros(timeout)),
            self.on_error.as_str()
        );
        if let Some(var) = &self.password_env {
            let _ = fmt::Write::write_fmt(&mut text, format_args!(", password from ${var}"));
        }
        text
    }
}

#[cfg(feature = "redis")]
use limitree::store::redis::{check_url, redact_url, url_with_password as with_password};

#[cfg(not(feature = "redis"))]
fn redact_url(url: &str) -> String {
    url.to_owned()
}
#[cfg(not(feature = "redis"))]
fn check_url(_: &str) -> Result<(), String> {
    Err("cannot be used: this limitree was built without the `redis` feature".to_owned())
}
#[cfg(not(feature = "redis"))]
fn with_password(url: &str, _: &str) -> Result<String, String> {
    Ok(url.to_owned())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    kind: Option<String>,
    url: Option<String>,
    cluster: Option<Vec<String>>,
    password_env: Option<String>,
    key_prefix: Option<String>,
    timeout: Option<DurationText>,
    on_error: Option<String>,
}

impl StoreConfig {
    /// Parses `[store]`, pushing every problem (naming `source` and the key)
    /// to `errors`; `None` when there was one.
    pub fn parse(section: &Section<'_, '_>, errors: &mut Vec<String>) -> Option<Self> {
        let before = errors.len();
        let raw: RawStore = section.read(errors)?;
        let mut error = |key: &str, message: String| {
            errors.push(section.error(key, message));
        };
        let mut redis = RedisSettings::default();

        match (raw.url, raw.cluster) {
            (Some(_), Some(_)) => error(
                "cluster",
                "url and cluster are mutually exclusive; give url for one server or cluster for a Redis Cluster".to_owned(),
            ),
            (Some(url), None) => redis.nodes = Some(RedisNodes::Url(url)),
            (None, Some(urls)) if urls.is_empty() => error(
                "cluster",
                "is empty; list one or more nodes, e.g. [\"redis://10.0.0.1:7000\"]".to_owned(),
            ),
            (None, Some(urls)) => redis.nodes = Some(RedisNodes::Cluster(urls)),
            (None, None) => {}
        }
        if let Some(var) = raw.password_env {
            if var.is_empty() {
                error(
                    "password_env",
                    "is empty; name the environment variable that holds the password".to_owned(),
                );
            } else {
                match std::env::var(&var) {
                    Ok(password) => redis.password = Some(password),
                    Err(_) => error(
                        "password_env",
                        format!(
                            "the environment variable `{var}` is not set (or not UTF-8); set it to the Redis password"
                        ),
                    ),
                }
                redis.password_env = Some(var);
            }
        }
        if let Some(prefix) = raw.key_prefix {
            #[cfg(feature = "redis")]
            if let Err(e) = with_redis::check_key_prefix(&prefix) {
                error("key_prefix", e);
            }
            redis.key_prefix = Some(prefix);
        }
        if let Some(DurationText(text)) = raw.timeout {
            match positive_duration(&text) {
                Ok(timeout) => redis.timeout = Some(timeout),
                Err(e) => error("timeout", e),
            }
        }
        if let Some(name) = raw.on_error {
            match OnError::from_name(&name) {
                Some(on_error) => redis.on_error = on_error,
                None => error(
                    "on_error",
                    format!(
                        "unknown policy `{}`; use \"deny\" (fail closed), \"allow\" (fail open) or \"local\" (per-instance memory)",
                        cut(&name, MAX_ECHO)
                    ),
                ),
            }
        }

        let kind = match raw.kind.as_deref() {
            // Giving Redis nodes is asking for Redis.
            None if redis.nodes.is_some() => StoreKind::Redis,
            None | Some("memory") => StoreKind::Memory,
            Some("redis") => StoreKind::Redis,
            Some(other) => {
                error(
                    "kind",
                    format!(
                        "unknown store `{}`; use \"memory\" or \"redis\"",
                        cut(other, MAX_ECHO)
                    ),
                );
                StoreKind::Memory
            }
        };
        if !cfg!(feature = "redis") && kind == StoreKind::Redis {
            error(
                "kind",
                "this limitree was built without the `redis` feature; rebuild with it or use kind = \"memory\"".to_owned(),
            );
        }
        if kind == StoreKind::Redis && redis.nodes.is_none() {
            error(
                "url",
                "kind = \"redis\" needs url = \"redis://HOST:6379\" (or cluster = [\"redis://HOST:PORT\", …])".to_owned(),
            );
        }
        if raw.kind.as_deref() == Some("memory") && redis.nodes.is_some() {
            error(
                "kind",
                "is \"memory\" but Redis nodes are given; set kind = \"redis\" or remove url/cluster"
                    .to_owned(),
            );
        }
        if cfg!(feature = "redis") {
            for problem in redis.check_nodes("[store] url") {
                // "[store] KEY: message", placed at KEY.
                let placed = problem
                    .strip_prefix("[store] ")
                    .and_then(|rest| rest.split_once(": "))
                    .map(|(key, message)| section.error(key, message));
                errors.push(placed.unwrap_or_else(|| format!("{}: {problem}", section.source())));
            }
        }
        (errors.len() == before).then_some(StoreConfig { kind, redis })
    }
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use limitree::store::redis::{DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT, RedisTarget};
    use rstest::rstest;

    use super::*;
    use crate::config::Config;

    fn store(text: &str) -> Result<StoreConfig, Vec<String>> {
        Config::from_toml_str(&format!("[store]\n{text}"), "c.toml")
            .map(|c| c.store)
            .map_err(|e| e.0)
    }

    #[test]
    fn redis_settings_are_parsed() {
        let s = store(
            "kind = \"redis\"\nurl = \"redis://:pw@127.0.0.1:6380/2\"\nkey_prefix = \"app\"\ntimeout = \"250ms\"\non_error = \"local\"\n",
        )
        .unwrap();
        assert_eq!(s.kind, StoreKind::Redis);
        let redis = s.redis.redis_config().unwrap();
        assert_eq!(redis.key_prefix, "app");
        assert_eq!(redis.timeout, Duration::from_millis(250));
        assert_eq!(s.redis.on_error, OnError::Local);
        assert_eq!(
            s.describe(),
            "redis, url redis://:***@127.0.0.1:6380/2, key_prefix app, timeout 250ms, on_error local"
        );
        assert!(!format!("{s:?}").contains("pw@"));
    }

    #[test]
    fn nodes_imply_redis_and_defaults_apply() {
        let s = store("cluster = [\"redis://10.0.0.1:7000\", \"redis://10.0.0.2:7000\"]").unwrap();
        assert_eq!(s.kind, StoreKind::Redis);
        assert_eq!(s.redis.on_error, OnError::Deny);
        let redis = s.redis.redis_config().unwrap();
        assert_eq!(redis.timeout, DEFAULT_TIMEOUT);
        assert_eq!(redis.key_prefix, DEFAULT_KEY_PREFIX);
        assert!(matches!(&redis.target, RedisTarget::Cluster(urls) if urls.len() == 2));
    }

    #[rstest]
    #[case::unknown_kind("kind = \"etcd\"", "[store] kind: unknown store `etcd`")]
    #[case::redis_without_url("kind = \"redis\"", "[store] url: kind = \"redis\" needs")]
    #[case::both(
        "url = \"redis://a\"\ncluster = [\"redis://b\"]",
        "[store] cluster: url and cluster are mutually exclusive"
    )]
    #[case::empty_cluster("cluster = []", "[store] cluster: is empty")]
    #[case::bad_scheme(
        "url = \"http://:hunter2@a\"",
        "[store] url: `http://:***@a` must start with redis://"
    )]
    #[case::bad_cluster_node("cluster = [\"redis://a\", \"redis://b/x\"]", "[store] cluster[1]:")]
    #[case::bad_timeout(
        "url = \"redis://a\"\ntimeout = \"soon\"",
        "[store] timeout: `soon` is not a duration"
    )]
    #[case::zero_timeout(
        "url = \"redis://a\"\ntimeout = \"0ms\"",
        "[store] timeout: must be longer than 0s"
    )]
    #[case::bad_on_error(
        "url = \"redis://a\"\non_error = \"maybe\"",
        "[store] on_error: unknown policy `maybe`"
    )]
    #[case::bad_prefix(
        "url = \"redis://a\"\nkey_prefix = \"a{b\"",
        "[store] key_prefix: redis key_prefix `a{b` must be non-empty"
    )]
    #[case::bad_prefix_for_memory(
        "key_prefix = \"\"",
        "[store] key_prefix: redis key_prefix `` must be non-empty"
    )]
    #[case::unset_password_env(
        "url = \"redis://a\"\npassword_env = \"LIMITREE_TEST_SURELY_UNSET\"",
        "[store] password_env: the environment variable `LIMITREE_TEST_SURELY_UNSET` is not set"
    )]
    #[case::memory_with_url(
        "kind = \"memory\"\nurl = \"redis://a\"",
        "[store] kind: is \"memory\" but Redis nodes are given"
    )]
    #[case::unknown_key(
        "kind = \"redis\"\nurl = \"redis://a\"\npassword = \"x\"",
        "[store] password: unknown key `password`; did you mean `password_env`?"
    )]
    fn bad_store_values_name_the_key(#[case] text: &str, #[case] expected: &str) {
        let errors = store(text).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("c.toml: ") && e.contains(expected)),
            "{expected:?} not in {errors:?}"
        );
        assert!(errors.iter().all(|e| !e.contains("hunter2")), "{errors:?}");
    }

    #[test]
    fn the_redis_flag_switches_the_store_keeping_the_file_settings() {
        let mut s = store("on_error = \"allow\"\ntimeout = \"50ms\"").unwrap();
        assert_eq!(s.kind, StoreKind::Memory);
        s.use_redis_url("redis://127.0.0.1:7777").unwrap();
        assert_eq!(s.kind, StoreKind::Redis);
        assert_eq!(s.redis.on_error, OnError::Allow);
        assert_eq!(
            s.redis.redis_config().unwrap().timeout,
            Duration::from_millis(50)
        );
        let e = s.use_redis_url("redis://:secret@host/x").unwrap_err();
        assert!(e.starts_with("--redis: `redis://:***@host/x`"), "{e}");
        assert!(!e.contains("secret"));
    }
}
