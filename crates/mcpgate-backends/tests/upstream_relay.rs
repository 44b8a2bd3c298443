#![allow(clippy::unwrap_used)]
//! What a 2026-07-28 upstream sends on a `tools/call`'s own event stream reaches the caller: a small stateless
//! Streamable HTTP upstream on a local socket answers `server/discover` and `tools/list`, and serves its one tool
//! by logging, asking the client to sample (SEP-2260: a request on the stream of the request it serves), waiting
//! for the answer POSTed back, and answering with what the client said.
//!
//! Issue 13, item 5: the gateway's direct lane for such upstreams read the stream for progress, log messages
//! and the answer only; the upstream's request was ignored, the upstream waited for an answer that never came,
//! and the call timed out. Over stdio the same upstream asks on the pipe while the lane's `tools/call` is in
//! flight; rmcp, which sees no request of its own in flight there, refused such a request (SEP-2260).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use mcpgate_backends::upstream::Upstream;
use mcpgate_config::UpstreamConfig;
use mcpgate_core::{Backend, CallContext, ClientPeer, ClientRequestError, LogLevel, ToolCall};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

// === the upstream ===

/// Requests the upstream sent on a call's stream, waiting for the client's answer, by id.
type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// Serve the upstream on a free port; its `/mcp` URL.
async fn upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let waiting = Waiting::default();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(stream, waiting.clone()));
        }
    });
    url
}

/// One request per connection: read it, answer it, close.
async fn serve(stream: TcpStream, waiting: Waiting) {
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await.unwrap();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.unwrap();
    let mut stream = reader.into_inner();
    if !request_line.starts_with("POST") {
        return respond(&mut stream, "405 Method Not Allowed", "application/json", b"{}").await;
    }
    let message: Value = serde_json::from_slice(&body).unwrap();
    let id = message["id"].clone();
    let complete = |result: Value| {
        let mut result = result;
        result["resultType"] = json!("complete");
        json!({ "jsonrpc": "2.0", "id": id, "result": result }).to_string()
    };
    match (message["method"].as_str(), id.is_null()) {
        // The client's answer to our request.
        (None, false) => {
            let waiter = waiting.lock().unwrap().remove(id.as_str().unwrap_or_default());
            if let Some(waiter) = waiter {
                let _ = waiter.send(message);
            }
            respond(&mut stream, "202 Accepted", "application/json", b"").await;
        }
        // A notification, or something without an id and a method: nothing to answer.
        (_, true) => respond(&mut stream, "202 Accepted", "application/json", b"").await,
        (Some("server/discover"), false) => {
            let result = complete(json!({
                "supportedVersions": ["2026-07-28"],
                "capabilities": { "tools": {} },
                "ttlMs": 0,
                "cacheScope": "private",
                "_meta": { "io.modelcontextprotocol/serverInfo": { "name": "relay-test", "version": "1" } }
            }));
            respond(&mut stream, "200 OK", "application/json", result.as_bytes()).await;
        }
        (Some("tools/list"), false) => {
            let tool = json!({ "name": "ask", "description": "Asks the client's model",
                "inputSchema": { "type": "object", "properties": { "prompt": { "type": "string" } } } });
            let result = complete(json!({ "tools": [tool], "ttlMs": 0, "cacheScope": "private" }));
            respond(&mut stream, "200 OK", "application/json", result.as_bytes()).await;
        }
        (Some("tools/call"), false) => {
            let prompt = message["params"]["arguments"]["prompt"].clone();
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
                        connection: close\r\n\r\n";
            stream.write_all(head.as_bytes()).await.unwrap();
            let log = json!({ "jsonrpc": "2.0", "method": "notifications/message",
                "params": { "level": "info", "data": "about to ask" } });
            event(&mut stream, &log).await;
            let (answer, answered) = oneshot::channel();
            waiting.lock().unwrap().insert("ask-1".to_owned(), answer);
            let ask = json!({ "jsonrpc": "2.0", "id": "ask-1", "method": "sampling/createMessage",
                "params": { "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
                    "maxTokens": 100 } });
            event(&mut stream, &ask).await;
            let Ok(answer) = answered.await else { return };
            let text = match answer["result"]["content"]["text"].as_str() {
                Some(text) => format!("sampled: {text}"),
                None => format!("refused: {}", answer["error"]),
            };
            event(
                &mut stream,
                &serde_json::from_str::<Value>(&complete(json!({
                "content": [{ "type": "text", "text": text }] })))
                .unwrap(),
            )
            .await;
        }
        (Some(_), false) => {
            let error = json!({ "jsonrpc": "2.0", "id": id,
                "error": { "code": -32601, "message": "Method not found" } });
            respond(&mut stream, "404 Not Found", "application/json", error.to_string().as_bytes()).await;
        }
    }
}

async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
}

async fn event(stream: &mut TcpStream, message: &Value) {
    stream.write_all(format!("event: message\ndata: {message}\n\n").as_bytes()).await.unwrap();
}

// === the caller's client ===

/// A client that answers sampling with a fixed text and records, in order, what reached it.
#[derive(Default)]
struct Client {
    seen: Mutex<Vec<String>>,
    capabilities: Value,
}

#[async_trait]
impl ClientPeer for Client {
    async fn progress(&self, _token: &Value, progress: f64, _total: Option<f64>, _message: Option<String>) {
        self.seen.lock().unwrap().push(format!("progress {progress}"));
    }

    async fn log(&self, _level: LogLevel, _logger: Option<&str>, data: Value) {
        self.seen.lock().unwrap().push(format!("log {data}"));
    }

    async fn request(&self, key: &str, method: &str, params: Value) -> Result<Value, ClientRequestError> {
        self.seen
            .lock()
            .unwrap()
            .push(format!("request {key} {method} {}", params["messages"][0]["content"]["text"]));
        if self.capabilities.get("sampling").is_none() {
            return Err(ClientRequestError::Unsupported("sampling"));
        }
        Ok(json!({ "role": "assistant", "content": { "type": "text", "text": "hello from the client" },
            "model": "test-model" }))
    }

    fn client_capabilities(&self) -> Value {
        self.capabilities.clone()
    }
}

async fn start(url: &str) -> Upstream {
    let config: UpstreamConfig = serde_json::from_value(json!({ "url": url, "timeout": "5s" })).unwrap();
    let upstream = Upstream::start("up", &config).await.unwrap();
    let tools = upstream.list_tools().await.unwrap();
    assert_eq!(tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["up__ask"]);
    upstream
}

fn call(client: &Arc<Client>) -> (CallContext, ToolCall) {
    let cx = CallContext { peer: Some(client.clone()), ..CallContext::detached("relay-test") };
    let call = ToolCall {
        name: "up__ask".to_owned(),
        arguments: json!({ "prompt": "say hello" }).as_object().unwrap().clone(),
    };
    (cx, call)
}

/// Call `ask` of `upstream` for a client that can sample: the upstream's log message, then its sampling request
/// (named after the upstream and its request id) reach the client in the order sent, and the answer carries
/// what the client said.
async fn asks_the_caller_and_answers_with_its_reply(upstream: &Upstream) {
    let client = Arc::new(Client { capabilities: json!({ "sampling": {} }), ..Client::default() });
    let (cx, request) = call(&client);
    let outcome = tokio::time::timeout(Duration::from_secs(20), upstream.call_tool(&cx, request))
        .await
        .expect("the call ended")
        .unwrap_or_else(|e| panic!("the call failed: {e}"));
    assert_eq!(outcome.content[0]["text"], "sampled: hello from the client", "{outcome:?}");
    // Named after the upstream and its request id, the log message first, as the upstream sent them.
    assert_eq!(
        *client.seen.lock().unwrap(),
        ["log \"about to ask\"", "request up:ask-1 sampling/createMessage \"say hello\""]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_on_a_2026_upstreams_call_stream_reaches_the_caller_and_its_answer_goes_back() {
    let upstream = start(&upstream().await).await;
    asks_the_caller_and_answers_with_its_reply(&upstream).await;
    upstream.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_cannot_sample_gets_the_2026_upstream_an_error_answer_not_a_timeout() {
    let upstream = start(&upstream().await).await;
    let client = Arc::new(Client::default());
    let (cx, request) = call(&client);
    let outcome = tokio::time::timeout(Duration::from_secs(20), upstream.call_tool(&cx, request))
        .await
        .expect("the call ended")
        .unwrap_or_else(|e| panic!("the call failed: {e}"));
    let text = outcome.content[0]["text"].as_str().unwrap();
    assert!(text.starts_with("refused: ") && text.contains("-32601"), "{text}");
    assert!(text.contains("the client does not support sampling"), "{text}");
    upstream.shutdown().await;
}

// === the same upstream over stdio ===

/// The upstream above as a child process on stdin / stdout (Python, one JSON-RPC message per line).
const STDIO_UPSTREAM: &str = r#"
import json, sys

def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()

def complete(id, result):
    send({"jsonrpc": "2.0", "id": id, "result": dict(result, resultType="complete")})

for line in sys.stdin:
    message = json.loads(line)
    method, id = message.get("method"), message.get("id")
    if id is None:
        continue
    if method == "server/discover":
        complete(id, {"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}, "ttlMs": 0,
                      "cacheScope": "private",
                      "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "relay-test", "version": "1"}}})
    elif method == "tools/list":
        complete(id, {"tools": [{"name": "ask", "description": "Asks the client's model",
                                 "inputSchema": {"type": "object"}}], "ttlMs": 0, "cacheScope": "private"})
    elif method == "tools/call":
        prompt = message["params"]["arguments"]["prompt"]
        send({"jsonrpc": "2.0", "method": "notifications/message",
              "params": {"level": "info", "data": "about to ask"}})
        send({"jsonrpc": "2.0", "id": "ask-1", "method": "sampling/createMessage",
              "params": {"messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
                         "maxTokens": 100}})
        for reply in sys.stdin:
            answer = json.loads(reply)
            if answer.get("id") == "ask-1" and "method" not in answer:
                break
        if "result" in answer:
            text = "sampled: " + answer["result"]["content"]["text"]
        else:
            text = "refused: " + json.dumps(answer["error"])
        complete(id, {"content": [{"type": "text", "text": text}]})
    else:
        send({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}})
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_from_a_2026_stdio_upstream_during_a_call_reaches_the_caller_and_its_answer_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("upstream.py");
    std::fs::write(&script, STDIO_UPSTREAM).unwrap();
    let config: UpstreamConfig = serde_json::from_value(
        json!({ "command": "python3", "args": ["-u", script.to_str().unwrap()], "timeout": "5s" }),
    )
    .unwrap();
    let upstream = Upstream::start("up", &config).await.unwrap();
    let tools = upstream.list_tools().await.unwrap();
    assert_eq!(tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["up__ask"]);
    asks_the_caller_and_answers_with_its_reply(&upstream).await;
    upstream.shutdown().await;
}
