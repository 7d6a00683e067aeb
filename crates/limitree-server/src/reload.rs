//! Hot policy reload: SIGHUP, a change of the config file, or
//! `POST /v1/reload` puts the file's `[[trees]]` in force without a restart,
//! keeping counters.
//!
//! # What a reload does
//! The file `--config` names (a TOML file, an envoyproxy/ratelimit YAML file or
//! a directory of them) is read and validated exactly as `limitree config
//! check` does, and the command line's `--http`, `--grpc` and `--redis` are
//! applied to it as at start-up. Then:
//! - **invalid** → rejected whole: the running policy keeps serving; every
//!   error is logged with the message `config check` prints; the status
//!   ([`ReloadStatus`], `/readyz`, `limitree_policy_stale`) says the running
//!   policy is stale, since when and why, until a later reload succeeds;
//! - **valid** → its policy is swapped in atomically ([`Limiter::reload`]):
//!   each request decides on one policy, the old or the new. A bucket whose
//!   tree, level name, `by` keys and algorithm are unchanged keeps its state
//!   (also when its limit or window changed); other buckets start fresh; state
//!   of removed levels is dropped (memory) or left to expire (Redis).
//!
//! What a reload does not change — `[server]`, `[store]` and `[notify]` — is
//! compared with what runs, and every difference is logged as needing a
//! restart (`[server] http changed: needs a restart; kept 127.0.0.1:8080`),
//! never silently ignored.
//!
//! # Triggers
//! [`spawn`] starts one task in the server's tracker: it listens for SIGHUP and
//! for changes of the config file, watched with `notify` on its parent
//! directory (editors that write a new file and rename it over the old one
//! replace the inode a direct watch would follow), debounced so that an
//! editor's burst of events is one reload. `POST /v1/reload` calls
//! [`Reloader::reload`] directly. Reloads are serialized; each reads the file
//! as it is then, so after a burst of writes the last version wins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use limitree::store::memory::keeps_state;
use limitree::{Clock, Limiter, Policy};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::auth::AuthFlags;
use crate::config::{Config, ConfigErrors};
use crate::grpc::GrpcCounters;
use crate::http::metrics::CheckCounters;

/// How long the file watcher waits for a burst of events to end.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// What the command line set over the config file (`--http`, `--grpc`,
/// `--redis`, `--check-token`, `--admin-token`): applied at start-up and again to every reloaded file, so a
/// reload compares like with like.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--http ADDR`.
    pub http: Option<SocketAddr>,
    /// `--grpc ADDR|off`.
    pub grpc: Option<Option<SocketAddr>>,
    /// `--grpc-tls-cert` and `--grpc-tls-key`, loaded once at start-up.
    pub grpc_tls: Option<crate::grpc::tls::GrpcTls>,
    /// `--redis URL` (or `LIMITREE_REDIS_URL`).
    pub redis: Option<String>,
    /// `--check-token REF` / `--admin-token REF`: added to `[server.auth]`.
    pub auth: AuthFlags,
}

impl Overrides {
    /// Applies the overrides to `config`; the error names a `--redis` that
    /// cannot be used with the file's `[store]`.
    pub fn apply(&self, config: &mut Config) -> Result<(), String> {
        if let Some(http) = self.http {
            config.server.http = http;
        }
        if let Some(grpc) = self.grpc {
            config.server.grpc = grpc;
        }
        if let Some(tls) = &self.grpc_tls {
            config.server.grpc_tls = Some(tls.clone());
        }
        if let Some(url) = &self.redis {
            config.store.use_redis_url(url)?;
        }
        self.auth.apply(&mut config.server.auth);
        Ok(())
    }
}

/// Why a reload did not put a new policy in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The server runs the built-in default policy: there is no file.
    #[error(
        "no config file: the server runs the built-in default policy; start it with --config PATH to reload"
    )]
    NoConfigFile,
    /// The file is invalid; the running policy keeps serving. One message
    /// per problem, as `limitree config check` prints them.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// The last reload as a status page shows it. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Hash of the policy in force ([`policy_hash`]).
    pub policy_hash: String,
    /// When the policy in force was loaded (start-up or its reload).
    pub loaded_at_ms: u64,
    /// The last reload attempt, if any: when, what triggered it, and how it
    /// ended (`None` error: it succeeded).
    pub last_attempt: Option<Attempt>,
    /// Since when the policy in force is stale: the first failed attempt
    /// after the last success. `None` while the file and the policy agree.
    pub stale_since_ms: Option<u64>,
}

/// One reload attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When it was made (Unix ms).
    pub at_ms: u64,
    /// `SIGHUP`, `file change`, `POST /v1/reload`.
    pub trigger: String,
    /// Why it failed; `None` when it succeeded.
    pub error: Option<String>,
}

impl ReloadStatus {
    /// `ok` or `error`, for the last attempt.
    pub fn last_result(&self) -> Option<&'static str> {
        self.last_attempt
            .as_ref()
            .map(|a| if a.error.is_some() { "error" } else { "ok" })
    }
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Hash of the policy now in force.
    pub policy_hash: String,
    /// Whether the policy differs from the one it replaced.
    pub changed: bool,
    /// Levels whose buckets kept their state, started fresh, were dropped.
    pub kept: usize,
    /// Levels that start fresh (new, or `by`/algorithm changed).
    pub fresh: usize,
    /// Levels of the old policy whose state is gone.
    pub dropped: usize,
    /// Settings the file changed that only a restart applies, each a sentence.
    pub needs_restart: Vec<String>,
}

/// Reloads the policy of a running server. Shared (an `Arc` in the
/// [`AppState`](crate::http::AppState)) by the reload task and
/// `POST /v1/reload`.
#[derive(Debug)]
pub struct Reloader {
    /// The file `--config` named, and the command line's overrides; unset:
    /// the built-in default policy (set once, by `limitree serve`).
    source: std::sync::OnceLock<(PathBuf, Overrides)>,
    limiter: Limiter,
    checks: Arc<CheckCounters>,
    rls: Arc<GrpcCounters>,
    clock: Arc<dyn Clock>,
    /// The config in force (its `[server]`, `[store]`, `[notify]` as started;
    /// its policy the one in force) and the status. One reload at a time.
    running: Mutex<(Config, ReloadStatus)>,
    /// `limitree_policy_reloads_total{result="ok"}` / `{result="error"}`.
    reloads: [AtomicU64; 2],
}

impl Reloader {
    /// A reloader for a server started from `config` (read from `path`, with
    /// `overrides` applied), whose policy is in force in `limiter`.
    pub fn new(
        config: &Config,
        limiter: Limiter,
        checks: Arc<CheckCounters>,
        rls: Arc<GrpcCounters>,
        clock: Arc<dyn Clock>,
    ) -> Reloader {
        let status = ReloadStatus {
            policy_hash: policy_hash(&config.policy),
            loaded_at_ms: clock.now() / 1_000,
            last_attempt: None,
            stale_since_ms: None,
        };
        Reloader {
            source: std::sync::OnceLock::new(),
            limiter,
            checks,
            rls,
            clock,
            running: Mutex::new((config.clone(), status)),
            reloads: Default::default(),
        }
    }

    /// Reload from the file at `path` with `overrides` applied (until this
    /// is called, a reload reports that there is nothing to reload). Only
    /// the first call counts: the server is started from one file.
    pub fn use_file(&self, path: PathBuf, overrides: Overrides) {
        let _ = self.source.set((path, overrides));
    }

    /// The file reloads read, if any.
    pub fn path(&self) -> Option<&Path> {
        self.source.get().map(|(path, _)| path.as_path())
    }

    /// The last reload and the policy in force.
    pub fn status(&self) -> ReloadStatus {
        self.running.lock().1.clone()
    }

    /// Reloads counted: (succeeded, failed).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.reloads[0].load(Ordering::Relaxed),
            self.reloads[1].load(Ordering::Relaxed),
        )
    }

    /// Reads the file and puts its policy in force, or rejects it whole and
    /// keeps the running one (see the module docs). `trigger` names what
    /// asked, in the log and the status. Everything is logged here.
    pub fn reload(&self, trigger: &str) -> Result<Reloaded, ReloadError> {
        let Some((path, overrides)) = self.source.get() else {
            tracing::info!(
                trigger,
                "{trigger}: no config file (the built-in default policy runs): nothing to reload; still serving"
            );
            return Err(ReloadError::NoConfigFile);
        };
        let mut running = self.running.lock();
        let now_ms = self.clock.now() / 1_000;
        // An empty file is valid at start-up (the built-in policy), but on a
        // reload it is almost always a file caught between its truncation and
        // its write by an editor or `>`: never swap the policy for that.
        let empty = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0);
        let loaded = if empty {
            Err(ConfigErrors(vec![format!(
                "{}: the file is empty (read while being rewritten?); a reload never replaces the policy with the built-in default; write the file whole, or write a new one and rename it over",
                path.display()
            )]))
        } else {
            Config::load(path)
        };
        let loaded = loaded.and_then(|mut config| {
            overrides
                .apply(&mut config)
                .map(|()| config)
                .map_err(|e| ConfigErrors(vec![format!("--redis: {e}")]))
        });
        let new = match loaded {
            Ok(new) => new,
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!(trigger, "error: {e}");
                }
                let (_, status) = &mut *running;
                tracing::error!(
                    trigger,
                    policy_hash = %status.policy_hash,
                    "{trigger}: {} is invalid: the reload is rejected and the running policy (hash {}) keeps serving",
                    path.display(),
                    status.policy_hash
                );
                status.stale_since_ms.get_or_insert(now_ms);
                status.last_attempt = Some(Attempt {
                    at_ms: now_ms,
                    trigger: trigger.to_owned(),
                    error: Some(errors.0.join("\n")),
                });
                self.reloads[1].fetch_add(1, Ordering::Relaxed);
                return Err(ReloadError::Invalid(errors.0));
            }
        };
        let (old, status) = &mut *running;
        let needs_restart = needs_restart(old, &new);
        for line in &needs_restart {
            tracing::warn!(trigger, "{line}");
        }
        for warning in new.policy.warnings() {
            tracing::warn!("{}: {warning}", new.source);
        }
        let hash = policy_hash(&new.policy);
        let changed = hash != status.policy_hash;
        let (kept, fresh, dropped) = level_changes(&old.policy, &new.policy);
        if changed {
            let policy = Arc::new(new.policy.clone());
            self.checks.track(&policy);
            self.rls.track(&policy);
            self.limiter.reload(policy);
            old.policy = new.policy;
            old.default_policy = new.default_policy;
            status.loaded_at_ms = now_ms;
            tracing::info!(
                trigger,
                policy_hash = %hash,
                kept, fresh, dropped,
                "{trigger}: policy reloaded from {} (hash {hash}): {kept} levels keep their counters, {fresh} start fresh, {dropped} dropped",
                path.display()
            );
        } else {
            tracing::info!(
                trigger,
                policy_hash = %hash,
                "{trigger}: {} holds the policy in force (hash {hash}); nothing changed",
                path.display()
            );
        }
        status.policy_hash.clone_from(&hash);
        status.stale_since_ms = None;
        status.last_attempt = Some(Attempt {
            at_ms: now_ms,
            trigger: trigger.to_owned(),
            error: None,
        });
        self.reloads[0].fetch_add(1, Ordering::Relaxed);
        Ok(Reloaded {
            policy_hash: hash,
            changed,
            kept,
            fresh,
            dropped,
            needs_restart,
        })
    }
}

/// A stable hash of a resolved policy: FNV-1a (64 bits, a fixed published
/// function, so every build and instance agrees) over each tree's name, its
/// levels (names, `by`, limits, windows, algorithms, overrides, flags) and,
/// for an envoyproxy/ratelimit domain, its rules. 16 hex digits.
pub fn policy_hash(policy: &Policy) -> String {
    let mut text = String::new();
    for tree in policy.trees() {
        text.push_str(&tree.name);
        text.push('\n');
        for level in &tree.levels {
            text.push_str(&format!("{level:?}\n"));
        }
        if let Some(envoy) = tree.envoy() {
            for rule in &envoy.domain.rules {
                text.push_str(&format!("{rule}\n"));
            }
        }
    }
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Levels of `new` that keep their state, that start fresh, and levels of
/// `old` whose state is dropped (the rule of
/// [`keeps_state`]).
fn level_changes(old: &Policy, new: &Policy) -> (usize, usize, usize) {
    let kept_in = |tree: &limitree::policy::Tree, other: &Policy| {
        tree.levels
            .iter()
            .filter(|level| {
                other
                    .tree(&tree.name)
                    .is_some_and(|t| t.levels.iter().any(|o| keeps_state(o, level)))
            })
            .count()
    };
    let total = |p: &Policy| p.trees().iter().map(|t| t.levels.len()).sum::<usize>();
    let kept: usize = new.trees().iter().map(|t| kept_in(t, old)).sum();
    let kept_old: usize = old.trees().iter().map(|t| kept_in(t, new)).sum();
    (kept, total(new) - kept, total(old) - kept_old)
}

/// Every setting `new` changes that a reload does not apply, as a sentence
/// naming what is kept.
pub fn needs_restart(running: &Config, new: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    let mut server = |key: &str, changed: bool, kept: String| {
        if changed {
            lines.push(format!(
                "[server] {key} changed: needs a restart; kept {kept}"
            ));
        }
    };
    let (a, b) = (&running.server, &new.server);
    let grpc = |g: Option<SocketAddr>| g.map_or_else(|| "off".to_owned(), |a| a.to_string());
    server("http", a.http != b.http, a.http.to_string());
    server("grpc", a.grpc != b.grpc, grpc(a.grpc));
    server(
        "grpc_tls",
        a.grpc_tls != b.grpc_tls,
        a.grpc_tls
            .as_ref()
            .map_or_else(|| "off".to_owned(), |tls| format!("{tls:?}")),
    );
    server(
        "unknown_domain",
        a.unknown_domain != b.unknown_domain,
        format!("{:?}", a.unknown_domain),
    );
    server(
        "rls_headers",
        a.rls_headers != b.rls_headers,
        format!("{:?}", a.rls_headers),
    );
    server(
        "max_body_bytes",
        a.max_body_bytes != b.max_body_bytes,
        a.max_body_bytes.to_string(),
    );
    server(
        "shutdown_grace",
        a.shutdown_grace != b.shutdown_grace,
        format!("{:?}", a.shutdown_grace),
    );
    server(
        "sweep_interval",
        a.sweep_interval != b.sweep_interval,
        format!("{:?}", a.sweep_interval),
    );
    server(
        "header_timeout",
        a.header_timeout != b.header_timeout,
        format!("{:?}", a.header_timeout),
    );
    server(
        "idle_timeout",
        a.idle_timeout != b.idle_timeout,
        format!("{:?}", a.idle_timeout),
    );
    server(
        "body_timeout",
        a.body_timeout != b.body_timeout,
        format!("{:?}", a.body_timeout),
    );
    server(
        "max_connections",
        a.max_connections != b.max_connections,
        a.max_connections.to_string(),
    );
    if a.auth != b.auth {
        lines.push(
            "[server.auth] changed: needs a restart; kept the running tokens and scopes".to_owned(),
        );
    }
    // A setting not named above (one added later) is still reported.
    if a != b && lines.is_empty() {
        lines.push("[server] changed: needs a restart; kept the running settings".to_owned());
    }
    if running.store != new.store {
        lines.push(format!(
            "[store] changed: needs a restart; kept {}",
            running.store.describe()
        ));
    }
    if running.notify != new.notify {
        lines.push(
            "[notify] changed: needs a restart; kept the running relay's routes, tree and delivery settings"
                .to_owned(),
        );
    }
    lines
}

/// Starts the reload task in `tracker`: SIGHUP and (with a config file)
/// changes of the file trigger [`Reloader::reload`], until `cancel`. The
/// signal handler and the watcher are installed before this returns, so a
/// SIGHUP sent once the server logs that it listens reloads rather than
/// killing it.
pub fn spawn(
    reloader: Arc<Reloader>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    let (changed_tx, mut changed) = tokio::sync::mpsc::channel::<()>(1);
    // Dropped (and so stopped: its thread ends) when the task ends.
    let watcher = reloader
        .path()
        .and_then(|path| watch(path, changed_tx.clone()));
    let cancel = cancel.clone();
    tracker.spawn(async move {
        let _watcher = watcher;
        // Held so that `changed` stays open without a watcher.
        let _changed_tx = changed_tx;
        loop {
            let trigger = tokio::select! {
                () = cancel.cancelled() => break,
                _ = hangup.recv() => "SIGHUP",
                Some(()) = changed.recv() => "file change",
            };
            // The outcome is logged and kept in the status by `reload`.
            let _ = reloader.reload(trigger);
        }
    });
    Ok(())
}

type Debouncer = notify_debouncer_full::Debouncer<
    notify::RecommendedWatcher,
    notify_debouncer_full::RecommendedCache,
>;

/// Watches `path` (a file: its parent directory, for the events naming it —
/// or every event there when it is a symlink, whose target is swapped by
/// renames elsewhere in the directory, as Kubernetes does; a directory: all
/// of it) and sends on `changed` after each debounced burst of writes. A
/// watch that cannot be set up is logged; SIGHUP and `POST /v1/reload` still
/// work.
fn watch(path: &Path, changed: tokio::sync::mpsc::Sender<()>) -> Option<Debouncer> {
    use notify::{EventKind, RecursiveMode};
    let is_dir = path.is_dir();
    let is_symlink = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let (dir, name, mode) = if is_dir {
        (path.to_path_buf(), None, RecursiveMode::Recursive)
    } else {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = (!is_symlink)
            .then(|| path.file_name().map(ToOwned::to_owned))
            .flatten();
        (dir, name, RecursiveMode::NonRecursive)
    };
    let handler = move |result: notify_debouncer_full::DebounceEventResult| {
        let Ok(events) = result else { return };
        let relevant = events.iter().any(|event| {
            // Reading the file (our own reload) is an access, not a change.
            matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
            ) && name.as_ref().is_none_or(|name| {
                event
                    .paths
                    .iter()
                    .any(|p| p.file_name() == Some(name.as_os_str()))
            })
        });
        if relevant {
            // Full: a reload is pending already, and it reads the file as it
            // is then.
            let _ = changed.try_send(());
        }
    };
    let watched = notify_debouncer_full::new_debouncer(DEBOUNCE, None, handler)
        .and_then(|mut debouncer| debouncer.watch(&dir, mode).map(|()| debouncer));
    match watched {
        Ok(debouncer) => {
            tracing::info!(
                "watching {} for changes: a valid change reloads the policy",
                path.display()
            );
            Some(debouncer)
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                "cannot watch {} for changes ({e}); reload with SIGHUP or POST /v1/reload",
                dir.display()
            );
            None
        }
    }
}
