//! Prometheus metrics: one registry with the names the reference guides use (DESIGN.md, "Observability names"),
//! the points that feed it, and the endpoint that serves it (OpenMetrics text, which Prometheus scrapes natively).
//!
//! **Cost.** A `tools/call` on the fast path records one counter and one histogram for the request and one
//! counter and one histogram for the tool, through handles resolved ahead of time — per tool in its
//! [`ToolRoute`](crate::registry::ToolRoute), per method for HTTP 200 here — so it costs atomic adds and two short
//! histogram locks: no label hashing, no map lookup, no allocation. Rarer outcomes (other statuses, protocol
//! errors) look their series up in the family's map, with labels that are `&'static str` or a shared
//! `Arc<str>`, so they do not allocate either.
//!
//! **Bounded labels.** `tool` is a name from the catalogue or `unknown`; `method` one of `McpMethod`; every
//! other label value comes from a closed list. Nothing a client sends becomes a label value unchecked.
//!
//! **The method of a request.** Only the body says which JSON-RPC method an `/mcp` request carries, and the code
//! below the `/mcp` layer (`track`) already parses it: the fast path (always `tools/call`) and the session
//! manager (legacy requests, parsed by rmcp) tell the layer through a task-local (`heard`); a 2026-07-28
//! request that rmcp serves names it in `Mcp-Method`, which rmcp holds to the body. Nobody parses a body again
//! for a label.
//!
//! **Read at scrape time.** Breaker phases, upstream health and live sessions are read when scraped (`live.rs`),
//! as `/status` reads them, instead of being updated on every change.

mod calls;
mod endpoint;
pub(crate) mod labels;
mod live;
pub(crate) mod series;

use std::{
    fmt,
    future::Future,
    sync::{Arc, Mutex, OnceLock, PoisonError, Weak},
    time::Duration,
};

use http::StatusCode;
use mcpgate_core::{BackendError, ToolOutcome};
use mcpgate_policy::AuditCounters;
use prometheus_client::{
    encoding::text,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry as PromRegistry,
};
use tokio::time::Instant;

pub(crate) use endpoint::{routes, serve_apart, track};
pub(crate) use labels::McpMethod;
use labels::{
    BackendLabels, DirectionLabels, KindLabels, OperationKindLabels, OperationLabels, ReasonLabels,
    RequestDurationLabels, RequestLabels, SandboxOutcomeLabels, ScopeLabels, ToolLabels, ToolStatusLabels,
};
pub use labels::{RateLimitScope, SandboxBackend, TokenDirection};
pub(crate) use live::{BackendReading, Readings};
use series::{ConnectionMetrics, Histograms, ToolMetrics, latency};

use crate::auth::AuthFailure;
use live::Live;

/// Content type of the exposition: OpenMetrics 1.0 text, what `prometheus-client` writes.
pub const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Metric names, defined once. A counter is registered without its `_total`, which the encoder appends to the
/// sample (`mcp_requests` → `mcp_requests_total`), as OpenMetrics names counters.
pub mod names {
    /// Counter `mcp_requests_total{method,status}`: `/mcp` requests by method and HTTP status.
    pub const REQUESTS: &str = "mcp_requests";
    /// Histogram `mcp_request_duration_seconds{method,route,status_code}`.
    pub const REQUEST_DURATION: &str = "mcp_request_duration_seconds";
    /// Counter `mcp_tool_executions_total{tool,status}`.
    pub const TOOL_EXECUTIONS: &str = "mcp_tool_executions";
    /// Histogram `mcp_tool_execution_duration_seconds{tool}`.
    pub const TOOL_DURATION: &str = "mcp_tool_execution_duration_seconds";
    /// Counter `mcp_errors_total{kind}`.
    pub const ERRORS: &str = "mcp_errors";
    /// Counter `mcp_cache_hits_total`.
    pub const CACHE_HITS: &str = "mcp_cache_hits";
    /// Counter `mcp_cache_misses_total`.
    pub const CACHE_MISSES: &str = "mcp_cache_misses";
    /// Gauge `mcp_tokens_used{direction}`.
    pub const TOKENS_USED: &str = "mcp_tokens_used";
    /// Counter `mcp_sandbox_timeouts_total{backend}`.
    pub const SANDBOX_TIMEOUTS: &str = "mcp_sandbox_timeouts";
    /// Counter `mcp_sandbox_executions_total{backend,outcome}`.
    pub const SANDBOX_EXECUTIONS: &str = "mcp_sandbox_executions";
    /// Histogram `mcp_sandbox_execution_duration_seconds{backend}`.
    pub const SANDBOX_DURATION: &str = "mcp_sandbox_execution_duration_seconds";
    /// Histogram `mcp_sandbox_inner_calls{backend}`: tool calls per execution.
    pub const SANDBOX_CALLS: &str = "mcp_sandbox_inner_calls";
    /// Counter `mcp_rate_limited_total{scope}`.
    pub const RATE_LIMITED: &str = "mcp_rate_limited";
    /// Counter `mcp_auth_failures_total{reason}`.
    pub const AUTH_FAILURES: &str = "mcp_auth_failures";
    /// Gauge `mcp_circuit_breaker_state{upstream}`: 0 closed, 1 half-open, 2 open.
    pub const BREAKER_STATE: &str = "mcp_circuit_breaker_state";
    /// Gauge `mcp_upstream_up{upstream}`.
    pub const UPSTREAM_UP: &str = "mcp_upstream_up";
    /// Gauge `mcp_active_sessions`.
    pub const ACTIVE_SESSIONS: &str = "mcp_active_sessions";
    /// Gauge `mcp_state_backend_up{backend}`: whether the shared state (Redis) answers.
    pub const STATE_BACKEND_UP: &str = "mcp_state_backend_up";
    /// Gauge `mcp_session_workers`: legacy sessions that hold a protocol worker (not parked).
    pub const SESSION_WORKERS: &str = "mcp_session_workers";
    /// Counter `mcp_operations_total{operation,status}`: resource reads, prompts, completions and subscriptions
    /// (every operation but `tools/call`, which has its own series) by outcome: `ok` or the error kind.
    pub const OPERATIONS: &str = "mcp_operations";
    /// Histogram `mcp_operation_duration_seconds{operation}`.
    pub const OPERATION_DURATION: &str = "mcp_operation_duration_seconds";
    /// Counter `mcp_sessions_refused_total{scope}`: `initialize` requests refused at a session cap (`gateway`:
    /// `server.max_sessions`, `client`: `server.max_sessions_per_client`).
    pub const SESSIONS_REFUSED: &str = "mcp_sessions_refused";
    /// Gauge `mcp_open_connections`: connections open on the main listener.
    pub const OPEN_CONNECTIONS: &str = "mcp_open_connections";
    /// Counter `mcp_connections_closed_total{reason}`: connections the gateway closed because a timeout passed
    /// (`header_read_timeout`, `body_read_timeout`, `idle_timeout`: the `server` settings).
    pub const CONNECTIONS_CLOSED: &str = "mcp_connections_closed";
    /// Counter `mcp_connection_limit_reached_total`: times the listener reached `server.max_connections` and
    /// stopped accepting until a connection closed.
    pub const CONNECTION_LIMIT_REACHED: &str = "mcp_connection_limit_reached";
    /// Counter `mcp_audit_lines_total`: audit lines written.
    pub const AUDIT_LINES: &str = "mcp_audit_lines";
    /// Counter `mcp_audit_failures_total`: audit lines that could not be written (a full disk, a removed mount).
    pub const AUDIT_FAILURES: &str = "mcp_audit_failures";
}

/// The only route measured today; the REST facade will add its own.
const MCP_ROUTE: &str = "/mcp";

/// `mcp_errors_total{kind}` values: every [`BackendError::kind`] that is an error for the client, and
/// `tool_error` for a tool that ran and reported failure (`isError: true`).
const ERROR_KINDS: [&str; 10] = [
    "not_found",
    "invalid_arguments",
    "unavailable",
    "timeout",
    "cancelled",
    "client_request",
    "missing_capability",
    "failed",
    "tool_error",
    "rate_limited",
];
const TOOL_ERROR: usize = 8;

/// Where `error` counts in [`ERROR_KINDS`]; `None` for a request for the client's input, which is a step of a
/// multi-round call, not a failure. Exhaustive: a new error kind must choose.
fn error_index(error: &BackendError) -> Option<usize> {
    Some(match error {
        BackendError::NotFound { .. } => 0,
        BackendError::InvalidArguments(_) => 1,
        BackendError::Unavailable { .. } => 2,
        BackendError::Timeout(_) => 3,
        BackendError::Cancelled => 4,
        BackendError::ClientRequest(_) => 5,
        BackendError::MissingClientCapability { .. } => 6,
        BackendError::Failed { .. } => 7,
        BackendError::RateLimited { .. } => 9,
        BackendError::InputRequired => return None,
    })
}

/// Every reason the door refuses a request (`auth.rs`), created at zero so the series exist from the start.
const AUTH_FAILURE_REASONS: [AuthFailure; 5] = [
    AuthFailure::MissingKey,
    AuthFailure::InvalidKey,
    AuthFailure::ExpiredKey,
    AuthFailure::IpNotAllowed,
    AuthFailure::KeysUnavailable,
];

/// The series of one (method, status) pair of `/mcp` requests.
#[derive(Debug, Clone)]
struct RequestSeries {
    count: Counter,
    duration: Histogram,
}

/// The gateway's metrics: the registry the endpoint encodes and a handle on every series the hot path feeds.
pub struct Metrics {
    registry: PromRegistry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histograms<RequestDurationLabels>,
    /// `(method, 200)`: nearly every request. Resolved on first use.
    requests_ok: [OnceLock<RequestSeries>; McpMethod::COUNT],
    tool_executions: Family<ToolStatusLabels, Counter>,
    tool_duration: Histograms<ToolLabels>,
    /// The `tool` of a `tools/call` naming no tool in the catalogue, whatever the name asked for.
    unknown_tool: Arc<str>,
    errors: [Counter; ERROR_KINDS.len()],
    cache_hits: Counter,
    cache_misses: Counter,
    tokens_used: [Gauge; TokenDirection::ALL.len()],
    sandbox_timeouts: [Counter; SandboxBackend::ALL.len()],
    sandbox_executions: Family<SandboxOutcomeLabels, Counter>,
    sandbox_duration: Histograms<BackendLabels>,
    sandbox_calls: Family<BackendLabels, Histogram, fn() -> Histogram>,
    rate_limited: [Counter; RateLimitScope::ALL.len()],
    auth_failures: Family<ReasonLabels, Counter>,
    operations: Family<OperationLabels, Counter>,
    operation_duration: Histograms<OperationKindLabels>,
    sessions_refused: Family<ScopeLabels, Counter>,
    connections: ConnectionMetrics,
    live: Arc<Live>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

// === impl Metrics ===

impl Metrics {
    /// Register every metric; breaker phases, upstream health and sessions are read, when scraped, from what
    /// [`read_from`](Self::read_from) names.
    pub(crate) fn new() -> Self {
        use names::*;
        let mut registry = PromRegistry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(REQUESTS, "Requests to /mcp, by JSON-RPC method and HTTP status", requests.clone());
        let request_duration = Histograms::<RequestDurationLabels>::new_with_constructor(latency);
        registry.register(
            REQUEST_DURATION,
            "Time to answer a request to /mcp, to the last event of a streamed answer, in seconds",
            request_duration.clone(),
        );
        let tool_executions = Family::<ToolStatusLabels, Counter>::default();
        registry.register(
            TOOL_EXECUTIONS,
            "tools/call outcomes by tool: success, error (isError), or the kind of protocol error",
            tool_executions.clone(),
        );
        let tool_duration = Histograms::<ToolLabels>::new_with_constructor(latency);
        registry.register(
            TOOL_DURATION,
            "Time a tools/call took through the pipeline, retries included, in seconds",
            tool_duration.clone(),
        );
        let errors_family = Family::<KindLabels, Counter>::default();
        registry.register(
            ERRORS,
            "Failed tools/call: the error kind, or tool_error for a tool that reported failure",
            errors_family.clone(),
        );
        let errors = ERROR_KINDS.map(|kind| errors_family.get_or_create_owned(&KindLabels { kind }));
        // Fed by the pipeline's report of every operation but tools/call, through `call_observer`.
        let operations = Family::<OperationLabels, Counter>::default();
        registry.register(
            OPERATIONS,
            "Operations other than tools/call (resources/read, prompts/get, completion/complete, \
             resources/subscribe, resources/unsubscribe) by outcome: ok, or the kind of protocol error",
            operations.clone(),
        );
        let operation_duration = Histograms::<OperationKindLabels>::new_with_constructor(latency);
        registry.register(
            OPERATION_DURATION,
            "Time an operation other than tools/call took through the pipeline, in seconds",
            operation_duration.clone(),
        );
        // Fed by the edge when an `initialize` finds no seat.
        let sessions_refused = Family::<ScopeLabels, Counter>::default();
        registry.register(
            SESSIONS_REFUSED,
            "initialize requests refused at a session cap: gateway (server.max_sessions) or client \
             (server.max_sessions_per_client)",
            sessions_refused.clone(),
        );
        for scope in ["gateway", "client"] {
            drop(sessions_refused.get_or_create(&ScopeLabels { scope }));
        }
        // Fed by the listener: its accept loop and each connection's watchdog.
        let connections = ConnectionMetrics::default();
        registry.register(
            OPEN_CONNECTIONS,
            "Connections open on the main listener (server.max_connections caps them)",
            connections.open.clone(),
        );
        let closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            CONNECTIONS_CLOSED,
            "Connections the gateway closed because a timeout passed: header_read_timeout (no complete request \
             head in time), body_read_timeout (no complete body in time: answered 408) or idle_timeout (no \
             request in progress for that long)",
            closed.clone(),
        );
        let connections = ConnectionMetrics {
            header_read_timeouts: closed.get_or_create_owned(&ReasonLabels { reason: "header_read_timeout" }),
            body_read_timeouts: closed.get_or_create_owned(&ReasonLabels { reason: "body_read_timeout" }),
            idle_timeouts: closed.get_or_create_owned(&ReasonLabels { reason: "idle_timeout" }),
            ..connections
        };
        registry.register(
            CONNECTION_LIMIT_REACHED,
            "Times the listener reached server.max_connections and stopped accepting until a connection closed",
            connections.limit_reached.clone(),
        );
        // Fed by the pipeline's cache steps, through `call_observer`.
        let (cache_hits, cache_misses) = (Counter::default(), Counter::default());
        registry.register(CACHE_HITS, "tools/call answered from the cache", cache_hits.clone());
        registry.register(
            CACHE_MISSES,
            "Cacheable tools/call the cache could not answer",
            cache_misses.clone(),
        );
        // Fed by the pipeline's budget step, through `call_observer`, when tokens are counted.
        let tokens = Family::<DirectionLabels, Gauge>::default();
        registry.register(
            TOKENS_USED,
            "Tokens (o200k estimate) of the most recent tools/call",
            tokens.clone(),
        );
        let tokens_used = TokenDirection::ALL
            .map(|d| tokens.get_or_create_owned(&DirectionLabels { direction: d.as_str() }));
        // Fed by code mode's `execute` (code.rs).
        let sandbox_executions = Family::<SandboxOutcomeLabels, Counter>::default();
        registry.register(
            SANDBOX_EXECUTIONS,
            "Code-mode executions by sandbox and outcome (ok, error, timeout, memory, calls, output, cancelled, sandbox)",
            sandbox_executions.clone(),
        );
        let sandbox_duration = Histograms::<BackendLabels>::new_with_constructor(latency);
        registry.register(
            SANDBOX_DURATION,
            "Code-mode execution time, tool calls included",
            sandbox_duration.clone(),
        );
        let sandbox_calls =
            Family::<BackendLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new([0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0])
            });
        registry.register(SANDBOX_CALLS, "Tool calls per code-mode execution", sandbox_calls.clone());
        let sandbox = Family::<BackendLabels, Counter>::default();
        registry.register(
            SANDBOX_TIMEOUTS,
            "Code-mode executions stopped by their time limit",
            sandbox.clone(),
        );
        let sandbox_timeouts =
            SandboxBackend::ALL.map(|b| sandbox.get_or_create_owned(&BackendLabels { backend: b.as_str() }));
        // Fed by the rate-limit step (pipeline.rs) and the edge (limits.rs).
        let limited = Family::<ScopeLabels, Counter>::default();
        registry.register(
            RATE_LIMITED,
            "Requests refused by a rate limit, by the limit's scope",
            limited.clone(),
        );
        let rate_limited =
            RateLimitScope::ALL.map(|s| limited.get_or_create_owned(&ScopeLabels { scope: s.as_str() }));
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            AUTH_FAILURES,
            "Requests to /mcp refused at the door, by reason",
            auth_failures.clone(),
        );
        for failure in AUTH_FAILURE_REASONS {
            auth_failures.get_or_create_owned(&ReasonLabels { reason: failure.as_str() });
        }
        let live = Arc::new(Live { readings: Mutex::new(None), audit: Arc::default() });
        registry.register_collector(Box::new(live.clone()));
        let metrics = Self {
            registry,
            requests,
            request_duration,
            requests_ok: std::array::from_fn(|_| OnceLock::new()),
            tool_executions,
            tool_duration,
            unknown_tool: "unknown".into(),
            errors,
            cache_hits,
            cache_misses,
            tokens_used,
            sandbox_timeouts,
            sandbox_executions,
            sandbox_duration,
            sandbox_calls,
            rate_limited,
            auth_failures,
            operations,
            operation_duration,
            sessions_refused,
            connections,
            live,
        };
        // The series nearly every request feeds, at zero from the start (and the request families with it).
        metrics.requests_ok[McpMethod::ToolsCall as usize]
            .get_or_init(|| metrics.request_series(McpMethod::ToolsCall, 200));
        metrics
    }

    /// Where every audit log of the gateway counts its lines and failures (`mcp_audit_*_total`, `/status`), so
    /// the counts go on across a reload that opens a new log.
    pub(crate) fn audit_counters(&self) -> Arc<AuditCounters> {
        self.live.audit.clone()
    }

    /// Read breaker phases, upstream health and sessions from `readings` at every scrape (the gateway, once it
    /// exists).
    pub(crate) fn read_from(&self, readings: Weak<dyn Readings>) {
        *self.live.readings.lock().unwrap_or_else(PoisonError::into_inner) = Some(readings);
    }

    /// The series of a tool of the catalogue, created at zero.
    pub(crate) fn tool(&self, name: &str) -> ToolMetrics {
        ToolMetrics::new(name.into(), &self.tool_executions, &self.tool_duration)
    }

    /// Run one `tools/call` (`call`: the pipeline) and record its outcome and duration under `tool`.
    pub(crate) async fn timed_call(
        &self,
        tool: &ToolMetrics,
        call: impl Future<Output = Result<ToolOutcome, BackendError>>,
    ) -> Result<ToolOutcome, BackendError> {
        let started = Instant::now();
        let result = call.await;
        self.tool_call(tool, started.elapsed(), &result);
        result
    }

    /// Record a `tools/call` outcome: success, `error` (the tool reported failure) or the protocol error's kind.
    fn tool_call(&self, tool: &ToolMetrics, elapsed: Duration, result: &Result<ToolOutcome, BackendError>) {
        tool.duration.observe(elapsed.as_secs_f64());
        match result {
            Ok(outcome) if !outcome.is_error => {
                tool.success.inc();
            }
            Ok(_) => {
                tool.error.inc();
                self.errors[TOOL_ERROR].inc();
            }
            Err(error) => self.tool_failed(&tool.tool, error),
        }
    }

    /// A `tools/call` naming a tool the catalogue does not hold: counted under `tool="unknown"`.
    pub(crate) fn unknown_tool(&self) {
        self.tool_failed(&self.unknown_tool, &BackendError::NotFound { kind: "tool", name: String::new() });
    }

    fn tool_failed(&self, tool: &Arc<str>, error: &BackendError) {
        let labels = ToolStatusLabels { tool: tool.clone(), status: error.kind() };
        self.tool_executions.get_or_create(&labels).inc();
        if let BackendError::RateLimited { .. } = error {
            self.rate_limited(RateLimitScope::Tool);
        }
        if let Some(index) = error_index(error) {
            self.errors[index].inc();
        }
    }

    /// Count and time one `/mcp` request.
    fn request(&self, method: McpMethod, status: StatusCode, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if status == StatusCode::OK {
            let series = self.requests_ok[method as usize].get_or_init(|| self.request_series(method, 200));
            series.count.inc();
            series.duration.observe(seconds);
        } else {
            let series = self.request_series(method, status.as_u16());
            series.count.inc();
            series.duration.observe(seconds);
        }
    }

    fn request_series(&self, method: McpMethod, status: u16) -> RequestSeries {
        let method = method.as_str();
        RequestSeries {
            count: self.requests.get_or_create_owned(&RequestLabels { method, status }),
            duration: self.request_duration.get_or_create_owned(&RequestDurationLabels {
                method,
                route: MCP_ROUTE,
                status_code: status,
            }),
        }
    }

    /// A request refused at the door (`auth.rs`).
    fn auth_failure(&self, failure: AuthFailure) {
        self.auth_failures.get_or_create(&ReasonLabels { reason: failure.as_str() }).inc();
    }

    /// What feeds the cache and token series from the pipeline: register it with
    /// [`Pipeline::with_observer`](mcpgate_policy::Pipeline::with_observer).
    pub(crate) fn call_observer(&self) -> Arc<dyn mcpgate_policy::CallObserver> {
        Arc::new(calls::CallMetrics {
            cache_hits: self.cache_hits.clone(),
            cache_misses: self.cache_misses.clone(),
            tokens_used: self.tokens_used.clone(),
            operations: self.operations.clone(),
            operation_duration: self.operation_duration.clone(),
            rate_limited: self.rate_limited.clone(),
        })
    }

    /// Cache hits and misses so far, for `/status`.
    pub fn cache_counts(&self) -> (u64, u64) {
        (self.cache_hits.get(), self.cache_misses.get())
    }

    /// A code-mode execution in sandbox `backend` that ended with `outcome` after `seconds`, having made `calls`
    /// tool calls; a `timeout` also counts in `mcp_sandbox_timeouts_total`.
    pub(crate) fn sandbox_execution(
        &self,
        backend: &'static str,
        outcome: &'static str,
        seconds: f64,
        calls: usize,
    ) {
        let labels = BackendLabels { backend };
        self.sandbox_executions.get_or_create(&SandboxOutcomeLabels { backend, outcome }).inc();
        self.sandbox_duration.get_or_create(&labels).observe(seconds);
        self.sandbox_calls.get_or_create(&labels).observe(calls as f64);
        if outcome == "timeout"
            && let Some(known) = SandboxBackend::ALL.iter().position(|b| b.as_str() == backend)
        {
            self.sandbox_timeouts[known].inc();
        }
    }

    /// An `initialize` refused at a session cap: `gateway` or `client`.
    pub(crate) fn session_refused(&self, scope: &'static str) {
        self.sessions_refused.get_or_create(&ScopeLabels { scope }).inc();
    }

    /// The handles the main listener feeds.
    pub(crate) fn connections(&self) -> ConnectionMetrics {
        self.connections.clone()
    }

    /// A request refused by a rate limit. Fed by the rate-limit step, once it exists.
    pub fn rate_limited(&self, scope: RateLimitScope) {
        self.rate_limited[scope as usize].inc();
    }

    /// The exposition: every metric as OpenMetrics text.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut text = String::with_capacity(16 << 10);
        text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    async fn metrics() -> Metrics {
        Metrics::new()
    }

    #[tokio::test]
    async fn unknown_tools_share_one_label_value() {
        let metrics = metrics().await;
        for _ in 0..3 {
            metrics.unknown_tool();
        }
        let text = metrics.encode().unwrap();
        assert!(text.contains(r#"mcp_tool_executions_total{tool="unknown",status="not_found"} 3"#), "{text}");
        assert!(text.contains(r#"mcp_errors_total{kind="not_found"} 3"#), "{text}");
        let tools: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("mcp_tool_executions_total"))
            .filter_map(|l| l.split("tool=\"").nth(1)?.split('"').next())
            .collect();
        assert!(tools.iter().all(|t| *t == "unknown"), "{tools:?}");
    }

    #[tokio::test]
    async fn only_known_methods_become_method_labels() {
        assert_eq!(McpMethod::from_name("tools/call"), McpMethod::ToolsCall);
        for minted in ["tools/call2", "TOOLS/CALL", "", "a-session-id-1234", "GET", "unknown"] {
            assert_eq!(McpMethod::from_name(minted), McpMethod::Other, "{minted:?}");
        }
        let metrics = metrics().await;
        metrics.request(McpMethod::from_name("x/y"), StatusCode::OK, Duration::from_millis(1));
        metrics.request(McpMethod::from_name("tools/list"), StatusCode::OK, Duration::from_millis(1));
        let text = metrics.encode().unwrap();
        assert!(text.contains(r#"mcp_requests_total{method="other",status="200"} 1"#), "{text}");
        assert!(text.contains(r#"mcp_requests_total{method="tools/list",status="200"} 1"#), "{text}");
        assert!(!text.contains("x/y"), "{text}");
        // Every value is in its place, and every method name is read back as itself.
        for (index, method) in McpMethod::ALL.into_iter().enumerate() {
            assert_eq!(method as usize, index);
            let synthetic = McpMethod::ALL[McpMethod::Response as usize..].contains(&method);
            assert_eq!(McpMethod::from_name(method.as_str()) == method, !synthetic, "{method:?}");
        }
    }

    #[test]
    fn every_error_kind_has_its_label() {
        let errors = [
            BackendError::NotFound { kind: "tool", name: "x".into() },
            BackendError::InvalidArguments("x".into()),
            BackendError::unavailable("b", "r"),
            BackendError::Timeout(Duration::from_secs(1)),
            BackendError::Cancelled,
            BackendError::ClientRequest("x".into()),
            BackendError::MissingClientCapability { required: json!({}) },
            BackendError::RateLimited { scope: "tool", retry_after: Duration::from_secs(1) },
            BackendError::Failed {
                backend: "b".into(),
                message: "m".into(),
                blame: mcpgate_core::Blame::Upstream,
            },
        ];
        for error in &errors {
            assert_eq!(error_index(error).map(|i| ERROR_KINDS[i]), Some(error.kind()));
        }
        assert_eq!(error_index(&BackendError::InputRequired), None);
    }
}
