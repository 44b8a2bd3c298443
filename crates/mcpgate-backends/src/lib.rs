//! mcpgate backends: every source of tools behind the one [`Backend`] trait.
//!
//! [`build`] is the one place that turns a [`BackendConfig`] into a running backend — an exhaustive match, so a
//! new kind is one variant, one module and one arm.

use std::sync::Arc;

use mcpgate_config::{BackendConfig, BuiltinSet};
use mcpgate_core::Backend;

pub mod builtin;

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
    Ok(match config {
        BackendConfig::Builtin(builtin) => match builtin.builtin {
            BuiltinSet::Demo => Arc::new(builtin::demo::Demo::new(name)),
            BuiltinSet::Conformance => Arc::new(builtin::conformance::Conformance::new(name)),
        },
    })
}
