//! The database tools (`database_tools: true`), after the SQLite server of the MCP Sandbox guide:
//! `list_tables`, `describe_table`, `read_query` (also as `execute_sql_query`) and `write_query`.

use mcpgate_core::ToolDef;
use serde_json::json;

/// Every name the database tools use.
pub const NAMES: &[&str] =
    &["list_tables", "describe_table", "read_query", "execute_sql_query", "write_query"];

/// One database tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// `list_tables`
    ListTables,
    /// `describe_table`
    DescribeTable,
    /// `read_query` / `execute_sql_query`
    ReadQuery,
    /// `write_query`, offered only when writes are allowed.
    WriteQuery,
}

impl Preset {
    /// The tool called `name`, if the backend offers it.
    pub fn named(name: &str, read_only: bool) -> Option<Self> {
        match name {
            "list_tables" => Some(Self::ListTables),
            "describe_table" => Some(Self::DescribeTable),
            "read_query" | "execute_sql_query" => Some(Self::ReadQuery),
            "write_query" if !read_only => Some(Self::WriteQuery),
            _ => None,
        }
    }
}

/// The tools as listed to clients.
pub fn tool_defs(read_only: bool) -> Vec<ToolDef> {
    let reading = json!({ "readOnlyHint": true, "idempotentHint": true, "openWorldHint": false });
    let query_schema = |what: &str| {
        json!({
            "type": "object",
            "properties": { "query": { "type": "string", "description": what } },
            "required": ["query"],
            "additionalProperties": false
        })
    };
    let mut list = ToolDef::new(
        "list_tables",
        "List the tables of the database.",
        json!({ "type": "object", "properties": {}, "additionalProperties": false }),
    );
    list.annotations = Some(reading.clone());
    let mut describe = ToolDef::new(
        "describe_table",
        "Describe a table's columns: name, type, whether it may be null, default value, primary key.",
        json!({
            "type": "object",
            "properties": {
                "table_name": { "type": "string", "description": "Name of the table (schema.table for a table \
                                outside the default schema)" }
            },
            "required": ["table_name"],
            "additionalProperties": false
        }),
    );
    describe.annotations = Some(reading.clone());
    let read_description =
        "Run one read-only SQL statement (SELECT, WITH, VALUES, EXPLAIN) and return its rows.";
    let mut read = ToolDef::new("read_query", read_description, query_schema("One read-only SQL statement"));
    read.annotations = Some(reading.clone());
    let mut execute =
        ToolDef::new("execute_sql_query", read_description, query_schema("One read-only SQL statement"));
    execute.annotations = Some(reading);
    let mut tools = vec![list, describe, read, execute];
    if !read_only {
        let mut write = ToolDef::new(
            "write_query",
            "Run one SQL statement that changes the database (INSERT, UPDATE, DELETE, CREATE, …) and return \
             the number of rows affected.",
            query_schema("One SQL statement that changes data or schema"),
        );
        write.annotations =
            Some(json!({ "readOnlyHint": false, "destructiveHint": true, "openWorldHint": false }));
        tools.push(write);
    }
    tools
}
