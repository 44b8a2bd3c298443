//! Settings per tool, the way every section that has them names tools — exact public names and globs
//! (`weather__*`) — and the slot in which a tool keeps the setting it resolved to, so a call does not match
//! globs again.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use mcpgate_config::glob;

/// Settings by tool: an exact name wins over a glob, a longer glob over a shorter one.
#[derive(Debug, Clone)]
pub struct ToolRules<R> {
    exact: HashMap<String, R>,
    /// The most specific (longest) first; equally long ones in name order, so the choice is stable.
    globs: Vec<(String, R)>,
}

impl<R> Default for ToolRules<R> {
    fn default() -> Self {
        Self { exact: HashMap::new(), globs: Vec::new() }
    }
}

impl<R> FromIterator<(String, R)> for ToolRules<R> {
    fn from_iter<I: IntoIterator<Item = (String, R)>>(rules: I) -> Self {
        let mut table = Self::default();
        for (pattern, rule) in rules {
            if pattern.contains(['*', '?']) {
                table.globs.push((pattern, rule));
            } else {
                table.exact.insert(pattern, rule);
            }
        }
        table.globs.sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        table
    }
}

impl<R> ToolRules<R> {
    /// The setting of `tool` (its public name), if one names it.
    pub fn get(&self, tool: &str) -> Option<&R> {
        let exact = self.exact.get(tool);
        exact.or_else(|| self.globs.iter().find(|(pattern, _)| glob(pattern, tool)).map(|(_, rule)| rule))
    }

    /// Whether no tool has a setting.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.globs.is_empty()
    }
}

/// Tells apart the rule sets a [`Resolved`] slot may be filled under (each cache or limiter built, e.g. by a
/// reload, takes a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

impl Generation {
    /// A generation no other rule set has.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Where a tool keeps what it resolved to under the rule set in force on its first call. Under a rule set built
/// later the value is resolved afresh on each call and not kept (a reload builds new routes soon after).
#[derive(Debug)]
pub struct Resolved<T>(OnceLock<(Generation, T)>);

impl<T> Default for Resolved<T> {
    fn default() -> Self {
        Self(OnceLock::new())
    }
}

impl<T: Clone> Resolved<T> {
    /// The value under `generation`: the kept one, or `resolve()`.
    pub fn get(&self, generation: Generation, resolve: impl Fn() -> T) -> Cow<'_, T> {
        let kept = self.0.get_or_init(|| (generation, resolve()));
        if kept.0 == generation { Cow::Borrowed(&kept.1) } else { Cow::Owned(resolve()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_name_wins_then_the_longest_glob() {
        let rules: ToolRules<u32> = [("a_*", 1), ("a_b*", 2), ("a_bc", 3), ("*", 4)]
            .map(|(p, r)| (p.to_owned(), r))
            .into_iter()
            .collect();
        assert_eq!(rules.get("a_bc"), Some(&3));
        assert_eq!(rules.get("a_bd"), Some(&2));
        assert_eq!(rules.get("a_x"), Some(&1));
        assert_eq!(rules.get("zz"), Some(&4));
        assert!(ToolRules::<u32>::default().get("a").is_none());
    }

    #[test]
    fn a_slot_keeps_only_what_its_first_generation_resolved() {
        let (first, later) = (Generation::next(), Generation::next());
        let slot = Resolved::default();
        assert_eq!(*slot.get(first, || 1), 1);
        assert_eq!(*slot.get(first, || 2), 1, "kept");
        assert!(matches!(slot.get(later, || 3), Cow::Owned(3)), "another generation resolves afresh");
        assert_eq!(*slot.get(first, || 4), 1);
    }
}
