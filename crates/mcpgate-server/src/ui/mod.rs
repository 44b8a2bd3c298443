//! The admin page (`ui.enabled`): `/ui` shows what `/status` knows — backends and upstreams with health,
//! protocol, breaker and tool counts, sessions, rate limits, cache, audit, reloads — and the last calls
//! (`recent.rs`), refreshed every two seconds; its playground calls a tool through [`Gateway::dispatch_at`] as
//! the principal `admin` (`surface: admin` in the audit line). Everything under `/ui` needs the admin credential
//! (`ui.admin_key`): HTTP Basic, any user name, so a browser asks for it; or `Authorization: Bearer`.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use mcpgate_config::{KeyHash, KeyHasher};
use mcpgate_core::{Answer, CallContext, JsonObject, ListKind, Operation, Principal, Surface};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::{auth, dispatch::Door, gateway::Gateway, hosts::AllowedHosts, rest};

/// The admin credential, as configured: its hash and what makes the same hash of a presented credential.
pub(crate) struct AdminKey {
    hash: KeyHash,
    hasher: KeyHasher,
}

impl AdminKey {
    /// The key `ui.admin_key` holds (validated at load), salted with `API_KEY_SALT` for `hmac-sha256:`.
    pub(crate) fn of(gateway: &Gateway) -> Option<Self> {
        let config = &gateway.config;
        let hash = config.ui.admin_key.as_deref()?.parse::<KeyHash>().ok()?;
        let salt = config.security.api_key_salt.as_ref().map(|s| s.expose());
        Some(Self { hash, hasher: KeyHasher::new(salt) })
    }

    /// Whether `headers` carry the admin credential (Basic's password, or a bearer token), compared in constant
    /// time.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let presented = basic_password(headers).or_else(|| auth::presented_key(headers).map(str::to_owned));
        let digest = presented.and_then(|key| self.hasher.digest(self.hash.method, &key));
        digest.is_some_and(|d| bool::from(d.ct_eq(&self.hash.digest)))
    }
}

/// HTTP Basic's password (the user name is not checked), which is how a browser sends the credential; scripts
/// send it as the API keys are sent (`Authorization: Bearer`, `x-api-key`).
fn basic_password(headers: &HeaderMap) -> Option<String> {
    let (scheme, encoded) = headers.get(header::AUTHORIZATION)?.to_str().ok()?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, password)| password.to_owned())
}

/// The page and its API, behind the `Host` check and the admin credential; nothing when the page is off.
pub(crate) fn routes(gateway: &Arc<Gateway>) -> Router<Arc<Gateway>> {
    let Some(key) = AdminKey::of(gateway).filter(|_| gateway.config.ui.enabled) else { return Router::new() };
    let (key, hosts) = (Arc::new(key), Arc::new(AllowedHosts::new(&gateway.config.server.allowed_hosts)));
    Router::new()
        .route("/ui", get(|| async { Page }))
        .route("/ui/api/state", get(state))
        .route("/ui/api/tools", get(tools))
        .route("/ui/api/call", post(call))
        .layer(axum::middleware::from_fn(move |req, next| admit(key.clone(), req, next)))
        .layer(axum::middleware::from_fn(move |req, next| crate::rest::host_check(hosts.clone(), req, next)))
}

async fn admit(key: Arc<AdminKey>, request: Request, next: Next) -> Response {
    if key.admits(request.headers()) {
        return next.run(request).await;
    }
    tracing::info!(path = %request.uri().path(), "admin page: request refused (no or a wrong admin credential)");
    let mut refused = (StatusCode::UNAUTHORIZED, "the admin credential is required\n").into_response();
    let challenge = HeaderValue::from_static("Basic realm=\"mcpgate admin\", charset=\"UTF-8\"");
    refused.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
    refused
}

/// The page (no CDN: its script and style are in the file).
struct Page;

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = include_str!("page.html").into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
                 img-src data:; frame-ancestors 'none'",
            ),
        );
        response
    }
}

/// The principal the playground calls as: every tool, resource and prompt; its own rate-limit identity.
fn admin() -> Arc<Principal> {
    Arc::new(Principal::named("admin", "admin", &["*".to_owned()]))
}

async fn state(State(gateway): State<Arc<Gateway>>) -> Response {
    let mut state = crate::ops::status_value(&gateway).await;
    let recent = gateway.recent.as_ref().map_or(Value::Array(Vec::new()), |r| r.to_json());
    state["recent_calls"] = recent;
    axum::Json(state).into_response()
}

async fn tools(State(gateway): State<Arc<Gateway>>) -> Response {
    let cx =
        CallContext { principal: admin(), surface: Surface::Admin, ..CallContext::detached("admin-page") };
    match gateway.dispatch_at(&Door::now(&gateway), cx, Operation::List(ListKind::Tools)).await {
        Ok(Answer::Tools(tools)) => axum::Json(json!({ "tools": tools })).into_response(),
        _ => axum::Json(json!({ "tools": [] })).into_response(),
    }
}

/// `{"name", "arguments"}` of the playground.
#[derive(serde::Deserialize)]
struct Call {
    name: String,
    #[serde(default)]
    arguments: JsonObject,
}

async fn call(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match rest::read_body(&gateway, body).await {
        Ok(bytes) => bytes,
        Err(refused) => return refused,
    };
    let Ok(Call { name, arguments }) = serde_json::from_slice(&bytes) else {
        let message = "give {\"name\": TOOL, \"arguments\": {…}}";
        return rest::failure(StatusCode::BAD_REQUEST, json!({ "message": message }));
    };
    let request_id =
        crate::headers::header(&parts.headers, &crate::headers::X_REQUEST_ID).unwrap_or("admin-page");
    let cx = CallContext { principal: admin(), surface: Surface::Admin, ..CallContext::detached(request_id) };
    match gateway.dispatch_at(&Door::now(&gateway), cx, Operation::CallTool { name, arguments }).await {
        Ok(Answer::Tool(outcome)) => axum::Json(json!({ "result": outcome })).into_response(),
        Ok(_) => rest::failure(StatusCode::INTERNAL_SERVER_ERROR, json!({ "message": "unexpected answer" })),
        Err(error) => rest::error_answer(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn basic_and_bearer_carry_the_credential_and_only_the_right_one_passes() {
        let key = AdminKey { hash: KeyHash::sha256("the-admin-key-0123"), hasher: KeyHasher::new(None) };
        let basic = |user_pass: &str| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(user_pass);
            with_authorization(&format!("Basic {encoded}"))
        };
        assert!(key.admits(&basic("anyone:the-admin-key-0123")));
        assert!(key.admits(&with_authorization("Bearer the-admin-key-0123")));
        assert!(!key.admits(&basic("the-admin-key-0123:wrong")));
        assert!(!key.admits(&with_authorization("Bearer the-admin-key-0124")));
        assert!(!key.admits(&with_authorization("Digest x")));
        assert!(!key.admits(&HeaderMap::new()));
    }
}
