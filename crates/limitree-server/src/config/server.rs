//! The `[server]` section: where the server listens and how it bounds
//! request bodies, shutdown and the idle-bucket sweep.
//!
//! ```toml
//! [server]
//! http = "127.0.0.1:8080"     # where to listen
//! max_body_bytes = 65536      # largest request body
//! shutdown_grace = "10s"      # how long shutdown may wait for in-flight work
//! sweep_interval = "30s"      # how often idle buckets are dropped
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::fields::{DurationText, Section, positive_duration, socket_addr};

/// Where the server listens unless told otherwise.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
/// Largest accepted request body: a check is a few hundred bytes; this leaves
/// room for many descriptors without letting one client hold much memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 65_536;
/// How long shutdown waits for in-flight requests and background tasks.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often idle buckets are swept from the memory store.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// The `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// HTTP listen address.
    pub http: SocketAddr,
    /// Largest request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Bound on graceful shutdown.
    pub shutdown_grace: Duration,
    /// Period of the idle-bucket sweep.
    pub sweep_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
        }
    }
}

/// `[server]` as written; durations and the address are checked afterwards so
/// their messages can say how to write them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    http: Option<String>,
    max_body_bytes: Option<u64>,
    shutdown_grace: Option<DurationText>,
    sweep_interval: Option<DurationText>,
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
        if let Some(max) = raw.max_body_bytes {
            match usize::try_from(max) {
                Ok(0) | Err(_) => errors.push(section.error("max_body_bytes", format!(
                    "{max} is out of range; give a positive byte count such as {DEFAULT_MAX_BODY_BYTES}"
                ))),
                Ok(max) => server.max_body_bytes = max,
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
        (errors.len() == before).then_some(server)
    }
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
    }
}
