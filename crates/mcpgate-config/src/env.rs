//! Environment overrides (12-factor), under the names the reference deployment guides use.

use std::{net::IpAddr, time::Duration};

use crate::{ByteSize, Config, HumanDuration, LogFormat, validate::Problem};

/// Apply environment overrides to `config`. `lookup` reads a variable (`std::env::var` in production, a map in
/// tests). Returns a problem, with the variable's name as its path, for every value that does not parse.
///
/// | variable | overrides |
/// |---|---|
/// | `BIND_IP` | the IP of `server.listen` |
/// | `PORT`, `MCP_PORT` (wins) | the port of `server.listen` |
/// | `LOG_LEVEL` | `logging.level` |
/// | `LOG_FORMAT` | `logging.format` (`json` or `text`) |
/// | `MAX_REQUEST_SIZE` | `server.max_request_size` (`1048576`, `10mb`) |
/// | `REQUEST_TIMEOUT` | `server.request_timeout`, in milliseconds (or `30s`) |
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
        if let Some(value) = get(name) {
            match value.parse::<u16>() {
                Ok(p) => port = p.to_string(),
                Err(_) => bad(name, format!("{value:?} is not a port number")),
            }
        }
    }
    config.server.listen =
        if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };

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
    if let Some(size) = get("MAX_REQUEST_SIZE") {
        match size.parse::<ByteSize>() {
            Ok(size) => config.server.max_request_size = size,
            Err(e) => bad("MAX_REQUEST_SIZE", e),
        }
    }
    if let Some(timeout) = get("REQUEST_TIMEOUT") {
        let parsed = match timeout.parse::<u64>() {
            Ok(ms) => Ok(HumanDuration(Duration::from_millis(ms))),
            Err(_) => timeout.parse::<HumanDuration>(),
        };
        match parsed {
            Ok(d) => config.server.request_timeout = d,
            Err(e) => bad("REQUEST_TIMEOUT", e),
        }
    }
    problems
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
    fn bad_values_are_reported_with_the_variable_name() {
        let (_, p) = with(&[("PORT", "eighty"), ("LOG_FORMAT", "xml"), ("MAX_REQUEST_SIZE", "lots")]);
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["env PORT", "env LOG_FORMAT", "env MAX_REQUEST_SIZE"]);
    }
}
