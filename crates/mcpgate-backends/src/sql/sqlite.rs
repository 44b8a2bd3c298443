//! SQLite: a file, or one in-memory database shared by the backend's calls.
//!
//! SQLite has no server to cancel a statement, and sqlx runs each connection's statements on a worker thread
//! that keeps stepping a statement whose caller has gone. So every call installs a progress handler on its
//! connection that aborts the statement once the call's guard is dropped — when the statement timeout fires,
//! or when the call itself is abandoned — and the connection goes back to the pool idle, not mid-statement.
//!
//! `sqlite::memory:` (and `mode=memory`) gets a pool of exactly one connection that is never closed: an
//! in-memory database lives as long as a connection to it, and one connection means every call sees the same
//! database.

use std::{
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use base64::Engine;
use futures::TryStreamExt;
use mcpgate_config::SqlBackend;
use serde_json::Value;
use sqlx::{
    Arguments, AssertSqlSafe, Column, Decode, Either, Executor, Row, SqlSafeStr, Sqlite, Statement, TypeInfo,
    ValueRef,
    pool::PoolConnection,
    sqlite::{
        SqliteArguments, SqliteConnectOptions, SqliteConnection, SqlitePool, SqlitePoolOptions, SqliteRow,
    },
};

use super::{
    Access, DbError, Limits,
    render::{Output, Rows},
};

/// Virtual-machine steps between two looks at the interrupt flag: frequent enough to stop within
/// milliseconds, rare enough to cost nothing.
const PROGRESS_STEPS: i32 = 1000;

/// The pools of one SQLite backend. Reads go to connections that are read-only for good (`query_only` set
/// when they open; files opened read-only too), writes — when the backend allows them — to a pool of their
/// own, so no call pays for switching a connection's mode. An in-memory database is the exception: it lives
/// in its one connection, which is switched per call (`toggle`).
pub struct SqliteDb {
    reads: SqlitePool,
    writes: Option<SqlitePool>,
    toggle: bool,
    limits: Limits,
}

/// The file a `sqlite:` URL opens without creating it; `None` for in-memory databases and `mode=rwc`.
pub fn file_that_must_exist(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    let creates = params.split('&').any(|p| p == "mode=rwc" || p == "mode=memory");
    (!creates && !path.is_empty() && path != ":memory:").then(|| path.to_owned())
}

fn is_memory(url: &str) -> bool {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    path == ":memory:" || path.is_empty() || params.split('&').any(|p| p == "mode=memory")
}

/// Sets the interrupt flag when dropped: whatever the connection is still running stops.
struct Interrupt(Arc<AtomicBool>);

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A connection set up for one call. Field order matters: the interrupt fires before the connection returns
/// to the pool.
struct Session {
    _interrupt: Interrupt,
    conn: PoolConnection<Sqlite>,
}

impl SqliteDb {
    /// Open the pools: see [`SqliteDb`].
    pub async fn connect(url: &str, config: &SqlBackend, limits: Limits) -> Result<Self, String> {
        let memory = is_memory(url);
        let options = SqliteConnectOptions::from_str(url).map_err(|e| format!("url {url}: {e}"))?;
        let open = |options: SqliteConnectOptions, connections: u32| async move {
            // A local file needs no liveness probe before each use; it would cost a trip to the worker.
            let pool =
                SqlitePoolOptions::new().acquire_timeout(limits.acquire_timeout()).test_before_acquire(false);
            let pool = if memory {
                pool.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
            } else {
                pool.max_connections(connections.max(1))
            };
            pool.connect_with(options).await.map_err(|e| format!("cannot open {url}: {e}"))
        };
        let read_options = if memory {
            options.clone().pragma("query_only", "ON")
        } else {
            options.clone().pragma("query_only", "ON").read_only(true)
        };
        let (reads, writes, toggle) = match (config.read_only, memory) {
            (true, _) => (open(read_options, config.max_connections).await?, None, false),
            (false, true) => {
                let pool = open(options, 1).await?;
                (pool.clone(), Some(pool), true)
            }
            (false, false) => {
                let writes = open(options, config.max_connections).await?;
                (open(read_options, config.max_connections).await?, Some(writes), false)
            }
        };
        Ok(Self { reads, writes, toggle, limits })
    }

    /// A connection with this call's interrupt handler: from the write pool only when asked and allowed.
    async fn session(&self, writable: bool) -> Result<Session, DbError> {
        let writes = self.writes.as_ref().filter(|_| writable);
        let mut conn = writes.unwrap_or(&self.reads).acquire().await.map_err(classify)?;
        let flag = Arc::new(AtomicBool::new(false));
        {
            let seen = Arc::clone(&flag);
            let mut handle = conn.lock_handle().await.map_err(classify)?;
            handle.set_progress_handler(PROGRESS_STEPS, move || !seen.load(Ordering::Relaxed));
        }
        if self.toggle {
            // The one in-memory connection: set both ways, so a writing call does not leave it writable.
            let pragma = if writes.is_some() { "PRAGMA query_only = OFF" } else { "PRAGMA query_only = ON" };
            conn.execute(pragma).await.map_err(classify)?;
        }
        Ok(Session { _interrupt: Interrupt(flag), conn })
    }

    /// Run `work` within the statement timeout.
    async fn timed<T>(&self, work: impl Future<Output = Result<T, DbError>>) -> Result<T, DbError> {
        let limit = self.limits.statement_timeout;
        tokio::time::timeout(limit, work).await.unwrap_or(Err(DbError::Timeout(limit)))
    }

    /// Run one statement with `args` bound to its placeholders.
    pub async fn run(&self, sql: &str, args: &[Value], access: Access) -> Result<Output, DbError> {
        let arguments = bind(args)?;
        let max_rows = self.limits.max_rows;
        self.timed(async {
            let mut session = self.session(access == Access::Configured).await?;
            run_statement(&mut session.conn, sql, arguments, max_rows).await.map_err(classify)
        })
        .await
    }

    /// The user tables.
    pub async fn list_tables(&self) -> Result<Output, DbError> {
        self.run(
            "SELECT name AS table_name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' \
             ESCAPE '\\' ORDER BY name",
            &[],
            Access::ReadOnly,
        )
        .await
    }

    /// The columns of one table or view; the name is bound, never spliced.
    pub async fn describe_table(&self, table: &str) -> Result<Output, DbError> {
        let name = [Value::String(table.to_owned())];
        let exists = "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?";
        match self.run(exists, &name, Access::ReadOnly).await? {
            Output::Rows(rows) if !rows.rows.is_empty() => {}
            _ => return Err(DbError::Sql(format!("no table named {table:?}"))),
        }
        self.run(
            "SELECT name AS column_name, type AS data_type, \
                    CASE \"notnull\" WHEN 0 THEN 'YES' ELSE 'NO' END AS nullable, \
                    dflt_value AS column_default, \
                    CASE WHEN pk > 0 THEN 'YES' ELSE 'NO' END AS primary_key \
             FROM pragma_table_info(?) ORDER BY cid",
            &name,
            Access::ReadOnly,
        )
        .await
    }

    /// How many parameters the statement takes, as SQLite counts them.
    pub async fn parameter_count(&self, sql: &str) -> Result<usize, DbError> {
        self.timed(async {
            let mut session = self.session(false).await?;
            let statement =
                session.conn.prepare(AssertSqlSafe(sql.to_owned()).into_sql_str()).await.map_err(classify)?;
            Ok(match statement.parameters() {
                Some(Either::Right(n)) => n,
                Some(Either::Left(types)) => types.len(),
                None => 0,
            })
        })
        .await
    }

    /// `SELECT 1`, within a few seconds.
    pub async fn ping(&self) -> Result<(), DbError> {
        let limit = self.limits.statement_timeout.min(Duration::from_secs(5));
        tokio::time::timeout(limit, async {
            let mut session = self.session(false).await?;
            session.conn.execute("SELECT 1").await.map_err(classify).map(drop)
        })
        .await
        .unwrap_or(Err(DbError::Timeout(limit)))
    }

    /// Close every connection.
    pub async fn close(&self) {
        self.reads.close().await;
        if let Some(writes) = &self.writes {
            writes.close().await;
        }
    }
}

/// Arguments by JSON type: string → TEXT, integer → INTEGER, other number → REAL, bool → INTEGER 0/1,
/// null → NULL, object or array → its JSON text.
fn bind(args: &[Value]) -> Result<SqliteArguments, DbError> {
    let mut arguments = SqliteArguments::default();
    for (i, value) in args.iter().enumerate() {
        let added = match value {
            Value::Null => arguments.add(None::<String>),
            Value::Bool(b) => arguments.add(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => arguments.add(i),
                None => arguments.add(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => arguments.add(s.clone()),
            other => arguments.add(other.to_string()),
        };
        added.map_err(|e| DbError::Sql(format!("cannot bind parameter {}: {e}", i + 1)))?;
    }
    Ok(arguments)
}

async fn run_statement(
    conn: &mut SqliteConnection,
    sql: &str,
    arguments: SqliteArguments,
    max_rows: usize,
) -> Result<Output, sqlx::Error> {
    // The text is the config's declared query or the argument of read_query / write_query, whose purpose is
    // to run SQL; the connection's read-only mode, not this text, decides what it may do.
    let statement = conn.prepare(AssertSqlSafe(sql.to_owned()).into_sql_str()).await?;
    let columns: Vec<String> = statement.columns().iter().map(|c| c.name().to_owned()).collect();
    if columns.is_empty() {
        let done = statement.query_with(arguments).execute(&mut *conn).await?;
        return Ok(Output::Affected(done.rows_affected()));
    }
    let mut stream = statement.query_with(arguments).fetch(&mut *conn);
    let mut rows = Rows { columns, ..Rows::default() };
    while let Some(row) = stream.try_next().await? {
        if rows.rows.len() == max_rows {
            rows.truncated = true;
            break;
        }
        rows.rows.push(decode_row(&row));
    }
    Ok(Output::Rows(rows))
}

fn decode_row(row: &SqliteRow) -> Vec<Value> {
    (0..row.columns().len())
        .map(|i| match row.try_get_raw(i) {
            Ok(value) => decode_value(value),
            Err(e) => Value::String(format!("<{e}>")),
        })
        .collect()
}

/// A value by its storage class: INTEGER, REAL, TEXT, BLOB (base64), NULL.
fn decode_value(value: sqlx::sqlite::SqliteValueRef<'_>) -> Value {
    if value.is_null() {
        return Value::Null;
    }
    let type_name = value.type_info().name().to_owned();
    let decoded = match type_name.as_str() {
        "INTEGER" | "BOOLEAN" => <i64 as Decode<Sqlite>>::decode(value).map(Value::from),
        "REAL" => <f64 as Decode<Sqlite>>::decode(value).map(super::postgres::float),
        "BLOB" => <Vec<u8> as Decode<Sqlite>>::decode(value)
            .map(|b| Value::String(base64::engine::general_purpose::STANDARD.encode(b))),
        _ => <String as Decode<Sqlite>>::decode(value).map(Value::String),
    };
    decoded.unwrap_or_else(|e| Value::String(format!("<{type_name}: {e}>")))
}

fn classify(error: sqlx::Error) -> DbError {
    super::classify(error, "9")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_must_exist() {
        assert_eq!(file_that_must_exist("sqlite:data/a.db"), Some("data/a.db".into()));
        assert_eq!(file_that_must_exist("sqlite://data/a.db?mode=ro"), Some("data/a.db".into()));
        assert_eq!(file_that_must_exist("sqlite:data/a.db?mode=rwc"), None);
        assert_eq!(file_that_must_exist("sqlite::memory:"), None);
        assert!(
            is_memory("sqlite::memory:") && is_memory("sqlite://x?mode=memory") && !is_memory("sqlite:a.db")
        );
    }
}
