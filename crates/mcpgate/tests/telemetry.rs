//! OpenTelemetry traces from the real binary to an OTLP/HTTP collector in the test process (axum, protobuf
//! decoded with `opentelemetry-proto`): a span per `/mcp` request continuing the `traceparent` header's trace, a
//! `tools/call` span under it — or under `params._meta.traceparent`, linked to the request — on the fast path and
//! on the protocol layer's path; spans buffered at SIGTERM flushed before the exit; nothing sent when telemetry
//! is off.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Bytes, http::header::CONTENT_TYPE, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, any_value},
};
use prost::Message;
use serde_json::{Value, json};
use support::{Process, http_get, serve_with_env};

/// One span as the collector received it; ids in hex.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    /// OTLP `SpanKind`: 2 is SERVER.
    kind: i32,
    /// OTLP status code: 2 is ERROR.
    status: i32,
    attributes: BTreeMap<String, String>,
    /// (trace id, span id) of each link.
    links: Vec<(String, String)>,
}

/// An OTLP/HTTP collector on 127.0.0.1: `POST /v1/traces` in protobuf, every span kept.
struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Received>>>,
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode(body: &[u8]) -> Vec<Received> {
    let request = ExportTraceServiceRequest::decode(body).unwrap();
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.unwrap_or_default();
        let service = resource.attributes.iter().find(|kv| kv.key == "service.name");
        let service = text(service.and_then(|kv| kv.value.as_ref()));
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push(Received {
                service: service.clone(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                name: span.name,
                kind: span.kind,
                status: span.status.map_or(0, |s| s.code),
                attributes: span
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                    .collect(),
                links: span.links.iter().map(|l| (hex(&l.trace_id), hex(&l.span_id))).collect(),
            });
        }
    }
    spans
}

impl Collector {
    fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let store = spans.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let receive = move |body: Bytes| {
                    store.lock().unwrap().extend(decode(&body));
                    async { ([(CONTENT_TYPE, "application/x-protobuf")], Vec::<u8>::new()) }
                };
                let app = axum::Router::new().route("/v1/traces", post(receive));
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Self { addr, spans }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans received, once (or 10 s after, whichever is first) `enough` says they are enough.
    fn wait(&self, enough: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..500 {
            if enough(&self.spans()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.spans()
    }

    /// The spans of the trace `trace_id`, once `want` of them have arrived (or 10 s have passed).
    fn wait_for(&self, trace_id: &str, want: usize) -> Vec<Received> {
        let of_trace = |spans: &[Received]| spans.iter().filter(|s| s.trace_id == trace_id).count();
        let spans = self.wait(|spans| of_trace(spans) >= want);
        spans.into_iter().filter(|s| s.trace_id == trace_id).collect()
    }
}

/// The variables that could switch telemetry on from the caller's environment, blanked (blank is unset).
const QUIET: [(&str, &str); 5] = [
    ("TELEMETRY_ENDPOINT", ""),
    ("ENABLE_TELEMETRY", ""),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""),
    ("OTEL_SDK_DISABLED", ""),
];

fn gateway(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> (Process, String) {
    let env: Vec<(&str, &str)> = QUIET.iter().chain(env).copied().collect();
    serve_with_env(None, &dir.path().join("log"), Duration::from_secs(20), &env)
}

/// SIGTERM, then wait (up to 20 s) for the exit: the drain and the exporter's flush are done.
fn stop(mut process: Process) {
    Command::new("kill").args(["-TERM", &process.0.id().to_string()]).status().unwrap();
    for tries in 0.. {
        if process.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(tries < 1000, "mcpgate did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Reaped: nothing left for its drop to stop.
    std::mem::forget(process);
}

/// POST `body` to `/mcp` with extra headers: status, head (lower-cased) and the JSON-RPC messages of the answer.
fn send(addr: &str, headers: &[(&str, &str)], body: &Value) -> (u16, String, Vec<Value>) {
    support::post(addr, headers, &body.to_string())
}

/// A stateless (2026-07-28) `tools/call` with extra headers and `_meta` entries: HTTP status and the answer.
fn call(addr: &str, headers: &[(&str, &str)], tool: &str, arguments: Value, meta: Value) -> (u16, Value) {
    let mut params_meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    params_meta.as_object_mut().unwrap().extend(meta.as_object().unwrap().clone());
    let params = json!({ "name": tool, "arguments": arguments, "_meta": params_meta });
    let body = json!({ "jsonrpc": "2.0", "id": "call-1", "method": "tools/call", "params": params });
    let mut all =
        vec![("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "tools/call"), ("Mcp-Name", tool)];
    all.extend(headers);
    let (status, _, mut messages) = send(addr, &all, &body);
    (status, messages.pop().unwrap_or_else(|| panic!("no answer ({status})")))
}

/// Calls served on the fast path so far (`/status`).
fn fast_path_calls(addr: &str) -> u64 {
    let status = http_get(addr, "/status");
    let body: Value = serde_json::from_str(status.split_once("\r\n\r\n").unwrap().1).unwrap();
    body["calls"]["fast_path"].as_u64().unwrap()
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const AGENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const AGENT_SPAN: &str = "b7ad6b7169203331";

fn traceparent(trace: &str, span: &str) -> String {
    format!("00-{trace}-{span}-01")
}

fn one<'a>(spans: &'a [Received], name: &str) -> &'a Received {
    let found: Vec<&Received> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name:?} span expected in {spans:#?}");
    found[0]
}

#[test]
fn traceparent_header_parents_the_request_span_and_the_tool_call_nests_under_it() {
    let collector = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    // Batches every 10 minutes: what arrives came with the flush on SIGTERM.
    let endpoint = collector.endpoint();
    let (process, addr) =
        gateway(&dir, &[("TELEMETRY_ENDPOINT", &endpoint), ("OTEL_BSP_SCHEDULE_DELAY", "600000")]);
    let parent = traceparent(CLIENT_TRACE, CLIENT_SPAN);
    let headers = [("traceparent", parent.as_str()), ("tracestate", "rojo=00f067aa0ba902b7")];
    let (status, answer) = call(&addr, &headers, "echo", json!({ "message": "hi" }), json!({}));
    assert_eq!((status, &answer["result"]["content"][0]["text"]), (200, &json!("hi")), "{answer}");
    // A tool that reports failure: arguments that do not fit its schema.
    let failing = traceparent(CLIENT_TRACE, "1111111111111111");
    let (status, answer) =
        call(&addr, &[("traceparent", &failing)], "add", json!({ "a": "one", "b": 2 }), json!({}));
    assert_eq!((status, &answer["result"]["isError"]), (200, &json!(true)), "{answer}");
    assert_eq!(fast_path_calls(&addr), 2);
    assert!(collector.spans().is_empty(), "nothing before the exit");
    stop(process);

    let spans: Vec<Received> = collector.spans().into_iter().filter(|s| s.trace_id == CLIENT_TRACE).collect();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let requests: Vec<&Received> = spans.iter().filter(|s| s.name == "POST /mcp").collect();
    let request =
        requests.iter().find(|s| s.parent_span_id == CLIENT_SPAN).expect("request span of the echo call");
    assert_eq!(request.kind, 2, "SERVER");
    assert_eq!(request.service, "mcpgate");
    assert_eq!(request.attributes["http.request.method"], "POST");
    assert_eq!(request.attributes["http.route"], "/mcp");
    assert_eq!(request.attributes["http.response.status_code"], "200");
    assert_eq!(request.attributes["mcp.method.name"], "tools/call");
    assert_eq!(request.attributes["mcp.protocol.version"], "2026-07-28");
    assert!(!request.attributes["mcpgate.request_id"].is_empty(), "{request:?}");

    let echo = one(&spans, "tools/call echo");
    assert_eq!(echo.parent_span_id, request.span_id, "the tool call nests under the request");
    assert_eq!(echo.kind, 2);
    assert_eq!(echo.attributes["mcp.method.name"], "tools/call");
    assert_eq!(echo.attributes["gen_ai.tool.name"], "echo");
    assert_eq!(echo.attributes["gen_ai.operation.name"], "execute_tool");
    assert_eq!(echo.attributes["jsonrpc.request.id"], "call-1");
    assert_eq!(echo.attributes["mcpgate.backend"], "demo");
    assert_eq!(echo.attributes["mcpgate.request_id"], request.attributes["mcpgate.request_id"]);
    assert!(!echo.attributes.contains_key("error.type") && echo.status != 2, "{echo:?}");

    let add = one(&spans, "tools/call add");
    let add_request = requests.iter().find(|s| s.parent_span_id == "1111111111111111").unwrap();
    assert_eq!(add.parent_span_id, add_request.span_id);
    assert_eq!(add.attributes["error.type"], "tool_error");
    assert_eq!(add.status, 2, "ERROR");
}

#[test]
fn meta_traceparent_wins_for_the_tool_call_and_links_the_request_on_both_paths() {
    let collector = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = collector.endpoint();
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "50")];
    let (_process, addr) = gateway(&dir, &env);
    let header = traceparent(CLIENT_TRACE, CLIENT_SPAN);
    // An `Origin` keeps a request off the fast path: the protocol layer's handler serves it.
    for (path, origin, agent_span) in
        [("fast", None, AGENT_SPAN), ("protocol", Some("http://localhost:1"), "c0ffee00c0ffee00")]
    {
        let mut headers = vec![("traceparent", header.as_str())];
        headers.extend(origin.map(|o| ("origin", o)));
        let before = fast_path_calls(&addr);
        let meta =
            json!({ "traceparent": traceparent(AGENT_TRACE, agent_span), "tracestate": "congo=t61rcWkgMzE" });
        let (status, answer) = call(&addr, &headers, "echo", json!({ "message": path }), meta);
        assert_eq!((status, &answer["result"]["content"][0]["text"]), (200, &json!(path)), "{answer}");
        assert_eq!(fast_path_calls(&addr) - before, u64::from(origin.is_none()), "{path} path");

        let tool = collector
            .wait_for(AGENT_TRACE, 1)
            .into_iter()
            .find(|s| s.parent_span_id == agent_span)
            .unwrap_or_else(|| {
                panic!("{path}: no tool span under _meta's context: {:#?}", collector.spans())
            });
        assert_eq!(tool.name, "tools/call echo", "{path}");
        let requests = collector.wait_for(CLIENT_TRACE, 1);
        let request = requests
            .iter()
            .find(|s| {
                s.links.is_empty() && tool.links.contains(&(CLIENT_TRACE.to_owned(), s.span_id.clone()))
            })
            .unwrap_or_else(|| panic!("{path}: the tool span links no request span: {tool:?} {requests:#?}"));
        assert_eq!(
            (request.name.as_str(), request.parent_span_id.as_str()),
            ("POST /mcp", CLIENT_SPAN),
            "{path}"
        );
        collector.spans.lock().unwrap().clear();
    }

    // Without `_meta` on the protocol layer's path: the handler's span is the request span's child.
    let headers = [("traceparent", header.as_str()), ("origin", "http://localhost:1")];
    let (status, _) = call(&addr, &headers, "echo", json!({ "message": "m" }), json!({}));
    assert_eq!(status, 200);
    let spans = collector.wait_for(CLIENT_TRACE, 2);
    let request = one(&spans, "POST /mcp");
    assert_eq!(one(&spans, "tools/call echo").parent_span_id, request.span_id, "{spans:#?}");
}

#[test]
fn a_legacy_session_call_nests_under_its_own_request() {
    let collector = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = collector.endpoint();
    let (_process, addr) =
        gateway(&dir, &[("TELEMETRY_ENDPOINT", &endpoint), ("OTEL_BSP_SCHEDULE_DELAY", "50")]);
    let initialize = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } } });
    let (_, head, _) = send(&addr, &[], &initialize);
    let session = head.lines().find_map(|l| l.strip_prefix("mcp-session-id: ")).unwrap().trim().to_owned();
    let in_session = [("Mcp-Session-Id", session.as_str()), ("MCP-Protocol-Version", "2025-11-25")];
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    assert_eq!(send(&addr, &in_session, &initialized).0, 202);
    // The session's handler task was born during `initialize`; each call must still nest under its own request.
    // An `Origin` keeps the calls off the fast path.
    for (n, span) in ["1111111111111111", "2222222222222222"].into_iter().enumerate() {
        let parent = traceparent(CLIENT_TRACE, span);
        let mut headers = in_session.to_vec();
        headers.extend([("traceparent", parent.as_str()), ("Origin", "http://localhost:1")]);
        let body = json!({ "jsonrpc": "2.0", "id": n + 1, "method": "tools/call",
            "params": { "name": "echo", "arguments": { "message": "m" } } });
        let (status, _, messages) = send(&addr, &headers, &body);
        assert_eq!((status, &messages.last().unwrap()["result"]["content"][0]["text"]), (200, &json!("m")));
    }
    assert_eq!(fast_path_calls(&addr), 0);
    let spans = collector.wait_for(CLIENT_TRACE, 4);
    for span in ["1111111111111111", "2222222222222222"] {
        let request = spans.iter().find(|s| s.name == "POST /mcp" && s.parent_span_id == span).unwrap();
        let tool = spans.iter().filter(|s| s.name == "tools/call echo");
        assert_eq!(tool.filter(|s| s.parent_span_id == request.span_id).count(), 1, "{spans:#?}");
    }
}

#[test]
fn an_invalid_traceparent_starts_a_new_trace() {
    let collector = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = collector.endpoint();
    let (_process, addr) =
        gateway(&dir, &[("TELEMETRY_ENDPOINT", &endpoint), ("OTEL_BSP_SCHEDULE_DELAY", "50")]);
    let bad = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    let (status, _) = call(
        &addr,
        &[("traceparent", bad)],
        "echo",
        json!({ "message": "m" }),
        json!({ "traceparent": "junk" }),
    );
    assert_eq!(status, 200);
    let spans = collector.wait(|spans| spans.len() >= 2);
    let request = one(&spans, "POST /mcp");
    let tool = one(&spans, "tools/call echo");
    assert!(request.parent_span_id.is_empty() && request.trace_id != "0".repeat(32), "{request:?}");
    assert_eq!((&tool.trace_id, &tool.parent_span_id), (&request.trace_id, &request.span_id));
}

#[test]
fn with_telemetry_off_nothing_is_sent_and_calls_work() {
    let collector = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = collector.endpoint();
    let header = traceparent(CLIENT_TRACE, CLIENT_SPAN);
    for env in [
        vec![("OTEL_BSP_SCHEDULE_DELAY", "50")],
        // The guide's switch wins over an endpoint.
        vec![
            ("ENABLE_TELEMETRY", "false"),
            ("TELEMETRY_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    ] {
        let (process, addr) = gateway(&dir, &env);
        let meta = json!({ "traceparent": traceparent(AGENT_TRACE, AGENT_SPAN) });
        let (status, answer) =
            call(&addr, &[("traceparent", header.as_str())], "echo", json!({ "message": "m" }), meta);
        assert_eq!(
            (status, &answer["result"]["content"][0]["text"]),
            (200, &json!("m")),
            "{env:?}: {answer}"
        );
        std::thread::sleep(Duration::from_millis(300));
        stop(process);
        // Only the second round names the collector; in the first, the log (no exporter started) is the check.
        assert!(collector.spans().is_empty(), "{env:?}: {:#?}", collector.spans());
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert!(!log.contains("exporting traces"), "{env:?}: {log}");
    }
}

#[test]
fn the_trace_continues_into_upstream_gateways_over_http_and_stdio() {
    let collector = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = collector.endpoint();
    let exporting = |service| {
        [
            ("TELEMETRY_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", service),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ]
    };
    let back_env: Vec<(&str, &str)> = QUIET.iter().chain(&exporting("back")).copied().collect();
    let (_back, back_addr) =
        serve_with_env(None, &dir.path().join("back.log"), Duration::from_secs(20), &back_env);
    // A stdio child gets only the environment its config passes.
    let config = dir.path().join("front.yaml");
    let bin = support::BIN;
    std::fs::write(
        &config,
        format!(
            "upstreams:\n  back:\n    url: http://{back_addr}/mcp\n  kid:\n    command: {bin}\n    args: [serve, --stdio]\n    \
             env: {{ TELEMETRY_ENDPOINT: \"{endpoint}\", OTEL_SERVICE_NAME: kid, OTEL_BSP_SCHEDULE_DELAY: \"50\" }}\n"
        ),
    )
    .unwrap();
    let front_env: Vec<(&str, &str)> = QUIET.iter().chain(&exporting("front")).copied().collect();
    let (_front, addr) =
        serve_with_env(Some(&config), &dir.path().join("front.log"), Duration::from_secs(20), &front_env);

    let header = traceparent(CLIENT_TRACE, CLIENT_SPAN);
    for tool in ["back__echo", "kid__echo"] {
        let (status, answer) =
            call(&addr, &[("traceparent", &header)], tool, json!({ "message": tool }), json!({}));
        assert_eq!((status, &answer["result"]["content"][0]["text"]), (200, &json!(tool)), "{answer}");
    }
    let spans = collector.wait_for(CLIENT_TRACE, 7);
    let of = |service: &str, name: &str| {
        let found: Vec<&Received> = spans.iter().filter(|s| s.service == service && s.name == name).collect();
        found
    };
    let front_tool = |tool: &str| {
        let found = of("front", &format!("tools/call {tool}"));
        assert_eq!(found.len(), 1, "{tool}: {spans:#?}");
        found[0].clone()
    };
    let (to_back, to_kid) = (front_tool("back__echo"), front_tool("kid__echo"));
    for front in [&to_back, &to_kid] {
        let request = of("front", "POST /mcp").into_iter().find(|r| r.span_id == front.parent_span_id);
        assert_eq!(request.map(|r| r.parent_span_id.as_str()), Some(CLIENT_SPAN), "{spans:#?}");
    }
    // Over HTTP: the upstream's request continues the trace from the header, its tool call from `_meta`.
    let back_request = of("back", "POST /mcp");
    assert_eq!(back_request.len(), 1, "{spans:#?}");
    assert_eq!(back_request[0].parent_span_id, to_back.span_id);
    let back_tool = of("back", "tools/call echo");
    assert_eq!(back_tool.len(), 1, "{spans:#?}");
    assert_eq!(back_tool[0].parent_span_id, to_back.span_id);
    assert_eq!(back_tool[0].links, [(CLIENT_TRACE.to_owned(), back_request[0].span_id.clone())]);
    // Over stdio: `_meta` only.
    let kid_tool = of("kid", "tools/call echo");
    assert_eq!(kid_tool.len(), 1, "{spans:#?}");
    assert_eq!(kid_tool[0].parent_span_id, to_kid.span_id);
}
