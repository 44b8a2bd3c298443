//! `ui`: the admin page — the live state `/status` has, recent calls and a tool playground, behind a credential
//! of its own.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Config, KeyHash, validate::Problem};

/// The admin page at `/ui`. Off by default, and never open: it needs its own admin credential (`admin_key`, or
/// `ADMIN_API_KEY` in the environment), asked for with HTTP Basic (any user name) or `Authorization: Bearer`.
/// Read at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Serve the page (`UI_ENABLED`: `true` / `false` / `1` / `0`).
    pub enabled: bool,
    /// The admin credential's hash, as API keys' (`sha256:HEX`, or `hmac-sha256:HEX` with `API_KEY_SALT`;
    /// `mcpgate keys new` prints one). `ADMIN_API_KEY` in the environment gives the credential itself instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_key: Option<String>,
    /// Tool calls the page remembers (time, caller, tool, outcome, duration; never arguments).
    pub recent_calls: usize,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self { enabled: false, admin_key: None, recent_calls: 200 }
    }
}

/// `UI_ENABLED`, `ADMIN_API_KEY` (hashed here: the config never holds it in clear).
pub(crate) fn apply_env(ui: &mut UiConfig, get: impl Fn(&str) -> Option<String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    match crate::env::flag("UI_ENABLED", &get) {
        Ok(enabled) => ui.enabled = enabled.unwrap_or(ui.enabled),
        Err(message) => problems.push(Problem::new("env UI_ENABLED", message)),
    }
    if let Some(key) = get("ADMIN_API_KEY") {
        if key.len() < 16 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            // Never echo the key.
            problems.push(Problem::new(
                "env ADMIN_API_KEY",
                "must be at least 16 printable characters, no spaces",
            ));
        } else {
            ui.admin_key = Some(KeyHash::sha256(&key).to_string());
        }
    }
    problems
}

/// An admin page needs a credential that parses, and room for at least one call.
pub(crate) fn problems(config: &Config, problems: &mut Vec<Problem>) {
    let ui = &config.ui;
    match &ui.admin_key {
        None if ui.enabled => problems.push(Problem::new(
            "ui.admin_key",
            "the admin page needs its own credential: set ADMIN_API_KEY, or ui.admin_key to a hash from \
             `mcpgate keys new`",
        )),
        None => {}
        Some(hash) => match hash.parse::<KeyHash>() {
            Err(e) => problems.push(Problem::new("ui.admin_key", e)),
            Ok(hash)
                if hash.method == crate::HashMethod::HmacSha256 && config.security.api_key_salt.is_none() =>
            {
                problems.push(Problem::new("ui.admin_key", "an hmac-sha256 hash needs API_KEY_SALT"))
            }
            Ok(_) => {}
        },
    }
    if ui.recent_calls == 0 {
        problems.push(Problem::new("ui.recent_calls", "must be at least 1"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_never_open_and_the_key_is_kept_hashed() {
        let mut config = Config::default();
        config.ui.enabled = true;
        let mut found = Vec::new();
        problems(&config, &mut found);
        assert_eq!(found[0].path, "ui.admin_key");

        let key = "an-admin-key-of-some-length";
        let vars = [("UI_ENABLED", "1"), ("ADMIN_API_KEY", key)];
        let env = crate::env::vars(&vars);
        assert!(apply_env(&mut config.ui, env).is_empty());
        let hash = config.ui.admin_key.clone().unwrap();
        assert!(hash.starts_with("sha256:") && !hash.contains(key));
        let mut found = Vec::new();
        problems(&config, &mut found);
        assert!(found.is_empty(), "{found:?}");

        let short = [("ADMIN_API_KEY", "short")];
        let problems = apply_env(&mut config.ui, crate::env::vars(&short));
        assert_eq!(problems[0].path, "env ADMIN_API_KEY");
        assert!(!problems[0].message.contains("short"));
    }
}
