//! The HTTPS accept loop: TLS with [`crate::tls`], HTTP/1.1 and HTTP/2, and the client's leaf
//! certificate handed to handlers as a [`PeerCertificate`] request extension.
//!
//! Only the leaf is passed on — the certificate whose key the handshake proved. Certificates a
//! client appends after it prove nothing and are dropped here, so no handler can match a user on
//! them.
//!
//! No unauthenticated client can hold a connection without making requests: the TLS handshake
//! is bounded ([`HANDSHAKE_TIMEOUT`]), and a connection on which no request has been in
//! progress for [`IDLE_TIMEOUT`] is shut down — whether the client sent nothing, sends a
//! request byte by byte, never finishes the HTTP/2 preface, or just keeps the connection open.
//! Within that, an HTTP/1.1 request's headers must arrive within [`HEADER_READ_TIMEOUT`], and an
//! HTTP/2 peer must answer pings ([`HTTP2_KEEP_ALIVE`]); hyper applies those only with a timer,
//! which is set here. A request in progress does not hold the connection forever either: its
//! body must have arrived completely within [`BODY_TIMEOUT`] of its headers, or the connection
//! is dropped (a client that announces a large body and then trickles it, or never sends it,
//! would otherwise pin the connection and its slot). An HTTP/2 client may have at most
//! [`HTTP2_MAX_STREAMS`] requests in progress on one connection, and the request bodies that
//! handlers hold, over all connections, are limited to [`BODY_BUDGET`] bytes.
//!
//! At most [`MAX_CONNECTIONS`] connections are served at once, so no number of clients can
//! exhaust the file descriptors the store needs to commit. When a client arrives and every slot
//! is taken, connections without a request in progress are closed to make room (clients
//! reconnect as after any idle close), so holding slots takes requests that keep running, not
//! just open connections; the clients behind it wait in the listen backlog. The HTTP version
//! follows ALPN (`h2` or else HTTP/1.1), as in Go's server, so no time is spent guessing it from
//! the first bytes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::{AcquireError, Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an HTTP/1.1 client may take to send a request's headers, counted from the end of
/// the handshake or of the previous response.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Interval of HTTP/2 keep-alive pings, and how long one may go unanswered before the connection
/// is closed.
pub const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(30);

/// How long a connection may go without a request in progress before it is shut down; also how
/// long that shutdown may take before the connection is dropped.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How many Client API connections are served at once.
pub const MAX_CONNECTIONS: usize = 512;

/// How long a request's body may take to arrive completely, counted from the end of its
/// headers. A client that has not sent the whole body by then is disconnected. At the largest
/// body allowed (`quarry_common::limits::MAX_BODY_BYTES`) this asks for about 140 KB/s.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// How many bytes of request bodies the handlers of all connections together may hold: data
/// beyond it waits until earlier requests are answered (or its body deadline passes). Eight
/// bodies of the largest size allowed (`quarry_common::limits::MAX_BODY_BYTES`), so no number
/// of clients sending large bodies at once can exhaust the Coordinator's memory.
pub const BODY_BUDGET: usize = 64 * 1024 * 1024;

/// How many requests an HTTP/2 client may have in progress on one connection (hyper's default
/// is 200; the Client API's clients send one request at a time).
pub const HTTP2_MAX_STREAMS: u32 = 32;

/// The leaf certificate the client proved possession of, if it presented one.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate(pub Option<CertificateDer<'static>>);

/// Serves `router` on `listener` with TLS until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: Router) {
    let limits = Limits {
        idle: IDLE_TIMEOUT,
        body: BODY_TIMEOUT,
        connections: MAX_CONNECTIONS,
        body_budget: BODY_BUDGET,
    };
    serve_with(listener, tls, router, limits).await;
}

/// The timeouts and the connection limit of [`serve`] (tests lower them).
#[derive(Debug, Clone, Copy)]
struct Limits {
    idle: Duration,
    body: Duration,
    connections: usize,
    body_budget: usize,
}

/// [`serve`] with other limits.
async fn serve_with(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: Limits,
) {
    let Limits {
        idle: idle_timeout,
        body: body_timeout,
        connections: max_connections,
        body_budget,
    } = limits;
    let budget = Arc::new(Semaphore::new(body_budget));
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT.min(idle_timeout));
    http.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_KEEP_ALIVE)
        .keep_alive_timeout(HTTP2_KEEP_ALIVE)
        .max_concurrent_streams(HTTP2_MAX_STREAMS);
    let http1 = Arc::new(http.clone().http1_only());
    let http2 = Arc::new(http.http2_only());
    let acceptor = TlsAcceptor::from(tls);
    // Told when a client waits for a slot: connections without a request in progress close.
    let pressure = Arc::new(Notify::new());
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(error) => {
                // Running out of file descriptors must not end the server.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // While this client waits for a slot, the ones behind it wait in the listen backlog.
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => match wait_for_slot(&slots, &pressure).await {
                Some(slot) => slot,
                None => return, // The semaphore is never closed.
            },
        };
        let pressure_here = Arc::clone(&pressure);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let (http1, http2) = (Arc::clone(&http1), Arc::clone(&http2));
        let budget = Arc::clone(&budget);
        tokio::spawn(async move {
            let _slot = slot;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "tls handshake timed out");
                    return;
                }
            };
            let session = stream.get_ref().1;
            let leaf = session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| cert.clone().into_owned());
            let http = if session.alpn_protocol() == Some(b"h2") {
                http2
            } else {
                http1
            };
            let peer_cert = PeerCertificate(leaf);
            let activity = Activity::new();
            let requests = Arc::clone(&activity);
            let late_body = Arc::new(Notify::new());
            let late = Arc::clone(&late_body);
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let (parts, body) = request.into_parts();
                let charge = Arc::new(Charge::default());
                let body = DeadlineBody::new(
                    body,
                    body_timeout,
                    Arc::clone(&late),
                    Arc::clone(&budget),
                    Arc::clone(&charge),
                );
                let mut request = hyper::Request::from_parts(parts, axum::body::Body::new(body));
                request.extensions_mut().insert(peer_cert.clone());
                let in_flight = requests.begin();
                let response = router.clone().oneshot(request);
                async move {
                    let response = response.await;
                    // The body's bytes count against the budget until the handler is done.
                    drop((in_flight, charge));
                    response
                }
            });
            let connection = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = late_body.notified() => {
                    tracing::debug!(%peer, "closing a connection whose request body is late");
                    return;
                }
                () = activity.idle(idle_timeout, &pressure_here) => {
                    tracing::debug!(%peer, "closing an idle connection");
                    connection.as_mut().graceful_shutdown();
                    match tokio::time::timeout(idle_timeout, connection).await {
                        Ok(result) => result,
                        Err(_) => Ok(()),
                    }
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
}

/// The request-body bytes one request has been granted from the shared budget
/// ([`BODY_BUDGET`]); returned when the last holder (the body, and the request until its
/// response is ready) drops it.
#[derive(Default)]
struct Charge(Mutex<Option<OwnedSemaphorePermit>>);

impl Charge {
    fn add(&self, permit: OwnedSemaphorePermit) {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_mut() {
            Some(held) => held.merge(permit),
            None => *held = Some(permit),
        }
    }
}

/// A permit for `n` bytes of the body budget, being waited for.
type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A request body that must end by a deadline, and whose data is charged to the shared body
/// budget before the handler sees it. Past the deadline, reading fails and `late` is notified,
/// upon which the connection is dropped: the handler's answer would not reach a client that is
/// still sending anyway. While the budget is exhausted, reading waits (and the deadline runs).
struct DeadlineBody<B> {
    inner: B,
    /// Armed while the body has not ended; `None` once it has (or if it was empty).
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    late: Arc<Notify>,
    budget: Arc<Semaphore>,
    charge: Arc<Charge>,
    /// A data frame read but not yet charged, and the wait for its permit.
    waiting: Option<(http_body::Frame<Bytes>, Acquire)>,
}

impl<B: http_body::Body> DeadlineBody<B> {
    fn new(
        inner: B,
        timeout: Duration,
        late: Arc<Notify>,
        budget: Arc<Semaphore>,
        charge: Arc<Charge>,
    ) -> Self {
        let deadline = (!inner.is_end_stream()).then(|| Box::pin(tokio::time::sleep(timeout)));
        Self {
            inner,
            deadline,
            late,
            budget,
            charge,
            waiting: None,
        }
    }

    /// `frame`, after the body's end (if it was the last one) disarmed the deadline.
    fn deliver(
        &mut self,
        frame: http_body::Frame<Bytes>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::BoxError>>> {
        if self.inner.is_end_stream() {
            self.deadline = None;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    /// Pending, or the error once the deadline has passed.
    fn pending(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::BoxError>>> {
        match self.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => {
                self.deadline = None;
                self.waiting = None;
                // `notify_one` keeps the notification if the connection task is not waiting
                // yet.
                self.late.notify_one();
                Poll::Ready(Some(Err(LateBody.into())))
            }
            _ => Poll::Pending,
        }
    }
}

/// The error a [`DeadlineBody`] yields once its deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("request body not received before its deadline")]
struct LateBody;

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Some((frame, mut acquire)) = this.waiting.take() {
            return match acquire.as_mut().poll(cx) {
                Poll::Ready(Ok(permit)) => {
                    this.charge.add(permit);
                    this.deliver(frame)
                }
                // The budget is never closed.
                Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error.into()))),
                Poll::Pending => {
                    this.waiting = Some((frame, acquire));
                    this.pending(cx)
                }
            };
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.deadline = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, Bytes::len);
                // A frame larger than the whole budget waits until the deadline ends it.
                let len = u32::try_from(len).unwrap_or(u32::MAX);
                if len == 0 {
                    return this.deliver(frame);
                }
                match Arc::clone(&this.budget).try_acquire_many_owned(len) {
                    Ok(permit) => {
                        this.charge.add(permit);
                        this.deliver(frame)
                    }
                    Err(TryAcquireError::NoPermits) => {
                        let acquire = Box::pin(Arc::clone(&this.budget).acquire_many_owned(len));
                        this.waiting = Some((frame, acquire));
                        // Registers the waker with the wait and the deadline.
                        Pin::new(this).poll_frame(cx)
                    }
                    Err(error @ TryAcquireError::Closed) => Poll::Ready(Some(Err(error.into()))),
                }
            }
            Poll::Pending => this.pending(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Waits for a connection slot, asking connections without a request in progress to close now
/// and again every second while none is free (a request that ends makes its connection idle).
async fn wait_for_slot(
    slots: &Arc<Semaphore>,
    pressure: &Notify,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    loop {
        pressure.notify_waiters();
        tokio::select! {
            slot = Arc::clone(slots).acquire_owned() => return slot.ok(),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The requests in progress on one connection, and when the last one ended (or the connection
/// started).
struct Activity {
    state: Mutex<(usize, Instant)>,
    changed: Notify,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new((0, Instant::now())),
            changed: Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, (usize, Instant)> {
        // The guarded pair is updated whole; a panic while it was held cannot tear it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a request as in progress until the returned guard is dropped.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.state().0 += 1;
        self.changed.notify_waiters();
        InFlight(Arc::clone(self))
    }

    /// Resolves once no request has been in progress for `idle`, or as soon as `pressure` is
    /// notified while no request is in progress.
    async fn idle(&self, idle: Duration, pressure: &Notify) {
        loop {
            let changed = self.changed.notified();
            let pressed = pressure.notified();
            tokio::pin!(changed, pressed);
            // Registered before the state is read, so no change in between is missed.
            changed.as_mut().enable();
            pressed.as_mut().enable();
            let (in_flight, since) = *self.state();
            if in_flight > 0 {
                tokio::select! {
                    () = changed => {}
                    () = pressed => {}
                }
                continue;
            }
            let deadline = since + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = changed => {}
                () = pressed => return,
            }
        }
    }
}

/// A request in progress (see [`Activity::begin`]).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut state = self.0.state();
            state.0 -= 1;
            state.1 = Instant::now();
        }
        self.0.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::{get, post};
    use quarry_pki::{CaNames, CoordinatorCa, SystemRandom};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::TlsConnector;

    use super::*;
    use crate::tls::tests::AnyServer;
    use crate::tls::{SwappableCert, provider, server_config};

    /// A guard against a hang when the server fails to close: far above the timeouts under test.
    const GUARD: Duration = Duration::from_secs(120);

    async fn server(idle: Duration) -> std::net::SocketAddr {
        limited_server(Limits {
            idle,
            body: BODY_TIMEOUT,
            connections: MAX_CONNECTIONS,
            body_budget: BODY_BUDGET,
        })
        .await
    }

    async fn limited_server(limits: Limits) -> std::net::SocketAddr {
        let ca = CoordinatorCa::generate(
            &CaNames::parse("localhost"),
            time::OffsetDateTime::now_utc(),
            &SystemRandom,
        )
        .unwrap();
        let cert = Arc::new(SwappableCert::default());
        cert.set(
            vec![CertificateDer::from(ca.root_certificate_der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                ca.root_key().to_pkcs8_der().unwrap().to_vec(),
            )),
        )
        .unwrap();
        let tls = server_config(cert, false, &[b"h2", b"http/1.1"]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/ping", get(|| async { "pong" }))
            .route("/echo", post(|body: axum::body::Bytes| async move { body }));
        tokio::spawn(serve_with(listener, Arc::new(tls), router, limits));
        addr
    }

    async fn connect(
        addr: std::net::SocketAddr,
        alpn: &[u8],
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider())))
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    /// Reads until the server closes the connection; returns what it sent.
    async fn read_to_close(
        stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    ) -> Vec<u8> {
        let mut received = Vec::new();
        let closed = tokio::time::timeout(GUARD, async {
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the server kept an idle connection open");
        received
    }

    #[tokio::test]
    async fn a_client_that_sends_no_request_or_part_of_one_is_disconnected() {
        let addr = server(Duration::from_millis(100)).await;
        let partial: [(&[u8], &[u8]); 4] = [
            (b"http/1.1", b""),
            (b"http/1.1", b"GET /ping HTTP/1.1\r\nHo"),
            (b"h2", b""),
            (b"h2", b"PRI * HTTP/2.0\r\n"),
        ];
        for (alpn, sent) in partial {
            let mut client = connect(addr, alpn).await;
            client.write_all(sent).await.unwrap();
            client.flush().await.unwrap();
            read_to_close(&mut client).await;
        }
    }

    #[tokio::test]
    async fn a_kept_alive_http1_connection_is_closed_once_idle() {
        let addr = server(Duration::from_millis(100)).await;
        let mut client = connect(addr, b"http/1.1").await;
        client
            .write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        client.flush().await.unwrap();
        let answer = read_to_close(&mut client).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("pong"), "{answer}");
    }

    #[tokio::test]
    async fn an_idle_connection_makes_room_for_a_new_client_when_every_slot_is_taken() {
        let addr = limited_server(Limits {
            idle: GUARD * 2,
            body: GUARD,
            connections: 1,
            body_budget: BODY_BUDGET,
        })
        .await;
        let mut first = connect(addr, b"http/1.1").await;
        // The only slot is held by a connection with no request in progress: the next client
        // is served, and the idle connection closed, long before the idle timeout.
        let mut second = tokio::time::timeout(GUARD, connect(addr, b"http/1.1"))
            .await
            .expect("the new client was not served");
        read_to_close(&mut first).await;
        second
            .write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        second.flush().await.unwrap();
        let answer = read_to_close(&mut second).await;
        assert!(String::from_utf8_lossy(&answer).ends_with("pong"));
    }

    #[tokio::test]
    async fn a_client_that_does_not_finish_its_request_body_is_disconnected() {
        // Idle timeout far away: only the body deadline can close these connections.
        let addr = limited_server(Limits {
            idle: GUARD,
            body: Duration::from_millis(100),
            connections: MAX_CONNECTIONS,
            body_budget: BODY_BUDGET,
        })
        .await;
        let head = "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n";
        for sent in ["", "part of it"] {
            let mut client = connect(addr, b"http/1.1").await;
            client
                .write_all(format!("{head}{sent}").as_bytes())
                .await
                .unwrap();
            client.flush().await.unwrap();
            // The connection closes; the handler's error answer may or may not get out first.
            let answer = read_to_close(&mut client).await;
            let answer = String::from_utf8_lossy(&answer);
            assert!(!answer.contains(" 200 "), "{answer}");
        }
    }

    /// An HTTP/2 frame: length, type, flags, stream id, payload.
    fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut frame = vec![len[1], len[2], len[3], kind, flags];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    #[tokio::test]
    async fn an_http2_stream_that_does_not_finish_its_body_closes_the_connection() {
        let addr = limited_server(Limits {
            idle: GUARD,
            body: Duration::from_millis(100),
            connections: MAX_CONNECTIONS,
            body_budget: BODY_BUDGET,
        })
        .await;
        let mut client = connect(addr, b"h2").await;
        // HPACK: :method POST, :scheme https, :path "/echo", :authority "localhost" (static
        // table names, literal values without indexing).
        let mut headers = vec![0x83, 0x87, 0x04, 5];
        headers.extend_from_slice(b"/echo");
        headers.extend_from_slice(&[0x01, 9]);
        headers.extend_from_slice(b"localhost");
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(h2_frame(0x4, 0, 0, &[]));
        // HEADERS with END_HEADERS but not END_STREAM: a body is announced and never sent.
        hello.extend(h2_frame(0x1, 0x4, 1, &headers));
        client.write_all(&hello).await.unwrap();
        client.flush().await.unwrap();

        // Answer the server's pings (so keep-alive cannot be what closes the connection) and
        // read until it closes.
        let closed = tokio::time::timeout(GUARD, async {
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                }
                while received.len() >= 9 {
                    let len = usize::from(received[0]) << 16
                        | usize::from(received[1]) << 8
                        | usize::from(received[2]);
                    if received.len() < 9 + len {
                        break;
                    }
                    let frame: Vec<u8> = received.drain(..9 + len).collect();
                    let (kind, flags) = (frame[3], frame[4]);
                    let reply = match (kind, flags & 1) {
                        (0x6, 0) => h2_frame(0x6, 0x1, 0, &frame[9..]),
                        (0x4, 0) => h2_frame(0x4, 0x1, 0, &[]),
                        _ => continue,
                    };
                    if client.write_all(&reply).await.is_err() || client.flush().await.is_err() {
                        return;
                    }
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the server kept the connection open");
    }

    #[tokio::test]
    async fn a_request_body_that_arrives_in_time_is_read() {
        let addr = server(GUARD).await;
        let mut client = connect(addr, b"http/1.1").await;
        client
            .write_all(
                b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\
                  Connection: close\r\n\r\nhello",
            )
            .await
            .unwrap();
        client.flush().await.unwrap();
        let answer = read_to_close(&mut client).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hello"), "{answer}");
    }

    #[tokio::test]
    async fn request_bodies_wait_while_the_budget_is_held_by_unanswered_requests() {
        use http_body::Body as _;

        let budget = Arc::new(Semaphore::new(10));
        let late = Arc::new(Notify::new());
        let body = |len: usize, charge: &Arc<Charge>| {
            DeadlineBody::new(
                http_body_util::Full::new(Bytes::from(vec![7u8; len])),
                GUARD,
                Arc::clone(&late),
                Arc::clone(&budget),
                Arc::clone(charge),
            )
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let is_data = |poll: Poll<Option<Result<http_body::Frame<Bytes>, axum::BoxError>>>| matches!(poll, Poll::Ready(Some(Ok(frame))) if frame.is_data());

        let (first_charge, second_charge) = (Arc::new(Charge::default()), Arc::default());
        let mut first = body(8, &first_charge);
        assert!(is_data(Pin::new(&mut first).poll_frame(&mut cx)));
        assert_eq!(budget.available_permits(), 2);

        // The first request's 8 bytes are held until it is answered, not just read.
        let mut second = body(8, &second_charge);
        assert!(Pin::new(&mut second).poll_frame(&mut cx).is_pending());
        assert!(!second.is_end_stream());
        drop(first);
        assert!(Pin::new(&mut second).poll_frame(&mut cx).is_pending());
        drop(first_charge);
        assert!(is_data(Pin::new(&mut second).poll_frame(&mut cx)));
        assert!(second.is_end_stream());
        assert_eq!(budget.available_permits(), 2);
        drop((second, second_charge));
        assert_eq!(budget.available_permits(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_without_requests_in_progress() {
        let idle = Duration::from_secs(60);
        let activity = Activity::new();
        let pressure = Arc::new(Notify::new());
        let watchdog = tokio::spawn({
            let activity = Arc::clone(&activity);
            let pressure = Arc::clone(&pressure);
            async move { activity.idle(idle, &pressure).await }
        });
        let request = activity.begin();
        // Far past the idle time with a request in progress: not idle, not even when every
        // connection slot is wanted.
        tokio::time::advance(idle * 3).await;
        tokio::task::yield_now().await;
        pressure.notify_waiters();
        tokio::task::yield_now().await;
        assert!(!watchdog.is_finished());

        drop(request);
        tokio::time::advance(idle - Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
        assert!(!watchdog.is_finished());
        // A second request restarts the count when it ends.
        drop(activity.begin());
        tokio::time::advance(idle - Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
        assert!(!watchdog.is_finished());
        tokio::time::advance(Duration::from_secs(2)).await;
        watchdog.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_requests_in_progress_gives_way_at_once() {
        let activity = Activity::new();
        let pressure = Arc::new(Notify::new());
        let watchdog = tokio::spawn({
            let activity = Arc::clone(&activity);
            let pressure = Arc::clone(&pressure);
            async move { activity.idle(Duration::from_secs(60), &pressure).await }
        });
        tokio::task::yield_now().await;
        assert!(!watchdog.is_finished());
        pressure.notify_waiters();
        watchdog.await.unwrap();
    }
}
