//! mcpgate configuration.
//!
//! Raw serde types ([`Config`] and below, `deny_unknown_fields`, a doc comment on every field that becomes the
//! JSON Schema description), loading from YAML / TOML / JSON or the embedded default, the environment overlay
//! with the reference guides' variable names, and validation that reports every problem with its path.

mod audit;
mod budget;
mod cache;
mod chat;
mod code_mode;
mod compression;
mod env;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod jwt;
mod limits;
mod load;
mod metrics;
mod model;
mod resilience;
mod rest;
mod security;
mod state;
mod telemetry;
mod tools;
mod ui;
mod units;
mod upstreams;
mod validate;

pub use audit::AuditConfig;
pub use budget::{BudgetConfig, MIN_TOKENS, OnExceed};
pub use cache::{CacheConfig, CacheRule, CacheSharing};
pub use chat::{ChatConfig, ChatProvider};
pub use code_mode::{CodeModeConfig, ExecutionMode, SandboxBackend, SandboxConfig};
pub use compression::CompressionConfig;
pub use env::apply_env;
pub use jwt::{
    JWT_ALGORITHMS, JwtConfig, KeyFamily, MIN_SECRET_BYTES, OAuthResourceConfig, algorithm_family,
};
pub use limits::{RateLimit, RateLimitsConfig};
pub use load::{
    ConfigError, Format, default_config, load_file, load_file_unchecked, parse_str, parse_str_unchecked,
};
pub use metrics::MetricsConfig;
pub use model::{
    BackendConfig, BuiltinBackend, BuiltinSet, Config, LogFormat, LoggingConfig, ServerConfig, Source, schema,
};
pub use resilience::{BreakerConfig, ResilienceConfig};
pub use rest::RestConfig;
pub use security::{
    ApiKeyConfig, HashMethod, KeyHash, KeyHasher, Secret, SecurityConfig, parse_cidr, parse_rfc3339,
};
pub use state::{Fallback, OnUnavailable, RedisTarget, SentinelConfig, StateBackendKind, StateConfig};
pub use telemetry::TelemetryConfig;
pub use tools::{
    CommandBackend, CommandCall, HttpBackend, HttpCall, HttpMethod, HttpResponse, OutputFormat,
    ScriptBackend, ScriptCall, SqlBackend, SqlCall, ToolConfig,
};
pub use ui::UiConfig;
pub use units::{ByteSize, HumanDuration};
pub use upstreams::{Naming, UpstreamConfig, UpstreamProtocol, UpstreamTransport, WhenDown, glob};
pub use validate::{Problem, validate};
