//! Rate limits at the `/mcp` edge: every HTTP request, once authenticated, takes one request from the global,
//! per-address and per-key (or per-tier) budgets that are set — all or none. Over any of them the answer is HTTP 429
//! with `Retry-After` and a JSON-RPC error (-32005, `data.retryAfterMs`), before the body is read — except that a
//! legacy session over budget may still send notifications (`notifications/cancelled`) and answers to the
//! server's requests, which cost the backends nothing: its body is peeked at only then. Every answer carries the
//! IETF `RateLimit-Policy` and `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers), one item per scope; the
//! policy depends only on the scopes checked and their budgets, so it is written once per such shape
//! (`PolicyMemo`). Per-tool limits are a step of the pipeline (`pipeline.rs`), not of this layer.

use std::{cell::RefCell, time::Duration};

use axum::{extract::Request, response::Response};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::BodyExt;
use mcpgate_core::Principal;
use mcpgate_policy::ratelimit::{Decision, Limit, Scope, Verdict, status_json};
use serde_json::Value;
use tokio::time::Instant;

use crate::{errors, gateway::Gateway, jsonrpc::Rejection, metrics::RateLimitScope};

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Admit the request or refuse it with 429; either way say how much budget is left.
pub(crate) async fn check<F: Future<Output = Response>>(
    gateway: &Gateway,
    request: Request,
    next: impl FnOnce(Request) -> F,
) -> Response {
    let live = gateway.live_of(request.extensions());
    let Some(limiter) = live.pipeline.rate_limiter().filter(|l| l.limits().limits_requests()) else {
        return next(request).await;
    };
    let principal = crate::auth::principal(request.extensions());
    let verdict = limiter.check_request(&principal, Instant::now()).await;
    let mut response = match verdict.denied() {
        // Over budget, a legacy session may still cancel a call or answer the server: those cost the backends
        // nothing and refusing them would keep work running that the client wants stopped.
        Some(denial)
            if request.method() == http::Method::POST && request.headers().contains_key(SESSION_ID) =>
        {
            match not_a_request(request).await {
                Ok(request) => next(request).await,
                Err(()) => refuse(gateway, &principal, denial),
            }
        }
        Some(denial) => refuse(gateway, &principal, denial),
        None => next(request).await,
    };
    headers(response.headers_mut(), &verdict);
    response
}

/// The request, body restored, when its body is one JSON-RPC notification or response (no more than
/// [`PEEK_LIMIT`] bytes are read); `Err` for anything else: a request, a batch, a bad or larger body.
async fn not_a_request(request: Request) -> Result<Request, ()> {
    #[derive(serde::Deserialize)]
    struct Kind {
        id: Option<serde::de::IgnoredAny>,
        method: Option<serde::de::IgnoredAny>,
    }
    let (parts, body) = request.into_parts();
    let bytes = http_body_util::Limited::new(body, PEEK_LIMIT).collect().await.map_err(|_| ())?.to_bytes();
    match serde_json::from_slice::<Kind>(&bytes) {
        Ok(Kind { id: None, method: Some(_) } | Kind { id: Some(_), method: None }) => {
            Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
        }
        _ => Err(()),
    }
}

/// The largest body read to tell a notification or response from a request when the sender is over budget.
const PEEK_LIMIT: usize = 64 * 1024;

const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// Refuse with 429 for `scope`, whose bucket said `denied`.
fn refuse(gateway: &Gateway, principal: &Principal, (scope, denied): (Scope, Decision)) -> Response {
    gateway.metrics.rate_limited(metric_scope(scope));
    tracing::debug!(
        scope = scope.as_str(), principal = %principal.name, client_ip = principal.client_ip.map(tracing::field::display),
        retry_after_ms = denied.retry_after.as_millis() as u64, "request rate limited"
    );
    too_many_requests(scope, &denied)
}

/// The metrics label of a scope.
fn metric_scope(scope: Scope) -> RateLimitScope {
    match scope {
        Scope::Global => RateLimitScope::Global,
        Scope::Ip => RateLimitScope::Ip,
        Scope::Key => RateLimitScope::Key,
        Scope::Tier => RateLimitScope::Tier,
        Scope::Tool => RateLimitScope::Tool,
        Scope::Resource => RateLimitScope::Resource,
        Scope::Prompt => RateLimitScope::Prompt,
    }
}

/// Whole seconds, rounded up: a client that waits this long finds room.
fn seconds(duration: Duration) -> u64 {
    duration.as_secs().saturating_add(u64::from(duration.subsec_nanos() > 0))
}

/// 429 with `Retry-After` and a JSON-RPC error naming the limit.
fn too_many_requests(scope: Scope, denied: &Decision) -> Response {
    let limit = denied.limit;
    let per = humantime::format_duration(limit.per());
    let retry = seconds(denied.retry_after);
    let message = format!(
        "Too many requests: the {} rate limit ({} per {per}) is exhausted; retry in {retry}s",
        scope.as_str(),
        limit.requests()
    );
    let data = errors::rate_limited_data(scope.as_str(), denied.retry_after);
    Rejection::RateLimited { message, data, retry_after_secs: retry }.into_response()
}

/// `RateLimit-Policy: "global";q=1000;w=60, "key";q=100;w=60` and `RateLimit: "global";r=998;t=1, "key";r=0;t=36`:
/// each checked scope with its quota and window, then what is left of it and the seconds until it is full again.
fn headers(headers: &mut HeaderMap, verdict: &Verdict) {
    if verdict.decisions().is_empty() {
        return;
    }
    if let Some(policy) = POLICIES.with_borrow_mut(|memo| memo.value(verdict)) {
        headers.insert(RATELIMIT_POLICY, policy);
    }
    // Every response carries this one, different each time: written piece by piece, not through `format!`.
    let mut state = String::with_capacity(64);
    for (i, (scope, decision)) in verdict.decisions().iter().enumerate() {
        item(&mut state, i, scope.as_str(), ("r", decision.remaining.into()), ("t", seconds(decision.reset)));
    }
    if let Ok(value) = HeaderValue::try_from(state) {
        headers.insert(RATELIMIT, value);
    }
}

thread_local! {
    /// The `RateLimit-Policy` values this thread wrote last.
    static POLICIES: RefCell<PolicyMemo> = RefCell::default();
}

/// Shapes of checks remembered per thread: a request's is its scopes and their budgets (global, address, key or
/// tier), so a few cover every caller until a reload or another tier.
const POLICY_MEMO: usize = 4;

/// `RateLimit-Policy` by the shape of checks it describes. The value depends on nothing else, so it is written
/// once per shape, not per request; a reload's new budgets are a new shape, and the oldest shape makes room.
#[derive(Default)]
struct PolicyMemo {
    entries: Vec<(Vec<(Scope, Limit)>, HeaderValue)>,
    /// The entry replaced next once all are in use.
    oldest: usize,
}

impl PolicyMemo {
    fn value(&mut self, verdict: &Verdict) -> Option<HeaderValue> {
        let shape = || verdict.decisions().iter().map(|&(scope, decision)| (scope, decision.limit));
        if let Some((_, value)) = self.entries.iter().find(|(known, _)| known.iter().copied().eq(shape())) {
            return Some(value.clone());
        }
        let mut text = String::with_capacity(64);
        for (i, (scope, limit)) in shape().enumerate() {
            item(&mut text, i, scope.as_str(), ("q", limit.requests().into()), ("w", seconds(limit.per())));
        }
        let value = HeaderValue::try_from(text).ok()?;
        let entry = (shape().collect(), value.clone());
        if self.entries.len() < POLICY_MEMO {
            self.entries.push(entry);
        } else {
            self.entries[self.oldest] = entry;
            self.oldest = (self.oldest + 1) % POLICY_MEMO;
        }
        Some(value)
    }
}

/// Append the `index`th item of a RateLimit header: `"name";a=1;b=2`.
fn item(text: &mut String, index: usize, name: &str, (a, a_value): (&str, u64), (b, b_value): (&str, u64)) {
    let mut number = itoa::Buffer::new();
    if index > 0 {
        text.push_str(", ");
    }
    text.extend(["\"", name, "\";", a, "=", number.format(a_value), ";", b, "="]);
    text.push_str(number.format(b_value));
}

/// `/status`'s `rate_limits`: the configured limits and the buckets holding state.
pub(crate) async fn status(gateway: &Gateway) -> Value {
    let live = gateway.live();
    match live.pipeline.rate_limiter() {
        Some(limiter) => limiter.status(Instant::now()).await,
        None => status_json(&live.config.rate_limits, 0),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::{StatusCode, header::RETRY_AFTER};
    use mcpgate_core::Principal;
    use mcpgate_policy::{MemoryStore, RateLimiter, RateLimits};
    use serde_json::json;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn headers_list_every_scope_and_a_refusal_says_when_to_come_back() {
        let config = serde_json::from_value(json!({
            "global": { "requests": 1000, "per": "1m" },
            "per_key": { "requests": 2, "per": "90s" },
        }))
        .unwrap();
        let limiter =
            RateLimiter::new(RateLimits::from_config(&config).unwrap(), Arc::new(MemoryStore::new()));
        let who = Principal::named("ci", "default", &["*".into()]);
        let mut answers = Vec::new();
        for _ in 0..3 {
            let verdict = limiter.check_request(&who, Instant::now()).await;
            let mut map = HeaderMap::new();
            headers(&mut map, &verdict);
            answers.push((verdict.denied(), map["ratelimit-policy"].clone(), map["ratelimit"].clone()));
        }
        assert_eq!(answers[0].1, r#""global";q=1000;w=60, "key";q=2;w=90"#);
        assert_eq!(answers[0].2, r#""global";r=999;t=1, "key";r=1;t=45"#);
        assert_eq!(answers[1].2, r#""global";r=998;t=1, "key";r=0;t=90"#);
        // The refused request took nothing from the global budget.
        assert_eq!(answers[2].2, r#""global";r=998;t=1, "key";r=0;t=90"#);
        let (scope, denied) = answers[2].0.unwrap();
        let response = too_many_requests(scope, &denied);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "45");
    }

    #[tokio::test(start_paused = true)]
    async fn each_shape_of_checks_gets_its_own_policy_past_the_memo() {
        let config = serde_json::from_value(json!({
            "global": { "requests": 1000, "per": "1m" },
            "per_key": { "requests": 2, "per": "90s" },
            "tiers": { "t0": { "requests": 10, "per": "10s" }, "t1": { "requests": 11, "per": "11s" },
                       "t2": { "requests": 12, "per": "12s" }, "t3": { "requests": 13, "per": "13s" },
                       "t4": { "requests": 14, "per": "14s" } },
        }))
        .unwrap();
        let limiter =
            RateLimiter::new(RateLimits::from_config(&config).unwrap(), Arc::new(MemoryStore::new()));
        let policy = async |who: &Principal| {
            let mut map = HeaderMap::new();
            headers(&mut map, &limiter.check_request(who, Instant::now()).await);
            map["ratelimit-policy"].to_str().unwrap().to_owned()
        };
        // Six shapes, more than the memo holds, twice over: each answer is its own shape's.
        for _ in 0..2 {
            for n in 0..5u32 {
                let who = Principal::named(&format!("k{n}"), &format!("t{n}"), &["*".into()]);
                let tier = 10 + n;
                assert_eq!(policy(&who).await, format!(r#""global";q=1000;w=60, "tier";q={tier};w={tier}"#));
            }
            let untiered = Principal::named("plain", "none", &["*".into()]);
            assert_eq!(policy(&untiered).await, r#""global";q=1000;w=60, "key";q=2;w=90"#);
        }
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(seconds(Duration::from_millis(1)), 1);
        assert_eq!(seconds(Duration::from_secs(2)), 2);
        assert_eq!(seconds(Duration::from_millis(2001)), 3);
        assert_eq!(seconds(Duration::ZERO), 0);
        assert_eq!(seconds(Duration::MAX), u64::MAX);
    }
}
