//! Config-declared tools: the `http`, `command` and `sql` backend kinds. Each declares its tools in the file —
//! name, description, `input_schema` — and says per tool what a call does.
//!
//! Templates (minijinja syntax: `{{ name }}`, filters, conditionals) see the call's arguments as variables and
//! nothing else; a variable no argument can fill is a configuration error. `${VAR}` in the places that say so
//! is replaced by the environment variable `VAR` when the config loads — the way to pass secrets, which are
//! never logged.

use std::{collections::BTreeMap, path::PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::units::{ByteSize, HumanDuration};

fn yes() -> bool {
    true
}

fn object_schema() -> Value {
    serde_json::json!({ "type": "object" })
}

/// One declared tool: what clients see (`title`, `description`, `input_schema`, …) and, in `call`, what the
/// backend does when it is called.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig<C> {
    /// Human-readable title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What the tool does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema (draft 2020-12) of the arguments, an object schema. Every call is validated against it
    /// before the handler runs; a violation is a tool error naming the failing path. Default: any object.
    #[serde(default = "object_schema")]
    pub input_schema: Value,
    /// JSON Schema of the tool's `structuredContent`, announced to clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// Tool annotations (`readOnlyHint`, `idempotentHint`, `destructiveHint`, `openWorldHint`), passed to
    /// clients as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
    /// What a call does.
    pub call: C,
}

/// Tools that call an HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpBackend {
    /// URL that relative tool URLs are resolved against (`https://api.example.com/v1/`). May use `${VAR}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Headers sent with every request. Values may use `${VAR}` (secrets: never logged).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Time one HTTP request may take, connection included.
    #[serde(default = "HttpBackend::default_timeout")]
    pub timeout: HumanDuration,
    /// Largest response body read; a larger one is a tool error.
    #[serde(default = "HttpBackend::default_max_response")]
    pub max_response_size: ByteSize,
    /// The tools, by name.
    pub tools: BTreeMap<String, ToolConfig<HttpCall>>,
    /// Set to `false` to keep the backend in the file but not serve it.
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl HttpBackend {
    fn default_timeout() -> HumanDuration {
        HumanDuration::secs(30)
    }

    fn default_max_response() -> ByteSize {
        ByteSize(4 << 20)
    }
}

/// HTTP request methods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET.
    #[default]
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
    /// HEAD.
    Head,
}

/// The HTTP request one call makes, and how its response becomes the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpCall {
    /// Request method.
    #[serde(default)]
    pub method: HttpMethod,
    /// URL template, absolute or relative to `base_url` (`users/{{ id }}`). Values inserted into it are
    /// percent-encoded, so an argument never changes the URL's structure.
    pub url: String,
    /// Query parameters: name → value template. A parameter whose value renders empty, or that is exactly
    /// `{{ name }}` with that argument absent, is left out.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Extra headers: name → value template; may use `${VAR}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body. String leaves are templates; a leaf that is exactly `{{ name }}` takes the argument's JSON
    /// value (number, object, …) unchanged, and is left out of its object when the argument is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// How the response becomes the tool's result.
    #[serde(default)]
    pub response: HttpResponse,
}

/// How a 2xx response becomes the tool's result. A JSON response (by `Content-Type`) is `structuredContent`
/// plus its text; anything else is text. Non-2xx responses are tool errors with the status and an excerpt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpResponse {
    /// JSON pointer (RFC 6901, `/items/0`) selecting the part of a JSON response to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Template rendering the text content instead of the raw body; sees `response` (the parsed JSON or the
    /// text), `status` and the call's arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// Tools whose handler is JavaScript, run in code mode's sandbox (`code_mode.sandbox`): composite tools written
/// in config, without Rust and without a server of their own. A handler is the body of an async function of
/// `(tools, console, input)`: `input` is the validated arguments, `tools.<namespace>.<tool>(args)` calls other
/// tools through the gateway as the caller, and what it returns is the result (a string as text, anything else
/// as `structuredContent` and its JSON as text). A thrown error is a tool error. Script tools cannot call script
/// tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptBackend {
    /// The tools, by name.
    pub tools: BTreeMap<String, ToolConfig<ScriptCall>>,
    /// Set to `false` to keep the backend in the file but not serve it.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// A script tool's handler: a file or inline code, exactly one of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptCall {
    /// A JavaScript file (`handlers/summarize.js`; relative paths from the gateway's working directory), read
    /// when the backend starts (and again on reload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The handler's code, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// Tools that run a program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandBackend {
    /// The tools, by name.
    pub tools: BTreeMap<String, ToolConfig<CommandCall>>,
    /// Set to `false` to keep the backend in the file but not serve it.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// The program one call runs. Never through a shell: each `args` item becomes exactly one argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandCall {
    /// The program: a path, or a name looked up on `PATH` when the config loads.
    pub program: String,
    /// Arguments after the program; each item is a template that renders to exactly one argument, whatever
    /// the values contain (spaces, quotes, `;`, `$(…)` are just characters). Items rendering empty are dropped,
    /// and so is an item that is exactly `{{ name }}` when that argument is absent; such an item whose
    /// argument is an array becomes one argument per element.
    #[serde(default)]
    pub args: Vec<String>,
    /// Working directory (default: the gateway's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Names of the gateway's environment variables passed to the program; its environment is otherwise empty.
    #[serde(default)]
    pub env_allow: Vec<String>,
    /// Environment variables set for the program; values may use `${VAR}`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Template whose rendering is written to the program's standard input (default: empty input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Time the program may run; then its whole process group is killed and the call is a tool error.
    #[serde(default = "CommandCall::default_timeout")]
    pub timeout: HumanDuration,
    /// Most standard output kept; more is a tool error (the program is killed).
    #[serde(default = "CommandCall::default_max_output")]
    pub max_stdout: ByteSize,
    /// Most standard error kept; the rest is cut (it only feeds error excerpts).
    #[serde(default = "CommandCall::default_max_stderr")]
    pub max_stderr: ByteSize,
    /// How standard output becomes the result: `text`, or `json` (parsed into `structuredContent`).
    #[serde(default)]
    pub output: OutputFormat,
}

impl CommandCall {
    fn default_timeout() -> HumanDuration {
        HumanDuration::secs(30)
    }

    fn default_max_output() -> ByteSize {
        ByteSize(1 << 20)
    }

    fn default_max_stderr() -> ByteSize {
        ByteSize(64 << 10)
    }
}

/// How program output becomes the tool's result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// One text item.
    #[default]
    Text,
    /// JSON: `structuredContent` plus its text. Output that is not JSON is a tool error.
    Json,
}

/// Tools that query a database (SQLite or PostgreSQL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlBackend {
    /// Database URL: `sqlite:path/to.db`, `sqlite::memory:`, `postgres://user:${PGPASSWORD}@host:5432/db`.
    /// May use `${VAR}`.
    pub url: String,
    /// Refuse every write: the connections themselves are read-only, and `write_query` is not offered.
    #[serde(default = "yes")]
    pub read_only: bool,
    /// Connections in the pool.
    #[serde(default = "SqlBackend::default_max_connections")]
    pub max_connections: u32,
    /// Time one statement may run before it is cancelled.
    #[serde(default = "SqlBackend::default_statement_timeout")]
    pub statement_timeout: HumanDuration,
    /// Most rows returned by one call; a result cut short says so.
    #[serde(default = "SqlBackend::default_max_rows")]
    pub max_rows: usize,
    /// Add the database tools: `list_tables`, `describe_table`, `read_query` (alias `execute_sql_query`), a
    /// single read-only statement; and `write_query` when `read_only` is `false`.
    #[serde(default)]
    pub database_tools: bool,
    /// Declared queries, by tool name.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolConfig<SqlCall>>,
    /// Set to `false` to keep the backend in the file but not serve it.
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl SqlBackend {
    fn default_max_connections() -> u32 {
        5
    }

    fn default_statement_timeout() -> HumanDuration {
        HumanDuration::secs(10)
    }

    fn default_max_rows() -> usize {
        1000
    }
}

/// The statement one call runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlCall {
    /// One SQL statement with placeholders (`?` or `$1`, `$2`, … as the database spells them). Arguments are
    /// bound to placeholders, never spliced into the text.
    pub query: String,
    /// Argument names bound to the placeholders, in order; an absent argument binds `NULL`.
    #[serde(default)]
    pub params: Vec<String>,
}
