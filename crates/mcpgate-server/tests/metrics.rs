//! `/metrics` end to end: a gateway serves calls on both paths (fast path and rmcp, stateless and in a legacy
//! session), then its exposition is parsed strictly as OpenMetrics text and every name DESIGN.md lists is checked
//! for its type and for counts that moved by exactly the calls made. `METRICS_ENABLED` and `PROMETHEUS_PORT` are
//! applied as `mcpgate serve` applies them.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use common::{DEMO, Down, TestGateway, in_session, initialize, messages, modern, spawn_with_env};
use mcpgate_config::{BackendConfig, BuiltinBackend, BuiltinSet, Config};
use mcpgate_core::{Backend, BackendError, CallContext, ToolCall, ToolDef, ToolOutcome};
use mcpgate_policy::HealthChecker;
use mcpgate_server::{Gateway, Server, registry::BackendEntry};
use serde_json::{Value, json};

// === a strict OpenMetrics text parser ===

/// One sample line: `name{label="value",…} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: each family's type, and every sample.
#[derive(Debug)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

/// Parse `text` as the OpenMetrics text format, refusing anything off: a sample outside its family or with a
/// suffix its type does not have, a family declared twice, a malformed label, a missing or early `# EOF`, a
/// histogram whose buckets do not add up.
fn parse(text: &str) -> Exposition {
    assert!(text.ends_with("# EOF\n"), "the exposition must end with # EOF:\n{text}");
    let mut exposition = Exposition { types: BTreeMap::new(), samples: Vec::new() };
    let mut current: Option<String> = None;
    let lines: Vec<&str> = text.lines().collect();
    for (n, line) in lines.iter().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        if *line == "# EOF" {
            assert_eq!(n + 1, lines.len(), "# EOF before the end, {}", at());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("HELP without text, {}", at()));
            assert!(is_name(name) && !help.is_empty(), "{}", at());
            assert!(!exposition.types.contains_key(name), "family declared twice, {}", at());
            current = Some(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) =
                rest.split_once(' ').unwrap_or_else(|| panic!("TYPE without a type, {}", at()));
            assert_eq!(current.as_deref(), Some(name), "TYPE must follow the family's HELP, {}", at());
            assert!(["counter", "gauge", "histogram"].contains(&kind), "unexpected type, {}", at());
            assert!(exposition.types.insert(name.to_owned(), kind.to_owned()).is_none(), "{}", at());
        } else if line.starts_with('#') {
            panic!("unexpected comment, {}", at());
        } else {
            let family = current.clone().unwrap_or_else(|| panic!("sample before any family, {}", at()));
            let kind = exposition.types.get(&family).unwrap_or_else(|| panic!("untyped family, {}", at()));
            let sample = parse_sample(line, &family).unwrap_or_else(|e| panic!("{e}, {}", at()));
            let suffix = &sample.name[family.len()..];
            let allowed: &[&str] = match kind.as_str() {
                "counter" => &["_total", "_created"],
                "gauge" => &[""],
                _ => &["_bucket", "_sum", "_count", "_created"],
            };
            assert!(allowed.contains(&suffix), "{kind} sample with suffix {suffix:?}, {}", at());
            assert_eq!(suffix == "_bucket", sample.labels.contains_key("le"), "le only on buckets, {}", at());
            exposition.samples.push(sample);
        }
    }
    exposition.check_histograms();
    exposition
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_sample(line: &str, family: &str) -> Result<Sample, String> {
    let end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..end];
    if !(is_name(name) && name.starts_with(family)) {
        return Err(format!("sample {name:?} outside family {family}"));
    }
    let mut rest = &line[end..];
    let mut labels = BTreeMap::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            let (key, after) = inner.split_once("=\"").ok_or("label without =\"")?;
            if !is_name(key) {
                return Err(format!("bad label name {key:?}"));
            }
            let mut value = String::new();
            let mut chars = after.char_indices();
            let close = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        other => return Err(format!("bad escape \\{other}")),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            let after = &after[close + 1..];
            if let Some(next) = after.strip_prefix(',') {
                inner = next;
            } else if let Some(done) = after.strip_prefix('}') {
                rest = done;
                break;
            } else {
                return Err("expected , or } after a label".into());
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    if value.contains(' ') {
        return Err("more than a value after the labels".into());
    }
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok(Sample { name: name.to_owned(), labels, value })
}

impl Exposition {
    /// Buckets of each histogram series: bounds ascending, counts cumulative, `+Inf` equal to `_count`.
    fn check_histograms(&self) {
        for (family, _) in self.types.iter().filter(|(_, kind)| *kind == "histogram") {
            let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for sample in self.samples.iter().filter(|s| s.name == format!("{family}_bucket")) {
                let mut labels = sample.labels.clone();
                let le = labels.remove("le").unwrap();
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
                series.entry(format!("{labels:?}")).or_default().push((le, sample.value));
            }
            for (labels, buckets) in series {
                assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{family}{labels}");
                let count = self
                    .samples
                    .iter()
                    .find(|s| s.name == format!("{family}_count") && format!("{:?}", without_le(s)) == labels)
                    .unwrap_or_else(|| panic!("{family}{labels}: no _count"));
                assert_eq!(
                    buckets.last().map(|b| (b.0, b.1)),
                    Some((f64::INFINITY, count.value)),
                    "{family}{labels}"
                );
            }
        }
    }

    /// The value of the sample `name` with exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> =
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {:#?}", self.named(name)))
            .value
    }

    /// The sum of every sample `name`, whatever its labels.
    fn sum(&self, name: &str) -> f64 {
        self.named(name).iter().map(|s| s.value).sum()
    }

    fn named(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The family's type, once its samples are checked to belong to it.
    fn kind(&self, family: &str) -> &str {
        self.types.get(family).unwrap_or_else(|| panic!("no family {family} in {:?}", self.types.keys()))
    }
}

fn without_le(sample: &Sample) -> BTreeMap<String, String> {
    sample.labels.iter().filter(|(k, _)| *k != "le").map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[test]
fn the_parser_refuses_what_prometheus_would() {
    let good = "# HELP a_x help\n# TYPE a_x counter\na_x_total{k=\"v\\\"w\"} 1\n# EOF\n";
    assert_eq!(parse(good).get("a_x_total", &[("k", "v\"w")]), 1.0);
    for bad in [
        "# HELP a_x help\n# TYPE a_x counter\na_x 1\n# EOF\n",
        "# HELP a_x help\n# TYPE a_x gauge\nb 1\n# EOF\n",
        "# HELP a_x help\n# TYPE a_x gauge\na_x{k=v} 1\n# EOF\n",
        "# HELP a_x help\n# TYPE a_x gauge\na_x 1\n",
        "# HELP a_x help\n# TYPE a_x gauge\n# EOF\na_x 1\n# EOF\n",
        "# HELP a_x help\n# TYPE a_x histogram\na_x_bucket{le=\"1\"} 2\na_x_bucket{le=\"+Inf\"} 1\na_x_count 1\n# EOF\n",
    ] {
        assert!(std::panic::catch_unwind(|| parse(bad)).is_err(), "accepted:\n{bad}");
    }
}

// === the gateway under test ===

/// An upstream that answers.
struct Steady;

#[async_trait]
impl Backend for Steady {
    fn name(&self) -> &str {
        "steady"
    }

    async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
        Ok(vec![ToolDef::new("steady_ping", "answers", json!({ "type": "object" }))])
    }

    async fn call_tool(&self, _cx: &CallContext, _call: ToolCall) -> Result<ToolOutcome, BackendError> {
        Ok(ToolOutcome::text("pong"))
    }
}

/// The demo tools, and two upstreams with health checks: `down` (its breaker opens after 3 failures) and `steady`.
/// Returns the gateway and the health checkers, so a test can run a check before it scrapes.
async fn gateway() -> (TestGateway, Vec<Arc<HealthChecker>>) {
    let mut config = Config::default();
    config.resilience.circuit_breaker.failure_threshold = 3.try_into().unwrap();
    let demo_config = BackendConfig::Builtin(BuiltinBackend { builtin: BuiltinSet::Demo, enabled: true });
    let demo = mcpgate_backends::start("demo", mcpgate_config::Source::Backend(&demo_config)).await.unwrap();
    let mut entries =
        vec![BackendEntry::new("demo", mcpgate_backends::BackendKind::Builtin, demo, &config.resilience)];
    let mut checkers = Vec::new();
    for (name, backend) in
        [("down", Arc::new(Down::default()) as Arc<dyn Backend>), ("steady", Arc::new(Steady))]
    {
        let mut entry = BackendEntry::new(
            name,
            mcpgate_backends::BackendKind::Upstream,
            backend.clone(),
            &config.resilience,
        );
        let checker = HealthChecker::new(backend, Duration::from_secs(3600), Some(entry.breaker.clone()));
        entry.health = Some(checker.clone());
        checkers.push(checker);
        entries.push(entry);
    }
    let gateway = Gateway::with_backends(config, entries).await.unwrap();
    let server = Server::spawn(gateway, "127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", server.local_addr);
    (TestGateway { url: format!("{base}/mcp"), base, server, http: reqwest::Client::new() }, checkers)
}

async fn scrape(gw: &TestGateway) -> (String, Exposition) {
    let response = gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    let text = response.text().await.unwrap();
    let exposition = parse(&text);
    (text, exposition)
}

/// Every name DESIGN.md lists, and the audit log's counts, with its type (a counter's samples carry `_total`).
const NAMES: [(&str, &str); 17] = [
    ("mcp_requests", "counter"),
    ("mcp_request_duration_seconds", "histogram"),
    ("mcp_tool_executions", "counter"),
    ("mcp_tool_execution_duration_seconds", "histogram"),
    ("mcp_errors", "counter"),
    ("mcp_cache_hits", "counter"),
    ("mcp_cache_misses", "counter"),
    ("mcp_tokens_used", "gauge"),
    ("mcp_sandbox_timeouts", "counter"),
    ("mcp_circuit_breaker_state", "gauge"),
    ("mcp_active_sessions", "gauge"),
    ("mcp_session_workers", "gauge"),
    ("mcp_upstream_up", "gauge"),
    ("mcp_rate_limited", "counter"),
    ("mcp_auth_failures", "counter"),
    ("mcp_audit_lines", "counter"),
    ("mcp_audit_failures", "counter"),
];

#[tokio::test]
async fn every_metric_is_exposed_and_counts_exactly_the_calls_made() {
    let (gw, checkers) = gateway().await;
    for checker in &checkers {
        checker.check().await;
    }

    // Before any call: every name, with its type; tool series already there at zero.
    let (_, before) = scrape(&gw).await;
    for (family, kind) in NAMES {
        assert_eq!(before.kind(family), kind, "{family}");
    }
    assert_eq!(before.get("mcp_tool_executions_total", &[("tool", "echo"), ("status", "success")]), 0.0);
    assert_eq!(before.sum("mcp_tool_executions_total"), 0.0);
    assert_eq!(before.sum("mcp_requests_total"), 0.0);
    assert_eq!(before.get("mcp_active_sessions", &[]), 0.0);

    // Stateless, on the fast path: a success, a tool error (arguments the schema refuses), four calls to the
    // failing upstream (three failures open its breaker, the fourth is refused by it).
    let ok = gw.call("echo", json!({ "message": "hi" })).await;
    assert_eq!(ok["result"]["content"][0]["text"], "hi", "{ok}");
    let tool_error = gw.call("add", json!({ "a": "one", "b": 2 })).await;
    assert_eq!(tool_error["result"]["isError"], true, "{tool_error}");
    for _ in 0..4 {
        let failed = gw.call("flaky", json!({})).await;
        assert_eq!(failed["error"]["data"]["kind"], "unavailable", "{failed}");
    }
    // An unknown tool: the fast path hands it to rmcp, which answers through the handler.
    let unknown = gw.call("no_such_tool", json!({})).await;
    assert!(unknown["error"]["message"].as_str().unwrap().contains("Unknown tool"), "{unknown}");
    // A success through rmcp: an `Origin` header keeps the request off the fast path.
    let (mut headers, body) =
        modern("tools/call", Some("echo"), json!({ "name": "echo", "arguments": { "message": "o" } }));
    headers.push(("Origin", format!("http://localhost:{}", gw.server.local_addr.port())));
    let (status, ct, text) = gw.post_raw(&headers, body.to_string()).await;
    assert_eq!((status, messages(&ct, &text)[0]["result"]["content"][0]["text"].clone()), (200, json!("o")));
    // A legacy session: initialize, initialized, a call (fast path in a session), a list (rmcp, an SSE answer).
    let (session, _) = initialize(&gw, "2025-11-25").await;
    let (_, call) = in_session(
        &gw,
        &session,
        "2025-11-25",
        "tools/call",
        json!({ "name": "echo", "arguments": { "message": "s" } }),
    )
    .await;
    assert_eq!(call["result"]["content"][0]["text"], "s", "{call}");
    let (_, list) = in_session(&gw, &session, "2025-11-25", "tools/list", json!({})).await;
    assert!(list["result"]["tools"].is_array(), "{list}");
    // A body that is not JSON: refused before anything reads a method.
    let (status, _, _) = gw.post_raw(&[], "{not json").await;
    assert_eq!(status, 400);

    let status: Value =
        gw.http.get(format!("{}/status", gw.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["calls"]["fast_path"], 7, "echo, add, 4 × flaky stateless; echo in the session");

    let (text, after) = scrape(&gw).await;
    for (family, kind) in NAMES {
        assert_eq!(after.kind(family), kind, "{family}");
    }
    let tool = |tool: &str, status: &str| {
        after.get("mcp_tool_executions_total", &[("tool", tool), ("status", status)])
    };
    assert_eq!(tool("echo", "success"), 3.0, "fast path stateless and in the session, and rmcp");
    assert_eq!(tool("echo", "error"), 0.0);
    assert_eq!(tool("add", "error"), 1.0);
    assert_eq!(tool("add", "success"), 0.0);
    assert_eq!(tool("flaky", "unavailable"), 4.0);
    assert_eq!(tool("unknown", "not_found"), 1.0);
    assert_eq!(after.sum("mcp_tool_executions_total"), 9.0, "nine tools/call, each counted once");
    let timed = |tool: &str| after.get("mcp_tool_execution_duration_seconds_count", &[("tool", tool)]);
    assert_eq!((timed("echo"), timed("add"), timed("flaky"), timed("now")), (3.0, 1.0, 4.0, 0.0));
    assert!(
        after
            .named("mcp_tool_execution_duration_seconds_count")
            .iter()
            .all(|s| s.labels["tool"] != "unknown")
    );

    let errors = |kind: &str| after.get("mcp_errors_total", &[("kind", kind)]);
    assert_eq!((errors("unavailable"), errors("not_found"), errors("tool_error")), (4.0, 1.0, 1.0));
    assert_eq!(after.sum("mcp_errors_total"), 6.0);

    let requests = |method: &str, status: &str| {
        after.get("mcp_requests_total", &[("method", method), ("status", status)])
    };
    assert_eq!(requests("tools/call", "200"), 9.0);
    assert_eq!(requests("initialize", "200"), 1.0);
    assert_eq!(requests("notifications/initialized", "202"), 1.0);
    assert_eq!(requests("tools/list", "200"), 1.0);
    assert_eq!(requests("unknown", "400"), 1.0);
    assert_eq!(after.sum("mcp_requests_total"), 13.0, "thirteen requests to /mcp, each counted once");
    let timed = |method: &str, code: &str| {
        after.get(
            "mcp_request_duration_seconds_count",
            &[("method", method), ("route", "/mcp"), ("status_code", code)],
        )
    };
    assert_eq!((timed("tools/call", "200"), timed("tools/list", "200")), (9.0, 1.0));

    let breaker = |upstream: &str| after.get("mcp_circuit_breaker_state", &[("upstream", upstream)]);
    assert_eq!((breaker("demo"), breaker("down"), breaker("steady")), (0.0, 2.0, 0.0));
    let up = |upstream: &str| after.get("mcp_upstream_up", &[("upstream", upstream)]);
    assert_eq!((up("down"), up("steady")), (0.0, 1.0));
    assert_eq!(after.named("mcp_upstream_up").len(), 2, "the demo backend is no upstream");
    assert_eq!(after.get("mcp_active_sessions", &[]), 1.0);

    // Not fed yet: present, at zero.
    assert_eq!(after.get("mcp_cache_hits_total", &[]) + after.get("mcp_cache_misses_total", &[]), 0.0);
    for direction in ["input", "output"] {
        assert_eq!(after.get("mcp_tokens_used", &[("direction", direction)]), 0.0);
    }
    for backend in ["quickjs", "process", "gvisor", "docker"] {
        assert_eq!(after.get("mcp_sandbox_timeouts_total", &[("backend", backend)]), 0.0);
    }
    for scope in ["global", "ip", "key", "tier", "tool"] {
        assert_eq!(after.get("mcp_rate_limited_total", &[("scope", scope)]), 0.0);
    }
    // No audit log configured.
    assert_eq!(after.get("mcp_audit_lines_total", &[]) + after.get("mcp_audit_failures_total", &[]), 0.0);
    for reason in ["missing_key", "invalid_key", "expired_key", "ip_not_allowed"] {
        assert_eq!(after.get("mcp_auth_failures_total", &[("reason", reason)]), 0.0);
    }

    // Nothing a client sent became a label value.
    assert!(!text.contains(&session) && !text.contains("no_such_tool"), "{text}");
}

#[tokio::test]
async fn metrics_enabled_false_serves_no_metrics() {
    let gw = spawn_with_env(DEMO, &[("METRICS_ENABLED", "false")], "127.0.0.1:0").await;
    let response = gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap();
    assert_eq!(response.status(), 404);
    gw.assert_serving().await;
}

#[tokio::test]
async fn prometheus_port_moves_metrics_to_a_listener_of_their_own() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let gw = spawn_with_env(DEMO, &[("PROMETHEUS_PORT", &port)], "127.0.0.1:0").await;
    gw.assert_serving().await;
    let apart = format!("http://127.0.0.1:{port}");
    // The listener is bound as the server task starts; give it a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let response = loop {
        match gw.http.get(format!("{apart}/metrics")).send().await {
            Ok(response) => break response,
            Err(e) if tokio::time::Instant::now() < deadline && e.is_connect() => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("metrics port {port}: {e}"),
        }
    };
    assert_eq!(response.status(), 200);
    let exposition = parse(&response.text().await.unwrap());
    assert_eq!(exposition.get("mcp_requests_total", &[("method", "tools/call"), ("status", "200")]), 1.0);
    // Only metrics there; no metrics on the main port.
    assert_eq!(gw.http.get(format!("{apart}/mcp")).send().await.unwrap().status(), 404);
    assert_eq!(gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn refusals_at_the_door_are_counted_by_reason() {
    let gw = spawn_with_env(DEMO, &[("MCP_API_KEYS", "k-metrics")], "127.0.0.1:0").await;
    let (headers, body) = modern("tools/call", Some("echo"), json!({ "name": "echo", "arguments": {} }));
    let (status, _, _) = gw.post_raw(&headers, body.to_string()).await;
    assert_eq!(status, 401);
    let mut with_key = headers.clone();
    with_key.push(("x-api-key", "wrong".into()));
    let (status, _, _) = gw.post_raw(&with_key, body.to_string()).await;
    assert_eq!(status, 401);
    // The metrics endpoint stays open, like the ops endpoints: keep it on an internal network or port.
    let (_, exposition) = scrape(&gw).await;
    let reason = |reason: &str| exposition.get("mcp_auth_failures_total", &[("reason", reason)]);
    assert_eq!((reason("missing_key"), reason("invalid_key"), reason("expired_key")), (1.0, 1.0, 0.0));
    let refused = [("method", "tools/call"), ("status", "401")];
    assert_eq!(exposition.get("mcp_requests_total", &refused), 2.0);
    assert_eq!(exposition.sum("mcp_tool_executions_total"), 0.0, "a refused call never ran");
}
