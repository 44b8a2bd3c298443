//! The `budget` section: how many tokens and bytes one tool result may send back to the model. No limit by
//! default.

use std::num::NonZeroU64;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ByteSize, Config, validate::Problem};

/// Limits on what one `tools/call` result sends back. Tokens are counted with the o200k BPE tokenizer (an
/// estimate for other models) over the text the client sees: text items, embedded text resources and
/// `structuredContent` as JSON; bytes count that text plus binary data (images, audio, blobs) as sent. A result
/// over a limit is cut or refused as `on_exceed` says. Tokens are counted only when `max_tokens` is set or
/// `count_tokens` is on — that also feeds the `mcp_tokens_used` gauge; `max_bytes` alone counts no tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Most tokens one result may send back (`MAX_TOKENS_PER_REQUEST` in the environment). At least 64, so the
    /// truncation marker fits. Unset: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<NonZeroU64>,
    /// Largest result sent back (`CONTEXT_SIZE_LIMIT_KB` in the environment, in KiB). At least 1KiB. Unset: no
    /// limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<ByteSize>,
    /// What happens to a result over a limit: `truncate` (the default) keeps what fits — text cut at a token
    /// boundary — and adds a marker item saying so (`[truncated by mcpgate: 8123 tokens, limit 1000]`);
    /// `refuse` answers a tool error (`isError: true`) naming the size instead, so the model can ask for less.
    /// A result whose `structuredContent` alone is over the limit cannot be cut and is refused either way.
    pub on_exceed: OnExceed,
    /// Count the tokens of every call (arguments and result) for the `mcp_tokens_used` gauge and the audit log,
    /// even without `max_tokens`. Costs about 2.5 ms per 100 KB of text.
    pub count_tokens: bool,
}

impl BudgetConfig {
    /// Whether the budget step has anything to do: a limit, or tokens to count.
    pub fn is_active(&self) -> bool {
        self.max_tokens.is_some() || self.max_bytes.is_some() || self.count_tokens
    }
}

/// What happens to a result over a limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnExceed {
    /// Send what fits, and a marker saying what was cut.
    #[default]
    Truncate,
    /// Send a tool error naming the result's size and the limit.
    Refuse,
}

/// The smallest token limit: the marker of a cut result takes about 20 tokens, and a limit should leave room for
/// some of the result.
pub const MIN_TOKENS: u64 = 64;

/// The smallest size limit.
const MIN_BYTES: u64 = 1 << 10;

/// `MAX_TOKENS_PER_REQUEST` (tokens) and `CONTEXT_SIZE_LIMIT_KB` (KiB, or a size with its unit: `512kb`). `0`
/// removes the limit.
pub(crate) fn apply_env(budget: &mut BudgetConfig, get: impl Fn(&str) -> Option<String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(value) = get("MAX_TOKENS_PER_REQUEST") {
        match value.parse::<u64>() {
            Ok(tokens) => budget.max_tokens = NonZeroU64::new(tokens),
            Err(_) => problems.push(Problem::new(
                "env MAX_TOKENS_PER_REQUEST",
                format!("{value:?}: use a whole number of tokens, e.g. 1000 (0 for no limit)"),
            )),
        }
    }
    if let Some(value) = get("CONTEXT_SIZE_LIMIT_KB") {
        let parsed = match value.parse::<u64>() {
            Ok(kib) => {
                kib.checked_mul(1 << 10).map(ByteSize).ok_or_else(|| format!("{value:?} is too large"))
            }
            Err(_) => value.parse::<ByteSize>(),
        };
        match parsed {
            Ok(size) => budget.max_bytes = (size.0 > 0).then_some(size),
            Err(e) => problems.push(Problem::new(
                "env CONTEXT_SIZE_LIMIT_KB",
                format!("{e}; or whole KiB, e.g. 100 (0 for no limit)"),
            )),
        }
    }
    problems
}

/// What the schema cannot say about `budget`: limits large enough to hold the marker.
pub(crate) fn problems(config: &Config, problems: &mut Vec<Problem>) {
    let budget = &config.budget;
    if let Some(tokens) = budget.max_tokens
        && tokens.get() < MIN_TOKENS
    {
        problems.push(Problem::new("budget.max_tokens", format!("{tokens}: at least {MIN_TOKENS}")));
    }
    if let Some(bytes) = budget.max_bytes
        && bytes.0 < MIN_BYTES
    {
        problems.push(Problem::new("budget.max_bytes", format!("{bytes}: at least 1KiB")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)], budget: &mut BudgetConfig) -> Vec<Problem> {
        apply_env(budget, crate::env::vars(vars))
    }

    #[test]
    fn the_guides_variables_set_both_limits() {
        let mut budget = BudgetConfig::default();
        assert!(env(&[], &mut budget).is_empty());
        assert!(!budget.is_active(), "no limit and no counting by default");
        let p = env(&[("MAX_TOKENS_PER_REQUEST", "1000"), ("CONTEXT_SIZE_LIMIT_KB", "100")], &mut budget);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(budget.max_tokens, NonZeroU64::new(1000));
        assert_eq!(budget.max_bytes, Some(ByteSize(100 << 10)));
        assert!(budget.is_active());
        assert!(env(&[("CONTEXT_SIZE_LIMIT_KB", "1mb")], &mut budget).is_empty());
        assert_eq!(budget.max_bytes, Some(ByteSize(1 << 20)));
        let p = env(&[("MAX_TOKENS_PER_REQUEST", "0"), ("CONTEXT_SIZE_LIMIT_KB", "0")], &mut budget);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(budget, BudgetConfig::default(), "0 removes a limit");
    }

    #[test]
    fn bad_values_name_the_variable_and_leave_the_limits_alone() {
        for (name, value, says) in [
            ("MAX_TOKENS_PER_REQUEST", "lots", "whole number of tokens"),
            ("MAX_TOKENS_PER_REQUEST", "-5", "whole number of tokens"),
            ("CONTEXT_SIZE_LIMIT_KB", "big", "whole KiB"),
            ("CONTEXT_SIZE_LIMIT_KB", "99999999999999999", "too large"),
        ] {
            let mut budget = BudgetConfig::default();
            let p = env(&[(name, value)], &mut budget);
            assert_eq!(p.len(), 1, "{name}={value}: {p:?}");
            assert_eq!(p[0].path, format!("env {name}"));
            assert!(p[0].message.contains(says), "{name}={value}: {}", p[0].message);
            assert_eq!(budget, BudgetConfig::default());
        }
    }

    #[test]
    fn limits_too_small_for_the_marker_are_refused() {
        let yaml = "budget:\n  max_tokens: 10\n  max_bytes: 100\n  on_exceed: refuse\nbackends:\n  d:\n    kind: builtin\n    builtin: demo\n";
        let problems = match crate::parse_str(yaml, crate::Format::Yaml, "t.yaml") {
            Err(crate::ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        };
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(text.iter().any(|p| p.starts_with("budget.max_tokens")), "{text:?}");
        assert!(text.iter().any(|p| p.contains("budget.max_bytes: 100: at least 1KiB")), "{text:?}");
        let yaml = "budget:\n  max_tokens: 1000\n  on_exceed: refuse\nbackends:\n  d:\n    kind: builtin\n    builtin: demo\n";
        let config = crate::parse_str(yaml, crate::Format::Yaml, "t.yaml").unwrap();
        assert_eq!(config.budget.on_exceed, OnExceed::Refuse);
    }
}
