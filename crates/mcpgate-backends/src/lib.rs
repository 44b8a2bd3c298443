//! mcpgate backends: every source of tools behind the one [`Backend`] trait.
//!
//! [`build`] is the one place that turns a [`BackendConfig`] into a running backend — an exhaustive match, so a
//! new kind is one variant, one module and one arm. [`check`] finds what the config schema cannot: templates
//! reading unknown variables, programs not found, database files missing — without starting anything.

use std::sync::Arc;

use mcpgate_config::{BackendConfig, BuiltinSet, Problem};
use mcpgate_core::Backend;

pub mod builtin;
pub mod command;
pub mod declared;
pub mod http;
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

/// Build the backend a config entry describes.
pub async fn build(name: &str, config: &BackendConfig) -> Result<Arc<dyn Backend>, BuildError> {
    let failed = |message: String| BuildError { name: name.to_owned(), message };
    Ok(match config {
        BackendConfig::Builtin(builtin) => match builtin.builtin {
            BuiltinSet::Demo => Arc::new(builtin::demo::Demo::new(name)),
            BuiltinSet::Conformance => Arc::new(builtin::conformance::Conformance::new(name)),
        },
        BackendConfig::Http(http) => Arc::new(http::HttpTools::new(name, http).map_err(failed)?),
        BackendConfig::Command(command) => {
            Arc::new(command::CommandTools::new(name, command).map_err(failed)?)
        }
        BackendConfig::Sql(sql) => Arc::new(sql::SqlTools::connect(name, sql).await.map_err(failed)?),
    })
}

/// Every problem in a backend's config that only the backend can see, with paths under `backends.NAME`.
pub fn check(name: &str, config: &BackendConfig) -> Vec<Problem> {
    let path = format!("backends.{name}");
    match config {
        BackendConfig::Builtin(_) => Vec::new(),
        BackendConfig::Http(http) => http::check(&path, http),
        BackendConfig::Command(command) => command::check(&path, command),
        BackendConfig::Sql(sql) => sql::check(&path, sql),
    }
}
