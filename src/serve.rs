//! `GET /metrics`: the store as Prometheus text or OpenMetrics (by the Accept
//! header). Takes a bound listener and a shutdown future, so tests bind
//! 127.0.0.1:0 (mini-redis's `run(listener, shutdown)`).
//!
//! With a web config (`web_config.rs`) connections are TLS (optionally with
//! client certificates) and requests need basic auth. A local user holding
//! connections cannot keep a scraper out: at most `max_connections` are open
//! at once; when full, a new connection takes the place of the oldest idle
//! one (no request being answered on it: not sent yet, or kept alive after
//! an answer), else it is closed at once. A connection is protected only
//! while one of its requests is answered, which is bounded: a 401 closes the
//! connection, the wait for bcrypt is bounded (`web_config.rs`), and a client
//! must take some of its answer every [`WRITE_TIMEOUT`]. A request header must
//! arrive within [`HEADER_TIMEOUT`], a TLS handshake within
//! [`HANDSHAKE_TIMEOUT`]; a failing `accept()` (EMFILE) frees an idle
//! connection's descriptor, is retried after a pause growing while nothing
//! can be freed, and is logged at most once per [`LOG_EVERY`].

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::ServeConfig;
use crate::store::shared::{SharedRef, lock};
use crate::store::text::{self, Format};
use crate::store::{Kind, Series, now_ms};
use crate::web_config::{Auth, WebConfig};

/// A connection that has not sent a whole request header by then is closed
/// (also between requests on a kept-alive connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that takes no part of its answer for this long is dropped (a
/// reader that never reads would otherwise keep its slot).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A TLS handshake not done by then is abandoned.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pauses after a failed `accept()`: doubling from the first to the second.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// How long a new connection waits for the slot of the one evicted for it.
const EVICT_WAIT: Duration = Duration::from_millis(100);
/// At most one log line per this for repeated `accept()` failures.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

const ACCEPT_ERRORS: &str = "rme_serve_accept_errors_total";
const REFUSED: &str = "rme_serve_connections_refused_total";
const EVICTED: &str = "rme_serve_connections_evicted_total";
const HANDSHAKE_FAILURES: &str = "rme_serve_tls_handshake_failures_total";
const UNAUTHORIZED: &str = "rme_serve_unauthorized_total";
const AUTH_BUSY: &str = "rme_serve_auth_busy_total";

/// What the endpoint needs from `[serve]`.
#[derive(Clone, Debug)]
pub struct Options {
    pub web: Option<Arc<WebConfig>>,
    pub max_connections: usize,
}

impl From<&ServeConfig> for Options {
    fn from(c: &ServeConfig) -> Options {
        Options {
            web: c.web.clone(),
            max_connections: c.max_connections,
        }
    }
}

impl Default for Options {
    fn default() -> Options {
        Options::from(&ServeConfig::default())
    }
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shared: SharedRef,
    options: Options,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    describe(&shared);
    announce(&listener, options.web.as_deref());
    let cap = fd_budget(options.max_connections);
    let slots = Arc::new(Semaphore::new(cap));
    let waiting = Waiting::default();
    let mut pause = Duration::ZERO;
    let mut errors = RateLimited::new(LOG_EVERY);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => {
                pause = Duration::ZERO;
                (stream, peer.ip())
            }
            // The peer gave up before we took it: nothing to wait for.
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // EMFILE and the like: the pending connection stays queued, so
                // retrying at once would spin. Free a descriptor held by an
                // idle connection, and wait, longer each time nothing could be
                // freed.
                count(&shared, ACCEPT_ERRORS);
                pause = if waiting.evict(&shared) {
                    ACCEPT_BACKOFF.0
                } else {
                    (pause * 2).clamp(ACCEPT_BACKOFF.0, ACCEPT_BACKOFF.1)
                };
                errors.warn(|more| {
                    format!(
                        "accepting a /metrics connection: {e} ({more} more since the last line); retrying in up to {} ms",
                        ACCEPT_BACKOFF.1.as_millis()
                    )
                });
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => Some(slot),
            // Full: make room by closing the oldest idle connection (it gives
            // its slot back at once), else close this one.
            Err(_) if waiting.evict(&shared) => {
                tokio::time::timeout(EVICT_WAIT, slots.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            Err(_) => None,
        };
        let Some(slot) = slot else {
            count(&shared, REFUSED);
            drop(stream);
            continue;
        };
        let conn = waiting.add(cap);
        tokio::spawn(connection(
            stream,
            peer,
            slot,
            conn,
            shared.clone(),
            options.web.clone(),
        ));
    }
}

/// One open connection, as seen by the accept loop.
#[derive(Default)]
struct Conn {
    /// Set once its task was first polled; not evicted before.
    started: AtomicBool,
    /// Set while one of its requests is being answered: not evicted meanwhile.
    busy: AtomicBool,
    close: Notify,
}

impl Conn {
    /// Marks a request as being answered until the guard is dropped (also
    /// when the request is abandoned).
    fn busy(self: &Arc<Self>) -> Busy {
        self.busy.store(true, Ordering::Relaxed);
        Busy(self.clone())
    }
}

struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Relaxed);
    }
}

/// The open connections, oldest first, for eviction.
#[derive(Default)]
struct Waiting(Mutex<VecDeque<Weak<Conn>>>);

impl Waiting {
    fn add(&self, cap: usize) -> Arc<Conn> {
        let conn = Arc::new(Conn::default());
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() > 2 * cap {
            all.retain(|w| w.strong_count() > 0);
        }
        all.push_back(Arc::downgrade(&conn));
        conn
    }

    /// Closes the oldest idle connection (started, no request being
    /// answered); false if there is none. The oldest rather than the one
    /// idle the longest: a newcomer (a scraper whose request is on its way)
    /// is then the last to go, however often the others send requests.
    fn evict(&self, shared: &SharedRef) -> bool {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        let idle = all.iter().position(|w| {
            w.upgrade().is_some_and(|c| {
                c.started.load(Ordering::Relaxed) && !c.busy.load(Ordering::Relaxed)
            })
        });
        let Some(c) = idle.and_then(|i| all.remove(i)).and_then(|w| w.upgrade()) else {
            return false;
        };
        drop(all);
        c.close.notify_one();
        count(shared, EVICTED);
        true
    }
}

/// `wanted`, or half the file descriptors still free under RLIMIT_NOFILE if
/// that is less: connections must never take the descriptors flushes need.
fn fd_budget(wanted: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return wanted;
    }
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    let budget = usize::try_from(lim.rlim_cur)
        .unwrap_or(usize::MAX)
        .saturating_sub(open)
        / 2;
    if wanted <= budget {
        return wanted;
    }
    let cap = budget.max(1);
    tracing::warn!(
        max_connections = wanted,
        open_files_limit = lim.rlim_cur,
        "serving at most {cap} /metrics connections: half the file descriptors still free"
    );
    cap
}

fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

fn describe(shared: &SharedRef) {
    let mut g = lock(shared);
    for (name, help) in [
        (
            ACCEPT_ERRORS,
            "Failed accept() calls of the /metrics listener (e.g. out of file descriptors).",
        ),
        (
            REFUSED,
            "/metrics connections closed at once: a request was being answered on each of serve.max_connections.",
        ),
        (
            EVICTED,
            "Idle /metrics connections (no request being answered) closed to make room for a new one.",
        ),
        (
            HANDSHAKE_FAILURES,
            "/metrics TLS handshakes that failed or timed out.",
        ),
        (
            UNAUTHORIZED,
            "/metrics requests answered 401 (missing or wrong basic auth).",
        ),
        (
            AUTH_BUSY,
            "/metrics requests answered 503 unchecked: too many password checks were waiting for bcrypt.",
        ),
    ] {
        g.store.describe(&crate::store::Metric {
            name,
            kind: Kind::Counter,
            help,
        });
    }
}

fn count(shared: &SharedRef, name: &str) {
    lock(shared).store.inc(Series::new(name, &[]), 1);
}

/// Says how the endpoint is protected (never what with), and warns when it is
/// reachable from elsewhere in plain HTTP.
fn announce(listener: &TcpListener, web: Option<&WebConfig>) {
    let tls = web.is_some_and(|w| w.tls.is_some());
    let auth = web.is_some_and(WebConfig::needs_auth);
    tracing::info!(tls, basic_auth = auth, "/metrics protection");
    if let Ok(addr) = listener.local_addr()
        && !addr.ip().is_loopback()
        && !tls
    {
        tracing::warn!(
            %addr,
            "/metrics is reachable from other hosts in plain HTTP; set serve.web_config for TLS and basic auth"
        );
    }
}

/// One connection, holding its slot until it ends or is evicted.
async fn connection(
    stream: TcpStream,
    peer: IpAddr,
    _slot: OwnedSemaphorePermit,
    conn: Arc<Conn>,
    shared: SharedRef,
    web: Option<Arc<WebConfig>>,
) {
    let _ = stream.set_nodelay(true);
    let stream = WriteDeadline::new(stream, WRITE_TIMEOUT);
    let serve = async {
        match web.as_ref().and_then(|w| w.tls.clone()) {
            Some(tls) => {
                let accept = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
                    Ok(Ok(stream)) => http(TokioIo::new(stream), peer, &conn, &shared, &web).await,
                    // A refused handshake is the client's business; counted, not logged.
                    _ => count(&shared, HANDSHAKE_FAILURES),
                }
            }
            None => http(TokioIo::new(stream), peer, &conn, &shared, &web).await,
        }
    };
    // Not evictable before its first poll: by its end a request that came
    // with the connection is being answered (busy), so a scraper is not
    // evicted by a flood of connections while its task waits to run.
    let mut serve = std::pin::pin!(serve);
    let serve = std::future::poll_fn(|cx| {
        let polled = serve.as_mut().poll(cx);
        conn.started.store(true, Ordering::Relaxed);
        polled
    });
    tokio::select! {
        _ = serve => {}
        _ = conn.close.notified() => {}
    }
}

async fn http<I>(
    io: I,
    peer: IpAddr,
    conn: &Arc<Conn>,
    shared: &SharedRef,
    web: &Option<Arc<WebConfig>>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (conn, shared, web) = (conn.clone(), shared.clone(), web.clone());
    let service = hyper::service::service_fn(move |req| {
        let busy = conn.busy();
        let shared = shared.clone();
        let web = web.clone();
        async move {
            let resp = respond(&req, peer, &shared, web.as_deref()).await;
            drop(busy);
            Ok::<_, Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service)
        .await;
}

/// Basic auth first (401 with `WWW-Authenticate`, as exporter-toolkit answers,
/// or 503 when too many checks already wait for bcrypt), then the page; the
/// web config's headers go on every answer. A refused request closes its
/// connection: one password check per connection.
async fn respond(
    req: &Request<Incoming>,
    peer: IpAddr,
    shared: &SharedRef,
    web: Option<&WebConfig>,
) -> Response<Full<Bytes>> {
    let mut resp = match web {
        Some(w) if w.needs_auth() => {
            let given = req.headers().get(header::AUTHORIZATION);
            match w.check(given.map(|v| v.as_bytes()), peer).await {
                Auth::Granted => answer(req, shared),
                Auth::Denied => {
                    count(shared, UNAUTHORIZED);
                    let mut r = reply(
                        StatusCode::UNAUTHORIZED,
                        "text/plain",
                        "Unauthorized\n".into(),
                    );
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        header::HeaderValue::from_static("Basic"),
                    );
                    close_after(r)
                }
                Auth::Busy => {
                    count(shared, AUTH_BUSY);
                    let mut r = reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "too many password checks at once; retry\n".into(),
                    );
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                    close_after(r)
                }
            }
        }
        _ => answer(req, shared),
    };
    for (name, value) in web.map_or(&[][..], |w| &w.headers[..]) {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

fn close_after(mut r: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

fn reply(status: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn answer(req: &Request<Incoming>, shared: &SharedRef) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let format = text::negotiate(accept);
            let snap = lock(shared).store.snapshot(now_ms());
            let ctype = match format {
                Format::OpenMetrics => text::OPENMETRICS_CONTENT_TYPE,
                Format::Prometheus => text::PROMETHEUS_CONTENT_TYPE,
            };
            reply(StatusCode::OK, ctype, text::render(&snap, format))
        }
        "/" => reply(
            StatusCode::OK,
            "text/html",
            "<html><body><a href=\"/metrics\">/metrics</a></body></html>\n".into(),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// A stream whose writes fail with `TimedOut` when the peer takes nothing for `limit`.
struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Running while a write or flush is blocked.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            timer: None,
        }
    }

    /// Passes a ready result through (stopping the clock); on Pending, starts or checks it.
    fn check<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.timer = None;
            return r;
        }
        let limit = self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client took nothing of its answer",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, r)
    }
}

/// A warning repeated at most once per period, saying how many were held back.
struct RateLimited {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl RateLimited {
    fn new(every: Duration) -> RateLimited {
        RateLimited {
            every,
            last: None,
            held: 0,
        }
    }

    fn warn(&mut self, line: impl FnOnce(u64) -> String) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            self.held += 1;
            return;
        }
        let text = line(self.held);
        tracing::warn!("{text}");
        self.held = 0;
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_that_never_reads_is_dropped_after_the_write_timeout() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut s = WriteDeadline::new(ours, Duration::from_millis(50));
        // a reader that keeps taking: any amount goes through
        let reader = tokio::spawn(async move {
            let mut buf = vec![0; 1 << 16];
            let mut n = 0;
            while n < 10_000 {
                n += theirs.read(&mut buf).await.unwrap();
            }
            theirs
        });
        s.write_all(&[b'x'; 10_000]).await.unwrap();
        let _theirs = reader.await.unwrap();
        // nobody reads now: the 64-byte pipe fills and the write fails once the limit passes
        let e = s.write_all(&[b'x'; 10_000]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn repeated_warnings_are_held_back_and_counted() {
        let mut r = RateLimited::new(Duration::from_secs(3600));
        let mut printed = Vec::new();
        for _ in 0..1000 {
            r.warn(|more| {
                printed.push(more);
                String::new()
            });
        }
        assert_eq!(printed, [0], "one line for a thousand failures");
        assert_eq!(r.held, 999);
        let mut r = RateLimited::new(Duration::ZERO);
        let mut n = 0;
        for _ in 0..3 {
            r.warn(|_| {
                n += 1;
                String::new()
            });
        }
        assert_eq!(n, 3);
    }
}
