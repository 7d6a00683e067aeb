//! What went wrong with Redis, in words an operator can act on: the text of
//! [`StoreError::Unavailable`](crate::StoreError::Unavailable) (what `/readyz`,
//! problem+json details and the logs show).
//!
//! redis-rs' own messages say little (`Connection refused (os error 111)`
//! without the address, `Password authentication failed -
//! AuthenticationFailed`), so each cause is named here, with the address it
//! concerns: connection refused, authentication failed (`WRONGPASS` /
//! `NOAUTH`), TLS handshake failed, timed out, loading (`LOADING`), cluster
//! down (`CLUSTERDOWN`). Other errors keep redis-rs' text. Nothing here ever
//! prints a URL as given: only host and port, so no password can leak.

use redis::{ErrorKind, IntoConnectionInfo, RedisError, ServerErrorKind};

use super::config::RedisTarget;

/// Where `target` is, as `host:port` (for a Cluster: `a node of the cluster
/// host:port, …`); never the URL, which may hold a password.
pub(super) fn address(target: &RedisTarget) -> String {
    let one = |url: &str| {
        url.into_connection_info()
            .map_or_else(|_| "an unparsable URL".to_owned(), |i| i.addr().to_string())
    };
    match target {
        RedisTarget::Standalone(url) => one(url),
        // redis-rs does not say which node failed.
        RedisTarget::Cluster(urls) => format!(
            "a node of the cluster {}",
            urls.iter().map(|u| one(u)).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Whether `target` speaks TLS (`rediss://`).
fn tls(target: &RedisTarget) -> bool {
    match target {
        RedisTarget::Standalone(url) => url.starts_with("rediss://"),
        RedisTarget::Cluster(urls) => urls.iter().any(|u| u.starts_with("rediss://")),
    }
}

/// The cause of `e`, a failed call to `target`, for
/// [`StoreError::Unavailable`](crate::StoreError::Unavailable).
pub(super) fn describe(e: &RedisError, target: &RedisTarget) -> String {
    let at = address(target);
    let code = e.code().unwrap_or_default();
    let detail = e.detail().unwrap_or_default();
    if e.is_connection_refusal() {
        return format!("connection refused at {at}");
    }
    if e.kind() == ErrorKind::AuthenticationFailed || code == "WRONGPASS" {
        return format!(
            "authentication failed at {at}: Redis refused the configured password (WRONGPASS)"
        );
    }
    if code == "NOAUTH" {
        return format!(
            "authentication failed at {at}: Redis requires a password and none is configured (NOAUTH)"
        );
    }
    if e.is_timeout() {
        return format!("timed out talking to {at}");
    }
    match e.kind() {
        ErrorKind::Server(ServerErrorKind::BusyLoading) => {
            return format!("Redis at {at} is loading its dataset into memory (LOADING)");
        }
        ErrorKind::Server(ServerErrorKind::ClusterDown) => {
            return format!("cluster down at {at} (CLUSTERDOWN): {detail}");
        }
        _ => {}
    }
    // Cluster errors wrap the node's error in their own text.
    if e.to_string().contains("Connection refused") {
        return format!("connection refused at {at}");
    }
    if e.is_connection_dropped() {
        return format!("connection to {at} lost: {e}");
    }
    // A TLS failure (certificate, protocol) reaches us as a bare I/O error
    // with rustls' words; on a `rediss://` target, an I/O error that is not a
    // refusal, a timeout or a dropped connection is the handshake.
    if e.is_io_error() && tls(target) {
        return format!("TLS handshake with {at} failed: {e}");
    }
    format!("{e} (at {at})")
}

/// The cause when connecting to `target` took all of `ms`: over TLS, a
/// handshake that never completes is what a plain Redis port looks like.
pub(super) fn connect_timed_out(target: &RedisTarget, ms: u128) -> String {
    let at = address(target);
    if tls(target) {
        format!(
            "no connection to {at} within {ms} ms: TCP connect or TLS handshake timed out (is that port speaking TLS?)"
        )
    } else {
        format!("no connection to {at} within {ms} ms: connect timed out")
    }
}

/// The cause when a call's deadline passed before its first connection
/// attempt ended (a loaded machine, or an attempt of another call).
pub(super) fn still_connecting(target: &RedisTarget) -> String {
    let at = address(target);
    if tls(target) {
        format!(
            "still connecting to {at}: TCP connect or TLS handshake not done (is that port speaking TLS?)"
        )
    } else {
        format!("still connecting to {at}: TCP connect not done")
    }
}
