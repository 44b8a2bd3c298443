//! The Anthropic Messages API (`POST {base_url}/v1/messages`, streamed): the conversation as `user` and
//! `assistant` messages with `tool_use` and `tool_result` blocks, the answer read from its server-sent events
//! (`message_start`, `content_block_start` / `_delta` / `_stop`, `message_delta`, `message_stop`, `error`).

use async_trait::async_trait;
use futures::StreamExt;
use mcpgate_config::ChatConfig;
use serde_json::{Value, json};

use super::{Message, Offered, Provider, Reply, ToolUse};

/// The API version every request names.
const VERSION: &str = "2023-06-01";

pub(super) struct Anthropic {
    client: reqwest::Client,
    url: String,
    key: String,
    model: String,
    max_tokens: u32,
    system: Option<String>,
}

impl Anthropic {
    pub(super) fn new(client: reqwest::Client, config: &ChatConfig, key: String) -> Self {
        Self {
            client,
            url: format!("{}/v1/messages", config.base_url()),
            key,
            model: config.model.clone(),
            max_tokens: config.max_tokens,
            system: config.system.clone(),
        }
    }

    fn body(&self, messages: &[Message], tools: &[Offered]) -> Value {
        let messages: Vec<Value> = messages.iter().filter_map(message).collect();
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| json!({ "name": t.wire, "description": t.description, "input_schema": t.schema }))
            .collect();
        let mut body = json!({
            "model": self.model, "max_tokens": self.max_tokens, "stream": true, "messages": messages,
        });
        if !tools.is_empty() {
            body["tools"] = Value::Array(tools);
        }
        if let Some(system) = &self.system {
            body["system"] = Value::String(system.clone());
        }
        body
    }
}

/// A message in the API's shape; an empty assistant text is left out (the API refuses empty text blocks).
fn message(message: &Message) -> Option<Value> {
    Some(match message {
        Message::User(text) => json!({ "role": "user", "content": text }),
        Message::Assistant { text, calls } => {
            let mut blocks = Vec::new();
            if !text.is_empty() {
                blocks.push(json!({ "type": "text", "text": text }));
            }
            for call in calls {
                blocks.push(
                    json!({ "type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments }),
                );
            }
            if blocks.is_empty() {
                return None;
            }
            json!({ "role": "assistant", "content": blocks })
        }
        Message::Results(results) => {
            let blocks: Vec<Value> = results
                .iter()
                .map(|r| json!({ "type": "tool_result", "tool_use_id": r.id, "content": r.content, "is_error": r.is_error }))
                .collect();
            json!({ "role": "user", "content": blocks })
        }
    })
}

/// A content block being streamed.
enum Block {
    Text,
    Tool { id: String, name: String, json: String },
}

#[async_trait]
impl Provider for Anthropic {
    async fn reply(
        &self,
        messages: &[Message],
        tools: &[Offered],
        text: &(dyn for<'a> Fn(&'a str) + Send + Sync),
    ) -> Result<Reply, String> {
        let request =
            (self.client.post(&self.url)).header("x-api-key", &self.key).header("anthropic-version", VERSION);
        let mut events = super::stream(request, &self.body(messages, tools)).await?;
        let (mut reply, mut blocks) = (Reply::default(), Vec::<Block>::new());
        while let Some(data) = events.next().await {
            let Ok(data) = serde_json::from_str::<Value>(&data?) else { continue };
            match data["type"].as_str().unwrap_or("") {
                "message_start" => {
                    let usage = &data["message"]["usage"];
                    reply.input_tokens += usage["input_tokens"].as_u64().unwrap_or(0);
                    reply.output_tokens += usage["output_tokens"].as_u64().unwrap_or(0);
                }
                "content_block_start" => {
                    let block = &data["content_block"];
                    blocks.push(match block["type"].as_str() {
                        Some("tool_use") => Block::Tool {
                            id: block["id"].as_str().unwrap_or_default().to_owned(),
                            name: block["name"].as_str().unwrap_or_default().to_owned(),
                            json: String::new(),
                        },
                        _ => Block::Text,
                    });
                }
                "content_block_delta" => {
                    let delta = &data["delta"];
                    match (delta["type"].as_str(), blocks.last_mut()) {
                        (Some("text_delta"), _) => {
                            let piece = delta["text"].as_str().unwrap_or("");
                            reply.text.push_str(piece);
                            text(piece);
                        }
                        (Some("input_json_delta"), Some(Block::Tool { json, .. })) => {
                            json.push_str(delta["partial_json"].as_str().unwrap_or(""));
                        }
                        _ => {}
                    }
                }
                "message_delta" => {
                    reply.output_tokens =
                        data["usage"]["output_tokens"].as_u64().unwrap_or(reply.output_tokens)
                }
                "error" => {
                    return Err(format!(
                        "the LLM API failed: {}",
                        data["error"]["message"].as_str().unwrap_or("?")
                    ));
                }
                "message_stop" => break,
                _ => {}
            }
        }
        for block in blocks {
            if let Block::Tool { id, name, json } = block {
                let arguments = super::arguments(&json)?;
                reply.calls.push(ToolUse { id, name, arguments });
            }
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conversation_takes_the_messages_apis_shape() {
        let conversation = crate::chat::one_tool_round("toolu_1");
        let shaped: Vec<Value> = conversation.iter().filter_map(message).collect();
        assert_eq!(shaped[0], json!({"role": "user", "content": "say hi"}));
        assert_eq!(
            shaped[1]["content"][0],
            json!({"type": "tool_use", "id": "toolu_1", "name": "echo", "input": {"message": "hi"}})
        );
        assert_eq!(shaped[2]["content"][0]["type"], "tool_result");
        assert_eq!(shaped[2]["content"][0]["tool_use_id"], "toolu_1");
        assert!(message(&Message::Assistant { text: String::new(), calls: vec![] }).is_none());
    }
}
