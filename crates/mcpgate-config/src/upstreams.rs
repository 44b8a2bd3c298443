//! Upstream MCP servers: the `upstreams` section, and `mcpServers` — the Claude Desktop spelling of the same
//! thing, so a `claude_desktop_config.json` is a complete mcpgate config as it is.

use std::{collections::BTreeMap, path::PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::units::HumanDuration;

fn yes() -> bool {
    true
}

/// One upstream MCP server. Give `command` (a local server over stdio) or `url` (a remote one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Transport; by default `stdio` with `command`, `http` (Streamable HTTP) with `url`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub transport: Option<UpstreamTransport>,
    /// Program to start (stdio): a path, or a name looked up on `PATH`; may use `${VAR}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its arguments; may use `${VAR}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Its environment, which is otherwise empty but for `PATH` and `HOME`; values may use `${VAR}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Its working directory (default: the gateway's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Endpoint of a remote server (`https://host/mcp`); may use `${VAR}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Headers sent to a remote server; values may use `${VAR}` (secrets: never logged).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Set to `false` to keep the upstream in the file but not start it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Time one call may take before it fails and `notifications/cancelled` is sent upstream.
    #[serde(default = "UpstreamConfig::default_timeout")]
    pub timeout: HumanDuration,
    /// Retries (with exponential backoff) of a failed call, only for tools marked idempotent.
    #[serde(default = "UpstreamConfig::default_max_retries")]
    pub max_retries: u32,
    /// Time between two health checks (`ping`).
    #[serde(default = "UpstreamConfig::default_health_check_interval")]
    pub health_check_interval: HumanDuration,
    /// Readiness (`/ready`) fails while this upstream is down.
    #[serde(default)]
    pub required: bool,
    /// Free-form facts about the upstream (description, version, owner), shown in `/status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Publish names as `UPSTREAM__name` (the default), or as the upstream names them (`false`).
    #[serde(default = "yes")]
    pub prefix: bool,
    /// While it is down: `hide` its tools and prompts (the default; legacy sessions are sent `list_changed`) once
    /// a reconnection has failed too — a restart that succeeds hides nothing, its calls meanwhile answering an
    /// error naming the upstream — or `error`: keep listing what it last offered, however long it is down, and
    /// answer each call with that error.
    #[serde(default)]
    pub when_down: WhenDown,
    /// Which of its tools are published, and under what names.
    #[serde(default)]
    pub tools: Naming,
    /// Which of its prompts are published, and under what names.
    #[serde(default)]
    pub prompts: Naming,
    /// Which protocol era to speak to it: `auto` (the default) asks `server/discover` and speaks 2026-07-28 when
    /// offered, else `initialize`; `legacy` goes straight to `initialize`, for a server whose 2026-07-28 side
    /// lacks what its legacy side does (sampling or elicitation during a call, say). SSE servers are always legacy.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
}

impl UpstreamConfig {
    fn default_timeout() -> HumanDuration {
        HumanDuration::secs(30)
    }

    fn default_max_retries() -> u32 {
        3
    }

    fn default_health_check_interval() -> HumanDuration {
        HumanDuration::secs(60)
    }

    /// The transport, explicit or implied by `command` / `url`.
    pub fn transport(&self) -> Option<UpstreamTransport> {
        self.transport.or(match (&self.command, &self.url) {
            (Some(_), None) => Some(UpstreamTransport::Stdio),
            (None, Some(_)) => Some(UpstreamTransport::Http),
            _ => None,
        })
    }
}

/// What clients see of an upstream that is down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WhenDown {
    /// Its tools and prompts leave the catalogue when a reconnection fails, until it is back.
    #[default]
    Hide,
    /// Its last catalogue stays listed; calls fail with an error naming the upstream.
    Error,
}

/// Which protocol era the gateway speaks to an upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamProtocol {
    /// The newest both sides speak: `server/discover` first, `initialize` when the server is legacy.
    #[default]
    Auto,
    /// The legacy revisions only: `initialize` and a session.
    Legacy,
}

/// How the gateway reaches an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTransport {
    /// A child process speaking MCP on stdin / stdout.
    Stdio,
    /// Streamable HTTP (2026-07-28 stateless when the server offers it, else a legacy session).
    Http,
    /// Streamable HTTP, as some clients spell it.
    StreamableHttp,
    /// The legacy HTTP+SSE transport (2024-11-05).
    Sse,
}

/// Which items an upstream publishes and under what names. Patterns are globs (`*`, `?`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Naming {
    /// Only these (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Never these, even when allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Upstream name → published name (used as it is: no prefix added).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// Upstream name → description shown instead of the upstream's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub descriptions: BTreeMap<String, String>,
}

impl Naming {
    /// Whether `name` is published.
    pub fn allows(&self, name: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|p| glob(p, name)))
            && !self.deny.iter().any(|p| glob(p, name))
    }

    /// The published name of `name`: renamed, else prefixed with `prefix__` when given.
    pub fn public_name(&self, prefix: Option<&str>, name: &str) -> String {
        match (self.rename.get(name), prefix) {
            (Some(renamed), _) => renamed.clone(),
            (None, Some(prefix)) => format!("{prefix}__{name}"),
            (None, None) => name.to_owned(),
        }
    }
}

/// `*` matches any run of characters, `?` any one character; everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    // Tool names are ASCII as a rule: match their bytes as they are; otherwise match by characters.
    if pattern.is_ascii() && text.is_ascii() {
        wildcard(pattern.as_bytes(), text.as_bytes(), b'?', b'*')
    } else {
        let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
        wildcard(&p, &t, '?', '*')
    }
}

/// `*` and `?` matching of `text` against `pattern` (greedy, backtracking to the last star only).
fn wildcard<T: Copy + PartialEq>(p: &[T], t: &[T], one: T, any: T) -> bool {
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == one || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == any {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_shell_patterns() {
        assert!(glob("read_*", "read_file"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*_file*", "write_file_now"));
        assert!(!glob("read_*", "write_file"));
        // `?` is one character, not one byte.
        assert!(glob("h?llo", "héllo"));
        assert!(!glob("h??llo", "héllo"));
        assert!(glob("é*", "été"));
    }

    #[test]
    fn naming_filters_and_renames() {
        let naming = Naming {
            allow: vec!["read_*".into(), "list_*".into()],
            deny: vec!["read_secret".into()],
            rename: [("list_dir".to_owned(), "ls".to_owned())].into(),
            descriptions: BTreeMap::new(),
        };
        assert!(naming.allows("read_file") && !naming.allows("read_secret") && !naming.allows("write_file"));
        assert_eq!(naming.public_name(Some("fs"), "read_file"), "fs__read_file");
        assert_eq!(naming.public_name(Some("fs"), "list_dir"), "ls");
        assert_eq!(naming.public_name(None, "read_file"), "read_file");
    }
}
