//! A mock Slack (wiremock on 127.0.0.1) and a [`Recorder`] of what it was sent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// One webhook call the mock received: when, and the JSON body.
#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Instant,
    pub body: Value,
}

/// Answers with `template` and records every call with its arrival time
/// (wiremock keeps requests but not when they came).
#[derive(Debug, Clone)]
pub struct Recorder {
    pub hits: Arc<Mutex<Vec<Hit>>>,
    template: ResponseTemplate,
}

impl Recorder {
    pub fn new(template: ResponseTemplate) -> Recorder {
        Recorder {
            hits: Arc::default(),
            template,
        }
    }

    /// The calls so far.
    pub fn len(&self) -> usize {
        self.hits.lock().len()
    }

    #[cfg_attr(
        not(feature = "redis"),
        expect(dead_code, reason = "used by the Redis relay tests only")
    )]
    pub fn is_empty(&self) -> bool {
        self.hits.lock().is_empty()
    }

    /// Every call's `text`, in arrival order.
    pub fn texts(&self) -> Vec<String> {
        self.hits
            .lock()
            .iter()
            .map(|h| h.body["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// How many times each `text` arrived.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for text in self.texts() {
            *counts.entry(text).or_default() += 1;
        }
        counts
    }
}

impl Respond for Recorder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        self.hits.lock().push(Hit {
            at: Instant::now(),
            body,
        });
        self.template.clone()
    }
}

/// Slack's success answer.
pub fn slack_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_string("ok")
}

/// A mock Slack whose `/hook` answers through `recorder`.
pub async fn mock_slack(recorder: &Recorder) -> MockServer {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(recorder.clone())
        .mount(&mock)
        .await;
    mock
}

/// The webhook URL of [`mock_slack`]'s `/hook`.
pub fn hook_url(mock: &MockServer) -> String {
    format!("{}/hook", mock.uri())
}

/// An environment holding only `HOOK`, set to `hook`: what a config's
/// `default_webhook = "${HOOK}"` resolves through, with nothing from the
/// developer's environment.
pub fn only_hook(hook: String) -> impl Fn(&str) -> Option<String> {
    move |var| (var == "HOOK").then(|| hook.clone())
}
