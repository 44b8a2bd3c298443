//! `POST /chat` (`chat.enabled`), behind the door `/mcp` has: `{"message": "…"}` (and any earlier turns as
//! `"history": [{"role", "content"}]`) in; the turn's answer, stop reason, tool calls and token usage out as JSON —
//! or, with `Accept: text/event-stream`, as events while it runs (`text`, `tool_call`, `tool_result`) and a last
//! `done` event with the same JSON.

use std::{convert::Infallible, sync::Arc};

use axum::{
    Router,
    extract::{Request, State},
    response::{IntoResponse, Response, Sse, sse::Event as SseEvent},
};
use futures::StreamExt;
use http::StatusCode;
use serde_json::json;
use tokio::sync::mpsc;

use super::{Chat, ChatMessage, Event};
use crate::{auth, gateway::Gateway, rest};

/// What a client sends.
#[derive(serde::Deserialize)]
struct Ask {
    message: String,
    #[serde(default)]
    history: Vec<ChatMessage>,
}

/// The route, with the chat loop made once from the config (its HTTP client, its API key): when that fails
/// (the key's variable unset), every request is answered 503 with why.
pub(crate) fn route(gateway: &Gateway) -> Router<Arc<Gateway>> {
    let chat = Chat::new(&gateway.config.chat).map(Arc::new);
    if let Err(why) = &chat {
        tracing::warn!("POST /chat cannot ask the LLM: {why}");
    }
    let chat = Arc::new(chat);
    Router::new()
        .route("/chat", axum::routing::post(move |state, request| answer(chat.clone(), state, request)))
}

async fn answer(
    chat: Arc<Result<Arc<Chat>, String>>,
    State(gateway): State<Arc<Gateway>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match rest::read_body(&gateway, body).await {
        Ok(bytes) => bytes,
        Err(refused) => return refused,
    };
    let Ok(Ask { message, history }) = serde_json::from_slice::<Ask>(&bytes) else {
        let message = "send {\"message\": \"…\", \"history\"?: [{\"role\", \"content\"}]}";
        return rest::failure(StatusCode::BAD_REQUEST, json!({ "message": message }));
    };
    let chat = match chat.as_ref() {
        Ok(chat) => chat.clone(),
        Err(why) => {
            let message = format!("the chat's LLM is not configured: {why}");
            return rest::failure(StatusCode::SERVICE_UNAVAILABLE, json!({ "message": message }));
        }
    };
    let principal = auth::principal(&parts.extensions);
    let request_id =
        crate::headers::header(&parts.headers, &crate::headers::X_REQUEST_ID).unwrap_or("chat").to_owned();
    let mut conversation = history;
    conversation.push(ChatMessage::user(message));
    let streamed = crate::headers::header(&parts.headers, http::header::ACCEPT)
        .is_some_and(|a| a.contains("text/event-stream"));
    if !streamed {
        return match chat.turn(&gateway, principal, &request_id, &mut conversation, None).await {
            Ok(turn) => axum::Json(turn).into_response(),
            Err(why) => rest::failure(StatusCode::BAD_GATEWAY, json!({ "message": why })),
        };
    }
    // The turn runs on its own task; its events are the stream, which ends with the turn's summary once the turn
    // has dropped its sender.
    let (events, received) = mpsc::unbounded_channel::<Event>();
    let turn = tokio::spawn(async move {
        chat.turn(&gateway, principal, &request_id, &mut conversation, Some(events)).await
    });
    let during = futures::stream::unfold(received, |mut received| async move {
        let event = received.recv().await?;
        Some((SseEvent::default().event(kind(&event)).json_data(&event), received))
    });
    let done = futures::stream::once(async move {
        match turn.await {
            Ok(Ok(turn)) => SseEvent::default().event("done").json_data(&turn),
            Ok(Err(why)) => SseEvent::default().event("error").json_data(json!({ "message": why })),
            Err(_) => SseEvent::default().event("error").json_data(json!({ "message": "the turn failed" })),
        }
    });
    let events = during.chain(done).map(|event| Ok::<_, Infallible>(event.unwrap_or_default()));
    Sse::new(events).into_response()
}

fn kind(event: &Event) -> &'static str {
    match event {
        Event::Text { .. } => "text",
        Event::ToolCall { .. } => "tool_call",
        Event::ToolResult { .. } => "tool_result",
    }
}
