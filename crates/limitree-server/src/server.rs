//! Running the server: serve a listener until told to stop, then stop cleanly.
//!
//! Connections are accepted and bounded by [`crate::listener`]; this module
//! puts the pieces together and orders the shutdown.
//!
//! The caller hands in the bound socket and the shutdown signal, so the binary
//! passes SIGTERM/SIGINT and a test passes a channel, and tests can bind
//! `127.0.0.1:0`. Background work (the idle-bucket sweep, the Slack relay's
//! delivery workers and digest loop) runs in a
//! [`TaskTracker`] and stops through a [`CancellationToken`]: nothing is left
//! running, detached, after [`run`] returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use limitree::{Limiter, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::{self, AppState};
use crate::listener::{self, Limits, Listeners};

/// How the server runs, beyond what handlers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// After the shutdown signal: how long in-flight requests, then background
    /// tasks, may take before the server gives up on them.
    pub shutdown_grace: Duration,
    /// Period of the idle-bucket sweep.
    pub sweep_interval: Duration,
    /// The bounds on each connection.
    pub connections: Limits,
}

impl From<&crate::config::ServerConfig> for Lifecycle {
    fn from(server: &crate::config::ServerConfig) -> Self {
        Lifecycle {
            shutdown_grace: server.shutdown_grace,
            sweep_interval: server.sweep_interval,
            connections: Limits {
                header_timeout: server.header_timeout,
                idle_timeout: server.idle_timeout,
                body_timeout: server.body_timeout,
                max_connections: server.max_connections,
            },
        }
    }
}

/// Serves `state` on `listener` until `shutdown` completes, then stops
/// accepting, lets in-flight requests finish and stops background tasks, all
/// within `lifecycle.shutdown_grace`. Logs `listening on http://ADDR` with the
/// address actually bound (so `127.0.0.1:0` reports its port).
///
/// Connections live in their own tracker: at the signal the listener is
/// closed, idle connections close at once, busy ones after their response
/// (so a keep-alive client does not hold shutdown up), and whatever is still
/// open when the grace runs out is dropped.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    lifecycle: Lifecycle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_among(listener, state, lifecycle, &Listeners::default(), shutdown).await
}

/// [`run`] as one of the server's `listeners` (which shed each other's idle
/// connections when descriptors run out).
async fn run_among(
    listener: TcpListener,
    state: AppState,
    lifecycle: Lifecycle,
    listeners: &Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();

    // Opens the outbox and resends what it holds before anything is accepted
    // (the Redis outbox connects in the background; see `Relay::start`).
    state
        .notify
        .start(&tracker, &cancel)
        .map_err(std::io::Error::other)?;

    // SIGHUP and the config file's watcher, installed before the server
    // says it listens.
    crate::reload::spawn(Arc::clone(&state.reload), &tracker, &cancel)?;

    tracker.spawn(sweep(
        state.limiter.clone(),
        lifecycle.sweep_interval,
        cancel.clone(),
    ));

    probe_store(state.limiter.store().as_ref()).await;

    let addr = listener.local_addr()?;
    tracing::info!(
        store = state.limiter.store().kind(),
        "listening on http://{addr}"
    );

    let connections = TaskTracker::new();
    let stopping = CancellationToken::new();
    let abort = CancellationToken::new();
    let acceptor = listener::Acceptor::new(
        listener,
        lifecycle.connections.max_connections,
        Arc::clone(&state.connections),
        listeners,
    );
    let accepting = listener::accept_loop(
        acceptor,
        http::router(state),
        lifecycle.connections,
        &connections,
        stopping.clone(),
        abort.clone(),
    );
    // The accept loop runs until dropped here, which closes the listener.
    tokio::select! {
        () = accepting => {}
        () = shutdown => {}
    }
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    stopping.cancel();
    cancel.cancel();

    connections.close();
    if tokio::time::timeout(lifecycle.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?lifecycle.shutdown_grace,
            "in-flight requests did not finish within the shutdown grace; dropping them"
        );
        abort.cancel();
        connections.wait().await;
    }

    tracker.close();
    if tokio::time::timeout(lifecycle.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop within the shutdown grace");
    }
    tracing::info!("stopped");
    Ok(())
}

/// [`run`] next to the gRPC listener (Envoy's RateLimitService) when there is
/// one (over TLS with `grpc_tls`, else h2c): both stop on `shutdown`, either
/// one ending stops the other, and the gRPC drain is bounded by the same
/// `shutdown_grace`.
pub async fn run_with_grpc(
    http: TcpListener,
    grpc: Option<TcpListener>,
    grpc_tls: Option<&crate::grpc::tls::GrpcTls>,
    service: crate::grpc::RateLimitServer,
    state: AppState,
    lifecycle: Lifecycle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(grpc) = grpc else {
        return run(http, state, lifecycle, shutdown).await;
    };
    // Before `run` logs the HTTP address, so a reader of the log (and the
    // tests' harness) has both once that line appears.
    tracing::info!(
        "gRPC listening on {} ({}; envoy.service.ratelimit.v3.RateLimitService, grpc.health.v1.Health)",
        grpc.local_addr()?,
        if grpc_tls.is_some() { "TLS" } else { "h2c" }
    );
    let auth = crate::grpc::Authorize(state.auth.clone());
    let stop = CancellationToken::new();
    let listeners = Listeners::default();
    let http = async {
        let served = run_among(
            http,
            state,
            lifecycle,
            &listeners,
            stop.clone().cancelled_owned(),
        )
        .await;
        stop.cancel();
        served
    };
    let grpc = async {
        let serving = crate::grpc::serve(
            grpc,
            service,
            auth,
            grpc_tls,
            lifecycle.connections,
            &listeners,
            stop.clone().cancelled_owned(),
        );
        let mut serving = std::pin::pin!(serving);
        let served = tokio::select! {
            served = &mut serving => served,
            () = stop.cancelled() => {
                match tokio::time::timeout(lifecycle.shutdown_grace, &mut serving).await {
                    Ok(served) => served,
                    Err(_) => {
                        tracing::warn!(
                            grace = ?lifecycle.shutdown_grace,
                            "gRPC calls did not finish within the shutdown grace; dropping them"
                        );
                        Ok(())
                    }
                }
            }
        };
        stop.cancel();
        served.map_err(std::io::Error::other)
    };
    let signalled = async {
        tokio::select! {
            () = shutdown => stop.cancel(),
            () = stop.cancelled() => {}
        }
    };
    let ((), http, grpc) = tokio::join!(signalled, http, grpc);
    http.and(grpc)
}

/// Drops idle buckets every `every` until cancelled, so memory tracks the
/// buckets in use rather than every bucket ever seen.
/// Tries the store once at start-up (within its own deadline) and logs what
/// it found: ready, or why not. The server starts either way: while the store
/// fails, `on_error` decides, and it is used as soon as it answers.
async fn probe_store(store: &dyn Store) {
    match store.check_ready().await {
        Ok(()) => tracing::info!(store = store.kind(), "store ready"),
        Err(e) => tracing::warn!(
            store = store.kind(),
            error = %e,
            "store not ready at start-up: {e}; serving anyway (on_error decides until it answers)"
        ),
    }
}

async fn sweep(limiter: Limiter, every: Duration, cancel: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; there is nothing idle at start-up.
    ticks.tick().await;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = ticks.tick() => {
                // The store in force now: after a reload, the new one
                // (which holds every bucket that is still counted).
                let expired = limiter.store().expire_idle();
                if expired > 0 {
                    tracing::debug!(expired, "swept idle buckets");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use limitree::{CheckRequest, Limiter, ManualClock, MemoryStore, Policy};

    use super::*;

    /// Paused tokio time drives the sweep's timer and a manual clock the
    /// buckets' idleness, so nothing waits in real time.
    #[tokio::test(start_paused = true)]
    async fn the_sweep_drops_idle_buckets_until_cancelled() {
        let policy = Arc::new(Policy::default_notifications());
        let clock = ManualClock::new(1_700_000_000_000_000);
        let store = Arc::new(MemoryStore::with_clock(&policy, Arc::new(clock.clone())));
        let limiter = Limiter::new(policy, Arc::clone(&store) as Arc<dyn Store>);
        let request = CheckRequest {
            tree: None,
            descriptors: &[("category", "errors")],
            cost: 1,
            dry_run: false,
        };
        limiter.check(request).await.unwrap();
        assert_eq!(store.bucket_count(), 1);

        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        tracker.spawn(sweep(
            limiter.clone(),
            Duration::from_secs(30),
            cancel.clone(),
        ));
        // Not idle yet: a sweep keeps the bucket.
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert_eq!(store.bucket_count(), 1);

        clock.advance(Duration::from_secs(3600));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(store.bucket_count(), 0);

        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
