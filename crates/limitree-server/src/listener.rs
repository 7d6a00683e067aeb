//! Accepting connections: the accept loop, the cap on open connections, and
//! what happens when the process runs short of them or of descriptors.
//!
//! axum's `serve` has no header or idle timeout and no cap, so a few hundred
//! idle sockets could hold every descriptor and leave new clients hanging
//! with nothing in the log. Here every connection is served by
//! `connection::serve` in the server's connection tracker, under
//! [`Limits`], and:
//!
//! - at `max_connections`, or when `accept` fails for want of descriptors
//!   (EMFILE/ENFILE), the oldest idle keep-alive connection is closed to make
//!   room (then the oldest one still sending its head); a new client is
//!   answered rather than the idle one kept;
//! - when nothing can be closed (every connection has a request in progress),
//!   a new connection at the cap gets a 503 problem+json and is closed, and
//!   failing accepts back off briefly instead of spinning;
//! - accept failures are counted (`limitree_http_accept_errors_total`) and
//!   logged at most once a second, with how many there were.

mod connection;
mod guarded;

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse as _;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::problem::ApiError;
use connection::{End, Shared, Stop, Watched};
pub(crate) use connection::{Phase, Watch};
pub(crate) use guarded::Guarded;

pub use connection::{LINGER_BYTES, LINGER_TIME};

/// The bounds on every connection (`[server]` keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request head must be complete this long after the accept, or after
    /// its first byte following a keep-alive pause.
    pub header_timeout: Duration,
    /// A keep-alive connection idle this long between requests is closed.
    pub idle_timeout: Duration,
    /// A request body must have arrived this long after its head; otherwise
    /// the request gets 408.
    pub body_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

/// A connection still sending its head is shed only once this old: the
/// ones just accepted in a burst are about to send theirs.
const SHED_HEAD_AGE: Duration = Duration::from_secs(1);
/// How long a new connection waits for a shed connection's slot.
const SHED_WAIT: Duration = Duration::from_millis(500);
/// How long the accept loop pauses after a failure it could not make room for.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Refusals being answered at once; past this a connection at the cap is
/// closed without an answer (each refusal holds a descriptor for a moment).
const REFUSALS: usize = 32;
/// Accept failures are logged at most this often.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(1);

/// Which listener a [`ConnectionMetrics`] counts for: its metric names are
/// `limitree_http_…` or `limitree_grpc_…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// The HTTP/1.1 listener (`--http`).
    #[default]
    Http,
    /// The gRPC (HTTP/2) listener (`--grpc`).
    Grpc,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

/// Connection counters for `GET /metrics`. Per listener of each server, like
/// the check counters, so servers in one process (tests) count only their own.
#[derive(Debug, Default)]
pub struct ConnectionMetrics {
    protocol: Protocol,
    pub(crate) open: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) header_timeouts: AtomicU64,
    pub(crate) idle_timeouts: AtomicU64,
    pub(crate) shed: AtomicU64,
    pub(crate) body_timeouts: AtomicU64,
}

impl ConnectionMetrics {
    /// Counters for the `protocol` listener, all zero.
    pub fn new(protocol: Protocol) -> Self {
        ConnectionMetrics {
            protocol,
            ..ConnectionMetrics::default()
        }
    }
}

/// `limitree_{http,grpc}_connections…`, read from the atomics at each scrape.
impl crate::metrics::Collector for ConnectionMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;

        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let p = self.protocol.name();
        let (what, refused_help) = match self.protocol {
            Protocol::Http => (
                "HTTP",
                "Connections answered 503 at max_connections, every open one busy",
            ),
            Protocol::Grpc => (
                "gRPC",
                "Connections closed unanswered at max_connections, every open one busy",
            ),
        };
        ConstGauge::new(i64::try_from(load(&self.open)).unwrap_or(i64::MAX)).encode(
            encoder.encode_descriptor(
                &format!("limitree_{p}_connections"),
                &format!("Open {what} connections"),
                None,
                MetricType::Gauge,
            )?,
        )?;
        for (name, help, counter) in [
            (
                format!("limitree_{p}_connections_accepted"),
                format!("{what} connections accepted"),
                &self.accepted,
            ),
            (
                format!("limitree_{p}_accept_errors"),
                "Failed accepts (e.g. EMFILE: out of file descriptors)".to_owned(),
                &self.accept_errors,
            ),
            (
                format!("limitree_{p}_connections_refused"),
                refused_help.to_owned(),
                &self.refused,
            ),
        ] {
            ConstCounter::new(load(counter)).encode(encoder.encode_descriptor(
                &name,
                &help,
                None,
                MetricType::Counter,
            )?)?;
        }
        let closed = format!("limitree_{p}_connections_closed");
        let mut family = encoder.encode_descriptor(
            &closed,
            "Connections closed by the server, by reason (client and keep-alive closes are not counted)",
            None,
            MetricType::Counter,
        )?;
        for (reason, counter) in [
            ("header_timeout", &self.header_timeouts),
            ("idle_timeout", &self.idle_timeouts),
            ("shed", &self.shed),
        ] {
            ConstCounter::new(load(counter))
                .encode(family.encode_family(&[("reason", reason)])?)?;
        }
        // gRPC calls are bounded by tonic's own per-call timeout, which
        // answers with a status rather than a 408.
        if self.protocol != Protocol::Http {
            return Ok(());
        }
        ConstCounter::new(load(&self.body_timeouts)).encode(encoder.encode_descriptor(
            "limitree_http_body_timeouts",
            "Requests answered 408 because the body did not arrive within body_timeout",
            None,
            MetricType::Counter,
        )?)
    }
}

/// The open connections, so the accept loop can pick one to shed.
#[derive(Debug)]
pub(crate) struct Registry {
    epoch: Instant,
    next: AtomicU64,
    live: Mutex<HashMap<u64, Arc<Watch>>>,
    /// Woken whenever a connection ends.
    closed: Notify,
}

impl Registry {
    pub(crate) fn insert(&self, watch: Arc<Watch>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.live.lock().insert(id, watch);
        id
    }

    pub(crate) fn remove(&self, id: u64) {
        self.live.lock().remove(&id);
        self.closed.notify_waiters();
    }

    /// Asks the connection that has waited longest without a request in
    /// progress to close (idle keep-alive ones before ones still sending a
    /// head, and those only once [`SHED_HEAD_AGE`] old); false when there is
    /// none.
    pub(crate) fn shed_oldest(&self) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let head_before = now.checked_sub(SHED_HEAD_AGE.as_micros() as u64);
        let live = self.live.lock();
        let oldest = live
            .values()
            .filter(|w| !w.shed.is_cancelled())
            .map(|w| (w.state(), w))
            .filter(|((phase, since), _)| match phase {
                Phase::Idle => true,
                Phase::Head => head_before.is_some_and(|before| *since <= before),
                Phase::Busy | Phase::Flushing => false,
            })
            .min_by_key(|(state, _)| *state);
        match oldest {
            Some((_, watch)) => {
                watch.shed.cancel();
                true
            }
            None => false,
        }
    }
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry {
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
            closed: Notify::new(),
        }
    }

    /// The instant the connections' [`Watch`] times count from.
    pub(crate) fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Calls `f` on every open connection's watch (under the lock: `f` must
    /// be quick).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Watch)) {
        for watch in self.live.lock().values() {
            f(watch);
        }
    }
}

/// A warning that may be logged at most once per [`ACCEPT_LOG_EVERY`]; the
/// occurrences in between are counted and reported with the next line.
#[derive(Debug, Default)]
pub(crate) struct LogEvery {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl LogEvery {
    /// `Some(occurrences since the last line)` when a line may be logged now.
    pub(crate) fn tick(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|at| now.duration_since(at) < ACCEPT_LOG_EVERY)
        {
            self.unlogged += 1;
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// A client the [`Acceptor`] let through.
#[derive(Debug)]
pub(crate) enum Accepted {
    /// Within `max_connections`: served while its slot is held.
    Admitted(TcpStream, OwnedSemaphorePermit),
    /// Over `max_connections` with nothing to shed (already counted as
    /// refused): the listener answers it as its protocol allows and closes it.
    OverCap(TcpStream),
}

/// What both listeners share of accepting: the cap on open connections,
/// shedding the oldest idle one at the cap or when `accept` fails for want of
/// descriptors, and counting and logging the failures. What is done with an
/// accepted connection is the listener's (`accept_loop` here, the gRPC
/// listener's incoming stream in `grpc::connections`).
#[derive(Debug)]
pub(crate) struct Acceptor {
    listener: TcpListener,
    registry: Arc<Registry>,
    slots: Arc<Semaphore>,
    metrics: Arc<ConnectionMetrics>,
    errors: LogEvery,
    listeners: Listeners,
}

impl Acceptor {
    pub(crate) fn new(
        listener: TcpListener,
        max_connections: usize,
        metrics: Arc<ConnectionMetrics>,
        listeners: &Listeners,
    ) -> Acceptor {
        let registry = Arc::new(Registry::new());
        listeners.0.lock().push(Arc::clone(&registry));
        Acceptor {
            listener,
            registry,
            slots: Arc::new(Semaphore::new(max_connections)),
            metrics,
            errors: LogEvery::default(),
            listeners: listeners.clone(),
        }
    }

    /// The open connections: each listener registers its own, so they can
    /// be shed.
    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub(crate) fn metrics(&self) -> &Arc<ConnectionMetrics> {
        &self.metrics
    }

    /// The next client. Never fails: an accept error is counted, logged (at
    /// most once a second), answered by shedding an idle connection, and
    /// waited out. Cancel-safe but for a client accepted and not yet given a
    /// slot, which is closed.
    pub(crate) async fn next(&mut self) -> Accepted {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _peer)) => stream,
                // The client gave up before it was accepted: nothing to do.
                Err(e) if is_client_gone(&e) => continue,
                Err(e) => {
                    self.failed(&e).await;
                    continue;
                }
            };
            self.metrics.accepted.fetch_add(1, Ordering::Relaxed);
            let slot = match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => make_room(&self.registry, &self.slots).await,
            };
            return match slot {
                Some(slot) => Accepted::Admitted(stream, slot),
                None => {
                    self.metrics.refused.fetch_add(1, Ordering::Relaxed);
                    Accepted::OverCap(stream)
                }
            };
        }
    }

    /// After a failed accept: most likely out of descriptors, so free one and
    /// wait for it to be closed, rather than retrying at once.
    async fn failed(&mut self, error: &io::Error) {
        self.metrics.accept_errors.fetch_add(1, Ordering::Relaxed);
        if let Some(unlogged) = self.errors.tick() {
            tracing::warn!(
                error = %error,
                listener = self.metrics.protocol.name(),
                open_connections = self.metrics.open.load(Ordering::Relaxed),
                failures_since_last_log = unlogged,
                "cannot accept a connection: {error}; closing idle connections to make room \
                 (raise `ulimit -n`, or lower [server] max_connections below it)"
            );
        }
        // Its own connections first, then the other listener's.
        let registries: Vec<Arc<Registry>> = {
            let all = self.listeners.0.lock();
            std::iter::once(Arc::clone(&self.registry))
                .chain(
                    all.iter()
                        .filter(|r| !Arc::ptr_eq(r, &self.registry))
                        .cloned(),
                )
                .collect()
        };
        for registry in registries {
            let closed = registry.closed.notified();
            let mut closed = std::pin::pin!(closed);
            closed.as_mut().enable();
            if registry.shed_oldest() {
                tokio::select! {
                    () = closed => {}
                    () = tokio::time::sleep(SHED_WAIT) => {}
                }
                return;
            }
        }
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    }
}

/// Every listener's open connections in one server. Descriptors are the
/// process's, not a listener's: when `accept` fails for want of one, a
/// listener sheds its own oldest idle connection or, with none, another
/// listener's, so a flood of idle gRPC sockets cannot starve the HTTP
/// listener (`GET /metrics`, `/healthz`), nor the reverse.
#[derive(Debug, Clone, Default)]
pub struct Listeners(Arc<Mutex<Vec<Arc<Registry>>>>);

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.listeners
            .0
            .lock()
            .retain(|r| !Arc::ptr_eq(r, &self.registry));
    }
}

/// Accepts connections from `acceptor` until `stopping` is cancelled, serving
/// each in `connections`. Connections are told to close gracefully through
/// `stopping` too, and are dropped on `abort`.
pub(crate) async fn accept_loop(
    mut acceptor: Acceptor,
    router: Router,
    limits: Limits,
    connections: &TaskTracker,
    stopping: CancellationToken,
    abort: CancellationToken,
) {
    let mut http = http1::Builder::new();
    // The timeouts are this module's (see `connection`); hyper gets no timer,
    // so its own header timeout stays off.
    http.header_read_timeout(None);
    let shared = Arc::new(Shared {
        http,
        router,
        limits,
        metrics: Arc::clone(acceptor.metrics()),
    });
    let registry = Arc::clone(acceptor.registry());
    let refusals = Arc::new(Semaphore::new(REFUSALS));
    let stop = Stop {
        graceful: stopping.clone(),
        now: abort,
    };
    loop {
        let accepted = tokio::select! {
            () = stopping.cancelled() => return,
            accepted = acceptor.next() => accepted,
        };
        match accepted {
            Accepted::Admitted(stream, slot) => {
                connections.spawn(connection_task(
                    stream,
                    slot,
                    Arc::clone(&shared),
                    Arc::clone(&registry),
                    stop.clone(),
                ));
            }
            Accepted::OverCap(stream) => {
                if let Ok(refusal) = Arc::clone(&refusals).try_acquire_owned() {
                    connections.spawn(refuse(
                        stream,
                        Arc::clone(&shared),
                        registry.epoch,
                        refusal,
                        stop.now.clone(),
                    ));
                }
            }
        }
    }
}

/// At the cap: sheds the oldest idle connection and waits (briefly) for its
/// slot; `None` when nothing could be shed.
async fn make_room(registry: &Registry, slots: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    if !registry.shed_oldest() {
        return None;
    }
    match tokio::time::timeout(SHED_WAIT, Arc::clone(slots).acquire_owned()).await {
        Ok(Ok(slot)) => Some(slot),
        _ => None,
    }
}

/// One connection from accept to close: registered (so it can be shed) and
/// counted while open, holding its slot under `max_connections`.
async fn connection_task(
    stream: TcpStream,
    slot: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    stop: Stop,
) {
    let watch = Arc::new(Watch::new(registry.epoch, &shared.limits));
    let id = registry.insert(Arc::clone(&watch));
    let metrics = &shared.metrics;
    metrics.open.fetch_add(1, Ordering::Relaxed);
    let end = connection::serve(stream, watch, Arc::clone(&shared), stop).await;
    let counter = match end {
        End::HeaderTimeout => Some(&metrics.header_timeouts),
        End::IdleTimeout => Some(&metrics.idle_timeouts),
        End::Shed => Some(&metrics.shed),
        End::Closed | End::Aborted => None,
    };
    if let Some(counter) = counter {
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(reason = ?end, "closed a connection");
    }
    metrics.open.fetch_sub(1, Ordering::Relaxed);
    drop(slot);
    registry.remove(id);
}

/// Answers a connection over the cap with a 503 problem+json and closes it,
/// lingering so the client reads the answer. Bounded by `header_timeout` and
/// the linger time, and dropped on `abort` like any connection.
async fn refuse(
    stream: TcpStream,
    shared: Arc<Shared>,
    epoch: Instant,
    _refusal: OwnedSemaphorePermit,
    abort: CancellationToken,
) {
    let max = shared.limits.max_connections;
    let io = TokioIo::new(Watched::refusing(
        stream,
        Arc::new(Watch::new(epoch, &shared.limits)),
    ));
    let service = hyper::service::service_fn(move |_request| async move {
        Ok::<_, std::convert::Infallible>(ApiError::TooManyConnections { max }.into_response())
    });
    let mut http = shared.http.clone();
    http.keep_alive(false);
    let served = http.serve_connection(io, service);
    let bound = shared.limits.header_timeout + LINGER_TIME;
    tokio::select! {
        _ = tokio::time::timeout(bound, served) => {}
        () = abort.cancelled() => {}
    }
}

/// Accept errors that concern one client only (it reset or aborted the
/// connection before it was accepted), not the server.
fn is_client_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::new()
    }

    fn watch(registry: &Registry, phase: Phase) -> Arc<Watch> {
        let limits = Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            body_timeout: Duration::from_secs(30),
            max_connections: 8,
        };
        let watch = Arc::new(Watch::new(registry.epoch, &limits));
        watch.set(phase);
        registry.insert(Arc::clone(&watch));
        watch
    }

    /// Paused time orders the connections' ages without waiting.
    #[tokio::test(start_paused = true)]
    async fn shedding_takes_idle_before_heads_oldest_first_and_never_busy_ones() {
        let registry = registry();
        let busy = watch(&registry, Phase::Busy);
        let head = watch(&registry, Phase::Head);
        tokio::time::advance(Duration::from_millis(10)).await;
        let idle_old = watch(&registry, Phase::Idle);
        tokio::time::advance(Duration::from_millis(10)).await;
        let idle_new = watch(&registry, Phase::Idle);
        let fresh = watch(&registry, Phase::Head);

        assert!(registry.shed_oldest());
        assert!(idle_old.shed.is_cancelled());
        assert!(registry.shed_oldest());
        assert!(idle_new.shed.is_cancelled());
        // Heads not yet a second old are left alone.
        assert!(!registry.shed_oldest());

        tokio::time::advance(SHED_HEAD_AGE).await;
        assert!(registry.shed_oldest());
        assert!(head.shed.is_cancelled());
        assert!(registry.shed_oldest());
        assert!(fresh.shed.is_cancelled());
        assert!(!registry.shed_oldest());
        assert!(!busy.shed.is_cancelled());
    }

    async fn acceptor(listeners: &Listeners) -> Acceptor {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = Arc::new(ConnectionMetrics::new(Protocol::Http));
        Acceptor::new(listener, 8, metrics, listeners)
    }

    /// What `accept` returns when the process is out of descriptors.
    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(24)
    }

    /// A failed accept sheds the listener's own idle connection first, and
    /// another listener's only when it has none: descriptors are shared.
    #[tokio::test(start_paused = true)]
    async fn out_of_descriptors_a_listener_sheds_its_own_idle_connection_then_the_others() {
        let listeners = Listeners::default();
        let mut http = acceptor(&listeners).await;
        let grpc = acceptor(&listeners).await;
        let grpc_idle = watch(grpc.registry(), Phase::Idle);
        let http_idle = watch(http.registry(), Phase::Idle);

        http.failed(&emfile()).await;
        assert!(http_idle.shed.is_cancelled());
        assert!(!grpc_idle.shed.is_cancelled());

        http.failed(&emfile()).await;
        assert!(grpc_idle.shed.is_cancelled());
        assert_eq!(http.metrics().accept_errors.load(Ordering::Relaxed), 2);

        // A listener that stopped is no longer shed for.
        let other = watch(grpc.registry(), Phase::Idle);
        drop(grpc);
        http.failed(&emfile()).await;
        assert!(!other.shed.is_cancelled());
    }
}
