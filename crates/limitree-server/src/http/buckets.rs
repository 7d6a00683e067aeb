//! `GET /v1/buckets?tree=T&level=L[&prefix=P][&limit=N]` (the busiest
//! buckets of a level), `GET /v1/buckets/{tree}/{level}/{bucket}` (one
//! bucket, peeked) and `DELETE` of it (reset, audited in the log).
//!
//! Every number comes from the library's [`limitree::inspect`]: a peek
//! through the store's decision path, the same in every store. Bucket names
//! in paths: [`super::bucket_path`].

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use limitree::clock::micros_to_millis_ceil;
use limitree::inspect::{self, BucketUsage, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
use limitree::policy::{Level, Tree};
use limitree::policy::{MAX_ECHO, cut};
use limitree::{CheckError, Snapshot};
use serde::Serialize;

use super::AppState;
use super::bucket_path::{self, bucket_path, parse_bucket};
use super::problem::ApiError;
use super::request_id::RequestId;

/// One bucket in a reply.
#[derive(Debug, Clone, Serialize)]
pub struct BucketView {
    /// As check replies name it: `category=errors`, `*`, `category=<overflow>`.
    pub bucket: String,
    /// The bucket's values by key (empty for a global level).
    pub values: serde_json::Map<String, serde_json::Value>,
    /// `GET`/`DELETE` this path for the bucket alone.
    pub path: String,
    /// Its limit per window (after overrides).
    pub limit: u64,
    /// The most it holds at once (`burst` for gcra, else `limit`).
    pub capacity: u64,
    /// Its window.
    pub window_ms: u64,
    /// Units taken and not yet returned: `capacity - remaining`.
    pub used: u64,
    /// Units left now.
    pub remaining: u64,
    /// Until it is full again.
    pub reset_after_ms: u64,
    /// One more unit would fit now.
    pub allowed: bool,
    /// When one more unit does not fit: until it does.
    pub retry_after_ms: Option<u64>,
    /// The level is a shadow level.
    pub shadow: bool,
    /// How long ago, in whole milliseconds, the bucket last admitted a
    /// charge (denials, peeks and dry runs do not count). `null`: the bucket
    /// has admitted nothing since it was created, reset or dropped as idle.
    pub last_admission_ms_ago: Option<u64>,
}

impl BucketView {
    /// `usage`, a bucket of `level` in `tree`, for a reply.
    pub fn new(tree: &str, level: &Level, usage: &BucketUsage) -> BucketView {
        let s = &usage.status;
        BucketView {
            bucket: s.bucket.clone(),
            values: level
                .by
                .iter()
                .zip(&usage.values)
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
            path: bucket_path(tree, level, &usage.values),
            limit: s.limit,
            capacity: usage.capacity,
            window_ms: micros_to_millis_ceil(s.window),
            used: usage.used(),
            remaining: s.remaining,
            reset_after_ms: micros_to_millis_ceil(s.reset_after),
            allowed: s.allowed,
            retry_after_ms: s.retry_after.map(micros_to_millis_ceil),
            shadow: s.shadow,
            last_admission_ms_ago: usage.since_admission.map(|us| us / 1000),
        }
    }
}

/// `GET /v1/buckets` reply.
#[derive(Debug, Clone, Serialize)]
pub struct BucketList {
    /// The tree.
    pub tree: String,
    /// The level.
    pub level: String,
    /// The level's `by` keys.
    pub by: Vec<String>,
    /// The prefix asked for, if any.
    pub prefix: Option<String>,
    /// The most buckets asked for.
    pub limit: usize,
    /// Buckets looked at.
    pub scanned: usize,
    /// The scan stopped early (count or time budget): there may be busier
    /// buckets than these among those not looked at.
    pub truncated: bool,
    /// Busiest first; only buckets with something used.
    pub buckets: Vec<BucketView>,
}

/// The tree called `name`, or 404 naming the known ones.
pub fn tree_named<'a>(limiter: &'a Snapshot, name: &str) -> Result<&'a Tree, ApiError> {
    limiter.tree(Some(name)).map_err(|e| match e {
        CheckError::UnknownTree { .. } => ApiError::UnknownTree(e.to_string()),
        other => ApiError::Check(other),
    })
}

/// The busiest `limit` buckets of `tree`'s level `level_index` as a reply.
pub async fn busiest(
    limiter: &Snapshot,
    tree: &Tree,
    level_index: usize,
    prefix: Option<&str>,
    limit: usize,
) -> Result<BucketList, ApiError> {
    let found = limiter.busiest(tree, level_index, prefix, limit).await?;
    let level = &tree.levels[level_index];
    Ok(BucketList {
        tree: tree.name.clone(),
        level: level.name.clone(),
        by: level.by.clone(),
        prefix: prefix.map(str::to_owned),
        limit,
        scanned: found.scanned,
        truncated: found.truncated,
        buckets: found
            .buckets
            .iter()
            .map(|u| BucketView::new(&tree.name, level, u))
            .collect(),
    })
}

/// The parameters of `GET /v1/buckets`, each at most once.
#[derive(Debug, Default)]
struct ListQuery {
    tree: Option<String>,
    level: Option<String>,
    prefix: Option<String>,
    limit: Option<String>,
}

fn list_query(pairs: Vec<(String, String)>) -> Result<ListQuery, ApiError> {
    let mut query = ListQuery::default();
    for (key, value) in pairs {
        let slot = match key.as_str() {
            "tree" => &mut query.tree,
            "level" => &mut query.level,
            "prefix" => &mut query.prefix,
            "limit" => &mut query.limit,
            other => {
                return Err(ApiError::InvalidQuery(format!(
                    "unknown query parameter `{}`; GET /v1/buckets takes tree, level, prefix and limit",
                    cut(other, MAX_ECHO)
                )));
            }
        };
        if slot.replace(value).is_some() {
            return Err(ApiError::InvalidQuery(format!(
                "query parameter `{key}` is given twice"
            )));
        }
    }
    Ok(query)
}

fn parse_limit(text: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = text else {
        return Ok(DEFAULT_LIST_LIMIT);
    };
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::InvalidQuery(format!(
            "limit must be a whole number from 1 to {MAX_LIST_LIMIT}, not `{}`",
            cut(text, MAX_ECHO)
        ))),
    }
}

/// `GET /v1/buckets?tree=T&level=L[&prefix=P][&limit=N]`.
pub async fn list(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<BucketList>, ApiError> {
    let snapshot = state.limiter.snapshot();
    let query = list_query(pairs)?;
    let limit = parse_limit(query.limit.as_deref())?;
    let tree = match query.tree.as_deref() {
        Some(name) => tree_named(&snapshot, name)?,
        None => snapshot
            .tree(None)
            .map_err(|e| ApiError::InvalidQuery(format!("name a tree with `tree=`: {e}")))?,
    };
    let Some(level) = query.level.as_deref() else {
        let levels: Vec<&str> = tree.levels.iter().map(|l| l.name.as_str()).collect();
        return Err(ApiError::InvalidQuery(format!(
            "name a level with `level=`; tree `{}` has {}",
            tree.name,
            levels.join(", ")
        )));
    };
    let level_index = inspect::level_index(tree, level)?;
    let prefix = query.prefix.as_deref().filter(|p| !p.is_empty());
    Ok(Json(
        busiest(&snapshot, tree, level_index, prefix, limit).await?,
    ))
}

/// A bucket path's tree, level and values, decoded.
struct Named<'a> {
    tree: &'a Tree,
    level_index: usize,
    values: Vec<String>,
}

/// Reads the path as sent (axum's path parameters come percent-decoded,
/// which would turn `user=a%2Cb` into two pairs), each segment decoded once
/// by [`bucket_path`].
fn named<'a>(limiter: &'a Snapshot, uri: &Uri) -> Result<Named<'a>, ApiError> {
    let mut raw = uri
        .path()
        .strip_prefix("/v1/buckets/")
        .unwrap_or_default()
        .split('/');
    let (Some(tree), Some(level), Some(bucket), None) =
        (raw.next(), raw.next(), raw.next(), raw.next())
    else {
        return Err(ApiError::InvalidBucket(
            "the path is /v1/buckets/{tree}/{level}/{bucket}".to_owned(),
        ));
    };
    let tree = tree_named(
        limiter,
        &bucket_path::decode(tree, "tree").map_err(ApiError::InvalidBucket)?,
    )?;
    let level_index = inspect::level_index(
        tree,
        &bucket_path::decode(level, "level").map_err(ApiError::InvalidBucket)?,
    )?;
    let values =
        parse_bucket(bucket, &tree.levels[level_index]).map_err(ApiError::InvalidBucket)?;
    Ok(Named {
        tree,
        level_index,
        values,
    })
}

/// `GET /v1/buckets/{tree}/{level}/{bucket}`: the bucket as a `cost: 0`
/// check of it reports it now.
pub async fn one(State(state): State<AppState>, uri: Uri) -> Result<Json<BucketView>, ApiError> {
    let snapshot = state.limiter.snapshot();
    let Named {
        tree,
        level_index,
        values,
    } = named(&snapshot, &uri)?;
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let usage = snapshot.peek_bucket(tree, level_index, &refs).await?;
    Ok(Json(BucketView::new(
        &tree.name,
        &tree.levels[level_index],
        &usage,
    )))
}

/// `DELETE` reply: what the bucket held just before.
#[derive(Debug, Serialize)]
pub struct ResetReply {
    /// The store held state for it (false: it was fresh already).
    pub removed: bool,
    /// The bucket just before the reset.
    pub before: BucketView,
}

/// `DELETE /v1/buckets/{tree}/{level}/{bucket}`: resets the bucket (it
/// starts afresh, full), logged at WARN with who asked, what and the request
/// id.
pub async fn reset(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    request_id: Option<axum::Extension<RequestId>>,
) -> Result<Json<ResetReply>, ApiError> {
    let snapshot = state.limiter.snapshot();
    let Named {
        tree,
        level_index,
        values,
    } = named(&snapshot, &uri)?;
    let level = &tree.levels[level_index];
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let reset = snapshot.reset_bucket(tree, level_index, &refs).await?;
    let before = BucketView::new(&tree.name, level, &reset.before);
    tracing::warn!(
        request_id = request_id.as_ref().map_or("", |r| r.0.0.as_str()),
        who = %who(&headers),
        tree = %tree.name,
        level = %level.name,
        bucket = %before.bucket,
        removed = reset.removed,
        used_before = before.used,
        "bucket reset by DELETE {}",
        before.path
    );
    Ok(Json(ResetReply {
        removed: reset.removed,
        before,
    }))
}

/// Who asked, as far as the request says without repeating a secret: its
/// User-Agent, and whether it carried a bearer token (auth, when enabled,
/// checked it).
fn who(headers: &HeaderMap) -> String {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let agent = text("user-agent").map_or_else(|| "none".to_owned(), |a| cut(a, MAX_ECHO));
    let token = text("authorization").is_some_and(|a| a.starts_with("Bearer "));
    format!(
        "user-agent {agent}, {}",
        if token {
            "with a bearer token"
        } else {
            "no bearer token"
        }
    )
}
