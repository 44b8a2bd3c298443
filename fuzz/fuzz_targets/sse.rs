//! The upstream client's legacy HTTP+SSE transport (`upstream/sse.rs`): the body of the event stream, cut
//! into chunks at fuzzer-chosen points, through the event-size bound (`EventSize`) and the parser
//! (`sse-stream`) to events, then what the transport does with each event (a JSON-RPC message, an `endpoint`).
//!
//! - Where the body is cut never changes what it means: the same events and the same error whether it comes
//!   in one chunk, in the chosen chunks or byte by byte (before an error, a coarser cut may deliver fewer of
//!   the events that came before it, never others).
//! - No event over the bound is ever delivered, and a stream holding one never ends cleanly; a stream whose
//!   events all fit gives what it gives without a bound.
//! - A message the transport accepts serializes, and reads back the same; an endpoint is never on another
//!   origin than the stream.
//!
//! Input: a byte `k`, `k` little-endian u16 cut points, a little-endian u16 bound (+1), then the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpgate_backends::fuzz::{Sse, Url, sse_endpoint, sse_events, sse_message, sse_reparse, sse_too_large};
use mcpgate_fuzz::{Bytes, sse_event_sizes};
use std::sync::LazyLock;

static STREAM: LazyLock<Url> =
    LazyLock::new(|| Url::parse("http://127.0.0.1:3001/mcp/sse?token=x").expect("a URL"));

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let cuts: Vec<u16> = (0..input.u8() % 32).map(|_| input.u16()).collect();
    let max = usize::from(input.u16()) + 1;
    let body = input.rest();
    let mut cuts: Vec<usize> = cuts.into_iter().map(|c| usize::from(c) % (body.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for cut in cuts.into_iter().chain([body.len()]) {
        chunks.push(body[from..cut].to_vec());
        from = cut;
    }

    let whole = sse_events(vec![body.to_vec()], usize::MAX);
    let bytewise = sse_events(body.iter().map(|&b| vec![b]).collect(), usize::MAX);
    let chosen = sse_events(chunks.clone(), usize::MAX);
    for (what, cut) in [("byte by byte", &bytewise), ("in the chosen chunks", &chosen)] {
        assert_eq!(cut.1, whole.1, "the error, {what}");
        if whole.1.is_none() {
            assert_eq!(cut.0, whole.0, "the events, {what}");
        } else {
            assert!(cut.0.starts_with(&whole.0), "the events before an error, {what}");
        }
    }
    assert!(bytewise.0.starts_with(&chosen.0), "the events before an error, byte by byte");

    let bounded = sse_events(chunks, max);
    let largest = sse_event_sizes(body).into_iter().max().unwrap_or(0);
    if largest <= max {
        assert_eq!(bounded, chosen, "a stream whose events fit the bound");
    } else {
        assert!(
            bounded.1.is_some(),
            "a stream with an event over the bound ({largest} > {max}) ended cleanly"
        );
        if chosen.1.is_none() {
            assert_eq!(bounded.1, Some(sse_too_large()), "the error of an event over the bound");
        }
    }
    for event in &bounded.0 {
        let size = event.data.as_ref().map_or(0, String::len);
        assert!(size <= max, "an event of {size} bytes delivered under a bound of {max}");
    }

    for event in bytewise.0 {
        transport(event);
    }
});

/// What the transport does with one event.
fn transport(event: Sse) {
    if event.event.as_deref() == Some("endpoint")
        && let Some(data) = &event.data
        && let Ok(endpoint) = sse_endpoint(&STREAM, data)
    {
        assert_eq!(endpoint.origin(), STREAM.origin(), "endpoint {endpoint} on another origin");
    }
    match sse_message(event) {
        None => {}
        Some(Err(e)) => panic!("an accepted message does not serialize: {e}"),
        Some(Ok(message)) => {
            let again = sse_reparse(&message);
            assert_eq!(again.as_ref(), Some(&message), "a message read back");
        }
    }
}
