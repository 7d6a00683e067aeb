//! The server's config file: `[server]`, `[store]` and `[[trees]]`.
//!
//! ```toml
//! [server]
//! http = "127.0.0.1:8080"     # where to listen
//! max_body_bytes = 65536      # largest request body
//! shutdown_grace = "10s"      # how long shutdown may wait for in-flight work
//! sweep_interval = "30s"      # how often idle buckets are dropped
//!
//! [store]
//! kind = "memory"             # or "redis": buckets shared by many instances
//! # url = "redis://127.0.0.1:6379"        # kind = "redis": one server (rediss:// for TLS)
//! # cluster = ["redis://10.0.0.1:7000"]   # …or a Redis Cluster (not both)
//! # password_env = "REDIS_PASSWORD"       # password from this variable, not the file
//! # key_prefix = "limitree"               # keys are {<key_prefix>:<tree>}:…
//! # timeout = "100ms"                     # per call; past it on_error decides
//! # on_error = "deny"                     # "deny" | "allow" | "local"
//!
//! [[trees]]                   # the policy; see the limitree library
//! name = "notifications"
//! # …
//!
//! [notify]                    # the Slack relay; see crate::notify::config
//! default_webhook = "${SLACK_WEBHOOK_URL}"
//! [notify.routes]
//! errors = "${SLACK_ERRORS_WEBHOOK}"
//! ```
//!
//! Every section is optional; a file without `[[trees]]` runs the built-in
//! default policy. Validation does not stop at the first problem: `config check`
//! lists them all, each naming the file and the key.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use limitree::Policy;
use limitree::policy::parse_duration;
use limitree::store::fallback::OnError;
use serde::Deserialize;

use crate::notify::config::NotifyConfig;

/// Where the server listens unless told otherwise.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
/// Largest accepted request body: a check is a few hundred bytes; this leaves
/// room for many descriptors without letting one client hold much memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 65_536;
/// How long shutdown waits for in-flight requests and background tasks.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often idle buckets are swept from the memory store.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Top-level keys a config file may hold.
const TOP_LEVEL_KEYS: [&str; 4] = ["server", "store", "trees", "notify"];

/// A whole, validated server config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from (a path, or `<built-in default>`), for messages.
    pub source: String,
    /// The `[server]` section.
    pub server: ServerConfig,
    /// The `[store]` section.
    pub store: StoreConfig,
    /// The `[[trees]]`, validated by the library.
    pub policy: Policy,
    /// Whether `policy` is the built-in default (the file had no `[[trees]]`).
    pub default_policy: bool,
    /// The `[notify]` section (the Slack relay).
    pub notify: NotifyConfig,
}

/// The `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// HTTP listen address.
    pub http: SocketAddr,
    /// Largest request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Bound on graceful shutdown.
    pub shutdown_grace: Duration,
    /// Period of the idle-bucket sweep.
    pub sweep_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
        }
    }
}

/// Which store holds bucket state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// In-process state ([`limitree::MemoryStore`]).
    Memory,
    /// Shared state in Redis (standalone or Cluster), behind the failure policy.
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
/// settings are kept (with defaults) even for `kind = "memory"` so that
/// `serve --redis URL` can switch to Redis with the file's prefix, timeout and
/// failure policy.
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

/// The Redis keys of `[store]`. URLs are kept as written; the password from
/// `password_env` is added only when the store is built
/// ([`RedisSettings::urls_with_password`]). `Debug` hides passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `url` or `cluster`; `None` until one is given.
    pub nodes: Option<RedisNodes>,
    /// `password_env`: the environment variable the password was read from.
    pub password_env: Option<String>,
    /// The password read from `password_env` at load time.
    password: Option<String>,
    /// `key_prefix`: the first part of every key's hash tag.
    pub key_prefix: String,
    /// `timeout`: deadline of every Redis call.
    pub timeout: Duration,
    /// `on_error`: what decides while Redis fails.
    pub on_error: OnError,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            nodes: None,
            password_env: None,
            password: None,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_STORE_TIMEOUT,
            on_error: OnError::Deny,
        }
    }
}

/// The default `[store] key_prefix`.
pub const DEFAULT_KEY_PREFIX: &str = "limitree";
/// The default `[store] timeout`.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(100);

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
    /// The node URLs with the `password_env` password set in each (as given
    /// when there is none). These hold the password: never log them; log
    /// [`RedisSettings::describe`] instead.
    pub fn urls_with_password(&self) -> Result<Vec<String>, String> {
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

    /// One line for logs and `config check`, passwords redacted.
    pub fn describe(&self) -> String {
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
        let mut text = format!(
            "{nodes}, key_prefix {}, timeout {}, on_error {}",
            self.key_prefix,
            limitree::policy::format_duration(limitree::clock::duration_to_micros(self.timeout)),
            self.on_error.as_str()
        );
        if let Some(var) = &self.password_env {
            let _ = fmt::Write::write_fmt(&mut text, format_args!(", password from ${var}"));
        }
        text
    }

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
                    redact_url(url)
                ));
            } else if let Some(password) = &self.password {
                if let Err(e) = with_password(url, password) {
                    problems.push(format!(
                        "[store] password_env: cannot use it with `{}`: {e}; give the password in one place",
                        redact_url(url)
                    ));
                }
            }
        }
        problems
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

/// Every problem found in a config file, each a full sentence naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

/// `[server]` as written; durations and the address are checked afterwards so
/// their messages can say how to write them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    http: Option<String>,
    max_body_bytes: Option<u64>,
    shutdown_grace: Option<String>,
    sweep_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    kind: Option<String>,
    url: Option<String>,
    cluster: Option<Vec<String>>,
    password_env: Option<String>,
    key_prefix: Option<String>,
    timeout: Option<String>,
    on_error: Option<String>,
}

impl Config {
    /// The config `limitree serve` runs without a file: the built-in policy in
    /// a memory store on [`DEFAULT_HTTP`].
    pub fn builtin() -> Config {
        Config {
            source: "<built-in default>".to_owned(),
            server: ServerConfig::default(),
            store: StoreConfig::default(),
            policy: Policy::default_notifications(),
            default_policy: true,
            notify: NotifyConfig::default(),
        }
    }

    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("{source}: cannot read the file: {e}")]))?;
        Config::from_toml_str(&text, &source)
    }

    /// Parses and validates a config document; `source` names it in errors.
    pub fn from_toml_str(text: &str, source: &str) -> Result<Config, ConfigErrors> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            ConfigErrors(vec![format!(
                "{source}: not valid TOML: {}",
                e.to_string().trim_end()
            )])
        })?;
        let mut errors = Vec::new();

        for key in table.keys() {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                errors.push(format!(
                    "{source}: unknown top-level key `{key}`; expected one of: [server], [store], [[trees]], [notify]"
                ));
            }
        }

        let server = match table.remove("server") {
            None => Some(ServerConfig::default()),
            Some(value) => parse_server(value, source, &mut errors),
        };
        let store = match table.remove("store") {
            None => Some(StoreConfig::default()),
            Some(value) => parse_store(value, source, &mut errors),
        };
        let (policy, default_policy) = match table.remove("trees") {
            None => (Some(Policy::default_notifications()), true),
            Some(trees) => match Policy::from_toml_trees(trees, source) {
                Ok(policy) => (Some(policy), false),
                Err(policy_errors) => {
                    errors.extend(policy_errors.errors().iter().map(ToString::to_string));
                    (None, false)
                }
            },
        };

        let mut notify = match table.remove("notify") {
            None => Some(NotifyConfig::default()),
            Some(value) => NotifyConfig::parse(value, source, &mut errors),
        };

        if let (Some(server), Some(policy), Some(notify)) = (&server, &policy, &mut notify) {
            notify.check_against(server, policy, source, &mut errors);
        }

        match (server, store, policy, notify) {
            (Some(server), Some(store), Some(policy), Some(notify)) if errors.is_empty() => {
                Ok(Config {
                    source: source.to_owned(),
                    server,
                    store,
                    policy,
                    default_policy,
                    notify,
                })
            }
            _ => Err(ConfigErrors(errors)),
        }
    }
}

fn parse_server(
    value: toml::Value,
    source: &str,
    errors: &mut Vec<String>,
) -> Option<ServerConfig> {
    let raw: RawServer = match value.try_into() {
        Ok(raw) => raw,
        Err(e) => {
            errors.push(format!("{source}: [server]: {}", toml_message(&e)));
            return None;
        }
    };
    let before = errors.len();
    let mut server = ServerConfig::default();
    if let Some(http) = raw.http {
        match http.parse() {
            Ok(addr) => server.http = addr,
            Err(_) => errors.push(format!(
                "{source}: [server] http: `{http}` is not a socket address; write e.g. \"{DEFAULT_HTTP}\""
            )),
        }
    }
    if let Some(max) = raw.max_body_bytes {
        match usize::try_from(max) {
            Ok(0) | Err(_) => errors.push(format!(
                "{source}: [server] max_body_bytes: {max} is out of range; give a positive byte count such as {DEFAULT_MAX_BODY_BYTES}"
            )),
            Ok(max) => server.max_body_bytes = max,
        }
    }
    let mut duration = |key: &str, text: Option<String>, slot: &mut Duration| {
        if let Some(text) = text {
            match parse_duration(&text) {
                Ok(0) => errors.push(format!("{source}: [server] {key}: must be longer than 0s")),
                Ok(us) => *slot = Duration::from_micros(us),
                Err(e) => errors.push(format!("{source}: [server] {key}: {e}")),
            }
        }
    };
    duration(
        "shutdown_grace",
        raw.shutdown_grace,
        &mut server.shutdown_grace,
    );
    duration(
        "sweep_interval",
        raw.sweep_interval,
        &mut server.sweep_interval,
    );
    (errors.len() == before).then_some(server)
}

fn parse_store(value: toml::Value, source: &str, errors: &mut Vec<String>) -> Option<StoreConfig> {
    let raw: RawStore = match value.try_into() {
        Ok(raw) => raw,
        Err(e) => {
            errors.push(format!("{source}: [store]: {}", toml_message(&e)));
            return None;
        }
    };
    let before = errors.len();
    let mut error = |key: &str, message: String| {
        errors.push(format!("{source}: [store] {key}: {message}"));
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
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            error(
                "key_prefix",
                format!(
                    "`{prefix}` must be non-empty without `{{` or `}}` (it is part of the keys' hash tag); e.g. \"{DEFAULT_KEY_PREFIX}\""
                ),
            );
        } else {
            redis.key_prefix = prefix;
        }
    }
    if let Some(text) = raw.timeout {
        match parse_duration(&text) {
            Ok(0) => error(
                "timeout",
                "must be longer than 0s; e.g. \"100ms\"".to_owned(),
            ),
            Ok(us) => redis.timeout = Duration::from_micros(us),
            Err(e) => error("timeout", e),
        }
    }
    if let Some(name) = raw.on_error {
        match OnError::from_name(&name) {
            Some(on_error) => redis.on_error = on_error,
            None => error(
                "on_error",
                format!(
                    "unknown policy `{name}`; use \"deny\" (fail closed), \"allow\" (fail open) or \"local\" (per-instance memory)"
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
                format!("unknown store `{other}`; use \"memory\" or \"redis\""),
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
            errors.push(format!("{source}: {problem}"));
        }
    }
    (errors.len() == before).then_some(StoreConfig { kind, redis })
}

/// A toml error on one line: deserializing a detached `Value` has no source
/// snippet to show, only the message.
pub(crate) fn toml_message(e: &toml::de::Error) -> String {
    e.message().trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_builtin_config() {
        let config = Config::from_toml_str("", "c.toml").unwrap();
        assert_eq!(config.server, ServerConfig::default());
        assert!(config.default_policy);
        assert_eq!(config.policy, Policy::default_notifications());
    }

    #[test]
    fn every_error_is_reported_with_file_and_key() {
        let text = "bogus = 1\n[server]\nhttp = \"nope\"\nshutdown_grace = \"ten\"\ncolour = 1\n[store]\nkind = \"redis\"\n";
        let errors = Config::from_toml_str(text, "c.toml").unwrap_err().0;
        assert!(
            errors.iter().all(|e| e.starts_with("c.toml: ")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.contains("`bogus`")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("colour")), "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("[store] url: kind = \"redis\" needs")),
            "{errors:?}"
        );
    }

    #[test]
    fn server_values_are_parsed() {
        let text = "[server]\nhttp = \"0.0.0.0:9000\"\nmax_body_bytes = 10\nshutdown_grace = \"2s\"\nsweep_interval = \"1m\"\n";
        let server = Config::from_toml_str(text, "c.toml").unwrap().server;
        assert_eq!(server.http, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(server.max_body_bytes, 10);
        assert_eq!(server.shutdown_grace, Duration::from_secs(2));
        assert_eq!(server.sweep_interval, Duration::from_secs(60));
    }
}

#[cfg(all(test, feature = "redis"))]
mod store_tests {
    use rstest::rstest;

    use super::*;

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
        assert_eq!(s.redis.key_prefix, "app");
        assert_eq!(s.redis.timeout, Duration::from_millis(250));
        assert_eq!(s.redis.on_error, OnError::Local);
        assert_eq!(
            s.redis.describe(),
            "url redis://:***@127.0.0.1:6380/2, key_prefix app, timeout 250ms, on_error local"
        );
        assert!(!format!("{s:?}").contains("pw@"));
    }

    #[test]
    fn nodes_imply_redis_and_defaults_apply() {
        let s = store("cluster = [\"redis://10.0.0.1:7000\", \"redis://10.0.0.2:7000\"]").unwrap();
        assert_eq!(s.kind, StoreKind::Redis);
        assert_eq!(s.redis.on_error, OnError::Deny);
        assert_eq!(s.redis.timeout, DEFAULT_STORE_TIMEOUT);
        assert_eq!(s.redis.key_prefix, DEFAULT_KEY_PREFIX);
        assert_eq!(s.redis.urls_with_password().unwrap().len(), 2);
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
        "[store] key_prefix: `a{b` must be non-empty"
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
        "[store]: unknown field `password`"
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
        assert_eq!(s.redis.timeout, Duration::from_millis(50));
        let e = s.use_redis_url("redis://:secret@host/x").unwrap_err();
        assert!(e.starts_with("--redis: `redis://:***@host/x`"), "{e}");
        assert!(!e.contains("secret"));
    }
}
