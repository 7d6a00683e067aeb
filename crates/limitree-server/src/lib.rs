//! The limitree server and CLI: the limiter behind an HTTP JSON API, and a
//! command-line client for it.
//!
//! The library crate (`limitree`) decides; this crate only carries questions and
//! answers over the wire, so every rate-limit rule lives in one place.
//!
//! # Layout
//! - [`config`]: the server's config file (`[server]`, `[store]`, `[[trees]]`, `[notify]`),
//!   validated all at once so `config check` can list every problem.
//! - [`store`]: the store a config names (memory, or Redis behind the failure
//!   policy).
//! - [`server`]: [`server::run`] — serve a listener until a shutdown signal,
//!   owning the background tasks (idle-bucket sweep).
//! - [`http`]: the axum router, one module per endpoint, plus the one place
//!   errors become HTTP statuses ([`http::problem`]).
//! - [`notify`]: the Slack relay behind `POST /v1/notify`: routes, outbox,
//!   paced delivery with retries and dead letters, suppression digests.
//! - [`lock`]: the exclusive lock on a data dir (one server per directory).
//! - [`telemetry`]: installing the `tracing` subscriber (binary only).
//! - [`client`]: the HTTP client behind `limitree check`.
//! - [`cli`]: the `limitree` command line (the only place `anyhow` is used).

#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod config;
pub mod grpc;
pub mod http;
pub mod lock;
pub mod notify;
pub mod server;
pub mod store;
pub mod telemetry;
