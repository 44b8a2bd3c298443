//! Authorization: which tools, resources and prompts a principal may see and use — the globs of its API key
//! (`security.api_keys[].tools`, `.resources`, `.prompts`) or its token. Anonymous callers and keys without a
//! list may use everything of that kind.

use mcpgate_config::glob;
use mcpgate_core::{CODE_TOOLS, Mode, Principal};

/// The kinds of thing a principal is granted by globs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Tools, by public name.
    Tool,
    /// Resources, by URI (templates by their URI template).
    Resource,
    /// Prompts, by name.
    Prompt,
}

fn globs(principal: &Principal, grant: Grant) -> &[String] {
    match grant {
        Grant::Tool => &principal.tools,
        Grant::Resource => &principal.resources,
        Grant::Prompt => &principal.prompts,
    }
}

/// Whether `principal` may see and use the thing of kind `grant` named `name`.
pub fn allows(principal: &Principal, grant: Grant, name: &str) -> bool {
    let globs = globs(principal, grant);
    globs.iter().any(|pattern| pattern == "*") || globs.iter().any(|pattern| glob(pattern, name))
}

/// Whether `principal` may use everything of kind `grant` (its list holds `*`), so nothing needs filtering.
pub fn allows_all(principal: &Principal, grant: Grant) -> bool {
    globs(principal, grant).iter().any(|pattern| pattern == "*")
}

/// Whether `principal` may see and call the tool published as `tool` directly: its globs name it, and in code
/// mode the tool is one that stays direct. In code mode the code-mode tools ([`CODE_TOOLS`]) are always its
/// own: its globs bound what its programs reach.
pub fn may_use(principal: &Principal, tool: &str) -> bool {
    match &principal.mode {
        Mode::Direct => allows(principal, Grant::Tool, tool),
        Mode::Code { direct } => {
            CODE_TOOLS.contains(&tool)
                || (direct.iter().any(|pattern| glob(pattern, tool)) && allows(principal, Grant::Tool, tool))
        }
    }
}

/// Whether `principal` may use every tool directly (its list holds `*`, not in code mode), so nothing needs
/// filtering.
pub fn sees_everything(principal: &Principal) -> bool {
    allows_all(principal, Grant::Tool) && principal.mode == Mode::Direct
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_key_uses_only_the_tools_its_globs_name() {
        let key = Principal::named("ci", "free", &["search_*".into(), "fs__read_file".into()]);
        assert!(may_use(&key, "search_issues") && may_use(&key, "fs__read_file"));
        assert!(!may_use(&key, "fs__write_file") && !may_use(&key, "echo"));
        assert!(!sees_everything(&key));
        let none = Principal::named("locked", "free", &[]);
        assert!(!may_use(&none, "echo"));
        assert!(sees_everything(&Principal::anonymous()) && may_use(&Principal::anonymous(), "anything"));
    }

    #[test]
    fn code_mode_shows_directly_only_the_tools_that_stay_direct() {
        let key = Principal::named("agent", "free", &["fs__*".into(), "time__*".into()]);
        let hybrid =
            key.clone().with_mode(Mode::Code { direct: Arc::new(["time__*".into(), "echo".into()]) });
        assert!(may_use(&hybrid, "time__now"), "stays direct");
        assert!(!may_use(&hybrid, "fs__read_file"), "reached through code only");
        assert!(!may_use(&hybrid, "echo"), "its own globs still apply");
        assert!(may_use(&hybrid, "execute") && !may_use(&key, "execute"), "code tools in code mode only");
        assert!(!sees_everything(&Principal::anonymous().with_mode(Mode::Code { direct: Arc::new([]) })));
        assert!(may_use(&key, "fs__read_file"), "direct mode is unchanged");
    }

    #[test]
    fn resources_and_prompts_have_globs_of_their_own() {
        let key = Principal::named("ci", "free", &["*".into()])
            .with_grants(Arc::new(["docs://*".into()]), Arc::new([]));
        assert!(
            allows(&key, Grant::Resource, "docs://guide") && !allows(&key, Grant::Resource, "file:///etc")
        );
        assert!(!allows(&key, Grant::Prompt, "greet") && !allows_all(&key, Grant::Prompt));
        assert!(allows_all(&key, Grant::Tool), "tools are not touched");
        let default = Principal::named("ops", "free", &[]);
        assert!(
            allows_all(&default, Grant::Resource) && allows_all(&default, Grant::Prompt),
            "defaults: all"
        );
    }
}
