//! `mcpgate client`: a command-line MCP client for any server — a Streamable HTTP URL (the 2026-07-28 era or a
//! legacy session, found out by asking) or a stdio command. It connects through the same upstream code the
//! gateway federates with, so what it shows is what mcpgate would see of that server.

mod render;

use std::{process::ExitCode, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use mcpgate_backends::upstream::Upstream;
use mcpgate_config::UpstreamConfig;
use mcpgate_core::{Backend, BackendError, CallContext, ToolCall};
use serde_json::{Map, Value};

/// Exit status: the server answered with an error (a tool's `isError`, an unknown name, bad arguments).
const SERVER_ERROR: u8 = 1;
/// Exit status: the command line does not say what to talk to, or how (as clap's own usage errors).
const USAGE_ERROR: u8 = 2;
/// Exit status: the server could not be reached or started, or went away.
const CONNECTION_ERROR: u8 = 3;

/// The server to talk to, and how.
#[derive(Args, Debug)]
pub(crate) struct Target {
    /// The server's Streamable HTTP endpoint (`http://127.0.0.1:8000/mcp`).
    #[arg(long, conflicts_with = "command")]
    url: Option<String>,
    /// A header for every HTTP request (`--header 'X-Tenant: a'`); repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// An API key, sent as `Authorization: Bearer KEY` (also `MCP_CLIENT_API_KEY`).
    #[arg(long, env = "MCP_CLIENT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// A variable for the stdio server's environment, which otherwise holds only `PATH` and `HOME`; repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// How long connecting, and then each request, may take, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Print the protocol's JSON instead of tables: for scripts.
    #[arg(long)]
    json: bool,
    /// A stdio server to start, after `--` (`-- npx -y @modelcontextprotocol/server-everything`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// What to do once connected.
#[derive(Subcommand, Debug)]
pub(crate) enum Action {
    /// The server's name, version, protocol revision, capabilities and how many tools, resources and prompts.
    Info(Target),
    /// List the tools.
    Tools(Target),
    /// Call a tool: `call NAME --arg key=value …` or `--json-args '{…}'`.
    Call {
        /// The tool.
        name: String,
        /// An argument, `key=value`; the value is taken as JSON where the tool's schema wants a non-string
        /// (`n=3`, `flags=["a"]`), else as text. Repeatable.
        #[arg(long = "arg", value_name = "KEY=VALUE")]
        args: Vec<String>,
        /// The arguments as one JSON object (`--arg`s are added to it).
        #[arg(long = "json-args", value_name = "OBJECT")]
        json_args: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// List the resources and resource templates.
    Resources(Target),
    /// Read a resource.
    Read {
        /// Its URI.
        uri: String,
        #[command(flatten)]
        target: Target,
    },
    /// List the prompts.
    Prompts(Target),
    /// Get a prompt: `prompt NAME --arg key=value …`.
    Prompt {
        /// The prompt.
        name: String,
        /// An argument, `key=value` (prompt arguments are text). Repeatable.
        #[arg(long = "arg", value_name = "KEY=VALUE")]
        args: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
}

impl Action {
    fn target(&self) -> &Target {
        match self {
            Self::Info(t) | Self::Tools(t) | Self::Resources(t) | Self::Prompts(t) => t,
            Self::Call { target, .. } | Self::Read { target, .. } | Self::Prompt { target, .. } => target,
        }
    }
}

/// Run `action` against its server; the exit status tells a server's error answer (1) from a usage error (2)
/// and a connection that failed (3).
pub(crate) async fn run(action: Action) -> anyhow::Result<ExitCode> {
    let target = action.target();
    let timeout = Duration::from_secs(target.timeout.max(1));
    let config = match config(target, timeout) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("mcpgate client: {error:#}");
            return Ok(ExitCode::from(USAGE_ERROR));
        }
    };
    let Some(upstream) = connect(&config, timeout).await? else {
        return Ok(ExitCode::from(CONNECTION_ERROR));
    };
    let answered = tokio::time::timeout(timeout, act(&upstream, &action)).await;
    upstream.shutdown().await;
    let out = match answered {
        Ok(out) => out,
        Err(_) => Err(BackendError::Timeout(timeout)),
    };
    match out {
        Ok(Outcome { text, failed }) => {
            println!("{text}");
            Ok(if failed { ExitCode::from(SERVER_ERROR) } else { ExitCode::SUCCESS })
        }
        Err(error @ (BackendError::Unavailable { .. } | BackendError::Timeout(_))) => {
            eprintln!("mcpgate client: {error}");
            Ok(ExitCode::from(CONNECTION_ERROR))
        }
        Err(error) => {
            eprintln!("mcpgate client: {error}");
            Ok(ExitCode::from(SERVER_ERROR))
        }
    }
}

/// What an action prints, and whether the server's answer was a failure (a tool's `isError`).
struct Outcome {
    text: String,
    failed: bool,
}

impl Outcome {
    fn ok(text: String) -> Self {
        Self { text, failed: false }
    }
}

/// The upstream config the target describes: the server under its own names, one attempt's timeout.
fn config(target: &Target, timeout: Duration) -> anyhow::Result<UpstreamConfig> {
    let mut config: UpstreamConfig = serde_json::from_value(serde_json::json!({ "prefix": false }))?;
    config.timeout = mcpgate_config::HumanDuration(timeout);
    match (&target.url, target.command.split_first()) {
        (Some(url), None) => {
            config.url = Some(escape(url));
            for header in &target.headers {
                let (name, value) = header
                    .split_once(':')
                    .with_context(|| format!("--header {header:?}: use 'Name: value'"))?;
                config.headers.insert(name.trim().to_owned(), escape(value.trim()));
            }
            if let Some(key) = &target.api_key {
                config.headers.insert("Authorization".into(), escape(&format!("Bearer {key}")));
            }
        }
        (None, Some((program, args))) => {
            config.command = Some(escape(program));
            config.args = args.iter().map(|a| escape(a)).collect();
            for pair in &target.env {
                let (name, value) =
                    pair.split_once('=').with_context(|| format!("--env {pair:?}: use NAME=VALUE"))?;
                config.env.insert(name.to_owned(), escape(value));
            }
        }
        _ => {
            bail!("give --url URL, or a command after `--` (mcpgate client tools -- npx -y some-mcp-server)")
        }
    }
    Ok(config)
}

/// Config values expand `${VAR}`; what the user typed is meant literally.
fn escape(text: &str) -> String {
    text.replace("${", "$${")
}

/// Connect, waiting up to `timeout` for the first connection; `None` (with the reason printed) when it fails.
async fn connect(config: &UpstreamConfig, timeout: Duration) -> anyhow::Result<Option<Upstream>> {
    let upstream = match Upstream::launch("server", config) {
        Ok(upstream) => upstream,
        Err(error) => {
            eprintln!("mcpgate client: {error}");
            return Ok(None);
        }
    };
    // One attempt, however long it takes within `timeout`: the supervisor's retries are for a gateway.
    let deadline = tokio::time::Instant::now() + timeout;
    // The connection is published before its catalogue: wait for both.
    let published = upstream.catalogue_changes().context("an upstream publishes its catalogue")?;
    loop {
        if upstream.server_info().is_some() && *published.borrow() > 0 {
            return Ok(Some(upstream));
        }
        let failed = upstream.failed_attempt();
        if failed.is_some() || tokio::time::Instant::now() >= deadline {
            let why = failed.unwrap_or_else(|| format!("no connection within {timeout:?}"));
            eprintln!("mcpgate client: cannot connect: {why}");
            upstream.shutdown().await;
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn act(upstream: &Upstream, action: &Action) -> Result<Outcome, BackendError> {
    let json = action.target().json;
    let cx = CallContext::detached("mcpgate-client");
    Ok(match action {
        Action::Info(_) => {
            let info = upstream.server_info().unwrap_or(Value::Null);
            let (tools, resources, prompts) = (
                upstream.list_tools().await?.len(),
                upstream.list_resources().await?.len() + upstream.list_resource_templates().await?.len(),
                upstream.list_prompts().await?.len(),
            );
            Outcome::ok(render::info(&info, [tools, resources, prompts], json))
        }
        Action::Tools(_) => Outcome::ok(render::tools(&upstream.list_tools().await?, json)),
        Action::Call { name, args, json_args, .. } => {
            let tools = upstream.list_tools().await?;
            let schema =
                tools.iter().find(|t| &t.name == name).map(|t| Value::Object((*t.input_schema).clone()));
            let arguments = arguments(json_args.as_deref(), args, schema.as_ref())?;
            let outcome = upstream.call_tool(&cx, ToolCall { name: name.clone(), arguments }).await?;
            Outcome { failed: outcome.is_error, text: render::call(&outcome, json) }
        }
        Action::Resources(_) => {
            let (resources, templates) =
                (upstream.list_resources().await?, upstream.list_resource_templates().await?);
            Outcome::ok(render::resources(&resources, &templates, json))
        }
        Action::Read { uri, .. } => Outcome::ok(render::read(&upstream.read_resource(&cx, uri).await?, json)),
        Action::Prompts(_) => Outcome::ok(render::prompts(&upstream.list_prompts().await?, json)),
        Action::Prompt { name, args, .. } => {
            let mut arguments = Map::new();
            for pair in args {
                let (key, value) = split_pair(pair)?;
                arguments.insert(key.to_owned(), Value::String(value.to_owned()));
            }
            Outcome::ok(render::prompt(&upstream.get_prompt(&cx, name, arguments).await?, json))
        }
    })
}

fn split_pair(pair: &str) -> Result<(&str, &str), BackendError> {
    pair.split_once('=')
        .ok_or_else(|| BackendError::InvalidArguments(format!("--arg {pair:?}: use key=value")))
}

/// The call's arguments: `--json-args`, then each `--arg key=value` — JSON where the tool's schema gives the
/// property a type other than `string` (or none), text otherwise.
fn arguments(
    json_args: Option<&str>,
    pairs: &[String],
    schema: Option<&Value>,
) -> Result<Map<String, Value>, BackendError> {
    let mut arguments = match json_args {
        None => Map::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return Err(BackendError::InvalidArguments("--json-args must be a JSON object".into())),
            Err(e) => return Err(BackendError::InvalidArguments(format!("--json-args: {e}"))),
        },
    };
    for pair in pairs {
        let (key, text) = split_pair(pair)?;
        let declared = schema.and_then(|s| s.pointer(&format!("/properties/{key}/type")));
        let wants_text =
            declared.is_some_and(|t| t == "string" || t.as_array().is_some_and(|a| a == &["string"]));
        let value = match serde_json::from_str::<Value>(text) {
            Ok(value) if !wants_text => value,
            _ => Value::String(text.to_owned()),
        };
        arguments.insert(key.to_owned(), value);
    }
    Ok(arguments)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn arguments_follow_the_schema_types_and_json_args_come_first() {
        let schema = json!({"properties": {"message": {"type": "string"}, "n": {"type": "integer"}}});
        let pairs =
            ["message=42".to_owned(), "n=42".to_owned(), "other=[1]".to_owned(), "free=text".to_owned()];
        let got = arguments(Some(r#"{"n": 1, "kept": true}"#), &pairs, Some(&schema)).unwrap();
        assert_eq!(
            Value::Object(got),
            json!({"message": "42", "n": 42, "other": [1], "free": "text", "kept": true})
        );
        assert!(arguments(Some("[1]"), &[], None).is_err());
        assert!(arguments(None, &["novalue".to_owned()], None).is_err());
    }

    #[test]
    fn what_the_user_typed_is_not_expanded() {
        assert_eq!(escape("a${HOME}b"), "a$${HOME}b");
    }
}
