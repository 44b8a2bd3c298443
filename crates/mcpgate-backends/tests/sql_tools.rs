#![allow(clippy::unwrap_used)]
//! `kind: sql` tools against real databases: SQLite files (always) and PostgreSQL (when
//! `MCPGATE_TEST_POSTGRES_URL` is set — `eval "$(scripts/postgres.sh start)"` starts a throw-away server; with
//! `MCPGATE_REQUIRE_POSTGRES=1` a missing URL fails the PostgreSQL tests instead of skipping them).
//!
//! Every scenario is one function run against both databases. Each test makes its own SQLite file or its own
//! PostgreSQL schema, so tests run in parallel.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use mcpgate_backends::sql::{SqlTools, check};
use mcpgate_config::SqlBackend;
use mcpgate_core::{Backend, BackendError, BackendHealth, CallContext, ToolCall, ToolOutcome};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Executor, PgPool, SqlitePool};

// === fixtures ===

/// Rows in the `users` table every test starts with.
const USERS: i64 = 30;

enum Admin {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One test's database: a URL for the tools, the `users` table's (qualified) name, and a side connection
/// that can always write, to set up and to check what the tools did.
struct TestDb {
    url: String,
    users: String,
    admin: Admin,
    cleanup: Option<String>,
}

impl TestDb {
    fn is_postgres(&self) -> bool {
        matches!(self.admin, Admin::Postgres(_))
    }

    /// Placeholder number `n` as this database spells it.
    fn p(&self, n: usize) -> String {
        if self.is_postgres() { format!("${n}") } else { "?".to_owned() }
    }

    async fn exec(&self, sql: &str) {
        let sql = AssertSqlSafe(sql.to_owned());
        match &self.admin {
            Admin::Sqlite(pool) => drop(pool.execute(sql).await.unwrap()),
            Admin::Postgres(pool) => drop(pool.execute(sql).await.unwrap()),
        }
    }

    async fn count(&self, table: &str) -> i64 {
        let sql = AssertSqlSafe(format!("SELECT count(*) FROM {table}"));
        match &self.admin {
            Admin::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            Admin::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        }
    }

    async fn users_left(&self) -> i64 {
        self.count(&self.users).await
    }

    /// The `users` table with [`USERS`] rows: `id` (primary key), `name` (not null), `email`, `age`.
    async fn create_users(&self) {
        let id = if self.is_postgres() { "id SERIAL PRIMARY KEY" } else { "id INTEGER PRIMARY KEY" };
        self.exec(&format!(
            "CREATE TABLE {} ({id}, name TEXT NOT NULL, email TEXT, age INTEGER DEFAULT 18)",
            self.users
        ))
        .await;
        let names = ["Ada", "Grace", "Edsger", "Barbara", "Donald", "Frances"];
        let values: Vec<String> = (0..USERS)
            .map(|i| {
                let name = names[i as usize % names.len()];
                let name = if i < names.len() as i64 { name.to_owned() } else { format!("{name}{i}") };
                format!("('{name}', '{}@example.com', {})", name.to_lowercase(), 20 + i)
            })
            .collect();
        self.exec(&format!("INSERT INTO {} (name, email, age) VALUES {}", self.users, values.join(", ")))
            .await;
    }

    /// A backend config on this database; `extra` is merged over the defaults.
    fn config(&self, extra: Value) -> SqlBackend {
        let mut config = json!({ "url": self.url });
        config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(config).unwrap()
    }

    async fn tools(&self, extra: Value) -> SqlTools {
        SqlTools::connect("db", &self.config(extra)).await.unwrap()
    }

    async fn drop_schema(self) {
        if let (Some(schema), Admin::Postgres(pool)) = (&self.cleanup, &self.admin) {
            let sql = AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            pool.execute(sql).await.unwrap();
        }
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh SQLite file with the `users` table.
async fn sqlite() -> TestDb {
    let path = std::env::temp_dir().join(format!(
        "mcpgate-sql-{}-{}.db",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&path);
    let url = format!("sqlite:{}", path.display());
    let admin = SqlitePool::connect(&format!("{url}?mode=rwc")).await.unwrap();
    let db = TestDb { url, users: "users".to_owned(), admin: Admin::Sqlite(admin), cleanup: None };
    db.create_users().await;
    db
}

/// A fresh schema named after the test on the PostgreSQL server, with `schema.users`; `None` (after a loud
/// message) when no server is configured.
async fn postgres(test: &str) -> Option<TestDb> {
    let url = mcpgate_testkit::postgres_url(test)?;
    let admin = PgPool::connect(&url).await.unwrap();
    let schema = format!("mcpgate_{test}_{}", std::process::id());
    admin.execute(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).await.unwrap();
    admin.execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).await.unwrap();
    let db = TestDb {
        url,
        users: format!("{schema}.users"),
        admin: Admin::Postgres(admin),
        cleanup: Some(schema),
    };
    db.create_users().await;
    Some(db)
}

/// Run `scenario` against SQLite and, when configured, PostgreSQL.
macro_rules! both {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test]
            async fn sqlite() {
                super::$scenario(super::sqlite().await).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(db) = super::postgres(stringify!($scenario)).await {
                    super::$scenario(db).await;
                }
            }
        }
    };
}

async fn call(tools: &SqlTools, name: &str, arguments: Value) -> Result<ToolOutcome, BackendError> {
    let arguments = arguments.as_object().cloned().unwrap_or_default();
    tools.call_tool(&CallContext::detached("t"), ToolCall { name: name.into(), arguments }).await
}

/// A call that must produce a result (successful or a tool error).
async fn outcome(tools: &SqlTools, name: &str, arguments: Value) -> ToolOutcome {
    call(tools, name, arguments).await.unwrap()
}

fn text(out: &ToolOutcome) -> &str {
    out.content[0]["text"].as_str().unwrap()
}

fn structured(out: &ToolOutcome) -> &Value {
    assert!(!out.is_error, "tool error: {}", text(out));
    out.structured_content.as_ref().unwrap()
}

async fn tool_names(tools: &SqlTools) -> Vec<String> {
    tools.list_tools().await.unwrap().into_iter().map(|t| t.name).collect()
}

// === scenarios ===

both!(declared_query_binds_arguments);
/// A declared query binds its arguments in `params` order; the result is rows plus a text table; argument
/// text that looks like SQL is only ever a value.
async fn declared_query_binds_arguments(db: TestDb) {
    let tools = db
        .tools(json!({
            "tools": {
                "find_user": {
                    "description": "Users by name, at least a given age",
                    "input_schema": {
                        "type": "object",
                        "properties": { "name": { "type": "string" }, "min_age": { "type": "integer" } },
                        "required": ["name"]
                    },
                    "call": {
                        "query": format!(
                            "SELECT id, name, email FROM {} WHERE name = {} AND age >= {} ORDER BY id",
                            db.users, db.p(1), db.p(2)
                        ),
                        "params": ["name", "min_age"]
                    }
                },
                "by_id": {
                    "input_schema": { "type": "object", "properties": { "id": {} } },
                    "call": { "query": format!("SELECT name FROM {} WHERE id = {}", db.users, db.p(1)), "params": ["id"] }
                }
            }
        }))
        .await;
    assert_eq!(tool_names(&tools).await, ["by_id", "find_user"]);
    assert!(!tools.may_contact_client("find_user"));
    assert_eq!(tools.health().await, BackendHealth::Up);

    let out = outcome(&tools, "find_user", json!({ "name": "Ada", "min_age": 0 })).await;
    let result = structured(&out);
    assert_eq!(result["columns"], json!(["id", "name", "email"]));
    assert_eq!(result["rows"], json!([{ "id": 1, "name": "Ada", "email": "ada@example.com" }]));
    assert_eq!((result["row_count"].clone(), result["truncated"].clone()), (json!(1), json!(false)));
    let table = text(&out);
    assert!(table.starts_with("id | name | email\n---+-"), "{table}");
    assert!(table.contains("1  | Ada  | ada@example.com") && table.ends_with("(1 row)"), "{table}");

    // Ada is 20: a higher minimum age finds nobody; an absent one binds NULL, which matches nothing.
    let out = outcome(&tools, "find_user", json!({ "name": "Ada", "min_age": 21 })).await;
    assert_eq!(structured(&out)["row_count"], 0);
    let out = outcome(&tools, "find_user", json!({ "name": "Ada" })).await;
    assert_eq!(structured(&out)["row_count"], 0);

    // Integers and integer-looking strings both find the row by its integer key.
    for id in [json!(3), json!("3")] {
        let out = outcome(&tools, "by_id", json!({ "id": id })).await;
        assert_eq!(structured(&out)["rows"], json!([{ "name": "Edsger" }]), "id {id}");
    }

    for attack in ["' OR '1'='1", "Ada' OR '1'='1", "1; DROP TABLE users; --", "Ada'; DROP TABLE users; --"] {
        let out = outcome(&tools, "find_user", json!({ "name": attack, "min_age": 0 })).await;
        assert_eq!(structured(&out)["row_count"], 0, "{attack}");
    }
    assert_eq!(db.users_left().await, USERS);
    db.drop_schema().await;
}

both!(row_limit_cuts_results);
/// At most `max_rows` rows come back, and the result says it was cut.
async fn row_limit_cuts_results(db: TestDb) {
    let tools = db
        .tools(json!({
            "max_rows": 5,
            "database_tools": true,
            "tools": { "all": { "call": { "query": format!("SELECT id FROM {} ORDER BY id", db.users) } } }
        }))
        .await;
    for out in [
        outcome(&tools, "all", json!({})).await,
        outcome(&tools, "read_query", json!({ "query": format!("SELECT * FROM {} ORDER BY id", db.users) }))
            .await,
    ] {
        let result = structured(&out);
        assert_eq!((result["row_count"].clone(), result["truncated"].clone()), (json!(5), json!(true)));
        assert_eq!(result["rows"][4]["id"], 5);
        assert!(text(&out).contains("cut at the row limit"), "{}", text(&out));
    }
    // Exactly max_rows rows are not "cut".
    let out = outcome(
        &tools,
        "read_query",
        json!({ "query": format!("SELECT id FROM {} WHERE id <= 5", db.users) }),
    )
    .await;
    assert_eq!(structured(&out)["truncated"], false);
    db.drop_schema().await;
}

both!(statement_timeout_cancels_and_the_pool_recovers);
/// A statement past `statement_timeout` is cancelled (a `Timeout`, promptly), and the pool's only connection
/// serves the next call.
async fn statement_timeout_cancels_and_the_pool_recovers(db: TestDb) {
    let tools =
        db.tools(json!({ "statement_timeout": "300ms", "max_connections": 1, "database_tools": true })).await;
    let forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    for _ in 0..2 {
        let started = tokio::time::Instant::now();
        let error = call(&tools, "read_query", json!({ "query": forever })).await.unwrap_err();
        assert!(matches!(error, BackendError::Timeout(_)), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());

        let started = tokio::time::Instant::now();
        let out = outcome(&tools, "read_query", json!({ "query": "SELECT 1 AS one" })).await;
        assert_eq!(structured(&out)["rows"], json!([{ "one": 1 }]));
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }
    assert_eq!(tools.health().await, BackendHealth::Up);
    db.drop_schema().await;
}

both!(read_only_backends_refuse_writes);
/// A read-only backend offers no `write_query`, and refuses writes through `read_query` and through a
/// declared statement alike — the latter is a `check()` problem, and refused by the connection if run anyway.
async fn read_only_backends_refuse_writes(db: TestDb) {
    let insert = format!("INSERT INTO {} (name) VALUES ({})", db.users, db.p(1));
    let extra = json!({
        "database_tools": true,
        "tools": {
            "add_user": {
                "input_schema": { "type": "object", "properties": { "name": { "type": "string" } } },
                "call": { "query": insert, "params": ["name"] }
            }
        }
    });
    let problems = check("backends.db", &db.config(extra.clone()));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "backends.db.tools.add_user.call.query");
    assert!(problems[0].message.contains("read_only"), "{}", problems[0].message);

    let tools = db.tools(extra).await;
    assert!(!tool_names(&tools).await.contains(&"write_query".to_owned()));
    assert!(matches!(
        call(&tools, "write_query", json!({ "query": "SELECT 1" })).await,
        Err(BackendError::NotFound { .. })
    ));

    let out = outcome(&tools, "add_user", json!({ "name": "Mallory" })).await;
    assert!(out.is_error, "{out:?}");
    let message = text(&out).to_lowercase();
    assert!(message.contains("read-only") || message.contains("readonly"), "{message}");

    let out = outcome(
        &tools,
        "read_query",
        json!({ "query": format!("INSERT INTO {} (name) VALUES ('x')", db.users) }),
    )
    .await;
    assert!(out.is_error && text(&out).contains("read-only"), "{out:?}");
    let out = outcome(&tools, "read_query", json!({ "query": "PRAGMA query_only = OFF" })).await;
    assert!(out.is_error, "{out:?}");
    if db.is_postgres() {
        // A data-changing CTE reads as a query to the parser; the read-only transaction stops it.
        let sneaky = format!("WITH d AS (DELETE FROM {} RETURNING id) SELECT count(*) FROM d", db.users);
        let out = outcome(&tools, "read_query", json!({ "query": sneaky })).await;
        assert!(out.is_error && text(&out).contains("read-only"), "{out:?}");
    }
    assert_eq!(db.users_left().await, USERS);
    db.drop_schema().await;
}

both!(one_statement_only);
/// `read_query` and `write_query` run exactly one statement: a second one is refused, never run.
async fn one_statement_only(db: TestDb) {
    let tools = db.tools(json!({ "read_only": false, "database_tools": true })).await;
    let two = format!("SELECT 1; DROP TABLE {}", db.users);
    let out = outcome(&tools, "read_query", json!({ "query": two })).await;
    assert!(out.is_error && text(&out).contains("exactly one"), "{out:?}");
    let two = format!("DELETE FROM {0} WHERE id = 1; DROP TABLE {0}", db.users);
    let out = outcome(&tools, "write_query", json!({ "query": two })).await;
    assert!(out.is_error && text(&out).contains("exactly one"), "{out:?}");
    assert_eq!(db.users_left().await, USERS);
    db.drop_schema().await;
}

both!(write_query_when_writes_are_allowed);
/// With `read_only: false`, `write_query` is offered and changes data; `read_query` still only reads.
async fn write_query_when_writes_are_allowed(db: TestDb) {
    let tools = db.tools(json!({ "read_only": false, "database_tools": true })).await;
    assert_eq!(
        tool_names(&tools).await,
        ["list_tables", "describe_table", "read_query", "execute_sql_query", "write_query"]
    );
    let def = tools.list_tools().await.unwrap().into_iter().find(|t| t.name == "write_query").unwrap();
    assert_eq!(def.annotations.unwrap()["destructiveHint"], true);
    assert_eq!(def.input_schema["required"], json!(["query"]));

    let insert = format!("INSERT INTO {} (name, age) VALUES ('Zed', 40), ('Yan', 41)", db.users);
    let out = outcome(&tools, "write_query", json!({ "query": insert })).await;
    assert_eq!(structured(&out), &json!({ "rows_affected": 2 }));
    assert_eq!(text(&out), "2 rows affected");
    assert_eq!(db.users_left().await, USERS + 2);

    let out = outcome(&tools, "write_query", json!({ "query": format!("SELECT * FROM {}", db.users) })).await;
    assert!(out.is_error && text(&out).contains("read_query"), "{out:?}");
    let delete = format!("DELETE FROM {} WHERE name = 'Zed'", db.users);
    let out = outcome(&tools, "read_query", json!({ "query": delete })).await;
    assert!(out.is_error && text(&out).contains("use write_query"), "{out:?}");
    if db.is_postgres() {
        let sneaky = format!("WITH d AS (DELETE FROM {} RETURNING id) SELECT count(*) FROM d", db.users);
        let out = outcome(&tools, "execute_sql_query", json!({ "query": sneaky })).await;
        assert!(out.is_error && text(&out).contains("read-only"), "{out:?}");
    }
    assert_eq!(db.users_left().await, USERS + 2);

    // A database error is a tool error carrying the database's message.
    let bad = format!("INSERT INTO {} (email) VALUES ('no-name@example.com')", db.users);
    let out = outcome(&tools, "write_query", json!({ "query": bad })).await;
    assert!(out.is_error && text(&out).to_lowercase().contains("null"), "{out:?}");
    db.drop_schema().await;
}

both!(list_and_describe_tables);
/// `list_tables` lists the users table; `describe_table` describes it, and treats its argument as a name
/// only.
async fn list_and_describe_tables(db: TestDb) {
    db.exec(&format!("CREATE TABLE {}_orders (id INTEGER PRIMARY KEY, user_id INTEGER)", db.users)).await;
    let tools = db.tools(json!({ "database_tools": true })).await;
    let out = outcome(&tools, "list_tables", json!({})).await;
    let tables: Vec<String> = structured(&out)["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["table_name"].as_str().unwrap().to_owned())
        .collect();
    assert!(tables.contains(&db.users) && tables.contains(&format!("{}_orders", db.users)), "{tables:?}");

    let out = outcome(&tools, "describe_table", json!({ "table_name": db.users })).await;
    let rows = structured(&out)["rows"].as_array().unwrap().clone();
    let names: Vec<&str> = rows.iter().map(|r| r["column_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["id", "name", "email", "age"]);
    assert_eq!((rows[0]["primary_key"].as_str(), rows[1]["primary_key"].as_str()), (Some("YES"), Some("NO")));
    assert_eq!((rows[1]["nullable"].as_str(), rows[2]["nullable"].as_str()), (Some("NO"), Some("YES")));
    assert_eq!(rows[3]["column_default"].as_str(), Some("18"));
    assert!(text(&out).contains("column_name"), "{}", text(&out));

    let out = outcome(&tools, "describe_table", json!({ "table_name": "no_such_table" })).await;
    assert!(out.is_error && text(&out).contains("no table named"), "{out:?}");
    let attack = format!("{}'; DROP TABLE {}; --", db.users, db.users);
    let out = outcome(&tools, "describe_table", json!({ "table_name": attack })).await;
    assert!(out.is_error, "{out:?}");
    assert_eq!(db.users_left().await, USERS);
    db.drop_schema().await;
}

both!(values_are_decoded);
/// Column values of the common types become JSON values.
async fn values_are_decoded(db: TestDb) {
    let tools = db.tools(json!({ "database_tools": true })).await;
    let query = if db.is_postgres() {
        "SELECT 1::int2 AS a, 2::int4 AS b, 3::int8 AS c, 1.5::float8 AS d, true AS e, 'x'::text AS f, \
         NULL::text AS g, '{\"k\": [1]}'::jsonb AS h, '\\x0102'::bytea AS i, 12345.678::numeric AS j, \
         '2024-02-29'::date AS k, '2024-02-29 13:14:15.5'::timestamp AS l, \
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS m, ARRAY[1, 2]::int4[] AS n, \
         '1 day 02:00:00'::interval AS o, '12:30:00'::time AS p"
    } else {
        "SELECT 1 AS a, 2 AS b, 3 AS c, 1.5 AS d, 1 AS e, 'x' AS f, NULL AS g, x'0102' AS i"
    };
    let out = outcome(&tools, "read_query", json!({ "query": query })).await;
    let row = &structured(&out)["rows"][0];
    assert_eq!((row["a"].clone(), row["b"].clone(), row["c"].clone()), (json!(1), json!(2), json!(3)));
    assert_eq!((row["d"].clone(), row["f"].clone(), row["g"].clone()), (json!(1.5), json!("x"), Value::Null));
    assert_eq!(row["i"], "AQI=");
    if db.is_postgres() {
        assert_eq!(row["e"], true);
        assert_eq!(row["h"], json!({ "k": [1] }));
        assert_eq!(row["j"], "12345.678");
        assert_eq!(row["k"], "2024-02-29");
        assert_eq!(row["l"], "2024-02-29T13:14:15.5");
        assert_eq!(row["m"], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        assert_eq!(row["n"], json!([1, 2]));
        assert_eq!(row["o"], "0 mons 1 days 02:00:00");
        assert_eq!(row["p"], "12:30:00");
    }
    db.drop_schema().await;
}

// === PostgreSQL only ===

/// Regression: a call cut while its statement ran (by the deadline, or cancelled: its future dropped) sent
/// the server no cancel request, so the statement ran on and held the pool's only connection — cutting
/// `pg_sleep(8)` at 500 ms made the next `SELECT 1` wait 7.5 s.
#[tokio::test]
async fn a_cut_statement_kept_running_and_held_the_only_connection() {
    let Some(db) = postgres("cut_statement").await else { return };
    let tools =
        db.tools(json!({ "max_connections": 1, "statement_timeout": "60s", "database_tools": true })).await;
    // Text of its own, to find it among the server's activity.
    let sleep = "SELECT pg_sleep(8) AS cut_statement_regression";
    let cut = tokio::time::timeout(
        Duration::from_millis(300),
        call(&tools, "read_query", json!({ "query": sleep })),
    )
    .await;
    assert!(cut.is_err(), "pg_sleep(8) answered within 300 ms: {cut:?}");

    let next = tokio::time::timeout(
        Duration::from_secs(2),
        call(&tools, "read_query", json!({ "query": "SELECT 1 AS one" })),
    )
    .await;
    let out = next.expect("the call after the cut one did not answer within 2 s").unwrap();
    assert_eq!(structured(&out)["rows"], json!([{ "one": 1 }]));
    // The slot was freed once the server had stopped the statement, not merely forgotten.
    let running = db
        .count(&format!(
            "pg_stat_activity WHERE state = 'active' AND query = '{sleep}' AND pid <> pg_backend_pid()"
        ))
        .await;
    assert_eq!(running, 0, "the cut statement still runs on the server");
    tools.shutdown().await;
    db.drop_schema().await;
}

/// A TCP relay to the PostgreSQL server that the test takes down: connections through it cut, new ones
/// refused.
struct Relay {
    addr: std::net::SocketAddr,
    accept: tokio::task::JoinHandle<()>,
    connections: std::sync::Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let spawned = std::sync::Arc::clone(&connections);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                spawned.lock().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self { addr, accept, connections }
    }

    /// Stop listening (the listener is closed when this returns), then cut every connection.
    async fn take_down(self) {
        self.accept.abort();
        let _ = self.accept.await;
        for task in self.connections.lock().drain(..) {
            task.abort();
        }
    }
}

/// Regression: with the server gone, a call waited the whole acquire timeout (here 30 s, the statement
/// timeout) and then said only "no database connection free in time"; it fails at once, saying why.
#[tokio::test]
async fn a_gone_server_waited_the_whole_acquire_timeout() {
    let Some(db) = postgres("gone_server").await else { return };
    // postgres://user@host:port/db → the same through the relay.
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let (user, rest) = rest.rsplit_once('@').map_or(("", rest), |(user, rest)| (user, rest));
    let (host_port, path) = rest.split_once('/').unwrap_or((rest, ""));
    let relay = Relay::start(host_port.to_owned()).await;
    let at = if user.is_empty() { String::new() } else { format!("{user}@") };
    let url = format!("{scheme}://{at}{}/{path}", relay.addr);
    let tools = db.tools(json!({ "url": url, "statement_timeout": "30s", "database_tools": true })).await;
    let out = outcome(&tools, "read_query", json!({ "query": "SELECT 1 AS one" })).await;
    assert_eq!(structured(&out)["rows"], json!([{ "one": 1 }]));

    relay.take_down().await;
    let gone = tokio::time::timeout(
        Duration::from_secs(2),
        call(&tools, "read_query", json!({ "query": "SELECT 1 AS one" })),
    )
    .await
    .expect("a call to a gone server did not fail within 2 s");
    match gone {
        Err(BackendError::Unavailable { reason, .. }) => {
            assert!(reason.to_lowercase().contains("refused"), "{reason}");
        }
        other => panic!("a call to a gone server: {other:?}"),
    }
    tools.shutdown().await;
    db.drop_schema().await;
}

// === SQLite only ===

/// `sqlite::memory:` is one database for every call: a table one call creates, the next one sees.
#[tokio::test]
async fn sqlite_memory_database_is_shared_across_calls() {
    let config: SqlBackend = serde_json::from_value(
        json!({ "url": "sqlite::memory:", "read_only": false, "database_tools": true }),
    )
    .unwrap();
    assert!(check("backends.mem", &config).is_empty());
    let tools = SqlTools::connect("mem", &config).await.unwrap();
    let out = outcome(&tools, "write_query", json!({ "query": "CREATE TABLE notes (body TEXT)" })).await;
    assert!(!out.is_error, "{out:?}");
    for body in ["one", "two"] {
        let insert = format!("INSERT INTO notes VALUES ('{body}')");
        assert_eq!(
            structured(&outcome(&tools, "write_query", json!({ "query": insert })).await)["rows_affected"],
            1
        );
    }
    let out = outcome(&tools, "read_query", json!({ "query": "SELECT count(*) AS n FROM notes" })).await;
    assert_eq!(structured(&out)["rows"], json!([{ "n": 2 }]));
    // A read on the writable connection still cannot write, whatever the text.
    let out = outcome(&tools, "read_query", json!({ "query": "PRAGMA query_only(0)" })).await;
    assert!(out.is_error, "{out:?}");
    tools.shutdown().await;
}

/// `check()` reports every problem at once, each with its path, without touching a database.
#[tokio::test]
async fn check_reports_every_problem_with_its_path() {
    let config: SqlBackend = serde_json::from_value(json!({
        "url": "sqlite:/nonexistent/mcpgate/shop.db",
        "tools": {
            "bad": {
                "input_schema": { "type": "object", "properties": { "id": { "type": "integer" } } },
                "call": { "query": "SELECT * FROM t WHERE id = ?; DROP TABLE t", "params": ["id", "nope"] }
            },
            "counted": {
                "input_schema": { "type": "object", "properties": { "id": {} } },
                "call": { "query": "SELECT * FROM t WHERE id = ? OR id = ?", "params": ["id"] }
            }
        }
    }))
    .unwrap();
    let problems = check("backends.shop", &config);
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "backends.shop.url",
            "backends.shop.tools.bad.call.params[1]",
            "backends.shop.tools.bad.call.query",
            "backends.shop.tools.counted.call.query",
        ],
        "{problems:?}"
    );
    assert!(problems[0].message.contains("does not exist"), "{}", problems[0].message);
    assert!(problems[1].message.contains("\"nope\""), "{}", problems[1].message);
    assert!(problems[2].message.contains("exactly one"), "{}", problems[2].message);
    assert!(problems[3].message.contains("2 placeholder"), "{}", problems[3].message);

    let config: SqlBackend =
        serde_json::from_value(json!({ "url": "postgres://u:${MCPGATE_TEST_UNSET_VAR}@db/x" })).unwrap();
    let problems = check("backends.pg", &config);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].message.contains("MCPGATE_TEST_UNSET_VAR"), "{problems:?}");
    let config: SqlBackend = serde_json::from_value(json!({ "url": "mysql://db/x" })).unwrap();
    assert!(check("backends.my", &config)[0].message.contains("unknown"));
}

/// A failed connection names the database without its password.
#[tokio::test]
async fn connection_errors_hide_the_password() {
    let config: SqlBackend = serde_json::from_value(json!({
        "url": "postgres://user:hunter2@127.0.0.1:1/db",
        "statement_timeout": "1s"
    }))
    .unwrap();
    let error = SqlTools::connect("pg", &config).await.err().unwrap();
    assert!(!error.contains("hunter2") && error.contains("***@127.0.0.1:1"), "{error}");
}

/// `examples/sqlite.yaml` checks clean and its tools answer from `examples/data/shop.db`.
#[tokio::test]
async fn the_sqlite_example_works() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let config = mcpgate_config::load_file(&root.join("examples/sqlite.yaml")).unwrap();
    let Some(mcpgate_config::BackendConfig::Sql(shop)) = config.backends.get("shop") else {
        panic!("no sql backend \"shop\"");
    };
    // The example's path is relative to the repository root, where mcpgate runs; tests run in the crate.
    let mut shop = shop.clone();
    shop.url = format!("sqlite:{}", root.join("examples/data/shop.db").display());
    assert!(check("backends.shop", &shop).is_empty(), "{:?}", check("backends.shop", &shop));
    let tools = SqlTools::connect("shop", &shop).await.unwrap();
    assert!(!tool_names(&tools).await.contains(&"write_query".to_owned()));

    let out = outcome(&tools, "orders_of_customer", json!({ "email": "ada@example.com" })).await;
    let rows = structured(&out)["rows"].clone();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    assert_eq!(
        rows[1],
        json!({ "id": 1, "ordered_at": "2024-02-01 09:12:00", "status": "delivered", "total_cents": 11600 })
    );
    let out =
        outcome(&tools, "orders_of_customer", json!({ "email": "ada@example.com", "status": "shipped" }))
            .await;
    assert_eq!(structured(&out)["row_count"], 1);

    let out =
        outcome(&tools, "products_under", json!({ "max_price_cents": 2000, "category": "office" })).await;
    let names: Vec<&str> =
        structured(&out)["rows"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Notebook, dotted", "Coffee, 1 kg"]);
    let out = outcome(&tools, "list_tables", json!({})).await;
    assert_eq!(structured(&out)["row_count"], 4);
    let out = outcome(&tools, "describe_table", json!({ "table_name": "products" })).await;
    assert_eq!(structured(&out)["rows"][0]["primary_key"], "YES");
}
