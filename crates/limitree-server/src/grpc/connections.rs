//! The gRPC listener's connections under the `[server]` bounds: the same
//! cap, shedding and accept-error handling as the HTTP listener
//! ([`crate::listener::Acceptor`]), with HTTP/2 meanings for the timeouts.
//!
//! tonic (through hyper) runs each connection in a task of its own, with no
//! hook for a timeout of ours, so the bounds are kept from outside it:
//!
//! - [`incoming`] is the stream of connections tonic serves: each accepted
//!   socket wrapped in a [`GrpcIo`], which holds its `max_connections` slot
//!   and is registered (so it can be shed) until tonic drops it. A client
//!   over the cap with nothing to shed is closed unanswered, counted and
//!   logged.
//! - A connection's [`Watch`] is in `Head` from the accept until its first
//!   call arrives (the TLS handshake, the HTTP/2 preface and the first
//!   request's headers: `header_timeout`), `Busy` while it has a call open,
//!   and `Idle` once it has none (`idle_timeout`). [`CountCalls`], a tower
//!   layer around the services, moves it between them; it finds the watch in
//!   the request's extensions, where tonic puts [`GrpcIo`]'s connect info.
//! - [`sweep`] closes the connections whose phase has timed out. Closing is
//!   cancelling the watch's `shed` token, as shedding is: [`GrpcIo`] then
//!   fails every read and write, so hyper (or the TLS handshake) gives up on
//!   the connection and tonic drops it.
//!
//! A call whose request never completes is ended by tonic's per-call
//! `timeout` (`body_timeout`), after which its connection is idle.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::server::Connected;

use crate::listener::{
    Accepted, Acceptor, ConnectionMetrics, Guarded, Limits, LogEvery, Phase, Registry, Watch,
};

/// The stream of connections for tonic's `serve_with_incoming_shutdown`.
/// Never yields an error: tonic would stop serving on one it does not know.
pub(crate) fn incoming(
    acceptor: Acceptor,
    limits: Limits,
) -> impl tonic::codegen::tokio_stream::Stream<Item = Result<GrpcIo, Infallible>> + Send {
    let refusals = LogEvery::default();
    futures_util::stream::unfold(
        (acceptor, refusals),
        move |(mut acceptor, mut refusals)| async move {
            loop {
                match acceptor.next().await {
                    Accepted::Admitted(stream, slot) => {
                        let io = GrpcIo::new(stream, slot, &acceptor, &limits);
                        return Some((Ok(io), (acceptor, refusals)));
                    }
                    // HTTP/2 has no answer before the preface, so the
                    // client sees the connection closed.
                    Accepted::OverCap(stream) => {
                        drop(stream);
                        if let Some(unlogged) = refusals.tick() {
                            tracing::warn!(
                                max_connections = limits.max_connections,
                                refused_since_last_log = unlogged,
                                "gRPC connection refused: {} open, each with a call in progress \
                                 (raise [server] max_connections, or add instances)",
                                limits.max_connections
                            );
                        }
                    }
                }
            }
        },
    )
}

/// How often [`sweep`] looks for timed-out connections: often enough that a
/// timeout is kept to within an eighth of it (at most a second late).
pub(crate) fn sweep_every(limits: &Limits) -> Duration {
    (limits.header_timeout.min(limits.idle_timeout) / 8)
        .clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Closes, every [`sweep_every`], the connections whose phase has timed out
/// (counted by [`GrpcIo`] as they close). Runs until dropped.
pub(crate) async fn sweep(registry: Arc<Registry>, every: Duration) -> Infallible {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        registry.for_each(|watch| {
            if watch.expired().is_some() {
                watch.shed.cancel();
            }
        });
    }
}

/// One connection as tonic sees it: the socket, failing every read and write
/// once the connection is to close. Holds its slot and its place in the
/// registry until tonic drops it.
pub(crate) struct GrpcIo {
    stream: TcpStream,
    conn: GrpcConn,
    close: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Why it is closing, once known (counted once).
    closing: Option<io::ErrorKind>,
    id: u64,
    registry: Arc<Registry>,
    metrics: Arc<ConnectionMetrics>,
    _slot: OwnedSemaphorePermit,
}

impl std::fmt::Debug for GrpcIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcIo")
            .field("stream", &self.stream)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl GrpcIo {
    fn new(
        stream: TcpStream,
        slot: OwnedSemaphorePermit,
        acceptor: &Acceptor,
        limits: &Limits,
    ) -> GrpcIo {
        // As `TcpIncoming::with_nodelay`: answers are small and go at once.
        let _ = stream.set_nodelay(true);
        let registry = Arc::clone(acceptor.registry());
        let watch = Arc::new(Watch::new(registry.epoch(), limits));
        let id = registry.insert(Arc::clone(&watch));
        let metrics = Arc::clone(acceptor.metrics());
        metrics.open.fetch_add(1, Ordering::Relaxed);
        GrpcIo {
            stream,
            close: Box::pin(watch.shed.clone().cancelled_owned()),
            conn: GrpcConn(Arc::new(ConnState {
                watch,
                calls: Mutex::new(0),
            })),
            closing: None,
            id,
            registry,
            metrics,
            _slot: slot,
        }
    }

    /// `Err` once the connection is to close: the first time, counts why.
    fn check_close(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.closing.is_none() {
            if self.close.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            let metrics = &self.metrics;
            let (counter, kind) = match self.conn.0.watch.expired() {
                Some(Phase::Head) => (&metrics.header_timeouts, io::ErrorKind::TimedOut),
                Some(_) => (&metrics.idle_timeouts, io::ErrorKind::TimedOut),
                None => (&metrics.shed, io::ErrorKind::ConnectionAborted),
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(reason = ?kind, "closing a gRPC connection");
            self.closing = Some(kind);
        }
        let kind = self.closing.unwrap_or(io::ErrorKind::ConnectionAborted);
        Err(io::Error::new(
            kind,
            "closed by limitree ([server] header_timeout, idle_timeout or max_connections)",
        ))
    }
}

impl Drop for GrpcIo {
    fn drop(&mut self) {
        self.metrics.open.fetch_sub(1, Ordering::Relaxed);
        self.registry.remove(self.id);
    }
}

impl AsyncRead for GrpcIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_close(cx)?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for GrpcIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_close(cx)?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_close(cx)?;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_close(cx)?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl Connected for GrpcIo {
    type ConnectInfo = GrpcConn;

    fn connect_info(&self) -> GrpcConn {
        self.conn.clone()
    }
}

/// A connection's state as its calls see it (tonic puts it in each request's
/// extensions).
#[derive(Debug, Clone)]
pub(crate) struct GrpcConn(Arc<ConnState>);

#[derive(Debug)]
struct ConnState {
    watch: Arc<Watch>,
    /// Calls open on the connection: busy while above zero. A lock, not an
    /// atomic, so the phase set last is the one the count calls for.
    calls: Mutex<usize>,
}

/// Counted as open from its request's headers to its response's end (or
/// until dropped, when the client resets the stream).
#[derive(Debug)]
struct CallGuard(Arc<ConnState>);

impl CallGuard {
    fn open(conn: &GrpcConn) -> CallGuard {
        let state = Arc::clone(&conn.0);
        {
            let mut calls = state.calls.lock();
            *calls += 1;
            if *calls == 1 {
                state.watch.set(Phase::Busy);
            }
        }
        CallGuard(state)
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let mut calls = self.0.calls.lock();
        *calls = calls.saturating_sub(1);
        if *calls == 0 {
            self.0.watch.set(Phase::Idle);
        }
    }
}

/// The tower layer that keeps each connection's phase from its open calls.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CountCallsLayer;

impl<S> tower::Layer<S> for CountCallsLayer {
    type Service = CountCalls<S>;

    fn layer(&self, inner: S) -> CountCalls<S> {
        CountCalls { inner }
    }
}

/// See [`CountCallsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct CountCalls<S> {
    inner: S,
}

impl<S> tower::Service<http::Request<Body>> for CountCalls<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Counted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let guard = request.extensions().get::<GrpcConn>().map(CallGuard::open);
        Counted {
            response: self.inner.call(request),
            guard,
        }
    }
}

pin_project_lite::pin_project! {
    /// A call's response future that hands the call's [`CallGuard`] to the
    /// response body. A named future rather than a boxed `async` block: one
    /// allocation less per call.
    pub(crate) struct Counted<F> {
        #[pin]
        response: F,
        guard: Option<CallGuard>,
    }
}

impl<F, E> Future for Counted<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.response.poll(cx))?;
        Poll::Ready(Ok(match this.guard.take() {
            Some(guard) => response.map(|inner| {
                // The call stays open until its body is done with.
                Body::new(Guarded::new(inner, guard))
            }),
            None => response,
        }))
    }
}
