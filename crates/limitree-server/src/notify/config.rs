//! The `[notify]` section: where notifications go and how they are paced.
//!
//! ```toml
//! [notify]
//! data_dir = "./limitree-data"             # outbox and dead letters (memory store)
//! tree = "notifications"                   # tree notifications are decided in (default: the only one)
//! default_webhook = "${SLACK_WEBHOOK_URL}" # route for categories without their own
//! queue_capacity = 1000                    # per webhook; past it POST /v1/notify answers 503
//! pace = "1s"                              # one message per `pace` per webhook…
//! burst = 3                                # …after a burst of this many
//! timeout = "10s"                          # per webhook call
//! max_attempts = 8                         # 5xx / timeouts before dead-lettering
//! backoff_initial = "1s"                   # first retry wait; doubles, with jitter…
//! backoff_max = "60s"                      # …up to this
//! drain = "5s"                             # after SIGTERM, keep delivering this long (< shutdown_grace)
//! digest_samples = 3                       # suppressed texts quoted in a digest
//! digest_interval = "1s"                   # how often pending digests are looked at
//! max_text_chars = 40000                   # longest `text` accepted
//! fsync = true                             # fsync the outbox before answering 202
//!
//! [notify.routes]                          # category → webhook
//! errors = "${SLACK_ERRORS_WEBHOOK}"
//! ```
//!
//! Webhook values are kept as written (`${VAR}` unexpanded): they are secrets,
//! expanded from the environment only when the relay starts
//! ([`super::route::Routes::resolve`]), so `config check` never needs — or
//! prints — them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::fields::{DurationText, Section, positive_duration};

/// The default route with no config: Slack's incoming-webhook URL from the
/// environment, so `SLACK_WEBHOOK_URL=… limitree serve` is a working relay.
pub const DEFAULT_WEBHOOK: &str = "${SLACK_WEBHOOK_URL}";
/// Where the outbox lives unless told otherwise (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "./limitree-data";

/// How long workers keep delivering after the shutdown signal, by default
/// (it must be shorter than `[server] shutdown_grace`; see
/// [`crate::config::checks`]).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);

/// The validated `[notify]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// Directory of the outbox journal and the dead letters.
    pub data_dir: PathBuf,
    /// The tree notifications are decided in when the request names none.
    pub tree: Option<String>,
    /// The route for categories without their own, as written (`${VAR}` allowed);
    /// `None` when the file sets it to `""` (no default route).
    pub default_webhook: Option<String>,
    /// Category → webhook, as written.
    pub routes: BTreeMap<String, String>,
    /// Largest number of notifications waiting per webhook.
    pub queue_capacity: usize,
    /// Steady pacing: at most one message per `pace` per webhook.
    pub pace: Duration,
    /// Messages that may go back to back before pacing applies.
    pub burst: u32,
    /// Deadline of one webhook call.
    pub timeout: Duration,
    /// Attempts (5xx, timeouts, connection errors) before a message is dead-lettered.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles per attempt, with jitter.
    pub backoff_initial: Duration,
    /// Longest wait between retries.
    pub backoff_max: Duration,
    /// After the shutdown signal, how long workers keep delivering before they
    /// leave the rest in the outbox for the next start.
    pub drain: Duration,
    /// Suppressed texts quoted in a digest.
    pub digest_samples: usize,
    /// How often pending digests are looked at.
    pub digest_interval: Duration,
    /// Longest `text`, in characters (Slack truncates past 40,000).
    pub max_text_chars: usize,
    /// fsync the outbox before a 202 (survives power loss, not only a crash).
    pub fsync: bool,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            tree: None,
            default_webhook: Some(DEFAULT_WEBHOOK.to_owned()),
            routes: BTreeMap::new(),
            queue_capacity: 1000,
            pace: Duration::from_secs(1),
            burst: 3,
            timeout: Duration::from_secs(10),
            max_attempts: 8,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            drain: DEFAULT_DRAIN,
            digest_samples: 3,
            digest_interval: Duration::from_secs(1),
            max_text_chars: 40_000,
            fsync: true,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    data_dir: Option<String>,
    tree: Option<String>,
    default_webhook: Option<String>,
    routes: Option<BTreeMap<String, String>>,
    queue_capacity: Option<u64>,
    pace: Option<DurationText>,
    burst: Option<u64>,
    timeout: Option<DurationText>,
    max_attempts: Option<u64>,
    backoff_initial: Option<DurationText>,
    backoff_max: Option<DurationText>,
    drain: Option<DurationText>,
    digest_samples: Option<u64>,
    digest_interval: Option<DurationText>,
    max_text_chars: Option<u64>,
    fsync: Option<bool>,
}

impl NotifyConfig {
    /// Parses `[notify]`, pushing every problem (naming `source` and the key) to `errors`.
    pub fn parse(section: &Section<'_, '_>, errors: &mut Vec<String>) -> Option<NotifyConfig> {
        let before = errors.len();
        let raw: RawNotify = section.read(errors)?;
        let mut c = NotifyConfig::default();
        if let Some(dir) = raw.data_dir {
            if dir.is_empty() {
                errors.push(section.error(
                    "data_dir",
                    format!("must name a directory, e.g. \"{DEFAULT_DATA_DIR}\""),
                ));
            }
            c.data_dir = PathBuf::from(dir);
        }
        c.tree = raw.tree;
        if let Some(default) = raw.default_webhook {
            c.default_webhook = (!default.is_empty()).then_some(default);
        }
        for (category, webhook) in raw.routes.unwrap_or_default() {
            if webhook.is_empty() {
                errors.push(section.error(
                    &format!("routes.{category}"),
                    "empty webhook; write a URL or \"${ENV_VAR}\"",
                ));
            }
            c.routes.insert(category, webhook);
        }
        let mut count = |key: &str, value: Option<u64>, min: u64, slot: &mut u64| {
            if let Some(v) = value {
                if v < min {
                    errors
                        .push(section.error(key, format!("{v} is too small; the least is {min}")));
                } else {
                    *slot = v;
                }
            }
        };
        let mut queue_capacity = c.queue_capacity as u64;
        let mut burst = u64::from(c.burst);
        let mut max_attempts = u64::from(c.max_attempts);
        let mut digest_samples = c.digest_samples as u64;
        let mut max_text_chars = c.max_text_chars as u64;
        count("queue_capacity", raw.queue_capacity, 1, &mut queue_capacity);
        count("burst", raw.burst, 1, &mut burst);
        count("max_attempts", raw.max_attempts, 1, &mut max_attempts);
        count("digest_samples", raw.digest_samples, 0, &mut digest_samples);
        count("max_text_chars", raw.max_text_chars, 1, &mut max_text_chars);
        c.queue_capacity = usize::try_from(queue_capacity).unwrap_or(usize::MAX);
        c.burst = u32::try_from(burst).unwrap_or(u32::MAX);
        c.max_attempts = u32::try_from(max_attempts).unwrap_or(u32::MAX);
        c.digest_samples = usize::try_from(digest_samples).unwrap_or(usize::MAX);
        c.max_text_chars = usize::try_from(max_text_chars).unwrap_or(usize::MAX);

        let mut duration = |key: &str, text: Option<DurationText>, slot: &mut Duration| {
            if let Some(DurationText(text)) = text {
                match positive_duration(&text) {
                    Ok(d) => *slot = d,
                    Err(e) => errors.push(section.error(key, e)),
                }
            }
        };
        duration("pace", raw.pace, &mut c.pace);
        duration("timeout", raw.timeout, &mut c.timeout);
        duration(
            "backoff_initial",
            raw.backoff_initial,
            &mut c.backoff_initial,
        );
        duration("backoff_max", raw.backoff_max, &mut c.backoff_max);
        duration("drain", raw.drain, &mut c.drain);
        duration(
            "digest_interval",
            raw.digest_interval,
            &mut c.digest_interval,
        );
        if c.backoff_max < c.backoff_initial {
            errors.push(section.error(
                "backoff_max",
                "shorter than backoff_initial; the wait only grows",
            ));
        }
        if let Some(fsync) = raw.fsync {
            c.fsync = fsync;
        }
        (errors.len() == before).then_some(c)
    }
}

impl NotifyConfig {
    /// Every `${VAR}` the webhooks refer to, with the key that holds it
    /// (`[notify] default_webhook`, `[notify.routes] errors`). The implicit
    /// default route (`${SLACK_WEBHOOK_URL}` with no `[notify]` saying so)
    /// is listed too: the caller decides how to word it.
    pub fn env_references(&self) -> Vec<(String, String)> {
        use crate::config::fields::env_references;
        let mut refs = Vec::new();
        if let Some(default) = &self.default_webhook {
            for var in env_references(default) {
                refs.push(("[notify] default_webhook".to_owned(), var.to_owned()));
            }
        }
        for (category, raw) in &self.routes {
            for var in env_references(raw) {
                refs.push((format!("[notify.routes] {category}"), var.to_owned()));
            }
        }
        refs
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    use super::*;

    #[test]
    fn no_section_routes_everything_to_slack_webhook_url() {
        let c = Config::from_toml_str("", "c.toml").unwrap().notify;
        assert_eq!(c.default_webhook.as_deref(), Some("${SLACK_WEBHOOK_URL}"));
        assert!(c.routes.is_empty());
        assert_eq!(c.pace, Duration::from_secs(1));
    }

    #[test]
    fn values_are_parsed_and_problems_listed() {
        let text = "[notify]\npace = \"50ms\"\nburst = 2\ndefault_webhook = \"\"\n[notify.routes]\nerrors = \"${E}\"\n";
        let c = Config::from_toml_str(text, "c.toml").unwrap().notify;
        assert_eq!(c.pace, Duration::from_millis(50));
        assert_eq!(c.burst, 2);
        assert_eq!(c.default_webhook, None);
        assert_eq!(c.routes["errors"], "${E}");

        let bad = "[notify]\npace = \"soon\"\nburst = 0\ncolour = 1\n";
        let errors = Config::from_toml_str(bad, "c.toml").unwrap_err().0;
        assert!(errors.iter().any(|e| e.contains("colour")), "{errors:?}");
        let bad = "[notify]\npace = \"soon\"\nburst = 0\n";
        let errors = Config::from_toml_str(bad, "c.toml").unwrap_err().0;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors
                .iter()
                .all(|e| e.starts_with("c.toml: line ") && e.contains(": [notify] ")),
            "{errors:?}"
        );
    }
}
