//! Installing the `tracing` subscriber. Only the binary calls this: the library
//! parts of this crate (and `limitree` itself) only emit events, so an embedding
//! program keeps control of its own logging.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::http::request_id::ACCESS_TARGET;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event, with the span context
    /// (`request{request_id=… method=POST path=/v1/check}`).
    #[default]
    Pretty,
    /// One JSON object per line, with the current span's fields, for log shippers.
    Json,
}

/// Installs the global subscriber: events to stderr, level from `RUST_LOG`
/// (default `info`; invalid directives are ignored rather than fatal, so a typo
/// cannot stop the server from starting). Fails only if a subscriber is
/// already installed.
///
/// The access log (target [`ACCESS_TARGET`], one line per request) is off
/// unless `RUST_LOG` names its target, e.g. `RUST_LOG=info,limitree::access=info`:
/// a line per request costs more CPU than deciding the request.
pub fn install(format: LogFormat) -> Result<(), tracing_subscriber::util::TryInitError> {
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = filter(std::env::var(EnvFilter::DEFAULT_ENV).ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .finish()
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .finish()
            .try_init(),
    }
}

/// The filter for `RUST_LOG` = `directives`: `info` when unset or invalid, and
/// the access log off unless named.
fn filter(directives: Option<&str>) -> EnvFilter {
    let directives = directives.unwrap_or_default();
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(directives);
    if directives.contains(ACCESS_TARGET) {
        filter
    } else {
        match format!("{ACCESS_TARGET}=off").parse() {
            Ok(off) => filter.add_directive(off),
            Err(_) => filter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_log_is_off_unless_named() {
        for (env, shown) in [
            (None, "limitree::access=off,info"),
            (Some("debug"), "limitree::access=off,debug"),
            (Some("foo=lolwut"), "limitree::access=off,info"),
            (
                Some("warn,limitree::access=info"),
                "limitree::access=info,warn",
            ),
        ] {
            assert_eq!(filter(env).to_string(), shown, "{env:?}");
        }
    }
}
