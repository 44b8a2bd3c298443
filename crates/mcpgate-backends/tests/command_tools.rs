//! `kind: command` against real programs (sh, echo, printf, cat, env, yes, sleep): argv without a shell,
//! output formats, limits, and process groups that die with the call — on timeout, on overflow, on cancel.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use mcpgate_backends::command::{CommandTools, check};
use mcpgate_config::CommandBackend;
use mcpgate_core::{Backend, BackendError, CallContext, ToolCall, ToolOutcome};
use serde_json::{Value, json};

/// A backend with one tool `t`: `call` is the tool's `call` object, `properties` its arguments.
fn backend(call: Value, properties: Value) -> CommandTools {
    CommandTools::new("cli", &config(call, properties)).unwrap()
}

fn config(call: Value, properties: Value) -> CommandBackend {
    serde_json::from_value(json!({
        "tools": { "t": {
            "description": "a test tool",
            "input_schema": { "type": "object", "properties": properties },
            "call": call
        } }
    }))
    .unwrap()
}

async fn call(tools: &CommandTools, arguments: Value) -> Result<ToolOutcome, BackendError> {
    let arguments = arguments.as_object().cloned().unwrap_or_default();
    tools.call_tool(&CallContext::detached("test"), ToolCall { name: "t".into(), arguments }).await
}

fn text(outcome: &ToolOutcome) -> &str {
    outcome.content[0]["text"].as_str().unwrap()
}

/// A fresh scratch directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcpgate-command-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The pids a script wrote to `file`, one per line.
fn pids(file: &Path) -> Vec<u32> {
    std::fs::read_to_string(file).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect()
}

/// Whether `pid` is gone: no such process, or a zombie awaiting a reaper outside this test (in a container
/// the orphaned grandchild's new parent may never reap it; it runs no more either way).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().unwrap().trim_start().starts_with('Z'),
    }
}

/// Whether `pid` no longer exists at all (reaped).
fn reaped(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..100 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("still not true after 2s: {what}");
}

/// `sh` writing its own pid and a background `sleep 30`'s pid to the `pidfile` argument, then waiting.
fn group_script(timeout: &str) -> Value {
    json!({
        "program": "sh",
        "args": ["-c", "echo $$ > \"$1\"; sleep 30 & echo $! >> \"$1\"; wait", "sh", "{{ pidfile }}"],
        "timeout": timeout
    })
}

#[tokio::test]
async fn success_is_stdout_as_text_and_tools_are_listed() {
    let tools = backend(json!({ "program": "echo", "args": ["hello", "{{ who }}"] }), json!({ "who": {} }));
    let out = call(&tools, json!({ "who": "world" })).await.unwrap();
    assert!(!out.is_error);
    assert_eq!(text(&out), "hello world\n");
    assert_eq!(out.structured_content, None);

    let listed = tools.list_tools().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "t");
    assert_eq!(listed[0].description.as_deref(), Some("a test tool"));
    assert!(!tools.may_contact_client("t"));
    assert!(matches!(
        tools
            .call_tool(
                &CallContext::detached("x"),
                ToolCall { name: "nope".into(), arguments: Default::default() }
            )
            .await,
        Err(BackendError::NotFound { .. })
    ));
}

#[tokio::test]
async fn json_output_becomes_structured_content_and_non_objects_are_wrapped() {
    let printf = |json_text: &str| {
        backend(json!({ "program": "printf", "args": ["%s", json_text], "output": "json" }), json!({}))
    };
    let out = call(&printf(r#"{"a": 1}"#), json!({})).await.unwrap();
    assert!(!out.is_error);
    assert_eq!(out.structured_content, Some(json!({ "a": 1 })));
    assert_eq!(text(&out), r#"{"a": 1}"#);

    // `ip -j addr` prints an array; structuredContent must be an object.
    let out = call(&printf("[1, 2]"), json!({})).await.unwrap();
    assert_eq!(out.structured_content, Some(json!({ "result": [1, 2] })));

    let out = call(&printf("not json"), json!({})).await.unwrap();
    assert!(out.is_error);
    assert!(text(&out).contains("not JSON") && text(&out).contains("not json"), "{}", text(&out));
}

#[tokio::test]
async fn nonzero_exit_is_a_tool_error_quoting_stderr() {
    let tools = backend(
        json!({ "program": "sh", "args": ["-c", "echo partial; echo 'no such thing' >&2; exit 2"] }),
        json!({}),
    );
    let out = call(&tools, json!({})).await.unwrap();
    assert!(out.is_error);
    assert_eq!(text(&out), "exit status 2: no such thing");

    // Killed by a signal, nothing on stderr: the status alone.
    let tools = backend(json!({ "program": "sh", "args": ["-c", "kill -TERM $$"] }), json!({}));
    let out = call(&tools, json!({})).await.unwrap();
    assert!(out.is_error);
    assert_eq!(text(&out), "killed by SIGTERM");
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let dir = scratch("timeout");
    let pidfile = dir.join("pids");
    let tools = backend(group_script("300ms"), json!({ "pidfile": {} }));
    let started = tokio::time::Instant::now();
    let result = call(&tools, json!({ "pidfile": pidfile })).await;
    assert!(matches!(result, Err(BackendError::Timeout(t)) if t == Duration::from_millis(300)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let [leader, grandchild] = pids(&pidfile)[..] else { panic!("{:?}", pids(&pidfile)) };
    eventually("the grandchild `sleep 30` is killed", || gone(grandchild)).await;
    eventually("the program is reaped, not left a zombie", || reaped(leader)).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn dropping_the_call_kills_the_whole_process_group() {
    let dir = scratch("cancel");
    let pidfile = dir.join("pids");
    let tools = backend(group_script("30s"), json!({ "pidfile": {} }));
    let cancelled =
        tokio::time::timeout(Duration::from_millis(500), call(&tools, json!({ "pidfile": pidfile }))).await;
    assert!(cancelled.is_err(), "the call should still run: {cancelled:?}");
    let [leader, grandchild] = pids(&pidfile)[..] else { panic!("{:?}", pids(&pidfile)) };
    eventually("the grandchild `sleep 30` is killed", || gone(grandchild)).await;
    eventually("the program is reaped, not left a zombie", || reaped(leader)).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn what_a_program_leaves_running_dies_when_it_exits() {
    let tools = backend(json!({ "program": "sh", "args": ["-c", "sleep 30 & echo $!"] }), json!({}));
    let started = tokio::time::Instant::now();
    let out = call(&tools, json!({})).await.unwrap();
    // The background sleep holds stdout open; the call still ends as soon as `sh` does.
    assert!(started.elapsed() < Duration::from_secs(2));
    let pid: u32 = text(&out).trim().parse().unwrap();
    eventually("the left-behind `sleep 30` is killed", || gone(pid)).await;
}

#[tokio::test]
async fn oversized_stdout_kills_the_program_and_is_a_tool_error() {
    for program in
        [json!({ "program": "yes" }), json!({ "program": "head", "args": ["-c", "5000000", "/dev/zero"] })]
    {
        let mut call_config = program.clone();
        call_config["max_stdout"] = json!("1kb");
        let tools = backend(call_config, json!({}));
        let out = call(&tools, json!({})).await.unwrap();
        assert!(out.is_error, "{program}");
        assert!(text(&out).contains("max_stdout (1024 bytes)"), "{}", text(&out));
    }
}

#[tokio::test]
async fn stderr_is_cut_at_its_cap_and_drained() {
    // 5000 'x' on stderr, then failure: the excerpt holds the first 100 bytes and says it was cut.
    let tools = backend(
        json!({
            "program": "sh",
            "args": ["-c", "head -c 5000 /dev/zero | tr '\\0' x >&2; exit 3"],
            "max_stderr": 100
        }),
        json!({}),
    );
    let out = call(&tools, json!({})).await.unwrap();
    assert!(out.is_error);
    assert!(text(&out).starts_with(&format!("exit status 3: {} (", "x".repeat(100))), "{}", text(&out));
    assert!(text(&out).contains("cut at max_stderr, 100 bytes"), "{}", text(&out));

    // Far more stderr than the cap (and than a pipe holds) on success: no deadlock, stdout intact.
    let tools = backend(
        json!({
            "program": "sh",
            "args": ["-c", "head -c 1000000 /dev/zero >&2; echo done"],
            "max_stderr": "1kb"
        }),
        json!({}),
    );
    let out = call(&tools, json!({})).await.unwrap();
    assert!(!out.is_error);
    assert_eq!(text(&out), "done\n");
}

#[tokio::test]
async fn stdin_comes_from_an_argument() {
    let tools = backend(json!({ "program": "cat", "stdin": "{{ input }}" }), json!({ "input": {} }));
    let out = call(&tools, json!({ "input": "line one\nline two" })).await.unwrap();
    assert_eq!(text(&out), "line one\nline two");

    // More than a pipe buffer each way: written while the output is read, so no deadlock.
    let big = "0123456789abcdef".repeat(20_000);
    let out = call(&tools, json!({ "input": big })).await.unwrap();
    assert_eq!(text(&out), big);

    // A program that never reads its input.
    let tools = backend(
        json!({ "program": "echo", "args": ["ignored"], "stdin": "{{ input }}" }),
        json!({ "input": {} }),
    );
    let out = call(&tools, json!({ "input": "x".repeat(500_000) })).await.unwrap();
    assert_eq!(text(&out), "ignored\n");
}

#[tokio::test]
async fn the_environment_holds_only_allowed_and_set_variables() {
    let path = std::env::var("PATH").unwrap();
    let tools = backend(
        json!({
            "program": "env",
            "env_allow": ["PATH", "MCPGATE_TEST_SURELY_UNSET_VARIABLE"],
            "env": { "GREETING": "hello there", "COPIED": "${PATH}" }
        }),
        json!({}),
    );
    let out = call(&tools, json!({})).await.unwrap();
    let mut lines: Vec<&str> = text(&out).lines().collect();
    lines.sort_unstable();
    let mut expected =
        vec![format!("COPIED={path}"), "GREETING=hello there".to_owned(), format!("PATH={path}")];
    expected.sort_unstable();
    assert_eq!(lines, expected);
}

#[tokio::test]
async fn the_program_runs_in_its_working_directory() {
    let dir = scratch("cwd");
    let tools = backend(json!({ "program": "pwd", "args": ["-P"], "cwd": dir }), json!({}));
    let out = call(&tools, json!({})).await.unwrap();
    assert_eq!(text(&out).trim_end(), dir.canonicalize().unwrap().to_str().unwrap());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn argument_values_are_single_argv_items_never_shell_or_template_code() {
    let marker = std::env::temp_dir().join(format!("pwned-mcpgate-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let hostile = format!("; rm -rf / ; $(touch {}) `id` | cat", marker.display());
    // printf repeats its format per argument: one `[…]` line means one argv item.
    let tools = backend(json!({ "program": "printf", "args": ["[%s]\\n", "{{ s }}"] }), json!({ "s": {} }));
    for value in [hostile.as_str(), "{{ 7*7 }}", "{% for i in range(3) %}x{% endfor %}", "two  words", "*"] {
        let out = call(&tools, json!({ "s": value })).await.unwrap();
        assert!(!out.is_error, "{value}");
        assert_eq!(text(&out), format!("[{value}]\n"));
    }
    assert!(!marker.exists(), "{} was created", marker.display());
}

#[tokio::test]
async fn array_arguments_expand_and_empty_items_are_dropped() {
    let tools = backend(
        json!({
            "program": "printf",
            "args": ["[%s]", "{{ files }}", "{{ flag if flag is defined else '' }}"]
        }),
        json!({ "files": {}, "flag": {} }),
    );
    let out = call(&tools, json!({ "files": ["a b", "c", 3] })).await.unwrap();
    assert_eq!(text(&out), "[a b][c][3]");
    let out = call(&tools, json!({ "files": ["a"], "flag": "-v" })).await.unwrap();
    assert_eq!(text(&out), "[a][-v]");
    // A non-array value is one item as usual.
    let out = call(&tools, json!({ "files": "one; two" })).await.unwrap();
    assert_eq!(text(&out), "[one; two]");
    let out = call(&tools, json!({ "files": [{ "nested": 1 }] })).await.unwrap();
    assert!(out.is_error);
}

#[tokio::test]
async fn an_item_that_is_only_an_absent_argument_is_dropped() {
    let tools = backend(
        json!({ "program": "printf", "args": ["[%s]", "{{ first }}", "{{ second }}"] }),
        json!({ "first": {}, "second": {} }),
    );
    let out = call(&tools, json!({ "second": "b" })).await.unwrap();
    assert_eq!(text(&out), "[b]", "{out:?}");
}

#[tokio::test]
async fn a_declared_but_absent_argument_is_a_tool_error_naming_it() {
    let tools = backend(json!({ "program": "echo", "args": ["--name={{ name }}"] }), json!({ "name": {} }));
    let out = call(&tools, json!({})).await.unwrap();
    assert!(out.is_error);
    assert!(text(&out).contains("args[0]") && text(&out).contains("\"name\""), "{}", text(&out));
}

#[tokio::test]
async fn a_program_that_cannot_start_makes_the_backend_unavailable() {
    let dir = scratch("spawn");
    let program = dir.join("not-a-binary");
    std::fs::write(&program, [0u8, 1, 2, 3]).unwrap();
    std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let tools = backend(json!({ "program": program }), json!({}));
    let result = call(&tools, json!({})).await;
    assert!(matches!(result, Err(BackendError::Unavailable { .. })), "{result:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn check_reports_every_problem_with_its_path() {
    let config: CommandBackend = serde_json::from_value(json!({
        "tools": {
            "a": {
                "input_schema": { "type": "object", "properties": { "x": {} } },
                "call": {
                    "program": "surely-not-a-program-here",
                    "cwd": "/surely/not/a/directory",
                    "args": ["{{ x }}", "{{ y }}"],
                    "env": { "SECRET": "${MCPGATE_TEST_SURELY_UNSET_VARIABLE}" }
                }
            },
            "b": { "call": { "program": "sh", "stdin": "{{ nothing" } }
        }
    }))
    .unwrap();
    let problems = check("backends.cli", &config);
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let find = |path: &str, words: &str| {
        assert!(
            problems.iter().any(|p| p.path == path && p.message.contains(words)),
            "no {path}: …{words}… in {shown:#?}"
        );
    };
    find("backends.cli.tools.a.call.program", "not found on PATH");
    find("backends.cli.tools.a.call.cwd", "no such file or directory");
    find("backends.cli.tools.a.call.args[1]", "\"y\"");
    find("backends.cli.tools.a.call.env.SECRET", "MCPGATE_TEST_SURELY_UNSET_VARIABLE");
    assert!(problems.iter().any(|p| p.path == "backends.cli.tools.b.call.stdin"), "{shown:#?}");
    assert_eq!(problems.len(), 5, "{shown:#?}");

    let error = CommandTools::new("cli", &config).err().unwrap();
    assert!(
        error.contains("backends.cli.tools.a.call.program") && error.contains("backends.cli.tools.b"),
        "{error}"
    );
}
