//! The chat loop: a user's message goes to an LLM with the tools the caller may use offered; each tool call the
//! LLM makes runs through `Gateway::dispatch_at` as that caller (authorization, limits, audit with
//! `surface: chat`, metrics: the pipeline's), its result goes back, and the loop goes on until the LLM answers —
//! within `chat.max_steps` LLM requests and `chat.token_budget` tokens. `POST /chat` (`route.rs`) and `mcpgate
//! chat` both run [`Chat::turn`]. The providers' wire formats are in `anthropic.rs` and `openai.rs`.

mod anthropic;
mod openai;
pub(crate) mod route;

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use mcpgate_config::{ChatConfig, ChatProvider};
use mcpgate_core::{Answer, CallContext, ListKind, Operation, Principal, Surface, ToolDef};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{dispatch::Door, gateway::Gateway};

/// One message of a conversation, in neither provider's format.
#[derive(Debug, Clone)]
pub(crate) enum Message {
    /// What the user said.
    User(String),
    /// What the LLM said: text, and the tools it asked to call.
    Assistant { text: String, calls: Vec<ToolUse> },
    /// The results of the assistant's last tool calls.
    Results(Vec<ToolResult>),
}

/// A tool call the LLM asked for, under the tool's wire name.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ToolUse {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

/// What a tool call gave, as text for the LLM.
#[derive(Debug, Clone)]
pub(crate) struct ToolResult {
    pub id: String,
    pub content: String,
    pub is_error: bool,
}

/// A tool as the LLM is offered it: a name its API accepts (`[A-Za-z0-9_-]{1,64}`), the description and schema.
pub(crate) struct Offered {
    pub wire: String,
    pub description: String,
    pub schema: Value,
}

/// One LLM reply.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    pub text: String,
    pub calls: Vec<ToolUse>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// What happens during a turn, for a client that streams it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A piece of the LLM's text, as it arrives.
    Text {
        /// The piece.
        text: String,
    },
    /// The LLM called a tool.
    ToolCall {
        /// The tool's gateway name.
        name: String,
        /// What the LLM passed.
        arguments: Value,
    },
    /// The call's result, as the LLM gets it.
    ToolResult {
        /// The tool's gateway name.
        name: String,
        /// Whether it failed (a tool error, or the gateway's refusal).
        is_error: bool,
        /// Its text.
        content: String,
    },
}

/// An LLM API speaking one wire format.
#[async_trait]
pub(crate) trait Provider: Send + Sync {
    /// Ask for the next reply to `messages`, streaming its text to `text` as it comes.
    async fn reply(
        &self,
        messages: &[Message],
        tools: &[Offered],
        text: &(dyn for<'a> Fn(&'a str) + Send + Sync),
    ) -> Result<Reply, String>;
}

/// Why a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// The LLM answered.
    Answered,
    /// `chat.max_steps` LLM requests were made without an answer.
    MaxSteps,
    /// `chat.token_budget` was spent.
    TokenBudget,
}

/// A finished turn.
#[derive(Debug, Serialize)]
pub struct Turn {
    /// The LLM's last text.
    pub answer: String,
    /// Why it ended.
    pub stop: Stop,
    /// LLM requests made.
    pub steps: u32,
    /// The tool calls made, in order.
    pub tool_calls: Vec<Value>,
    /// Tokens the LLM counted, over every request.
    pub usage: Value,
}

/// The chat loop of one configuration.
pub struct Chat {
    config: ChatConfig,
    provider: Box<dyn Provider>,
}

impl Chat {
    /// The loop `config` describes; its API key is read from the environment now.
    pub fn new(config: &ChatConfig) -> Result<Self, String> {
        let key = std::env::var(config.api_key_env()).ok().filter(|k| !k.is_empty());
        let client = reqwest::Client::builder()
            .timeout(config.timeout.0)
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        let provider: Box<dyn Provider> = match config.provider {
            ChatProvider::Anthropic => {
                let key = key.ok_or_else(|| format!("{} is not set", config.api_key_env()))?;
                Box::new(anthropic::Anthropic::new(client, config, key))
            }
            ChatProvider::Openai => Box::new(openai::OpenAi::new(client, config, key)),
        };
        Ok(Self { config: config.clone(), provider })
    }

    /// Run one turn of `conversation` (its last message the user's) for `principal`, sending `events` as it
    /// goes; the messages it adds are appended to `conversation`.
    pub async fn turn(
        &self,
        gateway: &Arc<Gateway>,
        principal: Arc<Principal>,
        request_id: &str,
        conversation: &mut Vec<ChatMessage>,
        events: Option<mpsc::UnboundedSender<Event>>,
    ) -> Result<Turn, String> {
        let cx = || CallContext {
            principal: principal.clone(),
            surface: Surface::Chat,
            ..CallContext::detached(request_id)
        };
        let door = Door::now(gateway);
        let tools = match gateway.dispatch_at(&door, cx(), Operation::List(ListKind::Tools)).await {
            Ok(Answer::Tools(tools)) => tools,
            _ => Vec::new(),
        };
        let (offered, names) = offer(&tools);
        let mut messages: Vec<Message> = conversation.iter().map(ChatMessage::to_message).collect();
        let (mut input, mut output, mut calls) = (0u64, 0u64, Vec::new());
        let send = |event: Event| {
            if let Some(events) = &events {
                let _ = events.send(event);
            }
        };
        let on_text = |piece: &str| send(Event::Text { text: piece.to_owned() });
        let mut steps = 0;
        let (answer, stop) = loop {
            if steps == self.config.max_steps {
                break (String::new(), Stop::MaxSteps);
            }
            steps += 1;
            let reply = self.provider.reply(&messages, &offered, &on_text).await?;
            (input, output) = (input + reply.input_tokens, output + reply.output_tokens);
            let Reply { text, calls: uses, .. } = reply;
            messages.push(Message::Assistant { text: text.clone(), calls: uses.clone() });
            conversation.push(ChatMessage { role: "assistant".into(), content: text.clone() });
            if uses.is_empty() {
                break (text, Stop::Answered);
            }
            if input + output >= self.config.token_budget {
                break (text, Stop::TokenBudget);
            }
            let mut results = Vec::new();
            for used in uses {
                let name = names.get(&used.name).cloned().unwrap_or_else(|| used.name.clone());
                send(Event::ToolCall { name: name.clone(), arguments: used.arguments.clone() });
                let arguments = used.arguments.as_object().cloned().unwrap_or_default();
                let op = Operation::CallTool { name: name.clone(), arguments };
                let (content, is_error) = match gateway.dispatch_at(&door, cx(), op).await {
                    Ok(Answer::Tool(outcome)) => {
                        (result_text(&outcome.content, outcome.structured_content.as_ref()), outcome.is_error)
                    }
                    Ok(_) => ("unexpected answer".to_owned(), true),
                    Err(error) => (error.to_string(), true),
                };
                send(Event::ToolResult { name: name.clone(), is_error, content: content.clone() });
                calls.push(json!({ "name": name, "arguments": used.arguments, "is_error": is_error }));
                results.push(ToolResult { id: used.id, content, is_error });
            }
            messages.push(Message::Results(results));
        };
        let usage = json!({ "input_tokens": input, "output_tokens": output });
        Ok(Turn { answer, stop, steps, tool_calls: calls, usage })
    }
}

/// Send an LLM request with `body` and give the `data` of each server-sent event of its streamed answer; an
/// answer that is not a success is the API's error message.
async fn stream(
    request: reqwest::RequestBuilder,
    body: &Value,
) -> Result<impl futures::Stream<Item = Result<String, String>> + Unpin + use<>, String> {
    use futures::StreamExt;
    let response = (request.header("accept", "text/event-stream").json(body).send().await)
        .map_err(|e| format!("the LLM API cannot be reached: {}", e.without_url()))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| body.chars().take(300).collect());
        return Err(format!("the LLM API answered {status}: {message}"));
    }
    let events = sse_stream::SseStream::from_bytes_stream(response.bytes_stream());
    Ok(events
        .filter_map(|event| async move {
            match event {
                Ok(event) => event.data.map(Ok),
                Err(e) => Some(Err(format!("the LLM's event stream broke: {e}"))),
            }
        })
        .boxed())
}

/// A tool call's arguments as the LLM streamed them (JSON text in pieces); none at all is `{}`.
fn arguments(json: &str) -> Result<Value, String> {
    if json.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(json).map_err(|e| format!("the LLM's tool arguments are not JSON: {e}"))
}

/// Who a local chat (`mcpgate chat`) calls tools as: the principal stdio has (anonymous, in the configured mode).
pub fn local_principal(gateway: &Gateway) -> Arc<Principal> {
    Arc::new(gateway.live().access.local())
}

/// A conversation message as clients send and receive it: `user` or `assistant` text.
#[derive(Debug, Clone, serde::Deserialize, Serialize)]
pub struct ChatMessage {
    /// `user` or `assistant`.
    pub role: String,
    /// Its text.
    pub content: String,
}

impl ChatMessage {
    /// The user's `text`.
    pub fn user(text: impl Into<String>) -> Self {
        Self { role: "user".into(), content: text.into() }
    }

    fn to_message(&self) -> Message {
        match self.role.as_str() {
            "assistant" => Message::Assistant { text: self.content.clone(), calls: Vec::new() },
            _ => Message::User(self.content.clone()),
        }
    }
}

/// The tools as offered, and the way back from a wire name to the gateway's.
fn offer(tools: &[ToolDef]) -> (Vec<Offered>, BTreeMap<String, String>) {
    let mut names = BTreeMap::new();
    let mut offered = Vec::new();
    for tool in tools {
        let mut wire: String =
            tool.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        wire.truncate(64);
        let mut n = 1;
        while names.contains_key(&wire) {
            n += 1;
            let suffix = format!("_{n}");
            wire.truncate(64 - suffix.len());
            wire.push_str(&suffix);
        }
        names.insert(wire.clone(), tool.name.clone());
        offered.push(Offered {
            wire,
            description: tool.description.clone().unwrap_or_default(),
            schema: Value::Object((*tool.input_schema).clone()),
        });
    }
    (offered, names)
}

/// A tool's result as text: its text items, other items named, or its structured content as JSON.
fn result_text(content: &[Value], structured: Option<&Value>) -> String {
    let parts: Vec<String> = content
        .iter()
        .map(|item| match item.get("text").and_then(Value::as_str) {
            Some(text) => text.to_owned(),
            None => format!("[{} content]", item.get("type").and_then(Value::as_str).unwrap_or("other")),
        })
        .collect();
    match (parts.is_empty(), structured) {
        (true, Some(structured)) => structured.to_string(),
        _ => parts.join("\n"),
    }
}

/// A user message, the assistant's call of `echo` under `id`, and its result: what both wire formats' tests shape.
#[cfg(test)]
pub(super) fn one_tool_round(id: &str) -> [Message; 3] {
    let call = ToolUse { id: id.into(), name: "echo".into(), arguments: json!({"message": "hi"}) };
    [
        Message::User("say hi".into()),
        Message::Assistant { text: String::new(), calls: vec![call] },
        Message::Results(vec![ToolResult { id: id.into(), content: "hi".into(), is_error: false }]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_become_names_an_llm_api_takes_and_map_back() {
        let tool = |name: &str| -> ToolDef {
            serde_json::from_value(json!({"name": name, "inputSchema": {}})).unwrap()
        };
        let (offered, names) = offer(&[tool("up__echo"), tool("a.b"), tool("a_b"), tool(&"x".repeat(80))]);
        let wire: Vec<&str> = offered.iter().map(|o| o.wire.as_str()).collect();
        assert_eq!(&wire[..3], ["up__echo", "a_b", "a_b_2"]);
        assert_eq!(wire[3].len(), 64);
        assert_eq!(names["a_b"], "a.b");
        assert_eq!(names["a_b_2"], "a_b");
    }

    #[test]
    fn results_are_text_for_the_llm() {
        let content = [json!({"type": "text", "text": "one"}), json!({"type": "image", "data": "AA"})];
        assert_eq!(result_text(&content, None), "one\n[image content]");
        assert_eq!(result_text(&[], Some(&json!({"sum": 3}))), r#"{"sum":3}"#);
    }
}
