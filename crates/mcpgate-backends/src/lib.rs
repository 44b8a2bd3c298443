//! mcpgate backends: every source of tools behind the one [`Backend`] trait.
//!
//! [`start`] is the one place that turns a configured [`Source`] — a `backends` entry or an upstream MCP server —
//! into a running backend, and [`Facts::of`] says what the gateway needs to know of it besides (its kind, health
//! checks, retries, whether readiness waits for it): exhaustive matches, so a new kind is one variant, one module
//! and one arm. [`check`] finds what the config schema cannot: templates
//! reading unknown variables, programs not found, database files missing — without starting anything.

use std::{sync::Arc, time::Duration};

use mcpgate_config::{BackendConfig, BuiltinSet, Problem, Source};
use mcpgate_core::{Backend, ScriptRunner};

pub mod builtin;
pub mod command;
pub mod declared;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod script;
pub mod sql;
pub mod template;
pub mod upstream;

/// Why a backend could not be built.
#[derive(Debug, thiserror::Error)]
#[error("backend {name}: {message}")]
pub struct BuildError {
    /// The backend's configured name.
    pub name: String,
    /// What went wrong.
    pub message: String,
}

/// The kinds of backend, as `/status` and metrics name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// Tools compiled into mcpgate.
    Builtin,
    /// HTTP API calls declared in the config.
    Http,
    /// Commands declared in the config.
    Command,
    /// SQL queries declared in the config.
    Sql,
    /// JavaScript handlers declared in the config.
    Script,
    /// An upstream MCP server.
    Upstream,
}

impl BackendKind {
    /// Its name: the config's `kind`, or `upstream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::Http => "http",
            Self::Command => "command",
            Self::Sql => "sql",
            Self::Script => "script",
            Self::Upstream => "upstream",
        }
    }
}

/// What the gateway needs to know of a source besides the running backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// Its kind.
    pub kind: BackendKind,
    /// How often its health is checked; `None`: never (it is up while it runs).
    pub health_check_interval: Option<Duration>,
    /// Retries of a failed call to one of its idempotent tools.
    pub max_retries: u32,
    /// Whether readiness fails while it is down.
    pub required: bool,
}

impl Facts {
    /// The facts of `source`.
    pub fn of(source: Source<'_>) -> Self {
        let local = |kind| Self { kind, health_check_interval: None, max_retries: 0, required: true };
        match source {
            Source::Backend(BackendConfig::Builtin(_)) => local(BackendKind::Builtin),
            Source::Backend(BackendConfig::Http(_)) => local(BackendKind::Http),
            Source::Backend(BackendConfig::Command(_)) => local(BackendKind::Command),
            Source::Backend(BackendConfig::Sql(_)) => local(BackendKind::Sql),
            Source::Backend(BackendConfig::Script(_)) => local(BackendKind::Script),
            Source::Upstream(upstream) => Self {
                kind: BackendKind::Upstream,
                health_check_interval: Some(upstream.health_check_interval.0),
                max_retries: upstream.max_retries,
                required: upstream.required,
            },
        }
    }
}

/// Start the backend `source` describes: every kind but script tools, upstreams included (see [`start_with`]).
pub async fn start(name: &str, source: Source<'_>) -> Result<Arc<dyn Backend>, BuildError> {
    start_with(name, source, None).await
}

/// Start the backend `source` describes: every kind, upstreams included; `scripts` runs script tools'
/// handlers (the gateway's sandbox), and a script backend without one cannot start.
pub async fn start_with(
    name: &str,
    source: Source<'_>,
    scripts: Option<&Arc<dyn ScriptRunner>>,
) -> Result<Arc<dyn Backend>, BuildError> {
    let failed = |message: String| BuildError { name: name.to_owned(), message };
    Ok(match source {
        Source::Backend(BackendConfig::Builtin(builtin)) => match builtin.builtin {
            BuiltinSet::Demo => Arc::new(builtin::demo::Demo::new(name)),
            BuiltinSet::Conformance => Arc::new(builtin::conformance::Conformance::new(name)),
        },
        Source::Backend(BackendConfig::Http(http)) => {
            Arc::new(http::HttpTools::new(name, http).map_err(failed)?)
        }
        Source::Backend(BackendConfig::Command(command)) => {
            Arc::new(command::CommandTools::new(name, command).map_err(failed)?)
        }
        Source::Backend(BackendConfig::Sql(sql)) => {
            Arc::new(sql::SqlTools::connect(name, sql).await.map_err(failed)?)
        }
        Source::Backend(BackendConfig::Script(script)) => {
            let runner = scripts.ok_or_else(|| failed("script tools need the gateway's sandbox".into()))?;
            Arc::new(script::ScriptTools::new(name, script, runner.clone()).map_err(failed)?)
        }
        Source::Upstream(upstream) => {
            Arc::new(upstream::Upstream::start(name, upstream).await.map_err(failed)?)
        }
    })
}

/// What may keep an upstream from starting now yet could change before it is needed, so it is a warning and not
/// a problem: a `${VAR}` not set (in `command`, `args`, `env`, `url`, `headers`), a header that is not one, a stdio
/// `command` not found (on the `PATH` the child gets: its `env.PATH`, else the gateway's; its supervisor retries
/// until the program appears). Paths under `upstreams.NAME` / `mcpServers.NAME`.
pub fn upstream_warnings(config: &mcpgate_config::Config) -> Vec<Problem> {
    let sections = [("upstreams", &config.upstreams), ("mcpServers", &config.mcp_servers)];
    let enabled = sections.into_iter().flat_map(|(section, upstreams)| {
        upstreams.iter().filter(|(_, u)| u.enabled).map(move |(name, u)| (format!("{section}.{name}"), u))
    });
    let mut warnings = Vec::new();
    for (path, upstream) in enabled {
        // A variable set by the time the gateway starts is fine; one unset now is worth a warning.
        match upstream::Upstream::check(upstream) {
            Err(why) => warnings.push(Problem::new(path, why)),
            Ok(Some(why)) => {
                let hint = "it is retried until it appears; install it, or give its full path";
                warnings.push(Problem::new(format!("{path}.command"), format!("{why}: {hint}")));
            }
            Ok(None) => {}
        }
    }
    warnings
}

/// Every problem in a backend's config that only the backend can see, with paths under `backends.NAME`.
pub fn check(name: &str, config: &BackendConfig) -> Vec<Problem> {
    let path = format!("backends.{name}");
    match config {
        BackendConfig::Builtin(_) => Vec::new(),
        BackendConfig::Http(http) => http::check(&path, http),
        BackendConfig::Command(command) => command::check(&path, command),
        BackendConfig::Sql(sql) => sql::check(&path, sql),
        BackendConfig::Script(script) => script::check(&path, script),
    }
}
