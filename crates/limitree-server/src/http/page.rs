//! `GET /`: the status page — server-rendered HTML, readable without
//! JavaScript and in a terminal browser (tables of numbers first; the bars
//! are `<meter>` elements on top), no external assets.
//!
//! The page is [`super::status::collect`]'s [`Status`] rendered here with
//! maud, which escapes every value (tree, level and bucket names come from
//! configs and requests). An inline script (`page.js`) polls
//! `GET /v1/status` every few seconds and renders the same markup from the
//! JSON — the same element ids, classes and `data-*` attributes, which is what
//! the tests compare — so the two renderings are kept in step by
//! `tests/http/status_page.rs`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::AppState;
use super::buckets::BucketView;
use super::status::{LevelUsage, Status, TreeStatus, ago_text, collect, duration_text};

/// How often the script refreshes the page.
pub const REFRESH_MS: u64 = 5000;

const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");

/// `GET /`.
pub async fn page(State(state): State<AppState>) -> Response {
    let status = collect(&state).await;
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        render(&status).into_string(),
    )
        .into_response()
}

/// The whole page for `status`.
pub fn render(status: &Status) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "limitree status" }
                style { (PreEscaped(STYLE)) }
            }
            body data-refresh-ms=(REFRESH_MS) data-refreshes="0" {
                header {
                    h1 { "limitree status" }
                    p id="refresh" {
                        "Rendered by the server; with JavaScript the page refreshes every "
                        (REFRESH_MS / 1000) " s from " a href="/v1/status" { "/v1/status" } "."
                    }
                }
                main id="status" { (body(status)) }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

/// Everything inside `<main id="status">` (what the script re-renders).
fn body(status: &Status) -> Markup {
    html! {
        section id="summary" {
            h2 { "Server" }
            table {
                tbody {
                    tr { th { "generated" } td id="generated" data-ms=(status.generated_at_ms) { (time(status.generated_at_ms)) } }
                    tr {
                        th { "store" }
                        td id="store" data-kind=(status.store.kind) data-ready=(status.store.ready) {
                            (status.store.kind) ": "
                            @if status.store.ready { span class="ok" { "ready" } } @else { span class="bad" { "not ready" } }
                            @if let Some(detail) = &status.store.detail { " — " (detail) }
                        }
                    }
                    tr {
                        th { "policy loaded" }
                        td id="loaded" data-ms=(status.policy.loaded_at_ms) {
                            (time(status.policy.loaded_at_ms)) " (" (status.policy.note) ")"
                        }
                    }
                }
            }
        }
        @for tree in &status.trees { (tree_section(tree)) }
        section id="denials" {
            h2 { "Recent denials" }
            @if status.denials.is_empty() {
                p class="empty" { "none since start" }
            } @else {
                table {
                    thead { tr { th { "at" } th { "source" } th { "tree" } th { "reason" } th { "level" } th { "bucket" } } }
                    tbody {
                        @for d in &status.denials {
                            @for l in &d.levels {
                                tr class="denial" data-tree=(d.tree) data-level=(l.level) data-bucket=(l.bucket) {
                                    td { (time(d.at_ms)) } td { (d.source) } td { (d.tree) } td { (d.reason) } td { (l.level) } td { (l.bucket) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section id="relay" {
            h2 { "Slack relay" }
            p {
                "accepted " span id="relay-accepted" { (status.relay.accepted) }
                ", suppressed " span id="relay-limited" { (status.relay.limited) }
                ", refused (queue full) " span id="relay-queue-full" { (status.relay.queue_full) }
                ", refused (no route) " span id="relay-no-route" { (status.relay.no_route) }
                "; pending digests " span id="relay-digests" { (status.relay.pending_digests) }
            }
            @if status.relay.webhooks.is_empty() {
                p class="empty" { "no webhook configured" }
            } @else {
                table {
                    thead { tr { th { "webhook" } th { "queued" } th { "capacity" } th { "delivered" } th { "429s" } th { "failed" } th { "dead letters" } } }
                    tbody {
                        @for w in &status.relay.webhooks {
                            tr class="webhook" data-webhook=(w.webhook) data-queue-depth=(w.queue_depth) data-dead-lettered=(w.dead_lettered) {
                                td { (w.webhook) }
                                td { (w.queue_depth) " " meter min="0" max=(w.queue_capacity) value=(w.queue_depth) {} }
                                td { (w.queue_capacity) } td { (w.delivered) } td { (w.rate_limited) } td { (w.failed) } td { (w.dead_lettered) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn tree_section(tree: &TreeStatus) -> Markup {
    html! {
        section class="tree" data-tree=(tree.name) {
            h2 { "Tree " (tree.name) @if tree.kind == "envoy" { " (envoyproxy/ratelimit domain)" } }
            table class="levels" {
                thead { tr { th { "level" } th { "by" } th { "limit" } th { "algorithm" } th { "denied" } } }
                tbody {
                    @for l in &tree.levels {
                        tr class="level" data-level=(l.level.name) data-denied=(l.denied) {
                            td { (l.level.name) @if l.level.shadow { " (shadow)" } }
                            td { @if l.level.by.is_empty() { "(global)" } @else { (l.level.by.join(", ")) } }
                            td { (l.level.spec.limit) " per " (l.level.spec.window)
                                 @if let Some(burst) = l.level.spec.burst { " (burst " (burst) ")" } }
                            td { (l.level.spec.algorithm) }
                            td { (l.denied) }
                        }
                    }
                }
            }
            @for l in &tree.levels { (level_buckets(&tree.name, l)) }
        }
    }
}

fn level_buckets(tree: &str, level: &LevelUsage) -> Markup {
    html! {
        h3 { "Busiest buckets of " (level.level.name) }
        @if let Some(error) = &level.error {
            p class="bad" { (error) }
        } @else if level.buckets.is_empty() {
            p class="empty" { "nothing used" }
        } @else {
            table class="buckets" data-tree=(tree) data-level=(level.level.name) data-truncated=(level.truncated) data-scanned=(level.scanned) {
                thead { tr { th { "bucket" } th { "used" } th { "capacity" } th { "remaining" } th { "full again in" } th { "last admitted" } th { "usage" } } }
                tbody { @for b in &level.buckets { (bucket_row(b)) } }
            }
            @if level.truncated { p class="note" { "looked at " (level.scanned) " buckets, not all: busiest of those" } }
        }
    }
}

fn bucket_row(b: &BucketView) -> Markup {
    html! {
        tr class="bucket" data-bucket=(b.bucket) data-used=(b.used) data-capacity=(b.capacity) data-remaining=(b.remaining) {
            td { a href=(b.path) { (b.bucket) } }
            td { (b.used) } td { (b.capacity) } td { (b.remaining) } td { (duration_text(b.reset_after_ms)) }
            td { (ago_text(b.last_admission_ms_ago)) }
            td { meter min="0" max=(b.capacity) value=(b.used) { (b.used) "/" (b.capacity) } }
        }
    }
}

/// Milliseconds since the epoch as an HTTP date (`Wed, 02 Dec 2026 00:40:05 GMT`).
fn time(ms: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_utc() {
        assert_eq!(super::time(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(super::time(1_500), "Thu, 01 Jan 1970 00:00:01 GMT");
    }
}
