//! Config-declared tools end to end: http, command and sql tools served over `/mcp` from one config, their
//! arguments validated against `input_schema` by the pipeline before any handler runs, in both protocol eras.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use axum::{Json, Router, extract::Path, routing::get};
use common::{TestGateway, in_session, initialize, spawn};
use serde_json::{Value, json};

/// A small real HTTP API for the http tools.
async fn api() -> String {
    let app = Router::new().route(
        "/users/{id}",
        get(|Path(id): Path<String>| async move {
            if id == "404" {
                return Err((http::StatusCode::NOT_FOUND, "no such user".to_owned()));
            }
            Ok(Json(json!({ "user": { "id": id, "name": format!("user {id}") } })))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/")
}

async fn gateway(dir: &std::path::Path) -> TestGateway {
    let api = api().await;
    let db = dir.join("tools.db");
    spawn(&format!(
        r#"backends:
  api:
    kind: http
    base_url: "{api}"
    tools:
      get_user:
        description: Look a user up.
        input_schema:
          type: object
          properties:
            id: {{ type: string, pattern: "^[0-9]+$" }}
          required: [id]
          additionalProperties: false
        output_schema:
          type: object
          properties: {{ id: {{ type: string }}, name: {{ type: string }} }}
        call:
          url: "users/{{{{ id }}}}"
          response: {{ pointer: /user }}
  cli:
    kind: command
    tools:
      shout:
        input_schema:
          type: object
          properties: {{ text: {{ type: string, maxLength: 20 }} }}
          required: [text]
        call:
          program: printf
          args: ["%s!", "{{{{ text }}}}"]
  db:
    kind: sql
    url: "sqlite:{db}?mode=rwc"
    read_only: false
    database_tools: true
"#,
        db = db.display()
    ))
    .await
}

fn text(result: &Value) -> &str {
    result["result"]["content"][0]["text"].as_str().unwrap_or("")
}

#[tokio::test]
async fn http_command_and_sql_tools_answer_over_mcp() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path()).await;

    let user = gw.call("get_user", json!({ "id": "42" })).await;
    assert_eq!(user["result"]["structuredContent"], json!({ "id": "42", "name": "user 42" }), "{user}");
    let missing = gw.call("get_user", json!({ "id": "404" })).await;
    assert_eq!(missing["result"]["isError"], true, "{missing}");
    assert!(text(&missing).contains("404"), "{missing}");

    let shout = gw.call("shout", json!({ "text": "hi; rm -rf /" })).await;
    assert_eq!(text(&shout), "hi; rm -rf /!", "{shout}");

    let created = gw.call("write_query", json!({ "query": "CREATE TABLE t (id INTEGER, name TEXT)" })).await;
    assert_ne!(created["result"]["isError"], true, "{created}");
    let inserted =
        gw.call("write_query", json!({ "query": "INSERT INTO t VALUES (1, 'one'), (2, 'two')" })).await;
    assert_ne!(inserted["result"]["isError"], true, "{inserted}");
    let rows = gw.call("read_query", json!({ "query": "SELECT name FROM t ORDER BY id" })).await;
    assert_eq!(
        rows["result"]["structuredContent"]["rows"],
        json!([{ "name": "one" }, { "name": "two" }]),
        "{rows}"
    );
}

#[tokio::test]
async fn arguments_are_validated_before_the_handler_runs() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path()).await;
    // Pattern, additionalProperties, required and maxLength, each named by its path.
    for (tool, arguments, path) in [
        ("get_user", json!({ "id": "../admin" }), "/id"),
        ("get_user", json!({ "id": "1", "extra": true }), "extra"),
        ("get_user", json!({}), "id"),
        ("shout", json!({ "text": "x".repeat(50) }), "/text"),
        ("read_query", json!({ "query": 7 }), "/query"),
    ] {
        let answer = gw.call(tool, arguments.clone()).await;
        assert_eq!(answer["result"]["isError"], true, "{tool} {arguments}: {answer}");
        let message = text(&answer);
        assert!(message.starts_with("invalid arguments") && message.contains(path), "{tool}: {message}");
    }
}

#[tokio::test]
async fn declared_tools_take_the_fast_path_in_legacy_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path()).await;
    let (session, _) = initialize(&gw, "2025-11-25").await;
    let status = || async {
        let status: Value =
            gw.http.get(format!("{}/status", gw.base)).send().await.unwrap().json().await.unwrap();
        status["calls"]["fast_path"].as_u64().unwrap()
    };
    let before = status().await;
    let (code, answer) = in_session(
        &gw,
        &session,
        "2025-11-25",
        "tools/call",
        json!({ "name": "shout", "arguments": { "text": "a" } }),
    )
    .await;
    assert_eq!((code, text(&answer)), (200, "a!"), "{answer}");
    assert_eq!(status().await - before, 1);
}
