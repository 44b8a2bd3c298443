//! The fast path's classifier (`fast.rs` `Classifier::classify`): which requests skip the protocol layer, in
//! either era. It is pure, so it must be deterministic, and whatever it serves must be exactly the call the
//! body and headers describe, under every condition the module documents.
//!
//! Input: a flags line, header lines (`name: value`), a blank line, the body. The flags line holds words:
//! `legacy` (the request names a legacy session), `uninit` (not initialized yet), `askable` / `unasked` (its
//! client declared something a server may ask it / nothing), `talks` (the tool may contact the client),
//! `params` (its schema declares `x-mcp-header` parameters), `anyhost` (`allowed_hosts: ["*"]`). A tool
//! named `nope…` is unknown.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpgate_fuzz::{headers, split_at};
use mcpgate_server::fuzz::{Call, Classifier, Era, HeaderMap, Session, Tool};
use serde_json::{Map, Value};
use std::sync::LazyLock;

const VERSION: &str = "2026-07-28";
const LEGACY_VERSION: &str = "2025-11-25";

static HOSTS: LazyLock<Classifier> =
    LazyLock::new(|| Classifier::new(&["localhost".into(), "127.0.0.1:8000".into()]));
static ANY_HOST: LazyLock<Classifier> = LazyLock::new(|| Classifier::new(&["*".into()]));

fuzz_target!(|data: &[u8]| {
    let (flags, rest) = split_at(data, b'\n');
    let flags = String::from_utf8_lossy(flags);
    let has = |word: &str| flags.split_whitespace().any(|w| w == word);
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (rest, &[][..]),
    };
    let headers = headers(head);
    let session = has("legacy").then(|| Session {
        version: (!has("uninit")).then(|| LEGACY_VERSION.to_owned()),
        askable: if has("askable") {
            Some(true)
        } else if has("unasked") {
            Some(false)
        } else {
            None
        },
    });
    let view = Tool { contacts_client: has("talks"), declares_param_headers: has("params") };
    let tools = |name: &str| (!name.starts_with("nope")).then_some(view);
    let classifier = if has("anyhost") { &*ANY_HOST } else { &*HOSTS };

    let call = classifier.classify(&headers, body, session.as_ref(), tools);
    let again = classifier.classify(&headers, body, session.as_ref(), tools);
    assert_eq!(call, again, "deterministic");
    let Some(call) = call else { return };
    check(&call, &headers, body, session.as_ref(), view, has("anyhost"));

    // The same request, its body written again by a JSON serializer: the same call.
    let value: Value = serde_json::from_slice(body).expect("served a body that is not JSON");
    let rewritten = serde_json::to_vec(&value).expect("a JSON value serializes");
    let call_again = classifier.classify(&headers, &rewritten, session.as_ref(), tools);
    assert_eq!(Some(&call), call_again.as_ref(), "the same body, serialized again");
});

/// Everything the module documents of a call it serves, checked apart from its own code.
fn check(
    call: &Call,
    headers: &HeaderMap,
    body: &[u8],
    session: Option<&Session>,
    tool: Tool,
    any_host: bool,
) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // Both eras: no Origin, Accept naming both types, an allowed Host.
    assert!(header("origin").is_none(), "served a request with an Origin");
    let accept = header("accept").unwrap_or("");
    assert!(accept.contains("application/json") && accept.contains("text/event-stream"), "Accept {accept:?}");
    if !any_host {
        let host = header("host").expect("served without a Host").to_ascii_lowercase();
        let bare = host.rsplit_once(':').map_or(host.as_str(), |(name, _)| name);
        assert!(
            host == "127.0.0.1:8000" || bare == "localhost" || host == "localhost",
            "served Host {host:?}"
        );
    }

    // Exactly the body's call: JSON-RPC 2.0, tools/call, an integer or string id, the tool and arguments.
    let value: Value = serde_json::from_slice(body).expect("served a body that is not JSON");
    assert_eq!(value["jsonrpc"], "2.0");
    assert_eq!(value["method"], "tools/call");
    assert_eq!(value["id"], call.id);
    assert!(call.id.is_string() || call.id.is_i64() || call.id.is_u64(), "id {}", call.id);
    let params = value["params"].as_object().expect("params is an object");
    assert_eq!(params.get("name"), Some(&Value::from(call.name.as_str())));
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(arguments) => arguments.as_object().expect("arguments is an object").clone(),
    };
    assert_eq!(call.arguments, arguments);
    assert_eq!(call.meta.as_ref(), params.get("_meta").and_then(Value::as_object));
    let known = ["name", "arguments", "_meta", "inputResponses", "requestState"];
    assert!(params.keys().all(|k| known.contains(&k.as_str())), "an unknown params field");
    assert!(value.as_object().is_some_and(|o| o.len() == 4), "a field besides jsonrpc, id, method, params");
    let meta = call.meta.clone().unwrap_or_default();
    let wants_notifications =
        meta.contains_key("progressToken") || meta.contains_key("io.modelcontextprotocol/logLevel");

    match (&call.era, session) {
        (Era::Stateless { capabilities, responses, state }, None) => {
            assert!(header("mcp-session-id").is_none());
            assert_eq!(header("mcp-protocol-version"), Some(VERSION));
            assert_eq!(header("mcp-method"), Some("tools/call"));
            assert_eq!(header("mcp-name"), Some(call.name.as_str()));
            assert!(!headers.keys().any(|k| k.as_str().starts_with("mcp-param-")));
            assert!(!tool.declares_param_headers);
            assert!(!(wants_notifications && tool.contacts_client), "notifications due on the fast path");
            assert_eq!(meta.get("io.modelcontextprotocol/protocolVersion"), Some(&Value::from(VERSION)));
            let declared = meta.get("io.modelcontextprotocol/clientCapabilities");
            assert!(declared.is_some_and(Value::is_object) && declared == Some(capabilities));
            assert_eq!(responses.is_some(), params.get("inputResponses").is_some_and(|v| !v.is_null()));
            assert_eq!(state.as_deref(), params.get("requestState").and_then(Value::as_str));
        }
        (Era::Legacy { streams }, Some(session)) => {
            let version = session.version.as_deref().expect("served a session before it is initialized");
            assert_eq!(header("mcp-protocol-version"), Some(version));
            assert!(params.get("inputResponses").is_none_or(Value::is_null));
            assert!(params.get("requestState").is_none_or(Value::is_null));
            assert_eq!(*streams, tool.contacts_client);
            if tool.contacts_client {
                assert_eq!(session.askable, Some(false), "a talking tool for a client that may be asked");
            }
        }
        (era, session) => panic!("era {era:?} for session {session:?}"),
    }
}
