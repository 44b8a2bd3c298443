//! One accepted connection: hyper serves it (HTTP/1.1, or h2c with the prior-knowledge preface), its transport
//! and its service feed its [`Activity`], and its task closes it when a timeout passes or the listener drains.

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::ConnectInfo,
    routing::future::RouteFuture,
};
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

use super::{
    Shared,
    activity::{Activity, Busy, Expired},
};

/// Serve one connection until it closes: by the client, by a timeout, or once the listener drains (`stop`: hyper
/// finishes the request in progress, then closes; an idle connection closes at once).
pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, stop: CancellationToken) {
    let activity = Arc::new(Activity::new(&shared.limits));
    let transport = TokioIo::new(Watched { stream, activity: activity.clone() });
    let service = Service { app: shared.app.clone(), peer, activity: activity.clone() };
    let conn = shared.builder.serve_connection(transport, service);
    let stopping = stop.cancelled();
    let expired = activity.expired();
    tokio::pin!(conn, stopping, expired);
    let (mut draining, mut closing) = (false, false);
    loop {
        tokio::select! {
            biased;
            done = conn.as_mut() => {
                if let Err(error) = done {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = stopping.as_mut(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            verdict = expired.as_mut() => match verdict {
                // Dropping the connection closes the socket: no request is in flight, and a request whose head
                // never arrived gets no response (hyper's own header timeout does not answer 408 either).
                Expired::HeaderRead => {
                    shared.metrics.header_read_timeouts.inc();
                    if let Some(more) = shared.header_timeouts_log.due() {
                        tracing::info!(
                            %peer,
                            header_read_timeout = ?shared.limits.header_read_timeout,
                            closed_since_last_line = more,
                            "closed a connection that sent no complete request head in time"
                        );
                    }
                    return;
                }
                // First, ask it to close: an idle HTTP/1.1 connection closes at once, HTTP/2 sends GOAWAY and
                // closes when no stream is open. A connection still idle one more period later is dropped.
                Expired::Idle if !closing => {
                    closing = true;
                    shared.metrics.idle_timeouts.inc();
                    tracing::debug!(%peer, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    activity.idle_again();
                    expired.set(activity.expired());
                }
                Expired::Idle => return,
            },
        }
    }
}

/// The connection's socket, telling its [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The application as hyper calls it on one connection: each request carries the peer's address
/// ([`ConnectInfo`], which `auth` reads) and is counted in progress until its answer has been sent.
struct Service {
    app: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Answer>;
    type Error = Infallible;
    type Future = Answering;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let busy = self.activity.request(request.version());
        request.extensions_mut().insert(ConnectInfo(self.peer));
        Answering { response: tower::Service::call(&mut self.app.clone(), request), busy: Some(busy) }
    }
}

/// The application's future; its answer takes the request's [`Busy`] along.
pub(super) struct Answering {
    response: RouteFuture<Infallible>,
    busy: Option<Busy>,
}

impl Future for Answering {
    type Output = Result<Response<Answer>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(Pin::new(&mut self.response).poll(cx))?;
        let busy = self.busy.take();
        Poll::Ready(Ok(response.map(|body| Answer { body, _busy: busy })))
    }
}

/// A response body that keeps its request in progress until it has been sent (or dropped: the client went away).
/// An SSE stream stays in progress as long as it is open, so the idle timeout never cuts it.
pub(super) struct Answer {
    body: Body,
    _busy: Option<Busy>,
}

impl http_body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
