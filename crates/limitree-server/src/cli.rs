//! The `limitree` command line: `serve`, `check`, `notify`, `config check`.
//!
//! Exit codes: `0` success (and, for `check`, allowed; for `notify`, queued);
//! `1` a check was limited or a notification suppressed (or the server failed
//! to run, e.g. its data dir is held by another `limitree serve`: the config
//! is valid, the machine's state is not, so not `64`); `2` a usage error or a
//! request that got no answer; `64` (EX_USAGE) an invalid config file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use limitree::policy::{LimitSpec, format_duration};
use limitree::{Algorithm, Policy};

use crate::app::{App, AppError};
use crate::client;
use crate::config::Config;
use crate::config::auth::AuthFlags;
use crate::config::fields::env_references;
use crate::notify::config::DEFAULT_WEBHOOK;
use crate::reload::Overrides;
use crate::server;
use crate::telemetry::{self, LogFormat};

/// Exit code for an invalid config (sysexits EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code for a limited check (or a suppressed notification).
pub const EXIT_LIMITED: u8 = 1;
/// Exit code for a check that got no decision (or bad arguments).
pub const EXIT_CHECK_ERROR: u8 = 2;

/// Hierarchical rate limiting: every request must fit every level of its chain.
#[derive(Debug, Parser)]
#[command(name = "limitree", version, about)]
pub struct Cli {
    /// Log line format (level from RUST_LOG; default info). Logs go to stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Ask a running server whether a request may go ahead.
    Check(CheckArgs),
    /// Send a Slack notification through a running server's relay.
    Notify(NotifyArgs),
    /// Work with config files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `limitree serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file (TOML with `[server]`, `[store]`, `[[trees]]`). Without one: the
    /// built-in `notifications` policy in memory.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// HTTP listen address; overrides `[server] http` (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// gRPC listen address for Envoy's RateLimitService, or `off`; overrides
    /// `[server] grpc` (default 127.0.0.1:8081).
    #[arg(long, value_name = "ADDR|off", value_parser = grpc_listen)]
    pub grpc: Option<GrpcListen>,
    /// Serve gRPC over TLS with this PEM certificate chain (with
    /// `--grpc-tls-key`); overrides `[server] grpc_tls`, and is how an
    /// envoyproxy/ratelimit YAML config gets TLS.
    #[arg(long, value_name = "PATH", requires = "grpc_tls_key")]
    pub grpc_tls_cert: Option<PathBuf>,
    /// The PEM private key of `--grpc-tls-cert`.
    #[arg(long, value_name = "PATH", requires = "grpc_tls_cert")]
    pub grpc_tls_key: Option<PathBuf>,
    /// Keep buckets in Redis at URL (`redis://[:PASSWORD@]HOST:PORT[/DB]`,
    /// `rediss://` for TLS), shared with every instance using it; overrides
    /// `[store]` kind and url (its other keys still apply).
    #[arg(
        long,
        value_name = "URL",
        env = "LIMITREE_REDIS_URL",
        hide_env_values = true
    )]
    pub redis: Option<String>,
    /// A token that may check (decide), named as `[server.auth] check`
    /// entries are: `'${VAR}'` (an environment variable; quote it so the
    /// shell leaves it alone) or `file:PATH`, never the token itself.
    /// Repeatable; added to the config's `[server.auth]` (or turns auth on,
    /// e.g. for an envoyproxy/ratelimit YAML config).
    #[arg(long = "check-token", value_name = "REF")]
    pub check_tokens: Vec<String>,
    /// A token that may also administer (policy, buckets, reload), named as
    /// for `--check-token`. Repeatable; added to `[server.auth] admin`.
    #[arg(long = "admin-token", value_name = "REF")]
    pub admin_tokens: Vec<String>,
}

/// `--token`: the bearer token `check` and `notify` send, for a server
/// with `[server.auth]`.
#[derive(Debug, Args)]
pub struct TokenArg {
    /// API token for a server with `[server.auth]` (a check or admin token),
    /// sent as `Authorization: Bearer TOKEN`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "LIMITREE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// `limitree check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    pub url: String,
    #[command(flatten)]
    pub token: TokenArg,
    /// The tree (may be left out when the server has one tree).
    #[arg(long, value_name = "TREE")]
    pub tree: Option<String>,
    /// Units to take; 0 only reports the current state.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub cost: u64,
    /// Ask whether the cost would fit now, without recording anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the server's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Descriptors, e.g. `category=errors`.
    #[arg(value_name = "KEY=VALUE", value_parser = parse_descriptor)]
    pub descriptors: Vec<(String, String)>,
}

/// `limitree notify`.
#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    pub url: String,
    #[command(flatten)]
    pub token: TokenArg,
    /// The tree (default: the server's `[notify] tree`, or its only tree).
    #[arg(long, value_name = "TREE")]
    pub tree: Option<String>,
    /// The category: picks the Slack webhook and the limit.
    #[arg(long, value_name = "CATEGORY")]
    pub category: String,
    /// Print the server's JSON answer instead of a line.
    #[arg(long)]
    pub json: bool,
    /// The message text.
    #[arg(value_name = "TEXT")]
    pub text: String,
}

/// `limitree config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file and print the policy it resolves to.
    Check {
        /// The config file.
        file: PathBuf,
    },
}

/// `--grpc`: an address, or `off` (`None`). A newtype, since clap reads an
/// `Option<Option<_>>` field as a flag whose value may be left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcListen(pub Option<SocketAddr>);

fn grpc_listen(text: &str) -> Result<GrpcListen, String> {
    crate::config::server::parse_grpc(text).map(GrpcListen)
}

/// `KEY=VALUE` → `(KEY, VALUE)`.
fn parse_descriptor(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!(
            "`{text}` is not a descriptor; write KEY=VALUE, e.g. category=errors"
        )),
    }
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only fails if a subscriber exists already, which then keeps logging.
    let _ = telemetry::install(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Check(args) => check(args),
        Command::Notify(args) => notify(args),
        Command::Config(ConfigCommand::Check { file }) => config_check(&file),
    }
}

fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    match path {
        None => Ok(Config::builtin()),
        Some(path) => Config::load(path).map_err(|errors| {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!("limitree: the config is invalid; nothing was started");
            ExitCode::from(EXIT_CONFIG)
        }),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let mut config = match load_config(args.config.as_deref()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let grpc_tls = match (&args.grpc_tls_cert, &args.grpc_tls_key) {
        (Some(cert), Some(key)) => match crate::grpc::tls::GrpcTls::load(cert, key) {
            Ok(tls) => Some(tls),
            Err(e) => {
                eprintln!("error: --grpc-tls-cert/--grpc-tls-key: {e}");
                eprintln!("limitree: the gRPC TLS files cannot be used; nothing was started");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        _ => None,
    };
    // Read here, not by clap: clap's own errors repeat the value, which
    // may be a token given by mistake.
    let auth = match AuthFlags::parse(&args.check_tokens, &args.admin_tokens) {
        Ok(auth) => auth,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            eprintln!("limitree: the token flags cannot be used as given; nothing was started");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let overrides = Overrides {
        http: args.http,
        grpc: args.grpc.map(|GrpcListen(grpc)| grpc),
        grpc_tls,
        redis: args.redis.clone(),
        auth,
    };
    if let Err(e) = overrides.apply(&mut config) {
        eprintln!("error: {e}");
        eprintln!("limitree: --redis cannot be used as given; nothing was started");
        return ExitCode::from(EXIT_CONFIG);
    }
    for warning in config.policy.warnings() {
        tracing::warn!("{}: {warning}", config.source);
    }
    if let Some(warning) = config.server.exposure_warning() {
        tracing::warn!("{warning}");
    }
    // Built before the runtime starts: a config the parts refuse is a config
    // error (exit 64), not a failure to run.
    let app = match App::from_config(&config) {
        Ok(app) => app,
        Err(e) => return app_error(&e),
    };
    if let Some(path) = args.config {
        app.state.reload.use_file(path, overrides);
    }
    match run_server(&config, app) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("limitree: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reports a config that validated but could not be built into a server.
fn app_error(e: &AppError) -> ExitCode {
    match e {
        AppError::Auth(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
        }
        _ => eprintln!("error: {e}"),
    }
    eprintln!("limitree: the config cannot be used as given; nothing was started");
    ExitCode::from(EXIT_CONFIG)
}

fn run_server(config: &Config, app: App) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.server.http)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.http))?;
        let grpc = match config.server.grpc {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for gRPC on {addr}"))?,
            ),
            None => None,
        };
        let signal = shutdown_signal().context("cannot install signal handlers")?;
        let service = app.state.rls.clone();
        let tls = config.server.grpc_tls.as_ref();
        server::run_with_grpc(
            listener,
            grpc,
            tls,
            service,
            app.state,
            app.lifecycle,
            signal,
        )
        .await
        .context("the server failed")
    })
}

/// Completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "received {name}");
    })
}

fn check(args: CheckArgs) -> ExitCode {
    let mut descriptors = BTreeMap::new();
    for (key, value) in args.descriptors {
        if descriptors.contains_key(&key) {
            eprintln!("limitree check: descriptor `{key}` is given twice; give each key once");
            return ExitCode::from(EXIT_CHECK_ERROR);
        }
        descriptors.insert(key, value);
    }
    let body = client::CheckBody {
        tree: args.tree,
        descriptors,
        cost: args.cost,
        dry_run: args.dry_run,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("limitree check: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_CHECK_ERROR);
        }
    };
    match runtime.block_on(client::check(&args.url, args.token.token.as_deref(), &body)) {
        Ok(answer) => {
            if args.json {
                println!("{}", answer.raw);
            } else {
                print!("{}", client::render(&answer.reply));
            }
            if answer.reply.allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_LIMITED)
            }
        }
        Err(e) => {
            eprintln!("limitree check: {e}");
            ExitCode::from(EXIT_CHECK_ERROR)
        }
    }
}

fn notify(args: NotifyArgs) -> ExitCode {
    let body = client::NotifyBody {
        tree: args.tree,
        category: args.category,
        text: args.text,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("limitree notify: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_CHECK_ERROR);
        }
    };
    match runtime.block_on(client::notify(
        &args.url,
        args.token.token.as_deref(),
        &body,
    )) {
        Ok(answer) => {
            if args.json {
                println!("{}", answer.raw);
            } else if let Some(id) = &answer.id {
                println!("queued {id}");
            } else {
                let mut line = format!("suppressed ({})", answer.reply.reason);
                if let Some(retry) = answer.reply.retry_after_ms {
                    let _ = write!(line, ": retry in {}", client::human_millis(retry));
                }
                println!("{line}; it will be counted in the category's digest");
            }
            if answer.id.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_LIMITED)
            }
        }
        Err(e) => {
            eprintln!("limitree notify: {e}");
            ExitCode::from(EXIT_CHECK_ERROR)
        }
    }
}

fn config_check(file: &Path) -> ExitCode {
    match load_config(Some(file)) {
        Ok(config) => {
            let env = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
            // Tokens are read as `serve` reads them: an unset variable or an
            // unreadable file would stop the server, so it fails the check.
            if let Some(auth) = &config.server.auth
                && let Err(errors) = auth.resolve(&env)
            {
                for e in &errors {
                    eprintln!("error: {e}");
                }
                eprintln!("limitree: the config's [server.auth] tokens cannot be read here");
                return ExitCode::from(EXIT_CONFIG);
            }
            print!("{}", describe_with_env(&config, &env));
            for warning in config.policy.warnings() {
                println!("warning: {warning}");
            }
            for warning in environment_warnings(&config, &env) {
                println!("warning: {}: {warning}", config.source);
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// The resolved config, as `config check` prints it, reading `${VAR}`s from
/// the process environment.
pub fn describe(config: &Config) -> String {
    describe_with_env(config, &|var: &str| {
        std::env::var(var).ok().filter(|v| !v.is_empty())
    })
}

/// What `config check` warns about the environment it runs in: every
/// `${VAR}` a webhook refers to that is unset (naming the key and the
/// variable), and a notify tree that is not keyed by `category`. The implicit
/// default route (no `[notify] default_webhook`) is not warned about: without
/// `SLACK_WEBHOOK_URL` it is simply absent, and `describe` says so.
pub fn environment_warnings(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut warnings = Vec::new();
    let n = &config.notify;
    let implicit = n.default_webhook.as_deref() == Some(DEFAULT_WEBHOOK);
    for (key, var) in n.env_references() {
        if implicit && key == "[notify] default_webhook" {
            continue;
        }
        if env(&var).is_none() {
            warnings.push(format!(
                "{key} refers to ${{{var}}}, which is not set here; set it where the server runs, or notifications it routes answer 503"
            ));
        }
    }
    if let Some(tree) = notify_tree(config)
        && !tree.levels.iter().any(|l| l.by == ["category"])
    {
        warnings.push(format!(
                "notifications use tree `{}`, which has no level by `category`; nothing limits them per category (name a tree in [notify] tree, or add a level with by = [\"category\"])",
                tree.name
            ));
    }
    warnings
}

/// The tree notifications are decided in: `[notify] tree`, else the only tree.
fn notify_tree(config: &Config) -> Option<&limitree::policy::Tree> {
    match &config.notify.tree {
        Some(name) => config.policy.tree(name),
        None => match config.policy.trees() {
            [only] => Some(only),
            _ => None,
        },
    }
}

/// [`describe`] with `${VAR}`s read from `env`.
pub fn describe_with_env(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let s = &config.server;
    let _ = writeln!(out, "{}: valid", config.source);
    let _ = writeln!(
        out,
        "server: http {}, grpc {}, max_body_bytes {}, shutdown_grace {}, sweep_interval {}",
        s.http,
        match (s.grpc, &s.grpc_tls) {
            (None, _) => "off".to_owned(),
            (Some(a), None) => format!("{a} (h2c)"),
            (Some(a), Some(tls)) => format!(
                "{a} (TLS: cert {}, key {})",
                tls.cert.display(),
                tls.key.display()
            ),
        },
        s.max_body_bytes,
        format_duration(limitree::clock::duration_to_micros(s.shutdown_grace)),
        format_duration(limitree::clock::duration_to_micros(s.sweep_interval)),
    );
    let _ = writeln!(
        out,
        "connections: max {}, header_timeout {}, idle_timeout {}, body_timeout {}",
        s.max_connections,
        format_duration(limitree::clock::duration_to_micros(s.header_timeout)),
        format_duration(limitree::clock::duration_to_micros(s.idle_timeout)),
        format_duration(limitree::clock::duration_to_micros(s.body_timeout)),
    );
    let _ = writeln!(out, "auth: {}", auth_text(s.auth.as_ref()));
    let _ = writeln!(out, "store: {}", config.store.describe());
    // Route keys only: webhook values may be literal URLs, which are secrets.
    let n = &config.notify;
    let routes: Vec<&str> = n.routes.keys().map(String::as_str).collect();
    let default_route = match n.default_webhook.as_deref() {
        None => "none".to_owned(),
        // The implicit default is there only when its variable is.
        Some(DEFAULT_WEBHOOK) if env("SLACK_WEBHOOK_URL").is_none() => {
            "none (SLACK_WEBHOOK_URL is not set)".to_owned()
        }
        Some(DEFAULT_WEBHOOK) => "from $SLACK_WEBHOOK_URL".to_owned(),
        Some(raw) => match env_references(raw).first() {
            Some(var) if env(var).is_none() => format!("${{{var}}} (not set)"),
            Some(var) => format!("from ${var}"),
            None => "set".to_owned(),
        },
    };
    let _ = writeln!(
        out,
        "notify: data_dir {}, default route {}, routes [{}], queue_capacity {}, pace {} (burst {}), timeout {}",
        n.data_dir.display(),
        default_route,
        routes.join(", "),
        n.queue_capacity,
        format_duration(limitree::clock::duration_to_micros(n.pace)),
        n.burst,
        format_duration(limitree::clock::duration_to_micros(n.timeout)),
    );
    match notify_tree(config) {
        Some(tree) => {
            let levels: Vec<String> = tree
                .levels
                .iter()
                .map(|l| {
                    if l.is_global() {
                        format!("{} (global)", l.name)
                    } else {
                        format!("{} by {}", l.name, l.by.join(", "))
                    }
                })
                .collect();
            let _ = writeln!(
                out,
                "notify tree: {} (levels: {})",
                tree.name,
                levels.join("; ")
            );
        }
        None => {
            let _ = writeln!(
                out,
                "notify tree: none; several trees and no [notify] tree, so POST /v1/notify must name one"
            );
        }
    }
    if config.default_policy {
        let _ = writeln!(out, "policy: no [[trees]]; the built-in default policy");
    }
    describe_policy(&mut out, &config.policy);
    out
}

/// `[server.auth]` as `config check` prints it: where each token comes from,
/// never a token.
fn auth_text(auth: Option<&crate::config::auth::AuthConfig>) -> String {
    let Some(auth) = auth else {
        return "off (every endpoint is open to whoever reaches the port)".to_owned();
    };
    let names = |refs: &[crate::config::auth::TokenRef]| {
        refs.iter()
            .map(|r| r.from.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "bearer tokens; check [{}], admin [{}], /metrics {}",
        names(&auth.check),
        names(&auth.admin),
        if auth.open_metrics {
            "open"
        } else {
            "admin only"
        }
    )
}

fn describe_policy(out: &mut String, policy: &Policy) {
    for tree in policy.trees() {
        // An envoyproxy/ratelimit domain: each rule as it was read.
        if let Some(envoy) = tree.envoy() {
            let _ = writeln!(
                out,
                "domain {} (envoyproxy/ratelimit, {})",
                tree.name, envoy.domain.source
            );
            for rule in &envoy.domain.rules {
                let _ = writeln!(out, "  {rule}");
            }
            for warning in &envoy.domain.warnings {
                let _ = writeln!(out, "  warning: {warning}");
            }
            continue;
        }
        let _ = writeln!(out, "tree {}", tree.name);
        for level in &tree.levels {
            let by = if level.by.is_empty() {
                "(global)".to_owned()
            } else {
                level.by.join(", ")
            };
            let _ = write!(
                out,
                "  level {}: by {by}, {}",
                level.name,
                spec_text(&level.spec)
            );
            if level.shadow {
                out.push_str(", shadow");
            }
            if !level.is_global() {
                let required = if level.required {
                    "required"
                } else {
                    "optional"
                };
                let _ = write!(out, ", {required}, max_buckets {}", level.max_buckets);
            }
            out.push('\n');
            for o in &level.overrides {
                let values: Vec<String> = level
                    .by
                    .iter()
                    .zip(&o.values)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let _ = write!(
                    out,
                    "    override {}: {}",
                    values.join(","),
                    spec_text(&o.spec)
                );
                if let Some(g) = o.guaranteed {
                    let _ = write!(out, ", guaranteed {g} of the level above");
                }
                out.push('\n');
            }
        }
        for shares in &tree.shares {
            // A keyed parent's every bucket is split alike.
            let parent = &tree.levels[shares.parent];
            let each = if parent.is_global() {
                String::new()
            } else if shares.per_bucket.is_empty() {
                format!(" (each bucket by {}, split alike)", parent.by.join(","))
            } else {
                format!(
                    " (each bucket by {}, split alike but those below)",
                    parent.by.join(",")
                )
            };
            let _ = writeln!(
                out,
                "  shares of level {}{each}: {} reserved for {} of level {}, pool {}",
                parent.name,
                shares.reserved,
                values_count(shares.parts.len()),
                tree.levels[shares.child].name,
                shares.pool.limit
            );
            // Buckets split otherwise (an override's limit, or guarantees
            // of their own when the child repeats the parent's keys).
            for (values, split) in &shares.per_bucket {
                let values: Vec<String> = parent
                    .by
                    .iter()
                    .zip(values)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "    {}: {} reserved for {}, pool {}",
                    values.join(","),
                    split.reserved,
                    values_count(split.parts.len()),
                    split.pool.limit
                );
            }
        }
    }
}

fn spec_text(spec: &LimitSpec) -> String {
    let mut text = format!(
        "{} {} per {}",
        spec.algorithm,
        spec.limit,
        format_duration(spec.window)
    );
    if spec.algorithm == Algorithm::Gcra {
        let _ = write!(text, " (burst {})", spec.burst);
    }
    text
}

/// "1 value", "2 values": how many guaranteed values a split has, as `config check` says it.
fn values_count(n: usize) -> String {
    if n == 1 {
        "1 value".to_owned()
    } else {
        format!("{n} values")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_guaranteed_value_is_one_value() {
        assert_eq!(super::values_count(1), "1 value");
        assert_eq!(super::values_count(0), "0 values");
        assert_eq!(super::values_count(2), "2 values");
    }
}
