#![allow(clippy::unwrap_used)]
//! `kind: http` tools against a real HTTP server: a small HTTP/1.1 responder on a local socket that records
//! exactly what arrived (request line, headers, body), so the tests can assert what an argument could and could
//! not change.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use mcpgate_backends::http::{HttpTools, check};
use mcpgate_config::HttpBackend;
use mcpgate_core::{Backend, BackendError, CallContext, ToolCall, ToolOutcome};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

// === test server ===

/// One request as the server read it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// The request target exactly as sent (`/users/a%2Fb?x=1`).
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap()
    }

    fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// What the server answers.
struct Reply {
    status: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    /// Wait this long before answering.
    delay: Duration,
    /// Leave out `Content-Length` and close the connection after the body.
    close_delimited: bool,
}

impl Reply {
    fn new(status: &'static str, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self { status, content_type, body: body.into(), delay: Duration::ZERO, close_delimited: false }
    }

    fn json(body: Value) -> Self {
        Self::new("200 OK", "application/json; charset=utf-8", body.to_string())
    }
}

struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(answer: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, answer.clone(), record.clone()));
            }
        });
        Self { base, seen }
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn only_request(&self) -> Seen {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "{requests:#?}");
        requests.into_iter().next().unwrap()
    }
}

/// Serve one connection, request after request (the client keeps connections alive).
async fn serve(
    stream: TcpStream,
    answer: Arc<dyn Fn(&Seen) -> Reply + Send + Sync>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned());
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await.unwrap();
        let request = Seen { method, target, headers, body };
        let reply = answer(&request);
        seen.lock().unwrap().push(request);
        tokio::time::sleep(reply.delay).await;
        let mut head = format!("HTTP/1.1 {}\r\nContent-Type: {}\r\n", reply.status, reply.content_type);
        if reply.close_delimited {
            head.push_str("Connection: close\r\n\r\n");
        } else {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
        }
        let stream = reader.get_mut();
        if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(&reply.body).await.is_err() {
            return;
        }
        if reply.close_delimited {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

// === helpers ===

fn backend(config: Value) -> HttpBackend {
    serde_json::from_value(config).unwrap()
}

/// A backend with one tool `t` calling `call`; `args` are the string arguments its schema declares.
fn one_tool(base: &str, args: &[&str], call: Value) -> HttpBackend {
    let properties: serde_json::Map<String, Value> =
        args.iter().map(|a| (a.to_string(), json!({ "type": "string" }))).collect();
    backend(json!({
        "base_url": base,
        "timeout": "2s",
        "tools": { "t": { "input_schema": { "type": "object", "properties": properties }, "call": call } }
    }))
}

async fn call(tools: &HttpTools, name: &str, arguments: Value) -> Result<ToolOutcome, BackendError> {
    let arguments = arguments.as_object().cloned().unwrap();
    tools.call_tool(&CallContext::detached("test"), ToolCall { name: name.into(), arguments }).await
}

fn text(outcome: &ToolOutcome) -> &str {
    outcome.content[0]["text"].as_str().unwrap()
}

/// `%XX` decoded, as a server decodes one path segment.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

// === responses ===

#[tokio::test]
async fn a_json_response_is_structured_content_and_its_text() {
    let server = Server::start(|_| Reply::json(json!({ "id": 7, "login": "octo" }))).await;
    let config = one_tool(&server.base, &["user"], json!({ "url": "users/{{ user }}" }));
    let tools = HttpTools::new("api", &config).unwrap();

    let out = call(&tools, "t", json!({ "user": "octo" })).await.unwrap();

    assert!(!out.is_error);
    assert_eq!(out.structured_content, Some(json!({ "id": 7, "login": "octo" })));
    assert_eq!(serde_json::from_str::<Value>(text(&out)).unwrap(), json!({ "id": 7, "login": "octo" }));
    let seen = server.only_request();
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("GET", "/users/octo"));
    assert!(!tools.may_contact_client("t"));
    assert_eq!(tools.list_tools().await.unwrap()[0].name, "t");
}

#[tokio::test]
async fn a_pointer_narrows_the_json_and_a_missing_part_is_a_tool_error() {
    let server = Server::start(|_| Reply::json(json!({ "items": [{ "n": 1 }, 2] }))).await;
    let config = backend(json!({
        "base_url": server.base,
        "tools": {
            "first": { "call": { "url": "/list", "response": { "pointer": "/items/0" } } },
            "second": { "call": { "url": "/list", "response": { "pointer": "/items/1" } } },
            "absent": { "call": { "url": "/list", "response": { "pointer": "/nothing" } } }
        }
    }));
    let tools = HttpTools::new("api", &config).unwrap();

    let first = call(&tools, "first", json!({})).await.unwrap();
    assert_eq!(first.structured_content, Some(json!({ "n": 1 })));
    assert_eq!(text(&first), r#"{"n":1}"#);

    // Not an object: text only, since structuredContent must be an object.
    let second = call(&tools, "second", json!({})).await.unwrap();
    assert_eq!((&second.structured_content, text(&second)), (&None, "2"));

    let absent = call(&tools, "absent", json!({})).await.unwrap();
    assert!(absent.is_error);
    assert!(text(&absent).contains("\"/nothing\""), "{}", text(&absent));
}

#[tokio::test]
async fn a_tool_with_an_output_schema_refuses_a_result_that_is_not_an_object() {
    let server = Server::start(|_| Reply::json(json!([1, 2]))).await;
    let config = backend(json!({
        "base_url": server.base,
        "tools": { "t": { "output_schema": { "type": "object" }, "call": { "url": "list" } } }
    }));
    let tools = HttpTools::new("api", &config).unwrap();

    let out = call(&tools, "t", json!({})).await.unwrap();

    assert!(out.is_error);
    assert!(text(&out).contains("an array"), "{}", text(&out));
}

#[tokio::test]
async fn a_text_response_is_text() {
    let server = Server::start(|_| Reply::new("200 OK", "text/plain", "plain words")).await;
    let tools = HttpTools::new("api", &one_tool(&server.base, &[], json!({ "url": "readme" }))).unwrap();

    let out = call(&tools, "t", json!({})).await.unwrap();

    assert_eq!((out.is_error, text(&out), &out.structured_content), (false, "plain words", &None));
}

#[tokio::test]
async fn a_response_template_sees_the_response_the_status_and_the_arguments() {
    let server = Server::start(|_| Reply::json(json!({ "name": "mcpgate", "stars": 42 }))).await;
    let config = one_tool(
        &server.base,
        &["repo"],
        json!({
            "url": "repos/{{ repo }}",
            "response": { "template": "{{ repo }}: {{ response.name }} has {{ response.stars }} stars ({{ status }})" }
        }),
    );
    let tools = HttpTools::new("api", &config).unwrap();

    let out = call(&tools, "t", json!({ "repo": "r" })).await.unwrap();

    assert_eq!(text(&out), "r: mcpgate has 42 stars (200)");
    assert_eq!(out.structured_content, Some(json!({ "name": "mcpgate", "stars": 42 })));
}

#[tokio::test]
async fn a_non_2xx_status_is_a_tool_error_with_the_status_and_a_bounded_excerpt() {
    let server = Server::start(|_| Reply::new("404 Not Found", "text/plain", "x".repeat(5000))).await;
    let tools = HttpTools::new("api", &one_tool(&server.base, &[], json!({ "url": "gone" }))).unwrap();

    let out = call(&tools, "t", json!({})).await.unwrap();

    assert!(out.is_error);
    let message = text(&out);
    assert!(message.starts_with("HTTP 404 Not Found: xxx"), "{message}");
    assert!(message.chars().count() < 600, "{} characters", message.chars().count());
}

#[tokio::test]
async fn a_body_over_max_response_size_is_a_tool_error_naming_the_limit() {
    let server = Server::start(|seen| {
        let mut reply = Reply::new("200 OK", "text/plain", "y".repeat(3000));
        // With a Content-Length the size is known up front; without, the limit must hold while streaming.
        reply.close_delimited = seen.target == "/streamed";
        reply
    })
    .await;
    let config = backend(json!({
        "base_url": server.base,
        "max_response_size": "2kb",
        "tools": { "sized": { "call": { "url": "sized" } }, "streamed": { "call": { "url": "streamed" } } }
    }));
    let tools = HttpTools::new("api", &config).unwrap();

    for tool in ["sized", "streamed"] {
        let out = call(&tools, tool, json!({})).await.unwrap();
        assert!(out.is_error, "{tool}");
        assert!(text(&out).contains("max_response_size (2KiB)"), "{tool}: {}", text(&out));
    }
}

// === transport failures ===

#[tokio::test]
async fn a_server_slower_than_the_timeout_is_a_timeout() {
    let server = Server::start(|_| {
        let mut reply = Reply::new("200 OK", "text/plain", "late");
        reply.delay = Duration::from_secs(5);
        reply
    })
    .await;
    let mut config = one_tool(&server.base, &[], json!({ "url": "slow" }));
    config.timeout = mcpgate_config::HumanDuration(Duration::from_millis(200));
    let tools = HttpTools::new("api", &config).unwrap();

    let error = call(&tools, "t", json!({})).await.unwrap_err();

    assert!(matches!(error, BackendError::Timeout(d) if d == Duration::from_millis(200)), "{error:?}");
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    // Bind to learn a free port, then close it so nothing listens there.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let tools = HttpTools::new("api", &one_tool(&base, &[], json!({ "url": "x" }))).unwrap();

    let error = call(&tools, "t", json!({})).await.unwrap_err();

    assert!(matches!(&error, BackendError::Unavailable { backend, .. } if backend == "api"), "{error:?}");
    assert!(error.is_retryable());
}

// === arguments are data ===

#[tokio::test]
async fn an_argument_stays_one_path_segment_whatever_it_holds() {
    let server = Server::start(|_| Reply::json(json!({}))).await;
    let config = one_tool(&server.base, &["id"], json!({ "url": "users/{{ id }}/profile" }));
    let tools = HttpTools::new("api", &config).unwrap();

    let out = call(&tools, "t", json!({ "id": "../admin?x=1#frag" })).await.unwrap();

    assert!(!out.is_error, "{}", text(&out));
    let seen = server.only_request();
    assert_eq!(seen.query(), None);
    let segments: Vec<&str> = seen.path().split('/').collect();
    assert_eq!(segments, ["", "users", "..%2Fadmin%3Fx%3D1%23frag", "profile"]);
    assert_eq!(percent_decode(segments[2]), "../admin?x=1#frag");

    // A whole dot segment would still be read as one, so it is refused before anything is sent.
    let out = call(&tools, "t", json!({ "id": ".." })).await.unwrap();
    assert!(out.is_error, "{}", text(&out));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn template_syntax_in_an_argument_arrives_literally() {
    let server = Server::start(|_| Reply::json(json!({}))).await;
    let config = one_tool(
        &server.base,
        &["q"],
        json!({
            "method": "POST",
            "url": "search/{{ q }}",
            "query": { "q": "{{ q }}" },
            "headers": { "x-q": "{{ q }}" },
            "body": { "q": "{{ q }}", "quoted": "<{{ q }}>" }
        }),
    );
    let tools = HttpTools::new("api", &config).unwrap();

    call(&tools, "t", json!({ "q": "{{ 7*7 }}" })).await.unwrap();

    let seen = server.only_request();
    assert_eq!(percent_decode(seen.path().strip_prefix("/search/").unwrap()), "{{ 7*7 }}");
    assert_eq!(seen.query(), Some("q=%7B%7B+7*7+%7D%7D"));
    assert_eq!(seen.header("x-q"), Some("{{ 7*7 }}"));
    assert_eq!(seen.json(), json!({ "q": "{{ 7*7 }}", "quoted": "<{{ 7*7 }}>" }));
}

#[tokio::test]
async fn a_header_injection_attempt_is_a_tool_error_and_sends_nothing() {
    let server = Server::start(|_| Reply::json(json!({}))).await;
    let config = one_tool(&server.base, &["v"], json!({ "url": "x", "headers": { "x-v": "{{ v }}" } }));
    let tools = HttpTools::new("api", &config).unwrap();

    let out = call(&tools, "t", json!({ "v": "a\r\nX-Evil: 1" })).await.unwrap();

    assert!(out.is_error);
    assert!(text(&out).contains("header x-v"), "{}", text(&out));
    assert!(server.requests().is_empty(), "{:#?}", server.requests());
}

#[tokio::test]
async fn query_values_rendering_empty_and_absent_body_arguments_are_left_out() {
    let server = Server::start(|_| Reply::json(json!({}))).await;
    let config = backend(json!({
        "base_url": format!("{}/v1", server.base),
        "tools": { "t": {
            "input_schema": { "type": "object", "properties": {
                "q": { "type": "string" }, "page": { "type": "string" }, "limit": { "type": "integer" },
                "tags": { "type": "array" }, "sort": { "type": "string" }
            } },
            "call": {
                "method": "POST",
                "url": "items",
                "query": { "q": "{{ q }}", "page": "{{ page }}", "sort": "{{ sort if sort is defined else '' }}" },
                "body": { "limit": "{{ limit }}", "tags": "{{ tags }}", "kind": "fixed", "n": 1 }
            }
        } }
    }));
    let tools = HttpTools::new("api", &config).unwrap();

    call(&tools, "t", json!({ "q": "a b&c", "limit": 5 })).await.unwrap();

    let seen = server.only_request();
    // `v1` without a trailing slash is still the base's directory.
    assert_eq!(seen.target, "/v1/items?q=a+b%26c");
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.json(), json!({ "limit": 5, "kind": "fixed", "n": 1 }));
}

#[tokio::test]
async fn a_declared_argument_missing_from_the_call_is_a_tool_error_naming_it() {
    let server = Server::start(|_| Reply::json(json!({}))).await;
    let tools =
        HttpTools::new("api", &one_tool(&server.base, &["id"], json!({ "url": "users/{{ id }}" }))).unwrap();

    let out = call(&tools, "t", json!({})).await.unwrap();

    assert!(out.is_error);
    assert!(text(&out).contains("argument \"id\" not given"), "{}", text(&out));
    assert!(server.requests().is_empty());
}

// === secrets ===

const SECRET_VAR: &str = "MCPGATE_HTTP_TEST_SECRET";
const SECRET: &str = "s3cret-token-4711";

/// Environment variables cannot be set safely in a running test process (and `unsafe` is forbidden), so this
/// test runs [`secrets_child`] in a child process of this same test binary, with the secret in its environment.
#[test]
fn a_secret_header_reaches_the_server_and_no_error_text() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["secrets_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(SECRET_VAR, SECRET)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[tokio::test]
#[ignore = "run by a_secret_header_reaches_the_server_and_no_error_text, with the secret set"]
async fn secrets_child() {
    if std::env::var(SECRET_VAR).is_err() {
        return;
    }
    // The server echoes every header back in a 401, as some APIs do in their error pages.
    let server =
        Server::start(|seen| Reply::new("401 Unauthorized", "text/plain", format!("{:?}", seen.headers)))
            .await;
    let config = backend(json!({
        "base_url": server.base,
        "headers": { "authorization": format!("Bearer ${{{SECRET_VAR}}}") },
        "tools": {
            "t": {
                "input_schema": { "type": "object", "properties": { "v": { "type": "string" } } },
                "call": { "url": "me", "headers": { "x-key": format!("${{{SECRET_VAR}}}"), "x-v": "{{ v }}" } }
            }
        }
    }));
    assert!(check("backends.api", &config).is_empty());
    let tools = HttpTools::new("api", &config).unwrap();

    let echoed = call(&tools, "t", json!({ "v": "fine" })).await.unwrap();
    let seen = server.only_request();
    assert_eq!(seen.header("authorization"), Some(format!("Bearer {SECRET}").as_str()));
    assert_eq!(seen.header("x-key"), Some(SECRET));
    assert!(text(&echoed).starts_with("HTTP 401 Unauthorized"), "{}", text(&echoed));
    assert!(text(&echoed).contains("[redacted]"), "{}", text(&echoed));

    let injected = call(&tools, "t", json!({ "v": "bad\nvalue" })).await.unwrap();
    assert!(injected.is_error);
    assert_eq!(server.requests().len(), 1);

    // A secret in the base URL of a server that is not there: the transport error does not quote the URL.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = format!("http://{}/${{{SECRET_VAR}}}/", listener.local_addr().unwrap());
    drop(listener);
    let unreachable = HttpTools::new("api", &one_tool(&closed, &[], json!({ "url": "x" }))).unwrap();
    let refused = call(&unreachable, "t", json!({})).await.unwrap_err();
    assert!(matches!(refused, BackendError::Unavailable { .. }), "{refused:?}");

    for error_text in [text(&echoed).to_owned(), text(&injected).to_owned(), refused.to_string()] {
        assert!(!error_text.contains(SECRET), "{error_text}");
    }
}

// === checking the config ===

#[test]
fn check_reports_every_problem_with_its_path_at_once() {
    let unset = "MCPGATE_HTTP_TEST_SURELY_UNSET";
    let config = backend(json!({
        "base_url": "https://api.example.com/v1/",
        "headers": { "authorization": format!("Bearer ${{{unset}}}"), "bad header": "x" },
        "tools": {
            "t": {
                "input_schema": { "type": "object", "properties": { "id": { "type": "string" } } },
                "call": {
                    "url": "users/{{ id }}/{{ user }}",
                    "query": { "q": "{{ query }}", "broken": "{{ id " },
                    "headers": { "x-key": format!("${{{unset}}}") },
                    "body": { "n": "{{ count }}" },
                    "response": { "pointer": "items/0", "template": "{{ response }} {{ secret }}" }
                }
            },
            "absolute": { "call": { "url": "ftp://example.com/file" } }
        }
    }));

    let problems: Vec<String> = check("backends.api", &config).iter().map(ToString::to_string).collect();

    let expect = [
        ("backends.api.headers.authorization: ", unset),
        ("backends.api.headers.bad header: ", "header name"),
        ("backends.api.tools.t.call.url: ", "\"user\""),
        ("backends.api.tools.t.call.query.q: ", "\"query\""),
        ("backends.api.tools.t.call.query.broken: ", "syntax"),
        ("backends.api.tools.t.call.headers.x-key: ", unset),
        ("backends.api.tools.t.call.body.n: ", "\"count\""),
        ("backends.api.tools.t.call.response.pointer: ", "'/'"),
        ("backends.api.tools.t.call.response.template: ", "\"secret\""),
        ("backends.api.tools.absolute.call.url: ", "http"),
    ];
    for (path, needle) in expect {
        assert!(
            problems.iter().any(|p| p.starts_with(path) && p.contains(needle)),
            "{path} {needle}: {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    let error = HttpTools::new("api", &config).err().unwrap();
    assert!(error.contains("backends.api.tools.t.call.url") && error.contains(unset), "{error}");
}

#[test]
fn check_refuses_a_relative_url_without_a_base_and_a_malformed_base() {
    let config = backend(json!({ "tools": { "t": { "call": { "url": "users" } } } }));
    let problems = check("backends.api", &config);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "backends.api.tools.t.call.url");

    let config =
        backend(json!({ "base_url": "not a url", "tools": { "t": { "call": { "url": "users" } } } }));
    let problems = check("backends.api", &config);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "backends.api.base_url");
}

/// minijinja picks HTML or JSON escaping from a template name's extension, and template names are config paths:
/// a query parameter called `html` or `json` must still arrive as rendered.
#[tokio::test]
async fn template_names_that_look_like_file_names_do_not_switch_on_escaping() {
    let server = Server::start(|_| Reply::json(json!({}))).await;
    let config = one_tool(
        &server.base,
        &["v"],
        json!({ "url": "x", "query": { "html": "{{ v }}", "json": "{{ v }}" }, "headers": { "x.json": "{{ v }}" } }),
    );
    let tools = HttpTools::new("api", &config).unwrap();

    call(&tools, "t", json!({ "v": "<a&\"b\">" })).await.unwrap();

    let seen = server.only_request();
    assert_eq!(seen.query(), Some("html=%3Ca%26%22b%22%3E&json=%3Ca%26%22b%22%3E"));
    assert_eq!(seen.header("x.json"), Some("<a&\"b\">"));
}
