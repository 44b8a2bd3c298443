//! PostgreSQL: read-only mode and the statement timeout are the server's own settings on every connection
//! (`default_transaction_read_only`, `statement_timeout`), so the server enforces them and cancels a
//! statement that runs too long (SQLSTATE 57014). A statement whose call is cut sooner (the call's deadline,
//! a cancellation) is cancelled on the server by the pool ([`pool`]) before its connection is freed.
//!
//! Parameters: sqlx sends binary values with declared types, and caches a prepared statement by its text, so
//! arguments are bound as the types the server inferred for each placeholder: booleans, integers, floats,
//! text and JSON. A placeholder of another type (`date`, `numeric`, `uuid`, …) takes `NULL` only; give it
//! text with a cast in the query: `$1::text::date`.
//!
//! Values come back in binary and are decoded for the common types (booleans, integers, floats, numeric,
//! text, JSON, bytea as base64, uuid, date, time, timestamp, interval, enums, arrays of the simple types);
//! anything else reads `<TYPE>` — cast it to text in the query to see it.

use std::{str::FromStr, time::Duration};

use base64::Engine;
use futures::TryStreamExt;
use mcpgate_config::SqlBackend;
use serde_json::Value;
use sqlx::{
    Arguments, AssertSqlSafe, Column, Connection, Decode, Either, Executor, Postgres, Row, SqlSafeStr,
    Statement, TypeInfo, ValueRef,
    postgres::{
        PgArguments, PgConnectOptions, PgConnection, PgRow, PgTypeInfo, PgTypeKind, PgValueRef,
        types::PgInterval,
    },
    types::Json,
};

use self::pool::{Lease, Pool};
use super::{
    Access, DbError, Limits,
    render::{Output, Rows},
};

mod pool;

/// Time the client waits past `statement_timeout` for the server's own cancellation before giving up on the
/// connection.
const GRACE: Duration = Duration::from_secs(2);

/// The pool of one PostgreSQL backend.
pub struct PgDb {
    pool: Pool,
    limits: Limits,
}

impl PgDb {
    /// Open the pool (one connection now, to fail early on a wrong URL or password).
    pub async fn connect(url: &str, config: &SqlBackend, limits: Limits) -> Result<Self, String> {
        let shown = super::redact_url(url);
        let options = PgConnectOptions::from_str(url).map_err(|e| format!("url {shown}: {e}"))?;
        let timeout_ms = limits.statement_timeout.as_millis().max(1).to_string();
        let mut settings = vec![("statement_timeout", timeout_ms)];
        if config.read_only {
            settings.push(("default_transaction_read_only", "on".to_owned()));
        }
        let options = options.application_name("mcpgate").options(settings);
        let pool = Pool::open(options, config.max_connections, limits.acquire_timeout())
            .await
            .map_err(|e| format!("cannot connect to {shown}: {e}"))?;
        Ok(Self { pool, limits })
    }

    /// Run `work` on `lease`, waiting a little past the statement timeout for the server to cancel; work the
    /// server did not stop in time is cut, and the lease stops it.
    async fn timed<T>(
        &self,
        lease: &mut Lease,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let limit = self.limits.statement_timeout;
        tokio::time::timeout(limit + GRACE, lease.run(work)).await.unwrap_or(Err(DbError::Timeout(limit)))
    }

    /// Run one statement with `args` bound to its placeholders. [`Access::ReadOnly`] runs it in a
    /// `READ ONLY` transaction that is rolled back, so not even a setting it changes survives.
    pub async fn run(&self, sql: &str, args: &[Value], access: Access) -> Result<Output, DbError> {
        let max_rows = self.limits.max_rows;
        let mut lease = self.pool.acquire().await?;
        self.timed(&mut lease, async |conn: &mut PgConnection| {
            if access == Access::Configured {
                return run_statement(conn, sql, args, max_rows).await;
            }
            let mut tx = conn.begin_with("BEGIN READ ONLY").await.map_err(classify)?;
            let output = run_statement(&mut tx, sql, args, max_rows).await;
            tx.rollback().await.map_err(classify)?;
            output
        })
        .await
    }

    /// The tables and views outside the system schemas; schema-qualified outside `public`.
    pub async fn list_tables(&self) -> Result<Output, DbError> {
        self.run(
            "SELECT (CASE WHEN table_schema = 'public' THEN table_name \
                          ELSE table_schema || '.' || table_name END)::text AS table_name \
             FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_schema NOT LIKE 'pg\\_%' \
             ORDER BY 1",
            &[],
            Access::ReadOnly,
        )
        .await
    }

    /// The columns of `table` (`schema.table`, or a table of the current schema); names are bound.
    pub async fn describe_table(&self, table: &str) -> Result<Output, DbError> {
        let (schema, name) = match table.rsplit_once('.') {
            Some((schema, name)) => (Value::String(schema.to_owned()), name),
            None => (Value::Null, table),
        };
        let output = self
            .run(
                "SELECT c.column_name::text AS column_name, c.data_type::text AS data_type, \
                        c.is_nullable::text AS nullable, c.column_default::text AS column_default, \
                        CASE WHEN EXISTS ( \
                            SELECT 1 FROM information_schema.table_constraints tc \
                            JOIN information_schema.key_column_usage k \
                              ON k.constraint_schema = tc.constraint_schema \
                             AND k.constraint_name = tc.constraint_name \
                            WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = c.table_schema \
                              AND tc.table_name = c.table_name AND k.column_name = c.column_name) \
                        THEN 'YES' ELSE 'NO' END AS primary_key \
                 FROM information_schema.columns c \
                 WHERE c.table_schema::text = coalesce($1::text, current_schema()::text) \
                   AND c.table_name::text = $2::text \
                 ORDER BY c.ordinal_position",
                &[schema, Value::String(name.to_owned())],
                Access::ReadOnly,
            )
            .await?;
        match output {
            Output::Rows(rows) if rows.rows.is_empty() => {
                Err(DbError::Sql(format!("no table named {table:?}")))
            }
            other => Ok(other),
        }
    }

    /// How many parameters the statement takes, as the server sees it.
    pub async fn parameter_count(&self, sql: &str) -> Result<usize, DbError> {
        let mut lease = self.pool.acquire().await?;
        self.timed(&mut lease, async |conn: &mut PgConnection| {
            let statement =
                conn.prepare(AssertSqlSafe(sql.to_owned()).into_sql_str()).await.map_err(classify)?;
            Ok(parameter_types(&statement).len())
        })
        .await
    }

    /// `SELECT 1`, within a few seconds.
    pub async fn ping(&self) -> Result<(), DbError> {
        let limit = self.limits.statement_timeout.min(Duration::from_secs(5));
        tokio::time::timeout(limit, async {
            let mut lease = self.pool.acquire().await?;
            lease
                .run(async |conn: &mut PgConnection| {
                    conn.execute("SELECT 1").await.map(drop).map_err(classify)
                })
                .await
        })
        .await
        .unwrap_or(Err(DbError::Timeout(limit)))
    }

    /// Close every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn parameter_types(statement: &sqlx::postgres::PgStatement) -> Vec<PgTypeInfo> {
    match statement.parameters() {
        Some(Either::Left(types)) => types.to_vec(),
        _ => Vec::new(),
    }
}

async fn run_statement(
    conn: &mut PgConnection,
    sql: &str,
    args: &[Value],
    max_rows: usize,
) -> Result<Output, DbError> {
    // The text is the config's declared query or the argument of read_query / write_query, whose purpose is
    // to run SQL; the connection's and transaction's read-only mode, not this text, decides what it may do.
    // The extended protocol also refuses more than one statement.
    let statement = conn.prepare(AssertSqlSafe(sql.to_owned()).into_sql_str()).await.map_err(classify)?;
    let types = parameter_types(&statement);
    if types.len() != args.len() {
        return Err(DbError::Sql(format!(
            "the statement has {} parameter(s) and {} value(s) were given",
            types.len(),
            args.len()
        )));
    }
    let arguments = bind(args, &types).map_err(DbError::Sql)?;
    let columns: Vec<String> = statement.columns().iter().map(|c| c.name().to_owned()).collect();
    if columns.is_empty() {
        let done = statement.query_with(arguments).execute(&mut *conn).await.map_err(classify)?;
        return Ok(Output::Affected(done.rows_affected()));
    }
    let mut stream = statement.query_with(arguments).fetch(&mut *conn);
    let mut rows = Rows { columns, ..Rows::default() };
    while let Some(row) = stream.try_next().await.map_err(classify)? {
        if rows.rows.len() == max_rows {
            rows.truncated = true;
            break;
        }
        rows.rows.push(decode_row(&row));
    }
    Ok(Output::Rows(rows))
}

/// Bind each argument as the type the server inferred for its placeholder.
fn bind(args: &[Value], types: &[PgTypeInfo]) -> Result<PgArguments, String> {
    let mut arguments = PgArguments::default();
    for (i, (value, ty)) in args.iter().zip(types).enumerate() {
        let n = i + 1;
        let type_name = ty.name();
        let wrong = |what: &str| format!("parameter ${n} is {type_name}: {what}, not {value}");
        let integer = || match value {
            Value::Number(n) => {
                n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            }
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let float = || match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let added = match (type_name, value) {
            (_, Value::Null) => match type_name {
                "BOOL" => arguments.add(None::<bool>),
                "INT2" => arguments.add(None::<i16>),
                "INT4" => arguments.add(None::<i32>),
                "INT8" => arguments.add(None::<i64>),
                "FLOAT4" => arguments.add(None::<f32>),
                "FLOAT8" => arguments.add(None::<f64>),
                "JSON" | "JSONB" => arguments.add(None::<Json<Value>>),
                // A NULL has no bytes to misread: its declared type does not matter to the prepared statement.
                _ => arguments.add(None::<String>),
            },
            ("BOOL", _) => match value {
                Value::Bool(b) => arguments.add(*b),
                Value::String(s) if s == "true" || s == "false" => arguments.add(s == "true"),
                _ => return Err(wrong("a boolean expected")),
            },
            ("INT2", _) => match integer().and_then(|i| i16::try_from(i).ok()) {
                Some(i) => arguments.add(i),
                None => return Err(wrong("an integer from -32768 to 32767 expected")),
            },
            ("INT4", _) => match integer().and_then(|i| i32::try_from(i).ok()) {
                Some(i) => arguments.add(i),
                None => return Err(wrong("a 32-bit integer expected")),
            },
            ("INT8", _) => match integer() {
                Some(i) => arguments.add(i),
                None => return Err(wrong("an integer expected")),
            },
            ("FLOAT4", _) => match float() {
                Some(f) => arguments.add(f as f32),
                None => return Err(wrong("a number expected")),
            },
            ("FLOAT8", _) => match float() {
                Some(f) => arguments.add(f),
                None => return Err(wrong("a number expected")),
            },
            ("JSON" | "JSONB", _) => arguments.add(Json(value.clone())),
            ("TEXT" | "VARCHAR" | "CHAR" | "NAME" | "CITEXT" | "UNKNOWN", _) => match value {
                Value::String(s) => arguments.add(s.clone()),
                other => arguments.add(other.to_string()),
            },
            _ => {
                return Err(format!(
                    "parameter ${n} is {type_name}, which is bound from text only through a cast: write \
                     ${n}::text::{} in the query",
                    type_name.to_ascii_lowercase()
                ));
            }
        };
        added.map_err(|e| format!("cannot bind parameter ${n}: {e}"))?;
    }
    Ok(arguments)
}

fn decode_row(row: &PgRow) -> Vec<Value> {
    (0..row.columns().len())
        .map(|i| match row.try_get_raw(i) {
            Ok(value) => decode_value(value),
            Err(e) => Value::String(format!("<{e}>")),
        })
        .collect()
}

/// A JSON number, or the float's text when JSON has no number for it (NaN, infinities).
pub(crate) fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map(Value::Number).unwrap_or_else(|| Value::String(f.to_string()))
}

fn decode_value(value: PgValueRef<'_>) -> Value {
    if value.is_null() {
        return Value::Null;
    }
    let info = value.type_info().into_owned();
    let type_name = info.name();
    let decoded: Result<Value, sqlx::error::BoxDynError> = match type_name {
        "BOOL" => <bool as Decode<Postgres>>::decode(value).map(Value::Bool),
        "INT2" => <i16 as Decode<Postgres>>::decode(value).map(Value::from),
        "INT4" => <i32 as Decode<Postgres>>::decode(value).map(Value::from),
        "INT8" => <i64 as Decode<Postgres>>::decode(value).map(Value::from),
        "OID" => <sqlx::postgres::types::Oid as Decode<Postgres>>::decode(value).map(|o| Value::from(o.0)),
        "FLOAT4" => <f32 as Decode<Postgres>>::decode(value).map(|f| float(f64::from(f))),
        "FLOAT8" => <f64 as Decode<Postgres>>::decode(value).map(float),
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "CITEXT" | "UNKNOWN" => {
            <String as Decode<Postgres>>::decode(value).map(Value::String)
        }
        "\"CHAR\"" => {
            <i8 as Decode<Postgres>>::decode(value).map(|c| Value::String(char::from(c as u8).to_string()))
        }
        "JSON" | "JSONB" => <Value as Decode<Postgres>>::decode(value),
        "BYTEA" => <Vec<u8> as Decode<Postgres>>::decode(value)
            .map(|b| Value::String(base64::engine::general_purpose::STANDARD.encode(b))),
        "VOID" => Ok(Value::Null),
        "INTERVAL" => <PgInterval as Decode<Postgres>>::decode(value).map(|i| Value::String(interval(&i))),
        "TEXT[]" | "VARCHAR[]" | "NAME[]" | "CHAR[]" => {
            <Vec<Option<String>> as Decode<Postgres>>::decode(value).map(|v| serde_json::json!(v))
        }
        "INT2[]" => <Vec<Option<i16>> as Decode<Postgres>>::decode(value).map(|v| serde_json::json!(v)),
        "INT4[]" => <Vec<Option<i32>> as Decode<Postgres>>::decode(value).map(|v| serde_json::json!(v)),
        "INT8[]" => <Vec<Option<i64>> as Decode<Postgres>>::decode(value).map(|v| serde_json::json!(v)),
        "FLOAT8[]" => <Vec<Option<f64>> as Decode<Postgres>>::decode(value)
            .map(|v| Value::Array(v.into_iter().map(|f| f.map_or(Value::Null, float)).collect())),
        "BOOL[]" => <Vec<Option<bool>> as Decode<Postgres>>::decode(value).map(|v| serde_json::json!(v)),
        "JSONB[]" | "JSON[]" => <Vec<Value> as Decode<Postgres>>::decode(value).map(Value::Array),
        "UUID" | "NUMERIC" | "DATE" | "TIME" | "TIMESTAMP" | "TIMESTAMPTZ" => value
            .as_bytes()
            .and_then(|bytes| binary::decode(type_name, bytes).ok_or_else(|| "malformed value".into()))
            .map(Value::String),
        _ if matches!(info.kind(), PgTypeKind::Enum(_)) => {
            value.as_str().map(|s| Value::String(s.to_owned()))
        }
        _ => Ok(Value::String(format!("<{type_name}>"))),
    };
    decoded.unwrap_or_else(|e| Value::String(format!("<{type_name}: {e}>")))
}

fn interval(i: &PgInterval) -> String {
    let micros = i.microseconds.unsigned_abs();
    let sign = if i.microseconds < 0 { "-" } else { "" };
    let (secs, frac) = (micros / 1_000_000, micros % 1_000_000);
    let mut text = format!(
        "{} mons {} days {sign}{:02}:{:02}:{:02}",
        i.months,
        i.days,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        text.push_str(&format!(".{frac:06}"));
    }
    text
}

/// Binary wire formats sqlx decodes only behind features this crate does not enable.
mod binary {
    /// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
    const PG_EPOCH_DAYS: i64 = 10_957;
    const DAY_MICROS: i64 = 86_400_000_000;

    pub fn decode(type_name: &str, bytes: &[u8]) -> Option<String> {
        let int = |n: usize| bytes.get(..n).filter(|_| bytes.len() == n);
        Some(match type_name {
            "UUID" => {
                let b = int(16)?;
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
            }
            "DATE" => match i32::from_be_bytes(int(4)?.try_into().ok()?) {
                i32::MAX => "infinity".to_owned(),
                i32::MIN => "-infinity".to_owned(),
                days => date(i64::from(days) + PG_EPOCH_DAYS),
            },
            "TIME" => time(i64::from_be_bytes(int(8)?.try_into().ok()?)),
            "TIMESTAMP" | "TIMESTAMPTZ" => match i64::from_be_bytes(int(8)?.try_into().ok()?) {
                i64::MAX => "infinity".to_owned(),
                i64::MIN => "-infinity".to_owned(),
                micros => {
                    let (days, rest) = (micros.div_euclid(DAY_MICROS), micros.rem_euclid(DAY_MICROS));
                    let zone = if type_name == "TIMESTAMPTZ" { "Z" } else { "" };
                    format!("{}T{}{zone}", date(days + PG_EPOCH_DAYS), time(rest))
                }
            },
            "NUMERIC" => numeric(bytes)?,
            _ => return None,
        })
    }

    /// `YYYY-MM-DD` of a day count from 1970-01-01 (proleptic Gregorian; Howard Hinnant's `civil_from_days`).
    fn date(days: i64) -> String {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!("{year:04}-{month:02}-{day:02}")
    }

    /// `HH:MM:SS[.ffffff]` of microseconds since midnight.
    fn time(micros: i64) -> String {
        let (secs, frac) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
        let mut text = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        if frac != 0 {
            text.push_str(&format!(".{frac:06}"));
            while text.ends_with('0') {
                text.pop();
            }
        }
        text
    }

    /// NUMERIC's binary form: digit count, weight, sign, display scale, then base-10000 digits.
    fn numeric(bytes: &[u8]) -> Option<String> {
        let word = |i: usize| bytes.get(i * 2..i * 2 + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let (ndigits, weight, sign, scale) =
            (word(0)? as usize, word(1)? as i16, word(2)?, word(3)? as usize);
        match sign {
            0xC000 => return Some("NaN".to_owned()),
            0xD000 => return Some("Infinity".to_owned()),
            0xF000 => return Some("-Infinity".to_owned()),
            _ => {}
        }
        let digits: Vec<u16> = (0..ndigits).map(|i| word(4 + i)).collect::<Option<_>>()?;
        let digit =
            |index: i64| usize::try_from(index).ok().and_then(|i| digits.get(i)).copied().unwrap_or(0);
        let weight = i64::from(weight);
        let mut text = String::new();
        if sign == 0x4000 {
            text.push('-');
        }
        if weight < 0 {
            text.push('0');
        } else {
            text.push_str(&digit(0).to_string());
            for index in 1..=weight {
                text.push_str(&format!("{:04}", digit(index)));
            }
        }
        if scale > 0 {
            let mut fraction = String::new();
            for group in 1..=scale.div_ceil(4) as i64 {
                fraction.push_str(&format!("{:04}", digit(weight + group)));
            }
            fraction.truncate(scale);
            text.push('.');
            text.push_str(&fraction);
        }
        Some(text)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn dates_times_and_numerics() {
            assert_eq!(date(0), "1970-01-01");
            assert_eq!(date(PG_EPOCH_DAYS + 8766), "2024-01-01");
            assert_eq!(time(3_723_500_000), "01:02:03.5");
            // 12345.678: ndigits 3, weight 1, sign +, dscale 3, digits [1, 2345, 6780]
            let bytes: Vec<u8> =
                [3u16, 1, 0, 3, 1, 2345, 6780].iter().flat_map(|w| w.to_be_bytes()).collect();
            assert_eq!(numeric(&bytes).as_deref(), Some("12345.678"));
            // -0.05: ndigits 1, weight -1, sign -, dscale 2, digits [500]
            let bytes: Vec<u8> =
                [1u16, 0xFFFF, 0x4000, 2, 500].iter().flat_map(|w| w.to_be_bytes()).collect();
            assert_eq!(numeric(&bytes).as_deref(), Some("-0.05"));
        }
    }
}

fn classify(error: sqlx::Error) -> DbError {
    super::classify(error, "57014")
}
