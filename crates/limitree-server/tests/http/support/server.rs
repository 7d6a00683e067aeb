//! An in-process server for one test ([`TestServer`]): bound on
//! `127.0.0.1:0`, stopped on drop; and [`level`], to read a check reply.

use std::time::Duration;

use limitree_server::app::App;
use limitree_server::config::Config;
use limitree_server::http::AppState;
use limitree_server::server::{self, Lifecycle};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server and a client for it.
#[derive(Debug)]
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// The built-in default config.
    pub async fn start() -> TestServer {
        Self::with_config(Config::builtin()).await
    }

    /// A config from TOML text.
    pub async fn with_toml(text: &str) -> TestServer {
        Self::with_config(Config::from_toml_str(text, "test.toml").expect("valid test config"))
            .await
    }

    /// `config` with an empty environment: `${VAR}` webhooks (the default
    /// route's `SLACK_WEBHOOK_URL` included) resolve to nothing, so the
    /// developer's exported variables neither start a relay nor create its
    /// data dir in the crate.
    pub async fn with_config(config: Config) -> TestServer {
        let state = App::build(
            &config,
            std::sync::Arc::new(limitree::SystemClock::new()),
            |_| None,
        )
        .expect("test app")
        .state;
        Self::with_state(state, &config).await
    }

    /// A hand-built state (e.g. over a failing store) with `config`'s lifecycle.
    pub async fn with_state(state: AppState, config: &Config) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let lifecycle = Lifecycle {
            shutdown_grace: Duration::from_secs(5),
            sweep_interval: config.server.sweep_interval,
        };
        #[expect(
            clippy::disallowed_methods,
            reason = "the test owns the handle: `stop` joins it, and drop signals shutdown"
        )]
        let task = tokio::spawn(server::run(listener, state, lifecycle, async move {
            let _ = stopped.await;
        }));
        TestServer {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Posts a JSON check body; returns the response.
    pub async fn post_check(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/check"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts a check for `category` with `cost`; returns the reply body.
    pub async fn check(&self, category: &str, cost: u64) -> Value {
        let response = self
            .post_check(&json!({"descriptors": {"category": category}, "cost": cost}))
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The level called `name` in a check reply.
pub fn level<'a>(reply: &'a Value, name: &str) -> &'a Value {
    reply["levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no level {name} in {reply}"))
}
