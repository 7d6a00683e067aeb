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
//! kind = "memory"
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
    pub store: StoreKind,
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
}

impl StoreKind {
    /// The name in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
        }
    }
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
}

impl Config {
    /// The config `limitree serve` runs without a file: the built-in policy in
    /// a memory store on [`DEFAULT_HTTP`].
    pub fn builtin() -> Config {
        Config {
            source: "<built-in default>".to_owned(),
            server: ServerConfig::default(),
            store: StoreKind::Memory,
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
            None => Some(StoreKind::Memory),
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

fn parse_store(value: toml::Value, source: &str, errors: &mut Vec<String>) -> Option<StoreKind> {
    let raw: RawStore = match value.try_into() {
        Ok(raw) => raw,
        Err(e) => {
            errors.push(format!("{source}: [store]: {}", toml_message(&e)));
            return None;
        }
    };
    match raw.kind.as_deref() {
        None | Some("memory") => Some(StoreKind::Memory),
        Some("redis") => {
            errors.push(format!(
                "{source}: [store] kind: the redis store is not built in this version; use kind = \"memory\""
            ));
            None
        }
        Some(other) => {
            errors.push(format!(
                "{source}: [store] kind: unknown store `{other}`; the only kind in this version is \"memory\""
            ));
            None
        }
    }
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
                .any(|e| e.contains("redis store is not built")),
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
