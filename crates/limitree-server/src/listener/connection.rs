//! One connection: hyper's HTTP/1 connection with the server's bounds around
//! it.
//!
//! hyper parses and writes HTTP; this module adds what it does not: separate
//! header and idle timeouts (hyper's one `header_read_timeout` also runs while
//! a keep-alive connection waits between requests, so it cannot be both 10 s
//! and 75 s), the body timeout, being shed on demand, and the lingering close
//! after a response to a request whose body was not read.
//!
//! A connection's [`Watch`] is what the accept loop and the timers see of it:
//! its [`Phase`] and since when. The socket wrapper ([`Watched`]) notices the
//! first byte of a request, the service notices the complete head, and the
//! response body's drop ([`Tracked`]) notices the end of the response.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::{ConnectionMetrics, Guarded, Limits};
use crate::http::body::BodyTimedOut;
use crate::http::problem::{ApiError, HeadError};

/// After a response to a request whose body the app did not read (a 413, or
/// a refusal), the rest of the body is read and thrown away for at most this
/// long before the socket is closed (nginx's lingering close; its
/// `lingering_time` is 30 s). Closing with unread bytes makes the kernel send
/// a reset, and a client that writes its whole body before reading (Python's
/// `urllib`, `requests`) then sees a broken pipe instead of the answer.
pub const LINGER_TIME: Duration = Duration::from_secs(2);
/// …and at most this many bytes: enough for a body well past any sensible
/// `max_body_bytes` (the tests send 8 MiB against 64 KiB), small enough that
/// a client cannot make the server read without end.
pub const LINGER_BYTES: u64 = 16 << 20;

/// What a connection is doing: which timeout applies, and whether it may be
/// shed. Ordered as shedding prefers them: idle first, then a head in
/// progress; never a busy or flushing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Between requests: a response was sent and nothing of the next request
    /// has arrived. `idle_timeout` applies.
    Idle = 0,
    /// Receiving a request head: since the accept, or since the first byte
    /// after being idle. `header_timeout` applies.
    Head = 1,
    /// A request is with the app: its body read, its response written. Only
    /// `body_timeout` (on the body) and shutdown apply.
    Busy = 2,
    /// The response is complete and being flushed to the socket: idle once
    /// that is done. `idle_timeout` bounds a client that never reads it.
    Flushing = 3,
}

impl Phase {
    /// Whether closing the connection now loses nothing but an idle socket
    /// or an unfinished head.
    pub(crate) fn sheddable(self) -> bool {
        matches!(self, Phase::Idle | Phase::Head)
    }

    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Idle,
            1 => Phase::Head,
            2 => Phase::Busy,
            _ => Phase::Flushing,
        }
    }
}

/// What the rest of the server sees of one connection. Shared by its task,
/// its socket wrapper, its requests' bodies and the accept loop's registry;
/// atomics because the socket wrapper updates it on every read.
#[derive(Debug)]
pub(crate) struct Watch {
    /// Times are kept as microseconds since this instant, so they fit an atomic.
    epoch: Instant,
    phase: AtomicU8,
    since_micros: AtomicU64,
    /// `header_timeout` and `idle_timeout` in microseconds.
    header_micros: u64,
    idle_micros: u64,
    /// The deadline the connection's task is sleeping until (`u64::MAX`: none).
    armed_micros: AtomicU64,
    /// Wakes the connection's task when a deadline comes earlier than the
    /// armed one; a later one is picked up when the armed one fires, so most
    /// phase changes of a request wake nothing. `notify_one` keeps a permit,
    /// so a change between reading the state and waiting is not lost.
    changed: Notify,
    /// Cancelled by the accept loop to shed this connection.
    pub(crate) shed: CancellationToken,
    /// The current request's body has not been read to its end.
    body_unread: AtomicBool,
}

impl Watch {
    /// A connection accepted now, waiting for its first request head.
    pub(crate) fn new(epoch: Instant, limits: &Limits) -> Watch {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let watch = Watch {
            epoch,
            phase: AtomicU8::new(Phase::Head as u8),
            since_micros: AtomicU64::new(0),
            header_micros: micros(limits.header_timeout),
            idle_micros: micros(limits.idle_timeout),
            armed_micros: AtomicU64::new(u64::MAX),
            changed: Notify::new(),
            shed: CancellationToken::new(),
            body_unread: AtomicBool::new(false),
        };
        watch.set(Phase::Head);
        watch
    }

    pub(crate) fn set(&self, phase: Phase) {
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.since_micros.store(now, Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
        if let Some(due) = self.due(phase, now)
            && due < self.armed_micros.load(Ordering::Acquire)
        {
            self.changed.notify_one();
        }
    }

    /// When a connection in `phase` since `since` times out, in microseconds
    /// since the epoch; `None` when busy.
    fn due(&self, phase: Phase, since: u64) -> Option<u64> {
        let after = match phase {
            Phase::Idle | Phase::Flushing => self.idle_micros,
            Phase::Head => self.header_micros,
            Phase::Busy => return None,
        };
        Some(since.saturating_add(after))
    }

    /// The deadline for the current state, recorded as the one armed.
    fn arm(&self, phase: Phase, since: u64) -> Option<Instant> {
        let due = self.due(phase, since);
        self.armed_micros
            .store(due.unwrap_or(u64::MAX), Ordering::Release);
        due.map(|due| self.epoch + Duration::from_micros(due))
    }

    /// The phase and since when (in microseconds since the epoch).
    pub(crate) fn state(&self) -> (Phase, u64) {
        let phase = Phase::from_u8(self.phase.load(Ordering::Acquire));
        (phase, self.since_micros.load(Ordering::Acquire))
    }

    /// The phase whose timeout has passed, if it has: for a listener whose
    /// connections are closed by a sweep rather than their own timer (gRPC).
    pub(crate) fn expired(&self) -> Option<Phase> {
        let (phase, since) = self.state();
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.due(phase, since)
            .is_some_and(|due| due <= now)
            .then_some(phase)
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The client closed it, or hyper did (after `Connection: close`, an
    /// unread body, a parse error, or a graceful shutdown).
    Closed,
    /// No complete request head within `header_timeout`.
    HeaderTimeout,
    /// Idle longer than `idle_timeout` between requests.
    IdleTimeout,
    /// Closed by the accept loop to make room for a new connection.
    Shed,
    /// Still busy when the shutdown grace ran out.
    Aborted,
}

/// What every connection of one server shares.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) http: http1::Builder,
    pub(super) router: Router,
    pub(super) limits: Limits,
    pub(super) metrics: Arc<ConnectionMetrics>,
}

/// How the server tells its connections to stop.
#[derive(Debug, Clone)]
pub(super) struct Stop {
    /// Close gracefully: the request in progress finishes, then the
    /// connection closes (an idle one at once).
    pub(super) graceful: CancellationToken,
    /// Drop the connection whatever it is doing (the shutdown grace is over).
    pub(super) now: CancellationToken,
}

/// Serves `stream` until it ends or `stop` says so.
pub(super) async fn serve(
    stream: TcpStream,
    watch: Arc<Watch>,
    shared: Arc<Shared>,
    stop: Stop,
) -> End {
    let io = TokioIo::new(Watched::new(stream, Arc::clone(&watch)));
    let service = {
        let watch = Arc::clone(&watch);
        let shared = Arc::clone(&shared);
        hyper::service::service_fn(move |request| respond(request, &watch, &shared))
    };
    let mut conn = pin!(shared.http.serve_connection(io, service));
    let mut closing = false;
    loop {
        let (phase, since) = watch.state();
        let deadline = watch.arm(phase, since);
        let expired = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return End::Closed;
            }
            () = stop.now.cancelled() => return End::Aborted,
            () = watch.shed.cancelled(), if !closing => {
                // Shedding picks idle connections, but a request may have
                // arrived since: let it finish, then close.
                if watch.state().0.sheddable() {
                    return End::Shed;
                }
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = stop.graceful.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = expired => {
                // Unless the connection moved on meanwhile.
                if watch.state() == (phase, since) {
                    return match phase {
                        Phase::Head => End::HeaderTimeout,
                        _ => End::IdleTimeout,
                    };
                }
            }
            () = watch.changed.notified() => {}
        }
    }
}

/// One request: the head is complete, so the connection is busy until the
/// response has been written.
fn respond(
    request: hyper::Request<Incoming>,
    watch: &Arc<Watch>,
    shared: &Arc<Shared>,
) -> impl Future<Output = Result<hyper::Response<Tracked>, Infallible>> + Send + use<> {
    watch.set(Phase::Busy);
    let (mut parts, incoming) = request.into_parts();
    let body = if incoming.is_end_stream() {
        watch.body_unread.store(false, Ordering::Release);
        Body::new(incoming)
    } else {
        watch.body_unread.store(true, Ordering::Release);
        Body::new(TimedBody {
            inner: incoming,
            deadline: Instant::now() + shared.limits.body_timeout,
            after: shared.limits.body_timeout,
            timer: None,
            watch: Arc::clone(watch),
            metrics: Arc::clone(&shared.metrics),
        })
    };
    // `GET /metrics` renders the connection counters from here.
    parts.extensions.insert(Arc::clone(&shared.metrics));
    let request = axum::http::Request::from_parts(parts, body);
    let router = shared.router.clone();
    let watch = Arc::clone(watch);
    async move {
        let response: Response = match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        Ok(response.map(|inner| Guarded::new(inner, Flushing(watch))))
    }
}

/// A request body that fails with [`BodyTimedOut`] when it has not arrived
/// in full within `body_timeout` of its head, and that records when it has
/// been read to its end (so no lingering close is needed).
struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    after: Duration,
    /// Made on the first wait only: a body already buffered costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
    watch: Arc<Watch>,
    metrics: Arc<ConnectionMetrics>,
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.watch.body_unread.store(false, Ordering::Release);
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                ready!(timer.as_mut().poll(cx));
                this.metrics.body_timeouts.fetch_add(1, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(BodyTimedOut { after: this.after }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that marks its connection flushing once hyper is done
/// with it (and [`Watched`] marks it idle once the bytes are out).
pub(super) type Tracked = Guarded<Body, Flushing>;

/// Marks its connection flushing when dropped (with the response body).
pub(super) struct Flushing(Arc<Watch>);

impl Drop for Flushing {
    fn drop(&mut self) {
        self.0.set(Phase::Flushing);
    }
}

/// The socket as hyper sees it: notices the first byte after an idle pause,
/// and closes lingering when a request's body was left unread.
pub(super) struct Watched {
    stream: TcpStream,
    watch: Arc<Watch>,
    linger: Option<Linger>,
    /// A problem+json answer standing in for hyper's empty one to a request
    /// head it could not parse, and how much of it is written.
    answer: Option<(Vec<u8>, usize)>,
}

/// A lingering close in progress: the write side is shut, the read side is
/// drained until the client closes, `LINGER_BYTES` or `LINGER_TIME`.
struct Linger {
    until: Pin<Box<Sleep>>,
    left: u64,
}

impl Watched {
    pub(super) fn new(stream: TcpStream, watch: Arc<Watch>) -> Watched {
        Watched {
            stream,
            watch,
            linger: None,
            answer: None,
        }
    }

    /// For a refusal: the request's body is never read, so always linger.
    pub(super) fn refusing(stream: TcpStream, watch: Arc<Watch>) -> Watched {
        watch.body_unread.store(true, Ordering::Release);
        Watched::new(stream, watch)
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before && this.watch.state().0 == Phase::Idle {
            this.watch.set(Phase::Head);
        }
        read
    }
}

impl Watched {
    /// hyper writes a response while no request is with the app (idle, or
    /// reading a head; a response of the app's is written while busy or
    /// flushing) only when it answers a head it could not parse itself (400,
    /// 414 or 431, empty body). Those bytes are taken whole and replaced by
    /// the same status with a problem+json body; `None` for any other write.
    fn replace_head_error(&mut self, first: &[u8], total: usize) -> Option<usize> {
        if self.answer.is_some() || !self.watch.state().0.sheddable() {
            return None;
        }
        let status = first
            .strip_prefix(b"HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| std::str::from_utf8(code).ok())
            .and_then(|code| code.parse::<u16>().ok())?;
        let answer = ApiError::MalformedHead(HeadError::from_status(status)?).to_http1_bytes();
        self.answer = Some((answer, 0));
        // What the client sent past the bad head is unread too.
        self.watch.body_unread.store(true, Ordering::Release);
        Some(total)
    }

    /// Writes what is left of a replacement answer.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((answer, written)) = &mut self.answer {
            if *written == answer.len() {
                break;
            }
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &answer[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(n) = this.replace_head_error(buf, buf.len()) {
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        let total = bufs.iter().map(|b| b.len()).sum();
        if let Some(n) = this.replace_head_error(first, total) {
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    /// A flushed complete response leaves the connection idle.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_answer(cx))?;
        ready!(Pin::new(&mut this.stream).poll_flush(cx))?;
        if this.watch.state().0 == Phase::Flushing {
            this.watch.set(Phase::Idle);
        }
        Poll::Ready(Ok(()))
    }

    /// hyper's last call on a connection it closes. With a request body left
    /// unread, the response is followed by a FIN, then the rest of the body is
    /// read and dropped (bounded), so the client reads the response instead of
    /// a reset.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_answer(cx))?;
        if !this.watch.body_unread.load(Ordering::Acquire) {
            return Pin::new(&mut this.stream).poll_shutdown(cx);
        }
        loop {
            let Some(linger) = &mut this.linger else {
                ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
                this.linger = Some(Linger {
                    until: Box::pin(tokio::time::sleep(LINGER_TIME)),
                    left: LINGER_BYTES,
                });
                continue;
            };
            if linger.until.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut scratch = [0u8; 8192];
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut this.stream).poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => {
                    let n = buf.filled().len() as u64;
                    if n >= linger.left {
                        return Poll::Ready(Ok(()));
                    }
                    linger.left -= n;
                }
                // The client closed its side, or the socket failed: done.
                _ => return Poll::Ready(Ok(())),
            }
        }
    }
}
