//! `describe_tools`: TypeScript declarations of tools, exactly as a program calls them.
//!
//! Each namespace is one `declare namespace tools.<namespace> { … }` block holding one
//! `function <identifier>(args: …): Promise<…>;` per tool, with the description and the parameters' descriptions
//! as JSDoc. Argument types come from the input schema; the result type from the output schema when the tool has
//! one (an interface `<Identifier>Result`), else from a result seen earlier (marked as not guaranteed), else the
//! runtime's convention `ToolResult`, declared once at the top. The text is read by a model, so it is kept
//! compact: no blank lines, no comment that says nothing.

use std::collections::{HashMap, HashSet};

use mcpgate_core::JsonObject;
use serde_json::Value;

use crate::search::{Entry, key, required, resolve};

/// Width the doc comments are wrapped to.
const WIDTH: usize = 100;
/// Schema nesting rendered before giving up with `unknown` (objects, arrays and combinators each count).
const SCHEMA_DEPTH: usize = 8;
/// Nesting of a sample value rendered before giving up with `unknown`.
const VALUE_DEPTH: usize = 4;
/// Keys of a sample object rendered; more end in an index signature.
const VALUE_KEYS: usize = 20;
/// Elements of each sample array looked at.
const ARRAY_SAMPLES: usize = 10;
/// Indentation of a namespace's members.
const INDENT: &str = "  ";
/// Indentation of an interface's members.
const MEMBER_INDENT: &str = "    ";

/// Type names a tool's own types must not shadow: the runtime's and TypeScript's globals.
const GLOBAL_TYPES: &[&str] = &[
    "ToolResult",
    "ContentItem",
    "Promise",
    "Array",
    "Record",
    "Object",
    "String",
    "Number",
    "Boolean",
    "Date",
    "Error",
    "Function",
    "Map",
    "Set",
    "JSON",
    "Partial",
    "Required",
    "Readonly",
    "Pick",
    "Omit",
];

/// The runtime's convention for tools without an output schema (the gateway's `execute` does exactly this).
const TOOL_RESULT: &str = "\
/**
 * What a tool without an output schema resolves to: its `structuredContent` when it has one; else, when its
 * content is a single text item, that text parsed as JSON if it is JSON, else the text itself; else its content
 * items. A tool error rejects with an Error whose message is the tool's text.
 */
type ToolResult = unknown /* JSON value */ | string | ContentItem[];
type ContentItem =
  | { type: \"text\"; text: string }
  | { type: \"image\" | \"audio\"; data: string /* base64 */; mimeType: string }
  | { type: \"resource\"; resource: { uri: string; mimeType?: string; text?: string; blob?: string } }
  | { type: \"resource_link\"; uri: string; name: string; mimeType?: string };
";

/// What `describe_tools` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Described {
    /// The TypeScript declarations of the tools found.
    pub declarations: String,
    /// The requested names that matched no tool, in request order.
    pub unknown: Vec<String>,
}

/// Declarations for the tools `names` asks for.
///
/// A name is a public tool name (`fs__read_file`) or a path (`tools.fs.read_file` or `fs.read_file`); names
/// matching nothing are returned in [`Described::unknown`]. Namespaces and tools come in the order first asked
/// for; a tool asked for twice is declared once. `observed` gives, by public name, a result seen earlier, used
/// for tools without an output schema.
pub fn describe(
    entries: &[Entry<'_>],
    names: &[String],
    observed: &dyn Fn(&str) -> Option<Value>,
) -> Described {
    let mut unknown = Vec::new();
    let mut groups: Vec<(&str, Vec<&Entry<'_>>)> = Vec::new();
    let mut seen = HashSet::new();
    for name in names {
        let Some(entry) = find(entries, name) else {
            if !unknown.contains(name) {
                unknown.push(name.clone());
            }
            continue;
        };
        if !seen.insert(entry.tool.name.as_str()) {
            continue;
        }
        let namespace = entry.binding.namespace.as_str();
        match groups.iter_mut().find(|(n, _)| *n == namespace) {
            Some((_, members)) => members.push(entry),
            None => groups.push((namespace, vec![entry])),
        }
    }
    let mut uses_tool_result = false;
    let mut blocks = String::new();
    for (namespace, members) in groups {
        // Type names are scoped by the namespace block, so they need only be unique within it.
        let mut types = TypeNames::new();
        blocks.push_str(&format!("declare namespace tools.{namespace} {{\n"));
        for entry in members {
            let (text, uses) = declare(entry, &mut types, observed);
            uses_tool_result |= uses;
            blocks.push_str(&text);
        }
        blocks.push_str("}\n");
    }
    let mut declarations = if uses_tool_result { TOOL_RESULT.to_owned() } else { String::new() };
    declarations.push_str(&blocks);
    Described { declarations, unknown }
}

/// The tool a requested name means: a public name first, then a path.
fn find<'s, 'a>(entries: &'s [Entry<'a>], name: &str) -> Option<&'s Entry<'a>> {
    let name = name.trim();
    entries.iter().find(|entry| entry.tool.name == name).or_else(|| {
        let path = name.strip_prefix("tools.").unwrap_or(name);
        let (namespace, identifier) = path.split_once('.')?;
        entries
            .iter()
            .find(|entry| entry.binding.namespace == namespace && entry.binding.identifier == identifier)
    })
}

/// One tool's declarations (its named types, then its function), and whether it returns `ToolResult`.
fn declare(
    entry: &Entry<'_>,
    types: &mut TypeNames,
    observed: &dyn Fn(&str) -> Option<Value>,
) -> (String, bool) {
    let owner = pascal(&entry.binding.identifier);
    let mut out = String::new();

    let mut input = Schema::new(&entry.tool.input_schema, &owner, "Args", types);
    input.closed_root = true;
    // The arguments are rendered where they are used, so their properties' docs become `@param` lines.
    let args = input.ty_object(&entry.tool.input_schema, 0, Some("args"));
    let params = std::mem::take(&mut input.params);
    out.push_str(&input.defs);
    let optional = !has_required(&entry.tool.input_schema);

    let summary =
        [&entry.tool.description, &entry.tool.title].into_iter().flatten().find(|d| !d.trim().is_empty());
    let mut doc: Vec<String> = summary.into_iter().cloned().collect();
    doc.extend(params);
    let mut uses_tool_result = false;
    let returns = match (&entry.tool.output_schema, observed(&entry.tool.name)) {
        (Some(schema), _) => {
            let name = types.claim(format!("{owner}Result"), format!("{owner}Result"));
            let mut output = Schema::new(schema, &owner, "Result", types);
            // A `$ref` to the output schema's root is the result type itself.
            output.refs.insert("#".to_owned(), name.clone());
            let declaration =
                output.declaration(&name, schema, schema.get("description").and_then(Value::as_str));
            out.push_str(&output.defs);
            out.push_str(&declaration);
            name
        }
        (None, Some(sample)) => {
            doc.push("@returns Shape observed in an earlier result, not guaranteed.".to_owned());
            type_of_value(&sample)
        }
        (None, None) => {
            uses_tool_result = true;
            "ToolResult".to_owned()
        }
    };
    out.push_str(&doc_comment(&doc, INDENT));
    let mark = if optional { "?" } else { "" };
    out.push_str(&format!(
        "{INDENT}function {}(args{mark}: {}): Promise<{returns}>;\n",
        entry.binding.identifier, args.text
    ));
    (out, uses_tool_result)
}

/// Whether an object schema requires any property (if not, a program may leave the arguments out).
fn has_required(schema: &JsonObject) -> bool {
    schema.get("required").and_then(Value::as_array).is_some_and(|required| !required.is_empty())
}

/// A TypeScript type inferred from one JSON value: nesting past 4 levels is `unknown`, objects show at most 20
/// keys (then `[key: string]: unknown`), and an array's type unifies its first elements (objects merge, a key
/// missing from some becomes optional).
pub fn type_of_value(value: &Value) -> String {
    infer(&[value], 0).text
}

/// The one type of all `samples`: a union of their kinds, objects merged into one object type.
fn infer(samples: &[&Value], depth: usize) -> Ts {
    if depth > VALUE_DEPTH {
        return Ts::atom("unknown");
    }
    let mut parts = Vec::new();
    let any = |kind: fn(&Value) -> bool| samples.iter().any(|value| kind(value));
    if any(Value::is_string) {
        parts.push(Ts::atom("string"));
    }
    if any(Value::is_number) {
        parts.push(Ts::atom("number"));
    }
    if any(Value::is_boolean) {
        parts.push(Ts::atom("boolean"));
    }
    let objects: Vec<&JsonObject> = samples.iter().filter_map(|value| value.as_object()).collect();
    if !objects.is_empty() {
        parts.push(infer_object(&objects, depth));
    }
    let arrays: Vec<&Vec<Value>> = samples.iter().filter_map(|value| value.as_array()).collect();
    if !arrays.is_empty() {
        let elements: Vec<&Value> =
            arrays.iter().flat_map(|items| items.iter().take(ARRAY_SAMPLES)).collect();
        let element = if elements.is_empty() { Ts::atom("unknown") } else { infer(&elements, depth + 1) };
        parts.push(element.array());
    }
    if any(Value::is_null) {
        parts.push(Ts::atom("null"));
    }
    Ts::union(parts)
}

/// One object type for several sample objects: keys in order of first appearance, optional when some lack them.
fn infer_object(objects: &[&JsonObject], depth: usize) -> Ts {
    let mut keys: Vec<&str> = Vec::new();
    for object in objects {
        for key in object.keys() {
            if !keys.contains(&key.as_str()) {
                keys.push(key);
            }
        }
    }
    let mut members: Vec<String> = keys
        .iter()
        .take(VALUE_KEYS)
        .map(|name| {
            let values: Vec<&Value> = objects.iter().filter_map(|object| object.get(*name)).collect();
            let mark = if values.len() < objects.len() { "?" } else { "" };
            format!("{}{mark}: {}", key(name), infer(&values, depth + 1).text)
        })
        .collect();
    if keys.len() > VALUE_KEYS {
        members.push("[key: string]: unknown".to_owned());
    }
    Ts::atom(inline(&members))
}

/// A TypeScript type and how tightly it binds, so it is parenthesized only where it must be.
#[derive(Debug, Clone, PartialEq)]
struct Ts {
    text: String,
    precedence: Precedence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Precedence {
    Union,
    Intersection,
    Atom,
}

impl Ts {
    fn atom(text: impl Into<String>) -> Self {
        Self { text: text.into(), precedence: Precedence::Atom }
    }

    fn literal(value: &Value) -> Self {
        // JSON literals are TypeScript literal types (strings, numbers, booleans, null, and object/tuple shapes).
        Self::atom(value.to_string())
    }

    fn is_unknown(&self) -> bool {
        self.text == "unknown"
    }

    /// `T[]`, parenthesized when `T` is a union or intersection.
    fn array(self) -> Self {
        Self::atom(format!("{}[]", self.at_least(Precedence::Atom)))
    }

    /// The text, in parentheses when it binds more loosely than `needed`.
    fn at_least(&self, needed: Precedence) -> String {
        if self.precedence < needed { format!("({})", self.text) } else { self.text.clone() }
    }

    /// `A | B`, duplicates dropped; `unknown` absorbs the rest.
    fn union(parts: Vec<Ts>) -> Self {
        if parts.iter().any(Ts::is_unknown) {
            return Self::atom("unknown");
        }
        Self::join(parts, " | ", Precedence::Union)
    }

    /// `A & B`, duplicates and `unknown` (which adds nothing) dropped.
    fn intersection(parts: Vec<Ts>) -> Self {
        let parts = parts.into_iter().filter(|part| !part.is_unknown()).collect();
        Self::join(parts, " & ", Precedence::Intersection)
    }

    fn join(parts: Vec<Ts>, separator: &str, precedence: Precedence) -> Self {
        let mut unique: Vec<Ts> = Vec::new();
        for part in parts {
            if !unique.iter().any(|seen| seen.text == part.text) {
                unique.push(part);
            }
        }
        if unique.len() <= 1 {
            return unique.pop().unwrap_or_else(|| Self::atom("unknown"));
        }
        let texts: Vec<String> = unique.iter().map(|part| part.at_least(precedence)).collect();
        Self { text: texts.join(separator), precedence }
    }
}

/// Type names taken in one namespace block.
struct TypeNames(HashSet<String>);

impl TypeNames {
    fn new() -> Self {
        Self(GLOBAL_TYPES.iter().map(|name| (*name).to_owned()).collect())
    }

    /// `first` if free, else `fallback`, else `fallback2`, `fallback3`, …
    fn claim(&mut self, first: String, fallback: String) -> String {
        let name = [first, fallback.clone()]
            .into_iter()
            .chain((2u32..).map(|n| format!("{fallback}{n}")))
            .find(|candidate| !self.0.contains(candidate))
            .unwrap_or(fallback);
        self.0.insert(name.clone());
        name
    }
}

/// One member of an object type, with its doc comment when it has one.
struct Member {
    doc: Option<String>,
    text: String,
}

/// Renders one JSON Schema (a tool's input or output schema) as TypeScript.
struct Schema<'s, 't> {
    /// The document `$ref`s point into.
    root: &'s JsonObject,
    /// The tool's identifier in PascalCase, to tell its named types from other tools'.
    owner: &'s str,
    /// The name of the root when a `$ref` points at it (`Args`, `Result`), after `owner`.
    root_name: &'static str,
    /// Whether the root object without properties is `{}` (arguments: none) rather than any object.
    closed_root: bool,
    types: &'t mut TypeNames,
    /// `$ref` → the named type it became; filled before its body is rendered, so recursion ends there.
    refs: HashMap<String, String>,
    /// Declarations of the named types, in the order first used.
    defs: String,
    /// `@param` lines for the properties reached from the root without a `$ref`.
    params: Vec<String>,
}

impl<'s, 't> Schema<'s, 't> {
    fn new(root: &'s JsonObject, owner: &'s str, root_name: &'static str, types: &'t mut TypeNames) -> Self {
        Self {
            root,
            owner,
            root_name,
            closed_root: false,
            types,
            refs: HashMap::new(),
            defs: String::new(),
            params: Vec::new(),
        }
    }

    /// A schema's type; `path` (`args.options`) is where its properties' docs go as `@param` lines, or `None`
    /// for docs inline in the type.
    fn ty(&mut self, schema: &Value, depth: usize, path: Option<&str>) -> Ts {
        match schema {
            Value::Object(schema) => self.ty_object(schema, depth, path),
            Value::Bool(false) => Ts::atom("never"),
            _ => Ts::atom("unknown"),
        }
    }

    fn ty_object(&mut self, schema: &JsonObject, depth: usize, path: Option<&str>) -> Ts {
        if depth > SCHEMA_DEPTH {
            return Ts::atom("unknown");
        }
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            return self.reference(reference);
        }
        if let Some(value) = schema.get("const") {
            return Ts::literal(value);
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            return Ts::union(values.iter().map(Ts::literal).collect());
        }
        let mut parts = Vec::new();
        if let Some(base) = self.base(schema, depth, path) {
            parts.push(base);
        }
        for combinator in ["anyOf", "oneOf"] {
            if let Some(options) = schema.get(combinator).and_then(Value::as_array) {
                let options = options.iter().map(|option| self.ty(option, depth + 1, path)).collect();
                parts.push(Ts::union(options));
            }
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            parts.extend(all.iter().map(|member| self.ty(member, depth + 1, path)));
        }
        Ts::intersection(parts)
    }

    /// The type from `type` (or, without it, from `properties` / `items`), with OpenAPI's `nullable`.
    fn base(&mut self, schema: &JsonObject, depth: usize, path: Option<&str>) -> Option<Ts> {
        let mut types: Vec<&str> = match schema.get("type") {
            Some(Value::String(ty)) => vec![ty.as_str()],
            Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).collect(),
            _ if ["properties", "additionalProperties", "patternProperties"]
                .iter()
                .any(|k| schema.contains_key(*k)) =>
            {
                vec!["object"]
            }
            _ if schema.contains_key("items") || schema.contains_key("prefixItems") => vec!["array"],
            _ => return None,
        };
        if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            types.push("null");
        }
        let parts = types
            .into_iter()
            .map(|ty| match ty {
                "string" | "boolean" | "null" => Ts::atom(ty),
                "number" | "integer" => Ts::atom("number"),
                "object" => self.object(schema, depth, path),
                "array" => self.array(schema, depth, path),
                _ => Ts::atom("unknown"),
            })
            .collect();
        Some(Ts::union(parts))
    }

    /// `{ a: T; b?: U }`.
    fn object(&mut self, schema: &JsonObject, depth: usize, path: Option<&str>) -> Ts {
        let members: Vec<String> = self
            .members(schema, depth, path)
            .into_iter()
            .map(|member| match member.doc {
                Some(doc) => format!("/** {} */ {}", escape(&doc), member.text),
                None => member.text,
            })
            .collect();
        Ts::atom(inline(&members))
    }

    /// The properties of an object schema, required or not, then its index signature if any.
    fn members(&mut self, schema: &JsonObject, depth: usize, path: Option<&str>) -> Vec<Member> {
        let required = required(schema);
        let properties = schema.get("properties").and_then(Value::as_object);
        let mut members = Vec::new();
        for (name, property) in properties.into_iter().flatten() {
            let child = path.map(|path| format!("{path}.{name}"));
            let ty = self.ty(property, depth + 1, child.as_deref());
            let mut doc = property_doc(property);
            if let (Some(child), Some(text)) = (&child, &doc) {
                // Reached from the arguments: the doc goes to the function's JSDoc instead of into the type.
                let param = format!("@param {child} {text}");
                if !self.params.contains(&param) {
                    self.params.push(param);
                }
                doc = None;
            }
            let mark = if required.contains(name.as_str()) { "" } else { "?" };
            members.push(Member { doc, text: format!("{}{mark}: {}", key(name), ty.text) });
        }
        if let Some(index) = self.index_signature(schema, properties.is_some_and(|p| !p.is_empty()), depth) {
            members.push(Member { doc: None, text: format!("[key: string]: {}", index.text) });
        }
        members
    }

    /// The type of the keys an object allows beyond its properties, if it allows any worth showing.
    fn index_signature(&mut self, schema: &JsonObject, has_properties: bool, depth: usize) -> Option<Ts> {
        let mut types = Vec::new();
        match schema.get("additionalProperties") {
            Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => types.push(Ts::atom("unknown")),
            Some(additional) => types.push(self.ty(additional, depth + 1, None)),
            // JSON Schema allows any other key, but a schema listing properties means those; one listing none
            // means any object — except the arguments, where it means "no arguments".
            None if !has_properties
                && !self.is_closed_root(schema)
                && !schema.contains_key("patternProperties") =>
            {
                types.push(Ts::atom("unknown"))
            }
            None => {}
        }
        for pattern in
            schema.get("patternProperties").and_then(Value::as_object).into_iter().flat_map(|p| p.values())
        {
            types.push(self.ty(pattern, depth + 1, None));
        }
        (!types.is_empty()).then(|| Ts::union(types))
    }

    /// Whether `schema` is the arguments' root, where "no properties" means "no arguments".
    fn is_closed_root(&self, schema: &JsonObject) -> bool {
        self.closed_root && std::ptr::eq(schema, self.root)
    }

    /// `T[]` from `items`, or a tuple `[A, B]` from `prefixItems` (or draft-4 array `items`).
    fn array(&mut self, schema: &JsonObject, depth: usize, path: Option<&str>) -> Ts {
        let items_path = path.map(|path| format!("{path}[]"));
        let tuple =
            schema.get("prefixItems").or_else(|| schema.get("items").filter(|items| items.is_array()));
        if let Some(Value::Array(prefix)) = tuple {
            let mut elements: Vec<String> =
                prefix.iter().map(|item| self.ty(item, depth + 1, items_path.as_deref()).text).collect();
            if let Some(rest) =
                schema.get("items").filter(|items| items.is_object() && schema.contains_key("prefixItems"))
            {
                elements.push(format!("...{}", self.ty(rest, depth + 1, items_path.as_deref()).array().text));
            }
            return Ts::atom(format!("[{}]", elements.join(", ")));
        }
        match schema.get("items") {
            Some(items) => self.ty(items, depth + 1, items_path.as_deref()).array(),
            None => Ts::atom("unknown").array(),
        }
    }

    /// A named type for a local `$ref`, declared once; `unknown` when it does not resolve.
    fn reference(&mut self, reference: &str) -> Ts {
        if let Some(name) = self.refs.get(reference) {
            return Ts::atom(name.clone());
        }
        // `#` is the whole document, which `resolve` (made for `#/…` pointers) does not give.
        let whole;
        let target = if reference == "#" {
            whole = Value::Object(self.root.clone());
            &whole
        } else {
            match resolve(self.root, reference) {
                Some(target) => target,
                None => return Ts::atom("unknown"),
            }
        };
        let last = reference.rsplit('/').next().unwrap_or_default();
        let base = if reference == "#" {
            self.root_name.to_owned()
        } else {
            pascal(&last.replace("~1", "/").replace("~0", "~"))
        };
        let name = self.types.claim(base.clone(), format!("{}{base}", self.owner));
        // Named before its body is rendered: a reference back to it inside is just its name.
        self.refs.insert(reference.to_owned(), name.clone());
        let Some(object) = target.as_object() else {
            let ty = self.ty(target, 0, None);
            self.defs.push_str(&format!("{INDENT}type {name} = {};\n", ty.text));
            return Ts::atom(name);
        };
        let description = object.get("description").and_then(Value::as_str);
        let declaration = self.declaration(&name, object, description);
        self.defs.push_str(&declaration);
        Ts::atom(name)
    }

    /// `interface Name { … }` for a plain object schema, `type Name = …;` for anything else.
    fn declaration(&mut self, name: &str, schema: &JsonObject, description: Option<&str>) -> String {
        let doc = description.map(|d| vec![d.to_owned()]).unwrap_or_default();
        let mut out = doc_comment(&doc, INDENT);
        if is_plain_object(schema) {
            let members = self.members(schema, 0, None);
            out.push_str(&format!("{INDENT}interface {name} {{\n"));
            for member in members {
                if let Some(doc) = member.doc {
                    out.push_str(&doc_comment(&[doc], MEMBER_INDENT));
                }
                out.push_str(&format!("{MEMBER_INDENT}{};\n", member.text));
            }
            out.push_str(&format!("{INDENT}}}\n"));
        } else {
            let ty = self.ty_object(schema, 0, None);
            out.push_str(&format!("{INDENT}type {name} = {};\n", ty.text));
        }
        out
    }
}

/// Whether a schema is just an object with properties, so it reads best as an interface.
fn is_plain_object(schema: &JsonObject) -> bool {
    let object = match schema.get("type") {
        Some(Value::String(ty)) => ty == "object",
        None => schema.contains_key("properties"),
        _ => false,
    };
    let combined = ["$ref", "const", "enum", "anyOf", "oneOf", "allOf", "nullable"]
        .iter()
        .any(|k| schema.contains_key(*k));
    object && !combined
}

/// A property's doc: its description, then its format, default and bounds.
fn property_doc(schema: &Value) -> Option<String> {
    let schema = schema.as_object()?;
    let mut doc = schema.get("description").and_then(Value::as_str).map(collapse).unwrap_or_default();
    let mut notes = Vec::new();
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        notes.push(format!("format: {format}"));
    }
    for keyword in ["default", "minimum", "maximum"] {
        if let Some(value) = schema.get(keyword) {
            notes.push(format!("{keyword}: {value}"));
        }
    }
    if !notes.is_empty() {
        if !doc.is_empty() {
            doc.push(' ');
        }
        doc.push_str(&format!("({})", notes.join(", ")));
    }
    (!doc.is_empty()).then_some(doc)
}

/// `{ a: T; b?: U }`, or `{}`.
fn inline(members: &[String]) -> String {
    if members.is_empty() { "{}".to_owned() } else { format!("{{ {} }}", members.join("; ")) }
}

/// A doc comment of `paragraphs` (each may hold several lines), wrapped, at `indent`; one line when it fits.
fn doc_comment(paragraphs: &[String], indent: &str) -> String {
    let width = WIDTH.saturating_sub(indent.len() + 3).max(40);
    let lines: Vec<String> = paragraphs
        .iter()
        .flat_map(|paragraph| paragraph.lines())
        .flat_map(|line| wrap(&escape(line), width))
        .collect();
    match lines.as_slice() {
        [] => String::new(),
        [line] if indent.len() + line.chars().count() + 7 <= WIDTH => format!("{indent}/** {line} */\n"),
        _ => {
            let mut out = format!("{indent}/**\n");
            for line in lines {
                out.push_str(&format!("{indent} * {line}\n"));
            }
            out.push_str(&format!("{indent} */\n"));
            out
        }
    }
}

/// `text`'s words in lines of at most `width` characters (a longer word gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Text safe inside a `/** */` comment.
fn escape(text: &str) -> String {
    text.replace("*/", "*\\/")
}

/// `text` with every run of whitespace one space.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `read_file` → `ReadFile`; a name that would not start with a letter gets a `T` in front.
fn pascal(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert(0, 'T');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mcpgate_core::ToolDef;
    use serde_json::json;

    use super::*;
    use crate::Binding;

    fn tool(namespace: &str, identifier: &str, description: &str, input: Value) -> (Binding, ToolDef) {
        let name = format!("{namespace}__{identifier}");
        let binding =
            Binding { namespace: namespace.into(), identifier: identifier.into(), tool: name.clone() };
        (binding, ToolDef::new(name, description, input))
    }

    fn with_output(mut pair: (Binding, ToolDef), output: Value) -> (Binding, ToolDef) {
        let Value::Object(output) = output else { panic!("an object schema") };
        pair.1.output_schema = Some(Arc::new(output));
        pair
    }

    fn run(tools: &[(Binding, ToolDef)], names: &[&str]) -> Described {
        let entries: Vec<Entry<'_>> = tools.iter().map(|(binding, tool)| Entry { binding, tool }).collect();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        describe(&entries, &names, &|_| None)
    }

    fn read_file() -> (Binding, ToolDef) {
        tool(
            "fs",
            "read_file",
            "Read a file.",
            json!({"type": "object", "properties": {
                "head": {"type": "integer", "description": "First N lines only", "minimum": 1},
                "path": {"type": "string", "description": "Where the file is"}
            }, "required": ["path"]}),
        )
    }

    #[test]
    fn exact_declaration_for_a_small_schema() {
        let described = run(&[read_file()], &["fs__read_file"]);
        let expected = format!(
            "{TOOL_RESULT}{}",
            "declare namespace tools.fs {
  /**
   * Read a file.
   * @param args.head First N lines only (minimum: 1)
   * @param args.path Where the file is
   */
  function read_file(args: { head?: number; path: string }): Promise<ToolResult>;
}
"
        );
        assert_eq!(described.declarations, expected);
        assert!(described.unknown.is_empty());
    }

    #[test]
    fn output_schema_becomes_a_result_interface() {
        let tools = [with_output(
            tool(
                "time",
                "get_current_time",
                "Current time.",
                json!({"type": "object", "properties": {"tz": {"type": "string"}}}),
            ),
            json!({"type": "object", "properties": {
                "iso": {"type": "string", "format": "date-time", "description": "The time"},
                "dst": {"type": "boolean"}
            }, "required": ["iso"]}),
        )];
        let described = run(&tools, &["tools.time.get_current_time"]);
        assert_eq!(
            described.declarations,
            "declare namespace tools.time {
  interface GetCurrentTimeResult {
    dst?: boolean;
    /** The time (format: date-time) */
    iso: string;
  }
  /** Current time. */
  function get_current_time(args?: { tz?: string }): Promise<GetCurrentTimeResult>;
}
"
        );
    }

    #[test]
    fn schema_keywords_map_to_typescript() {
        let tools = [tool(
            "x",
            "y",
            "",
            json!({"type": "object", "properties": {
                "a": {"type": ["string", "null"]},
                "b": {"enum": ["asc", "desc"]},
                "c": {"const": 3},
                "d": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}}]},
                "e": {"allOf": [
                    {"type": "object", "properties": {"p": {"type": "string"}}, "required": ["p"]},
                    {"type": "object", "properties": {"q": {"type": "number"}}}
                ]},
                "f": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "number"}]}},
                "g": {"type": "object", "additionalProperties": {"type": "number"}},
                "h": {"type": "object", "properties": {"k": {"type": "string", "description": "Nested"}}},
                "i": {},
                "j": {"type": "string", "nullable": true},
                "k-l": {"type": "boolean", "default": false}
            }, "required": ["a"]}),
        )];
        let described = run(&tools, &["x.y"]);
        let signature = "function y(args: { a: string | null; b?: \"asc\" | \"desc\"; c?: 3; d?: string | number[]; \
                         e?: { p: string } & { q?: number }; f?: (string | number)[]; g?: { [key: string]: number }; \
                         h?: { k?: string }; i?: unknown; j?: string | null; \"k-l\"?: boolean }): Promise<ToolResult>;";
        assert!(described.declarations.contains(signature), "{}", described.declarations);
        assert!(described.declarations.contains("   * @param args.h.k Nested\n"));
        assert!(described.declarations.contains("   * @param args.k-l (default: false)\n"));
    }

    #[test]
    fn refs_become_named_interfaces_and_recursion_ends() {
        let tools = [tool(
            "tree",
            "walk",
            "Walk a tree.",
            json!({"type": "object", "properties": {
                "root": {"$ref": "#/$defs/Node"},
                "extra": {"$ref": "#/definitions/Extra"},
                "missing": {"$ref": "#/$defs/Nope"}
            }, "required": ["root"],
            "$defs": {"Node": {"type": "object", "description": "A tree node.", "properties": {
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                "name": {"type": "string", "description": "Its name"}
            }, "required": ["name"]}},
            "definitions": {"Extra": {"type": "string", "enum": ["x", "y"]}}}),
        )];
        let described = run(&tools, &["tree__walk"]);
        assert_eq!(
            described.declarations,
            format!(
                "{TOOL_RESULT}{}",
                "declare namespace tools.tree {
  type Extra = \"x\" | \"y\";
  /** A tree node. */
  interface Node {
    children?: Node[];
    /** Its name */
    name: string;
  }
  /** Walk a tree. */
  function walk(args: { extra?: Extra; missing?: unknown; root: Node }): Promise<ToolResult>;
}
"
            )
        );
    }

    #[test]
    fn mutual_recursion_and_root_refs_terminate() {
        let tools = [tool(
            "t",
            "f",
            "",
            json!({"type": "object", "properties": {
                "a": {"$ref": "#/$defs/A"}, "self": {"$ref": "#"}
            }, "$defs": {
                "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}},
                "B": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}
            }}),
        )];
        let text = run(&tools, &["t__f"]).declarations;
        assert!(text.contains("interface A {\n    b?: B;\n  }"), "{text}");
        assert!(text.contains("interface B {\n    a?: A;\n  }"), "{text}");
        assert!(text.contains("interface Args {\n    a?: A;\n    self?: Args;\n  }"), "{text}");
        assert!(text.contains("function f(args?: { a?: A; self?: Args })"), "{text}");
    }

    #[test]
    fn type_names_do_not_clash_within_a_namespace() {
        let node = |description: &str| {
            json!({"type": "object", "properties": {"n": {"$ref": "#/$defs/Node"}},
            "$defs": {"Node": {"type": "object", "description": description, "properties": {"v": {"type": "string"}}}}})
        };
        let tools = [tool("g", "one", "", node("First.")), tool("g", "two", "", node("Second."))];
        let text = run(&tools, &["g__one", "g__two"]).declarations;
        assert!(text.contains("interface Node {"), "{text}");
        assert!(text.contains("interface TwoNode {"), "{text}");
        assert!(text.contains("function two(args?: { n?: TwoNode })"), "{text}");
    }

    #[test]
    fn deep_schemas_are_cut_off() {
        let mut schema = json!({"type": "string"});
        for _ in 0..20 {
            schema = json!({"type": "object", "properties": {"x": schema}});
        }
        let tools = [tool("d", "deep", "", schema)];
        let text = run(&tools, &["d__deep"]).declarations;
        let function = text.lines().find(|line| line.contains("function deep")).expect("declared");
        assert_eq!(function.matches("x?:").count(), SCHEMA_DEPTH + 1, "{function}");
        assert!(function.contains("{ x?: unknown }"), "{function}");
        assert!(!function.contains("string"), "{function}");
    }

    #[test]
    fn unknown_names_are_reported_and_duplicates_declared_once() {
        let tools = [read_file()];
        let described =
            run(&tools, &["nope", "fs__read_file", "tools.fs.read_file", "fs.write_file", "nope"]);
        assert_eq!(described.unknown, ["nope", "fs.write_file"]);
        assert_eq!(described.declarations.matches("function read_file").count(), 1);
        let none = run(&tools, &["x"]);
        assert_eq!(none.declarations, "");
        assert_eq!(none.unknown, ["x"]);
    }

    #[test]
    fn observed_shape_replaces_tool_result() {
        let tools = [read_file()];
        let entries: Vec<Entry<'_>> = tools.iter().map(|(binding, tool)| Entry { binding, tool }).collect();
        let observed = |name: &str| (name == "fs__read_file").then(|| json!({"content": "hi", "lines": 3}));
        let described = describe(&entries, &["fs__read_file".to_owned()], &observed);
        let text = described.declarations;
        assert!(!text.contains("type ToolResult"), "{text}");
        assert!(
            text.contains("   * @returns Shape observed in an earlier result, not guaranteed.\n"),
            "{text}"
        );
        assert!(text.contains("): Promise<{ content: string; lines: number }>;"), "{text}");
    }

    #[test]
    fn tool_result_is_declared_once() {
        let tools = [read_file(), tool("echo", "echo", "Echo.", json!({"type": "object"}))];
        let text = run(&tools, &["fs__read_file", "echo__echo"]).declarations;
        assert_eq!(text.matches("type ToolResult =").count(), 1);
        assert!(text.starts_with("/**"));
        assert!(text.contains("declare namespace tools.echo {\n  /** Echo. */\n  function echo(args?: {}): Promise<ToolResult>;\n}\n"));
    }

    #[test]
    fn descriptions_wrap_and_escape_comment_ends() {
        let long = "word ".repeat(50) + "ends */ here";
        let tools = [tool("w", "wrap", &long, json!({"type": "object"}))];
        let text = run(&tools, &["w__wrap"]).declarations;
        assert!(text.contains("ends *\\/ here"), "{text}");
        for line in text.lines().filter(|line| line.starts_with("   * ")) {
            assert!(line.chars().count() <= WIDTH, "{line}");
        }
        assert!(!text.contains("\n\n"));
    }

    #[test]
    fn types_of_values() {
        assert_eq!(type_of_value(&json!("x")), "string");
        assert_eq!(type_of_value(&json!(null)), "null");
        assert_eq!(type_of_value(&json!([])), "unknown[]");
        assert_eq!(type_of_value(&json!([1, 2])), "number[]");
        assert_eq!(type_of_value(&json!([1, "a", null])), "(string | number | null)[]");
        assert_eq!(
            type_of_value(
                &json!({"items": [{"id": 1, "name": "a"}, {"id": 2, "tag": null}], "next-page": "x"})
            ),
            "{ items: { id: number; name?: string; tag?: null }[]; \"next-page\": string }"
        );
        assert_eq!(
            type_of_value(&json!({"a": {"b": {"c": {"d": {"e": 1}}}}})),
            "{ a: { b: { c: { d: { e: unknown } } } } }"
        );
    }

    #[test]
    fn wide_sample_objects_end_in_an_index_signature() {
        let wide: JsonObject = (0..25).map(|i| (format!("k{i:02}"), json!(i))).collect();
        let ty = type_of_value(&Value::Object(wide));
        assert_eq!(ty.matches(": number").count(), VALUE_KEYS);
        assert!(ty.ends_with("; [key: string]: unknown }"), "{ty}");
    }

    #[test]
    fn pascal_case_names() {
        assert_eq!(pascal("read_file"), "ReadFile");
        assert_eq!(pascal("getCurrentTime"), "GetCurrentTime");
        assert_eq!(pascal("delete_"), "Delete");
        assert_eq!(pascal("_2fa"), "T2fa");
    }
}
