//! Routes: which Slack incoming webhook a category's notifications go to.
//!
//! A webhook URL is a secret (anyone holding it can post to the channel), so it
//! is expanded from the environment (`"${SLACK_ERRORS_WEBHOOK}"`) only here, is
//! held in a [`Webhook`] whose `Debug` hides it, and is named everywhere else —
//! logs, errors, metrics, the outbox — by its *label*: the config key that
//! routes to it (`default`, `routes.errors`).

use std::collections::BTreeMap;
use std::fmt;

use super::config::NotifyConfig;
use crate::config::fields::expand_env;

/// One Slack incoming webhook. Categories routed to the same URL share it (and
/// so share its queue and pacing, as Slack's rate limit is per webhook).
#[derive(Clone)]
pub struct Webhook {
    label: String,
    url: reqwest::Url,
}

impl Webhook {
    /// The name logs and metrics use: the first config key routing to it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The URL, for the one caller that needs it: the delivery's HTTP request.
    pub(crate) fn url(&self) -> &reqwest::Url {
        &self.url
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("label", &self.label)
            .field("url", &"<redacted>")
            .finish()
    }
}

/// Why a category has no webhook; the message names config keys and
/// environment variables, never a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoRoute(pub String);

/// Every category's route, resolved at start.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    webhooks: Vec<Webhook>,
    /// Category → index into `webhooks`, or why its route is unusable.
    by_category: BTreeMap<String, Result<usize, NoRoute>>,
    /// The default route; `None` when none is configured.
    default: Option<Result<usize, NoRoute>>,
}

impl Routes {
    /// Expands every route of `config` with `env` (the process environment in
    /// the server; a map in tests). A route whose variable is unset or whose URL
    /// is not http(s) stays in the table as unusable, so its category gets a
    /// 503 saying what to set rather than quietly falling back to the default.
    pub fn resolve(config: &NotifyConfig, env: impl Fn(&str) -> Option<String>) -> Routes {
        let mut routes = Routes::default();
        let mut add = |label: String, raw: &str| -> Result<usize, NoRoute> {
            let url = expand_env(raw, &env).map_err(|var| {
                NoRoute(format!(
                    "the webhook of `{label}` refers to ${{{var}}}, which is not set in the server's environment; set it and restart"
                ))
            })?;
            let url = reqwest::Url::parse(&url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .ok_or_else(|| {
                    NoRoute(format!(
                        "the webhook of `{label}` is not an http(s) URL; give a Slack incoming-webhook URL"
                    ))
                })?;
            if let Some(at) = routes.webhooks.iter().position(|w| w.url == url) {
                return Ok(at);
            }
            routes.webhooks.push(Webhook { label, url });
            Ok(routes.webhooks.len() - 1)
        };
        let default = match config.default_webhook.as_deref() {
            // The implicit default: unset means "no default route", not an error
            // about a variable the operator may never have heard of.
            Some(super::config::DEFAULT_WEBHOOK)
                if env("SLACK_WEBHOOK_URL").is_none_or(|v| v.is_empty()) =>
            {
                None
            }
            Some(raw) => Some(add("default".to_owned(), raw)),
            None => None,
        };
        let mut by_category = BTreeMap::new();
        for (category, raw) in &config.routes {
            by_category.insert(category.clone(), add(format!("routes.{category}"), raw));
        }
        routes.default = default;
        routes.by_category = by_category;
        routes
    }

    /// The distinct webhooks, in index order.
    pub fn webhooks(&self) -> &[Webhook] {
        &self.webhooks
    }

    /// The webhook index for `category`, or why there is none.
    pub fn route(&self, category: &str) -> Result<usize, NoRoute> {
        match (self.by_category.get(category), &self.default) {
            (Some(route), _) => route.clone(),
            (None, Some(route)) => route.clone(),
            (None, None) if self.by_category.is_empty() => Err(NoRoute(
                "no Slack webhook is configured: set SLACK_WEBHOOK_URL in the server's environment, \
                 or give `default_webhook` or `[notify.routes]` in the config's [notify] section"
                    .to_owned(),
            )),
            (None, None) => Err(NoRoute(format!(
                "no route for category `{category}` and no default route; add it to [notify.routes] \
                 or set `default_webhook` in [notify]"
            ))),
        }
    }

    /// Problems to log at start (unusable routes), without URLs.
    pub fn problems(&self) -> Vec<String> {
        self.default
            .iter()
            .chain(self.by_category.values())
            .filter_map(|r| r.as_ref().err().map(|e| e.0.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    #[test]
    fn expansion_replaces_every_reference() {
        let e = env(&[("A", "x"), ("B", "y")]);
        assert_eq!(expand_env("${A}/mid/${B}", &e).unwrap(), "x/mid/y");
        assert_eq!(expand_env("plain", &e).unwrap(), "plain");
        assert_eq!(expand_env("${C}", &e).unwrap_err(), "C");
    }

    #[test]
    fn no_config_and_no_variable_means_no_route_and_says_how() {
        let routes = Routes::resolve(&NotifyConfig::default(), env(&[]));
        assert!(routes.webhooks().is_empty());
        let err = routes.route("errors").unwrap_err().0;
        assert!(err.contains("SLACK_WEBHOOK_URL"), "{err}");
    }

    #[test]
    fn categories_share_a_webhook_and_urls_stay_hidden() {
        let secret = "https://hooks.slack.test/services/T0/B0/SECRET";
        let mut config = NotifyConfig::default();
        config.routes.insert("errors".into(), "${ERR}".into());
        config
            .routes
            .insert("deploys".into(), "${SLACK_WEBHOOK_URL}".into());
        config.routes.insert("audit".into(), "${MISSING}".into());
        config
            .routes
            .insert("bad".into(), "not a url ${ERR}".into());
        let routes = Routes::resolve(
            &config,
            env(&[
                ("SLACK_WEBHOOK_URL", secret),
                ("ERR", "http://127.0.0.1:9/e"),
            ]),
        );
        assert_eq!(routes.webhooks().len(), 2);
        assert_eq!(routes.route("deploys").unwrap(), routes.route("x").unwrap());
        assert_ne!(routes.route("errors").unwrap(), routes.route("x").unwrap());
        let missing = routes.route("audit").unwrap_err().0;
        assert!(missing.contains("${MISSING}"), "{missing}");
        let bad = routes.route("bad").unwrap_err().0;
        assert!(bad.contains("routes.bad"), "{bad}");
        let shown = format!("{routes:?} {:?}", routes.problems());
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(!shown.contains("127.0.0.1:9"), "{shown}");
    }
}
