//! The HTTP side of metrics: the endpoint (on the main listener or one of its own) and the `/mcp` layer that
//! counts and times requests.

use std::{
    cell::Cell,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use http::{HeaderValue, Method, StatusCode, header::CONTENT_TYPE};
use http_body::{Frame, SizeHint};
use tokio::{net::TcpListener, task::JoinHandle, time::Instant};

use super::{CONTENT_TYPE_OPENMETRICS, McpMethod};
use crate::{auth::AuthFailure, gateway::Gateway};

tokio::task_local! {
    /// The method of the `/mcp` request this task is answering, once code below [`track`] has parsed it.
    static HEARD: Cell<Option<McpMethod>>;
}

/// Tell [`track`] the method of the `/mcp` request being answered. Does nothing outside one (stdio).
pub(crate) fn heard(method: McpMethod) {
    let _ = HEARD.try_with(|heard| heard.set(Some(method)));
}

/// The method [`heard`] so far for the `/mcp` request this task is answering (the telemetry span reads it).
pub(crate) fn heard_so_far() -> Option<McpMethod> {
    HEARD.try_with(Cell::get).ok().flatten()
}

/// The metrics route of the main listener: `GET {metrics.path}` when metrics are served there, else nothing.
pub(crate) fn routes(gateway: &Gateway) -> Router<Arc<Gateway>> {
    let config = &gateway.config.metrics;
    if config.enabled && config.port.is_none() {
        Router::new().route(&config.path, get(scrape))
    } else {
        Router::new()
    }
}

/// When `metrics.port` is set (and metrics are on): a listener of their own on `ip` and that port, serving only
/// the metrics path, until the gateway shuts down (after the main listener has drained).
pub(crate) async fn serve_apart(
    gateway: &Arc<Gateway>,
    ip: IpAddr,
) -> io::Result<Option<JoinHandle<io::Result<()>>>> {
    let config = &gateway.config.metrics;
    let Some(port) = config.port.filter(|_| config.enabled) else { return Ok(None) };
    let addr = SocketAddr::new(ip, port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen for metrics on {addr}: {e}")))?;
    tracing::info!(%addr, path = %config.path, "serving metrics on a port of their own");
    let app = Router::new().route(&config.path, get(scrape)).with_state(gateway.clone());
    let stop = gateway.shutdown.clone();
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await });
    Ok(Some(tokio::spawn(async move { serve.await })))
}

/// `GET /metrics`.
pub(crate) async fn scrape(State(gateway): State<Arc<Gateway>>) -> Response {
    match gateway.metrics.encode() {
        Ok(text) => {
            ([(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_OPENMETRICS))], text).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Count and time every `/mcp` request under its method and HTTP status, and count refusals at the door by
/// reason. A POST answered as an SSE stream is timed to its end, when the result went out; a GET stream (which
/// only listens) to its start.
pub(crate) async fn track(gateway: Arc<Gateway>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let verb = request.method().clone();
    let declared =
        request.headers().get("mcp-method").and_then(|v| v.to_str().ok()).map(McpMethod::from_name);
    let (response, heard) = HEARD
        .scope(Cell::new(None), async move {
            let response = next.run(request).await;
            (response, HEARD.with(Cell::get))
        })
        .await;
    let method = heard.or(declared).unwrap_or(if verb == Method::GET {
        McpMethod::HttpGet
    } else if verb == Method::DELETE {
        McpMethod::HttpDelete
    } else {
        McpMethod::Unknown
    });
    if let Some(failure) = response.extensions().get::<AuthFailure>() {
        gateway.metrics.auth_failure(*failure);
    }
    let status = response.status();
    let streamed = verb == Method::POST
        && response
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"text/event-stream"));
    if !streamed {
        gateway.metrics.request(method, status, started.elapsed());
        return response;
    }
    let pending = Some(Pending { gateway, method, status, started });
    response.map(|body| Body::new(TimedBody { body, pending }))
}

/// A request whose answer is still streaming.
struct Pending {
    gateway: Arc<Gateway>,
    method: McpMethod,
    status: StatusCode,
    started: Instant,
}

/// A streamed answer that records its request when it ends (or is dropped: the client went away).
struct TimedBody {
    body: Body,
    pending: Option<Pending>,
}

impl TimedBody {
    fn finish(&mut self) {
        if let Some(p) = self.pending.take() {
            p.gateway.metrics.request(p.method, p.status, p.started.elapsed());
        }
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        self.finish();
    }
}
