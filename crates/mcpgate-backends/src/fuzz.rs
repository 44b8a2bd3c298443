//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off in every build that serves): thin
//! wrappers over the code that reads untrusted bytes or renders untrusted arguments, so that nothing
//! crate-private becomes public API. Not an API either: it follows the code it wraps.

use bytes::Bytes;
use futures::StreamExt;
pub use reqwest::{Request, Url};
use serde_json::Value;
pub use sse_stream::Sse;

use crate::{command::CommandTools, http::HttpTools, upstream};

// === the legacy HTTP+SSE transport ===

/// The events an upstream's event stream yields when its body arrives in `chunks`, each event bounded to `max`
/// bytes, up to the first error (which ends the stream for the transport too), and that error.
pub fn sse_events(chunks: Vec<Vec<u8>>, max: usize) -> (Vec<Sse>, Option<String>) {
    let body = futures::stream::iter(chunks.into_iter().map(|chunk| Ok(Bytes::from(chunk))));
    let mut events = upstream::events(body, max);
    let mut seen = Vec::new();
    // Every chunk is in memory: each poll is ready at once.
    futures::executor::block_on(async {
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => seen.push(event),
                Err(e) => return (seen, Some(e.to_string())),
            }
        }
        (seen, None)
    })
}

/// The JSON-RPC message the transport takes from `event` (serialized again), or `None` when it skips it.
pub fn sse_message(event: Sse) -> Option<Result<Value, String>> {
    upstream::message("fuzz", event).map(|message| serde_json::to_value(message).map_err(|e| e.to_string()))
}

/// A JSON-RPC message as the transport parses an event's data, serialized again.
pub fn sse_reparse(message: &Value) -> Option<Value> {
    upstream::message("fuzz", Sse::default().data(message.to_string()))
        .and_then(|message| serde_json::to_value(message).ok())
}

/// Where the transport POSTs after an `endpoint` event with `data` on the stream at `stream`.
pub fn sse_endpoint(stream: &Url, data: &str) -> Result<Url, String> {
    upstream::resolve_endpoint(stream, data)
}

/// Why an event stream ended: the error `sse_events` reports for an event over its bound.
pub fn sse_too_large() -> String {
    sse_stream::Error::Body(Box::new(upstream::SseError::EventTooLarge)).to_string()
}

// === config-declared tools ===

/// What a command tool's call runs with.
#[derive(Debug)]
pub struct Rendered {
    /// The arguments after the program.
    pub argv: Vec<String>,
    /// Standard input, when the tool has a template for it.
    pub stdin: Option<String>,
}

/// What a command tool's call would run with, or its tool error; `None` for an unknown tool.
pub fn command_render(
    tools: &CommandTools,
    tool: &str,
    arguments: &Value,
) -> Option<Result<Rendered, String>> {
    tools.fuzz_render(tool, arguments)
}

/// The request an http tool's call would send, or its tool error; `None` for an unknown tool.
pub fn http_request(
    tools: &HttpTools,
    tool: &str,
    arguments: &Value,
) -> Option<Result<reqwest::Request, String>> {
    tools.fuzz_request(tool, arguments)
}
