//! The backend contract suite (`mcpgate_testkit::contract`) for every kind of backend this crate builds
//! itself: builtin (the demo set), http (against an axum API this test serves), command (real programs) and
//! sql (a SQLite file). Upstream MCP servers run it in `crates/mcpgate/tests/contract.rs`, where the
//! `mcpgate` binary they start is at hand.
//!
//! Each backend is started the way the gateway starts it, through `mcpgate_backends::start`, and each rule is
//! a test of its own on a fresh backend. The demo backend works in process on tokio timers, so its tests run
//! on a paused clock; the others wait on real processes, sockets and threads, with bounded polls.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, http::StatusCode, routing::get};
use mcpgate_config::{BackendConfig, Source};
use mcpgate_core::Backend;
use mcpgate_testkit::{
    contract::{HookFuture, Outage, Running, Subject, call},
    contract_tests, free_port,
    process::{MARKER_VARIABLE, Marker},
};
use serde_json::{Value, json};

/// Start a backend from its config, as the gateway does.
async fn start(name: &str, config: Value) -> Arc<dyn Backend> {
    let config: BackendConfig = serde_json::from_value(config).unwrap();
    mcpgate_backends::start(name, Source::Backend(&config)).await.unwrap()
}

// === builtin: the demo set ===

async fn demo() -> Subject {
    let backend = start("demo", json!({ "kind": "builtin", "builtin": "demo" })).await;
    Subject::new(
        "builtin",
        backend,
        call("echo", json!({ "message": "hi" })),
        call("sleep", json!({ "ms": 60_000 })),
        // No message: the tool runs and says what it needs.
        call("echo", json!({})),
    )
    .running(Running::After(Duration::from_millis(100)))
}

mod builtin {
    use super::*;
    contract_tests!(
        #[tokio::test(start_paused = true)]
        demo
    );
}

// === http: an API this test serves ===

/// The API: `/quick` answers JSON, `/slow` never answers (it counts its requests, and those in flight until
/// the server drops them), `/fail` is a 500.
struct Api {
    base: String,
    slow_requests: Arc<AtomicUsize>,
    slow_in_flight: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Counts a request in flight while it is.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn api() -> Api {
    let slow_requests = Arc::new(AtomicUsize::new(0));
    let slow_in_flight = Arc::new(AtomicUsize::new(0));
    let (requests, in_flight) = (Arc::clone(&slow_requests), Arc::clone(&slow_in_flight));
    let app = Router::new()
        .route("/quick", get(|| async { axum::Json(json!({ "ok": true })) }))
        .route(
            "/slow",
            get(move || {
                let (requests, in_flight) = (Arc::clone(&requests), Arc::clone(&in_flight));
                async move {
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    let _counted = InFlight(in_flight);
                    requests.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }
            }),
        )
        .route("/fail", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Api { base, slow_requests, slow_in_flight, server }
}

async fn http() -> Subject {
    let api = api().await;
    let tool = |url: String| json!({ "description": "a contract tool", "call": { "url": url } });
    let backend = start(
        "api",
        json!({
            "kind": "http",
            "base_url": api.base,
            "tools": {
                "quick": tool("quick".to_owned()),
                "slow": tool("slow".to_owned()),
                "fail": tool("fail".to_owned()),
                // An API that is down: nothing listens there.
                "down": tool(format!("http://127.0.0.1:{}/anything", free_port())),
            }
        }),
    )
    .await;
    let in_flight = Arc::clone(&api.slow_in_flight);
    Subject::new("http", backend, call("quick", json!({})), call("slow", json!({})), call("fail", json!({})))
        .running(Running::Counter(Arc::clone(&api.slow_requests)))
        .work_stops_when(move || in_flight.load(Ordering::SeqCst) == 0)
        .outage(Outage::unavailable(call("down", json!({}))))
        .keep(api)
}

mod http {
    use super::*;
    contract_tests!(
        #[tokio::test]
        http,
        outage
    );
}

// === command: real programs ===

async fn command() -> Subject {
    let marker = Marker::unique("command");
    let dir = tempfile::tempdir().unwrap();
    // A copy of `true` in a directory of its own, so the test can take it away.
    let program = dir.path().join("vanishing");
    std::fs::copy(which("true"), &program).unwrap();
    let tool = |program: &str, args: Value| {
        json!({
            "description": "a contract tool",
            "call": {
                "program": program,
                "args": args,
                "env_allow": ["PATH"],
                "env": { MARKER_VARIABLE: marker.value() }
            }
        })
    };
    let backend = start(
        "cli",
        json!({
            "kind": "command",
            "tools": {
                "quick": tool("echo", json!(["hello"])),
                // A program that leaves a grandchild running, then waits: the whole group must go.
                "slow": tool("sh", json!(["-c", "sleep 30 & sleep 30"])),
                "fail": tool("sh", json!(["-c", "echo failing >&2; exit 3"])),
                "gone": tool(program.to_str().unwrap(), json!([])),
            }
        }),
    )
    .await;
    let removed = program.clone();
    Subject::new(
        "command",
        backend,
        call("quick", json!({})),
        call("slow", json!({})),
        call("fail", json!({})),
    )
    .spawns(marker)
    // `sh` and both `sleep`s.
    .running(Running::Processes(3))
    .outage(Outage::unavailable(call("gone", json!({}))).caused_by(move |_| {
        std::fs::remove_file(&removed).unwrap();
        Box::pin(async {})
    }))
    .keep(dir)
}

/// `program` found on `PATH`.
fn which(program: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap()
}

mod command {
    use super::*;
    contract_tests!(
        #[tokio::test]
        command,
        outage
    );
}

// === sql: a SQLite file ===

/// A statement that never ends on its own.
const FOREVER: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

fn close_pool(subject: &Subject) -> HookFuture<'_> {
    Box::pin(subject.backend().shutdown())
}

async fn sqlite() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("contract.db");
    // An empty file is an empty SQLite database.
    std::fs::write(&file, b"").unwrap();
    let backend = start(
        "db",
        json!({
            "kind": "sql",
            "url": format!("sqlite:{}", file.display()),
            "database_tools": true,
            // One connection: the next call is served only if the cut statement really stopped.
            "max_connections": 1,
            "statement_timeout": "60s"
        }),
    )
    .await;
    let query = |sql: &str| call("read_query", json!({ "query": sql }));
    Subject::new(
        "sql",
        backend,
        query("SELECT 1 AS one"),
        query(FOREVER),
        query("SELECT * FROM no_such_table"),
    )
    // A database whose pool is closed is gone for its backend.
    .outage(Outage::unavailable(query("SELECT 1 AS one")).caused_by(close_pool))
    .keep(dir)
}

mod sql {
    use super::*;
    contract_tests!(
        #[tokio::test]
        sqlite,
        outage
    );
}

/// Every rule in one run, on the demo backend (paused clock).
#[tokio::test(start_paused = true)]
async fn the_demo_passes_the_whole_contract_in_one_run() {
    mcpgate_testkit::contract::run_contract(&demo().await).await;
}

/// Every rule in one run, on one backend of each other kind: the order of [`mcpgate_testkit::contract::run_contract`]
/// leaves each serving until its outage and shutdown.
#[tokio::test]
async fn every_kind_passes_the_whole_contract_in_one_run() {
    for subject in [http().await, command().await, sqlite().await] {
        mcpgate_testkit::contract::run_contract(&subject).await;
    }
}

// === sql: PostgreSQL, when a server is configured ===

/// A TCP relay between the backend and the PostgreSQL server, which the test can take down: every
/// connection through it is cut and new ones are refused — the database is gone for the backend.
struct Relay {
    addr: std::net::SocketAddr,
    tasks: Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let spawned = Arc::clone(&tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                spawned.lock().push(relay);
            }
        });
        tasks.lock().push(accept);
        Self { addr, tasks }
    }

    /// Cut every connection and stop listening.
    fn take_down(&self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.take_down();
    }
}

/// The PostgreSQL server of `MCPGATE_TEST_POSTGRES_URL`, reached through a [`Relay`]; `None` (after a loud
/// message) when it is not set, unless `MCPGATE_REQUIRE_POSTGRES=1`.
async fn postgres() -> Option<Subject> {
    let url = mcpgate_testkit::postgres_url("the PostgreSQL contract")?;
    // postgres://user@host:port/db → the same through the relay.
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, rest) = rest.rsplit_once('@').map_or(("", rest), |(user, rest)| (user, rest));
    let (host_port, path) = rest.split_once('/').unwrap_or((rest, ""));
    let relay = Arc::new(Relay::start(host_port.to_owned()).await);
    let at = if user.is_empty() { String::new() } else { format!("{user}@") };
    let relayed = format!("{scheme}://{at}{}/{path}", relay.addr);
    let backend = start(
        "pg",
        json!({
            "kind": "sql",
            "url": relayed,
            "database_tools": true,
            // One connection: the next call is served only if the cut statement really stopped.
            "max_connections": 1,
            "statement_timeout": "60s"
        }),
    )
    .await;
    let query = |sql: &str| call("read_query", json!({ "query": sql }));
    let gone = Arc::clone(&relay);
    Some(
        Subject::new(
            "sql",
            backend,
            query("SELECT 1 AS one"),
            query("SELECT pg_sleep(30)"),
            query("SELECT * FROM mcpgate_contract_no_such_table"),
        )
        // The server goes away: connections cut, new ones refused.
        .outage(Outage::unavailable(query("SELECT 1 AS one")).caused_by(move |_| {
            gone.take_down();
            Box::pin(async {})
        }))
        .keep(relay),
    )
}

mod pg {
    /// One test per rule, each skipped when no server is configured.
    macro_rules! rules {
        ($($(#[$attr:meta])* $rule:ident),* $(,)?) => {$(
            #[tokio::test]
            $(#[$attr])*
            async fn $rule() {
                if let Some(subject) = super::postgres().await {
                    mcpgate_testkit::contract::$rule(&subject).await;
                }
            }
        )*};
    }

    rules!(
        lists_object_schemas_and_is_up,
        a_quick_call_answers,
        a_failing_tool_is_an_outcome,
        the_deadline_is_honoured,
        cancellation_ends_the_call,
        an_unreachable_dependency_is_an_error,
        shutdown_leaves_no_process,
    );
}
