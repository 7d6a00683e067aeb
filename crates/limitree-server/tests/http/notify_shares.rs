//! The relay over a tree with fair sharing (README "Fair sharing"): unchanged
//! relay code, a `[notify]` tree whose categories have guaranteed shares of
//! the global limit. Noisy categories are digested; quiet ones keep flowing.

use std::sync::Arc;
use std::time::Duration;

use limitree::ManualClock;
use limitree_server::app::App;
use limitree_server::config::Config;
use serde_json::{Value, json};

use crate::support::poll::{SOON, eventually};
use crate::support::server::TestServer;
use crate::support::slack::{Recorder, hook_url, mock_slack, only_hook, slack_ok};

/// Global 100 per 30m; categories of 10, `cat-00`…`cat-19` guaranteed 4 each
/// (pool 20).
fn shared_tree() -> String {
    let shares: Vec<String> = (0..20).map(|c| format!("\"cat-{c:02}\" = 4")).collect();
    format!(
        "[[trees]]\nname = \"notifications\"\n\
         [[trees.levels]]\nname = \"global\"\nlimit = 100\nwindow = \"30m\"\n\
         [[trees.levels]]\nname = \"category\"\nby = [\"category\"]\nlimit = 10\nwindow = \"30m\"\n\
         shares = {{ {} }}\n",
        shares.join(", ")
    )
}

#[tokio::test]
async fn quiet_categories_keep_flowing_while_noisy_ones_are_digested() {
    let recorder = Recorder::new(slack_ok());
    let mock = mock_slack(&recorder).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000_000);
    let text = format!(
        "[notify]\ndata_dir = {:?}\ndefault_webhook = \"${{HOOK}}\"\nfsync = false\n\
         pace = \"1ms\"\ndigest_interval = \"20ms\"\n{}",
        dir.path().display().to_string(),
        shared_tree()
    );
    let config = Config::from_toml_str(&text, "test.toml").expect("valid test config");
    let state = App::build(&config, Arc::new(clock.clone()), only_hook(hook_url(&mock)))
        .expect("test app")
        .state;
    let server = TestServer::with_state(state, &config).await;
    let notify = async |category: &str, text: &str| {
        server
            .client
            .post(server.url("/v1/notify"))
            .json(&json!({"category": category, "text": text}))
            .send()
            .await
            .unwrap()
    };

    // Ten noisy categories, 30 each, first: each gets its 4 and, first come,
    // 2 of the pool's 20.
    let mut admitted = Vec::new();
    for i in 0..300 {
        let category = format!("cat-{:02}", i % 10);
        let text = format!("noisy {i} in {category}");
        let response = notify(&category, &text).await;
        match response.status().as_u16() {
            202 => admitted.push(text),
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(admitted.len(), 60, "10 × (4 guaranteed + 2 borrowed)");
    // Then ten quiet ones, 6 each: the global has 40 left, all reserved for
    // them; each gets its 4, and its reply says so.
    let mut quiet = 0;
    for i in 0..60 {
        let category = format!("cat-{:02}", 10 + i % 10);
        let text = format!("quiet {i} in {category}");
        let response = notify(&category, &text).await;
        match response.status().as_u16() {
            202 => {
                let reply: Value = response.json().await.unwrap();
                let share = &reply["levels"][1]["share"];
                assert_eq!(share["guaranteed"], 4, "{reply}");
                assert_eq!(share["borrowed"], 0, "{reply}");
                assert_eq!(reply["levels"][0]["pool_remaining"], 0, "{reply}");
                admitted.push(text);
                quiet += 1;
            }
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(quiet, 40, "every quiet category got its guarantee");

    eventually("the 100 admitted", SOON, async || recorder.len() >= 100).await;
    let mut texts = recorder.texts();
    texts.sort();
    admitted.sort();
    assert_eq!(texts, admitted, "exactly the admitted, once each");

    // After the window, the suppressed come back as one digest per category:
    // 24 of each noisy one, 2 of each quiet one.
    clock.advance(Duration::from_secs(30 * 60));
    eventually("20 digests", SOON, async || recorder.len() >= 120).await;
    let digests: Vec<String> = recorder.texts().split_off(100);
    for c in 0..20 {
        let category = format!("cat-{c:02}");
        let suppressed = if c < 10 { 24 } else { 2 };
        let mine: Vec<&String> = digests
            .iter()
            .filter(|d| d.contains(&format!("`{category}`")))
            .collect();
        assert_eq!(mine.len(), 1, "{category}: {digests:?}");
        assert!(
            mine[0].starts_with(&format!(
                "{suppressed} `{category}` notifications suppressed"
            )),
            "{}",
            mine[0]
        );
    }
}
