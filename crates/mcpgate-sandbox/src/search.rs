//! `search_tools`: BM25-ranked search over the catalogue a program may call.
//!
//! Each tool is one document made of weighted fields: its names (public name, namespace, identifier) count 3×,
//! its parameter names 1.5×, its title, description and parameter descriptions 1×. Words are split on anything
//! that is not a letter or digit and on camelCase, snake_case and kebab-case boundaries, lowercased and cut to a
//! crude stem (plural `s`/`es`/`ies`, `ing`, `ed`, a final `e`) on both sides, so `searchIssues`, `search_issues`
//! and `search issue` meet. A name also stays whole, so asking for a tool by its exact name puts it first.
//!
//! The index is built per call: a catalogue of a thousand tools is indexed and searched in a few milliseconds,
//! and there is nothing to keep in sync when the catalogue changes.

use std::collections::{HashMap, HashSet};

use mcpgate_core::{JsonObject, ToolDef};
use serde::Serialize;
use serde_json::Value;

use crate::{Binding, names};

/// BM25 term-frequency saturation.
const K1: f64 = 1.2;
/// BM25 document-length normalisation.
const B: f64 = 0.75;
/// Weight of a token from the tool's names.
const NAME_WEIGHT: f64 = 3.0;
/// Weight of a token from a parameter name.
const PARAMETER_WEIGHT: f64 = 1.5;
/// Weight of a token from the title or a description.
const TEXT_WEIGHT: f64 = 1.0;
/// Longest [`Hit::description`], in characters.
const SUMMARY_CHARS: usize = 160;
/// Enums longer than this show as their base type in a signature.
const SIGNATURE_ENUM_VALUES: usize = 6;
/// Words too common to say anything about a tool; dropped from queries that have other words.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "how", "i", "in", "is", "it", "me", "my",
    "of", "on", "or", "the", "this", "that", "to", "with",
];

/// A tool as search and describe see it: how a program calls it and what it is.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Where the tool is in `tools`.
    pub binding: &'a Binding,
    /// The tool's definition (public name, description, schemas).
    pub tool: &'a ToolDef,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// The public tool name.
    pub tool: String,
    /// Where a program calls it: `tools.<namespace>.<identifier>`.
    pub path: String,
    /// The first sentence (or line) of the description, at most 160 characters.
    pub description: String,
    /// A compact call signature: `tools.fs.read_file({path: string, head?: number})`.
    pub signature: String,
    /// The BM25 score (0 when browsing with an empty query).
    pub score: f64,
}

/// The `limit` best matches for `query`, best first; ties go by public name. Tools that match no word of the
/// query are left out. An empty query lists the first `limit` tools by public name, each with score 0.
pub fn search(entries: &[Entry<'_>], query: &str, limit: usize) -> Vec<Hit> {
    if query.trim().is_empty() {
        let mut sorted: Vec<&Entry<'_>> = entries.iter().collect();
        sorted.sort_by(|a, b| a.tool.name.cmp(&b.tool.name));
        return sorted.into_iter().take(limit).map(|entry| hit(entry, 0.0)).collect();
    }
    let terms = query_terms(query);
    let documents: Vec<Document> = entries.iter().map(Document::of).collect();
    let mut scored: Vec<(f64, &Entry<'_>)> =
        bm25(&documents, &terms).into_iter().zip(entries).filter(|(score, _)| *score > 0.0).collect();
    scored.sort_by(|(a, x), (b, y)| b.total_cmp(a).then_with(|| x.tool.name.cmp(&y.tool.name)));
    scored.into_iter().take(limit).map(|(score, entry)| hit(entry, score)).collect()
}

/// A hit for `entry`.
fn hit(entry: &Entry<'_>, score: f64) -> Hit {
    let description = entry.tool.description.as_deref().or(entry.tool.title.as_deref()).unwrap_or_default();
    Hit {
        tool: entry.tool.name.clone(),
        path: names::path(entry.binding),
        description: summary(description),
        signature: signature(entry),
        score,
    }
}

/// A tool indexed: weighted term frequencies and their sum (the document's length), and its name's terms.
struct Document {
    terms: HashMap<String, f64>,
    length: f64,
    names: HashSet<String>,
}

impl Document {
    fn of(entry: &Entry<'_>) -> Self {
        let mut document = Self { terms: HashMap::new(), length: 0.0, names: HashSet::new() };
        // A token shared by the public name, namespace and identifier counts once: the public name usually
        // repeats both, and counting it three times would drown the rest of the document.
        let mut name_tokens = HashSet::new();
        for name in [&entry.tool.name, &entry.binding.namespace, &entry.binding.identifier] {
            name_tokens.extend(name_terms(name));
        }
        for token in name_tokens {
            document.names.insert(token.clone());
            document.add(token, NAME_WEIGHT);
        }
        for text in [&entry.tool.title, &entry.tool.description].into_iter().flatten() {
            document.add_all(words(text), TEXT_WEIGHT);
        }
        if let Some(properties) = entry.tool.input_schema.get("properties").and_then(Value::as_object) {
            for (name, schema) in properties {
                document.add_all(words(name), PARAMETER_WEIGHT);
                if let Some(text) = schema.get("description").and_then(Value::as_str) {
                    document.add_all(words(text), TEXT_WEIGHT);
                }
            }
        }
        document
    }

    fn add(&mut self, token: String, weight: f64) {
        *self.terms.entry(token).or_default() += weight;
        self.length += weight;
    }

    fn add_all(&mut self, tokens: Vec<String>, weight: f64) {
        for token in tokens {
            self.add(token, weight);
        }
    }
}

/// The BM25 score of every document for `terms`.
fn bm25(documents: &[Document], terms: &[String]) -> Vec<f64> {
    let count = documents.len() as f64;
    let average = documents.iter().map(|d| d.length).sum::<f64>() / count.max(1.0);
    let idf: Vec<f64> = terms
        .iter()
        .map(|term| {
            let containing = documents.iter().filter(|d| d.terms.contains_key(term)).count() as f64;
            // The "+1" form: never negative, so a word every tool has still counts a little.
            (1.0 + (count - containing + 0.5) / (containing + 0.5)).ln()
        })
        .collect();
    documents
        .iter()
        .map(|document| {
            let norm = K1 * (1.0 - B + B * document.length / average.max(f64::MIN_POSITIVE));
            let matched: Vec<f64> = terms
                .iter()
                .zip(&idf)
                .filter_map(|(term, idf)| {
                    document.terms.get(term).map(|tf| idf * tf * (K1 + 1.0) / (tf + norm))
                })
                .collect();
            // Coordination (as Lucene's classic similarity): a tool that has more of the query's terms ranks
            // above one that has a rarer term many times, the more so when its name has them — "create an
            // invoice for a customer" wants `create_invoice`, not every customer tool whose parameters mention
            // "created".
            let share = |count: usize| count as f64 / terms.len().max(1) as f64;
            let coverage = share(matched.len());
            let in_name = share(terms.iter().filter(|term| document.names.contains(*term)).count());
            matched.iter().sum::<f64>() * coverage * (1.0 + in_name).powi(2)
        })
        .collect()
}

/// The distinct terms of a query: its words, plus each multi-word piece whole (`search_issues`), so a query
/// naming a tool exactly matches that tool's whole name.
fn query_terms(query: &str) -> Vec<String> {
    let mut terms = Vec::new();
    for piece in query.split_whitespace() {
        terms.extend(name_terms(piece));
        // A path (`tools.fs.read_file`, `fs.read_file`) names its namespace and identifier whole.
        if piece.contains('.') {
            piece.split('.').for_each(|part| terms.extend(name_terms(part)));
        }
    }
    let meaningful: Vec<String> =
        terms.iter().filter(|t| !STOPWORDS.contains(&t.as_str())).cloned().collect();
    // A query of nothing but common words ("how to") still searches for them.
    let mut terms = if meaningful.is_empty() { terms } else { meaningful };
    let mut seen = HashSet::new();
    terms.retain(|term| seen.insert(term.clone()));
    terms
}

/// The words of a name, and the name whole (lowercased) when it has more than one word.
fn name_terms(name: &str) -> Vec<String> {
    let mut terms = words(name);
    let whole = name.to_lowercase();
    if terms.len() > 1 {
        terms.push(whole);
    }
    terms
}

/// The stemmed, lowercased words of `text`.
pub(crate) fn words(text: &str) -> Vec<String> {
    split_words(text).into_iter().map(|word| stem(&word.to_lowercase())).collect()
}

/// `text` cut at anything not a letter or digit, and between a lowercase letter (or digit) and an uppercase one
/// (`searchIssues`), and before the last capital of a run followed by lowercase (`HTTPServer` → `HTTP`, `Server`).
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            flush(&mut words, &mut current);
            continue;
        }
        if c.is_uppercase() {
            let previous = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let after_lower = previous.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit());
            let ends_acronym =
                previous.is_some_and(char::is_uppercase) && next.is_some_and(|n| n.is_lowercase());
            if after_lower || ends_acronym {
                flush(&mut words, &mut current);
            }
        }
        current.push(c);
    }
    flush(&mut words, &mut current);
    words
}

fn flush(words: &mut Vec<String>, current: &mut String) {
    if !current.is_empty() {
        words.push(std::mem::take(current));
    }
}

/// A crude stem, the same for a word's common inflections: `issues`/`issue`, `files`/`file`,
/// `directories`/`directory`, `listing`/`list`, `created`/`create`. Short words are left alone.
fn stem(word: &str) -> String {
    if word.chars().count() <= 3 || !word.chars().all(|c| c.is_ascii_alphabetic()) {
        return word.to_owned();
    }
    // Plural first, then a verb ending (`listings` → `listing` → `list`).
    let mut stem = if let Some(base) = word.strip_suffix("ies") {
        format!("{base}y")
    } else if let Some(base) = word.strip_suffix("sses") {
        format!("{base}ss")
    } else if word.ends_with("ss") || word.ends_with("us") || word.ends_with("is") {
        word.to_owned()
    } else {
        word.strip_suffix('s').unwrap_or(word).to_owned()
    };
    for ending in ["ing", "ed"] {
        if let Some(base) = stem.strip_suffix(ending).filter(|base| base.len() >= 3) {
            stem = base.to_owned();
            break;
        }
    }
    // `create`/`created`, `write`/`writes`: drop a final `e` so both forms meet.
    if stem.len() > 3 && stem.ends_with('e') {
        stem.pop();
    }
    stem
}

/// The first sentence or line of `description`, at most [`SUMMARY_CHARS`] characters, with `…` when cut.
pub(crate) fn summary(description: &str) -> String {
    let text = description.trim();
    let line = text.lines().next().unwrap_or_default();
    let sentence = first_sentence(line).trim_end();
    if sentence.chars().count() <= SUMMARY_CHARS {
        return sentence.to_owned();
    }
    // Cut at the last space that leaves room for the ellipsis, or mid-word when there is none.
    let room: String = sentence.chars().take(SUMMARY_CHARS - 1).collect();
    let cut = match room.rfind(' ') {
        Some(space) if space > SUMMARY_CHARS / 2 => &room[..space],
        _ => room.as_str(),
    };
    format!("{}…", cut.trim_end_matches([' ', ',', ';', ':']))
}

/// `line` up to and including its first `.`, `!` or `?` followed by a space, except the dot of an abbreviation
/// such as `e.g.`.
fn first_sentence(line: &str) -> &str {
    let mut previous_space = 0;
    for (i, c) in line.char_indices() {
        if c == ' ' {
            previous_space = i;
        }
        let ends = matches!(c, '.' | '!' | '?') && line[i + c.len_utf8()..].starts_with(char::is_whitespace);
        if ends {
            let word = line[previous_space..=i].trim_start().to_lowercase();
            if !matches!(word.as_str(), "e.g." | "i.e." | "vs." | "eg." | "ie.") {
                return &line[..=i];
            }
        }
    }
    line
}

/// `tools.fs.read_file({path: string, head?: number})`: required parameters first, then optional ones with `?`.
fn signature(entry: &Entry<'_>) -> String {
    let schema = &entry.tool.input_schema;
    let properties = schema.get("properties").and_then(Value::as_object);
    let required = required(schema);
    let mut parameters = Vec::new();
    for want_required in [true, false] {
        for (name, property) in properties.into_iter().flatten() {
            if required.contains(name.as_str()) == want_required {
                let mark = if want_required { "" } else { "?" };
                parameters.push(format!("{}{mark}: {}", key(name), compact_type(property, schema)));
            }
        }
    }
    let path = names::path(entry.binding);
    if parameters.is_empty() { format!("{path}()") } else { format!("{path}({{{}}})", parameters.join(", ")) }
}

/// The property names an object schema's `required` lists.
pub(crate) fn required(schema: &JsonObject) -> HashSet<&str> {
    let names = schema.get("required").and_then(Value::as_array).into_iter().flatten();
    names.filter_map(Value::as_str).collect()
}

/// A property name as written in an object type: bare when it is an identifier, quoted otherwise.
pub(crate) fn key(name: &str) -> String {
    let identifier = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if identifier { name.to_owned() } else { Value::String(name.to_owned()).to_string() }
}

/// A one-word-ish type for a signature: `string`, `number`, `string[]`, `"a"|"b"`, `object`, `any`.
fn compact_type(schema: &Value, root: &JsonObject) -> String {
    compact_type_at(schema, root, 0)
}

fn compact_type_at(schema: &Value, root: &JsonObject, depth: usize) -> String {
    let Some(schema) = schema.as_object() else { return "any".into() };
    if depth > 3 {
        return "any".into();
    }
    if let Some(target) = schema.get("$ref").and_then(Value::as_str).and_then(|r| resolve(root, r)) {
        return compact_type_at(target, root, depth + 1);
    }
    if let Some(value) = schema.get("const") {
        return value.to_string();
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && (1..=SIGNATURE_ENUM_VALUES).contains(&values.len())
    {
        return values.iter().map(Value::to_string).collect::<Vec<_>>().join("|");
    }
    if let Some(options) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array) {
        let mut types: Vec<String> = Vec::new();
        for option in options {
            let ty = compact_type_at(option, root, depth + 1);
            if !types.contains(&ty) {
                types.push(ty);
            }
        }
        return if types.is_empty() { "any".into() } else { types.join("|") };
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(ty)) => vec![ty.as_str()],
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).collect(),
        _ if schema.contains_key("properties") => vec!["object"],
        _ if schema.contains_key("items") => vec!["array"],
        _ => Vec::new(),
    };
    let mut names: Vec<String> = Vec::new();
    for ty in types {
        let name = match ty {
            "string" | "boolean" | "null" | "object" => ty.to_owned(),
            "number" | "integer" => "number".to_owned(),
            "array" => {
                let item =
                    schema.get("items").map_or_else(|| "any".into(), |i| compact_type_at(i, root, depth + 1));
                if item.contains('|') { format!("({item})[]") } else { format!("{item}[]") }
            }
            _ => "any".to_owned(),
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() { "any".into() } else { names.join("|") }
}

/// The schema a local `$ref` (`#/$defs/X`, `#/definitions/X`, any JSON pointer into the root) points at.
pub(crate) fn resolve<'s>(root: &'s JsonObject, reference: &str) -> Option<&'s Value> {
    let pointer = reference.strip_prefix('#')?;
    let mut segments = pointer.split('/');
    if segments.next() != Some("") {
        return None;
    }
    let first = segments.next()?;
    let mut value = root.get(&unescape(first))?;
    for segment in segments {
        value = match value {
            Value::Object(map) => map.get(&unescape(segment))?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// A JSON-pointer segment decoded (`~1` is `/`, `~0` is `~`).
fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::*;

    /// A small, realistic catalogue.
    fn catalogue() -> Vec<(Binding, ToolDef)> {
        let tool = |ns: &str, id: &str, description: &str, schema: Value| {
            let name = format!("{ns}__{id}");
            let binding = Binding { namespace: ns.into(), identifier: id.into(), tool: name.clone() };
            (binding, ToolDef::new(name, description, schema))
        };
        vec![
            tool(
                "github",
                "search_issues",
                "Search issues and pull requests across GitHub repositories. Uses GitHub search syntax.",
                json!({"type": "object", "properties": {
                    "query": {"type": "string", "description": "Search query"},
                    "perPage": {"type": "integer", "minimum": 1, "maximum": 100},
                    "sort": {"type": "string", "enum": ["comments", "created", "updated"]}
                }, "required": ["query"]}),
            ),
            tool(
                "github",
                "create_issue",
                "Create a new issue in a GitHub repository.",
                json!({"type": "object", "properties": {
                    "owner": {"type": "string"}, "repo": {"type": "string"}, "title": {"type": "string"},
                    "body": {"type": "string"}, "labels": {"type": "array", "items": {"type": "string"}}
                }, "required": ["owner", "repo", "title"]}),
            ),
            tool(
                "fs",
                "read_file",
                "Read the complete contents of a file from the file system.",
                json!({"type": "object", "properties": {
                    "path": {"type": "string"}, "head": {"type": "number", "description": "Only the first N lines"}
                }, "required": ["path"]}),
            ),
            tool(
                "fs",
                "write_file",
                "Create a new file or overwrite an existing file with new content.",
                json!({"type": "object", "properties": {"content": {"type": "string"}, "path": {"type": "string"}},
                       "required": ["content", "path"]}),
            ),
            tool(
                "fs",
                "list_directory",
                "Get a detailed listing of all files and directories in a specified path.",
                json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
            ),
            tool(
                "time",
                "get_current_time",
                "Get the current time in a specific timezone.",
                json!({"type": "object", "properties": {
                    "timezone": {"type": "string", "description": "IANA timezone name, e.g. Europe/Paris"}
                }, "required": ["timezone"]}),
            ),
            tool(
                "time",
                "convert_time",
                "Convert time between timezones.",
                json!({"type": "object", "properties": {
                    "source_timezone": {"type": "string"}, "target_timezone": {"type": "string"},
                    "time": {"type": "string", "description": "Time in 24-hour format (HH:MM)"}
                }, "required": ["source_timezone", "target_timezone", "time"]}),
            ),
            tool(
                "echo",
                "echo",
                "Echo back the message it is given.",
                json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}),
            ),
        ]
    }

    fn entries(catalogue: &[(Binding, ToolDef)]) -> Vec<Entry<'_>> {
        catalogue.iter().map(|(binding, tool)| Entry { binding, tool }).collect()
    }

    fn ranked(query: &str) -> Vec<String> {
        let catalogue = catalogue();
        search(&entries(&catalogue), query, 10).into_iter().map(|hit| hit.tool).collect()
    }

    #[test]
    fn tools_with_more_of_the_query_rank_above_tools_with_one_word_many_times() {
        let tool = |ns: &str, id: &str, description: &str| {
            let name = format!("{ns}__{id}");
            let binding = Binding { namespace: ns.into(), identifier: id.into(), tool: name.clone() };
            let schema = json!({"type": "object", "properties": {"customer_id": {"type": "string",
                "description": "The customer's id"}, "since": {"type": "string",
                "description": "Only what was created after this."}}});
            (binding, ToolDef::new(name, description, schema))
        };
        let catalogue = vec![
            tool("customers", "get_customer", "Get a customer: the customer record of one customer."),
            tool("customers", "update_customer", "Update a customer's record for the customer."),
            tool("customers", "delete_customer", "Delete a customer and every customer note."),
            tool(
                "billing",
                "create_invoice",
                "Create an invoice. Returns the new invoice with its id and URL; \
                fails with a conflict when one with the same name exists in the same parent.",
            ),
            tool("billing", "delete_invoice", "Delete an invoice."),
            tool(
                "ledger",
                "create_invoice",
                "Create a draft invoice in the ledger, with its lines, taxes, \
                currency and due date; the ledger numbers it.",
            ),
        ];
        let hits = search(&entries(&catalogue), "create an invoice for a customer", 3);
        let names: Vec<&str> = hits.iter().map(|h| h.tool.as_str()).collect();
        assert_eq!(&names[..2], ["billing__create_invoice", "ledger__create_invoice"], "{hits:#?}");
    }

    #[test]
    fn words_split_on_case_and_separators() {
        for name in ["search_issues", "searchIssues", "search-issues", "SearchIssues", "search issues"] {
            assert_eq!(words(name), ["search", "issu"], "{name}");
        }
        assert_eq!(split_words("HTTPServer2go"), ["HTTP", "Server2go"]);
        assert_eq!(split_words("getURLForID"), ["get", "URL", "For", "ID"]);
    }

    #[test]
    fn stems_meet_across_inflections() {
        for (a, b) in
            [("issues", "issue"), ("files", "file"), ("directories", "directory"), ("listing", "list")]
        {
            assert_eq!(stem(a), stem(b), "{a} / {b}");
        }
        assert_eq!(stem("created"), stem("create"));
        assert_eq!(stem("writes"), stem("write"));
        assert_eq!(stem("class"), "class");
        assert_eq!(stem("status"), "status");
    }

    #[test]
    fn query_keeps_multi_word_names_whole() {
        assert_eq!(query_terms("search_issues"), ["search", "issu", "search_issues"]);
        assert_eq!(query_terms("how to read a file"), ["read", "fil"]);
        assert_eq!(query_terms("the"), ["the"]);
    }

    #[test]
    fn ranks_by_relevance() {
        assert_eq!(ranked("read file")[0], "fs__read_file");
        assert_eq!(ranked("create issue")[0], "github__create_issue");
        assert_eq!(ranked("search issues")[0], "github__search_issues");
        assert_eq!(ranked("current time")[0], "time__get_current_time");
        assert_eq!(ranked("convert timezone")[0], "time__convert_time");
        assert_eq!(ranked("list directory contents")[0], "fs__list_directory");
        assert_eq!(ranked("echo")[0], "echo__echo");
    }

    #[test]
    fn ranking_order_for_a_broad_query() {
        // Both issue tools, the search one first (its name says "search"), and nothing else.
        assert_eq!(ranked("search issues"), ["github__search_issues", "github__create_issue"]);
        // Everything about files: the two named for files first (the shorter document a little ahead), then the
        // one whose description only mentions files; tools without the word are left out.
        assert_eq!(ranked("file"), ["fs__write_file", "fs__read_file", "fs__list_directory"]);
    }

    #[test]
    fn exact_names_rank_first() {
        assert_eq!(ranked("write_file")[0], "fs__write_file");
        assert_eq!(ranked("fs__list_directory")[0], "fs__list_directory");
        assert_eq!(ranked("tools.time.convert_time")[0], "time__convert_time");
    }

    #[test]
    fn camel_case_queries_match_snake_case_names() {
        assert_eq!(ranked("getCurrentTime")[0], "time__get_current_time");
        assert_eq!(ranked("create-issue")[0], "github__create_issue");
    }

    #[test]
    fn parameter_names_and_descriptions_are_searched() {
        // Only in a parameter name.
        assert_eq!(ranked("perPage"), ["github__search_issues"]);
        // Only in a parameter description.
        assert_eq!(ranked("IANA"), ["time__get_current_time"]);
    }

    #[test]
    fn no_match_gives_nothing_and_limit_applies() {
        assert!(ranked("kubernetes").is_empty());
        let catalogue = catalogue();
        assert_eq!(search(&entries(&catalogue), "time", 1).len(), 1);
        assert!(search(&entries(&catalogue), "time", 0).is_empty());
    }

    #[test]
    fn empty_query_browses_by_name() {
        let catalogue = catalogue();
        let hits = search(&entries(&catalogue), "  ", 3);
        let tools: Vec<&str> = hits.iter().map(|h| h.tool.as_str()).collect();
        assert_eq!(tools, ["echo__echo", "fs__list_directory", "fs__read_file"]);
        assert!(hits.iter().all(|h| h.score == 0.0));
    }

    #[test]
    fn ties_go_by_public_name() {
        let same = |name: &str| {
            let binding =
                Binding { namespace: "n".into(), identifier: name.into(), tool: format!("n__{name}") };
            (binding, ToolDef::new(format!("n__{name}"), "Does the thing.", json!({"type": "object"})))
        };
        let catalogue = vec![same("zeta"), same("alpha"), same("mid")];
        let hits = search(&entries(&catalogue), "thing", 10);
        let tools: Vec<&str> = hits.iter().map(|h| h.tool.as_str()).collect();
        assert_eq!(tools, ["n__alpha", "n__mid", "n__zeta"]);
        assert!(hits[0].score > 0.0 && hits[0].score == hits[2].score);
    }

    #[test]
    fn hits_carry_path_summary_and_signature() {
        let catalogue = catalogue();
        let hit = search(&entries(&catalogue), "search_issues", 1).remove(0);
        assert_eq!(hit.tool, "github__search_issues");
        assert_eq!(hit.path, "tools.github.search_issues");
        assert_eq!(hit.description, "Search issues and pull requests across GitHub repositories.");
        assert_eq!(
            hit.signature,
            r#"tools.github.search_issues({query: string, perPage?: number, sort?: "comments"|"created"|"updated"})"#
        );
        let json = serde_json::to_value(&hit).expect("serializes");
        assert_eq!(json["path"], "tools.github.search_issues");
        assert!(json["score"].as_f64().is_some_and(|s| s > 0.0));
    }

    #[test]
    fn signatures_are_compact() {
        let catalogue = catalogue();
        let all = entries(&catalogue);
        let signature_of = |name: &str| signature(all.iter().find(|e| e.tool.name == name).expect("listed"));
        assert_eq!(signature_of("fs__read_file"), "tools.fs.read_file({path: string, head?: number})");
        assert_eq!(
            signature_of("github__create_issue"),
            "tools.github.create_issue({owner: string, repo: string, title: string, body?: string, labels?: string[]})"
        );
        let binding = Binding { namespace: "x".into(), identifier: "y".into(), tool: "x__y".into() };
        let odd = ToolDef::new(
            "x__y",
            "",
            json!({"type": "object", "properties": {
                "a-b": {"type": ["string", "null"]},
                "filter": {"type": "object", "properties": {"q": {}}},
                "id": {"$ref": "#/$defs/Id"},
                "kinds": {"type": "array", "items": {"enum": ["x", "y"]}},
                "v": {}
            }, "$defs": {"Id": {"type": "integer"}}}),
        );
        assert_eq!(
            signature(&Entry { binding: &binding, tool: &odd }),
            r#"tools.x.y({"a-b"?: string|null, filter?: object, id?: number, kinds?: ("x"|"y")[], v?: any})"#
        );
        let none = ToolDef::new("x__y", "", json!({"type": "object"}));
        assert_eq!(signature(&Entry { binding: &binding, tool: &none }), "tools.x.y()");
    }

    #[test]
    fn summaries_take_the_first_sentence_or_line() {
        assert_eq!(summary("Read a file. Then more."), "Read a file.");
        assert_eq!(summary("First line\nSecond line."), "First line");
        assert_eq!(summary("Use a tz, e.g. UTC. Second."), "Use a tz, e.g. UTC.");
        assert_eq!(summary("Version 1.2 is out"), "Version 1.2 is out");
        let long = "word ".repeat(60);
        let cut = summary(&long);
        assert!(cut.ends_with('…'));
        assert!(cut.chars().count() <= SUMMARY_CHARS);
        assert_eq!(summary(""), "");
    }

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "a wall-clock budget for plain synchronous code, no tokio clock"
    )]
    fn a_thousand_tools_search_quickly() {
        let catalogue: Vec<(Binding, ToolDef)> = (0..1000)
            .map(|i| {
                let ns = format!("backend{}", i % 20);
                let id = format!("do_thing_{i}");
                let binding = Binding { namespace: ns.clone(), identifier: id.clone(), tool: format!("{ns}__{id}") };
                let def = ToolDef::new(
                    format!("{ns}__{id}"),
                    format!("Performs operation number {i} on records, files and accounts of the service."),
                    json!({"type": "object", "properties": {"recordId": {"type": "string", "description": "The record"},
                           "limit": {"type": "integer"}}}),
                );
                (binding, def)
            })
            .collect();
        let all = entries(&catalogue);
        let started = Instant::now();
        let hits = search(&all, "do_thing_517 record", 5);
        let elapsed = started.elapsed();
        assert_eq!(hits[0].tool, "backend17__do_thing_517");
        // Generous for a slow, busy debug build; the point is that it is not quadratic.
        assert!(elapsed.as_millis() < 2000, "{elapsed:?}");
    }
}
