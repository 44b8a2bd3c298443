//! `POST /chat` (`chat.enabled`), behind the door `/mcp` has: `{"message": "…"}` (and any earlier turns as
//! `"history": [{"role", "content"}]`) in; the turn's answer, stop reason, tool calls and token usage out as JSON —
//! or, with `Accept: text/event-stream`, as events while it runs (`text`, `tool_call`, `tool_result`) and a last
//! `done` event with the same JSON.

use std::{convert::Infallible, sync::Arc};

use axum::{
    extract::{Request, State},
    response::{IntoResponse, Response, Sse, sse::Event as SseEvent},
};
use http::StatusCode;
use serde_json::json;
use tokio::sync::mpsc;

use super::{Chat, ChatMessage, Event};
use crate::{auth, gateway::Gateway};

/// What a client sends.
#[derive(serde::Deserialize)]
struct Ask {
    message: String,
    #[serde(default)]
    history: Vec<ChatMessage>,
}

fn failure(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": { "message": message } }))).into_response()
}

pub(crate) async fn chat(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let limit = usize::try_from(gateway.config.server.max_request_size.0).unwrap_or(usize::MAX);
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return failure(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {limit} bytes"));
    };
    let Ok(Ask { message, history }) = serde_json::from_slice::<Ask>(&bytes) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "send {\"message\": \"…\", \"history\"?: [{\"role\", \"content\"}]}".into(),
        );
    };
    let chat = match Chat::new(&gateway.config.chat) {
        Ok(chat) => Arc::new(chat),
        Err(why) => {
            return failure(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the chat's LLM is not configured: {why}"),
            );
        }
    };
    let principal = auth::principal(&parts.extensions);
    let request_id = crate::fast::header(&parts.headers, "x-request-id").unwrap_or("chat").to_owned();
    let mut conversation = history;
    conversation.push(ChatMessage::user(message));
    let streamed =
        crate::fast::header(&parts.headers, "accept").is_some_and(|a| a.contains("text/event-stream"));
    if !streamed {
        return match chat.turn(&gateway, principal, &request_id, &mut conversation, None).await {
            Ok(turn) => axum::Json(turn).into_response(),
            Err(why) => failure(StatusCode::BAD_GATEWAY, why),
        };
    }
    let (events, mut received) = mpsc::unbounded_channel::<Event>();
    let (out, stream) = mpsc::unbounded_channel::<Result<SseEvent, Infallible>>();
    tokio::spawn(async move {
        let forward = out.clone();
        let relay = tokio::spawn(async move {
            while let Some(event) = received.recv().await {
                let _ = forward
                    .send(Ok(SseEvent::default().event(kind(&event)).json_data(&event).unwrap_or_default()));
            }
        });
        let turn = chat.turn(&gateway, principal, &request_id, &mut conversation, Some(events)).await;
        let _ = relay.await;
        let last = match turn {
            Ok(turn) => SseEvent::default().event("done").json_data(&turn),
            Err(why) => SseEvent::default().event("error").json_data(json!({ "message": why })),
        };
        let _ = out.send(Ok(last.unwrap_or_default()));
    });
    Sse::new(tokio_stream_of(stream)).into_response()
}

fn kind(event: &Event) -> &'static str {
    match event {
        Event::Text { .. } => "text",
        Event::ToolCall { .. } => "tool_call",
        Event::ToolResult { .. } => "tool_result",
    }
}

/// The receiver as a stream of events, ending when the sender is dropped.
fn tokio_stream_of<T: Send + 'static>(
    mut receiver: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
