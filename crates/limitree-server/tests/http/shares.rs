//! Fair sharing under a keyed parent through `limitree serve` (README "Fair
//! sharing"): each team's bucket is split on its own, the replies say so,
//! and a reload keeps a team's parts for the same split and carries them
//! over into another.

use serde_json::{Value, json};

use crate::support::served::{Served, write_config};

/// Teams of 10 per 30m; categories of 6 (across teams), `errors` and
/// `warnings` guaranteed 3 of each team's 10 (pool 4 per team).
fn policy(ceiling: u64, shares: &str) -> String {
    format!(
        "[[trees]]\nname = \"t\"\n\
         [[trees.levels]]\nname = \"team\"\nby = [\"team\"]\nlimit = 10\nwindow = \"30m\"\n\
         [[trees.levels]]\nname = \"category\"\nby = [\"category\"]\nlimit = {ceiling}\n\
         window = \"30m\"\nshares = {{ {shares} }}\n"
    )
}

async fn check(
    client: &reqwest::Client,
    served: &Served,
    team: &str,
    category: &str,
    cost: u64,
) -> Value {
    client
        .post(format!("{}/v1/check", served.base))
        .json(&json!({"descriptors": {"team": team, "category": category}, "cost": cost}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// (guaranteed, remaining, borrowed) of the child's share and the team's
/// `pool_remaining`.
fn parts(reply: &Value) -> (Value, Value, Value, Value) {
    let share = &reply["levels"][1]["share"];
    (
        share["guaranteed"].clone(),
        share["remaining"].clone(),
        share["borrowed"].clone(),
        reply["levels"][0]["pool_remaining"].clone(),
    )
}

async fn reload(client: &reqwest::Client, served: &Served) {
    let reply: Value = client
        .post(format!("{}/v1/reload", served.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["result"], "ok", "{reply}");
}

#[tokio::test]
async fn each_team_is_split_on_its_own_and_a_reload_keeps_the_same_split() {
    let shares = "errors = 3, warnings = 3";
    let path = write_config("keyed_shares.toml", &policy(6, shares));
    let served = Served::start(&["--config", path.to_str().unwrap(), "--http", "127.0.0.1:0"]);
    let client = reqwest::Client::new();
    // Team x: `errors` its guarantee, `info` x's pool (4 of it, then denied).
    for left in [2, 1, 0] {
        let reply = check(&client, &served, "x", "errors", 1).await;
        assert_eq!(reply["allowed"], true, "{reply}");
        assert_eq!(reply["levels"][0]["bucket"], "team=x", "{reply}");
        assert_eq!(
            parts(&reply),
            (json!(3), json!(left), json!(0), json!(4)),
            "{reply}"
        );
    }
    for _ in 0..4 {
        assert_eq!(
            check(&client, &served, "x", "info", 1).await["allowed"],
            true
        );
    }
    let denied = check(&client, &served, "x", "info", 1).await;
    assert_eq!(denied["allowed"], false, "{denied}");
    assert_eq!(
        denied["levels"][0]["allowed"], false,
        "x's pool is empty: {denied}"
    );
    // Team y's guarantee and pool are its own.
    let reply = check(&client, &served, "y", "errors", 1).await;
    assert_eq!(reply["allowed"], true, "{reply}");
    assert_eq!(
        parts(&reply),
        (json!(3), json!(2), json!(0), json!(4)),
        "{reply}"
    );

    // The same split with a higher ceiling: both teams keep their parts.
    std::fs::write(&path, policy(8, shares)).unwrap();
    reload(&client, &served).await;
    let peek = check(&client, &served, "x", "errors", 0).await;
    assert_eq!(
        parts(&peek),
        (json!(3), json!(0), json!(0), json!(0)),
        "{peek}"
    );
    let peek = check(&client, &served, "y", "errors", 0).await;
    assert_eq!(
        parts(&peek),
        (json!(3), json!(2), json!(0), json!(4)),
        "{peek}"
    );

    // Another split (`warnings` no longer guaranteed): each team's used
    // units are carried over, the pool (now 7) first: x's 7 fill it, so x
    // has only `errors`' 3 left (10 in all, its limit); y's 1 leaves 6.
    std::fs::write(&path, policy(8, "errors = 3")).unwrap();
    reload(&client, &served).await;
    let peek = check(&client, &served, "x", "errors", 0).await;
    assert_eq!(
        parts(&peek),
        (json!(3), json!(3), json!(0), json!(0)),
        "{peek}"
    );
    let peek = check(&client, &served, "y", "errors", 0).await;
    assert_eq!(
        parts(&peek),
        (json!(3), json!(3), json!(0), json!(6)),
        "{peek}"
    );
}
