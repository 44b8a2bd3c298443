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
    response::{IntoResponse, Response},
    routing::get,
};
use http::{HeaderValue, Method, StatusCode, header::CONTENT_TYPE};
use http_body::{Frame, SizeHint};
use tokio::{net::TcpListener, task::JoinHandle, time::Instant};

use mcpgate_config::MetricsConfig;
use tokio_util::sync::CancellationToken;

use super::{CONTENT_TYPE_OPENMETRICS, McpMethod, Metrics, labels::HEARD, series::ConnectionMetrics};
use crate::{auth::AuthFailure, listener::Limits};

/// The metrics route of the main listener: `GET {metrics.path}` when metrics are served there, else nothing.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(
    config: &MetricsConfig,
    metrics: &Arc<Metrics>,
) -> Router<S> {
    if config.enabled && config.port.is_none() {
        Router::new().route(&config.path, get(scrape).with_state(metrics.clone()))
    } else {
        Router::new()
    }
}

/// Connections the metrics port accepts at once: a scraper keeps one; this leaves room for a few Prometheus
/// replicas and someone with curl, and keeps a flood of them from taking the descriptors `/mcp` needs.
const SCRAPER_CONNECTIONS: usize = 64;

/// When `metrics.port` is set (and metrics are on): a listener of their own on `ip` and that port, serving only
/// the metrics path, until the gateway shuts down (after the main listener has drained). It runs the edge's
/// accept loop with the main listener's timeouts and a cap of its own ([`SCRAPER_CONNECTIONS`]); its
/// connections are not counted in the connection series, which describe the main listener.
pub(crate) async fn serve_apart(
    config: &MetricsConfig,
    metrics: &Arc<Metrics>,
    stop: CancellationToken,
    ip: IpAddr,
    limits: Limits,
) -> io::Result<Option<JoinHandle<()>>> {
    let Some(port) = config.port.filter(|_| config.enabled) else { return Ok(None) };
    let addr = SocketAddr::new(ip, port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen for metrics on {addr}: {e}")))?;
    tracing::info!(%addr, path = %config.path, "serving metrics on a port of their own");
    let app = Router::new().route(&config.path, get(scrape)).with_state(metrics.clone());
    let limits =
        Limits { max_connections: SCRAPER_CONNECTIONS, cap_name: "the metrics port's own cap", ..limits };
    let serve = crate::listener::serve(listener, app, limits, ConnectionMetrics::default(), stop);
    Ok(Some(tokio::spawn(serve)))
}

/// `GET /metrics`.
pub(crate) async fn scrape(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.encode() {
        Ok(text) => {
            ([(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_OPENMETRICS))], text).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Count and time every `/mcp` request under its method and HTTP status, and count refusals at the door by
/// reason. A POST answered as an SSE stream is timed to its end, when the result went out; a GET stream (which
/// only listens) to its start.
pub(crate) async fn track<F: Future<Output = Response>>(
    metrics: &Arc<Metrics>,
    request: Request,
    next: impl FnOnce(Request) -> F,
) -> Response {
    let started = Instant::now();
    let verb = request.method().clone();
    let declared =
        crate::headers::header(request.headers(), &crate::headers::MCP_METHOD).map(McpMethod::from_name);
    let (response, heard) = HEARD
        .scope(Cell::new(None), async move {
            let response = next(request).await;
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
        metrics.auth_failure(*failure);
    }
    let status = response.status();
    let streamed = verb == Method::POST
        && response
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"text/event-stream"));
    if !streamed {
        metrics.request(method, status, started.elapsed());
        return response;
    }
    let pending = Some(Pending { metrics: metrics.clone(), method, status, started });
    response.map(|body| Body::new(TimedBody { body, pending }))
}

/// A request whose answer is still streaming.
struct Pending {
    metrics: Arc<Metrics>,
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
            p.metrics.request(p.method, p.status, p.started.elapsed());
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
