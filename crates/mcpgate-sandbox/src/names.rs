//! How tools are named inside a program: `tools.<namespace>.<identifier>(args)`.
//!
//! Both parts are JavaScript identifiers made from names the gateway already has:
//!
//! - the **namespace** comes from the tool's source (its backend or upstream name), the **identifier** from the
//!   backend's own name for the tool (not the public name, which usually repeats the backend name);
//! - every character outside `A–Z a–z 0–9 _ $` becomes `_` (`my-api` → `my_api`, `read.file` → `read_file`);
//! - a name starting with a digit gets a `_` in front (`2fa` → `_2fa`); an empty name becomes `_`;
//! - a JavaScript reserved word — `break`, `case`, `catch`, `class`, `const`, `continue`, `debugger`,
//!   `default`, `delete`, `do`, `else`, `enum`, `export`, `extends`, `false`, `finally`, `for`, `function`,
//!   `if`, `implements`, `import`, `in`, `instanceof`, `interface`, `let`, `new`, `null`, `package`,
//!   `private`, `protected`, `public`, `return`, `static`, `super`, `switch`, `this`, `throw`, `true`, `try`,
//!   `typeof`, `var`, `void`, `while`, `with`, `yield`, `await`, and also `undefined`, `NaN`, `Infinity`,
//!   `eval`, `arguments` — gets a `_` at the end (`delete` → `delete_`);
//! - sources whose names give the same namespace (`my-api` and `my_api`) share that namespace;
//! - when two tools of one namespace give the same identifier, the tools of that identifier are ordered by
//!   public name: the first keeps the identifier, the next get `_2`, `_3`, … — skipping any identifier another
//!   tool of the namespace already has (a tool really named `get_2` keeps `get_2`, and the second `get` becomes
//!   `get_3`).
//!
//! The result depends only on the set of tools, not on the order they are listed in, so a program written
//! against one listing keeps working when the catalogue is listed in another order.

use std::collections::{BTreeMap, HashSet};

use crate::Binding;

/// Words a JavaScript identifier may not be (ES2023 reserved words, strict-mode and module ones included), and
/// global names a program must not see shadowed.
const RESERVED: &[&str] = &[
    "await",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "implements",
    "import",
    "in",
    "instanceof",
    "interface",
    "let",
    "new",
    "null",
    "package",
    "private",
    "protected",
    "public",
    "return",
    "static",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "yield",
    "undefined",
    "NaN",
    "Infinity",
    "eval",
    "arguments",
];

/// The bindings for a catalogue, one per entry of `tools` and in the same order.
///
/// Each entry is `(source, own name, public name)`: the backend or upstream the tool comes from, the backend's
/// own name for it, and the public name calls go to. See the [module documentation](self) for the rules.
pub fn bind(tools: &[(&str, &str, &str)]) -> Vec<Binding> {
    let mut bindings: Vec<Binding> = tools
        .iter()
        .map(|&(source, own, public)| Binding {
            namespace: identifier(source),
            identifier: identifier(own),
            tool: public.to_owned(),
        })
        .collect();
    // Namespaces are merged by their identifier, so collisions are resolved across all the sources that share it.
    let mut namespaces: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, binding) in bindings.iter().enumerate() {
        namespaces.entry(binding.namespace.clone()).or_default().push(index);
    }
    for members in namespaces.values_mut() {
        // Public names decide who keeps an identifier; the index only breaks ties between equal public names.
        members.sort_by(|&a, &b| bindings[a].tool.cmp(&bindings[b].tool).then(a.cmp(&b)));
        deduplicate(&mut bindings, members);
    }
    bindings
}

/// Where a binding is reached in a program: `tools.<namespace>.<identifier>`.
pub fn path(binding: &Binding) -> String {
    format!("tools.{}.{}", binding.namespace, binding.identifier)
}

/// `name` made a JavaScript identifier that is not a reserved word.
pub fn identifier(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '$' { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if RESERVED.contains(&out.as_str()) {
        out.push('_');
    }
    out
}

/// Gives the `members` of one namespace (sorted by public name) distinct identifiers.
fn deduplicate(bindings: &mut [Binding], members: &[usize]) {
    // First every identifier goes to the first tool that has it, so a tool whose own name already looks like a
    // suffixed one (`get_2`) keeps it whatever else is in the namespace.
    let mut taken = HashSet::new();
    let mut losers = Vec::new();
    for &index in members {
        if !taken.insert(bindings[index].identifier.clone()) {
            losers.push(index);
        }
    }
    // Then the others take the first free suffix, in public-name order.
    for index in losers {
        let base = bindings[index].identifier.clone();
        let free = (2u32..)
            .map(|n| format!("{base}_{n}"))
            .find(|candidate| !taken.contains(candidate))
            .unwrap_or(base);
        taken.insert(free.clone());
        bindings[index].identifier = free;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triple(binding: &Binding) -> (&str, &str, &str) {
        (&binding.namespace, &binding.identifier, &binding.tool)
    }

    fn bound(tools: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        bind(tools).iter().map(|b| (b.namespace.clone(), b.identifier.clone(), b.tool.clone())).collect()
    }

    #[test]
    fn identifiers_replace_invalid_characters() {
        assert_eq!(identifier("my-api"), "my_api");
        assert_eq!(identifier("read.file"), "read_file");
        assert_eq!(identifier("a b/c"), "a_b_c");
        assert_eq!(identifier("$jq_1"), "$jq_1");
        // One `_` per character, not per byte.
        assert_eq!(identifier("café"), "caf_");
    }

    #[test]
    fn identifiers_fix_leading_digits_and_empty_names() {
        assert_eq!(identifier("2fa"), "_2fa");
        assert_eq!(identifier("123"), "_123");
        assert_eq!(identifier(""), "_");
        assert_eq!(identifier("-"), "_");
    }

    #[test]
    fn reserved_words_get_a_trailing_underscore() {
        for word in ["delete", "new", "class", "await", "yield", "let", "enum", "undefined", "NaN", "eval"] {
            assert_eq!(identifier(word), format!("{word}_"));
        }
        // Only exact words: case and surrounding characters make ordinary identifiers.
        assert_eq!(identifier("Delete"), "Delete");
        assert_eq!(identifier("delete_file"), "delete_file");
        assert_eq!(identifier("async"), "async");
    }

    #[test]
    fn bindings_keep_input_order_and_public_names() {
        let bindings = bind(&[
            ("github", "search_issues", "github__search_issues"),
            ("fs", "read-file", "fs__read-file"),
        ]);
        assert_eq!(triple(&bindings[0]), ("github", "search_issues", "github__search_issues"));
        assert_eq!(triple(&bindings[1]), ("fs", "read_file", "fs__read-file"));
        assert_eq!(path(&bindings[1]), "tools.fs.read_file");
    }

    #[test]
    fn collisions_go_by_public_name() {
        // `get-item` and `get.item` both give `get_item`; `a__get.item` sorts first so it keeps the plain name.
        let listed = [
            ("api", "get-item", "b__get-item"),
            ("api", "get.item", "a__get.item"),
            ("api", "get_item", "c__get_item"),
        ];
        assert_eq!(
            bound(&listed),
            vec![
                ("api".into(), "get_item_2".into(), "b__get-item".into()),
                ("api".into(), "get_item".into(), "a__get.item".into()),
                ("api".into(), "get_item_3".into(), "c__get_item".into()),
            ]
        );
    }

    #[test]
    fn collisions_do_not_depend_on_listing_order() {
        let listed = [
            ("api", "get-item", "b__get-item"),
            ("api", "get.item", "a__get.item"),
            ("api", "get_item", "c__get_item"),
        ];
        let mut reversed = listed;
        reversed.reverse();
        let mut forward = bound(&listed);
        let mut backward = bound(&reversed);
        forward.sort();
        backward.sort();
        assert_eq!(forward, backward);
    }

    #[test]
    fn suffixes_skip_identifiers_already_taken() {
        // `x__get_2` really is named `get_2`, so it keeps it although it sorts after both `get`s.
        let listed = [("ns", "get", "a__get"), ("ns", "get", "b__get"), ("ns", "get_2", "x__get_2")];
        let identifiers: Vec<String> = bind(&listed).into_iter().map(|b| b.identifier).collect();
        assert_eq!(identifiers, ["get", "get_3", "get_2"]);
    }

    #[test]
    fn sources_with_the_same_identifier_share_a_namespace() {
        let listed = [
            ("my-api", "list", "my-api__list"),
            ("my_api", "list", "my_api__list"),
            ("my_api", "get", "my_api__get"),
        ];
        assert_eq!(
            bound(&listed),
            vec![
                ("my_api".into(), "list".into(), "my-api__list".into()),
                ("my_api".into(), "list_2".into(), "my_api__list".into()),
                ("my_api".into(), "get".into(), "my_api__get".into()),
            ]
        );
    }

    #[test]
    fn same_identifier_in_different_namespaces_is_no_collision() {
        let listed = [("a", "list", "a__list"), ("b", "list", "b__list")];
        let paths: Vec<String> = bind(&listed).iter().map(path).collect();
        assert_eq!(paths, ["tools.a.list", "tools.b.list"]);
    }

    #[test]
    fn reserved_names_and_collisions_combine() {
        // `delete` becomes `delete_`, which then collides with a tool really named `delete_`.
        let listed =
            [("db", "delete", "db__delete"), ("db", "delete_", "db__delete_"), ("2x", "new", "2x__new")];
        assert_eq!(
            bound(&listed),
            vec![
                ("db".into(), "delete_".into(), "db__delete".into()),
                ("db".into(), "delete__2".into(), "db__delete_".into()),
                ("_2x".into(), "new_".into(), "2x__new".into()),
            ]
        );
    }
}
