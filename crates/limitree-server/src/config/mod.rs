//! The server's config file: one module per section, gathered here.
//!
//! | section | parsed in | holds |
//! |---|---|---|
//! | `[server]` | [`server`] | listen address, body cap, shutdown grace, sweep |
//! | `[server.auth]` | [`auth`] | API tokens (named as `${VAR}` / `file:PATH`, read at start) |
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

pub mod auth;
pub mod checks;
pub mod envoy;
pub mod fields;
pub mod server;
pub mod store;

use std::fmt;
use std::path::Path;

use limitree::Policy;
use limitree::policy::{MAX_ECHO, PolicyError, TomlDocument, closest, cut, utf8_text};

use self::fields::Section;
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

/// Every problem found in a config file, each a full sentence naming the file
/// and, where it is in the file, the line and column:
/// `c.toml: line 3, column 18: [server] shutdown_grace: expected a duration
/// such as "30s", found the number 10; write shutdown_grace = "10s"`.
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
        if envoy::is_envoy(path) {
            return Config::from_envoy(path);
        }
        let source = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|e| ConfigErrors(vec![format!("{source}: cannot read the file: {e}")]))?;
        let text = utf8_text(&bytes, &source).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        Config::from_toml_str(text, &source)
    }

    /// An envoyproxy/ratelimit YAML file or directory ([`envoy`]): its
    /// domains are the policy; every other section keeps its default.
    pub fn from_envoy(path: &Path) -> Result<Config, ConfigErrors> {
        let domains = envoy::load(path).map_err(ConfigErrors)?;
        let policy = Policy::from_envoy_domains(domains)
            .map_err(|e| ConfigErrors(e.errors().iter().map(ToString::to_string).collect()))?;
        Ok(Config {
            source: path.display().to_string(),
            policy,
            default_policy: false,
            ..Config::builtin()
        })
    }

    /// Parses and validates a config document; `source` names it in errors.
    pub fn from_toml_str(text: &str, source: &str) -> Result<Config, ConfigErrors> {
        let doc =
            TomlDocument::parse(text, source).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        let mut errors = Vec::new();

        for (key, location) in doc.top_level_keys() {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                let hint = closest(&key, TOP_LEVEL_KEYS)
                    .map(|best| format!("did you mean `{best}`? "))
                    .unwrap_or_default();
                errors.push(
                    PolicyError::located(
                        source,
                        Some(location),
                        "",
                        format!(
                            "unknown top-level key `{}`; {hint}expected one of: [server], [store], [[trees]], [notify]",
                            cut(&key, MAX_ECHO)
                        ),
                    )
                    .to_string(),
                );
            }
        }

        // Each section reports all its problems, and a section in error does
        // not hide the others': every section is read whatever came before.
        let section = |name| doc.has(name).then(|| Section::new(&doc, name));
        let server = match section("server") {
            None => Some(ServerConfig::default()),
            Some(s) => ServerConfig::parse(&s, &mut errors),
        };
        let store = match section("store") {
            None => Some(StoreConfig::default()),
            Some(s) => StoreConfig::parse(&s, &mut errors),
        };
        let (policy, default_policy) = if doc.has("trees") {
            match Policy::from_document(&doc) {
                Ok(policy) => (Some(policy), false),
                Err(policy_errors) => {
                    errors.extend(policy_errors.errors().iter().map(ToString::to_string));
                    (None, false)
                }
            }
        } else {
            (Some(Policy::default_notifications()), true)
        };
        let notify = match section("notify") {
            None => Some(NotifyConfig::default()),
            Some(s) => NotifyConfig::parse(&s, &mut errors),
        };

        // On the sections that did read: each check needs only its own.
        checks::across_sections(
            server.as_ref(),
            policy.as_ref(),
            notify.as_ref(),
            &doc,
            &mut errors,
        );

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
    use rstest::rstest;

    use super::*;

    const TREE: &str = "[[trees]]\nname = \"notifications\"\n[[trees.levels]]\nname = \"category\"\nby = [\"category\"]\n";

    /// Broken configs: every expected message (the start of one error) names
    /// the file, the line and column, the key path, and what to write; no
    /// error uses Rust's words for types, and none repeats much of the input.
    #[rstest]
    #[case::string_for_a_number(
        "[server]\nmax_body_bytes = \"1s\"\n".to_owned(),
        &["c.toml: line 2, column 18: [server] max_body_bytes: expected a whole number, found the string \"1s\""]
    )]
    #[case::number_for_a_duration(
        "[server]\nshutdown_grace = 10\n".to_owned(),
        &["c.toml: line 2, column 18: [server] shutdown_grace: expected a duration such as \"30s\", found the number 10; write shutdown_grace = \"10s\""]
    )]
    #[case::quoted_limit(
        format!("{TREE}limit = \"10\"\nwindow = \"30m\"\n"),
        &["c.toml: line 6, column 9: trees[notifications].levels[category].limit: expected a whole number, found the string \"10\"; remove the quotes: limit = 10"]
    )]
    #[case::single_bracket_levels(
        "[[trees]]\nname = \"n\"\n[trees.levels]\nname = \"x\"\nlimit = 1\nwindow = \"1s\"\n".to_owned(),
        &["c.toml: line 3, column 1: trees[n].levels: expected a list, found a table; write each entry as its own `[[trees.levels]]` table (double brackets)"]
    )]
    #[case::section_typo(
        "[sever]\nhttp = \"127.0.0.1:1\"\n".to_owned(),
        &["c.toml: line 1, column 2: unknown top-level key `sever`; did you mean `server`?"]
    )]
    #[case::key_typo(
        "[server]\nshutdown_grase = \"1s\"\n".to_owned(),
        &["c.toml: line 2, column 1: [server] shutdown_grase: unknown key `shutdown_grase`; did you mean `shutdown_grace`?"]
    )]
    #[case::every_key_of_a_section(
        "[server]\nhttp = 1\nmax_body_bytes = \"x\"\ncolour = 1\nsweep_interval = \"soon\"\n".to_owned(),
        &[
            "c.toml: line 2, column 8: [server] http: expected a string in quotes, found the number 1; put it in quotes: http = \"1\"",
            "c.toml: line 3, column 18: [server] max_body_bytes: expected a whole number",
            "c.toml: line 4, column 1: [server] colour: unknown key `colour`",
            "c.toml: line 5, column 18: [server] sweep_interval: `soon` is not a duration",
        ]
    )]
    #[case::format_and_cross_section_together(
        "[server]\nmax_body_bytes = \"big\"\n[notify]\ntree = \"notificatons\"\n".to_owned(),
        &[
            "c.toml: line 2, column 18: [server] max_body_bytes: expected a whole number",
            "c.toml: line 4, column 8: [notify] tree: `notificatons` is not defined; did you mean `notifications`?",
        ]
    )]
    #[case::undefined_notify_tree_beside_a_broken_policy(
        format!("[notify]\ntree = \"notification\"\n{TREE}limit = 0\nwindow = \"30m\"\n"),
        &[
            "c.toml: line 8, column 9: trees[notifications].levels[category].limit: `limit` is 0",
            "c.toml: line 2, column 8: [notify] tree: `notification` is not defined; did you mean `notifications`?",
        ]
    )]
    #[case::notify_tree_not_keyed_by_category(
        "[notify]\ntree = \"users\"\n[[trees]]\nname = \"users\"\n[[trees.levels]]\nname = \"user\"\nby = [\"user\"]\nlimit = 1\nwindow = \"1s\"\n".to_owned(),
        &["c.toml: line 2, column 8: [notify] tree: `users` has no level by `category`"]
    )]
    #[case::route_of_the_wrong_type(
        "[notify.routes]\nerrors = 5\n".to_owned(),
        &["c.toml: line 2, column 10: [notify.routes] errors: expected a string in quotes, found the number 5"]
    )]
    #[case::store_duration(
        "[store]\nurl = \"redis://a\"\ntimeout = 100\n".to_owned(),
        &["c.toml: line 3, column 11: [store] timeout: expected a duration such as \"30s\", found the number 100; write timeout = \"100s\""]
    )]
    #[case::negative_count(
        "[notify]\nburst = -1\n".to_owned(),
        &["c.toml: line 2, column 9: [notify] burst: expected a whole number, 0 or more, found the number -1"]
    )]
    #[case::string_for_a_list(
        "[store]\ncluster = \"redis://a:7000\"\n".to_owned(),
        &["c.toml: line 2, column 11: [store] cluster: expected a list, found the string \"redis://a:7000\"; write cluster = [\"redis://a:7000\"]"]
    )]
    #[case::section_not_a_table(
        "server = 5\n".to_owned(),
        &["c.toml: line 1, column 10: [server]: expected a table, found the number 5"]
    )]
    #[case::syntax_error(
        "[server]\nhttp = \"127.0.0.1:1\n".to_owned(),
        &["c.toml: line 2, column "]
    )]
    #[case::long_line_is_cut(
        format!("[server]\nhttp = \"{}\"\n", "a".repeat(100_000)),
        &["c.toml: line 2, column 8: [server] http: `aaaa"]
    )]
    #[case::deep_inline_table(
        format!("x = {}1{}\n", "{a = ".repeat(200_000), "}".repeat(200_000)),
        &["c.toml: line 1, column ", "nested too deeply"]
    )]
    fn broken_configs_name_line_key_and_fix(#[case] text: String, #[case] expected: &[&str]) {
        let errors = Config::from_toml_str(&text, "c.toml").unwrap_err().0;
        for want in expected {
            assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with(want)
                        || (!want.starts_with("c.toml") && e.contains(want))),
                "{want:?} not in {errors:#?}"
            );
        }
        assert!(errors.iter().all(|e| e.len() < 400), "{errors:#?}");
        for rust in [
            "i64",
            "u64",
            "invalid type",
            "a map",
            "sequence",
            "struct Raw",
        ] {
            assert!(
                errors.iter().all(|e| !e.contains(rust)),
                "{rust} in {errors:#?}"
            );
        }
    }

    #[test]
    fn a_file_that_is_not_utf8_names_the_line_and_byte() {
        let dir = std::env::temp_dir().join(format!("limitree-config-utf8-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("latin1.toml");
        std::fs::write(&path, b"[server]\n# caf\xe9\nhttp = \"127.0.0.1:1\"\n").unwrap();
        let errors = Config::load(&path).unwrap_err().0;
        assert_eq!(
            errors,
            [format!(
                "{}: the file is not UTF-8: line 2, byte 6 of the line (byte offset 14 in the file) is 0xe9; save the file as UTF-8",
                path.display()
            )]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
