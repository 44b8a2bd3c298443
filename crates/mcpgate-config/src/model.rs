//! The configuration file's types. Every struct denies unknown fields; every field's doc comment is its
//! documentation in the JSON Schema and the reference docs. Defaults live in the `Default` impls below.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    tools::{CommandBackend, HttpBackend, SqlBackend},
    units::{ByteSize, HumanDuration},
    upstreams::UpstreamConfig,
};

/// An mcpgate configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The listener, the MCP endpoint and the limits that apply to every request.
    pub server: ServerConfig,
    /// Log level and format.
    pub logging: LoggingConfig,
    /// Circuit breakers and retry backoff for every backend.
    pub resilience: crate::resilience::ResilienceConfig,
    /// API keys, anonymous access, the IP allowlist and trusted proxies for `/mcp`.
    pub security: crate::security::SecurityConfig,
    /// Prometheus metrics: whether they are served, at which path, on which port.
    pub metrics: crate::metrics::MetricsConfig,
    /// Rate limits: for the whole gateway, per client address, per API key or tier, per tool. None by default.
    #[serde(skip_serializing_if = "crate::limits::RateLimitsConfig::is_empty")]
    pub rate_limits: crate::limits::RateLimitsConfig,
    /// The result cache: which tools' results are kept and for how long. No tool is cached by default.
    pub cache: crate::cache::CacheConfig,
    /// Where rate-limit buckets and cached results live: this process (the default) or Redis, shared by many
    /// nodes.
    #[serde(skip_serializing_if = "crate::state::StateConfig::is_default")]
    pub state: crate::state::StateConfig,
    /// Token and size limits on what one tool result sends back. None by default.
    pub budget: crate::budget::BudgetConfig,
    /// The audit log: one JSON line per `tools/call` (`AUDIT_LOG_FILE`). Off by default.
    pub audit: crate::audit::AuditConfig,
    /// OpenTelemetry traces over OTLP/HTTP: on when an endpoint is set (`TELEMETRY_ENDPOINT`).
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// Code mode: `search_tools`, `describe_tools` and `execute` instead of (or beside) the catalogue, and the
    /// sandbox programs run in. Off (`mode: direct`) by default.
    pub code_mode: crate::code_mode::CodeModeConfig,
    /// The REST facade and its OpenAPI document (`/api`, `/openapi.json`, `/docs`). Off by default.
    pub rest: crate::rest::RestConfig,
    /// The admin page (`/ui`), behind its own credential. Off by default.
    pub ui: crate::ui::UiConfig,
    /// The chat loop: an LLM with the gateway's tools (`POST /chat`, `mcpgate chat`). `POST /chat` is off by
    /// default.
    pub chat: crate::chat::ChatConfig,
    /// Tool sources by name. The name prefixes nothing here; it names the backend in logs, `/status` and errors.
    pub backends: BTreeMap<String, BackendConfig>,
    /// Upstream MCP servers by name; their tools are published as `NAME__tool` unless configured otherwise.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Upstream MCP servers in the Claude Desktop spelling (`{"mcpServers": {"name": {"command", "args",
    /// "env"}}}`, or `url` / `type` for remote ones), so such a file is a complete config. Same as `upstreams`.
    #[serde(rename = "mcpServers", skip_serializing_if = "BTreeMap::is_empty")]
    pub mcp_servers: BTreeMap<String, UpstreamConfig>,
}

impl Config {
    /// Every upstream, from `upstreams` and `mcpServers` alike.
    pub fn all_upstreams(&self) -> impl Iterator<Item = (&String, &UpstreamConfig)> {
        self.upstreams.iter().chain(&self.mcp_servers)
    }

    /// Every source of tools the config switches on — the `backends` entries, then the upstreams — by name.
    pub fn sources(&self) -> impl Iterator<Item = (&String, Source<'_>)> {
        let backends =
            self.backends.iter().filter(|(_, b)| b.enabled()).map(|(n, b)| (n, Source::Backend(b)));
        backends.chain(self.all_upstreams().filter(|(_, u)| u.enabled).map(|(n, u)| (n, Source::Upstream(u))))
    }

    /// The source named `name`, enabled or not.
    pub fn source(&self, name: &str) -> Option<Source<'_>> {
        match self.backends.get(name) {
            Some(backend) => Some(Source::Backend(backend)),
            None => self.all_upstreams().find(|(n, _)| *n == name).map(|(_, u)| Source::Upstream(u)),
        }
    }
}

/// One source of tools as configured: a `backends` entry or an upstream MCP server. The closed set the gateway
/// builds from, by one exhaustive match (`mcpgate_backends::start`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source<'a> {
    /// A `backends` entry (built-in, HTTP, command or SQL tools).
    Backend(&'a BackendConfig),
    /// An upstream MCP server (`upstreams` or `mcpServers`).
    Upstream(&'a UpstreamConfig),
}

/// Listener and protocol settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on (`IP:PORT`). Overridden by `BIND_IP`, `PORT` / `MCP_PORT` and `--listen`.
    pub listen: String,
    /// Server name reported to clients in `initialize` and `server/discover`.
    pub name: String,
    /// Instructions for the model, sent to clients with the server info.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// `Host` header values accepted on `/mcp` (protection against DNS rebinding). A name without a port
    /// matches any port. `["*"]` accepts every host — only behind a proxy that checks it.
    pub allowed_hosts: Vec<String>,
    /// Browser `Origin` values accepted on `/mcp`, as `scheme://host[:port|:*]`; requests without an `Origin`
    /// header always pass. `["*"]` accepts every origin.
    pub allowed_origins: Vec<String>,
    /// Largest request body accepted (`MAX_REQUEST_SIZE`); larger bodies get HTTP 413.
    pub max_request_size: ByteSize,
    /// Time one tool call may take before it fails with a timeout (`REQUEST_TIMEOUT`, in milliseconds, in the
    /// environment).
    pub request_timeout: HumanDuration,
    /// Legacy (pre-2026-07-28) sessions idle for longer than this are closed; their id then answers 404.
    pub session_idle_timeout: HumanDuration,
    /// A legacy session with no request, no open stream and no resource subscription for this long gives back
    /// its protocol worker (75–100 KB) and keeps only its record (under 1 KB); its next request that needs the
    /// worker restores it in-process, unnoticed by the client. Sessions opened with a plain `initialize` start
    /// without one.
    pub session_park_after: HumanDuration,
    /// Legacy sessions open at once, for everyone together; an `initialize` past it is refused (HTTP 429) until
    /// sessions close (DELETE) or expire. Bounds what idle sessions can cost a node.
    pub max_sessions: usize,
    /// Legacy sessions open at once for one client: one API key or token holder, or one anonymous client address
    /// (IPv6 by /64, as rate limits count it). An `initialize` past it is refused (HTTP 429).
    pub max_sessions_per_client: usize,
    /// On SIGTERM / SIGINT, how long in-flight requests may take to finish before the process exits anyway.
    pub drain_timeout: HumanDuration,
    /// Time a connection has to deliver a complete request head (request line and headers): from the accept for
    /// its first request, from the first byte of each later one (HTTP/1; on HTTP/2 it bounds the preface and
    /// first request, and `idle_timeout` the rest). Past it the connection is closed without a response (no 408).
    /// Bounds slow-header (slow-loris) clients; a request whose head has arrived is not limited by it.
    pub header_read_timeout: HumanDuration,
    /// Time a request's body has to arrive whole, from the moment its head has. Past it the request is answered
    /// 408 (a JSON-RPC error) and its connection closed. Bounds slow-body clients, which `header_read_timeout` no
    /// longer covers once the head is in; what the call then takes is `request_timeout`'s.
    pub body_read_timeout: HumanDuration,
    /// A connection with no request in progress for this long is closed (HTTP/2: GOAWAY, then close). A request in
    /// progress is never cut — a slow call, an open SSE stream. Keep it longer than the idle timeout of a load
    /// balancer in front (60 s on an AWS ALB), so that the balancer, not the gateway, closes an idle connection.
    pub idle_timeout: HumanDuration,
    /// Connections open at once on the listener. At the cap the gateway stops accepting (new connections wait in
    /// the kernel's backlog) until one closes, logs a warning and counts `mcp_connection_limit_reached_total`.
    /// Keep it below the open-file limit (`ulimit -n`, systemd's `LimitNOFILE`) less what upstreams, audit log and
    /// databases need: at start the gateway raises its soft limit to the hard one, and warns when that is below
    /// `max_connections` + 256.
    pub max_connections: usize,
    /// Items per page of `tools/list`, `resources/list` and `prompts/list`.
    pub page_size: usize,
    /// Freshness hint (`ttlMs`) put on list results for 2026-07-28 clients.
    pub list_ttl: HumanDuration,
    /// Gzip for response bodies of at least `min_size` (1 KiB); event streams never.
    pub compression: crate::compression::CompressionConfig,
    /// Path of the liveness endpoint (`HEALTH_CHECK_PATH` in the environment), which then answers there and not
    /// at `/health`; `mcpgate health` probes the same variable's path.
    pub health_path: String,
    /// Threads that serve requests (`WORKERS` in the environment). Unset: one per CPU the process may use (its
    /// cgroup's CPU quota counts). Read at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<std::num::NonZeroUsize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8000".into(),
            name: "mcpgate".into(),
            instructions: None,
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: ["localhost", "127.0.0.1", "[::1]"]
                .iter()
                .flat_map(|h| [format!("http://{h}:*"), format!("https://{h}:*")])
                .collect(),
            max_request_size: ByteSize(1 << 20),
            request_timeout: HumanDuration::secs(30),
            session_idle_timeout: HumanDuration::secs(30 * 60),
            session_park_after: HumanDuration::secs(30),
            max_sessions: 10_000,
            max_sessions_per_client: 1_000,
            drain_timeout: HumanDuration::secs(30),
            header_read_timeout: HumanDuration::secs(10),
            body_read_timeout: HumanDuration::secs(30),
            idle_timeout: HumanDuration::secs(65),
            max_connections: 10_000,
            page_size: 100,
            list_ttl: HumanDuration::secs(60),
            compression: crate::compression::CompressionConfig::default(),
            health_path: "/health".into(),
            workers: None,
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// Level or `tracing` filter directive (`info`, `debug`, `mcpgate=debug,info`); `LOG_LEVEL` overrides it.
    pub level: String,
    /// `text` (readable) or `json` (one JSON object per line); `LOG_FORMAT` overrides it.
    pub format: LogFormat,
    /// Also write the log to this file, appending (`LOG_FILE` in the environment); stderr keeps it too. The file
    /// is opened again on SIGHUP, so `logrotate` can move it away and signal (no `copytruncate` needed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<std::path::PathBuf>,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text, file: None }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A source of tools. `kind` selects the variant; each variant documents its own fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackendConfig {
    /// Tools compiled into mcpgate.
    Builtin(BuiltinBackend),
    /// Tools that call an HTTP API.
    Http(HttpBackend),
    /// Tools that run a program (never through a shell).
    Command(CommandBackend),
    /// Tools that query SQLite or PostgreSQL.
    Sql(SqlBackend),
    /// Tools whose handler is JavaScript, run in code mode's sandbox.
    Script(crate::tools::ScriptBackend),
}

impl BackendConfig {
    /// Whether the backend is switched on.
    pub fn enabled(&self) -> bool {
        match self {
            Self::Builtin(b) => b.enabled,
            Self::Http(b) => b.enabled,
            Self::Command(b) => b.enabled,
            Self::Sql(b) => b.enabled,
            Self::Script(b) => b.enabled,
        }
    }

    /// The `kind` field's value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Builtin(_) => "builtin",
            Self::Http(_) => "http",
            Self::Command(_) => "command",
            Self::Sql(_) => "sql",
            Self::Script(_) => "script",
        }
    }
}

/// Tools compiled into mcpgate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuiltinBackend {
    /// Which built-in set: `demo` (`echo`, `add`, `now`, `sleep`) or `conformance` (the surface the official MCP
    /// conformance suite tests).
    pub builtin: BuiltinSet,
    /// Set to `false` to keep the backend in the file but not serve it.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// The built-in tool sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinSet {
    /// `echo`, `add`, `now` and `sleep`.
    Demo,
    /// Tools, resources and prompts of the MCP conformance suite.
    Conformance,
}

/// The JSON Schema of the configuration file, generated from these types.
pub fn schema() -> serde_json::Value {
    let schema =
        schemars::generate::SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<Config>();
    schema.to_value()
}
