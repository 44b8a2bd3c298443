//! The JavaScript engine: one model-written program run to its end in a fresh QuickJS runtime, under a time,
//! memory, stack, output and call limit, with tool calls handed to a [`Host`].
//!
//! The engine is synchronous and owns the thread it runs on: it evaluates the program, runs the promise jobs
//! that are ready, and when nothing is left to run but the program still waits on tool calls, it blocks on the
//! host for the next answer. The same loop runs in the gateway's process (the host is a channel to the
//! dispatch) and in a confined worker (the host is a pipe back to the gateway).

use std::{
    cell::RefCell,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rquickjs::{
    CatchResultExt, CaughtError, Context, Ctx, Exception, Function, Persistent, Promise, Runtime, Value,
    context::EvalOptions, promise::PromiseState,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The file name errors and stack traces give the program.
const PROGRAM_FILE: &str = "program.js";

/// What a run may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock time from the start of the run, tool calls included.
    pub time: Duration,
    /// Bytes the JavaScript heap may hold.
    pub memory: usize,
    /// Bytes of native stack the interpreter may use (deep recursion ends here).
    pub stack: usize,
    /// Bytes of the JSON-encoded result.
    pub output: usize,
    /// Bytes of `console` output kept; what is over it is dropped and marked.
    pub logs: usize,
    /// Tool calls one run may make.
    pub calls: u32,
}

/// A tool as the program sees it: `tools.<namespace>.<identifier>(args)` calls the public tool `tool`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The namespace (a backend or upstream name, made a valid identifier).
    pub namespace: String,
    /// The function's name in its namespace (the tool's own name, made a valid identifier).
    pub identifier: String,
    /// The public tool name the call goes to.
    pub tool: String,
}

/// One program to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// The program: the body of an async function of `(tools, console, input)`; its `return` is the result.
    pub code: String,
    /// The tools it may call.
    pub bindings: Vec<Binding>,
    /// What `input` is (a script tool's arguments); `None` leaves it `undefined`.
    pub input: Option<serde_json::Value>,
}

/// How a tool call the program made ended, as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// The id [`Host::call`] was given.
    pub id: u64,
    /// The value the call's promise resolves to (JSON), or the message it rejects with.
    pub result: Result<String, String>,
}

/// Where the engine sends the program's tool calls and log lines.
pub trait Host {
    /// Start tool call `id`: `tool` with `arguments` (a JSON object). Its answer comes from [`Host::wait`].
    fn call(&mut self, id: u64, tool: &str, arguments: &str);
    /// Wait until `deadline` for the answer of a call started and not yet answered. `Err(Stopped)` when the
    /// host will answer nothing more (the caller went away), `Ok(None)` when the deadline passed.
    fn wait(&mut self, deadline: Instant) -> Result<Option<Completion>, Stopped>;
}

/// The host stopped the run: its caller went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The JSON-encoded return value, or why there is none.
    pub outcome: Result<serde_json::Value, Failure>,
    /// What the program wrote with `console.*`, one entry per call, in order.
    pub logs: Vec<LogLine>,
}

impl Run {
    /// A run that never got going, or was cut short, for `failure`.
    pub fn failed(failure: Failure) -> Self {
        Self { outcome: Err(failure), logs: Vec::new() }
    }

    /// This run, a timeout reported with the caller's `limit` (the engine had only the time left after waiting
    /// for a slot or a worker).
    pub(crate) fn timed_out_at(self, limit: Duration) -> Self {
        match self.outcome {
            Err(Failure::Timeout(_)) => Self { outcome: Err(Failure::Timeout(limit)), logs: self.logs },
            _ => self,
        }
    }
}

/// One `console.*` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// `info`, `debug`, `warn` or `error` (`console.log` is `info`).
    pub level: String,
    /// The values, shown as text and joined by spaces.
    pub text: String,
}

/// Why a run has no result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Failure {
    /// The program threw (or its promise rejected), or did not compile.
    #[error("{message}{}", line.map(|l| format!(" (program line {l})")).unwrap_or_default())]
    Exception {
        /// The error as JavaScript shows it (`TypeError: x is not a function`).
        message: String,
        /// The line of the program it came from, when known.
        line: Option<u32>,
    },
    /// The time limit passed.
    #[error("the program ran past its time limit of {}", humanize(*.0))]
    Timeout(Duration),
    /// The heap limit was reached.
    #[error("the program ran out of memory (limit {} MB)", .0 / (1024 * 1024))]
    Memory(usize),
    /// The result was bigger than allowed.
    #[error("the program's result is {size} bytes, over the limit of {limit}")]
    Output {
        /// The result's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The program tried to make more tool calls than allowed.
    #[error("the program made more than {0} tool calls")]
    Calls(u32),
    /// The program's promise never settled and no tool call was left to settle it.
    #[error("the program awaited something that never settles (no tool call is pending)")]
    Stalled,
    /// The run was stopped from outside (the call was cancelled).
    #[error("the run was cancelled")]
    Cancelled,
    /// The engine could not run (the runtime could not be created, the sandbox failed).
    #[error("the sandbox failed: {0}")]
    Sandbox(String),
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{} s", d.as_secs()) } else { format!("{} ms", d.as_millis()) }
}

/// What the host functions and the driving loop share.
struct Shared {
    /// Calls started so far; also the id of the latest.
    calls: u64,
    pending: u64,
    logs: Vec<LogLine>,
    log_bytes: usize,
    logs_cut: bool,
    started: Vec<(u64, String, String)>,
}

/// Run `program` to its end within `limits`, its tool calls going to `host`. `cancel`, when set from another
/// thread, stops it at the interpreter's next check.
pub fn run(program: &Program, limits: &Limits, host: &mut dyn Host, cancel: &Arc<AtomicBool>) -> Run {
    let deadline = Instant::now() + limits.time;
    let shared = Rc::new(RefCell::new(Shared {
        calls: 0,
        pending: 0,
        logs: Vec::new(),
        log_bytes: 0,
        logs_cut: false,
        started: Vec::new(),
    }));
    // Set when the program asks for a call over its limit: the interrupt handler then ends the run.
    let over_calls = Arc::new(AtomicBool::new(false));
    let outcome = match Runtime::new() {
        Ok(runtime) => {
            runtime.set_memory_limit(limits.memory);
            runtime.set_max_stack_size(limits.stack);
            let (over_calls_in, cancel_in) = (over_calls.clone(), cancel.clone());
            runtime.set_interrupt_handler(Some(Box::new(move || {
                Instant::now() >= deadline
                    || over_calls_in.load(Ordering::Relaxed)
                    || cancel_in.load(Ordering::Relaxed)
            })));
            let outcome = match Context::full(&runtime) {
                Ok(context) => {
                    drive(&context, program, limits, host, (&shared, &over_calls), deadline, cancel)
                }
                Err(e) => Err(Failure::Sandbox(format!("cannot create a JavaScript context: {e}"))),
            };
            // An interrupt is reported as an exception; say what it was. A program over its call limit fails
            // even if it caught the error and finished before the interrupt came.
            match outcome {
                _ if over_calls.load(Ordering::Relaxed) => Err(Failure::Calls(limits.calls)),
                Err(Failure::Exception { .. }) if cancel.load(Ordering::Relaxed) => Err(Failure::Cancelled),
                Err(Failure::Exception { ref message, .. })
                    if message.contains("interrupted") && Instant::now() >= deadline =>
                {
                    Err(Failure::Timeout(limits.time))
                }
                Err(Failure::Exception { ref message, .. }) if message.contains("out of memory") => {
                    Err(Failure::Memory(limits.memory))
                }
                other => other,
            }
        }
        Err(e) => Err(Failure::Sandbox(format!("cannot create a JavaScript runtime: {e}"))),
    };
    let logs = std::mem::take(&mut shared.borrow_mut().logs);
    Run { outcome, logs }
}

/// Compile the prelude and the program, start it, and drive it until its promise settles.
fn drive(
    context: &Context,
    program: &Program,
    limits: &Limits,
    host: &mut dyn Host,
    (shared, over_calls): (&Rc<RefCell<Shared>>, &Arc<AtomicBool>),
    deadline: Instant,
    cancel: &Arc<AtomicBool>,
) -> Result<serde_json::Value, Failure> {
    let (promise, settle) = context.with(|ctx| start(&ctx, program, limits, shared, over_calls))?;
    loop {
        // Run every job that is ready (promise reactions: the program's code after each `await`).
        loop {
            match context.runtime().execute_pending_job() {
                Ok(true) => {}
                Ok(false) => break,
                Err(job) => {
                    let error =
                        |ctx: Ctx<'_>| caught(CaughtError::from_error(&ctx, rquickjs::Error::Exception));
                    return Err(job.0.with(error));
                }
            }
        }
        // Hand the host the calls the program started, then see whether the program is done.
        for (id, tool, arguments) in std::mem::take(&mut shared.borrow_mut().started) {
            host.call(id, &tool, &arguments);
        }
        let settled = context.with(|ctx| {
            let promise = promise.clone().restore(&ctx).map_err(|e| Failure::Sandbox(e.to_string()))?;
            match promise.state() {
                PromiseState::Pending => Ok(None),
                PromiseState::Resolved => {
                    let json: String = promise
                        .result::<String>()
                        .transpose()
                        .map_err(|e| caught(CaughtError::from_error(&ctx, e)))?
                        .unwrap_or_default();
                    Ok(Some(json))
                }
                PromiseState::Rejected => Err(caught(
                    promise
                        .finish::<Value>()
                        .catch(&ctx)
                        .err()
                        .unwrap_or(CaughtError::Error(rquickjs::Error::Unknown)),
                )),
            }
        })?;
        if let Some(json) = settled {
            if json.len() > limits.output {
                return Err(Failure::Output { size: json.len(), limit: limits.output });
            }
            return serde_json::from_str(&json)
                .map_err(|e| Failure::Sandbox(format!("result is not JSON: {e}")));
        }
        if shared.borrow().pending == 0 {
            return Err(Failure::Stalled);
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(Failure::Cancelled);
        }
        let completion = match host.wait(deadline) {
            Ok(Some(completion)) => completion,
            Ok(None) => return Err(Failure::Timeout(limits.time)),
            Err(Stopped) => return Err(Failure::Cancelled),
        };
        shared.borrow_mut().pending -= 1;
        context.with(|ctx| {
            let settle = settle.clone().restore(&ctx).map_err(|e| Failure::Sandbox(e.to_string()))?;
            let (ok, payload) = match completion.result {
                Ok(json) => (true, json),
                Err(message) => (false, message),
            };
            settle.call::<_, ()>((completion.id as f64, ok, payload)).catch(&ctx).map_err(caught)
        })?;
    }
}

/// Install the host functions, evaluate the prelude and the program, and call the program: its promise, and
/// the prelude's `settle`.
fn start<'js>(
    ctx: &Ctx<'js>,
    program: &Program,
    limits: &Limits,
    shared: &Rc<RefCell<Shared>>,
    over_calls: &Arc<AtomicBool>,
) -> Result<(Persistent<Promise<'static>>, Persistent<Function<'static>>), Failure> {
    let fail = |e: rquickjs::Error| caught(CaughtError::from_error(ctx, e));
    let globals = ctx.globals();
    let max_calls = limits.calls;
    let (calls, over_calls) = (shared.clone(), over_calls.clone());
    let call = Function::new(ctx.clone(), move |ctx: Ctx<'js>, tool: String, arguments: String| {
        let mut shared = calls.borrow_mut();
        if shared.calls >= u64::from(max_calls) {
            // The interrupt handler ends the run at once: a program catching this could otherwise spin on it.
            over_calls.store(true, Ordering::Relaxed);
            drop(shared);
            return Err(Exception::throw_internal(&ctx, &format!("more than {max_calls} tool calls")));
        }
        shared.calls += 1;
        shared.pending += 1;
        let id = shared.calls;
        shared.started.push((id, tool, arguments));
        Ok(id as f64)
    })
    .map_err(fail)?;
    let max_logs = limits.logs;
    let logs = shared.clone();
    let log = Function::new(ctx.clone(), move |level: String, text: String| {
        let mut shared = logs.borrow_mut();
        if shared.logs_cut {
            return;
        }
        if shared.log_bytes + text.len() > max_logs {
            shared.logs_cut = true;
            let text = format!("(console output over {max_logs} bytes: the rest is dropped)");
            shared.logs.push(LogLine { level: "warn".into(), text });
            return;
        }
        shared.log_bytes += text.len();
        shared.logs.push(LogLine { level, text });
    })
    .map_err(fail)?;
    globals.set("__mcpgate_call", call).map_err(fail)?;
    globals.set("__mcpgate_log", log).map_err(fail)?;
    let prelude: Function = ctx.eval(include_str!("prelude.js")).map_err(fail)?;
    let bindings: Vec<[&str; 3]> = program
        .bindings
        .iter()
        .map(|b| [b.namespace.as_str(), b.identifier.as_str(), b.tool.as_str()])
        .collect();
    let bindings = serde_json::to_string(&bindings).map_err(|e| Failure::Sandbox(e.to_string()))?;
    let input = program.input.as_ref().map(serde_json::Value::to_string);
    let pair: rquickjs::Array = prelude.call((bindings, input)).map_err(fail)?;
    let (run, settle): (Function, Function) = (pair.get(0).map_err(fail)?, pair.get(1).map_err(fail)?);
    let mut options = EvalOptions::default();
    options.global = true;
    options.strict = false;
    options.filename = Some(PROGRAM_FILE.into());
    let source = format!("(async function (tools, console, input) {{\n{}\n}})", program.code);
    let main: Function = ctx.eval_with_options(source, options).catch(ctx).map_err(caught)?;
    let promise: Promise = run.call((main,)).catch(ctx).map_err(caught)?;
    Ok((Persistent::save(ctx, promise), Persistent::save(ctx, settle)))
}

/// The failure a caught JavaScript error is: its text, and the program line it came from.
fn caught(error: CaughtError<'_>) -> Failure {
    match error {
        CaughtError::Exception(exception) => {
            let message = exception.message().unwrap_or_default();
            let name: Option<String> = exception.get("name").ok();
            let message = match name {
                Some(name) if !name.is_empty() => format!("{name}: {message}"),
                _ => message,
            };
            Failure::Exception { message, line: exception.stack().as_deref().and_then(program_line) }
        }
        CaughtError::Value(value) => {
            let text = value
                .as_string()
                .and_then(|s| s.to_string().ok())
                .or_else(|| {
                    value.ctx().json_stringify(value.clone()).ok().flatten().and_then(|s| s.to_string().ok())
                })
                .unwrap_or_else(|| format!("a {}", value.type_name()));
            Failure::Exception { message: format!("uncaught {text}"), line: None }
        }
        CaughtError::Error(rquickjs::Error::Allocation) => {
            Failure::Exception { message: "out of memory".into(), line: None }
        }
        CaughtError::Error(e) => Failure::Exception { message: e.to_string(), line: None },
    }
}

/// The first program line a stack trace names (the program's source starts one line into what is evaluated).
fn program_line(stack: &str) -> Option<u32> {
    let at = stack.find(&format!("{PROGRAM_FILE}:"))? + PROGRAM_FILE.len() + 1;
    let digits: String = stack[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<u32>().ok().map(|line| line.saturating_sub(1)).filter(|line| *line > 0)
}
