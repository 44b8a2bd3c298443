//! The engine against programs that behave and programs that attack.

use std::{
    collections::VecDeque,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{Binding, Completion, Failure, Host, Limits, Program, Run, Stopped, engine};

fn limits() -> Limits {
    Limits {
        time: Duration::from_secs(2),
        memory: 32 << 20,
        stack: 256 << 10,
        output: 1 << 20,
        logs: 4 << 10,
        calls: 20,
    }
}

/// A host that answers `echo` with its arguments and `fail` with an error, in the order called; `hang` never.
#[derive(Default)]
struct Scripted {
    queue: VecDeque<Completion>,
    seen: Vec<(String, Value)>,
}

impl Host for Scripted {
    fn call(&mut self, id: u64, tool: &str, arguments: &str) {
        let args: Value = serde_json::from_str(arguments).unwrap_or(Value::Null);
        self.seen.push((tool.to_owned(), args.clone()));
        match tool {
            "echo" => self.queue.push_back(Completion { id, result: Ok(args.to_string()) }),
            "fail" => self.queue.push_back(Completion { id, result: Err("fail: no such thing".into()) }),
            _ => {}
        }
    }

    fn wait(&mut self, deadline: Instant) -> Result<Option<Completion>, Stopped> {
        match self.queue.pop_front() {
            Some(c) => Ok(Some(c)),
            None => {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                Ok(None)
            }
        }
    }
}

fn bindings() -> Vec<Binding> {
    ["echo", "fail", "hang"]
        .map(|t| Binding { namespace: "demo".into(), identifier: t.into(), tool: t.into() })
        .to_vec()
}

fn run_with(code: &str, limits: Limits) -> (Run, Scripted) {
    let mut host = Scripted::default();
    let program = Program { code: code.into(), bindings: bindings(), input: Some(json!({"n": 3})) };
    let run = engine::run(&program, &limits, &mut host, &Arc::new(AtomicBool::new(false)));
    (run, host)
}

fn run(code: &str) -> Run {
    run_with(code, limits()).0
}

#[test]
fn returns_the_value_and_the_logs() {
    let out = run("console.log('hi', {a: 1}, [2]); console.warn('careful'); return {sum: input.n + 1};");
    assert_eq!(out.outcome, Ok(json!({"sum": 4})));
    let logs: Vec<_> = out.logs.iter().map(|l| (l.level.as_str(), l.text.as_str())).collect();
    assert_eq!(logs, [("info", "hi {\"a\":1} [2]"), ("warn", "careful")]);
    assert_eq!(run("const x = 1;").outcome, Ok(Value::Null), "no return is null");
    let program = Program { code: "return typeof input;".into(), bindings: bindings(), input: None };
    let mut host = Scripted::default();
    let out = engine::run(&program, &limits(), &mut host, &Arc::new(AtomicBool::new(false)));
    assert_eq!(out.outcome, Ok(json!("undefined")), "no input");
}

#[test]
fn calls_tools_sequentially_and_concurrently() {
    let (out, host) = run_with(
        "const a = await tools.demo.echo({v: 1});
         const [b, c] = await Promise.all([tools.demo.echo({v: a.v + 1}), tools.demo.echo({v: 3})]);
         return [a.v, b.v, c.v];",
        limits(),
    );
    assert_eq!(out.outcome, Ok(json!([1, 2, 3])));
    assert_eq!(host.seen.len(), 3);
    assert_eq!(host.seen[1], ("echo".to_owned(), json!({"v": 2})));
}

#[test]
fn a_failed_call_rejects_and_can_be_caught() {
    let out = run("try { await tools.demo.fail({}); } catch (e) { return 'caught: ' + e.message; }");
    assert_eq!(out.outcome, Ok(json!("caught: fail: no such thing")));
    let uncaught = run("\nawait tools.demo.fail({});").outcome;
    assert_eq!(
        uncaught,
        Err(Failure::Exception { message: "Error: fail: no such thing".into(), line: None })
    );
}

#[test]
fn errors_name_the_program_line() {
    let out = run("const a = 1;\nconst b = 2;\nnull.x;");
    match out.outcome {
        Err(Failure::Exception { message, line }) => {
            assert!(message.starts_with("TypeError"), "{message}");
            assert_eq!(line, Some(3));
        }
        other => panic!("{other:?}"),
    }
    match run("const a = ;").outcome {
        Err(Failure::Exception { message, line }) => {
            assert!(message.starts_with("SyntaxError") && line == Some(1), "{message} {line:?}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_ambient_capabilities() {
    let out =
        run("return [typeof fetch, typeof require, typeof process, typeof std, typeof os, typeof setTimeout,
                 typeof XMLHttpRequest, typeof __mcpgate_call, typeof __mcpgate_log, typeof import_meta];");
    assert_eq!(out.outcome, Ok(Value::Array(vec![json!("undefined"); 10])));
    let dynamic = run("return await import('os');").outcome;
    assert!(matches!(dynamic, Err(Failure::Exception { .. })), "{dynamic:?}");
}

#[test]
fn a_busy_loop_inside_try_catch_ends_at_the_deadline() {
    let limits = Limits { time: Duration::from_millis(200), ..limits() };
    let started = Instant::now();
    let (out, _) = run_with("while (true) { try { for(;;){} } catch (e) {} }", limits);
    assert_eq!(out.outcome, Err(Failure::Timeout(limits.time)));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_catastrophic_regex_ends_at_the_deadline() {
    let limits = Limits { time: Duration::from_millis(200), ..limits() };
    let (out, _) = run_with("return /^(a+)+$/.test('a'.repeat(40) + 'b');", limits);
    assert_eq!(out.outcome, Err(Failure::Timeout(limits.time)));
}

#[test]
fn a_hung_call_ends_at_the_deadline() {
    let limits = Limits { time: Duration::from_millis(200), ..limits() };
    let (out, _) = run_with("await tools.demo.hang({}); return 1;", limits);
    assert_eq!(out.outcome, Err(Failure::Timeout(limits.time)));
}

#[test]
fn memory_stack_output_and_calls_are_bounded() {
    let big = run("const a = []; for (;;) a.push('x'.repeat(1 << 20) + a.length);").outcome;
    assert_eq!(big, Err(Failure::Memory(32 << 20)));
    let caught = run("try { new Array(1e9).fill(1); } catch (e) { return String(e); }").outcome;
    assert!(matches!(caught, Ok(_) | Err(Failure::Memory(_))), "{caught:?}");
    let deep = run("function f(n) { return f(n + 1) + 1; } return f(0);").outcome;
    assert!(
        matches!(&deep, Err(Failure::Exception { message, .. }) if message.contains("stack")),
        "{deep:?}"
    );
    let output = run("return 'x'.repeat(2 << 20);").outcome;
    assert_eq!(output, Err(Failure::Output { size: (2 << 20) + 2, limit: 1 << 20 }));
    let (calls, host) = run_with("for (;;) { try { await tools.demo.echo({}); } catch (e) {} }", limits());
    assert_eq!(calls.outcome, Err(Failure::Calls(20)));
    assert_eq!(host.seen.len(), 20);
}

#[test]
fn console_output_is_capped() {
    let out = run("for (let i = 0; i < 1000; i++) console.log('line ' + i); return 1;");
    assert_eq!(out.outcome, Ok(json!(1)));
    let bytes: usize = out.logs.iter().map(|l| l.text.len()).sum();
    assert!(bytes < (4 << 10) + 100, "{bytes}");
    assert!(out.logs.last().is_some_and(|l| l.text.contains("dropped")));
}

#[test]
fn a_program_that_awaits_nothing_that_settles_stalls() {
    assert_eq!(run("await new Promise(() => {});").outcome, Err(Failure::Stalled));
}

#[test]
fn tampering_stays_in_its_own_run() {
    let out = run("Object.prototype.polluted = 1; Array.prototype.push = null; return 1;");
    assert_eq!(out.outcome, Ok(json!(1)));
    assert_eq!(run("return ({}).polluted === undefined && typeof [].push;").outcome, Ok(json!("function")));
    let frozen = run("tools.demo.echo = () => 1; return Object.isFrozen(tools.demo);").outcome;
    assert_eq!(frozen, Ok(json!(true)), "sloppy mode ignores the write to a frozen namespace");
}

/// Answers every call with its arguments.
struct Echo;

impl crate::ToolCaller for Echo {
    fn call(
        &self,
        _tool: String,
        arguments: serde_json::Map<String, Value>,
    ) -> futures::future::BoxFuture<'_, Result<String, String>> {
        Box::pin(async move { Ok(Value::Object(arguments).to_string()) })
    }
}

#[tokio::test]
async fn the_in_process_sandbox_reuses_its_engine_threads_but_never_a_runtime() {
    use crate::Sandbox;
    let sandbox = crate::Quickjs::new(2);
    let program = |code: &str| Program { code: code.into(), bindings: bindings(), input: None };
    let first =
        sandbox.run(program("globalThis.leak = 1; return await tools.demo.echo({v: 1});"), limits(), &Echo);
    assert_eq!(first.await.outcome, Ok(json!({"v": 1})));
    // The thread goes back to the idle list once the engine is done with the program.
    for _ in 0..1000 {
        if sandbox.idle_threads() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(sandbox.idle_threads(), 1);
    let second = sandbox.run(program("return typeof globalThis.leak;"), limits(), &Echo).await;
    assert_eq!(second.outcome, Ok(json!("undefined")), "a fresh runtime on the same thread");
    assert!(sandbox.idle_threads() <= 1, "the thread was reused, not a second one started");
    assert_eq!(sandbox.running(), 0);
}
