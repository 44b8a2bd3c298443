//! OpenAI-compatible chat completions (`POST {base_url}/chat/completions`, streamed): the conversation as
//! `system` / `user` / `assistant` (with `tool_calls`) / `tool` messages; the answer read from `data:` chunks of
//! `choices[0].delta` (text and partial tool calls by index), the usage chunk, and `[DONE]`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::StreamExt;
use mcpgate_config::ChatConfig;
use serde_json::{Value, json};

use super::{Message, Offered, Provider, Reply, ToolUse};

pub(super) struct OpenAi {
    client: reqwest::Client,
    url: String,
    key: Option<String>,
    model: String,
    max_tokens: u32,
    system: Option<String>,
}

impl OpenAi {
    pub(super) fn new(client: reqwest::Client, config: &ChatConfig, key: Option<String>) -> Self {
        Self {
            client,
            url: format!("{}/chat/completions", config.base_url()),
            key,
            model: config.model.clone(),
            max_tokens: config.max_tokens,
            system: config.system.clone(),
        }
    }

    fn body(&self, messages: &[Message], tools: &[Offered]) -> Value {
        let mut shaped: Vec<Value> =
            self.system.iter().map(|s| json!({ "role": "system", "content": s })).collect();
        for message in messages {
            match message {
                Message::User(text) => shaped.push(json!({ "role": "user", "content": text })),
                Message::Assistant { text, calls } => {
                    let mut assistant = json!({ "role": "assistant", "content": text });
                    if !calls.is_empty() {
                        let calls: Vec<Value> = calls
                            .iter()
                            .map(|c| {
                                json!({ "id": c.id, "type": "function",
                                "function": { "name": c.name, "arguments": c.arguments.to_string() } })
                            })
                            .collect();
                        assistant["tool_calls"] = Value::Array(calls);
                    }
                    shaped.push(assistant);
                }
                Message::Results(results) => shaped.extend(
                    results
                        .iter()
                        .map(|r| json!({ "role": "tool", "tool_call_id": r.id, "content": r.content })),
                ),
            }
        }
        let mut body = json!({
            "model": self.model, "max_tokens": self.max_tokens, "stream": true,
            "stream_options": { "include_usage": true }, "messages": shaped,
        });
        if !tools.is_empty() {
            let tools: Vec<Value> = tools
                .iter()
                .map(|t| {
                    json!({ "type": "function",
                    "function": { "name": t.wire, "description": t.description, "parameters": t.schema } })
                })
                .collect();
            body["tools"] = Value::Array(tools);
        }
        body
    }
}

/// A tool call being streamed, by its index.
#[derive(Default)]
struct Partial {
    id: String,
    name: String,
    arguments: String,
}

#[async_trait]
impl Provider for OpenAi {
    async fn reply(
        &self,
        messages: &[Message],
        tools: &[Offered],
        text: &(dyn for<'a> Fn(&'a str) + Send + Sync),
    ) -> Result<Reply, String> {
        let mut request = self.client.post(&self.url);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let mut events = super::stream(request, &self.body(messages, tools)).await?;
        let (mut reply, mut partial) = (Reply::default(), BTreeMap::<u64, Partial>::new());
        while let Some(data) = events.next().await {
            let data = data?;
            if data.trim() == "[DONE]" {
                break;
            }
            let Ok(chunk) = serde_json::from_str::<Value>(&data) else { continue };
            if let Some(error) = chunk.get("error") {
                return Err(format!("the LLM API failed: {}", error["message"].as_str().unwrap_or("?")));
            }
            if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
                reply.input_tokens = usage["prompt_tokens"].as_u64().unwrap_or(0);
                reply.output_tokens = usage["completion_tokens"].as_u64().unwrap_or(0);
            }
            let delta = &chunk["choices"][0]["delta"];
            if let Some(piece) = delta["content"].as_str().filter(|p| !p.is_empty()) {
                reply.text.push_str(piece);
                text(piece);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let slot = partial.entry(call["index"].as_u64().unwrap_or(0)).or_default();
                if let Some(id) = call["id"].as_str() {
                    slot.id = id.to_owned();
                }
                if let Some(name) = call["function"]["name"].as_str() {
                    slot.name.push_str(name);
                }
                if let Some(arguments) = call["function"]["arguments"].as_str() {
                    slot.arguments.push_str(arguments);
                }
            }
        }
        for (_, Partial { id, name, arguments }) in partial {
            let arguments = super::arguments(&arguments)?;
            reply.calls.push(ToolUse { id, name, arguments });
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conversation_takes_the_chat_completions_shape() {
        let config = ChatConfig { system: Some("be brief".into()), ..ChatConfig::default() };
        let api = OpenAi::new(reqwest::Client::new(), &config, None);
        let conversation = crate::chat::one_tool_round("call_1");
        let tools =
            [Offered { wire: "echo".into(), description: "Echo".into(), schema: json!({"type": "object"}) }];
        let body = api.body(&conversation, &tools);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(messages[2]["tool_calls"][0]["function"]["arguments"], r#"{"message":"hi"}"#);
        assert_eq!(messages[3], json!({"role": "tool", "tool_call_id": "call_1", "content": "hi"}));
        assert_eq!(body["tools"][0]["function"]["name"], "echo");
        assert_eq!(body["stream_options"]["include_usage"], true);
    }
}
