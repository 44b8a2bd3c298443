//! The `metrics` section: whether and where Prometheus metrics are served.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Config, validate::Problem};

/// Prometheus metrics (OpenMetrics text, which Prometheus scrapes natively).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve the metrics endpoint (`METRICS_ENABLED`, or `ENABLE_METRICS`, in the environment: `true` / `false`
    /// / `1` / `0`). Metrics are recorded either way; this only decides whether they are served.
    pub enabled: bool,
    /// Path of the endpoint.
    pub path: String,
    /// Serve metrics on a listener of their own at this port, on the IP of `server.listen`, and not on the main
    /// port (`PROMETHEUS_PORT`, or `METRICS_PORT`, in the environment). Unset: served on the main listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true, path: "/metrics".into(), port: None }
    }
}

/// Paths the main listener serves besides the liveness endpoint (`server.health_path`) and metrics.
const TAKEN: [&str; 3] = ["/mcp", "/ready", "/status"];

/// `problem` for an endpoint path (`field`) an operator may choose: absolute, plain characters.
fn path_problem(field: &str, path: &str) -> Option<Problem> {
    let path_chars = |c: char| c.is_ascii_alphanumeric() || "/_-.~".contains(c);
    (!path.starts_with('/') || !path.chars().all(path_chars)).then(|| {
        Problem::new(
            field,
            format!("{path:?}: must start with '/' and hold only letters, digits and / _ - . ~"),
        )
    })
}

/// Whether the REST facade, the admin page or the chat (when on) serves `path`.
fn rest_serves(config: &Config, path: &str) -> bool {
    config.rest.enabled
        && (path == "/openapi.json" || path == "/docs" || path == "/api" || path.starts_with("/api/"))
}

/// What the schema cannot say about the `metrics` section and the liveness path.
pub(crate) fn problems(config: &Config, problems: &mut Vec<Problem>) {
    let (metrics, health) = (&config.metrics, config.server.health_path.as_str());
    if let Some(problem) = path_problem("server.health_path", health) {
        problems.push(problem);
    } else if TAKEN.contains(&health) || rest_serves(config, health) {
        problems.push(Problem::new("server.health_path", format!("{health} is already served")));
    }
    let path = metrics.path.as_str();
    if let Some(problem) = path_problem("metrics.path", path) {
        problems.push(problem);
    } else if metrics.port.is_none() && (TAKEN.contains(&path) || path == health || rest_serves(config, path))
    {
        problems.push(Problem::new("metrics.path", format!("{path} is already served on the main listener")));
    }
    match metrics.port {
        Some(0) => problems.push(Problem::new("metrics.port", "must be a port number from 1 to 65535")),
        Some(port) => {
            let main = config.server.listen.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
            if main == Some(port) {
                problems.push(Problem::new(
                    "metrics.port",
                    format!(
                        "{port} is the port of server.listen; leave metrics.port unset to serve metrics there"
                    ),
                ));
            }
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(edit: impl FnOnce(&mut Config)) -> Vec<String> {
        let mut config = Config::default();
        edit(&mut config);
        let mut found = Vec::new();
        problems(&config, &mut found);
        found.into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn the_default_serves_metrics_on_the_main_listener() {
        let config = MetricsConfig::default();
        assert!(config.enabled && config.path == "/metrics" && config.port.is_none());
        assert!(check(|_| {}).is_empty());
    }

    #[test]
    fn a_path_or_port_that_cannot_be_served_is_refused() {
        assert_eq!(check(|c| c.metrics.path = "metrics".into()).len(), 1);
        assert_eq!(check(|c| c.metrics.path = "/me trics".into()).len(), 1);
        let taken = check(|c| c.metrics.path = "/status".into());
        assert!(taken[0].contains("already served"), "{taken:?}");
        // On a port of its own, the path is free.
        assert!(check(|c| (c.metrics.path, c.metrics.port) = ("/status".into(), Some(9090))).is_empty());
        assert!(check(|c| c.metrics.port = Some(0))[0].starts_with("metrics.port"));
        let same = check(|c| c.metrics.port = Some(8000));
        assert!(same[0].contains("server.listen"), "{same:?}");
    }

    #[test]
    fn the_liveness_path_moves_and_keeps_clear_of_the_other_endpoints() {
        assert!(check(|c| c.server.health_path = "/healthz".into()).is_empty());
        // Metrics may take `/health` once the liveness endpoint has left it, not the path it moved to.
        assert!(
            check(|c| (c.server.health_path, c.metrics.path) = ("/healthz".into(), "/health".into()))
                .is_empty()
        );
        let clash = check(|c| (c.server.health_path, c.metrics.path) = ("/m".into(), "/m".into()));
        assert!(clash == ["metrics.path: /m is already served on the main listener"], "{clash:?}");
        assert!(check(|c| c.server.health_path = "/ready".into())[0].starts_with("server.health_path"));
        assert!(check(|c| c.server.health_path = "health".into())[0].starts_with("server.health_path"));
        // The REST facade's paths are taken only while it is on.
        assert!(check(|c| c.metrics.path = "/docs".into()).is_empty());
        assert_eq!(check(|c| (c.rest.enabled, c.metrics.path) = (true, "/docs".into())).len(), 1);
    }

    #[test]
    fn the_section_parses_and_refuses_unknown_fields() {
        let demo = "backends:\n  d:\n    kind: builtin\n    builtin: demo\n";
        let yaml = format!("metrics:\n  enabled: false\n  port: 9090\n{demo}");
        let config = crate::parse_str(&yaml, crate::Format::Yaml, "test").unwrap();
        assert_eq!(
            config.metrics,
            MetricsConfig { enabled: false, path: "/metrics".into(), port: Some(9090) }
        );
        let unknown = format!("metrics:\n  prefix: x\n{demo}");
        let error = crate::parse_str(&unknown, crate::Format::Yaml, "test").unwrap_err().to_string();
        assert!(error.contains("prefix"), "{error}");
    }
}
