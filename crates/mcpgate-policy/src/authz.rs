//! Authorization: which tools, resources and prompts a principal may see and use — the globs of its API key
//! (`security.api_keys[].tools`, `.resources`, `.prompts`) or its token. Anonymous callers and keys without a
//! list may use everything of that kind.

use mcpgate_config::glob;
use mcpgate_core::Principal;

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

/// Whether `principal` may see and call the tool published as `tool`.
pub fn may_use(principal: &Principal, tool: &str) -> bool {
    allows(principal, Grant::Tool, tool)
}

/// Whether `principal` may use every tool (its list holds `*`), so nothing needs filtering.
pub fn sees_everything(principal: &Principal) -> bool {
    allows_all(principal, Grant::Tool)
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
