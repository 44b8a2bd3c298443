//! The `resilience` section: circuit breakers and retry backoff, shared by every backend. How many retries a
//! tool gets is per upstream (`max_retries`, idempotent tools only); how often it is checked is per upstream
//! too (`health_check_interval`).

use std::num::NonZeroU32;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::units::HumanDuration;

/// Circuit breakers and retry backoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ResilienceConfig {
    /// The circuit breaker every backend gets.
    pub circuit_breaker: BreakerConfig,
    /// Longest wait before the first retry; each further retry may wait twice as long (full jitter: a random
    /// wait up to that ceiling).
    pub retry_backoff_base: HumanDuration,
    /// Cap on the wait before any retry.
    pub retry_backoff_max: HumanDuration,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self {
            circuit_breaker: BreakerConfig::default(),
            retry_backoff_base: HumanDuration(std::time::Duration::from_millis(100)),
            retry_backoff_max: HumanDuration::secs(5),
        }
    }
}

/// A circuit breaker: after `failure_threshold` consecutive failures of a backend its calls fail at once for
/// `reset_timeout`; then one probe call decides whether it closes again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures (upstream errors, timeouts, failed health checks) that open the breaker; at least 1
    /// (`CIRCUIT_BREAKER_FAILURE_THRESHOLD`).
    pub failure_threshold: NonZeroU32,
    /// How long an open breaker fails calls before it lets a probe through (`CIRCUIT_BREAKER_RESET_TIMEOUT`, in
    /// milliseconds or as `60s`, in the environment).
    pub reset_timeout: HumanDuration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failure_threshold: NonZeroU32::MIN.saturating_add(4), reset_timeout: HumanDuration::secs(60) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_guides() {
        let config: ResilienceConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, ResilienceConfig::default());
        assert_eq!(config.circuit_breaker.failure_threshold.get(), 5);
        assert_eq!(config.circuit_breaker.reset_timeout, HumanDuration::secs(60));
        assert_eq!(config.retry_backoff_base.0.as_millis(), 100);
        assert_eq!(config.retry_backoff_max, HumanDuration::secs(5));
    }

    #[test]
    fn fields_parse_and_unknown_or_zero_are_refused() {
        let config: ResilienceConfig =
            serde_json::from_str(r#"{"circuit_breaker": {"failure_threshold": 3, "reset_timeout": "2m"}}"#)
                .unwrap();
        assert_eq!(config.circuit_breaker.failure_threshold.get(), 3);
        assert_eq!(config.circuit_breaker.reset_timeout, HumanDuration::secs(120));
        assert!(
            serde_json::from_str::<ResilienceConfig>(r#"{"circuit_breaker": {"failure_threshold": 0}}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<ResilienceConfig>(r#"{"retries": 3}"#).is_err());
        assert!(serde_json::from_str::<BreakerConfig>(r#"{"threshold": 3}"#).is_err());
    }
}
