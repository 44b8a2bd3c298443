//! `server.compression`: gzip for large response bodies.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ByteSize, Config, validate::Problem};

/// Response compression: a body of at least `min_size` bytes is gzip-encoded for a client that sends
/// `Accept-Encoding: gzip`. Server-Sent Event streams (`text/event-stream`) and images never are, so streamed
/// answers go out event by event, unbuffered. Read at start; a reload (SIGHUP) does not change it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Compress large responses. `COMPRESSION_ENABLED` (`true` / `false` / `1` / `0`) in the environment sets it.
    pub enabled: bool,
    /// The smallest body compressed (`1kb`, the configurable-framework guide's threshold): below it, gzip's
    /// header and CPU cost more than they save, and small answers keep their latency.
    pub min_size: ByteSize,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self { enabled: true, min_size: ByteSize(1024) }
    }
}

/// `COMPRESSION_ENABLED`.
pub(crate) fn apply_env(
    compression: &mut CompressionConfig,
    get: impl Fn(&str) -> Option<String>,
) -> Vec<Problem> {
    match crate::env::flag("COMPRESSION_ENABLED", get) {
        Ok(enabled) => {
            compression.enabled = enabled.unwrap_or(compression.enabled);
            Vec::new()
        }
        Err(message) => vec![Problem::new("env COMPRESSION_ENABLED", message)],
    }
}

/// A threshold under gzip's own overhead (about 20 bytes) would make small bodies bigger.
pub(crate) fn problems(config: &Config, problems: &mut Vec<Problem>) {
    let compression = &config.server.compression;
    if compression.min_size.0 < 32 {
        problems.push(Problem::new(
            "server.compression.min_size",
            "must be at least 32 bytes (smaller bodies only grow when compressed)",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_by_default_above_one_kibibyte_and_switched_by_the_environment() {
        let mut compression = CompressionConfig::default();
        assert!(compression.enabled && compression.min_size.0 == 1024);
        let problems = apply_env(&mut compression, |k| (k == "COMPRESSION_ENABLED").then(|| "0".into()));
        assert!(problems.is_empty() && !compression.enabled);
        let problems = apply_env(&mut compression, |_| Some("sometimes".into()));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "env COMPRESSION_ENABLED");
        assert!(!compression.enabled, "a bad value changes nothing");

        let mut config = Config::default();
        config.server.compression.min_size = ByteSize(10);
        let mut found = Vec::new();
        super::problems(&config, &mut found);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "server.compression.min_size");
    }
}
