//! The `telemetry` section: OpenTelemetry traces, exported over OTLP/HTTP (protobuf) to a collector.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Config, validate::Problem};

/// OpenTelemetry traces: a span per `/mcp` request and a child span per `tools/call`, sent in batches to an OTLP
/// collector over HTTP. A W3C `traceparent` in the request headers, or in a call's `params._meta`, makes the spans
/// part of the caller's trace. Read at start; a reload (SIGHUP) does not change it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Export traces. Unset: on exactly when an endpoint is set. `ENABLE_TELEMETRY` (`true` / `false` / `1` /
    /// `0`) in the environment sets it; `OTEL_SDK_DISABLED=true` switches it off whatever else says on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The collector's OTLP/HTTP URL: a base (`http://collector:4318`), to which `/v1/traces` is added, or a URL
    /// whose path already ends in `/v1/traces`, used as it is. Unset while enabled: `http://localhost:4318`, the
    /// OTLP default. From the environment, first found: `TELEMETRY_ENDPOINT`,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The `service.name` the spans are reported under (`OTEL_SERVICE_NAME` in the environment).
    pub service_name: String,
    /// Share of new traces recorded, from 0.0 (none) to 1.0 (all). A request that arrives with a trace context
    /// follows its caller's sampling decision instead.
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { enabled: None, endpoint: None, service_name: "mcpgate".into(), sample_ratio: 1.0 }
    }
}

/// Where OTLP/HTTP collectors listen by default.
const DEFAULT_ENDPOINT: &str = "http://localhost:4318";

/// The OTLP/HTTP path of traces.
const TRACES_PATH: &str = "/v1/traces";

impl TelemetryConfig {
    /// Whether traces are exported: `enabled` when set, else whether an endpoint is.
    pub fn active(&self) -> bool {
        self.enabled.unwrap_or(self.endpoint.is_some())
    }

    /// The URL spans are posted to: the endpoint (or `http://localhost:4318`) with `/v1/traces` added unless its
    /// path already ends so.
    pub fn traces_url(&self) -> String {
        let base = self.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT).trim();
        let (without_query, _) = base.split_once(['?', '#']).unwrap_or((base, ""));
        if without_query.trim_end_matches('/').ends_with(TRACES_PATH) {
            base.to_owned()
        } else {
            format!("{}{TRACES_PATH}", base.trim_end_matches('/'))
        }
    }
}

/// The endpoint variables, the first found wins: the guide's own name (set for this service on purpose) before
/// the standard ones (which platforms often set for every process).
const ENDPOINT_VARS: [&str; 3] =
    ["TELEMETRY_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// The only OTLP protocol spoken.
const PROTOCOL: &str = "http/protobuf";

/// `ENABLE_TELEMETRY`, `OTEL_SDK_DISABLED`, the endpoint variables and `OTEL_SERVICE_NAME`; and, when traces are
/// to be exported, a refusal of an `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` other than `http/protobuf` (a gRPC
/// collector port would never answer, and the spans would vanish without a word).
pub(crate) fn apply_env(
    telemetry: &mut TelemetryConfig,
    get: impl Fn(&str) -> Option<String>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let flag = |name: &str, problems: &mut Vec<Problem>| {
        crate::env::flag(name, &get).unwrap_or_else(|message| {
            problems.push(Problem::new(format!("env {name}"), message));
            None
        })
    };
    if let Some(enabled) = flag("ENABLE_TELEMETRY", &mut problems) {
        telemetry.enabled = Some(enabled);
    }
    if let Some(endpoint) = ENDPOINT_VARS.iter().find_map(|name| get(name)) {
        telemetry.endpoint = Some(endpoint);
    }
    if let Some(name) = get("OTEL_SERVICE_NAME") {
        telemetry.service_name = name;
    }
    if flag("OTEL_SDK_DISABLED", &mut problems) == Some(true) {
        telemetry.enabled = Some(false);
    }
    if telemetry.active() {
        for name in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
            if let Some(protocol) = get(name).filter(|p| !p.eq_ignore_ascii_case(PROTOCOL)) {
                let message = format!(
                    "{protocol:?}: mcpgate exports traces over OTLP/HTTP with protobuf only; unset it or use \
                     {PROTOCOL} (collectors take it on port 4318)"
                );
                problems.push(Problem::new(format!("env {name}"), message));
            }
        }
    }
    problems
}

/// What the schema cannot say about `telemetry`: an http(s) URL with a host, a service name, a ratio in [0, 1].
pub(crate) fn problems(config: &Config, problems: &mut Vec<Problem>) {
    let telemetry = &config.telemetry;
    if let Some(endpoint) = &telemetry.endpoint {
        let rest = endpoint.strip_prefix("http://").or_else(|| endpoint.strip_prefix("https://"));
        let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
        let bad = match host {
            None => Some("is not an http:// or https:// URL"),
            Some("") => Some("has no host"),
            Some(host) if host.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                Some("holds a space or a control character")
            }
            Some(_) => None,
        };
        if let Some(bad) = bad {
            problems.push(Problem::new("telemetry.endpoint", format!("{endpoint:?} {bad}")));
        }
    }
    if telemetry.service_name.trim().is_empty() {
        problems.push(Problem::new("telemetry.service_name", "must not be empty"));
    }
    if !(0.0..=1.0).contains(&telemetry.sample_ratio) {
        let message = format!("{} is not between 0.0 and 1.0", telemetry.sample_ratio);
        problems.push(Problem::new("telemetry.sample_ratio", message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> (TelemetryConfig, Vec<String>) {
        with_file(TelemetryConfig::default(), vars)
    }

    fn with_file(mut telemetry: TelemetryConfig, vars: &[(&str, &str)]) -> (TelemetryConfig, Vec<String>) {
        let problems = apply_env(&mut telemetry, crate::env::vars(vars));
        (telemetry, problems.into_iter().map(|p| p.to_string()).collect())
    }

    fn check(edit: impl FnOnce(&mut TelemetryConfig)) -> Vec<String> {
        let mut config = Config::default();
        edit(&mut config.telemetry);
        let mut found = Vec::new();
        problems(&config, &mut found);
        found.into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn off_by_default_and_on_with_an_endpoint_alone() {
        let (t, p) = with(&[]);
        assert!(p.is_empty() && !t.active(), "{p:?}");
        let (t, p) = with(&[("TELEMETRY_ENDPOINT", "https://telemetry.example.com")]);
        assert!(p.is_empty() && t.active(), "{p:?}");
        assert_eq!(t.traces_url(), "https://telemetry.example.com/v1/traces");
    }

    #[test]
    fn the_guide_pair_and_its_switch_off() {
        let guide = [("ENABLE_TELEMETRY", "true"), ("TELEMETRY_ENDPOINT", "https://telemetry.example.com")];
        let (t, p) = with(&guide);
        assert!(p.is_empty() && t.active(), "{p:?}");
        let (t, _) = with(&[("ENABLE_TELEMETRY", "false"), ("TELEMETRY_ENDPOINT", "http://c:4318")]);
        assert!(!t.active(), "ENABLE_TELEMETRY=false wins over an endpoint");
        let (t, _) = with(&[("ENABLE_TELEMETRY", "1")]);
        assert!(t.active());
        assert_eq!(
            t.traces_url(),
            "http://localhost:4318/v1/traces",
            "enabled without endpoint: the default"
        );
        let (t, _) = with(&[("ENABLE_TELEMETRY", "true"), ("OTEL_SDK_DISABLED", "true")]);
        assert!(!t.active(), "OTEL_SDK_DISABLED=true switches it off");
        let (t, _) = with(&[("TELEMETRY_ENDPOINT", "http://c:4318"), ("OTEL_SDK_DISABLED", "false")]);
        assert!(t.active());
    }

    #[test]
    fn the_guide_endpoint_wins_over_the_standard_ones_and_the_file() {
        let file =
            TelemetryConfig { endpoint: Some("http://file:4318".into()), ..TelemetryConfig::default() };
        let all = [
            ("TELEMETRY_ENDPOINT", "http://guide:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/v1/traces"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318"),
        ];
        for skip in 0..all.len() {
            let (t, p) = with_file(file.clone(), &all[skip..]);
            assert!(p.is_empty(), "{p:?}");
            assert_eq!(t.endpoint.as_deref(), Some(all[skip].1));
        }
        // Through the entry point that reads the environment: it is what treats a blank value as unset.
        let mut config = Config { telemetry: file, ..Config::default() };
        crate::env::apply_env(&mut config, |name| (name == "TELEMETRY_ENDPOINT").then(|| "  ".to_owned()));
        assert_eq!(
            config.telemetry.endpoint.as_deref(),
            Some("http://file:4318"),
            "an empty variable is unset"
        );
        let (t, _) = with(&[("OTEL_SERVICE_NAME", "gateway-eu")]);
        assert_eq!(t.service_name, "gateway-eu");
    }

    #[test]
    fn traces_path_is_added_once() {
        let url = |endpoint: &str| {
            TelemetryConfig { endpoint: Some(endpoint.into()), ..TelemetryConfig::default() }.traces_url()
        };
        assert_eq!(url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(url("https://c/otlp"), "https://c/otlp/v1/traces");
        assert_eq!(url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
        assert_eq!(url("http://c/v1/traces?tenant=a"), "http://c/v1/traces?tenant=a");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let (t, p) = with(&[("ENABLE_TELEMETRY", "yes"), ("OTEL_SDK_DISABLED", "maybe")]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("env ENABLE_TELEMETRY: \"yes\""), "{p:?}");
        assert!(p[1].starts_with("env OTEL_SDK_DISABLED"), "{p:?}");
        assert_eq!(t, TelemetryConfig::default());
    }

    #[test]
    fn a_grpc_protocol_is_refused_only_when_traces_are_exported() {
        let (_, p) = with(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        assert!(p.is_empty(), "telemetry off: not our business: {p:?}");
        let on = [("TELEMETRY_ENDPOINT", "http://c:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
        let (_, p) = with(&on);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("env OTEL_EXPORTER_OTLP_PROTOCOL") && p[0].contains("http/protobuf"),
            "{p:?}"
        );
        let fine =
            [("TELEMETRY_ENDPOINT", "http://c"), ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "HTTP/PROTOBUF")];
        assert!(with(&fine).1.is_empty());
    }

    #[test]
    fn validation_names_the_field() {
        assert!(check(|_| {}).is_empty());
        assert!(check(|t| t.endpoint = Some("https://otel.example.com:4318".into())).is_empty());
        for (endpoint, says) in [
            ("otel.example.com:4318", "not an http:// or https:// URL"),
            ("grpc://c:4317", "not an http:// or https:// URL"),
            ("http:///v1/traces", "no host"),
            ("http://a b", "space"),
        ] {
            let found = check(|t| t.endpoint = Some(endpoint.into()));
            assert_eq!(found.len(), 1, "{endpoint}: {found:?}");
            assert!(found[0].starts_with("telemetry.endpoint:") && found[0].contains(says), "{found:?}");
        }
        assert!(check(|t| t.sample_ratio = 1.5)[0].starts_with("telemetry.sample_ratio"));
        assert!(check(|t| t.sample_ratio = f64::NAN)[0].starts_with("telemetry.sample_ratio"));
        assert!(check(|t| t.service_name = " ".into())[0].starts_with("telemetry.service_name"));
    }

    #[test]
    fn the_section_parses_and_refuses_unknown_fields() {
        let demo = "backends:\n  d:\n    kind: builtin\n    builtin: demo\n";
        let yaml = format!("telemetry:\n  endpoint: http://c:4318\n  sample_ratio: 0.25\n{demo}");
        let config = crate::parse_str(&yaml, crate::Format::Yaml, "test").unwrap();
        assert!(config.telemetry.active());
        assert_eq!(config.telemetry.sample_ratio, 0.25);
        assert_eq!(config.telemetry.service_name, "mcpgate");
        let unknown = format!("telemetry:\n  exporter: jaeger\n{demo}");
        let error = crate::parse_str(&unknown, crate::Format::Yaml, "test").unwrap_err().to_string();
        assert!(error.contains("exporter"), "{error}");
    }
}
