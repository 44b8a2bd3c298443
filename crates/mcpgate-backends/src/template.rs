//! Templates of config-declared tools (minijinja syntax) and `${VAR}` expansion.
//!
//! A template sees the call's arguments and nothing else. Undefined variables are errors, not empty strings,
//! and every variable a template reads must be an argument the tool's input schema declares — checked when the
//! config loads. Argument values are data: a value containing `{{ … }}` is inserted as those characters and
//! never evaluated.

use std::collections::BTreeSet;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::Value;

/// Work one rendering may do (minijinja fuel): enough for any sensible template, and a bound on a runaway loop.
const FUEL: u64 = 100_000;

/// The templates of one backend, each under a name (its config path, for error messages).
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        // Template names are config paths: one ending in `.json` or `.html` must not switch escaping on.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        Self { env }
    }
}

impl Templates {
    /// The environment, to add filters or a formatter before templates are added.
    pub fn env_mut(&mut self) -> &mut Environment<'static> {
        &mut self.env
    }

    /// Compile `source` under `name`. Every variable it reads must be in `allowed` (the argument names); the
    /// error lists those that are not.
    pub fn add(&mut self, name: &str, source: &str, allowed: &BTreeSet<String>) -> Result<(), String> {
        self.env.add_template_owned(name.to_owned(), source.to_owned()).map_err(|e| describe(&e))?;
        let template = self.env.get_template(name).map_err(|e| describe(&e))?;
        let mut unknown: Vec<String> =
            template.undeclared_variables(false).into_iter().filter(|v| !allowed.contains(v)).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort();
        Err(format!(
            "template reads {} not among the tool's arguments ({})",
            unknown.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", "),
            if allowed.is_empty() {
                "it declares none".to_owned()
            } else {
                allowed.iter().cloned().collect::<Vec<_>>().join(", ")
            }
        ))
    }

    /// Render the template `name` with `context` (the arguments object, plus whatever the caller adds).
    pub fn render(&self, name: &str, context: &Value) -> Result<String, String> {
        let template = self.env.get_template(name).map_err(|e| describe(&e))?;
        template.render(minijinja::value::Serde(context)).map_err(|e| describe(&e))
    }
}

/// A minijinja error with its cause chain, on one line.
fn describe(error: &minijinja::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The argument names a tool's input schema declares (`properties`).
pub fn argument_names(input_schema: &Value) -> BTreeSet<String> {
    input_schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Names the template language reads as constants, not variables: `{{ true }}` prints `true`.
const LITERALS: [&str; 6] = ["true", "True", "false", "False", "none", "None"];

/// When `source` is exactly one variable (`{{ name }}`, spaces and `-` trim markers allowed), its name.
pub fn sole_variable(source: &str) -> Option<&str> {
    let inner = source.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner).trim();
    let mut chars = inner.chars();
    let first = chars.next()?;
    ((first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !LITERALS.contains(&inner))
    .then_some(inner)
}

/// Replace every `${VAR}` in `text` with the environment variable `VAR`; `$${` stands for a literal `${`.
/// Fails naming every variable that is unset.
pub fn expand_env(text: &str) -> Result<String, String> {
    expand_with(text, |name| std::env::var(name).ok())
}

fn expand_with(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let Some(end) = rest[at + 2..].find('}') else {
            return Err(format!("unclosed \"${{\" in {text:?}"));
        };
        let name = &rest[at + 2..at + 2 + end];
        match lookup(name) {
            Some(value) => out.push_str(&value),
            None => missing.push(name.to_owned()),
        }
        rest = &rest[at + 2 + end + 1..];
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "environment variable{} not set: {}",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn allowed(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn renders_arguments_and_refuses_unknown_variables() {
        let mut t = Templates::default();
        t.add("a", "hello {{ who }}", &allowed(&["who"])).unwrap();
        assert_eq!(t.render("a", &json!({ "who": "world" })).unwrap(), "hello world");
        let e = t.add("b", "{{ who }} {{ whom }}", &allowed(&["who"])).unwrap_err();
        assert!(e.contains("\"whom\""), "{e}");
        // Declared but absent at call time: an error, not an empty string.
        assert!(t.render("a", &json!({})).is_err());
    }

    #[test]
    fn template_syntax_inside_values_is_not_evaluated() {
        let mut t = Templates::default();
        t.add("a", "{{ x }}", &allowed(&["x"])).unwrap();
        let rendered =
            t.render("a", &json!({ "x": "{{ 7 * 7 }}{% for i in range(9) %}{% endfor %}" })).unwrap();
        assert_eq!(rendered, "{{ 7 * 7 }}{% for i in range(9) %}{% endfor %}");
    }

    #[test]
    fn sole_variables_are_recognised() {
        assert_eq!(sole_variable("{{ limit }}"), Some("limit"));
        assert_eq!(sole_variable("{{-limit-}}"), Some("limit"));
        assert_eq!(sole_variable("{{ limit }}x"), None);
        assert_eq!(sole_variable("{{ a.b }}"), None);
        assert_eq!(sole_variable("{{ 1 }}"), None);
    }

    /// Found by the `template` fuzz target: `{{ true }}` was taken for the variable `true`, so a command
    /// argument, query parameter or body leaf written so was dropped unless a call gave an argument of that
    /// name, instead of being the constant.
    #[test]
    fn constants_are_not_sole_variables() {
        let mut t = Templates::default();
        for constant in ["true", "True", "false", "False", "none", "None"] {
            let source = format!("{{{{ {constant} }}}}");
            assert_eq!(sole_variable(&source), None, "{source}");
            t.add(constant, &source, &allowed(&[])).unwrap();
            assert!(t.render(constant, &json!({ constant: "x" })).is_ok_and(|text| text != "x"), "{source}");
        }
        assert_eq!(sole_variable("{{ truth }}"), Some("truth"));
    }

    #[test]
    fn env_expansion_names_every_missing_variable() {
        let lookup = |name: &str| (name == "TOKEN").then(|| "s3cret".to_owned());
        assert_eq!(expand_with("Bearer ${TOKEN}", lookup).unwrap(), "Bearer s3cret");
        assert_eq!(expand_with("cost: $${TOKEN}", lookup).unwrap(), "cost: ${TOKEN}");
        let e = expand_with("${A}/${TOKEN}/${B}", lookup).unwrap_err();
        assert!(e.contains("A, B"), "{e}");
        assert!(expand_with("${OPEN", lookup).is_err());
    }
}
