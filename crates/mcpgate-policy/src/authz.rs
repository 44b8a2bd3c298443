//! Authorization: which tools a principal may see and call — the globs of its API key (`security.api_keys[].tools`).
//! Anonymous callers and keys without a list may use every tool.

use mcpgate_config::glob;
use mcpgate_core::Principal;

/// Whether `principal` may see and call the tool published as `tool`.
pub fn may_use(principal: &Principal, tool: &str) -> bool {
    sees_everything(principal) || principal.tools.iter().any(|pattern| glob(pattern, tool))
}

/// Whether `principal` may use every tool (its list holds `*`), so nothing needs filtering.
pub fn sees_everything(principal: &Principal) -> bool {
    principal.tools.iter().any(|pattern| pattern == "*")
}

#[cfg(test)]
mod tests {
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
}
