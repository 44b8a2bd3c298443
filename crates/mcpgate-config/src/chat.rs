//! `chat`: a user message to an LLM with the gateway's tools offered, its tool calls run through the gateway as
//! the caller — `POST /chat` and `mcpgate chat`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Config, HumanDuration, validate::Problem};

/// Which wire format the LLM speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChatProvider {
    /// The Anthropic Messages API (`POST {base_url}/v1/messages`, `x-api-key`).
    #[default]
    Anthropic,
    /// Any OpenAI-compatible chat-completions endpoint (`POST {base_url}/chat/completions`, `Authorization:
    /// Bearer`): OpenAI, and local servers such as llama.cpp, vLLM or Ollama.
    Openai,
}

/// The chat loop: `POST /chat` (behind the same door as `/mcp`) when enabled, and `mcpgate chat` in a terminal.
/// Each turn offers the LLM the tools the caller may use (code mode's, for a caller in code mode) and runs its
/// tool calls through the gateway's dispatch as that caller, until it answers — within `max_steps` LLM requests
/// and `token_budget` tokens. Read at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// Serve `POST /chat` (`CHAT_ENABLED`). `mcpgate chat` works without it.
    pub enabled: bool,
    /// The wire format (`CHAT_PROVIDER`): `anthropic` or `openai`.
    pub provider: ChatProvider,
    /// The model asked (`CHAT_MODEL`).
    pub model: String,
    /// The API's base URL (`CHAT_BASE_URL`). Unset: `https://api.anthropic.com`, or `https://api.openai.com/v1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The variable holding the API key. Unset: `ANTHROPIC_API_KEY`, or `OPENAI_API_KEY` (which a local server
    /// may not need).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// A system prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// LLM requests one turn may make (each answers with text or tool calls).
    pub max_steps: u32,
    /// Tokens one LLM reply may have (`max_tokens` of each request).
    pub max_tokens: u32,
    /// Tokens, input and output together, one turn may spend over all its LLM requests; past it the turn stops
    /// with what it has.
    pub token_budget: u64,
    /// Time one LLM request may take.
    pub timeout: HumanDuration,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            provider: ChatProvider::Anthropic,
            model: "claude-sonnet-4-5".into(),
            base_url: None,
            api_key_env: None,
            system: None,
            max_steps: 8,
            max_tokens: 1024,
            token_budget: 50_000,
            timeout: HumanDuration::secs(60),
        }
    }
}

impl ChatConfig {
    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> String {
        let url = self.base_url.clone().unwrap_or_else(|| match self.provider {
            ChatProvider::Anthropic => "https://api.anthropic.com".into(),
            ChatProvider::Openai => "https://api.openai.com/v1".into(),
        });
        url.trim_end_matches('/').to_owned()
    }

    /// The variable the API key is read from, at start (the key is never in the config).
    pub fn api_key_env(&self) -> &str {
        self.api_key_env.as_deref().unwrap_or(match self.provider {
            ChatProvider::Anthropic => "ANTHROPIC_API_KEY",
            ChatProvider::Openai => "OPENAI_API_KEY",
        })
    }
}

/// `CHAT_ENABLED`, `CHAT_PROVIDER`, `CHAT_MODEL`, `CHAT_BASE_URL`.
pub(crate) fn apply_env(chat: &mut ChatConfig, get: impl Fn(&str) -> Option<String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    match crate::env::flag("CHAT_ENABLED", &get) {
        Ok(enabled) => chat.enabled = enabled.unwrap_or(chat.enabled),
        Err(message) => problems.push(Problem::new("env CHAT_ENABLED", message)),
    }
    if let Some(provider) = get("CHAT_PROVIDER") {
        match provider.to_ascii_lowercase().as_str() {
            "anthropic" => chat.provider = ChatProvider::Anthropic,
            "openai" | "openai-compatible" => chat.provider = ChatProvider::Openai,
            _ => problems
                .push(Problem::new("env CHAT_PROVIDER", format!("{provider:?}: use anthropic or openai"))),
        }
    }
    if let Some(model) = get("CHAT_MODEL") {
        chat.model = model;
    }
    if let Some(url) = get("CHAT_BASE_URL") {
        chat.base_url = Some(url);
    }
    problems
}

/// Limits that would make a turn impossible, and a base URL that is not one.
pub(crate) fn problems(config: &Config, problems: &mut Vec<Problem>) {
    let chat = &config.chat;
    for (field, zero) in [
        ("chat.max_steps", chat.max_steps == 0),
        ("chat.max_tokens", chat.max_tokens == 0),
        ("chat.token_budget", chat.token_budget == 0),
        ("chat.timeout", chat.timeout.0.is_zero()),
    ] {
        if zero {
            problems.push(Problem::new(field, "must be more than zero"));
        }
    }
    let url = chat.base_url();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        problems.push(Problem::new("chat.base_url", format!("{url:?} is not an http(s) URL")));
    }
    if chat.model.trim().is_empty() {
        problems.push(Problem::new("chat.model", "must name a model"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_provider_has_its_default_endpoint_and_key_variable() {
        let mut chat = ChatConfig::default();
        assert_eq!(
            (chat.base_url().as_str(), chat.api_key_env()),
            ("https://api.anthropic.com", "ANTHROPIC_API_KEY")
        );
        let vars = [
            ("CHAT_PROVIDER", "openai"),
            ("CHAT_BASE_URL", "http://127.0.0.1:8080/v1/"),
            ("CHAT_MODEL", "m"),
        ];
        assert!(apply_env(&mut chat, crate::env::vars(&vars)).is_empty());
        assert_eq!(
            (chat.base_url().as_str(), chat.api_key_env()),
            ("http://127.0.0.1:8080/v1", "OPENAI_API_KEY")
        );
        assert_eq!(chat.model, "m");
        let bad = [("CHAT_PROVIDER", "gemini")];
        assert_eq!(apply_env(&mut chat, crate::env::vars(&bad))[0].path, "env CHAT_PROVIDER");

        let mut config = Config::default();
        config.chat.base_url = Some("ftp://x".into());
        config.chat.max_steps = 0;
        let mut found = Vec::new();
        problems(&config, &mut found);
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["chat.max_steps", "chat.base_url"]);
    }
}
