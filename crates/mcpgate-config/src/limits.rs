//! The `rate_limits` section: how many requests the gateway, a client address, an API key (by its tier) or a tool
//! may take in a time. None is set by default.

use std::{collections::BTreeMap, num::NonZeroU32, time::Duration};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Config, units::HumanDuration, validate::Problem};

/// Rate limits. Each is a bucket that allows a burst of `requests` and then one more request every
/// `per / requests` (GCRA). A request is checked against every limit that applies to it and refused when any has
/// no room — without spending the others. Over a limit at the HTTP edge (`global`, `per_ip`, `per_key`, `tiers`):
/// HTTP 429 with `Retry-After`; over a tool's limit: a JSON-RPC error for that `tools/call`. Every answer from a
/// limited `/mcp` carries `RateLimit` and `RateLimit-Policy` headers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// HTTP requests to `/mcp` from everyone together: one budget for the whole gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global: Option<RateLimit>,
    /// HTTP requests to `/mcp` from one client address — the peer, or what a trusted proxy forwarded; IPv6
    /// addresses counted by their /64. `RATE_LIMIT_MAX_REQUESTS` per `RATE_LIMIT_WINDOW_MS` (milliseconds) in the
    /// environment set it (the guides' "100 per IP per 15 minutes").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_ip: Option<RateLimit>,
    /// HTTP requests to `/mcp` with one API key, for keys whose tier has no entry in `tiers`. Anonymous callers
    /// are one principal (`anonymous`) and share it; `per_ip` tells them apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_key: Option<RateLimit>,
    /// HTTP requests to `/mcp` with one API key, by the key's tier (`free: {requests: 60, per: 1m}`, `paid:
    /// {requests: 1000, per: 1m}`): every key of the tier has a budget of that size of its own, in place of
    /// `per_key`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tiers: BTreeMap<String, RateLimit>,
    /// `tools/call` of one tool from every caller together, by public tool name or glob (`search_*`,
    /// `github__*`); each tool a glob matches has a budget of its own. An exact name wins over a glob, a longer
    /// glob over a shorter one.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, RateLimit>,
    /// `resources/read` and `resources/subscribe` of one resource from every caller together, by URI or glob
    /// (`docs://*`); each resource a glob matches has a budget of its own, chosen as for `tools`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, RateLimit>,
    /// `prompts/get` of one prompt from every caller together, by name or glob; each prompt a glob matches has
    /// a budget of its own, chosen as for `tools`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub prompts: BTreeMap<String, RateLimit>,
}

impl RateLimitsConfig {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        self.global.is_none()
            && self.per_ip.is_none()
            && self.per_key.is_none()
            && self.tiers.is_empty()
            && self.tools.is_empty()
            && self.resources.is_empty()
            && self.prompts.is_empty()
    }
}

/// One budget: `requests` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per `per`; also the largest burst.
    pub requests: NonZeroU32,
    /// The window the requests are spread over (`1s`, `1m`, `15m`, `1h`).
    pub per: HumanDuration,
}

impl RateLimit {
    /// `requests` per `per`; `None` for zero requests.
    pub fn new(requests: u32, per: Duration) -> Option<Self> {
        Some(Self { requests: NonZeroU32::new(requests)?, per: HumanDuration(per) })
    }
}

/// The guides' defaults for the half of `RATE_LIMIT_*` that is not set: 100 requests per 15 minutes.
const GUIDE_MAX_REQUESTS: u32 = 100;
const GUIDE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// `RATE_LIMIT_WINDOW_MS` and `RATE_LIMIT_MAX_REQUESTS`: either sets `per_ip`, the other half coming from the file's
/// `per_ip` or else the guides' default (100 per 15 minutes).
pub(crate) fn apply_env(limits: &mut RateLimitsConfig, get: impl Fn(&str) -> Option<String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let (window, max) = (get("RATE_LIMIT_WINDOW_MS"), get("RATE_LIMIT_MAX_REQUESTS"));
    if window.is_none() && max.is_none() {
        return problems;
    }
    let mut requests = limits.per_ip.map_or(GUIDE_MAX_REQUESTS, |l| l.requests.get());
    let mut per = limits.per_ip.map_or(GUIDE_WINDOW, |l| l.per.0);
    if let Some(max) = max {
        match max.parse::<u32>() {
            Ok(n @ 1..) => requests = n,
            _ => problems.push(Problem::new(
                "env RATE_LIMIT_MAX_REQUESTS",
                format!("{max:?}: use an integer ≥ 1 (unset the variable for no limit)"),
            )),
        }
    }
    if let Some(window) = window {
        match crate::env::number_or_duration(&window, Duration::from_millis(1)).map(|d| d.0) {
            Ok(d) if !d.is_zero() => per = d,
            Ok(_) => problems.push(Problem::new("env RATE_LIMIT_WINDOW_MS", "must be more than zero")),
            Err(e) => problems.push(Problem::new("env RATE_LIMIT_WINDOW_MS", e)),
        }
    }
    if problems.is_empty() {
        limits.per_ip = RateLimit::new(requests, per);
    }
    problems
}

/// What the schema cannot say about `rate_limits`: windows long enough to spread their requests over (at least a
/// nanosecond each) and at most a year; tier names of the key-name shape; tool patterns of the tool-name shape.
pub(crate) fn problems(config: &Config, problems: &mut Vec<Problem>) {
    let limits = &config.rate_limits;
    let mut check = |path: String, limit: &RateLimit| {
        let per = limit.per.0;
        if per.is_zero() {
            problems.push(Problem::new(format!("{path}.per"), "must be longer than zero"));
        } else if per > Duration::from_secs(366 * 24 * 3600) {
            problems.push(Problem::new(format!("{path}.per"), "must be at most a year"));
        } else if per.as_nanos() < u128::from(limit.requests.get()) {
            let message =
                format!("{} requests in {} is more than one per nanosecond", limit.requests, limit.per);
            problems.push(Problem::new(format!("{path}.requests"), message));
        }
    };
    for (field, limit) in
        [("global", &limits.global), ("per_ip", &limits.per_ip), ("per_key", &limits.per_key)]
    {
        if let Some(limit) = limit {
            check(format!("rate_limits.{field}"), limit);
        }
    }
    for (tier, limit) in &limits.tiers {
        check(format!("rate_limits.tiers.{tier}"), limit);
    }
    for (section, map) in
        [("tools", &limits.tools), ("resources", &limits.resources), ("prompts", &limits.prompts)]
    {
        for (name, limit) in map {
            check(format!("rate_limits.{section}.{name}"), limit);
        }
    }
    for pattern in limits.resources.keys().chain(limits.prompts.keys()).filter(|p| p.trim().is_empty()) {
        problems.push(Problem::new(format!("rate_limits.{pattern}"), "an empty glob matches nothing"));
    }
    for tier in limits.tiers.keys().filter(|t| t.trim().is_empty()) {
        problems.push(Problem::new(format!("rate_limits.tiers.{tier}"), "a tier name must not be empty"));
    }
    for pattern in limits.tools.keys() {
        crate::validate::check_tool_pattern(format!("rate_limits.tools.{pattern}"), pattern, problems);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)], limits: &mut RateLimitsConfig) -> Vec<Problem> {
        apply_env(limits, crate::env::vars(vars))
    }

    #[test]
    fn the_guides_variables_set_a_per_address_limit() {
        let mut limits = RateLimitsConfig::default();
        assert!(env(&[], &mut limits).is_empty());
        assert!(limits.is_empty(), "no variable, no limit");

        let p = env(&[("RATE_LIMIT_WINDOW_MS", "900000"), ("RATE_LIMIT_MAX_REQUESTS", "100")], &mut limits);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(limits.per_ip, RateLimit::new(100, Duration::from_secs(900)));

        // One variable alone: the other half from the file, else the guides' default.
        let mut limits =
            RateLimitsConfig { per_ip: RateLimit::new(7, Duration::from_secs(1)), ..Default::default() };
        assert!(env(&[("RATE_LIMIT_MAX_REQUESTS", "20")], &mut limits).is_empty());
        assert_eq!(limits.per_ip, RateLimit::new(20, Duration::from_secs(1)));
        let mut limits = RateLimitsConfig::default();
        assert!(env(&[("RATE_LIMIT_WINDOW_MS", "1m")], &mut limits).is_empty());
        assert_eq!(limits.per_ip, RateLimit::new(100, Duration::from_secs(60)));
        assert!(limits.global.is_none() && limits.per_key.is_none());
    }

    fn problems_of(limits: &str) -> Vec<String> {
        let yaml = format!("rate_limits:\n{limits}\nbackends:\n  d:\n    kind: builtin\n    builtin: demo\n");
        match crate::parse_str(&yaml, crate::Format::Yaml, "test.yaml") {
            Err(crate::ConfigError::Invalid { problems, .. }) => {
                problems.iter().map(ToString::to_string).collect()
            }
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn every_bad_limit_is_reported_with_its_path() {
        // The shape first (the schema): zero requests, an unknown field.
        let found = problems_of(
            "  per_ip: { requests: 0, per: 1m }\n  tiers:\n    paid: { requests: 1, per: 1m, burst: 9 }\n",
        );
        let text = found.join("\n");
        assert!(text.contains("rate_limits.per_ip.requests: 0 is less than the minimum of 1"), "{text}");
        assert!(text.contains("rate_limits.tiers.paid") && text.contains("burst"), "{text}");
        assert_eq!(found.len(), 2, "{text}");
        // Then what a schema cannot say, all together.
        let found = problems_of(
            "  global: { requests: 10, per: 0s }\n  per_key: { requests: 5, per: 2y }\n  tiers:\n    free: { requests: 2000, per: 1us }\n  tools:\n    \"bad name*\": { requests: 1, per: 1s }\n    \"ok_*\": { requests: 1, per: 1s }\n",
        );
        let text = found.join("\n");
        for expected in [
            "rate_limits.global.per: must be longer than zero",
            "rate_limits.per_key.per: must be at most a year",
            "rate_limits.tiers.free.requests: 2000 requests in 1us is more than one per nanosecond",
            "rate_limits.tools.bad name*: a tool name or glob",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(found.len(), 4, "{text}");
    }

    #[test]
    fn the_example_shape_parses_and_the_default_has_no_limit() {
        let yaml = "rate_limits:\n  tiers:\n    free: { requests: 60, per: 1m }\nbackends:\n  d:\n    kind: builtin\n    builtin: demo\n";
        let config = crate::parse_str(yaml, crate::Format::Yaml, "t.yaml").unwrap();
        assert_eq!(config.rate_limits.tiers["free"], RateLimit::new(60, Duration::from_secs(60)).unwrap());
        assert!(crate::default_config().unwrap().rate_limits.is_empty());
        assert!(crate::schema().to_string().contains("every key of the tier has a budget"));
    }

    #[test]
    fn bad_values_name_the_variable_and_leave_the_limits_alone() {
        for (name, value, says) in [
            ("RATE_LIMIT_MAX_REQUESTS", "0", "integer ≥ 1"),
            ("RATE_LIMIT_MAX_REQUESTS", "many", "integer ≥ 1"),
            ("RATE_LIMIT_WINDOW_MS", "0", "more than zero"),
            ("RATE_LIMIT_WINDOW_MS", "soon", "invalid duration"),
        ] {
            let mut limits = RateLimitsConfig::default();
            let p = env(&[(name, value)], &mut limits);
            assert_eq!(p.len(), 1, "{name}={value}: {p:?}");
            assert_eq!(p[0].path, format!("env {name}"));
            assert!(p[0].message.contains(says), "{name}={value}: {}", p[0].message);
            assert!(limits.is_empty());
        }
    }
}
