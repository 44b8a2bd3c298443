//! The `cache` section: which tools' results are kept, for how long, and how much memory the cache may hold.
//! No tool is cached by default.

use std::{collections::BTreeMap, time::Duration};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ByteSize, Config, HumanDuration, validate::Problem};

/// The result cache. A `tools/call` of a tool named in `tools` is answered from the cache when the same tool was
/// called with the same arguments (compared as canonical JSON) within the TTL; only successful results are kept
/// (not tool errors, not a result that needed the client's input). An upstream result may shorten the TTL with
/// `ttlMs` and keep its result to the caller with `cacheScope: "private"`. A reload (SIGHUP) empties the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// TTL of the tools in `tools` that set none (`CACHE_TTL_SECONDS` in the environment, in seconds; `0` turns
    /// the cache off). Setting it caches nothing by itself: tools opt in under `tools`.
    pub ttl: HumanDuration,
    /// Most memory the cached results may take together (their JSON size, roughly); the least used go first.
    pub max_size: ByteSize,
    /// Largest single result kept; a larger one is answered but not cached.
    pub max_entry_size: ByteSize,
    /// The tools whose results are cached, by public tool name or glob (`weather__*`); an exact name wins over a
    /// glob, a longer glob over a shorter one. `{}` takes the defaults: `search: {}`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, CacheRule>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl: HumanDuration::secs(300),
            max_size: ByteSize(64 << 20),
            max_entry_size: ByteSize(1 << 20),
            tools: BTreeMap::new(),
        }
    }
}

impl CacheConfig {
    /// Whether any tool is cached: some tool opted in and the default TTL is not zero.
    pub fn is_active(&self) -> bool {
        !self.tools.is_empty() && !self.ttl.0.is_zero()
    }
}

/// How one tool (or every tool a glob matches) is cached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CacheRule {
    /// How long a result stays fresh; unset: `cache.ttl`. An upstream's `ttlMs` may shorten it, never lengthen
    /// it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<HumanDuration>,
    /// Who may be answered with a kept result: `shared` (everyone who calls the tool with the same arguments) or
    /// `per_principal` (only the API key that caused it) for a tool whose results depend on who asks. An
    /// upstream's `cacheScope: "private"` makes a result `per_principal` whatever this says.
    pub scope: CacheSharing,
}

/// Who may be answered with a cached result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CacheSharing {
    /// Every caller of the tool with the same arguments.
    #[default]
    Shared,
    /// Only the principal (API key, or all anonymous callers together) whose call produced the result.
    PerPrincipal,
}

/// The longest TTL accepted: a day. Longer would keep answers nobody checked for too long, and every TTL must
/// fit the clocks it is added to.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// `CACHE_TTL_SECONDS`: `cache.ttl`, in whole seconds (the guides' unit) or a duration (`5m`); `0` turns caching
/// off.
pub(crate) fn apply_env(cache: &mut CacheConfig, get: impl Fn(&str) -> Option<String>) -> Vec<Problem> {
    let Some(value) = get("CACHE_TTL_SECONDS") else { return Vec::new() };
    match crate::env::number_or_duration(&value, Duration::from_secs(1)) {
        Ok(ttl) => {
            cache.ttl = ttl;
            Vec::new()
        }
        Err(e) => vec![Problem::new("env CACHE_TTL_SECONDS", format!("{e}; or whole seconds, e.g. 300"))],
    }
}

/// What the schema cannot say about `cache`: TTLs of at most a day, each rule's TTL above zero, an entry no
/// larger than the cache, tool patterns of the tool-name shape.
pub(crate) fn problems(config: &Config, problems: &mut Vec<Problem>) {
    let cache = &config.cache;
    if cache.ttl.0 > MAX_TTL {
        problems.push(Problem::new("cache.ttl", format!("{}: at most 1day", cache.ttl)));
    }
    if cache.max_size.0 == 0 {
        problems.push(Problem::new("cache.max_size", "must be more than zero"));
    }
    if cache.max_entry_size.0 == 0 || cache.max_entry_size > cache.max_size {
        problems.push(Problem::new(
            "cache.max_entry_size",
            format!(
                "{}: must be more than zero and at most cache.max_size ({})",
                cache.max_entry_size, cache.max_size
            ),
        ));
    }
    for (pattern, rule) in &cache.tools {
        let path = format!("cache.tools.{pattern}");
        match rule.ttl {
            Some(ttl) if ttl.0.is_zero() => problems.push(Problem::new(
                format!("{path}.ttl"),
                "must be more than zero (remove the entry to not cache)",
            )),
            Some(ttl) if ttl.0 > MAX_TTL => {
                problems.push(Problem::new(format!("{path}.ttl"), format!("{ttl}: at most 1day")))
            }
            _ => {}
        }
        crate::validate::check_tool_pattern(path, pattern, problems);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)], cache: &mut CacheConfig) -> Vec<Problem> {
        apply_env(cache, crate::env::vars(vars))
    }

    #[test]
    fn cache_ttl_seconds_sets_the_default_ttl_and_zero_turns_caching_off() {
        let mut cache = CacheConfig::default();
        cache.tools.insert("search".into(), CacheRule::default());
        assert!(env(&[], &mut cache).is_empty());
        assert_eq!(cache.ttl.0, Duration::from_secs(300));
        assert!(cache.is_active());
        assert!(env(&[("CACHE_TTL_SECONDS", "600")], &mut cache).is_empty());
        assert_eq!(cache.ttl.0, Duration::from_secs(600));
        assert!(env(&[("CACHE_TTL_SECONDS", "2m")], &mut cache).is_empty());
        assert_eq!(cache.ttl.0, Duration::from_secs(120));
        assert!(env(&[("CACHE_TTL_SECONDS", "0")], &mut cache).is_empty());
        assert!(!cache.is_active(), "0 turns the cache off");
        let p = env(&[("CACHE_TTL_SECONDS", "soon")], &mut cache);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, "env CACHE_TTL_SECONDS");
        assert!(p[0].message.contains("whole seconds"), "{}", p[0].message);
        assert!(!CacheConfig::default().is_active(), "no tool opts in by default");
    }

    fn problems_of(cache: &str) -> Vec<String> {
        let yaml = format!("cache:\n{cache}\nbackends:\n  d:\n    kind: builtin\n    builtin: demo\n");
        match crate::parse_str(&yaml, crate::Format::Yaml, "test.yaml") {
            Err(crate::ConfigError::Invalid { problems, .. }) => {
                problems.iter().map(ToString::to_string).collect()
            }
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn every_bad_setting_is_reported_with_its_path() {
        let found = problems_of("  tools:\n    x: { ttl: 1m, scope: everyone }\n");
        assert!(found.join("\n").contains("cache.tools.x.scope"), "{found:?}");
        let found = problems_of(
            "  ttl: 2days\n  max_size: 1mb\n  max_entry_size: 2mb\n  tools:\n    a: { ttl: 0s }\n    b: { ttl: 3days }\n    \"bad name\": {}\n",
        );
        let text = found.join("\n");
        for expected in [
            "cache.ttl: 2days: at most 1day",
            "cache.max_entry_size: 2MiB: must be more than zero and at most cache.max_size (1MiB)",
            "cache.tools.a.ttl: must be more than zero",
            "cache.tools.b.ttl: 3days: at most 1day",
            "cache.tools.bad name: a tool name or glob",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(found.len(), 5, "{text}");
    }

    #[test]
    fn the_example_shape_parses() {
        let yaml = "cache:\n  ttl: 10m\n  tools:\n    echo: {}\n    \"weather__*\": { ttl: 30s, scope: per_principal }\nbackends:\n  d:\n    kind: builtin\n    builtin: demo\n";
        let config = crate::parse_str(yaml, crate::Format::Yaml, "t.yaml").unwrap();
        assert_eq!(config.cache.ttl.0, Duration::from_secs(600));
        assert_eq!(config.cache.tools["echo"], CacheRule::default());
        let weather = config.cache.tools["weather__*"];
        assert_eq!(weather.ttl, Some(HumanDuration::secs(30)));
        assert_eq!(weather.scope, CacheSharing::PerPrincipal);
        assert!(crate::schema().to_string().contains("An upstream's `ttlMs` may shorten it"));
    }
}
