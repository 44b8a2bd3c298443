//! The `audit` section: one JSON line per `tools/call` appended to a file. Off by default.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Config, validate::Problem};

/// The audit log: who called which tool, from where, with what outcome. Each line is written and handed to the
/// kernel before the call's answer leaves, so a crash of mcpgate loses no answered call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The file lines are appended to (`AUDIT_LOG_FILE`); created if missing, its directory must exist. Unset:
    /// no audit log. Reopened on SIGHUP, so `logrotate` can move it away first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Also record each call's arguments, with the `redact` fields masked. Off by default: arguments may hold
    /// personal data.
    pub include_arguments: bool,
    /// Argument field names (at any depth, case-insensitive) whose values are written as `"[redacted]"`.
    pub redact: Vec<String>,
    /// Also `fsync` each line, so it survives a crash of the machine, not only of mcpgate (slower: one disk
    /// flush per call).
    pub fsync: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        let redact =
            ["password", "passwd", "secret", "token", "api_key", "apikey", "authorization", "cookie"];
        Self { file: None, include_arguments: false, redact: redact.map(String::from).to_vec(), fsync: false }
    }
}

/// `AUDIT_LOG_FILE`: the file of the audit log.
pub(crate) fn apply_env(audit: &mut AuditConfig, get: impl Fn(&str) -> Option<String>) -> Vec<Problem> {
    if let Some(file) = get("AUDIT_LOG_FILE") {
        audit.file = Some(PathBuf::from(file));
    }
    Vec::new()
}

/// What the schema cannot say: no empty field name to redact; the file's directory exists and the path is not a
/// directory. (Whether the file can be opened for writing is found when the gateway starts, which then refuses
/// to start.)
pub(crate) fn problems(config: &Config, problems: &mut Vec<Problem>) {
    for (i, name) in config.audit.redact.iter().enumerate() {
        if name.trim().is_empty() {
            problems.push(Problem::new(format!("audit.redact[{i}]"), "an empty field name masks nothing"));
        }
    }
    let Some(file) = &config.audit.file else { return };
    if file.is_dir() {
        problems.push(Problem::new("audit.file", format!("{} is a directory", file.display())));
        return;
    }
    let parent = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !parent.is_dir() {
        problems.push(Problem::new(
            "audit.file",
            format!("{}: its directory {} does not exist", file.display(), parent.display()),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_sets_the_file_and_a_missing_directory_is_a_problem() {
        let mut config = Config::default();
        let vars = |name: &str| (name == "AUDIT_LOG_FILE").then(|| "/nonexistent-dir/audit.log".to_owned());
        assert!(apply_env(&mut config.audit, vars).is_empty());
        assert_eq!(config.audit.file.as_deref(), Some(std::path::Path::new("/nonexistent-dir/audit.log")));
        let mut found = Vec::new();
        problems(&config, &mut found);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].to_string().contains("does not exist"), "{found:?}");
        config.audit.file = Some(std::env::temp_dir());
        let mut found = Vec::new();
        problems(&config, &mut found);
        assert!(found[0].to_string().contains("is a directory"), "{found:?}");
    }

    #[test]
    fn the_section_parses_and_an_empty_redact_name_is_a_problem() {
        let yaml = "audit:\n  include_arguments: true\n  redact: [pin, \" \"]\n  fsync: true\n\
                    backends:\n  d: { kind: builtin, builtin: demo }\n";
        let config = crate::parse_str_unchecked(yaml, crate::Format::Yaml, "t.yaml").unwrap();
        let audit = &config.audit;
        assert_eq!((audit.file.as_ref(), audit.include_arguments, audit.fsync), (None, true, true));
        assert_eq!(audit.redact, ["pin", " "], "a list of its own replaces the default");
        let mut found = Vec::new();
        problems(&config, &mut found);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].to_string().starts_with("audit.redact[1]"), "{found:?}");
        let unknown = "audit:\n  path: x\nbackends:\n  d: { kind: builtin, builtin: demo }\n";
        assert!(crate::parse_str_unchecked(unknown, crate::Format::Yaml, "t.yaml").is_err());
    }
}
