//! The legacy HTTP+SSE transport (2024-11-05), client side: rmcp 3.9 ships none.
//!
//! - **Receive.** One long `GET` with `Accept: text/event-stream`. Its first `endpoint` event names where to
//!   POST, resolved against the stream's URL and refused on another origin (the configured headers, often a
//!   token, go with every POST). Each later `message` event is one JSON-RPC message; a malformed one is logged
//!   and skipped. When the stream ends or fails the receive side ends, and the supervisor reconnects.
//! - **Send.** Each message is one `POST` of `application/json` to the endpoint; the server acknowledges it
//!   (`202 Accepted`) and answers over the stream, so anything but a 2xx is a send error. A POST still pending
//!   when the transport closes is abandoned.
//! - **Time.** Nothing here waits on a clock: the supervisor bounds the whole connection attempt, the wait for
//!   `endpoint` included, and calls carry their own timeout.

use std::collections::HashMap;

use bytes::Bytes;
use futures::{Stream, StreamExt, stream::BoxStream};
use reqwest::{
    StatusCode, Url,
    header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue},
};
use rmcp::{
    RoleClient,
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    transport::Transport,
};
use sse_stream::{Sse, SseStream};
use tokio_util::sync::CancellationToken;

use super::wire::MAX_MESSAGE;

/// Why the event stream or a POST failed, causes included (rmcp logs only the message). Never carries a URL:
/// it may hold a secret (`?token=…`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SseError {
    /// Reading the event stream failed.
    #[error("reading the event stream failed: {0}")]
    Stream(String),
    /// An event grew past [`MAX_MESSAGE`].
    #[error("an event is larger than {MAX_MESSAGE} bytes")]
    EventTooLarge,
    /// The POST did not get an answer.
    #[error("POST to the message endpoint failed: {0}")]
    Post(String),
    /// The POST was answered with something else than a 2xx.
    #[error("the message endpoint answered {0}")]
    Status(StatusCode),
    /// The transport was closed while the POST was pending.
    #[error("the connection is closed")]
    Closed,
}

/// An open HTTP+SSE connection to one upstream.
pub(super) struct SseTransport {
    /// Upstream name, for the log.
    upstream: String,
    /// The parsed event stream of the `GET`.
    events: BoxStream<'static, Result<Sse, sse_stream::Error>>,
    /// Pooled client, shared with other attempts.
    client: reqwest::Client,
    /// Where to POST: the `endpoint` event, resolved.
    endpoint: Url,
    /// Configured headers (secrets: never logged).
    headers: HeaderMap,
    /// Cancelled on close or drop, so pending POSTs stop.
    closed: CancellationToken,
}

impl SseTransport {
    /// `GET` the event stream and wait for its `endpoint` event; the caller bounds the wait.
    pub(super) async fn connect(
        upstream: &str,
        client: &reqwest::Client,
        url: &Url,
        headers: &HashMap<HeaderName, HeaderValue>,
    ) -> Result<Self, String> {
        let headers: HeaderMap = headers.clone().into_iter().collect();
        let response = (client.get(url.clone()).headers(headers.clone()))
            .header(ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| format!("cannot open the event stream: {}", causes(&e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the event stream answered {status}"));
        }
        // Say so plainly when the url is, say, a Streamable HTTP endpoint answering JSON.
        let content_type =
            response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("none");
        if !content_type.starts_with("text/event-stream") {
            return Err(format!(
                "the event stream answered with content-type {content_type}, not text/event-stream"
            ));
        }
        let body = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(|e| SseError::Stream(causes(&e.without_url()))));
        let mut events = events(body, MAX_MESSAGE);
        let endpoint = loop {
            match events.next().await {
                Some(Ok(event)) if event.event.as_deref() == Some("endpoint") => {
                    break event.data.ok_or("the endpoint event names no URI")?;
                }
                // Nothing can be awaiting an answer yet.
                Some(Ok(event)) => {
                    tracing::debug!(upstream = %upstream, event = ?event.event, "skipped before `endpoint`");
                }
                Some(Err(e)) => return Err(format!("{} (before its endpoint event)", stream_failure(e))),
                None => return Err("the event stream ended before its endpoint event".to_owned()),
            }
        };
        let endpoint = resolve_endpoint(url, &endpoint)?;
        Ok(Self {
            upstream: upstream.to_owned(),
            events,
            client: client.clone(),
            endpoint,
            headers,
            closed: CancellationToken::new(),
        })
    }
}

/// The events of an event stream's `body`, each counted against `max` bytes as it arrives: an event growing
/// past it ends the stream with [`SseError::EventTooLarge`] before the parser has buffered it.
pub(crate) fn events<S>(body: S, max: usize) -> BoxStream<'static, Result<Sse, sse_stream::Error>>
where
    S: Stream<Item = Result<Bytes, SseError>> + Send + 'static,
{
    let mut size = EventSize::new(max);
    let body = body.map(move |chunk| match chunk {
        Ok(chunk) if size.fits(&chunk) => Ok(chunk),
        Ok(_) => Err(SseError::EventTooLarge),
        Err(e) => Err(e),
    });
    SseStream::from_bytes_stream(body).boxed()
}

/// The JSON-RPC message an event carries, if it is a message; anything else is skipped (and logged).
pub(crate) fn message(upstream: &str, event: Sse) -> Option<ServerJsonRpcMessage> {
    match (event.event.as_deref(), event.data) {
        // A keep-alive or an empty event.
        (_, None) => None,
        // `message` is also the type of an event that names none.
        (None | Some("message"), Some(data)) => match serde_json::from_str(&data) {
            Ok(message) => Some(message),
            Err(e) => {
                tracing::warn!(upstream = %upstream, "skipping a malformed message: {e}");
                None
            }
        },
        (Some(other), Some(_)) => {
            tracing::debug!(upstream = %upstream, event = other, "skipping an event");
            None
        }
    }
}

/// Why the event stream stopped, without the parser's "body error" wrapping around our own [`SseError`].
fn stream_failure(error: sse_stream::Error) -> String {
    match error {
        sse_stream::Error::Body(ours) => ours.to_string(),
        malformed => format!("the event stream is malformed: {malformed}"),
    }
}

/// An error and its causes, as one line (reqwest's own message stops at "error sending request").
fn causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// The `endpoint` event's URI against the stream's URL; another origin is refused, since every POST carries
/// the configured headers.
pub(crate) fn resolve_endpoint(stream: &Url, data: &str) -> Result<Url, String> {
    let endpoint = stream.join(data.trim()).map_err(|e| format!("the endpoint event is not a URI: {e}"))?;
    if endpoint.origin() != stream.origin() {
        return Err(format!(
            "refusing the endpoint on {}: not the event stream's origin {}",
            endpoint.origin().ascii_serialization(),
            stream.origin().ascii_serialization()
        ));
    }
    Ok(endpoint)
}

// === impl SseTransport ===

impl Transport<RoleClient> for SseTransport {
    type Error = SseError;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), SseError>> + Send + 'static {
        let request = (self.client.post(self.endpoint.clone()).headers(self.headers.clone())).json(&item);
        let closed = self.closed.clone();
        async move {
            let response = tokio::select! {
                () = closed.cancelled() => return Err(SseError::Closed),
                response = request.send() => response.map_err(|e| SseError::Post(causes(&e.without_url())))?,
            };
            match response.status() {
                status if status.is_success() => Ok(()),
                status => Err(SseError::Status(status)),
            }
        }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        loop {
            let event = match self.events.next().await? {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(upstream = %self.upstream, "{}", stream_failure(e));
                    return None;
                }
            };
            if let Some(message) = message(&self.upstream, event) {
                return Some(message);
            }
        }
    }

    async fn close(&mut self) -> Result<(), SseError> {
        self.closed.cancel();
        // Dropping the stream closes the GET.
        self.events = futures::stream::empty().boxed();
        Ok(())
    }
}

impl Drop for SseTransport {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// The size of the event being received: bytes since the last blank line, line ends aside.
pub(super) struct EventSize {
    max: usize,
    bytes: usize,
    in_line: bool,
    after_cr: bool,
    /// An event was larger than `max`: the stream is over.
    over: bool,
}

impl EventSize {
    pub(super) fn new(max: usize) -> Self {
        Self { max, bytes: 0, in_line: false, after_cr: false, over: false }
    }

    /// Count one chunk; false once an event — one that ends inside the chunk too — is larger than `max`, and
    /// from then on.
    pub(super) fn fits(&mut self, chunk: &[u8]) -> bool {
        if self.over {
            return false;
        }
        for &byte in chunk {
            let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
            match byte {
                // The LF of a CRLF: the CR already ended the line.
                b'\n' if after_cr => {}
                b'\r' | b'\n' => {
                    if !self.in_line {
                        self.bytes = 0;
                    }
                    self.in_line = false;
                }
                _ => {
                    self.in_line = true;
                    self.bytes += 1;
                    if self.bytes > self.max {
                        self.over = true;
                        return false;
                    }
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    #[test]
    fn the_endpoint_resolves_against_the_stream_url() {
        let stream = Url::parse("http://127.0.0.1:3001/mcp/sse?token=x").unwrap();
        let resolve = |data| resolve_endpoint(&stream, data).map(String::from);
        assert_eq!(resolve("/message?sessionId=a").unwrap(), "http://127.0.0.1:3001/message?sessionId=a");
        assert_eq!(resolve(" messages?s=1\n").unwrap(), "http://127.0.0.1:3001/mcp/messages?s=1");
        assert_eq!(resolve("http://127.0.0.1:3001/m").unwrap(), "http://127.0.0.1:3001/m");
        let https = Url::parse("https://example.com/sse").unwrap();
        assert_eq!(
            resolve_endpoint(&https, "https://example.com:443/m").unwrap().as_str(),
            "https://example.com/m"
        );
    }

    #[test]
    fn an_endpoint_on_another_origin_is_refused() {
        let stream = Url::parse("http://127.0.0.1:3001/sse").unwrap();
        for elsewhere in [
            "http://evil.example/message",
            "//evil.example/message",
            "https://127.0.0.1:3001/message",
            "http://127.0.0.1:3002/message",
            "http://localhost:3001/message",
            "data:text/plain,hi",
        ] {
            let error = resolve_endpoint(&stream, elsewhere).unwrap_err();
            assert!(error.starts_with("refusing the endpoint on "), "{elsewhere}: {error}");
            assert!(error.ends_with("not the event stream's origin http://127.0.0.1:3001"), "{error}");
        }
    }

    #[test]
    fn event_size_counts_one_event_at_a_time() {
        let mut size = EventSize::new(10);
        assert!(size.fits(b"data: 1234\n\ndata: 1234\r\n\r\n"));
        assert!(size.fits(b"data:"));
        assert!(size.fits(b" abc\r"));
        assert!(size.fits(b"\n\r\n"), "a CRLF split over chunks ends the event");
        assert!(size.fits(b"data: 12\n"));
        assert!(!size.fits(b"data: 34\n"), "only a blank line ends an event");
    }

    /// Found by the `sse` fuzz target: the size was checked at the end of each chunk only, so an event over
    /// the bound that ended inside one chunk, before a smaller one, went through to the parser.
    #[test]
    fn event_size_sees_an_oversized_event_that_ends_inside_a_chunk() {
        let mut size = EventSize::new(10);
        assert!(!size.fits(b"data: 0123456789\n\ndata: 1\n\n"));
        assert!(!size.fits(b"data: 1\n\n"), "the stream is over");
        let mut size = EventSize::new(10);
        assert!(size.fits(b"data: 1234\n\ndata: 1234\n\n"), "each event fits");
    }

    /// A one-shot HTTP server: answers each accepted connection with the next of `responses`, and hands
    /// back each request it read.
    async fn server(responses: Vec<String>) -> (Url, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/sse", listener.local_addr().unwrap())).unwrap();
        let (requests, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for response in responses {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buffer = [0; 4096];
                // The head, and a body of Content-Length bytes.
                loop {
                    let n = socket.read(&mut buffer).await.unwrap();
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = (head.lines())
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_owned)
                            })
                            .map_or(0, |l| l.trim().parse().unwrap());
                        if body.len() >= length {
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                let _ = requests.send(String::from_utf8_lossy(&request).into_owned());
                socket.write_all(response.as_bytes()).await.unwrap();
                socket.shutdown().await.unwrap();
            }
        });
        (url, received)
    }

    async fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port()
    }

    fn event_stream(events: &str) -> String {
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{events}")
    }

    #[tokio::test]
    async fn messages_arrive_malformed_ones_are_skipped_and_the_end_of_the_stream_ends_receiving() {
        let events = concat!(
            ": keep-alive\n\n",
            "event: endpoint\ndata: /message?sessionId=s1\n\n",
            "event: message\ndata: {not json\n\n",
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n",
            "data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n",
        );
        let refused = "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let (url, mut requests) = server(vec![event_stream(events), refused.to_owned()]).await;
        let headers = HashMap::from([(HeaderName::from_static("x-token"), HeaderValue::from_static("t"))]);
        let mut transport =
            SseTransport::connect("up", &reqwest::Client::new(), &url, &headers).await.unwrap();
        assert_eq!(transport.endpoint.path(), "/message");
        let get = requests.recv().await.unwrap();
        assert!(get.starts_with("GET /sse ") && get.contains("accept: text/event-stream"), "{get}");
        assert!(get.contains("x-token: t"), "{get}");

        let first = serde_json::to_value(transport.receive().await.unwrap()).unwrap();
        assert_eq!(first["method"], "notifications/tools/list_changed", "{first}");
        let second = serde_json::to_value(transport.receive().await.unwrap()).unwrap();
        assert_eq!(second["id"], 7, "{second}");
        assert!(transport.receive().await.is_none(), "the stream ended");

        let ping = ClientJsonRpcMessage::request(
            rmcp::model::ClientRequest::PingRequest(Default::default()),
            rmcp::model::NumberOrString::Number(1),
        );
        let error = transport.send(ping).await.unwrap_err();
        assert!(matches!(error, SseError::Status(StatusCode::INTERNAL_SERVER_ERROR)), "{error}");
        let post = requests.recv().await.unwrap();
        assert!(post.starts_with("POST /message?sessionId=s1 "), "{post}");
        assert!(post.contains("content-type: application/json") && post.contains("x-token: t"), "{post}");
        assert!(post.contains("\"method\":\"ping\""), "{post}");
    }

    #[tokio::test]
    async fn a_stream_that_ends_early_names_another_origin_or_is_no_event_stream_is_refused() {
        let (url, _requests) = server(vec![
            event_stream("event: message\ndata: {}\n\n"),
            event_stream("event: endpoint\ndata: http://elsewhere.example/message\n\n"),
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\
             connection: close\r\n\r\n{}"
                .to_owned(),
        ])
        .await;
        let (client, headers) = (reqwest::Client::new(), HashMap::new());
        let connect = || SseTransport::connect("up", &client, &url, &headers);
        let error = connect().await.err().unwrap();
        assert_eq!(error, "the event stream ended before its endpoint event");
        let error = connect().await.err().unwrap();
        assert!(error.starts_with("refusing the endpoint on http://elsewhere.example"), "{error}");
        let error = connect().await.err().unwrap();
        assert_eq!(error, "the event stream answered 404 Not Found");
        let error = connect().await.err().unwrap();
        assert_eq!(
            error,
            "the event stream answered with content-type application/json, not text/event-stream"
        );

        let nobody = Url::parse(&format!("http://127.0.0.1:{}/sse", free_port().await)).unwrap();
        let error = SseTransport::connect("up", &client, &nobody, &headers).await.err().unwrap();
        assert!(error.starts_with("cannot open the event stream: error sending request"), "{error}");
        assert!(error.contains("onnection refused") && !error.contains("127.0.0.1"), "{error}");
    }
}
