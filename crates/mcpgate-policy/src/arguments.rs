//! Argument validation: every `tools/call` is checked against the tool's `inputSchema` (JSON Schema draft
//! 2020-12, formats asserted) before its backend runs. Validators are compiled once: when the catalogue is
//! built, or at the tool's first call for schemas known good ([`ArgumentSchema::deferred`]). A violation is a
//! tool error (`isError: true`) naming each failing path, so a model can correct its call.

use std::sync::OnceLock;

use mcpgate_core::JsonObject;
use serde_json::Value;

/// Longest description of one violation in the error text; the offending value may be large.
const MAX_VIOLATION_LEN: usize = 300;
/// Most violations listed in one error.
const MAX_VIOLATIONS: usize = 10;

/// A tool's compiled input schema.
pub struct ArgumentSchema(Compiled);

/// When a schema's validator is built.
enum Compiled {
    /// By [`ArgumentSchema::compile`].
    Now(jsonschema::Validator),
    /// At the first check ([`ArgumentSchema::deferred`]): the schema, and its validator or why it has none.
    Deferred(Value, OnceLock<Result<jsonschema::Validator, String>>),
}

impl std::fmt::Debug for ArgumentSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArgumentSchema")
    }
}

impl ArgumentSchema {
    /// Compile `schema` (draft 2020-12 unless it names another with `$schema`). Remote `$ref`s are not
    /// fetched: a schema that needs one fails here.
    pub fn compile(schema: &JsonObject) -> Result<Self, String> {
        build(&Value::Object(schema.clone())).map(|validator| Self(Compiled::Now(validator)))
    }

    /// `schema`, compiled at its first check: for schemas known good (the built-in tools', which tests compile),
    /// so a gateway whose tools go uncalled does not build jsonschema's meta-schema validator at start (its
    /// regexes and the code that builds them: ~4 MB of idle RSS; 2–4 ms, once, at the first check instead). One
    /// that does not compile then answers every check with the reason.
    pub fn deferred(schema: &JsonObject) -> Self {
        Self(Compiled::Deferred(Value::Object(schema.clone()), OnceLock::new()))
    }

    /// `Ok` when `arguments` satisfy the schema; else a message listing each violation with its path.
    pub fn check(&self, arguments: &Value) -> Result<(), String> {
        let validator = match &self.0 {
            Compiled::Now(validator) => validator,
            Compiled::Deferred(schema, compiled) => match compiled.get_or_init(|| build(schema)) {
                Ok(validator) => validator,
                Err(e) => return Err(format!("the tool's inputSchema does not compile: {e}")),
            },
        };
        if validator.is_valid(arguments) {
            return Ok(());
        }
        let mut violations: Vec<String> = validator
            .iter_errors(arguments)
            .take(MAX_VIOLATIONS + 1)
            .map(|error| {
                let path = error.instance_path().to_string();
                let path = if path.is_empty() { "(root)".to_owned() } else { path };
                let mut text = format!("{path}: {error}");
                if text.len() > MAX_VIOLATION_LEN {
                    let cut = (0..=MAX_VIOLATION_LEN).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                    text.truncate(cut);
                    text.push('…');
                }
                text
            })
            .collect();
        if violations.len() > MAX_VIOLATIONS {
            violations.truncate(MAX_VIOLATIONS);
            violations.push("(more not shown)".to_owned());
        }
        Err(format!("invalid arguments: {}", violations.join("; ")))
    }
}

/// The validator of `schema`: draft 2020-12 unless it names another, formats asserted, no remote `$ref`.
fn build(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema(value: Value) -> ArgumentSchema {
        ArgumentSchema::compile(value.as_object().unwrap()).unwrap()
    }

    #[test]
    fn violations_name_their_paths() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "email": { "type": "string", "format": "email", "maxLength": 255 },
                "age": { "type": "integer", "minimum": 0, "maximum": 150 }
            },
            "required": ["email"],
            "additionalProperties": false
        }));
        assert!(s.check(&json!({ "email": "a@example.com", "age": 30 })).is_ok());
        let e = s.check(&json!({ "email": "not an email", "age": 200, "extra": 1 })).unwrap_err();
        assert!(e.contains("/email") && e.contains("/age"), "{e}");
        assert!(e.contains("extra"), "additionalProperties named: {e}");
        let e = s.check(&json!({})).unwrap_err();
        assert!(e.contains("(root)") && e.contains("email"), "{e}");
    }

    #[test]
    fn schemas_that_do_not_compile_are_refused() {
        let bad = json!({ "type": "object", "properties": { "a": { "type": "no-such-type" } } });
        assert!(ArgumentSchema::compile(bad.as_object().unwrap()).is_err());
        let remote = json!({ "$ref": "https://example.com/schema.json" });
        assert!(ArgumentSchema::compile(remote.as_object().unwrap()).is_err());
        // Deferred, the same schema is refused at each check instead, with the reason.
        let deferred = ArgumentSchema::deferred(bad.as_object().unwrap());
        for _ in 0..2 {
            let e = deferred.check(&json!({ "a": 1 })).unwrap_err();
            assert!(e.starts_with("the tool's inputSchema does not compile: "), "{e}");
        }
    }

    #[test]
    fn a_deferred_schema_checks_like_a_compiled_one() {
        let value =
            json!({ "type": "object", "properties": { "n": { "type": "integer" } }, "required": ["n"] });
        let deferred = ArgumentSchema::deferred(value.as_object().unwrap());
        let Compiled::Deferred(_, compiled) = &deferred.0 else { panic!("deferred") };
        assert!(compiled.get().is_none(), "not compiled before its first check");
        assert!(deferred.check(&json!({ "n": 1 })).is_ok());
        assert_eq!(deferred.check(&json!({ "n": "x" })), schema(value).check(&json!({ "n": "x" })));
    }
}
