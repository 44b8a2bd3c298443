//! The caller's trace passed on to upstreams, so one that traces continues it: `_meta.traceparent` /
//! `tracestate` on each request made for a caller (SEP-414, what MCP servers read), and the `traceparent` /
//! `tracestate` headers on the direct HTTP lane's POST (what HTTP servers read). The context is the span the call
//! runs in — the gateway's `tools/call` span. With telemetry off this is one cached callsite check and nothing
//! is added.

use mcpgate_core::TELEMETRY_TARGET;
use opentelemetry::trace::TraceContextExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rmcp::model::RequestMetaObject;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A W3C trace context in its wire form.
struct TraceContext {
    traceparent: String,
    tracestate: String,
}

/// The context of the current span, when traces are exported and there is one.
fn current() -> Option<TraceContext> {
    if !tracing::enabled!(target: TELEMETRY_TARGET, tracing::Level::INFO) {
        return None;
    }
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let span = span.span_context();
    span.is_valid().then(|| TraceContext {
        traceparent: format!("00-{}-{}-{:02x}", span.trace_id(), span.span_id(), span.trace_flags().to_u8()),
        tracestate: span.trace_state().header(),
    })
}

/// Put the current trace context in a request's `_meta`.
pub(super) fn add_to_meta(meta: &mut RequestMetaObject) {
    if let Some(trace) = current() {
        meta.set_traceparent(trace.traceparent);
        if !trace.tracestate.is_empty() {
            meta.set_tracestate(trace.tracestate);
        }
    }
}

/// Put the current trace context in a request's headers.
pub(super) fn add_to_headers(headers: &mut HeaderMap) {
    let Some(trace) = current() else { return };
    for (name, value) in [("traceparent", trace.traceparent), ("tracestate", trace.tracestate)] {
        if let Ok(value) = HeaderValue::try_from(value)
            && !value.is_empty()
        {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}
