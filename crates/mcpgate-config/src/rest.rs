//! `rest`: the REST facade — the catalogue as plain HTTP endpoints with an OpenAPI document, for software that
//! does not speak MCP.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::Problem;

/// The REST facade: `GET /api/tools`, `POST /api/tools/{name}` (the arguments as the body), `GET /api/resources`,
/// `GET /api/resources/read?uri=`, `GET /api/prompts`, `POST /api/prompts/{name}`, `GET /openapi.json` (per
/// caller) and `GET /docs`. Behind the same door as `/mcp`: keys and tokens, IP allowlist, `Host` check, rate
/// limits, request size; every call through the same pipeline. Off by default. Read at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RestConfig {
    /// Serve the facade (`REST_ENABLED`: `true` / `false` / `1` / `0`).
    pub enabled: bool,
    /// Serve the API's documentation page at `/docs` (bundled in the binary; it asks for a key when one is
    /// needed and keeps it in the tab's session storage only).
    pub docs: bool,
}

impl Default for RestConfig {
    fn default() -> Self {
        Self { enabled: false, docs: true }
    }
}

/// `REST_ENABLED`.
pub(crate) fn apply_env(rest: &mut RestConfig, get: impl Fn(&str) -> Option<String>) -> Vec<Problem> {
    match crate::env::flag("REST_ENABLED", get) {
        Ok(enabled) => {
            rest.enabled = enabled.unwrap_or(rest.enabled);
            Vec::new()
        }
        Err(message) => vec![Problem::new("env REST_ENABLED", message)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_switched_by_the_environment() {
        let mut rest = RestConfig::default();
        assert!(!rest.enabled && rest.docs);
        assert!(apply_env(&mut rest, |k| (k == "REST_ENABLED").then(|| "true".into())).is_empty());
        assert!(rest.enabled);
        let problems = apply_env(&mut rest, |_| Some("maybe".into()));
        assert_eq!(problems[0].path, "env REST_ENABLED");
        assert!(rest.enabled, "a bad value changes nothing");
    }
}
