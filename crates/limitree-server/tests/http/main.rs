//! HTTP integration tests: real servers on `127.0.0.1:0`, real sockets.
//!
//! One test binary (fewer link steps on a small machine) with a module per
//! area, and one [`support`] module holding everything they share:
//!
//! - `support::server`: [`TestServer`](support::server::TestServer), the
//!   server in process, and `level` to read a check reply;
//! - `support::served`: [`Served`](support::served::Served), the `limitree`
//!   binary as a child process, and `write_config` for its config files;
//! - `support::slack`: a mock Slack and the
//!   [`Recorder`](support::slack::Recorder) of what it was sent;
//! - `support::poll`: [`eventually`](support::poll::eventually), the one way
//!   to wait (bounded) for real I/O to happen;
//! - `support::policy`: the default policy's TOML, once, and the pieces its
//!   variants are built from.
//! - `support::rls`: a tonic client for Envoy's `ShouldRateLimit` on a
//!   `Served` server, and the builders of what it sends;
//! - `support::certs`: a CA and a certificate it signed (rcgen), as PEM files;
//! - `support::free_port`, `support::get_status`: a loopback port nothing
//!   listens on; the status a GET answers with (0 if nothing answers).
//!
//! Time: the limiter runs on a `ManualClock` where a test is about windows.
//! Everything else here is real sockets, real child processes or a real
//! `redis-server`, whose timing paused tokio time cannot drive; the few real
//! sleeps left say why.

// These tests drive real servers and `redis-server` processes and wait for
// them against real-time deadlines, which the workspace's ban on
// `Instant::now` (meant for code that should take a `limitree::Clock`) does not
// fit. Once the deadline-poll loops live in one helper, this belongs there.
#![expect(
    clippy::disallowed_methods,
    reason = "deadlines for real processes are real time (Instant::now)"
)]

mod auth;
mod check;
mod cli;
mod connections;
mod envoy_examples;
mod errors;
mod framing;
mod grpc;
mod grpc_connections;
mod grpc_tls;
mod health;
mod introspect;
mod metrics;
mod notify;
#[cfg(feature = "redis")]
mod notify_redis;
mod notify_restart;
mod notify_shares;
mod packaging;
#[cfg(feature = "redis")]
mod redis;
/// Real `redis-server` processes on free loopback ports (the library's test
/// support, shared rather than copied).
#[cfg(feature = "redis")]
#[path = "../../../limitree/tests/support/redis.rs"]
#[expect(
    dead_code,
    reason = "the library's support: this binary uses the servers, not its store helpers"
)]
mod redis_support;
#[cfg(feature = "redis")]
mod redis_tls;
mod reload;
mod shares;
mod shutdown;
mod status_page;
mod support;
