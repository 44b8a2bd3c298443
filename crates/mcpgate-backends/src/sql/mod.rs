//! `kind: sql` — tools that query SQLite or PostgreSQL through one `sqlx` connection pool per backend.
//!
//! Two sorts of tools share the pool:
//! - declared queries (`tools:`): one statement from the config, its placeholders bound to the call's
//!   arguments in the order `params` names them — arguments are never spliced into SQL text;
//! - with `database_tools: true`, the database tools of the MCP Sandbox guide's SQLite server, for either
//!   database: `list_tables`, `describe_table`, `read_query` (alias `execute_sql_query`) and, only when
//!   `read_only` is `false`, `write_query`.
//!
//! Read-only is enforced by the database, not by reading SQL: read-only backends get read-only connections
//! (SQLite: opened read-only with `PRAGMA query_only`; PostgreSQL: `default_transaction_read_only`), and
//! `read_query` always runs read-only (SQLite: `query_only` for that call; PostgreSQL: a `READ ONLY`
//! transaction that is rolled back). Parsing with `sqlparser` comes first only to give a clear error.
//!
//! Results: rows become `structuredContent` (`columns`, `rows` as objects, `row_count`, `truncated`) plus an
//! aligned text table; statements without result columns give `{"rows_affected": n}`. At most `max_rows`
//! rows are fetched. Errors the database reports (syntax, constraints, read-only violations) are tool errors
//! with its message; a pool or connection failure is [`BackendError::Unavailable`]; a statement running past
//! `statement_timeout` is cancelled and is [`BackendError::Timeout`].

mod postgres;
mod preset;
mod render;
mod sqlite;
mod statement;

use std::{collections::BTreeMap, path::Path, time::Duration};

use async_trait::async_trait;
use mcpgate_config::{Problem, SqlBackend};
use mcpgate_core::{Backend, BackendError, BackendHealth, CallContext, ToolCall, ToolDef, ToolOutcome};
use serde_json::Value;

use self::{
    render::Output,
    statement::{Family, Kind},
};
use crate::template::{argument_names, expand_env};

/// The tools of one `kind: sql` backend.
pub struct SqlTools {
    name: String,
    db: Db,
    statement_timeout: Duration,
    read_only: bool,
    family: Family,
    tools: Vec<ToolDef>,
    declared: BTreeMap<String, Declared>,
    database_tools: bool,
}

/// One declared query, ready to run.
struct Declared {
    query: String,
    params: Vec<String>,
}

/// Why a statement produced no result.
#[derive(Debug)]
enum DbError {
    /// The database refused or failed the statement: its message, for the model.
    Sql(String),
    /// No connection could be had.
    Unavailable(String),
    /// The statement ran past the statement timeout and was cancelled.
    Timeout(Duration),
    /// The database cancelled the statement (PostgreSQL's `statement_timeout`, SQLite's interrupt).
    Cancelled,
}

/// Sort a sqlx error: `cancelled_code` is the database's code for a statement cancelled by its timeout
/// (PostgreSQL `57014`, SQLite `9`, `SQLITE_INTERRUPT`).
fn classify(error: sqlx::Error, cancelled_code: &str) -> DbError {
    match error {
        sqlx::Error::Database(e) if e.code().as_deref() == Some(cancelled_code) => DbError::Cancelled,
        sqlx::Error::Database(e) => DbError::Sql(e.message().to_owned()),
        sqlx::Error::PoolTimedOut => DbError::Unavailable("no database connection free in time".to_owned()),
        e @ (sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Configuration(_)) => DbError::Unavailable(e.to_string()),
        other => DbError::Sql(other.to_string()),
    }
}

/// How a statement is allowed to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Read-only whatever the backend allows (`read_query`, `list_tables`, `describe_table`).
    ReadOnly,
    /// As the backend is configured (declared queries, `write_query`).
    Configured,
}

/// The pool, by database family.
enum Db {
    Sqlite(sqlite::SqliteDb),
    Postgres(postgres::PgDb),
}

impl Db {
    async fn run(&self, sql: &str, args: &[Value], access: Access) -> Result<Output, DbError> {
        match self {
            Db::Sqlite(db) => db.run(sql, args, access).await,
            Db::Postgres(db) => db.run(sql, args, access).await,
        }
    }

    async fn list_tables(&self) -> Result<Output, DbError> {
        match self {
            Db::Sqlite(db) => db.list_tables().await,
            Db::Postgres(db) => db.list_tables().await,
        }
    }

    async fn describe_table(&self, table: &str) -> Result<Output, DbError> {
        match self {
            Db::Sqlite(db) => db.describe_table(table).await,
            Db::Postgres(db) => db.describe_table(table).await,
        }
    }

    /// How many parameters a statement takes, as the database counts them.
    async fn parameter_count(&self, sql: &str) -> Result<usize, DbError> {
        match self {
            Db::Sqlite(db) => db.parameter_count(sql).await,
            Db::Postgres(db) => db.parameter_count(sql).await,
        }
    }

    async fn ping(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(db) => db.ping().await,
            Db::Postgres(db) => db.ping().await,
        }
    }

    async fn close(&self) {
        match self {
            Db::Sqlite(db) => db.close().await,
            Db::Postgres(db) => db.close().await,
        }
    }
}

/// Settings both families share.
#[derive(Debug, Clone, Copy)]
struct Limits {
    statement_timeout: Duration,
    max_rows: usize,
}

impl Limits {
    fn of(config: &SqlBackend) -> Self {
        Self { statement_timeout: config.statement_timeout.0, max_rows: config.max_rows }
    }

    /// How long a call may wait for a free connection.
    fn acquire_timeout(&self) -> Duration {
        self.statement_timeout.max(Duration::from_secs(5))
    }
}

impl SqlTools {
    /// Open the connection pool (one connection is opened now, so a wrong URL or password fails at startup),
    /// and ask the database about each declared query's placeholders: a count that differs from `params` is
    /// an error.
    pub async fn connect(name: &str, config: &SqlBackend) -> Result<Self, String> {
        let url = expand_env(&config.url).map_err(|e| format!("url: {e}"))?;
        let family = Family::of_url(&url)
            .ok_or_else(|| format!("url {}: unknown scheme (sqlite:, postgres://)", redact_url(&url)))?;
        let limits = Limits::of(config);
        let db = match family {
            Family::Sqlite => Db::Sqlite(sqlite::SqliteDb::connect(&url, config, limits).await?),
            Family::Postgres => Db::Postgres(postgres::PgDb::connect(&url, config, limits).await?),
        };
        let mut declared = BTreeMap::new();
        let mut tools = Vec::new();
        for (tool_name, tool) in &config.tools {
            let count = match db.parameter_count(&tool.call.query).await {
                Ok(found) => found,
                Err(DbError::Sql(message)) => {
                    // The database may not hold the table yet; the statement's own error will say so per call.
                    tracing::warn!(backend = name, tool = %tool_name, %message, "declared query does not prepare");
                    tool.call.params.len()
                }
                Err(DbError::Unavailable(reason)) => return Err(reason),
                Err(DbError::Timeout(_) | DbError::Cancelled) => {
                    return Err(format!("tools.{tool_name}: preparing the query timed out"));
                }
            };
            if count != tool.call.params.len() {
                return Err(format!(
                    "tools.{tool_name}: the query has {count} placeholder(s) but params names {}",
                    tool.call.params.len()
                ));
            }
            tools.push(crate::declared::tool_def(tool_name, tool));
            declared.insert(
                tool_name.clone(),
                Declared { query: tool.call.query.clone(), params: tool.call.params.clone() },
            );
        }
        if config.database_tools {
            tools.extend(
                preset::tool_defs(config.read_only).into_iter().filter(|t| !declared.contains_key(&t.name)),
            );
        }
        Ok(Self {
            name: name.to_owned(),
            db,
            statement_timeout: limits.statement_timeout,
            read_only: config.read_only,
            family,
            tools,
            declared,
            database_tools: config.database_tools,
        })
    }

    fn failure(&self, error: DbError) -> Result<ToolOutcome, BackendError> {
        match error {
            DbError::Sql(message) => Ok(ToolOutcome::error(message)),
            DbError::Unavailable(reason) => Err(BackendError::unavailable(&self.name, reason)),
            DbError::Timeout(after) => Err(BackendError::Timeout(after)),
            DbError::Cancelled => Err(BackendError::Timeout(self.statement_timeout)),
        }
    }

    fn finish(&self, result: Result<Output, DbError>) -> Result<ToolOutcome, BackendError> {
        match result {
            Ok(output) => Ok(output.into_outcome()),
            Err(error) => self.failure(error),
        }
    }

    async fn call_declared(
        &self,
        declared: &Declared,
        arguments: &mcpgate_core::JsonObject,
    ) -> Result<ToolOutcome, BackendError> {
        let args: Vec<Value> =
            declared.params.iter().map(|p| arguments.get(p).cloned().unwrap_or(Value::Null)).collect();
        let result = self.db.run(&declared.query, &args, Access::Configured).await;
        self.finish(result)
    }

    async fn call_preset(
        &self,
        tool: preset::Preset,
        arguments: &mcpgate_core::JsonObject,
    ) -> Result<ToolOutcome, BackendError> {
        let text = |key: &str| arguments.get(key).and_then(Value::as_str);
        match tool {
            preset::Preset::ListTables => self.finish(self.db.list_tables().await),
            preset::Preset::DescribeTable => match text("table_name") {
                Some(table) => self.finish(self.db.describe_table(table).await),
                None => Ok(ToolOutcome::error("describe_table needs a string argument \"table_name\"")),
            },
            preset::Preset::ReadQuery => {
                let Some(query) = text("query") else {
                    return Ok(ToolOutcome::error("read_query needs a string argument \"query\""));
                };
                match statement::parse_one(Some(self.family), query) {
                    Err(message) => Ok(ToolOutcome::error(message)),
                    Ok(Kind::Write) => Ok(ToolOutcome::error(if self.read_only {
                        "read_query runs only read-only statements (SELECT, WITH, VALUES, EXPLAIN, SHOW); \
                         this database is read-only"
                    } else {
                        "read_query runs only read-only statements (SELECT, WITH, VALUES, EXPLAIN, SHOW); \
                         use write_query"
                    })),
                    Ok(Kind::Read) => self.finish(self.db.run(query, &[], Access::ReadOnly).await),
                }
            }
            preset::Preset::WriteQuery => {
                let Some(query) = text("query") else {
                    return Ok(ToolOutcome::error("write_query needs a string argument \"query\""));
                };
                match statement::parse_one(Some(self.family), query) {
                    Err(message) => Ok(ToolOutcome::error(message)),
                    Ok(Kind::Read) => Ok(ToolOutcome::error(
                        "write_query is for statements that change data; use read_query",
                    )),
                    Ok(Kind::Write) => self.finish(self.db.run(query, &[], Access::Configured).await),
                }
            }
        }
    }
}

/// Problems only this backend can see, all of them, with paths: the URL (scheme, unset `${VAR}`, a SQLite
/// file that does not exist), and each declared query (`params` naming an argument the input schema does
/// not declare, not exactly one statement, a write on a read-only backend, placeholders ≠ `params`). No I/O
/// beyond looking for the SQLite file.
pub fn check(path: &str, config: &SqlBackend) -> Vec<Problem> {
    let mut problems = Vec::new();
    let family = match expand_env(&config.url) {
        Err(e) => {
            problems.push(Problem::new(format!("{path}.url"), e));
            Family::of_url(&config.url)
        }
        Ok(url) => {
            let family = Family::of_url(&url);
            match family {
                None => problems.push(Problem::new(
                    format!("{path}.url"),
                    format!("{}: unknown database URL scheme (sqlite:…, postgres://…)", redact_url(&url)),
                )),
                Some(Family::Sqlite) => {
                    if let Some(file) = sqlite::file_that_must_exist(&url)
                        && !Path::new(&file).exists()
                    {
                        problems.push(Problem::new(
                            format!("{path}.url"),
                            format!(
                                "SQLite database file {file:?} does not exist (add ?mode=rwc to create it)"
                            ),
                        ));
                    }
                }
                Some(Family::Postgres) => {}
            }
            family
        }
    };
    if config.database_tools {
        for name in config.tools.keys().filter(|n| preset::NAMES.contains(&n.as_str())) {
            problems.push(Problem::new(
                format!("{path}.tools.{name}"),
                "this name is taken by the database tools (database_tools: true)",
            ));
        }
    }
    for (name, tool) in &config.tools {
        let tool_path = format!("{path}.tools.{name}");
        let declared = argument_names(&tool.input_schema);
        for (i, param) in tool.call.params.iter().enumerate() {
            if !declared.contains(param) {
                problems.push(Problem::new(
                    format!("{tool_path}.call.params[{i}]"),
                    format!("{param:?} is not an argument of the tool's input_schema"),
                ));
            }
        }
        let query_path = format!("{tool_path}.call.query");
        match statement::parse_one(family, &tool.call.query) {
            Err(message) => problems.push(Problem::new(query_path.clone(), message)),
            Ok(Kind::Write) if config.read_only => problems.push(Problem::new(
                query_path.clone(),
                "this statement writes, and the backend is read_only (set read_only: false to allow writes)",
            )),
            Ok(_) => {
                if let Some(count) = statement::placeholder_count(family, &tool.call.query)
                    && count != tool.call.params.len()
                {
                    problems.push(Problem::new(
                        query_path,
                        format!(
                            "the query has {count} placeholder(s) but params names {}",
                            tool.call.params.len()
                        ),
                    ));
                }
            }
        }
    }
    problems
}

/// A database URL fit for messages: any `user:password@` replaced by `***@`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[async_trait]
impl Backend for SqlTools {
    fn name(&self) -> &str {
        &self.name
    }

    fn may_contact_client(&self, _tool: &str) -> bool {
        false
    }

    async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
        Ok(self.tools.clone())
    }

    async fn call_tool(&self, _cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
        if let Some(declared) = self.declared.get(&call.name) {
            return self.call_declared(declared, &call.arguments).await;
        }
        match preset::Preset::named(&call.name, self.read_only).filter(|_| self.database_tools) {
            Some(tool) => self.call_preset(tool, &call.arguments).await,
            None => Err(BackendError::NotFound { kind: "tool", name: call.name }),
        }
    }

    async fn health(&self) -> BackendHealth {
        match self.db.ping().await {
            Ok(()) => BackendHealth::Up,
            Err(DbError::Sql(reason) | DbError::Unavailable(reason)) => BackendHealth::Down(reason),
            Err(DbError::Timeout(_) | DbError::Cancelled) => {
                BackendHealth::Down("SELECT 1 timed out".to_owned())
            }
        }
    }

    async fn shutdown(&self) {
        self.db.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact_url("postgres://u:s3cret@db:5432/x?a=b"), "postgres://***@db:5432/x?a=b");
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
        assert_eq!(redact_url("sqlite:data/a.db"), "sqlite:data/a.db");
    }
}
