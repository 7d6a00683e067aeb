//! The HTTP client behind `limitree check` and `limitree notify`: post one
//! request, and render the answer for a person.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use limitree::policy::format_duration;
use serde::{Deserialize, Serialize};

pub use crate::http::reply::{AcceptedReply, CheckReply, LevelReply};

/// What `limitree check` sends.
#[derive(Debug, Clone, Serialize)]
pub struct CheckBody {
    /// The tree, when named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<String>,
    /// Descriptor key → value.
    pub descriptors: BTreeMap<String, String>,
    /// Units to take.
    pub cost: u64,
    /// Answer without recording.
    pub dry_run: bool,
}

/// A check's answer: the parsed reply and the exact JSON it came as.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Parsed.
    pub reply: CheckReply,
    /// As sent by the server (for `--json`).
    pub raw: String,
}

/// Why a check got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL does not parse.
    #[error("`{0}` is not a URL; write e.g. http://127.0.0.1:8080")]
    BadUrl(String),
    /// The server could not be reached or the exchange failed.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// Where.
        url: String,
        /// The transport error, with its causes.
        reason: String,
    },
    /// The server refused the request with a problem+json body.
    #[error("{title} ({status}): {detail}")]
    Problem {
        /// HTTP status.
        status: u16,
        /// Problem title.
        title: String,
        /// What to fix.
        detail: String,
    },
    /// Any other answer the client does not understand.
    #[error("unexpected answer from the server ({status}): {body}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// The body, as text.
        body: String,
    },
}

#[derive(Debug, Deserialize)]
struct Problem {
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
}

/// What `limitree notify` sends.
#[derive(Debug, Clone, Serialize)]
pub struct NotifyBody {
    /// The tree, when named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<String>,
    /// The category (route and limit).
    pub category: String,
    /// The message.
    pub text: String,
}

/// A notify's answer: queued (with its id) or suppressed.
#[derive(Debug, Clone)]
pub struct NotifyAnswer {
    /// The notification's id, when it was queued (202).
    pub id: Option<String>,
    /// The decision (for a 429, the limited check).
    pub reply: CheckReply,
    /// As sent by the server (for `--json`).
    pub raw: String,
}

/// Posts `body` to `<base>/v1/notify`, with `token` as a bearer token when
/// given. A 429 (suppressed) is an answer, not an error.
pub async fn notify(
    base: &str,
    token: Option<&str>,
    body: &NotifyBody,
) -> Result<NotifyAnswer, ClientError> {
    let (status, text) = post(base, "/v1/notify", token, body, &[429]).await?;
    let parsed = if status == 202 {
        serde_json::from_str::<AcceptedReply>(&text)
            .ok()
            .map(|a| (Some(a.id), a.decision))
    } else {
        serde_json::from_str::<CheckReply>(&text)
            .ok()
            .map(|reply| (None, reply))
    };
    match parsed {
        Some((id, reply)) => Ok(NotifyAnswer {
            id,
            reply,
            raw: text,
        }),
        None => Err(ClientError::Unexpected { status, body: text }),
    }
}

/// Posts `body` to `<base>/v1/check`, with `token` as a bearer token when given.
pub async fn check(
    base: &str,
    token: Option<&str>,
    body: &CheckBody,
) -> Result<Answer, ClientError> {
    let (status, text) = post(base, "/v1/check", token, body, &[]).await?;
    match serde_json::from_str(&text) {
        Ok(reply) => Ok(Answer { reply, raw: text }),
        Err(_) => Err(ClientError::Unexpected { status, body: text }),
    }
}

/// Posts `body` as JSON to `<base><path>`; returns the status and body of a
/// success (or of a status in `also`), else the problem as an error.
async fn post(
    base: &str,
    path: &str,
    token: Option<&str>,
    body: &impl Serialize,
    also: &[u16],
) -> Result<(u16, String), ClientError> {
    let base = base.trim_end_matches('/');
    let url = reqwest::Url::parse(&format!("{base}{path}"))
        .map_err(|_| ClientError::BadUrl(base.to_owned()))?;
    let unreachable = |e: reqwest::Error| ClientError::Unreachable {
        url: base.to_owned(),
        reason: error_chain(&e),
    };
    let mut request = reqwest::Client::new().post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    let text = response.text().await.map_err(unreachable)?;
    if status.is_success() || also.contains(&status.as_u16()) {
        return Ok((status.as_u16(), text));
    }
    match serde_json::from_str::<Problem>(&text) {
        Ok(problem) if is_problem => Err(ClientError::Problem {
            status: status.as_u16(),
            title: problem.title,
            detail: problem.detail,
        }),
        _ => Err(ClientError::Unexpected {
            status: status.as_u16(),
            body: text,
        }),
    }
}

/// "connection refused" is in the error's causes, not its top line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(text, ": {c}");
        cause = c.source();
    }
    text
}

/// A span of milliseconds for people, rounded **up** to the second above one
/// second (`2m 59s`), so a shown wait is never early.
pub fn human_millis(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    format_duration(ms.div_ceil(1000) * 1_000_000)
}

/// The answer for a terminal: a verdict line, then one row per level.
pub fn render(reply: &CheckReply) -> String {
    let mut out = String::new();
    let verdict = if reply.allowed { "allowed" } else { "limited" };
    let _ = write!(out, "{verdict} ({})", reply.reason);
    if let Some(retry) = reply.retry_after_ms {
        let _ = write!(out, ": retry in {}", human_millis(retry));
    }
    let _ = writeln!(out, "  [tree {}]", reply.tree);

    let header = [
        "LEVEL",
        "BUCKET",
        "LIMIT",
        "REMAINING",
        "RESET",
        "ALLOWED",
        "RETRY",
    ];
    let rows: Vec<[String; 7]> = reply
        .levels
        .iter()
        .map(|l| {
            [
                if l.shadow {
                    format!("{} (shadow)", l.name)
                } else {
                    l.name.clone()
                },
                l.bucket.clone(),
                format!("{}/{}", l.limit, human_millis(l.window_ms)),
                l.remaining.to_string(),
                human_millis(l.reset_after_ms),
                if l.allowed { "yes" } else { "no" }.to_owned(),
                l.retry_after_ms
                    .map_or_else(|| "-".to_owned(), human_millis),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ");
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_round_up() {
        assert_eq!(human_millis(179_000), "2m 59s");
        assert_eq!(human_millis(179_001), "3m");
        assert_eq!(human_millis(250), "250ms");
        assert_eq!(human_millis(1_800_000), "30m");
    }
}
