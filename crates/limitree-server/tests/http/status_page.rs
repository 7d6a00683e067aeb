//! The status page (`GET /`) of a real `limitree serve`, read twice: as the
//! server renders it (no JavaScript), and in headless Chromium after its
//! script has refreshed it from `GET /v1/status`. Both must show the numbers
//! the JSON API gives, with every name from requests escaped.
//!
//! Chromium (Debian package `chromium`) is installed by `scripts/test`; the
//! test fails, saying how to install it, where it is missing.
//!
//! `LIMITREE_UPDATE_SCREENSHOT=1 cargo nextest run -p limitree-server
//! --all-features --test http status_page` also writes the screenshot to
//! `docs/status-page.png` (the README shows it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use scraper::{Html, Selector};
use serde_json::{Value, json};

use crate::support::served::Served;

/// What a hostile client might put in a descriptor: it must show as text.
const HOSTILE: &str = "<img src=x onerror=alert(1)>&\"'";

/// The browser on this machine.
fn chromium() -> PathBuf {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
            })
        })
        .expect(
            "the status page test needs headless Chromium: run scripts/test as root (it installs it), \
             or apt-get install --no-install-recommends chromium",
        )
}

/// Runs headless Chromium on `url` with `args` (bounded in time); its stdout.
async fn run_chromium(profile: &Path, url: &str, args: &[&str]) -> String {
    let mut command = tokio::process::Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            // The script's first refresh runs at load; 3 s of virtual time
            // lets it finish without waiting for them.
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("chromium finished within 60 s")
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn select<'a>(dom: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    dom.select(&Selector::parse(css).unwrap()).collect()
}

fn attr(e: &scraper::ElementRef<'_>, name: &str) -> String {
    e.value().attr(name).unwrap_or_default().to_owned()
}

/// Per (tree, level): the bucket rows as (bucket, used, capacity, remaining)
/// and each row's meter (value, max).
type Rows = BTreeMap<(String, String), Vec<(String, u64, u64, u64, String, String)>>;

fn bucket_rows(dom: &Html) -> Rows {
    let mut rows = Rows::new();
    for table in select(dom, "table.buckets") {
        let key = (attr(&table, "data-tree"), attr(&table, "data-level"));
        let list = rows.entry(key).or_default();
        for tr in table.select(&Selector::parse("tr.bucket").unwrap()) {
            let number = |name| attr(&tr, name).parse::<u64>().unwrap();
            let meter = tr
                .select(&Selector::parse("meter").unwrap())
                .next()
                .expect("a usage bar per bucket");
            list.push((
                attr(&tr, "data-bucket"),
                number("data-used"),
                number("data-capacity"),
                number("data-remaining"),
                attr(&meter, "value"),
                attr(&meter, "max"),
            ));
        }
    }
    rows
}

fn expected_rows(status: &Value) -> Rows {
    let mut rows = Rows::new();
    for tree in status["trees"].as_array().unwrap() {
        for level in tree["levels"].as_array().unwrap() {
            let buckets = level["buckets"].as_array().unwrap();
            if buckets.is_empty() {
                continue;
            }
            let key = (
                tree["name"].as_str().unwrap().to_owned(),
                level["name"].as_str().unwrap().to_owned(),
            );
            rows.insert(
                key,
                buckets
                    .iter()
                    .map(|b| {
                        let n = |f: &str| b[f].as_u64().unwrap();
                        (
                            b["bucket"].as_str().unwrap().to_owned(),
                            n("used"),
                            n("capacity"),
                            n("remaining"),
                            n("used").to_string(),
                            n("capacity").to_string(),
                        )
                    })
                    .collect(),
            );
        }
    }
    rows
}

/// Level denial counts as the page shows them.
fn denied(dom: &Html) -> BTreeMap<(String, String), u64> {
    select(dom, "section.tree")
        .iter()
        .flat_map(|section| {
            let tree = attr(section, "data-tree");
            section
                .select(&Selector::parse("tr.level").unwrap())
                .map(move |tr| {
                    (
                        (tree.clone(), attr(&tr, "data-level")),
                        attr(&tr, "data-denied").parse().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn expected_denied(status: &Value) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for tree in status["trees"].as_array().unwrap() {
        for level in tree["levels"].as_array().unwrap() {
            counts.insert(
                (
                    tree["name"].as_str().unwrap().to_owned(),
                    level["name"].as_str().unwrap().to_owned(),
                ),
                level["denied"].as_u64().unwrap(),
            );
        }
    }
    counts
}

/// What both renderings must agree with the JSON on.
fn assert_matches(dom: &Html, status: &Value, rendering: &str) {
    assert_eq!(
        bucket_rows(dom),
        expected_rows(status),
        "{rendering}: buckets"
    );
    assert_eq!(
        denied(dom),
        expected_denied(status),
        "{rendering}: denials by level"
    );
    let denial_rows = select(dom, "tr.denial");
    assert_eq!(
        denial_rows.len(),
        status["denials"].as_array().unwrap().len(),
        "{rendering}: one row per recent denial (one level each here)"
    );
    let store = &select(dom, "#store")[0];
    assert_eq!(attr(store, "data-kind"), "memory", "{rendering}");
    assert_eq!(attr(store, "data-ready"), "true", "{rendering}");
    let accepted = select(dom, "#relay-accepted")[0].text().collect::<String>();
    assert_eq!(
        accepted,
        status["relay"]["accepted"].to_string(),
        "{rendering}"
    );
    // Every bucket shown was admitted on the memory store, which reports
    // when: each row says how long ago.
    for tr in select(dom, "tr.bucket") {
        let text = tr.text().collect::<String>();
        assert!(
            text.contains(" ago"),
            "{rendering}: no last admission in {text:?}"
        );
    }
    // The hostile value is text: no element came out of it.
    assert!(
        select(dom, "main img").is_empty(),
        "{rendering}: {HOSTILE} became markup"
    );
    assert!(
        select(dom, "tr.bucket")
            .iter()
            .any(
                |tr| attr(tr, "data-bucket") == format!("category={HOSTILE}")
                    && tr.text().collect::<String>().contains(HOSTILE)
            ),
        "{rendering}: the hostile bucket is shown as text"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_what_the_api_says_with_and_without_javascript() {
    let served = Served::start(&["--http", "127.0.0.1:0"]);
    let client = reqwest::Client::new();
    let check = async |category: &str| {
        let reply: Value = client
            .post(format!("{}/v1/check", served.base))
            .json(&json!({"descriptors": {"category": category}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        reply
    };
    // errors: full and then denied 3 times; warn 4; the hostile value once.
    for _ in 0..13 {
        check("errors").await;
    }
    for _ in 0..4 {
        check("warn").await;
    }
    check(HOSTILE).await;

    let status: Value = client
        .get(format!("{}/v1/status", served.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let category = &status["trees"][0]["levels"][1];
    assert_eq!(category["denied"], 3, "{status}");
    assert_eq!(
        category["buckets"][0]["bucket"], "category=errors",
        "{status}"
    );
    assert_eq!(category["buckets"][0]["used"], 10, "{status}");
    assert_eq!(status["trees"][0]["levels"][0]["buckets"][0]["used"], 15);

    // Without JavaScript: the server's own rendering.
    let response = client
        .get(format!("{}/", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let html = response.text().await.unwrap();
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "no external assets"
    );
    let server_dom = Html::parse_document(&html);
    assert_matches(&server_dom, &status, "server-rendered");
    assert_eq!(attr(&select(&server_dom, "body")[0], "data-refreshes"), "0");

    // In a browser, after the script's refresh.
    let profile = tempfile::tempdir().unwrap();
    let url = format!("{}/", served.base);
    let dumped = run_chromium(profile.path(), &url, &["--dump-dom"]).await;
    let browser_dom = Html::parse_document(&dumped);
    let refreshes: u64 = attr(&select(&browser_dom, "body")[0], "data-refreshes")
        .parse()
        .unwrap();
    assert!(
        refreshes >= 1,
        "the script refreshed the page from /v1/status"
    );
    assert_matches(&browser_dom, &status, "refreshed by the script");

    let screenshot = profile.path().join("status-page.png");
    run_chromium(
        profile.path(),
        &url,
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1100,1000",
        ],
    )
    .await;
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    if std::env::var_os("LIMITREE_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/status-page.png");
        std::fs::write(&docs, &png).unwrap();
    }
}
