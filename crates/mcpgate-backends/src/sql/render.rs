//! Results as clients see them: `structuredContent` (`columns`, `rows`, `row_count`, `truncated`) plus the
//! same rows as an aligned text table for models that read text only.

use mcpgate_core::ToolOutcome;
use serde_json::{Map, Value, json};

/// Widest cell of the text table, in characters; longer values are cut with `…` (the structured rows keep them).
const MAX_CELL: usize = 60;

/// Rows a statement returned, at most the backend's `max_rows`.
#[derive(Debug, Default)]
pub struct Rows {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// One JSON value per column, per row.
    pub rows: Vec<Vec<Value>>,
    /// Whether more rows were available than returned.
    pub truncated: bool,
}

/// What one statement produced.
#[derive(Debug)]
pub enum Output {
    /// A statement with result columns.
    Rows(Rows),
    /// A statement without: how many rows it changed.
    Affected(u64),
}

impl Output {
    /// The tool result.
    pub fn into_outcome(self) -> ToolOutcome {
        match self {
            Output::Rows(rows) => rows.into_outcome(),
            Output::Affected(n) => ToolOutcome::text(format!("{n} row{} affected", plural(n as usize)))
                .with_structured(json!({ "rows_affected": n })),
        }
    }
}

impl Rows {
    /// The tool result: structured rows plus the text table.
    pub fn into_outcome(self) -> ToolOutcome {
        let text = self.table();
        let objects: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let object: Map<String, Value> =
                    self.columns.iter().cloned().zip(row.iter().cloned()).collect();
                Value::Object(object)
            })
            .collect();
        ToolOutcome::text(text).with_structured(json!({
            "columns": self.columns,
            "rows": objects,
            "row_count": self.rows.len(),
            "truncated": self.truncated,
        }))
    }

    /// An aligned text table: header, separator, rows, and a line saying how many rows (and whether cut).
    pub fn table(&self) -> String {
        let header: Vec<String> = self.columns.iter().map(|c| cell(c)).collect();
        let body: Vec<Vec<String>> =
            self.rows.iter().map(|row| row.iter().map(|v| cell(&value_text(v))).collect()).collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &body {
            for (width, text) in widths.iter_mut().zip(row) {
                *width = (*width).max(text.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> =
                cells.iter().zip(&widths).map(|(text, width)| format!("{text:<width$}")).collect();
            padded.join(" | ").trim_end().to_owned()
        };
        let mut out = String::new();
        if !header.is_empty() {
            out.push_str(&line(&header));
            out.push('\n');
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("-+-"));
            out.push('\n');
            for row in &body {
                out.push_str(&line(row));
                out.push('\n');
            }
        }
        let n = self.rows.len();
        if self.truncated {
            out.push_str(&format!("({n} row{} shown; the result was cut at the row limit)", plural(n)));
        } else {
            out.push_str(&format!("({n} row{})", plural(n)));
        }
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One table cell: on one line, at most [`MAX_CELL`] characters.
fn cell(text: &str) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= MAX_CELL {
        flat
    } else {
        let mut cut: String = flat.chars().take(MAX_CELL - 1).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_aligned_and_cells_are_capped() {
        let rows = Rows {
            columns: vec!["id".into(), "name".into()],
            rows: vec![
                vec![json!(1), json!("Ada")],
                vec![json!(22), Value::Null],
                vec![json!(3), json!("x".repeat(100))],
            ],
            truncated: true,
        };
        let table = rows.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "id | name");
        assert!(lines[1].starts_with("---+-"), "{table}");
        assert_eq!(lines[2], "1  | Ada");
        assert_eq!(lines[3], "22 | NULL");
        assert!(lines[4].ends_with('…') && lines[4].chars().count() == 5 + MAX_CELL, "{table}");
        assert!(lines[5].contains("cut at the row limit"), "{table}");
    }
}
