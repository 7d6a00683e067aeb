//! The limitree server and CLI: the limiter behind an HTTP JSON API, and a
//! command-line client for it.
//!
//! The library crate (`limitree`) decides; this crate only carries questions and
//! answers over the wire, so every rate-limit rule lives in one place.
//!
//! # Layout
//!
//! In the order a request meets them:
//!
//! - [`cli`]: the `limitree` command line and its exit codes (the only place
//!   `anyhow` is used; `main.rs` only calls [`cli::main`]). `serve` loads the
//!   config, applies `--http` / `--redis`, builds the [`app`] and runs the
//!   [`server`]; `config check` prints [`cli::describe`].
//! - [`config`]: the config file → a validated [`config::Config`], every
//!   problem listed at once. One module per section ([`config::server`],
//!   [`config::store`]; `[notify]` in [`notify::config`]; `[[trees]]` by the
//!   library), the field parsers they share ([`config::fields`]), and the
//!   checks between sections ([`config::checks`]).
//! - [`app`]: a config → an [`app::App`]: the store it names, the limiter,
//!   the relay and its outbox; an [`app::AppError`] instead of a panic.
//! - [`server`]: [`server::run`] — serve a listener until a shutdown signal,
//!   owning every background task (sweep, relay) in one `TaskTracker`.
//! - [`listener`]: the accept side both listeners share (`max_connections`,
//!   shedding idle connections when short of descriptors, accept errors), the
//!   HTTP accept loop and each HTTP connection under the `[server]` bounds:
//!   header, idle and body timeouts, the lingering close after a 413. The
//!   gRPC listener's connections under the same bounds are in `grpc`.
//! - [`http`]: the axum router and the wire formats only, one module per
//!   endpoint; nothing here builds or decides.
//! - [`notify`]: the Slack relay behind `POST /v1/notify`: routes, queues,
//!   paced delivery with retries and dead letters, suppression digests, the
//!   outbox (a file, or a Redis stream with the Redis store).
//! - [`metrics`]: the Prometheus registry of each server and the families
//!   recorded around the store, the router and the relay.
//! - [`denials`]: recent denials and a count per level, fed by every API
//!   that decides, shown by the status page.
//! - [`auth`]: API tokens (`[server.auth]`): scopes, refusals, the
//!   constant-time comparison the HTTP layer and the gRPC service share.
//! - [`client`]: the HTTP client behind `limitree check` / `limitree notify`.
//! - [`lock`]: the exclusive lock on a data dir (one server per directory).
//! - [`reload`]: hot policy reload (SIGHUP, a change of the config file,
//!   `POST /v1/reload`), keeping counters; what needs a restart is logged.
//! - [`telemetry`]: installing the `tracing` subscriber (binary only).
//!
//! # Where is it…
//!
//! | what | where |
//! |---|---|
//! | whether a request is admitted | the library's `limitree::Limiter`; never here |
//! | a `[server]` / `[store]` / `[notify]` key parsed | [`config::server`] / [`config::store`] / [`notify::config`] |
//! | a duration, listen address or `${VAR}` read | [`config::fields`] |
//! | a rule between sections (`drain` vs `shutdown_grace`, `[notify] tree`) | [`config::checks`] |
//! | `[store]` turned into the library's `RedisConfig` | [`config::RedisSettings::redis_config`], once |
//! | store, limiter and relay put together | [`app::App::build`] |
//! | a JSON body parsed | [`http::check::parse`], [`http::notify::parse`] (shared: [`http::body`]) |
//! | a check / notify reply serialized (and read back by the client) | [`http::reply`] |
//! | `RateLimit-Policy`, `RateLimit`, `Retry-After` | [`http::headers`] |
//! | an error turned into an HTTP status | [`http::problem`] |
//! | a `[server.auth]` key parsed; its `${VAR}` / `file:` read at start | [`config::auth`] |
//! | a bearer token compared (constant time) | [`auth::Tokens::authorize`] |
//! | which scope a path needs (HTTP) / a gRPC call needs | [`http::auth`] / [`grpc::Authorize`] |
//! | a connection timed out, shed or refused; a lingering close | [`listener`] |
//! | a metric family registered, recorded, rendered | [`metrics`] (served by [`http::metrics`]) |
//! | a process exit code | [`cli`] |

#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod denials;
pub mod grpc;
pub mod http;
pub mod listener;
pub mod lock;
pub mod metrics;
pub mod notify;
pub mod reload;
pub mod server;
pub mod telemetry;
