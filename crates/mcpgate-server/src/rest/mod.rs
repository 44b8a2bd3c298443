//! The REST facade (`rest.enabled`): the catalogue as plain HTTP for software that does not speak MCP.
//! `POST /api/tools/{name}` takes the arguments as its JSON body; resources and prompts have their own routes;
//! `GET /openapi.json` describes what the caller may use. Each request passes the same door as `/mcp` (the
//! `Host` check here, then the key or token and the request rate limits, layered in `http.rs`) and each operation
//! goes through [`Gateway::dispatch_at`] as the caller: authorization, limits, validation, cache, breaker,
//! timeouts, budget, audit (`surface: rest`) and metrics are the pipeline's, not this module's.
//!
//! Answers: 200 with the result (below); every failure is a JSON body `{"error": {"code"?, "message", "data"?}}`
//! (the door's refusals are JSON-RPC error objects of the same shape) with the status of [`status_of`], the table
//! in `docs/errors.md`.

mod openapi;

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    extract::{Path, Query, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use http::{HeaderValue, StatusCode, header};
use mcpgate_core::{
    Answer, BackendError, Blame, CallContext, JsonObject, ListKind, Operation, PromptDef, Surface, ToolDef,
    ToolOutcome,
};
use serde_json::{Value, json};

use crate::{
    auth, dispatch::Door, errors::to_jsonrpc, gateway::Gateway, headers::header as header_str,
    hosts::AllowedHosts,
};

/// The facade's routes, to be put behind the door's layers; `/docs` is added outside them by [`docs`].
pub(crate) fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/api/tools", get(list_tools))
        .route("/api/tools/{name}", post(call_tool))
        .route("/api/resources", get(list_resources))
        .route("/api/resources/read", get(read_resource))
        .route("/api/prompts", get(list_prompts))
        .route("/api/prompts/{name}", post(get_prompt))
        .route("/openapi.json", get(openapi::document))
}

/// The documentation page: static, bundled, no credential needed to load it (it asks for one to call).
pub(crate) fn docs() -> Router<Arc<Gateway>> {
    Router::new().route("/docs", get(|| async { DocsPage }))
}

/// The page `/docs` serves (no CDN: everything it runs is in this file).
struct DocsPage;

impl IntoResponse for DocsPage {
    fn into_response(self) -> Response {
        let mut response = include_str!("docs.html").into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        // The page's own script and style only; it talks to this origin alone.
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
        );
        response
    }
}

/// The `Host` check `/mcp` has, for the facade: a browser page on a rebinding domain gets 403.
pub(crate) async fn host_check(hosts: Arc<AllowedHosts>, request: Request, next: Next) -> Response {
    if hosts.admit(request.headers()) {
        return next.run(request).await;
    }
    let host = header_str(request.headers(), "host").unwrap_or("").to_owned();
    failure(StatusCode::FORBIDDEN, json!({ "message": format!("Forbidden: Host {host:?} is not allowed") }))
}

/// A failure answer: `{"error": error}` with `status`.
pub(crate) fn failure(status: StatusCode, error: Value) -> Response {
    (status, axum::Json(json!({ "error": error }))).into_response()
}

/// The HTTP status of an operation that failed, one per kind of failure (`docs/errors.md`). A tool that ran and
/// reported an error is not here: it is 422 (see [`tool_answer`]).
pub(crate) fn status_of(error: &BackendError) -> StatusCode {
    match error {
        BackendError::NotFound { .. } => StatusCode::NOT_FOUND,
        BackendError::InvalidArguments(_) => StatusCode::BAD_REQUEST,
        BackendError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        BackendError::Unavailable { .. } | BackendError::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        BackendError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        // The tool needs the client (sampling, elicitation, roots): plain HTTP has no way back.
        BackendError::InputRequired
        | BackendError::ClientRequest(_)
        | BackendError::MissingClientCapability { .. } => StatusCode::NOT_IMPLEMENTED,
        BackendError::Failed { blame: Blame::Upstream, .. } => StatusCode::BAD_GATEWAY,
        BackendError::Failed { blame: Blame::Client, .. } => StatusCode::BAD_REQUEST,
        BackendError::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The answer to a failed operation: its status, the JSON-RPC error object `/mcp` would send, and for a rate
/// limit `Retry-After`.
pub(crate) fn error_answer(error: &BackendError) -> Response {
    let mut response = failure(status_of(error), serde_json::to_value(to_jsonrpc(error)).unwrap_or_default());
    if let BackendError::RateLimited { retry_after, .. } = error {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

/// A tool's outcome as REST: 200 with `structuredContent` when the tool gave one, else its content — one item
/// alone, text that is JSON parsed (as mcpo does), images, audio and embedded resources as their objects.
/// A tool that reported an error: 422, its text as the message and its content in `data`.
fn tool_answer(outcome: ToolOutcome) -> Response {
    if outcome.is_error {
        let text = outcome.content.iter().filter_map(|c| c.get("text").and_then(Value::as_str));
        let message = text.collect::<Vec<_>>().join("\n");
        let data = json!({ "kind": "tool_error", "content": outcome.content });
        return failure(StatusCode::UNPROCESSABLE_ENTITY, json!({ "message": message, "data": data }));
    }
    let body = match outcome.structured_content {
        Some(structured) => structured,
        None => {
            let mut items: Vec<Value> = outcome.content.into_iter().map(item).collect();
            match items.len() {
                0 => Value::Null,
                1 => items.remove(0),
                _ => Value::Array(items),
            }
        }
    };
    axum::Json(body).into_response()
}

/// A content item as REST: text as the JSON it holds, or as a string; every other item as it is.
fn item(content: Value) -> Value {
    match content.get("type").and_then(Value::as_str) {
        Some("text") => {
            let text = content.get("text").and_then(Value::as_str).unwrap_or("");
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
        }
        _ => content,
    }
}

/// What every handler starts from: the caller as the door admitted it, and the catalogue and configuration of
/// the moment.
struct Caller {
    cx: CallContext,
    door: Door<'static>,
}

impl Caller {
    fn of(gateway: &Gateway, parts: &http::request::Parts) -> Self {
        let request_id = header_str(&parts.headers, "x-request-id").unwrap_or("");
        let cx = CallContext {
            principal: auth::principal(&parts.extensions),
            surface: Surface::Rest,
            ..CallContext::detached(request_id)
        };
        Self { cx, door: Door::of(gateway.live_of(&parts.extensions), gateway.registry()) }
    }

    async fn run(self, gateway: &Gateway, op: Operation) -> Result<Answer, BackendError> {
        gateway.dispatch_at(&self.door, self.cx, op).await
    }

    /// The caller's view of the catalogue, one kind of item as JSON (listing never fails).
    async fn list(self, gateway: &Gateway, kind: ListKind) -> Value {
        let listed = match self.run(gateway, Operation::List(kind)).await {
            Ok(Answer::Tools(items)) => serde_json::to_value(items),
            Ok(Answer::Resources(items)) => serde_json::to_value(items),
            Ok(Answer::ResourceTemplates(items)) => serde_json::to_value(items),
            Ok(Answer::Prompts(items)) => serde_json::to_value(items),
            _ => Ok(Value::Array(Vec::new())),
        };
        listed.unwrap_or_default()
    }

    /// The tools and prompts the caller may use, for its OpenAPI document.
    async fn tools_and_prompts(
        gateway: &Gateway,
        parts: &http::request::Parts,
    ) -> (Vec<ToolDef>, Vec<PromptDef>) {
        let run = |kind| Self::of(gateway, parts).run(gateway, Operation::List(kind));
        let tools = match run(ListKind::Tools).await {
            Ok(Answer::Tools(tools)) => tools,
            _ => Vec::new(),
        };
        let prompts = match run(ListKind::Prompts).await {
            Ok(Answer::Prompts(prompts)) => prompts,
            _ => Vec::new(),
        };
        (tools, prompts)
    }
}

/// The caller, and the request's body as the arguments of a call or prompt.
async fn arguments(gateway: &Gateway, request: Request) -> Result<(Caller, JsonObject), Response> {
    let (parts, body) = request.into_parts();
    let arguments = object_body(gateway, body).await?;
    Ok((Caller::of(gateway, &parts), arguments))
}

/// A request body for the surfaces beside `/mcp` (the facade, the chat, the admin page's playground), within
/// `server.max_request_size` (413) and `body_read_timeout` (408), as the edge holds `/mcp`'s.
pub(crate) async fn read_body(gateway: &Gateway, body: Body) -> Result<bytes::Bytes, Response> {
    let server = &gateway.config.server;
    let limit = usize::try_from(server.max_request_size.0).unwrap_or(usize::MAX);
    let read = tokio::time::timeout(server.body_read_timeout.0, axum::body::to_bytes(body, limit));
    match read.await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => {
            let message = format!("the body is over server.max_request_size ({limit} bytes), or broken");
            Err(failure(StatusCode::PAYLOAD_TOO_LARGE, json!({ "message": message })))
        }
        Err(_) => {
            let message = "the body did not arrive within server.body_read_timeout";
            Err(failure(StatusCode::REQUEST_TIMEOUT, json!({ "message": message })))
        }
    }
}

/// The body as a JSON object ([`read_body`]); an empty body is `{}`.
async fn object_body(gateway: &Gateway, body: Body) -> Result<JsonObject, Response> {
    let bytes = read_body(gateway, body).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(JsonObject::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(failure(
            StatusCode::BAD_REQUEST,
            json!({ "message": "the body must be a JSON object (the arguments by name)" }),
        )),
        Err(e) => {
            Err(failure(StatusCode::BAD_REQUEST, json!({ "message": format!("the body is not JSON: {e}") })))
        }
    }
}

async fn call_tool(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let (caller, arguments) = match arguments(&gateway, request).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    match caller.run(&gateway, Operation::CallTool { name, arguments }).await {
        Ok(Answer::Tool(outcome)) => tool_answer(outcome),
        Ok(_) => failure(StatusCode::INTERNAL_SERVER_ERROR, json!({ "message": "unexpected answer" })),
        Err(error) => error_answer(&error),
    }
}

async fn get_prompt(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let (caller, arguments) = match arguments(&gateway, request).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    // Prompt arguments are strings on the wire.
    if let Some((name, _)) = arguments.iter().find(|(_, value)| !value.is_string()) {
        let message = format!("prompt argument {name:?} must be a string");
        return failure(StatusCode::BAD_REQUEST, json!({ "message": message }));
    }
    match caller.run(&gateway, Operation::GetPrompt { name, arguments }).await {
        Ok(Answer::Prompt(result)) => axum::Json(result).into_response(),
        Ok(_) => failure(StatusCode::INTERNAL_SERVER_ERROR, json!({ "message": "unexpected answer" })),
        Err(error) => error_answer(&error),
    }
}

/// `?uri=` of `GET /api/resources/read`.
#[derive(serde::Deserialize)]
struct ReadQuery {
    uri: String,
}

async fn read_resource(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let Ok(Query(ReadQuery { uri })) = Query::<ReadQuery>::try_from_uri(&parts.uri) else {
        return failure(StatusCode::BAD_REQUEST, json!({ "message": "give the resource as ?uri=URI" }));
    };
    let caller = Caller::of(&gateway, &parts);
    match caller.run(&gateway, Operation::ReadResource { uri }).await {
        Ok(Answer::Resource(result)) => axum::Json(result).into_response(),
        Ok(_) => failure(StatusCode::INTERNAL_SERVER_ERROR, json!({ "message": "unexpected answer" })),
        Err(error) => error_answer(&error),
    }
}

async fn list_tools(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let tools = Caller::of(&gateway, &parts).list(&gateway, ListKind::Tools).await;
    axum::Json(json!({ "tools": tools })).into_response()
}

async fn list_resources(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let resources = Caller::of(&gateway, &parts).list(&gateway, ListKind::Resources).await;
    let templates = Caller::of(&gateway, &parts).list(&gateway, ListKind::ResourceTemplates).await;
    axum::Json(json!({ "resources": resources, "resourceTemplates": templates })).into_response()
}

async fn list_prompts(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let prompts = Caller::of(&gateway, &parts).list(&gateway, ListKind::Prompts).await;
    axum::Json(json!({ "prompts": prompts })).into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn text_that_is_json_is_parsed_and_one_item_stands_alone() {
        assert_eq!(item(json!({"type": "text", "text": "{\"a\": 1}"})), json!({"a": 1}));
        assert_eq!(item(json!({"type": "text", "text": "plain"})), json!("plain"));
        let image = json!({"type": "image", "mimeType": "image/png", "data": "AA=="});
        assert_eq!(item(image.clone()), image);
    }

    #[test]
    fn every_failure_has_its_status() {
        let unavailable = BackendError::unavailable("b", "down");
        assert_eq!(status_of(&unavailable), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of(&BackendError::Timeout(Duration::from_secs(1))), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(status_of(&BackendError::InputRequired), StatusCode::NOT_IMPLEMENTED);
        let limited = BackendError::RateLimited { scope: "tool", retry_after: Duration::from_millis(1500) };
        let response = error_answer(&limited);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let upstream =
            BackendError::Failed { backend: "b".into(), message: "boom".into(), blame: Blame::Upstream };
        assert_eq!(status_of(&upstream), StatusCode::BAD_GATEWAY);
    }
}
