//! `mcpgate chat`: the chat loop in a terminal. The gateway is built in this process from the config (as
//! `serve --stdio` builds it) and the LLM's tool calls run through its dispatch as the local principal. Each line
//! read is a user message; the answer streams to stdout, tool calls and results are shown as they happen.
//! `/tools`, `/usage` and `/exit` are commands.

use std::{
    io::{BufRead, Write},
    sync::Arc,
};

use mcpgate_server::{
    Gateway,
    chat::{Chat, ChatMessage, Event},
};
use tokio::sync::mpsc;

/// Shown results are cut to this many characters.
const SHOWN: usize = 300;

/// Chat until end of input or `/exit`; `message`: one message, then exit.
pub(crate) async fn run(gateway: Arc<Gateway>, message: Option<String>) -> anyhow::Result<()> {
    let chat = Chat::new(&gateway.config.chat).map_err(|why| anyhow::anyhow!("chat: {why}"))?;
    let principal = mcpgate_server::chat::local_principal(&gateway);
    let mut conversation = Vec::new();
    let (mut input_tokens, mut output_tokens) = (0, 0);
    let mut lines = std::io::stdin().lock().lines();
    let interactive = message.is_none();
    let mut next = message;
    loop {
        let line = match next.take() {
            Some(line) => line,
            None if interactive => {
                eprint!("> ");
                let _ = std::io::stderr().flush();
                match lines.next() {
                    Some(line) => line?,
                    None => break,
                }
            }
            None => break,
        };
        let line = line.trim().to_owned();
        match line.as_str() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/usage" => {
                println!("tokens this session: {input_tokens} in, {output_tokens} out");
                continue;
            }
            "/tools" => {
                for tool in gateway.registry().wire_tools().iter() {
                    println!("{}  {}", tool.name, tool.description.as_deref().unwrap_or(""));
                }
                continue;
            }
            _ => {}
        }
        conversation.push(ChatMessage::user(line));
        let (events, mut received) = mpsc::unbounded_channel();
        let shown = tokio::spawn(async move {
            while let Some(event) = received.recv().await {
                show(&event);
            }
        });
        let turn = chat.turn(&gateway, principal.clone(), "chat-cli", &mut conversation, Some(events)).await;
        let _ = shown.await;
        match turn {
            Ok(turn) => {
                input_tokens += turn.usage["input_tokens"].as_u64().unwrap_or(0);
                output_tokens += turn.usage["output_tokens"].as_u64().unwrap_or(0);
                println!();
                eprintln!(
                    "[{} · {} step(s) · {} tool call(s) · tokens {} in, {} out]",
                    serde_json::to_value(turn.stop).unwrap_or_default().as_str().unwrap_or("?"),
                    turn.steps,
                    turn.tool_calls.len(),
                    turn.usage["input_tokens"],
                    turn.usage["output_tokens"],
                );
            }
            Err(why) => eprintln!("chat: {why}"),
        }
    }
    Ok(())
}

fn show(event: &Event) {
    let mut out = std::io::stdout().lock();
    let _ = match event {
        Event::Text { text } => write!(out, "{text}"),
        Event::ToolCall { name, arguments } => writeln!(out, "\n→ {name} {arguments}"),
        Event::ToolResult { is_error, content, .. } => {
            let cut: String = content.chars().take(SHOWN).collect();
            let more = if content.chars().count() > SHOWN { "…" } else { "" };
            writeln!(out, "{} {cut}{more}", if *is_error { "✗" } else { "←" })
        }
    };
    let _ = out.flush();
}
