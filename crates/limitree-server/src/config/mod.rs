//! The server's config file: one module per section, gathered here.
//!
//! | section | parsed in | holds |
//! |---|---|---|
//! | `[server]` | [`server`] | listen address, body cap, shutdown grace, sweep |
//! | `[store]` | [`store`] | memory or Redis, and how to use Redis |
//! | `[[trees]]` | the library ([`limitree::Policy::from_toml_trees`]) | the policy |
//! | `[notify]` | [`crate::notify::config`] (the relay owns its section) | routes, pacing, outbox |
//!
//! Every section is optional; a file without `[[trees]]` runs the built-in
//! default policy. What one section requires of another is checked in
//! [`checks`]; the field parsers every section shares (durations, addresses,
//! `${VAR}` references) are in [`fields`], the only part of this module the
//! sections import. Validation does not stop at the first problem:
//! `config check` lists them all, each naming the file and the key.

pub mod checks;
pub mod envoy;
pub mod fields;
pub mod server;
pub mod store;

use std::fmt;
use std::path::Path;

use limitree::Policy;

pub use self::server::{
    DEFAULT_HTTP, DEFAULT_MAX_BODY_BYTES, DEFAULT_SHUTDOWN_GRACE, DEFAULT_SWEEP_INTERVAL,
    ServerConfig,
};
pub use self::store::{RedisNodes, RedisSettings, StoreConfig, StoreKind};
use crate::notify::config::NotifyConfig;

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

/// Every problem found in a config file, each a full sentence naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

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
            Some(value) => ServerConfig::parse(value, source, &mut errors),
        };
        let store = match table.remove("store") {
            None => Some(StoreConfig::default()),
            Some(value) => StoreConfig::parse(value, source, &mut errors),
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
        let notify = match table.remove("notify") {
            None => Some(NotifyConfig::default()),
            Some(value) => NotifyConfig::parse(value, source, &mut errors),
        };

        if let (Some(server), Some(policy), Some(notify)) = (&server, &policy, &notify) {
            checks::across_sections(server, policy, notify, source, &mut errors);
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
}
