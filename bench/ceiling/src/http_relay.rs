//! `--http-upstream URL`: the floor's HTTP relay. Each `POST /mcp` is parsed,
//! re-id'd and sent to one Streamable HTTP upstream over a pooled keep-alive
//! HTTP/1.1 client (hyper-util's legacy `Client`, `TCP_NODELAY`); the
//! upstream's status, content type and answer (with the client's id restored)
//! go back to the client.

use std::error::Error;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::relay::{self, Answer, IdSource, Parsed, UPSTREAM_TIMEOUT, UpstreamError};
use crate::serve::{self, HttpResponse, MAX_BODY, McpHandler};

/// The relay's state: one connection pool to one upstream URL.
pub struct HttpRelay {
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: Uri,
    ids: IdSource,
}

/// One upstream answer, read completely.
struct UpstreamAnswer {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

/// The client's headers the relay passes on: the body's type, what the client accepts and the 2026-07-28
/// request headers, as mcpgate's HTTP proxy sends them to its upstream.
const FORWARDED: [HeaderName; 5] = [
    CONTENT_TYPE,
    ACCEPT,
    HeaderName::from_static("mcp-protocol-version"),
    HeaderName::from_static("mcp-method"),
    HeaderName::from_static("mcp-name"),
];

impl HttpRelay {
    /// A relay to `upstream`, which must be `http://HOST:PORT/PATH` (the floor has no TLS).
    pub fn new(upstream: &str) -> Result<Self, String> {
        let uri: Uri = upstream.parse().map_err(|e| format!("--http-upstream `{upstream}`: {e}"))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(format!("--http-upstream `{upstream}`: expected http://HOST:PORT/PATH"));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { client, upstream: uri, ids: IdSource::default() })
    }

    /// One exchange with the upstream, answer read completely, within [`UPSTREAM_TIMEOUT`].
    async fn exchange(&self, headers: &HeaderMap, body: Bytes) -> Result<UpstreamAnswer, UpstreamError> {
        let mut req = Request::post(self.upstream.clone())
            .body(Full::new(body))
            .map_err(|e| UpstreamError::Internal(e.to_string()))?;
        for name in &FORWARDED {
            if let Some(value) = headers.get(name) {
                req.headers_mut().insert(name.clone(), value.clone());
            }
        }
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| UpstreamError::Unavailable(chain(&e)))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| UpstreamError::BadAnswer(format!("reading the body: {e}")))?
                .to_bytes();
            Ok(UpstreamAnswer {
                status: parts.status,
                content_type: parts.headers.get(CONTENT_TYPE).cloned(),
                body,
            })
        };
        tokio::time::timeout(UPSTREAM_TIMEOUT, exchange).await.map_err(|_| UpstreamError::TimedOut)?
    }
}

impl McpHandler for HttpRelay {
    async fn mcp(&self, headers: HeaderMap, body: Bytes) -> HttpResponse {
        let msg = match relay::parse(&body) {
            Ok(Parsed::Request(msg)) => msg,
            // Nothing to correlate: forwarded as the client sent it.
            Ok(Parsed::Notification) => {
                return match self.exchange(&headers, body.clone()).await {
                    Ok(up) => serve::response(up.status, up.content_type, up.body),
                    Err(e) => e.into_response(&Value::Null),
                };
            }
            Err(reply) => return serve::reply(reply),
        };
        let our_id = self.ids.next();
        let mut out = Vec::with_capacity(body.len() + 16);
        if let Err(e) = relay::reid(&msg, our_id, &mut out) {
            return e.into_response(msg.id());
        }
        match self.exchange(&headers, Bytes::from(out)).await {
            Ok(up) => restore(up, our_id, msg.id()),
            Err(e) => e.into_response(msg.id()),
        }
    }
}

/// The upstream's answer to request `our_id` as the client gets it: same status
/// and content type, the client's id back in the JSON-RPC response.
fn restore(up: UpstreamAnswer, our_id: u64, client_id: &Value) -> HttpResponse {
    let is_json = up
        .content_type
        .as_ref()
        .and_then(|ct| ct.as_bytes().get(..16))
        .is_some_and(|p| p.eq_ignore_ascii_case(b"application/json"));
    if up.body.is_empty() || (!is_json && !up.status.is_success()) {
        // No JSON-RPC response to restore (e.g. a 202, or a plain-text 404): passed on as is.
        return serve::response(up.status, up.content_type, up.body);
    }
    if !is_json {
        let ct = up.content_type.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("untyped");
        let why = format!("a `{ct}` answer; this relay restores ids in application/json answers only");
        return UpstreamError::BadAnswer(why).into_response(client_id);
    }
    let answer: Answer = match serde_json::from_slice(&up.body) {
        Ok(a) => a,
        Err(e) => {
            return UpstreamError::BadAnswer(format!("not a JSON-RPC response: {e}"))
                .into_response(client_id);
        }
    };
    if answer.method.is_some() {
        let why = "a request or notification instead of the response".to_owned();
        return UpstreamError::BadAnswer(why).into_response(client_id);
    }
    match &answer.id {
        Some(Value::Number(n)) if n.as_u64() == Some(our_id) => {}
        // The upstream could not read the request; over HTTP its error still belongs to this exchange.
        None | Some(Value::Null) => {}
        Some(other) => {
            let why = format!("id {other} in the answer to request id {our_id}");
            return UpstreamError::BadAnswer(why).into_response(client_id);
        }
    }
    match answer.restore(client_id) {
        Ok(body) => serve::response(up.status, up.content_type, body),
        Err(e) => e.into_response(client_id),
    }
}

/// An error with its sources, e.g. "client error (Connect): tcp connect error: Connection refused".
fn chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
