//! Input checks at the `/mcp` edge, before the protocol layer: every malformed request gets an HTTP status and a
//! JSON-RPC error body saying what is wrong, so a client can tell bad JSON from a foreign host from an expired
//! session. Checks run on the buffered body once; the protocol layer then parses it for real.

use std::{borrow::Cow, sync::Arc, time::Duration};

use axum::{
    body::{Body, Bytes},
    extract::Request,
    response::Response,
};
use http::{
    HeaderMap, HeaderValue, Method, StatusCode,
    header::{CONNECTION, CONTENT_TYPE},
};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::{
    fast::{self, CallRequest, FastPath},
    headers::{MCP_SESSION_ID, header},
    jsonrpc::Rejection,
    metrics::{
        Metrics,
        labels::{McpMethod, heard},
    },
    sessions::{Full, Refused, Sessions},
};

/// What the `/mcp` edge needs: the body limit, the fast path and the record of legacy sessions.
pub(crate) struct Edge {
    /// Largest body accepted.
    pub(crate) max_body: usize,
    /// Time a body has to arrive whole once the request's head has (`server.body_read_timeout`).
    pub(crate) body_timeout: Duration,
    /// Serves plain `tools/call` requests without the protocol layer's per-request machinery.
    pub(crate) fast: FastPath,
    /// Legacy sessions: their requests in flight, so a reused id is refused (the protocol layer would cancel
    /// the first of two in-flight requests sharing an id and never complete its response) and a
    /// `notifications/cancelled` reaches calls on the fast path.
    pub(crate) sessions: Arc<Sessions>,
    /// Where refused `initialize` requests are counted.
    pub(crate) metrics: Arc<Metrics>,
}

/// `notifications/cancelled`: which request to stop.
#[derive(Deserialize)]
struct Cancelled {
    params: CancelledParams,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelledParams {
    request_id: Value,
}

/// The fields that decide whether a body is a JSON-RPC message at all. Parsing it also checks the whole body
/// for syntax, UTF-8 and nesting depth.
#[derive(Deserialize)]
pub(crate) struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Option<Cow<'a, str>>,
    /// The request's id, when it has one.
    pub(crate) id: Option<Value>,
    /// The method of a request or notification.
    #[serde(borrow)]
    pub(crate) method: Option<Cow<'a, str>>,
    result: Option<IgnoredAny>,
    error: Option<IgnoredAny>,
}

/// Whether `Content-Type` names JSON (parameters such as `charset` aside).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// A `DELETE` that closed its session answers 200, as the reference servers do: rmcp answers 202, which the
/// official Python SDK logs as "Session termination failed: 202" at every close.
fn session_closed(mut response: Response) -> Response {
    if response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::OK;
    }
    response
}

/// A body that did not arrive within `server.body_read_timeout`: 408, and the connection is closed (what is
/// left of the body is never read).
fn body_too_slow(edge: &Edge) -> Response {
    edge.metrics.connections().body_read_timeouts.inc();
    tracing::info!(
        body_read_timeout = ?edge.body_timeout,
        "a request body did not arrive in time: answered 408, connection closed (server.body_read_timeout)"
    );
    let message =
        format!("request body not received within {:?} (server.body_read_timeout)", edge.body_timeout);
    let mut response =
        Rejection::Invalid { status: StatusCode::REQUEST_TIMEOUT, message, id: None }.into_response();
    response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Check a POST body (size, media type, JSON, JSON-RPC shape), take a seat for a new session's `initialize`
/// (or refuse it past a cap), serve the body on the fast path when it is a plain `tools/call`, else put it back
/// for the protocol layer; give plain-text rejections from the layers below a JSON-RPC body.
pub(crate) async fn guard<F: Future<Output = Response>>(
    edge: &Edge,
    request: Request,
    next: impl FnOnce(Request) -> F,
) -> Response {
    let max_body = edge.max_body;
    if request.method() == Method::DELETE {
        return session_closed(with_jsonrpc_body(next(request).await).await);
    }
    if request.method() != Method::POST {
        return with_jsonrpc_body(next(request).await).await;
    }
    if !is_json(request.headers()) {
        let message = "Content-Type must be application/json".into();
        return Rejection::Invalid { status: StatusCode::UNSUPPORTED_MEDIA_TYPE, message, id: None }
            .into_response();
    }
    let (parts, body) = request.into_parts();
    let Ok(collected) = tokio::time::timeout(edge.body_timeout, Limited::new(body, max_body).collect()).await
    else {
        return body_too_slow(edge);
    };
    let bytes: Bytes = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            let message = format!("request body exceeds {max_body} bytes");
            return Rejection::Invalid { status: StatusCode::PAYLOAD_TOO_LARGE, message, id: None }
                .into_response();
        }
        Err(e) => {
            return Rejection::invalid(format!("cannot read body: {e}"), None).into_response();
        }
    };
    let (envelope, call) = match read_message(&bytes) {
        Ok(read) => read,
        Err(rejection) => return rejection.into_response(),
    };
    let mut in_session = None;
    let mut seat = None;
    let named = header(&parts.headers, &MCP_SESSION_ID);
    // A new legacy session takes a seat: none left for this client, or for anyone, and it is refused.
    if named.is_none() && envelope.method.as_deref() == Some("initialize") {
        let client = seat_holder(&crate::auth::principal(&parts.extensions));
        match edge.sessions.admit(client) {
            Ok(taken) => seat = Some(taken),
            Err(full) => return too_many_sessions(edge, full, envelope.id),
        }
    }
    let session = match named {
        Some(id) => edge.sessions.find(id).await,
        None => None,
    };
    // The client's answer to a request a server sent it: the call waiting for it may be on another node.
    if envelope.method.is_none()
        && let (Some(session), Some(id)) = (&session, named)
        && edge.sessions.forward_answer(id, session, &bytes).await
    {
        return axum::response::IntoResponse::into_response(StatusCode::ACCEPTED);
    }
    match (session, envelope.id, envelope.method.as_deref()) {
        (Some(session), Some(id), Some(_)) => match edge.sessions.begin(session.clone(), id.to_string()) {
            Ok(request) => in_session = Some((session, request)),
            Err(Refused::IdInFlight) => {
                let message = format!("request id {id} is already in flight in this session");
                return Rejection::invalid(message, Some(id)).into_response();
            }
        },
        (Some(session), None, Some(method)) => {
            if method == "notifications/cancelled"
                && let Ok(cancelled) = serde_json::from_slice::<Cancelled>(&bytes)
            {
                session.cancel(&cancelled.params.request_id.to_string());
            }
            // A parked session has no worker for a notification to reach: whatever it says is taken here rather
            // than restoring one for it.
            if !session.is_live() {
                heard(McpMethod::from_name(method));
                if method == "notifications/initialized" {
                    session.mark_ready();
                }
                return axum::response::IntoResponse::into_response(StatusCode::ACCEPTED);
            }
        }
        _ => {}
    }
    // A plain `initialize` opens its session here, parked (`opening.rs`): the seat is its.
    if seat.is_some()
        && let Some(response) = edge.fast.initialize(&parts, &bytes, &edge.sessions)
    {
        if let (Some(seat), Some(id)) = (seat, header(response.headers(), &MCP_SESSION_ID)) {
            seat.bind(id);
        }
        return response;
    }
    let session = in_session.as_ref().map(|(session, request)| (&**session, request.cancel.clone()));
    let fast = edge.fast.serve(&parts, call, session).await;
    if let Some(response) = fast {
        // An answer that streams (a call sending its client messages first) outlives this function: the request
        // stays in its session — cancellable, keeping the session busy — until it is sent.
        let streams = response.headers().get(CONTENT_TYPE).is_some_and(|v| v == "text/event-stream");
        return match in_session {
            Some((_, request)) if streams => hold_until_sent(response, request),
            _ => response,
        };
    }
    let response = with_jsonrpc_body(next(Request::from_parts(parts, Body::from(bytes))).await).await;
    // The `initialize` opened a session: the seat is its (else it is given back as `seat` drops).
    if let (Some(seat), Some(id)) = (seat, header(response.headers(), &MCP_SESSION_ID)) {
        seat.bind(id);
    }
    match in_session {
        Some((_, request)) => hold_until_sent(response, request),
        None => response,
    }
}

/// The checks of a POST body that need nothing but its bytes: UTF-8, nesting depth, JSON, and the JSON-RPC
/// envelope (`jsonrpc: "2.0"`, and a method, result or error); the envelope borrows from `bytes`. A plain
/// `tools/call` is parsed once, whole, for the fast path (given back with the envelope), not twice.
pub(crate) fn read_message(bytes: &[u8]) -> Result<(Envelope<'_>, Option<CallRequest<'_>>), Rejection> {
    // A plain call's parse has checked the text already: it reads every byte (it skips nothing), refuses
    // invalid UTF-8 and numbers out of range; only the depth is left, measured on what it built.
    if let Some(call) = fast::read_call(bytes).filter(|call| call.nesting_depth() <= MAX_DEPTH) {
        let envelope = Envelope {
            jsonrpc: Some(Cow::Borrowed("2.0")),
            id: Some(call.id.clone()),
            method: Some(Cow::Borrowed("tools/call")),
            result: None,
            error: None,
        };
        return Ok((envelope, Some(call)));
    }
    check_text(bytes)?;
    Ok((read_envelope(bytes)?, None))
}

/// What the envelope parse does not check in the fields it skips, checked over the whole body: encoding,
/// nesting depth, numbers out of range.
fn check_text(bytes: &[u8]) -> Result<(), Rejection> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(Rejection::Parse(format!("Parse error: invalid UTF-8 ({e})")));
    }
    let scanned = scan(bytes);
    if scanned.depth > MAX_DEPTH {
        return Err(Rejection::Parse(format!("Parse error: JSON nested deeper than {MAX_DEPTH} levels")));
    }
    if scanned.huge_number {
        return Err(Rejection::Parse("Parse error: a number out of range (larger than a double)".into()));
    }
    Ok(())
}

/// The JSON-RPC envelope of a body [`check_text`] passed.
fn read_envelope(bytes: &[u8]) -> Result<Envelope<'_>, Rejection> {
    let envelope = match serde_json::from_slice::<Envelope<'_>>(bytes) {
        Ok(envelope) => envelope,
        Err(e) if e.is_data() => {
            return Err(Rejection::invalid("not a JSON-RPC message: expected an object", None));
        }
        Err(e) => return Err(Rejection::Parse(format!("Parse error: {e}"))),
    };
    if envelope.jsonrpc.as_deref() != Some("2.0") {
        return Err(Rejection::invalid("jsonrpc must be \"2.0\"", envelope.id));
    }
    if envelope.method.is_none() && envelope.result.is_none() && envelope.error.is_none() {
        return Err(Rejection::invalid("not a JSON-RPC message: no method, result or error", envelope.id));
    }
    Ok(envelope)
}

/// Who a new session's seat is counted against: the key or token holder, or an anonymous client's address (IPv6
/// by its /64, as rate limits count it).
fn seat_holder(principal: &mcpgate_core::Principal) -> Arc<str> {
    match principal.client_ip.filter(|_| principal.anonymous) {
        Some(ip) => mcpgate_policy::ratelimit::BucketKey::ip(ip).to_string().into(),
        None => principal.id.clone(),
    }
}

/// 429 for an `initialize` past a session cap, counted and logged.
fn too_many_sessions(edge: &Edge, full: Full, id: Option<Value>) -> Response {
    let (scope, message) = match full {
        Full::Gateway => {
            ("gateway", "Too many sessions: the gateway's limit (server.max_sessions) is reached")
        }
        Full::Client => (
            "client",
            "Too many sessions: this client's limit (server.max_sessions_per_client) is reached; close sessions \
             (DELETE) or let idle ones expire",
        ),
    };
    tracing::info!(scope, "initialize refused: too many sessions");
    edge.metrics.session_refused(scope);
    Rejection::TooManySessions { message: message.to_owned(), scope, id }.into_response()
}

/// Keep `guard` alive until the response body has been sent (or dropped): an answer may be an SSE stream that
/// outlives the handler.
pub(crate) fn hold_until_sent<G: Send + Sync + 'static>(response: Response, guard: G) -> Response {
    response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            let _held = &guard;
            frame
        }))
    })
}

/// Deepest nesting accepted; serde_json refuses deeper documents anyway (its recursion limit is 128).
pub(crate) const MAX_DEPTH: usize = 100;

/// The deepest `[`/`{` nesting in a JSON text, ignoring brackets inside strings (for the fuzz target and tests;
/// the edge takes it from [`scan`]).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn nesting_depth(bytes: &[u8]) -> usize {
    scan(bytes).depth
}

/// What one pass over a body finds that the envelope parse does not check in the fields it skips.
struct Scan {
    /// The deepest `[`/`{` nesting, brackets inside strings aside.
    depth: usize,
    /// A number too large for a double (`1e999`): valid JSON grammar, which every later parse refuses.
    huge_number: bool,
}

/// One pass over `bytes`: nesting depth and numbers out of range (found by the edge fuzz target: a body whose
/// skipped field held `88888E888` passed the edge, and the protocol layer then answered 415). The pass only
/// notices a number that could be out of range — one with an exponent, or hundreds of digits — and reads the
/// numbers then, in a second pass that ordinary bodies never take.
fn scan(bytes: &[u8]) -> Scan {
    let (mut depth, mut deepest) = (0usize, 0usize);
    // Digits (and points) in a row outside strings, and whether a number may be out of range.
    let (mut digits, mut suspect) = (0usize, false);
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            // Most of a body is strings: jump to the closing quote rather than stepping through them.
            b'"' => i = past_string(bytes, i),
            b'0'..=b'9' | b'.' => {
                digits += 1;
                suspect |= digits > 300;
                continue;
            }
            // After a digit, an exponent (`true` and `false` have an `e` too, after letters).
            b'e' | b'E' => suspect |= digits > 0,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        digits = 0;
    }
    Scan { depth: deepest, huge_number: suspect && has_huge_number(bytes) }
}

/// Where the string whose contents begin at `start` ends: just past its closing quote (escapes skipped), or the
/// end of `bytes` for a string never closed.
fn past_string(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    while let Some(found) = bytes.get(i..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) {
        if bytes[i + found] == b'"' {
            return i + found + 1;
        }
        // A backslash: the byte after it is escaped, whatever it is.
        i += found + 2;
    }
    bytes.len()
}

/// Whether a number outside the strings of `bytes` is too large for a double.
fn has_huge_number(bytes: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        if b == b'"' {
            i = past_string(bytes, i);
        } else if b == b'-' || b.is_ascii_digit() {
            let start = i - 1;
            while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                i += 1;
            }
            let number = std::str::from_utf8(&bytes[start..i]).ok().and_then(|n| n.parse::<f64>().ok());
            if number.is_some_and(f64::is_infinite) {
                return true;
            }
        }
    }
    false
}

/// The protocol layer answers some rejections (foreign Host or Origin, unknown session) in plain text; give
/// them a JSON-RPC error body, keeping the status.
async fn with_jsonrpc_body(response: Response) -> Response {
    let status = response.status();
    let plain = !response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.starts_with("text/event-stream"));
    if !(status.is_client_error() && plain) {
        return response;
    }
    let text = match response.into_body().collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message =
        if text.is_empty() { status.canonical_reason().unwrap_or("rejected").to_owned() } else { text };
    match status {
        StatusCode::NOT_FOUND => Rejection::SessionNotFound(message),
        StatusCode::FORBIDDEN => Rejection::Forbidden(message),
        status => Rejection::Invalid { status, message, id: None },
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::{Envelope, Rejection, nesting_depth, read_message};

    fn parse_envelope(bytes: &[u8]) -> Result<Envelope<'_>, Rejection> {
        read_message(bytes).map(|(envelope, _)| envelope)
    }

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(nesting_depth(br#"{"a":[1,{"b":"[[[{{{"}]}"#), 3);
        assert_eq!(nesting_depth(br#"{"a":"\"[["}"#), 1);
        assert_eq!(nesting_depth(b"1"), 0);
        assert_eq!(nesting_depth(br#"{"a":[1e5,-2.5E-3,"1e999"]}"#), 2);
        // An escaped backslash ends with the string's own quote; escapes of every kind are stepped over.
        assert_eq!(nesting_depth(br#"{"a":"x\\","b":[[1]]}"#), 3);
        assert_eq!(nesting_depth(br#"{"a":"\u005b\"\\[","b":[2]}"#), 2);
        // Strings never closed, or closed by nothing but a trailing backslash, end the scan.
        assert_eq!(nesting_depth(br#"{"a":"[[["#), 1);
        assert_eq!(nesting_depth(br#"[{"a":"\"#), 2);
    }

    #[test]
    fn a_number_out_of_a_doubles_range_is_a_parse_error_anywhere() {
        // In a field the envelope parse skips (found by the edge fuzz target).
        let huge = br#"{"jsonrpc":"2.0","method":"ping","pm":[[88888E888]]}"#;
        let refused = parse_envelope(huge).err().map(|r| format!("{r:?}")).unwrap_or_default();
        assert!(refused.contains("out of range"), "{refused}");
        let long = format!(r#"{{"jsonrpc":"2.0","method":"ping","params":{{"n":{}}}}}"#, "9".repeat(400));
        assert!(parse_envelope(long.as_bytes()).is_err());
        let fine = br#"{"jsonrpc":"2.0","method":"ping","params":{"n":1.5e300,"s":"1e999","m":-2E-308}}"#;
        assert!(parse_envelope(fine).is_ok(), "in range, and a string is a string");
    }

    #[test]
    fn a_plain_call_is_read_once_and_gives_the_same_envelope() {
        let plain =
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
        let (envelope, call) = read_message(plain).unwrap();
        assert!(call.is_some_and(|call| call.id == 7));
        assert_eq!((envelope.id, envelope.method.as_deref()), (Some(7.into()), Some("tools/call")));
        // Not the fast path's shape (an unknown member): the envelope parse reads it, to the same envelope.
        let other = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"},"x":1}"#;
        let (envelope, call) = read_message(other).unwrap();
        assert!(call.is_none());
        assert_eq!((envelope.id, envelope.method.as_deref()), (Some(7.into()), Some("tools/call")));
        // The checks of the whole text come first either way.
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"e","arguments":{{"a":{}1{}}}}}}}"#,
            "[".repeat(120),
            "]".repeat(120)
        );
        assert!(read_message(deep.as_bytes()).is_err());
    }

    #[test]
    fn a_calls_depth_from_its_parse_is_the_scans() {
        let call =
            |params: &str| format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}"#);
        for body in [
            call(r#"{"name":"e"}"#),
            call(r#"{"name":"e","arguments":{}}"#),
            call(r#"{"name":"e","arguments":{"a":[[1],{"b":[]}],"s":"[[["}}"#),
            call(
                r#"{"name":"e","_meta":{"x":{"y":{}}},"inputResponses":{"k":{"r":[[]]}},"requestState":"{"}"#,
            ),
            call(r#"{"name":"e","inputResponses":{"k":1}}"#),
        ] {
            let parsed = crate::fast::read_call(body.as_bytes()).expect("a plain call");
            assert_eq!(parsed.nesting_depth(), nesting_depth(body.as_bytes()), "{body}");
        }
    }
}
