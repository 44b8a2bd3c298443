//! Reading SQL text before it reaches the database: one statement or several, reading or writing, how many
//! placeholders. This is the first guard only — the connections themselves are read-only where it matters.

use sqlparser::{
    ast::Statement,
    dialect::{Dialect, GenericDialect, PostgreSqlDialect, SQLiteDialect},
    parser::Parser,
    tokenizer::{Token, Tokenizer},
};

/// The database family a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `sqlite:…`
    Sqlite,
    /// `postgres://…`, `postgresql://…`
    Postgres,
}

impl Family {
    /// The family of a database URL, by its scheme.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    fn dialect(family: Option<Self>) -> Box<dyn Dialect> {
        match family {
            Some(Self::Sqlite) => Box::new(SQLiteDialect {}),
            Some(Self::Postgres) => Box::new(PostgreSqlDialect {}),
            None => Box::new(GenericDialect {}),
        }
    }
}

/// What one statement does, as far as the gateway cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only reads (`SELECT`, `WITH … SELECT`, `VALUES`, `EXPLAIN` without `ANALYZE`, `SHOW`, reading `PRAGMA`s).
    Read,
    /// Anything else: writes data or schema, changes settings, controls transactions.
    Write,
}

/// Pragmas that take an argument and still only read (SQLite's introspection pragmas).
const READING_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

/// Parse `sql` as exactly one statement and say what it does. The error is for the model or the config
/// author: a parse error, no statement, or several.
pub fn parse_one(family: Option<Family>, sql: &str) -> Result<Kind, String> {
    if family == Some(Family::Sqlite) && is_reading_pragma_call(sql) {
        return Ok(Kind::Read);
    }
    let dialect = Family::dialect(family);
    let statements =
        Parser::parse_sql(dialect.as_ref(), sql).map_err(|e| format!("SQL does not parse: {e}"))?;
    match statements.as_slice() {
        [one] => Ok(kind(one)),
        [] => Err("no SQL statement given".to_owned()),
        many => Err(format!("exactly one SQL statement is allowed, found {}", many.len())),
    }
}

/// `PRAGMA table_info(users)` and the like: sqlparser takes only literal pragma arguments, SQLite also a bare
/// name. Recognised here only when the whole text is one such call, with nothing after it but `;`.
fn is_reading_pragma_call(sql: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let text = sql.trim().trim_end_matches(';').trim_end();
    let Some(rest) = text.get(..6).filter(|p| p.eq_ignore_ascii_case("pragma")).map(|_| &text[6..]) else {
        return false;
    };
    let Some((name, argument)) = rest.trim_start().split_once('(') else {
        return false;
    };
    let Some(argument) = argument.strip_suffix(')') else {
        return false;
    };
    let argument = argument.trim();
    READING_PRAGMAS.contains(&name.trim().to_ascii_lowercase().as_str())
        && !argument.is_empty()
        && argument.chars().all(|c| word(c) || c == '.')
}

fn kind(statement: &Statement) -> Kind {
    let read = match statement {
        Statement::Query(_)
        | Statement::ExplainTable { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowDatabases { .. } => true,
        // `EXPLAIN ANALYZE` runs its statement.
        Statement::Explain { analyze, statement, .. } => !*analyze && kind(statement) == Kind::Read,
        // `PRAGMA x = v` and `PRAGMA x(v)` set things (`query_only` among them) unless `x` only reads.
        Statement::Pragma { name, value, .. } => {
            value.is_none()
                || name.0.last().is_some_and(|part| {
                    let part = part.to_string().to_ascii_lowercase();
                    READING_PRAGMAS.contains(&part.trim_matches('"'))
                })
        }
        _ => false,
    };
    if read { Kind::Read } else { Kind::Write }
}

/// How many parameters the placeholders of `sql` take, numbered as SQLite does: `$n` / `?n` is parameter n,
/// a bare `?` the one after the highest so far. `None` when the text does not tokenize (the parse check
/// reports that).
pub fn placeholder_count(family: Option<Family>, sql: &str) -> Option<usize> {
    let dialect = Family::dialect(family);
    let tokens = Tokenizer::new(dialect.as_ref(), sql).tokenize().ok()?;
    let mut highest = 0;
    for token in tokens {
        if let Token::Placeholder(text) = token {
            match text.get(1..).and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => highest = highest.max(n),
                None if text == "?" => highest += 1,
                None => {}
            }
        }
    }
    Some(highest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_are_told_apart() {
        let sqlite = Some(Family::Sqlite);
        assert_eq!(parse_one(sqlite, "SELECT * FROM t WHERE a = ?"), Ok(Kind::Read));
        assert_eq!(parse_one(sqlite, "WITH x AS (SELECT 1) SELECT * FROM x"), Ok(Kind::Read));
        assert_eq!(parse_one(sqlite, "PRAGMA table_info(t)"), Ok(Kind::Read));
        assert_eq!(parse_one(sqlite, "pragma TABLE_INFO( main.t );"), Ok(Kind::Read));
        assert_eq!(parse_one(sqlite, "PRAGMA table_info('t')"), Ok(Kind::Read));
        assert!(parse_one(sqlite, "PRAGMA table_info(t); DROP TABLE t").is_err());
        assert!(parse_one(sqlite, "PRAGMA query_only(off)").is_err());
        assert_eq!(parse_one(sqlite, "PRAGMA query_only = 0"), Ok(Kind::Write));
        // Unparsable is refused too.
        assert!(parse_one(sqlite, "PRAGMA query_only = OFF").is_err());
        assert_eq!(parse_one(sqlite, "PRAGMA query_only(0)"), Ok(Kind::Write));
        assert_eq!(parse_one(sqlite, "INSERT INTO t VALUES (1)"), Ok(Kind::Write));
        assert_eq!(parse_one(sqlite, "EXPLAIN QUERY PLAN SELECT 1"), Ok(Kind::Read));
        let pg = Some(Family::Postgres);
        assert_eq!(parse_one(pg, "EXPLAIN ANALYZE DELETE FROM t"), Ok(Kind::Write));
        assert_eq!(parse_one(pg, "SET statement_timeout = 0"), Ok(Kind::Write));
        assert!(parse_one(pg, "SELECT 1; DROP TABLE t").is_err());
        assert!(parse_one(pg, "").is_err());
    }

    #[test]
    fn placeholders_are_counted() {
        assert_eq!(placeholder_count(Some(Family::Sqlite), "SELECT ? , ? WHERE '?' = ?"), Some(3));
        assert_eq!(placeholder_count(Some(Family::Postgres), "SELECT $1, $2, $1"), Some(2));
        assert_eq!(placeholder_count(Some(Family::Postgres), "SELECT '$1'"), Some(0));
        assert_eq!(placeholder_count(Some(Family::Sqlite), "SELECT ?, ?2, ?2, ?"), Some(3));
    }
}
