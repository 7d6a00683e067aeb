//! Installing the `tracing` subscriber. Only the binary calls this: the library
//! parts of this crate (and `limitree` itself) only emit events, so an embedding
//! program keeps control of its own logging.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

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
pub fn install(format: LogFormat) -> Result<(), tracing_subscriber::util::TryInitError> {
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
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
