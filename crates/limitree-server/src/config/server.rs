//! The `[server]` section: where the server listens and how it bounds
//! request bodies, shutdown and the idle-bucket sweep.
//!
//! ```toml
//! [server]
//! http = "127.0.0.1:8080"     # where to listen
//! grpc = "127.0.0.1:8081"     # Envoy's RateLimitService; "off" disables it
//! grpc_tls = { cert = "/etc/limitree/grpc.pem", key = "/etc/limitree/grpc.key" }  # optional: gRPC over TLS instead of h2c
//! unknown_domain = "allow"    # gRPC calls for a domain naming no tree: "allow" (OK) or "error" (UNKNOWN)
//! rls_headers = "off"         # headers ShouldRateLimit asks Envoy to add: "off", "draft", "x-ratelimit"
//! max_body_bytes = 65536      # largest request body
//! shutdown_grace = "10s"      # how long shutdown may wait for in-flight work
//! sweep_interval = "30s"      # how often idle buckets are dropped
//! header_timeout = "10s"      # a connection's request head (gRPC: its first call) must arrive within this
//! idle_timeout = "75s"        # an idle keep-alive connection (gRPC: no call open) is closed after this
//! body_timeout = "30s"        # a request body must arrive within this (408; gRPC: the whole call)
//! max_connections = 10000     # open connections at most, per listener; past it idle ones are shed
//! near_limit_ratio = 0.8      # a level's bucket this full after an admitted request counts as near its limit
//! detailed_max_values = 100   # per `detailed` level: descriptor values with a metric series of their own
//! ```
//!
//! `[server.auth]` (API tokens) is read here too, by [`super::auth`].

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::auth::{AuthConfig, RawAuth};
use super::fields::{DurationText, Section, positive_duration, socket_addr};
use crate::grpc::tls::GrpcTls;
use crate::grpc::{ResponseHeaders, UnknownDomain};

/// Where the server listens unless told otherwise.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
/// Where the gRPC listener binds unless told otherwise: the port
/// envoyproxy/ratelimit and limitador use, so an Envoy config carries over.
pub const DEFAULT_GRPC: &str = "127.0.0.1:8081";
/// Largest accepted request body: a check is a few hundred bytes; this leaves
/// room for many descriptors without letting one client hold much memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 65_536;
/// How long shutdown waits for in-flight requests and background tasks.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often idle buckets are swept from the memory store.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// How long a connection may take to send a complete request head, counted
/// from its accept or from the first byte after a keep-alive pause. nginx's
/// `client_header_timeout` is 60 s; a few seconds is plenty for a check, and a
/// slow-header client holds a descriptor for no longer than this.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a keep-alive connection may sit idle between requests: nginx's
/// `keepalive_timeout` default (Envoy's `idle_timeout` is 1 h).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// How long a request body may take to arrive once its head has; nginx's
/// `client_body_timeout` is 60 s between reads, this bounds the whole body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Open connections at most. High enough that a burst of clients (thousands
/// of concurrent checks) is served, not refused; under the usual descriptor
/// limits (`ulimit -n`) those bind first, and there the server sheds idle
/// connections and lets new ones wait in the backlog rather than refusing.
/// Set it below `ulimit -n` for a 503 at the cap instead.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// envoyproxy/ratelimit's near-limit ratio: a bucket at least this full after
/// an admitted request is "near its limit".
pub const DEFAULT_NEAR_LIMIT_RATIO: f64 = 0.8;
/// Per `detailed` level, the descriptor values that get metric series of
/// their own; later values share `value="__other__"`. Each value costs a few
/// series on every scrape, so this bounds what hostile values can add.
pub const DEFAULT_DETAILED_MAX_VALUES: usize = 100;
/// Most a config may raise `detailed_max_values` to.
pub const MAX_DETAILED_MAX_VALUES: usize = 10_000;

/// A ratio in (0, 1] (validated when parsed, so never NaN: equality is total).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio(pub f64);

impl Eq for Ratio {}

/// The `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// HTTP listen address.
    pub http: SocketAddr,
    /// gRPC listen address; `None`: no gRPC listener (`grpc = "off"`).
    pub grpc: Option<SocketAddr>,
    /// The gRPC listener's certificate and key; `None`: h2c (plaintext).
    pub grpc_tls: Option<GrpcTls>,
    /// What a gRPC call for an unknown domain gets.
    pub unknown_domain: UnknownDomain,
    /// The headers a `ShouldRateLimit` answer carries.
    pub rls_headers: ResponseHeaders,
    /// Largest request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Bound on graceful shutdown.
    pub shutdown_grace: Duration,
    /// Period of the idle-bucket sweep.
    pub sweep_interval: Duration,
    /// Bound on receiving a request head (gRPC: from the accept to the first
    /// call, TLS handshake and HTTP/2 preface included).
    pub header_timeout: Duration,
    /// Bound on a keep-alive connection's idle time between requests (gRPC:
    /// with no call open).
    pub idle_timeout: Duration,
    /// Bound on receiving a request body (gRPC: on a whole call).
    pub body_timeout: Duration,
    /// Open connections at most, on each listener.
    pub max_connections: usize,
    /// A bucket this full after an admitted request is near its limit
    /// (`limitree_level_near_limit_total`).
    pub near_limit_ratio: Ratio,
    /// Per `detailed` level, the values with series of their own.
    pub detailed_max_values: usize,
    /// `[server.auth]`: API tokens; `None`, the default, serves everyone.
    pub auth: Option<AuthConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            grpc: Some(SocketAddr::from(([127, 0, 0, 1], 8081))),
            grpc_tls: None,
            unknown_domain: UnknownDomain::Allow,
            rls_headers: ResponseHeaders::Off,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            near_limit_ratio: Ratio(DEFAULT_NEAR_LIMIT_RATIO),
            detailed_max_values: DEFAULT_DETAILED_MAX_VALUES,
            auth: None,
        }
    }
}

/// `[server]` as written; durations and the address are checked afterwards so
/// their messages can say how to write them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    http: Option<String>,
    grpc: Option<String>,
    grpc_tls: Option<RawGrpcTls>,
    unknown_domain: Option<String>,
    rls_headers: Option<String>,
    max_body_bytes: Option<u64>,
    shutdown_grace: Option<DurationText>,
    sweep_interval: Option<DurationText>,
    header_timeout: Option<DurationText>,
    idle_timeout: Option<DurationText>,
    body_timeout: Option<DurationText>,
    max_connections: Option<u64>,
    near_limit_ratio: Option<f64>,
    detailed_max_values: Option<u64>,
    auth: Option<RawAuth>,
}

/// `grpc_tls = { cert = "PATH", key = "PATH" }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrpcTls {
    cert: String,
    key: String,
}

impl ServerConfig {
    /// Parses `[server]`, pushing every problem (naming `source` and the key)
    /// to `errors`; `None` when there was one.
    pub fn parse(section: &Section<'_, '_>, errors: &mut Vec<String>) -> Option<Self> {
        let before = errors.len();
        let raw: RawServer = section.read(errors)?;
        let mut server = ServerConfig::default();
        if let Some(http) = raw.http {
            match socket_addr(&http, DEFAULT_HTTP) {
                Ok(addr) => server.http = addr,
                Err(e) => errors.push(section.error("http", e)),
            }
        }
        if let Some(grpc) = raw.grpc {
            match parse_grpc(&grpc) {
                Ok(addr) => server.grpc = addr,
                Err(e) => errors.push(section.error("grpc", e)),
            }
        }
        if let Some(tls) = raw.grpc_tls {
            match GrpcTls::load(Path::new(&tls.cert), Path::new(&tls.key)) {
                Ok(tls) => server.grpc_tls = Some(tls),
                Err(e) => errors.push(section.error(e.key(), e)),
            }
        }
        if let Some(mode) = raw.unknown_domain {
            match mode.as_str() {
                "allow" => server.unknown_domain = UnknownDomain::Allow,
                "error" => server.unknown_domain = UnknownDomain::Error,
                _ => errors.push(section.error(
                    "unknown_domain",
                    format!(
                        "`{}` is not a choice; write \"allow\" (answer OK) or \"error\" (answer UNKNOWN)",
                        limitree::policy::cut(&mode, limitree::policy::MAX_ECHO)
                    ),
                )),
            }
        }
        if let Some(form) = raw.rls_headers {
            match form.as_str() {
                "off" => server.rls_headers = ResponseHeaders::Off,
                "draft" => server.rls_headers = ResponseHeaders::Draft,
                "x-ratelimit" => server.rls_headers = ResponseHeaders::XRateLimit,
                _ => errors.push(section.error(
                    "rls_headers",
                    format!(
                        "`{}` is not a choice; write \"off\", \"draft\" (RateLimit, RateLimit-Policy) or \"x-ratelimit\" (X-RateLimit-Limit, -Remaining, -Reset)",
                        limitree::policy::cut(&form, limitree::policy::MAX_ECHO)
                    ),
                )),
            }
        }
        if let Some(max) = raw.max_body_bytes {
            match usize::try_from(max) {
                Ok(0) | Err(_) => errors.push(section.error("max_body_bytes", format!(
                    "{max} is out of range; give a positive byte count such as {DEFAULT_MAX_BODY_BYTES}"
                ))),
                Ok(max) => server.max_body_bytes = max,
            }
        }
        if let Some(max) = raw.max_connections {
            match usize::try_from(max) {
                Ok(0) | Err(_) => errors.push(section.error("max_connections", format!(
                    "{max} is out of range; give a positive count such as {DEFAULT_MAX_CONNECTIONS}"
                ))),
                Ok(max) => server.max_connections = max,
            }
        }
        if let Some(ratio) = raw.near_limit_ratio {
            if ratio > 0.0 && ratio <= 1.0 {
                server.near_limit_ratio = Ratio(ratio);
            } else {
                errors.push(section.error(
                    "near_limit_ratio",
                    format!("{ratio} is out of range; give a number above 0 and at most 1, such as {DEFAULT_NEAR_LIMIT_RATIO}"),
                ));
            }
        }
        if let Some(max) = raw.detailed_max_values {
            match usize::try_from(max) {
                Ok(n @ 1..=MAX_DETAILED_MAX_VALUES) => server.detailed_max_values = n,
                _ => errors.push(section.error(
                    "detailed_max_values",
                    format!("{max} is out of range; give a count from 1 to {MAX_DETAILED_MAX_VALUES}, such as {DEFAULT_DETAILED_MAX_VALUES}"),
                )),
            }
        }
        let mut duration = |key: &str, text: Option<DurationText>, slot: &mut Duration| {
            if let Some(DurationText(text)) = text {
                match positive_duration(&text) {
                    Ok(d) => *slot = d,
                    Err(e) => errors.push(section.error(key, e)),
                }
            }
        };
        duration(
            "shutdown_grace",
            raw.shutdown_grace,
            &mut server.shutdown_grace,
        );
        duration(
            "sweep_interval",
            raw.sweep_interval,
            &mut server.sweep_interval,
        );
        duration(
            "header_timeout",
            raw.header_timeout,
            &mut server.header_timeout,
        );
        duration("idle_timeout", raw.idle_timeout, &mut server.idle_timeout);
        duration("body_timeout", raw.body_timeout, &mut server.body_timeout);
        if let Some(auth) = raw.auth {
            server.auth = AuthConfig::parse(auth, section, errors);
        }
        (errors.len() == before).then_some(server)
    }
}

impl ServerConfig {
    /// The one WARN line `limitree serve` logs when it listens (HTTP or gRPC)
    /// on an address other hosts may reach (not loopback: `0.0.0.0`, `[::]`,
    /// a LAN address) without `[server.auth]`, where anyone who reaches the
    /// port can spend every client's quota. `None` when it does not.
    pub fn exposure_warning(&self) -> Option<String> {
        if self.auth.is_some() {
            return None;
        }
        let exposed: Vec<String> = std::iter::once(("HTTP", self.http))
            .chain(self.grpc.map(|grpc| ("gRPC", grpc)))
            .filter(|(_, addr)| !addr.ip().is_loopback())
            .map(|(what, addr)| format!("{what} {addr}"))
            .collect();
        (!exposed.is_empty()).then(|| {
            format!(
                "serving {} (not loopback) without API tokens: anyone who reaches the port can check and spend every client's quota; pass --check-token/--admin-token or add [server.auth] to a TOML config, or listen on 127.0.0.1",
                exposed.join(" and ")
            )
        })
    }
}

/// `"off"`, or a socket address (`--grpc` takes the same).
pub fn parse_grpc(text: &str) -> Result<Option<SocketAddr>, String> {
    if text == "off" {
        return Ok(None);
    }
    socket_addr(text, DEFAULT_GRPC)
        .map(Some)
        .map_err(|e| format!("{e}, or \"off\" for no gRPC listener"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn server_values_are_parsed() {
        let text = "[server]\nhttp = \"0.0.0.0:9000\"\nmax_body_bytes = 10\nshutdown_grace = \"2s\"\nsweep_interval = \"1m\"\n[notify]\ndrain = \"1s\"\n";
        let server = Config::from_toml_str(text, "c.toml").unwrap().server;
        assert_eq!(server.http, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(server.max_body_bytes, 10);
        assert_eq!(server.shutdown_grace, Duration::from_secs(2));
        assert_eq!(server.sweep_interval, Duration::from_secs(60));
        assert_eq!(server.grpc, Some("127.0.0.1:8081".parse().unwrap()));
        assert_eq!(server.unknown_domain, UnknownDomain::Allow);
    }

    #[test]
    fn grpc_can_move_or_be_off() {
        let at = |text: &str| Config::from_toml_str(text, "c.toml").map(|c| c.server);
        let moved =
            at("[server]\ngrpc = \"127.0.0.1:9901\"\nunknown_domain = \"error\"\n").unwrap();
        assert_eq!(moved.grpc, Some("127.0.0.1:9901".parse().unwrap()));
        assert_eq!(moved.unknown_domain, UnknownDomain::Error);
        assert_eq!(at("[server]\ngrpc = \"off\"\n").unwrap().grpc, None);
        let e = at("[server]\ngrpc = \"8081\"\nunknown_domain = \"deny\"\n").unwrap_err();
        let text = e.0.join("\n");
        assert!(
            text.contains("[server] grpc: `8081` is not a socket address"),
            "{text}"
        );
        assert!(text.contains("or \"off\""), "{text}");
        assert!(
            text.contains("[server] unknown_domain: `deny` is not a choice"),
            "{text}"
        );
    }

    #[test]
    fn connection_bounds_are_parsed_and_default() {
        let text = "[server]\nheader_timeout = \"300ms\"\nidle_timeout = \"2s\"\nbody_timeout = \"1s\"\nmax_connections = 8\n";
        let server = Config::from_toml_str(text, "c.toml").unwrap().server;
        assert_eq!(server.header_timeout, Duration::from_millis(300));
        assert_eq!(server.idle_timeout, Duration::from_secs(2));
        assert_eq!(server.body_timeout, Duration::from_secs(1));
        assert_eq!(server.max_connections, 8);
        let defaults = ServerConfig::default();
        assert_eq!(defaults.header_timeout, Duration::from_secs(10));
        assert_eq!(defaults.idle_timeout, Duration::from_secs(75));
        let errors =
            Config::from_toml_str("[server]\nmax_connections = 0\n", "c.toml").unwrap_err();
        assert!(errors.0[0].contains("max_connections"), "{errors:?}");
    }

    #[test]
    fn metric_settings_are_parsed_and_checked() {
        let text = "[server]\nnear_limit_ratio = 0.5\ndetailed_max_values = 3\n";
        let server = Config::from_toml_str(text, "c.toml").unwrap().server;
        assert_eq!(server.near_limit_ratio, Ratio(0.5));
        assert_eq!(server.detailed_max_values, 3);
        let defaults = ServerConfig::default();
        assert_eq!(defaults.near_limit_ratio, Ratio(0.8));
        assert_eq!(defaults.detailed_max_values, 100);
        for (text, key) in [
            (
                "near_limit_ratio = 0.0",
                "near_limit_ratio: 0 is out of range",
            ),
            (
                "near_limit_ratio = 1.5",
                "near_limit_ratio: 1.5 is out of range",
            ),
            (
                "near_limit_ratio = nan",
                "near_limit_ratio: NaN is out of range",
            ),
            (
                "detailed_max_values = 0",
                "detailed_max_values: 0 is out of range",
            ),
            (
                "detailed_max_values = 10001",
                "detailed_max_values: 10001 is out of range",
            ),
        ] {
            let errors = Config::from_toml_str(&format!("[server]\n{text}\n"), "c.toml")
                .unwrap_err()
                .0
                .join("\n");
            assert!(errors.contains(key), "{text}: {errors}");
        }
    }
}
