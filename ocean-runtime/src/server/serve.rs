//! The webhook server's accept loop: hyper's HTTP/1 over each accepted connection, with the
//! [`IngressLimits`] that keep slow or abusive clients from holding the server.
//!
//! - A connection must send a whole request head within `header_timeout` of opening (hyper's
//!   header read timeout).
//! - A connection that moves no byte for `idle_timeout` while no request of it is being answered
//!   is closed: an idle keep-alive connection, or a client that stopped in the middle of a body.
//! - At most `max_connections` are open; one more is answered 503 with `Retry-After` and closed,
//!   so that a flood of connections cannot exhaust file descriptors.
//! - Each request carries its peer's address ([`ConnectInfo`]), which the admin endpoints check.
//!
//! Stopping stops accepting, closes idle connections and lets the requests being answered finish,
//! for `drain` at most; connections still open then (a client stalled in the middle of a body,
//! say) are closed, so that no client can hold a shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower_service::Service;

use crate::config::IngressLimits;

/// The answer to a connection over `max_connections`.
fn too_many() -> Vec<u8> {
    let body = r#"{"status":"error","error":"too many open connections (OCEAN__INGRESS__MAX_CONNECTIONS); try again"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// When a connection last moved a byte, and how many of its requests are being answered.
struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last byte read or written.
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Returns once the connection has been idle (no byte, no request being answered) for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let quiet = last.elapsed();
            if self.busy.load(Ordering::Relaxed) == 0 && quiet >= limit {
                return;
            }
            let wait = if self.busy.load(Ordering::Relaxed) > 0 {
                limit
            } else {
                limit - quiet
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Decrements the busy count of a connection when its request is answered (or dropped).
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TCP stream that records when it last moved a byte.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Answers a connection over the cap and closes it: reads the request head first and, after the
/// answer, what else the client sends until it closes, so that the close does not reset the
/// connection before the client has read the 503. Two seconds at most in all.
async fn refuse(mut stream: TcpStream) {
    let answer = async {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
            match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
                Ok(Ok(n @ 1..)) => head.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        stream.write_all(&too_many()).await?;
        stream.shutdown().await?;
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            let _ = n;
        }
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), answer).await;
}

/// Connections waiting to be accepted, at most (the kernel caps it at `net.core.somaxconn`): a
/// burst of new connections waits there instead of having its handshakes dropped and retried
/// seconds later.
const BACKLOG: u32 = 4096;

/// A listener on `addr` with a [`BACKLOG`]-deep accept queue.
pub(crate) fn listen(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `router` on `listener` until `stop` resolves, then waits for the requests being
/// answered.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: IngressLimits,
    metrics: Arc<crate::metrics::Metrics>,
    drain: Duration,
    stop: impl Future<Output = ()>,
) {
    let mut connections = tokio::task::JoinSet::new();
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to be released
                    // rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Reap the connections that ended, so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            tracing::debug!(%peer, "connection refused: OCEAN__INGRESS__MAX_CONNECTIONS reached");
            metrics.rejected("too_many_connections");
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: Arc::clone(&activity),
        });
        let service = {
            let (router, activity) = (router.clone(), Arc::clone(&activity));
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let busy = Busy::new(&activity);
                let mut router = router.clone();
                async move {
                    let answer = router.call(request.map(Body::new)).await;
                    drop(busy);
                    answer
                }
            })
        };
        let connection = graceful.watch(http.serve_connection(io, service));
        let idle = limits.idle_timeout;
        connections.spawn(async move {
            let _permit = permit;
            tokio::select! {
                ended = connection => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                }
                () = activity.idle_for(idle) => {
                    tracing::debug!(%peer, "idle connection closed (OCEAN__INGRESS__IDLE_TIMEOUT_SECONDS)");
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!(
            connections = connections.len(),
            "connections still open when the shutdown wait ended; closed"
        );
    }
    connections.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_well_formed_answer() {
        let bytes = too_many();
        let text = std::str::from_utf8(&bytes).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_default();
        assert_eq!(length, body.len(), "content-length matches the body");
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(json["status"], "error");
    }
}
