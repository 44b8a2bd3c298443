//! How `mcpgate client` shows answers: aligned tables and plain text for people, the protocol's JSON with
//! `--json` for scripts.

use std::fmt::Write;

use mcpgate_core::{PromptDef, ResourceDef, ResourceTemplateDef, ToolDef, ToolOutcome};
use serde_json::{Map, Value, json};

/// Widest a description column gets before it is cut (with `…`).
const DESCRIPTION_WIDTH: usize = 72;

fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// `rows` as columns padded to their widest cell; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = header.iter().map(|h| h.to_uppercase()).collect::<Vec<_>>();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push('\n');
    }
    out.truncate(out.trim_end().len());
    out
}

/// The first line of a description, cut to the column's width.
fn short(description: Option<&str>) -> String {
    let line = description.unwrap_or("").lines().next().unwrap_or("").trim();
    if line.chars().count() <= DESCRIPTION_WIDTH {
        return line.to_owned();
    }
    let cut: String = line.chars().take(DESCRIPTION_WIDTH - 1).collect();
    format!("{}…", cut.trim_end())
}

pub(super) fn info(info: &Value, [tools, resources, prompts]: [usize; 3], json: bool) -> String {
    if json {
        return pretty(&json!({"server": info, "tools": tools, "resources": resources, "prompts": prompts}));
    }
    let field = |pointer: &str| info.pointer(pointer).and_then(Value::as_str).unwrap_or("?").to_owned();
    let capabilities = info.get("capabilities").and_then(Value::as_object);
    let capabilities =
        capabilities.map(|c| c.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default();
    let mut out = format!(
        "server:        {} {}\nprotocol:      {}\ncapabilities:  {}\ntools:         {tools}\nresources:     {resources}\nprompts:       {prompts}",
        field("/serverInfo/name"),
        field("/serverInfo/version"),
        field("/protocolVersion"),
        if capabilities.is_empty() { "none" } else { &capabilities },
    );
    if let Some(instructions) = info.get("instructions").and_then(Value::as_str) {
        let _ = write!(out, "\ninstructions:  {}", short(Some(instructions)));
    }
    out
}

pub(super) fn tools(tools: &[ToolDef], json: bool) -> String {
    if json {
        return pretty(&json!({ "tools": tools }));
    }
    let rows: Vec<Vec<String>> = tools
        .iter()
        .map(|t| {
            let properties = t.input_schema.get("properties").and_then(Value::as_object);
            let required = t.input_schema.get("required").and_then(Value::as_array);
            let is_required = |name: &str| required.is_some_and(|r| r.iter().any(|v| v == name));
            let args = properties.map(|p| {
                p.keys().map(|k| if is_required(k) { k.clone() } else { format!("{k}?") }).collect::<Vec<_>>()
            });
            vec![t.name.clone(), args.unwrap_or_default().join(" "), short(t.description.as_deref())]
        })
        .collect();
    table(&["name", "arguments", "description"], &rows)
}

/// A content item as text: text as it is, anything else as a one-line stand-in.
fn content(item: &Value) -> String {
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("?");
    let mime = item.get("mimeType").and_then(Value::as_str).unwrap_or("?");
    let bytes = |field: &str| item.get(field).and_then(Value::as_str).map_or(0, |d| d.len() / 4 * 3);
    match kind {
        "text" => item.get("text").and_then(Value::as_str).unwrap_or("").to_owned(),
        "image" | "audio" => format!("[{kind} {mime}, about {} bytes]", bytes("data")),
        "resource" => {
            let resource = item.get("resource").cloned().unwrap_or_default();
            let uri = resource.get("uri").and_then(Value::as_str).unwrap_or("?");
            match resource.get("text").and_then(Value::as_str) {
                Some(text) => format!("[resource {uri}]\n{text}"),
                None => format!("[resource {uri}, binary]"),
            }
        }
        "resource_link" => format!("[link {}]", item.get("uri").and_then(Value::as_str).unwrap_or("?")),
        other => format!("[{other}]"),
    }
}

pub(super) fn call(outcome: &ToolOutcome, json: bool) -> String {
    if json {
        return pretty(outcome);
    }
    let mut parts: Vec<String> = outcome.content.iter().map(content).collect();
    // Structured output stands on its own when there is no text to read.
    if let Some(structured) = outcome.structured_content.as_ref().filter(|_| parts.is_empty()) {
        parts.push(pretty(structured));
    }
    let text = parts.join("\n");
    if outcome.is_error { format!("tool error: {text}") } else { text }
}

pub(super) fn resources(resources: &[ResourceDef], templates: &[ResourceTemplateDef], json: bool) -> String {
    if json {
        return pretty(&json!({ "resources": resources, "resourceTemplates": templates }));
    }
    let concrete = resources.iter().map(|r| {
        vec![r.uri.clone(), r.mime_type.clone().unwrap_or_default(), short(r.description.as_deref())]
    });
    let templated = templates.iter().map(|t| {
        vec![t.uri_template.clone(), t.mime_type.clone().unwrap_or_default(), short(t.description.as_deref())]
    });
    table(&["uri", "type", "description"], &concrete.chain(templated).collect::<Vec<_>>())
}

pub(super) fn read(result: &Map<String, Value>, json: bool) -> String {
    if json {
        return pretty(result);
    }
    let contents = result.get("contents").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let shown = contents.iter().map(|c| match c.get("text").and_then(Value::as_str) {
        Some(text) => text.to_owned(),
        None => {
            let mime = c.get("mimeType").and_then(Value::as_str).unwrap_or("?");
            let size = c.get("blob").and_then(Value::as_str).map_or(0, |b| b.len() / 4 * 3);
            format!("[blob {mime}, about {size} bytes; --json shows it]")
        }
    });
    shown.collect::<Vec<_>>().join("\n")
}

pub(super) fn prompts(prompts: &[PromptDef], json: bool) -> String {
    if json {
        return pretty(&json!({ "prompts": prompts }));
    }
    let rows: Vec<Vec<String>> = prompts
        .iter()
        .map(|p| {
            let args =
                p.arguments.iter().map(|a| if a.required { a.name.clone() } else { format!("{}?", a.name) });
            vec![p.name.clone(), args.collect::<Vec<_>>().join(" "), short(p.description.as_deref())]
        })
        .collect();
    table(&["name", "arguments", "description"], &rows)
}

pub(super) fn prompt(result: &Map<String, Value>, json: bool) -> String {
    if json {
        return pretty(result);
    }
    let messages = result.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let shown = messages.iter().map(|m| {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("?");
        format!("{role}: {}", m.get("content").map(content).unwrap_or_default())
    });
    shown.collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_long_descriptions_are_cut() {
        let rows = vec![vec!["a".into(), "x".into()], vec!["longer".into(), "y".into()]];
        assert_eq!(table(&["name", "what"], &rows), "NAME    WHAT\na       x\nlonger  y");
        let long = "word ".repeat(40);
        let cut = short(Some(&long));
        assert!(cut.ends_with('…') && cut.chars().count() <= DESCRIPTION_WIDTH, "{cut}");
        assert_eq!(short(Some("first\nsecond")), "first");
    }

    #[test]
    fn content_other_than_text_is_named_not_dumped() {
        let image = json!({"type": "image", "mimeType": "image/png", "data": "AAAA"});
        assert_eq!(content(&image), "[image image/png, about 3 bytes]");
        let outcome = ToolOutcome {
            content: vec![json!({"type": "text", "text": "boom"})],
            is_error: true,
            ..ToolOutcome::default()
        };
        assert_eq!(call(&outcome, false), "tool error: boom");
    }
}
