//! Environment overrides (12-factor), under the names the reference deployment guides use.

use std::{net::IpAddr, num::NonZeroU32, time::Duration};

use crate::{ApiKeyConfig, ByteSize, Config, HumanDuration, KeyHash, LogFormat, Secret, validate::Problem};

/// Apply environment overrides to `config`. `lookup` reads a variable (`std::env::var` in production, a map in
/// tests). Returns a problem, with the variable's name as its path, for every value that does not parse.
///
/// | variable | overrides |
/// |---|---|
/// | `BIND_IP` | the IP of `server.listen` |
/// | `PORT`, `MCP_PORT` (wins) | the port of `server.listen` |
/// | `ALLOWED_HOSTS`, `ALLOWED_ORIGINS` | `server.allowed_hosts`, `server.allowed_origins` (comma-separated; `*`: any) |
/// | `LOG_LEVEL` | `logging.level` |
/// | `LOG_FORMAT` | `logging.format` (`json` or `text`) |
/// | `LOG_FILE` | `logging.file`: the log also goes to this file (opened again on SIGHUP) |
/// | `HEALTH_CHECK_PATH` | `server.health_path`: where the liveness endpoint answers (`/health`) |
/// | `WORKERS` | `server.workers`: threads serving requests (an integer ≥ 1) |
/// | `MAX_REQUEST_SIZE` | `server.max_request_size` (`1048576`, `10mb`) |
/// | `REQUEST_TIMEOUT` | `server.request_timeout`, in milliseconds (or `30s`) |
/// | `CIRCUIT_BREAKER_FAILURE_THRESHOLD` | `resilience.circuit_breaker.failure_threshold` (an integer ≥ 1) |
/// | `CIRCUIT_BREAKER_RESET_TIMEOUT` | `resilience.circuit_breaker.reset_timeout`, in milliseconds (`60000`, the guide's default) or `60s` |
/// | `MCP_API_KEYS` | adds `security.api_keys` `env-1`, `env-2`, … (comma-separated keys; tier `default`, every tool) |
/// | `MCP_API_KEY` | adds one `security.api_keys` entry named `env` |
/// | `API_KEY_SALT` | the HMAC key of `hmac-sha256:` key hashes (environment only) |
/// | `MCPGATE_SEAL_KEY` (wins), `SESSION_SECRET` | `security.seal_key`: the key that seals `requestState` and shared session ids (at least 32 bytes; environment only; the same on every node) |
/// | `METRICS_ENABLED` (wins), `ENABLE_METRICS` | `metrics.enabled` (`true` / `false` / `1` / `0`) |
/// | `PROMETHEUS_PORT` (wins), `METRICS_PORT` | `metrics.port`: metrics on a listener of their own |
/// | `RATE_LIMIT_MAX_REQUESTS`, `RATE_LIMIT_WINDOW_MS` | `rate_limits.per_ip`: requests per window (milliseconds or `15m`) per client address |
/// | `ENABLE_TELEMETRY`; `OTEL_SDK_DISABLED=true` (switches off) | `telemetry.enabled` |
/// | `TELEMETRY_ENDPOINT` (wins), `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT` | `telemetry.endpoint` (an endpoint alone switches traces on) |
/// | `OTEL_SERVICE_NAME` | `telemetry.service_name` |
/// | `REDIS_URL`; `REDIS_HOST`, `REDIS_PORT` | `state.url` (and `state.backend: redis`): rate limits and the cache shared by every node on that Redis |
/// | `REDIS_PASSWORD` | the Redis password (environment only; `state.password_env` names another variable) |
/// | `REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER` | `state.sentinel`: comma-separated `host:port` of the sentinels, and the master's name |
/// | `CACHE_TTL_SECONDS` | `cache.ttl`: the default TTL of cached tools, in seconds (`0`: no caching) |
/// | `MAX_TOKENS_PER_REQUEST` | `budget.max_tokens`: tokens one tool result may send back (`0`: no limit) |
/// | `CONTEXT_SIZE_LIMIT_KB` | `budget.max_bytes`, in KiB (`0`: no limit) |
/// | `AUDIT_LOG_FILE` | `audit.file`: the audit log's file |
/// | `JWT_SECRET` (environment only), `JWT_JWKS_URL`, `JWT_PUBLIC_KEY_FILE`, `JWT_ISSUER`, `JWT_AUDIENCE` (comma-separated) | `security.jwt` (any of them switches JWT tokens on) |
/// | `COMPRESSION_ENABLED` | `server.compression.enabled` |
/// | `EXECUTION_MODE` | `code_mode.mode`: `direct`, `code`, `hybrid` (also `mcp_only`, `code_execution`) |
/// | `SANDBOX_BACKEND`, `SANDBOX_ENABLED` | `code_mode.sandbox.backend`, `code_mode.sandbox.enabled` |
/// | `REST_ENABLED` | `rest.enabled`: the REST facade and its OpenAPI document |
/// | `UI_ENABLED`, `ADMIN_API_KEY` (environment only: hashed at once) | `ui.enabled`, `ui.admin_key`: the admin page |
/// | `CHAT_ENABLED`, `CHAT_PROVIDER`, `CHAT_MODEL`, `CHAT_BASE_URL` | `chat`: `POST /chat` and its LLM (`ANTHROPIC_API_KEY` / `OPENAI_API_KEY` are read at start) |
/// | `MAX_EXECUTION_TIME`, `MAX_MEMORY_MB` | `code_mode.sandbox.max_execution_time` (seconds), `.max_memory` (MiB) |
pub fn apply_env(config: &mut Config, lookup: impl Fn(&str) -> Option<String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let mut bad = |name: &str, message: String| problems.push(Problem::new(format!("env {name}"), message));

    let (mut host, mut port) = split_listen(&config.server.listen);
    if let Some(ip) = get("BIND_IP") {
        match ip.parse::<IpAddr>() {
            Ok(ip) => host = ip.to_string(),
            Err(_) => bad("BIND_IP", format!("{ip:?} is not an IP address")),
        }
    }
    for name in ["PORT", "MCP_PORT"] {
        // Kubernetes sets `MCP_PORT=tcp://10.0.0.9:8000` in every pod of a namespace with a Service named `mcp`
        // (a service link): that is not the port to listen on.
        let value = get(name).filter(|v| !(name == "MCP_PORT" && v.contains("://")));
        if let Some(value) = value {
            match value.parse::<u16>() {
                Ok(p) => port = p.to_string(),
                Err(_) => bad(name, format!("{value:?} is not a port number")),
            }
        }
    }
    config.server.listen =
        if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };

    // Comma-separated lists (`*` alone: any), for a container reached under names its image cannot know.
    let list = |value: String| {
        value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
    };
    if let Some(hosts) = get("ALLOWED_HOSTS") {
        config.server.allowed_hosts = list(hosts);
    }
    if let Some(origins) = get("ALLOWED_ORIGINS") {
        config.server.allowed_origins = list(origins);
    }
    if let Some(level) = get("LOG_LEVEL") {
        config.logging.level = level.to_ascii_lowercase();
    }
    if let Some(format) = get("LOG_FORMAT") {
        match format.to_ascii_lowercase().as_str() {
            "json" => config.logging.format = LogFormat::Json,
            "text" | "pretty" | "plain" => config.logging.format = LogFormat::Text,
            _ => bad("LOG_FORMAT", format!("{format:?}: use json or text")),
        }
    }
    if let Some(file) = get("LOG_FILE") {
        config.logging.file = Some(file.into());
    }
    if let Some(path) = get("HEALTH_CHECK_PATH") {
        config.server.health_path = path;
    }
    if let Some(workers) = get("WORKERS") {
        match workers.parse() {
            Ok(n) => config.server.workers = Some(n),
            Err(_) => bad("WORKERS", format!("{workers:?}: use an integer ≥ 1")),
        }
    }
    if let Some(size) = get("MAX_REQUEST_SIZE") {
        match size.parse::<ByteSize>() {
            Ok(size) => config.server.max_request_size = size,
            Err(e) => bad("MAX_REQUEST_SIZE", e),
        }
    }
    if let Some(timeout) = get("REQUEST_TIMEOUT") {
        match millis_or_duration(&timeout) {
            Ok(d) => config.server.request_timeout = d,
            Err(e) => bad("REQUEST_TIMEOUT", e),
        }
    }
    if let Some(threshold) = get("CIRCUIT_BREAKER_FAILURE_THRESHOLD") {
        match threshold.parse::<NonZeroU32>() {
            Ok(n) => config.resilience.circuit_breaker.failure_threshold = n,
            Err(_) => bad("CIRCUIT_BREAKER_FAILURE_THRESHOLD", format!("{threshold:?}: use an integer ≥ 1")),
        }
    }
    if let Some(reset) = get("CIRCUIT_BREAKER_RESET_TIMEOUT") {
        // The guide's unit is milliseconds (default 60000). A bare number under 1000 is almost surely meant as
        // seconds; taking it as milliseconds would make the breaker useless, so it is refused with the fix.
        match reset.parse::<u64>() {
            Ok(ms @ 1..1000) => bad(
                "CIRCUIT_BREAKER_RESET_TIMEOUT",
                format!(
                    "{ms} is in milliseconds (the guide's unit); write {ms}s for seconds or {}",
                    ms * 1000
                ),
            ),
            _ => match millis_or_duration(&reset) {
                Ok(d) if !d.0.is_zero() => config.resilience.circuit_breaker.reset_timeout = d,
                Ok(_) => bad("CIRCUIT_BREAKER_RESET_TIMEOUT", "must be more than zero".into()),
                Err(e) => bad("CIRCUIT_BREAKER_RESET_TIMEOUT", e),
            },
        }
    }
    // Keys from the environment are hashed here, so the config never holds a key in clear.
    if let Some(salt) = get("API_KEY_SALT") {
        config.security.api_key_salt = Some(Secret::new(salt));
    }
    // The configurable guide's `SESSION_SECRET` is the same secret under its name.
    let seal = ["MCPGATE_SEAL_KEY", "SESSION_SECRET"].into_iter().find_map(|n| get(n).map(|k| (n, k)));
    if let Some((name, key)) = seal {
        if key.len() < crate::security::SEAL_KEY_MIN_BYTES {
            // Never echo the key: say how long it must be.
            let min = crate::security::SEAL_KEY_MIN_BYTES;
            bad(name, format!("must be at least {min} bytes (`openssl rand -base64 48`)"));
        } else {
            config.security.seal_key = Some(Secret::new(key));
        }
    }
    let listed = get("MCP_API_KEYS").unwrap_or_default();
    let listed = listed.split(',').map(str::trim).filter(|k| !k.is_empty());
    let named = listed.enumerate().map(|(i, key)| ("MCP_API_KEYS", format!("env-{}", i + 1), key.to_owned()));
    for (var, name, key) in named.chain(get("MCP_API_KEY").map(|key| ("MCP_API_KEY", "env".into(), key))) {
        if key.bytes().all(|b| b.is_ascii_graphic()) {
            config.security.api_keys.push(ApiKeyConfig::new(name, &KeyHash::sha256(&key)));
        } else {
            // Never echo the key: name its position.
            bad(var, format!("key {name} holds a space or a character an HTTP header cannot carry"));
        }
    }
    for name in ["ENABLE_METRICS", "METRICS_ENABLED"] {
        match flag(name, get) {
            Ok(Some(enabled)) => config.metrics.enabled = enabled,
            Ok(None) => {}
            Err(message) => bad(name, message),
        }
    }
    for name in ["METRICS_PORT", "PROMETHEUS_PORT"] {
        if let Some(value) = get(name) {
            match value.parse::<u16>() {
                Ok(p @ 1..) => config.metrics.port = Some(p),
                _ => bad(name, format!("{value:?} is not a port number (1-65535)")),
            }
        }
    }
    problems.extend(crate::limits::apply_env(&mut config.rate_limits, get));
    problems.extend(crate::telemetry::apply_env(&mut config.telemetry, get));
    problems.extend(crate::cache::apply_env(&mut config.cache, get));
    problems.extend(crate::state::apply_env(&mut config.state, get));
    problems.extend(crate::budget::apply_env(&mut config.budget, get));
    problems.extend(crate::audit::apply_env(&mut config.audit, get));
    problems.extend(crate::jwt::apply_env(&mut config.security, get));
    problems.extend(crate::compression::apply_env(&mut config.server.compression, get));
    problems.extend(crate::code_mode::apply_env(&mut config.code_mode, get));
    problems.extend(crate::rest::apply_env(&mut config.rest, get));
    problems.extend(crate::ui::apply_env(&mut config.ui, get));
    problems.extend(crate::chat::apply_env(&mut config.chat, get));
    problems
}

/// A true/false variable (`true` / `false` / `1` / `0`, any case): `None` when unset, what is wrong when it is
/// something else.
pub(crate) fn flag(name: &str, get: impl Fn(&str) -> Option<String>) -> Result<Option<bool>, String> {
    let Some(value) = get(name) else { return Ok(None) };
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(Some(true)),
        "false" | "0" => Ok(Some(false)),
        _ => Err(format!("{value:?}: use true, false, 1 or 0")),
    }
}

/// The guides' duration variables: a bare integer is milliseconds (`30000`); humantime (`30s`) is accepted too.
fn millis_or_duration(value: &str) -> Result<HumanDuration, String> {
    number_or_duration(value, Duration::from_millis(1))
}

/// A variable holding a whole number of `unit`s (the guides' own spelling: `…_MS`, `…_SECONDS`) or a duration
/// with its unit (`5m`).
pub(crate) fn number_or_duration(value: &str, unit: Duration) -> Result<HumanDuration, String> {
    match value.parse::<u64>() {
        Ok(count) => u32::try_from(count)
            .ok()
            .and_then(|count| unit.checked_mul(count))
            .map(HumanDuration)
            .ok_or_else(|| format!("{value:?} is too large")),
        Err(_) => value.parse::<HumanDuration>(),
    }
}

/// A lookup over `vars` (the last of a name wins) giving values as [`apply_env`] passes them to the sections
/// (trimmed; empty means unset), for the sections' tests.
#[cfg(test)]
pub(crate) fn vars<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        let value = vars.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v.trim());
        value.filter(|v| !v.is_empty()).map(str::to_owned)
    }
}

/// Split `IP:PORT` (or `[v6]:PORT`) into its parts, without validating them.
fn split_listen(listen: &str) -> (String, String) {
    match listen.rsplit_once(':') {
        Some((host, port)) => {
            (host.trim_start_matches('[').trim_end_matches(']').to_owned(), port.to_owned())
        }
        None => (listen.to_owned(), "8000".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn with(vars: &[(&str, &str)]) -> (Config, Vec<Problem>) {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut config = Config::default();
        let problems = apply_env(&mut config, |k| vars.get(k).cloned());
        (config, problems)
    }

    #[test]
    fn guide_variables_override_the_file() {
        let (c, p) = with(&[
            ("PORT", "3001"),
            ("BIND_IP", "0.0.0.0"),
            ("LOG_LEVEL", "DEBUG"),
            ("LOG_FORMAT", "json"),
            ("MAX_REQUEST_SIZE", "10mb"),
            ("REQUEST_TIMEOUT", "30000"),
        ]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.server.listen, "0.0.0.0:3001");
        assert_eq!(c.logging.level, "debug");
        assert_eq!(c.logging.format, LogFormat::Json);
        assert_eq!(c.server.max_request_size.0, 10 << 20);
        assert_eq!(c.server.request_timeout.0, Duration::from_secs(30));
    }

    #[test]
    fn mcp_port_wins_over_port_and_ipv6_is_bracketed() {
        let (c, _) = with(&[("PORT", "1"), ("MCP_PORT", "2"), ("BIND_IP", "::1")]);
        assert_eq!(c.server.listen, "[::1]:2");
    }

    #[test]
    fn allowed_hosts_and_origins_are_comma_separated_lists() {
        let (c, p) =
            with(&[("ALLOWED_HOSTS", "mcpgate, mcpgate.prod.svc ,localhost"), ("ALLOWED_ORIGINS", "*")]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.server.allowed_hosts, ["mcpgate", "mcpgate.prod.svc", "localhost"]);
        assert_eq!(c.server.allowed_origins, ["*"]);
    }

    #[test]
    fn a_kubernetes_service_link_in_mcp_port_is_not_a_port() {
        let (c, p) = with(&[("PORT", "8000"), ("MCP_PORT", "tcp://10.0.0.9:8000")]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.server.listen, "127.0.0.1:8000");
    }

    #[test]
    fn circuit_breaker_variables_take_the_guides_units() {
        let (c, p) = with(&[]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.resilience.circuit_breaker.failure_threshold.get(), 5);
        assert_eq!(c.resilience.circuit_breaker.reset_timeout.0, Duration::from_secs(60));
        let (c, p) =
            with(&[("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "3"), ("CIRCUIT_BREAKER_RESET_TIMEOUT", "60000")]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.resilience.circuit_breaker.failure_threshold.get(), 3);
        assert_eq!(c.resilience.circuit_breaker.reset_timeout.0, Duration::from_secs(60));
        for humane in ["60s", "1m", " 60s "] {
            let (c, p) = with(&[("CIRCUIT_BREAKER_RESET_TIMEOUT", humane)]);
            assert!(p.is_empty(), "{humane}: {p:?}");
            assert_eq!(c.resilience.circuit_breaker.reset_timeout.0, Duration::from_secs(60), "{humane}");
        }
        let (c, p) = with(&[("CIRCUIT_BREAKER_RESET_TIMEOUT", "1500")]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.resilience.circuit_breaker.reset_timeout.0, Duration::from_millis(1500));
    }

    #[test]
    fn bad_circuit_breaker_values_name_the_variable_and_keep_the_default() {
        for (name, value, says) in [
            ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "0", "integer ≥ 1"),
            ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "-2", "integer ≥ 1"),
            ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "five", "integer ≥ 1"),
            ("CIRCUIT_BREAKER_RESET_TIMEOUT", "60", "write 60s for seconds or 60000"),
            ("CIRCUIT_BREAKER_RESET_TIMEOUT", "0", "more than zero"),
            ("CIRCUIT_BREAKER_RESET_TIMEOUT", "a minute", "invalid duration"),
        ] {
            let (c, p) = with(&[(name, value)]);
            assert_eq!(p.len(), 1, "{name}={value}: {p:?}");
            assert_eq!(p[0].path, format!("env {name}"));
            assert!(p[0].message.contains(says), "{name}={value}: {}", p[0].message);
            assert_eq!(c.resilience, crate::ResilienceConfig::default());
        }
    }

    #[test]
    fn api_keys_from_the_environment_are_hashed_and_named_in_order() {
        let (c, p) = with(&[
            ("MCP_API_KEYS", "prod-key-1, prod-key-2,,"),
            ("MCP_API_KEY", "single"),
            ("API_KEY_SALT", "pepper"),
        ]);
        assert!(p.is_empty(), "{p:?}");
        let keys = &c.security.api_keys;
        let names: Vec<_> = keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["env-1", "env-2", "env"]);
        assert_eq!(keys[1].hash, KeyHash::sha256("prod-key-2").to_string());
        assert!(keys.iter().all(|k| k.tier == "default" && k.tools == ["*"] && k.expires.is_none()));
        assert!(!format!("{c:?}").contains("prod-key") && !format!("{c:?}").contains("pepper"));
        assert_eq!(c.security.api_key_salt.as_ref().map(Secret::expose), Some("pepper"));
        assert!(!c.security.anonymous_allowed());
    }

    #[test]
    fn an_unsendable_environment_key_is_refused_without_echoing_it() {
        let (c, p) = with(&[("MCP_API_KEYS", "good,bad key\u{7}")]);
        assert_eq!(c.security.api_keys.len(), 1);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "env MCP_API_KEYS");
        assert!(p[0].message.contains("env-2") && !p[0].message.contains("bad key"), "{}", p[0].message);
    }

    #[test]
    fn the_seal_key_comes_from_the_environment_and_must_be_long_enough() {
        let (c, p) = with(&[("MCPGATE_SEAL_KEY", "short-but-secret")]);
        assert!(c.security.seal_key.is_none());
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "env MCPGATE_SEAL_KEY");
        assert!(p[0].message.contains("at least 32 bytes") && !p[0].message.contains("short-but-secret"));
        let key = "k".repeat(32);
        let (c, p) = with(&[("MCPGATE_SEAL_KEY", &key)]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.security.seal_key.as_ref().map(|k| k.expose()), Some(key.as_str()));
    }

    #[test]
    fn session_secret_is_the_seal_key_under_the_guides_name() {
        let (ours, theirs) = ("o".repeat(32), "t".repeat(40));
        let (c, p) = with(&[("SESSION_SECRET", &theirs)]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.security.seal_key.as_ref().map(|k| k.expose()), Some(theirs.as_str()));
        let (c, _) = with(&[("SESSION_SECRET", &theirs), ("MCPGATE_SEAL_KEY", &ours)]);
        assert_eq!(c.security.seal_key.as_ref().map(|k| k.expose()), Some(ours.as_str()));
        let (_, p) = with(&[("SESSION_SECRET", "too-short")]);
        assert_eq!(p[0].path, "env SESSION_SECRET");
    }

    #[test]
    fn log_file_health_path_and_workers_come_from_the_guides_variables() {
        let (c, p) = with(&[
            ("LOG_FILE", "/var/log/mcp/server.log"),
            ("HEALTH_CHECK_PATH", "/healthz"),
            ("WORKERS", "4"),
        ]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.logging.file.as_deref(), Some(std::path::Path::new("/var/log/mcp/server.log")));
        assert_eq!(c.server.health_path, "/healthz");
        assert_eq!(c.server.workers.map(|n| n.get()), Some(4));
        for bad in ["0", "-1", "four"] {
            let (c, p) = with(&[("WORKERS", bad)]);
            assert!(c.server.workers.is_none());
            assert_eq!(p[0].path, "env WORKERS", "{bad}");
        }
        // A path that cannot be served is the validator's to refuse, with the field's name.
        let (c, _) = with(&[("HEALTH_CHECK_PATH", "health")]);
        assert!(crate::validate(&c).iter().any(|p| p.path == "server.health_path"));
    }

    #[test]
    fn metrics_variables_switch_the_endpoint_and_move_it_to_its_own_port() {
        let (c, p) = with(&[]);
        assert!(p.is_empty() && c.metrics.enabled && c.metrics.port.is_none(), "{p:?}");
        for (value, enabled) in
            [("false", false), ("0", false), ("FALSE", false), ("true", true), ("1", true)]
        {
            let (c, p) = with(&[("METRICS_ENABLED", value)]);
            assert!(p.is_empty(), "{p:?}");
            assert_eq!(c.metrics.enabled, enabled, "{value}");
        }
        let (c, _) = with(&[("ENABLE_METRICS", "false"), ("METRICS_ENABLED", "true")]);
        assert!(c.metrics.enabled, "METRICS_ENABLED wins");
        let (c, p) = with(&[("METRICS_PORT", "9091"), ("PROMETHEUS_PORT", "9090")]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.metrics.port, Some(9090), "PROMETHEUS_PORT wins");
        let (c, p) = with(&[("METRICS_ENABLED", "maybe"), ("PROMETHEUS_PORT", "0")]);
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["env METRICS_ENABLED", "env PROMETHEUS_PORT"]);
        assert_eq!(c.metrics, crate::MetricsConfig::default());
    }

    #[test]
    fn bad_values_are_reported_with_the_variable_name() {
        let (_, p) = with(&[("PORT", "eighty"), ("LOG_FORMAT", "xml"), ("MAX_REQUEST_SIZE", "lots")]);
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["env PORT", "env LOG_FORMAT", "env MAX_REQUEST_SIZE"]);
    }
}
