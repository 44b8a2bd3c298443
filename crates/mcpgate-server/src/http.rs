//! The HTTP edge: `/mcp` (both protocol eras, through rmcp's Streamable HTTP service), the ops endpoints, the
//! layers every request passes (request id, trace span, in-flight accounting) and graceful draining.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::Request, middleware::Next, response::Response, routing::get};
use http::Method;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::{
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::{
    auth, edge,
    fast::FastPath,
    gateway::Gateway,
    handler::McpHandler,
    limits,
    listener::{self, Limits},
    ops,
    sessions::{SessionCaps, Sessions},
};

/// A running HTTP server, for tests and embedding.
pub struct Server {
    /// The bound address.
    pub local_addr: SocketAddr,
    /// Cancel to drain and stop.
    pub shutdown: CancellationToken,
    /// Finishes when the server has drained.
    pub join: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Bind `addr` and serve `gateway` in a background task.
    pub async fn spawn(gateway: Arc<Gateway>, addr: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let join = tokio::spawn(serve_http(gateway, listener, shutdown.clone()));
        Ok(Self { local_addr, shutdown, join })
    }
}

/// Requests whose answer is still being produced; a drain waits for them to reach zero. An atomic count with a
/// wake-up only when it reaches zero: the common path costs two atomic operations.
#[derive(Clone, Default)]
struct InFlight(Arc<(AtomicUsize, Notify)>);

impl InFlight {
    fn enter(&self) -> InFlightGuard {
        self.0.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    async fn idle(&self) {
        loop {
            let notified = self.0.1.notified();
            if self.0.0.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct InFlightGuard(Arc<(AtomicUsize, Notify)>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.0.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.1.notify_waiters();
        }
    }
}

/// Request ids for requests that come without one: UUID-shaped, unique within the process (a counter through
/// a bijective mixer, seeded at random once), and without a system call per request.
#[derive(Clone)]
struct RequestIds(Arc<(AtomicU64, u64, u64)>);

impl RequestIds {
    fn new() -> Self {
        let seed = uuid::Uuid::new_v4().as_u64_pair();
        Self(Arc::new((AtomicU64::new(0), seed.0, seed.1)))
    }
}

/// splitmix64: a bijection on u64, so distinct counters give distinct outputs.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _request: &http::Request<B>) -> Option<RequestId> {
        let n = self.0.0.fetch_add(1, Ordering::Relaxed);
        let bits = (u128::from(mix(self.0.1 ^ n)) << 64) | u128::from(mix(self.0.2.wrapping_add(n)));
        let id = uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid();
        http::HeaderValue::from_str(&id.to_string()).ok().map(RequestId::new)
    }
}

/// Counts a request until its response body has been sent (a legacy POST answers as an SSE stream whose last
/// event is the result). GET streams only listen, so they are not counted: a drain closes them.
async fn track(in_flight: InFlight, request: Request, next: Next) -> Response {
    if request.method() == Method::GET {
        return next.run(request).await;
    }
    let guard = in_flight.enter();
    edge::hold_until_sent(next.run(request).await, guard)
}

/// rmcp's Streamable HTTP service, shared. Every layer in front of it clones what it wraps on each request (axum's
/// `from_fn` does), and cloning rmcp's service copies its configuration (host and origin lists): shared, a clone
/// is one reference count — also for the calls the fast path answers, which never reach it.
#[derive(Clone)]
struct McpService(Arc<StreamableHttpService<McpHandler, Sessions>>);

impl tower::Service<Request> for McpService {
    type Response =
        http::Response<http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>>;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { Ok(service.handle(request).await) })
    }
}

/// `/mcp`'s protocol layer: rmcp's service, held to the server section's body limit, hosts and origins.
fn mcp_service(gateway: &Arc<Gateway>, sessions: Arc<Sessions>, streams: CancellationToken) -> McpService {
    let server = &gateway.config.server;
    let mut config = StreamableHttpServerConfig::default()
        .with_max_request_body_bytes(server.max_request_size.0 as usize)
        .with_cancellation_token(streams)
        // Stateless requests whose handler sends nothing but the result get plain JSON, not an SSE stream.
        .with_json_response(true);
    config = if server.allowed_hosts.iter().any(|h| h == "*") {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(server.allowed_hosts.clone())
    };
    config = if server.allowed_origins.iter().any(|o| o == "*") {
        config.disable_allowed_origins()
    } else {
        config.with_allowed_origins(server.allowed_origins.clone()).enforce_origin_validation()
    };
    // Parked sessions are restored from the gateway's own records.
    config.session_store = Some(sessions.clone());
    let gateway = gateway.clone();
    McpService(Arc::new(StreamableHttpService::new(
        move || Ok(McpHandler::new(gateway.clone())),
        sessions,
        config,
    )))
}

/// How legacy sessions are shared with other nodes: with shared state and a sealing key every node shares.
fn sharing(gateway: &Gateway) -> Option<crate::sessions::Sharing> {
    let store = gateway.state.sessions()?;
    if !gateway.state.seal_key().is_shared() {
        tracing::warn!(
            "state is shared but MCPGATE_SEAL_KEY is unset: each legacy session is served by the node that \
             opened it only"
        );
        return None;
    }
    Some(crate::sessions::Sharing::new(gateway.request_state.clone(), store.clone()))
}

/// The application: `/mcp` and the ops endpoints, behind the edge layers.
fn app(gateway: Arc<Gateway>, in_flight: InFlight, streams: CancellationToken) -> Router {
    let server = &gateway.config.server;
    let caps = SessionCaps { total: server.max_sessions, per_client: server.max_sessions_per_client };
    let sessions =
        Sessions::start(server.session_idle_timeout.0, server.session_park_after.0, caps, sharing(&gateway));
    let _ = gateway.sessions.set(Arc::downgrade(&sessions));
    let watcher = gateway.clone();
    sessions.on_listen(Arc::new(move |id, until| crate::listening::follow(watcher.clone(), id, until)));
    let edge = Arc::new(edge::Edge {
        max_body: gateway.config.server.max_request_size.0 as usize,
        body_timeout: gateway.config.server.body_read_timeout.0,
        fast: FastPath::new(gateway.clone()),
        sessions: sessions.clone(),
        metrics: gateway.metrics.clone(),
    });
    let cors_origins = gateway.config.server.allowed_origins.clone();
    let steps = Arc::new(McpSteps {
        traced: crate::telemetry::enabled(&gateway.config.telemetry),
        gateway: gateway.clone(),
        edge,
    });
    let mcp = ServiceBuilder::new()
        .layer(axum::middleware::from_fn(move |req, next: Next| mcp_steps(steps.clone(), req, next)))
        .service(mcp_service(&gateway, sessions, streams));
    Router::new()
        .route_service("/mcp", mcp)
        .merge(api_surfaces(&gateway))
        .merge(crate::ui::routes(&gateway))
        .route(&gateway.config.server.health_path, get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/status", get(ops::status))
        .merge(crate::metrics::routes(&gateway.config.metrics, &gateway.metrics))
        .merge(crate::resource_metadata::routes())
        // Large answers gzip-encoded (event streams never), around every route, `/metrics` included.
        .layer(crate::compression::layer(&gateway.config.server.compression))
        .with_state(gateway)
        .layer(
            ServiceBuilder::new()
                // The id first, so the span and every log line of the request carry it.
                .layer(SetRequestIdLayer::x_request_id(RequestIds::new()))
                .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
                    let id = crate::headers::header(request.headers(), &crate::headers::X_REQUEST_ID).unwrap_or("");
                    tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
                }))
                // Echo the id to the client.
                .layer(PropagateRequestIdLayer::x_request_id())
                // Browser clients of an allowed origin: preflights answered here, before any key is asked for.
                .layer(crate::cors::layer(&cors_origins))
                .layer(axum::middleware::from_fn(move |req, next| track(in_flight.clone(), req, next))),
        )
}

/// What `/mcp` requests pass before the protocol layer, in order.
struct McpSteps {
    /// Telemetry is on: a span around every request.
    traced: bool,
    gateway: Arc<Gateway>,
    edge: Arc<edge::Edge>,
}

/// The steps of a `/mcp` request before the protocol layer, as one middleware: each step is an async function
/// of the request and the rest of the chain, composed here by plain closures, so the chain costs two boxed
/// futures per request — not the service clone, box and boxed future `from_fn` adds at each layer.
///
/// 1. Outermost: every request is counted and timed, refusals at the door included (`metrics::track`).
/// 2. With telemetry on, a span around the rest (refusals included), inside the count to learn the method.
/// 3. The door ([`door`]): address and key ([`admit`]) before the guard reads the body: a refused client gets
///    nothing buffered or parsed. `/health`, `/ready` and `/status` stay open, as the guides' probes and
///    dashboards expect. Here the request takes the configuration of the moment, once, for the steps after this
///    and its handler.
/// 4. Also the door's: rate limits after the key (a per-key budget needs the principal; a refused key spends
///    none) and before the body is read: a client over its budget costs a lookup, not a parse (`limits::check`).
/// 5. The edge's checks of the body, and the fast path (`edge::guard`).
async fn mcp_steps(steps: Arc<McpSteps>, request: Request, next: Next) -> Response {
    let McpSteps { traced, gateway, edge } = &*steps;
    // The guard's future holds the call's (the fast path, the dispatch): boxed once here, so the steps around it
    // stay small — unboxed, every step's future would hold it whole, and be copied as each step starts.
    let guarded = move |request| Box::pin(edge::guard(edge, request, move |request| next.run(request)));
    let admitted = move |request| door(gateway, request, guarded);
    let counted = async move |request| {
        if *traced {
            crate::telemetry::trace_request(request, admitted).await
        } else {
            admitted(request).await
        }
    };
    crate::metrics::track(&gateway.metrics, request, counted).await
}

/// The door's checks, the same for `/mcp` and the REST facade: address and key ([`admit`]), then the request rate
/// limits (`limits::check`), then `next`.
async fn door<F: Future<Output = Response>>(
    gateway: &Gateway,
    request: Request,
    next: impl FnOnce(Request) -> F,
) -> Response {
    admit(gateway, request, move |request| limits::check(gateway, request, next)).await
}

/// The door's credential check, for `/mcp` and the REST facade alike: the request takes the configuration of the
/// moment, once, for the steps after this and its handler; then its address and key or token are checked.
async fn admit<F: Future<Output = Response>>(
    gateway: &Gateway,
    mut request: Request,
    next: impl FnOnce(Request) -> F,
) -> Response {
    let live = gateway.live();
    let keys = live.access.clone();
    request.extensions_mut().insert(live);
    auth::check(&keys, request, next).await
}

/// The REST facade when `rest.enabled` and `POST /chat` when `chat.enabled`, behind the door `/mcp` has —
/// `Host`, then address and key, then the request rate limits — and the facade's documentation page
/// (`rest.docs`), which needs none of it.
fn api_surfaces(gateway: &Arc<Gateway>) -> Router<Arc<Gateway>> {
    let config = &gateway.config.rest;
    if !config.enabled && !gateway.config.chat.enabled {
        return Router::new();
    }
    let hosts = Arc::new(crate::hosts::AllowedHosts::new(&gateway.config.server.allowed_hosts));
    let access = gateway.clone();
    let rest = if config.enabled { crate::rest::routes() } else { Router::new() };
    let api = rest
        .merge(chat_route(gateway))
        .layer(axum::middleware::from_fn(move |req, next: Next| {
            let gateway = access.clone();
            async move { door(&gateway, req, |req| next.run(req)).await }
        }))
        .layer(axum::middleware::from_fn(move |req, next| crate::rest::host_check(hosts.clone(), req, next)));
    if config.enabled && config.docs { api.merge(crate::rest::docs()) } else { api }
}

/// `POST /chat` when `chat.enabled`.
fn chat_route(gateway: &Gateway) -> Router<Arc<Gateway>> {
    if !gateway.config.chat.enabled {
        return Router::new();
    }
    crate::chat::route::route(gateway)
}

/// Serve until `shutdown` is cancelled, then drain: stop accepting, let in-flight requests finish (bounded by
/// the drain timeout), close the remaining streams and release the backends. Connections are accepted by the
/// edge's own loop (`listener.rs`), which holds them to `server.max_connections`, `header_read_timeout` and
/// `idle_timeout`.
pub async fn serve_http(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let drain_timeout: Duration = gateway.config.server.drain_timeout.0;
    let limits = Limits::of(&gateway.config.server);
    // Metrics on a port of their own (`metrics.port`), bound first so a port in use stops the start.
    let (metrics, stop) = (&gateway.metrics, gateway.shutdown.clone());
    let metrics_apart = crate::metrics::serve_apart(
        &gateway.config.metrics,
        metrics,
        stop,
        listener.local_addr()?.ip(),
        limits,
    )
    .await?;
    let in_flight = InFlight::default();
    let streams = gateway.shutdown.child_token();
    let app = app(gateway.clone(), in_flight.clone(), streams.clone());
    listener::raise_open_file_limit(limits.max_connections);
    // Stops accepting as soon as `shutdown` is cancelled, and finishes when every connection has closed.
    let serve =
        tokio::spawn(listener::serve(listener, app, limits, gateway.metrics.connections(), shutdown.clone()));
    shutdown.cancelled().await;
    tracing::info!(drain_timeout = %humantime::format_duration(drain_timeout), "draining");
    let drained = tokio::time::timeout(drain_timeout, async {
        in_flight.idle().await;
        // Nothing is being answered any more: end the listening streams so their connections close.
        streams.cancel();
        serve.await
    })
    .await;
    gateway.shutdown.cancel();
    if let Some(metrics_apart) = metrics_apart {
        let _ = metrics_apart.await;
    }
    gateway.shutdown_backends().await;
    match drained {
        Ok(Ok(())) => Ok(()),
        Ok(Err(join)) => Err(std::io::Error::other(join)),
        Err(_) => {
            tracing::warn!("drain timeout reached with requests still in flight");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn generated_request_ids_are_unique_uuids() {
        let mut ids = RequestIds::new();
        let request = http::Request::new(());
        let seen: HashSet<String> = (0..100_000)
            .map(|_| ids.make_request_id(&request).unwrap().into_header_value().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(seen.len(), 100_000);
        assert!(seen.iter().all(|id| uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 4)));
    }

    #[tokio::test]
    async fn in_flight_idle_waits_for_the_last_guard() {
        let in_flight = InFlight::default();
        let guard = in_flight.enter();
        let waiter = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(guard);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
    }
}
