//! Code mode's tools: `search_tools`, `describe_tools` and `execute`, offered to principals in code mode
//! ([`Mode::Code`]) in place of (or, in hybrid mode, beside) the catalogue.
//!
//! They run through the pipeline like any tool (rate limits, deadline, budget, audit, metrics) and see the
//! catalogue as their caller may use it directly: a tool the caller's globs do not name is not found, not
//! described and not callable. A program's calls come back through the dispatch with the caller's principal (in
//! direct mode, so that it reaches its own tools but not `execute` again) and the execute call's request id.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, Weak},
};

use async_trait::async_trait;
use futures::future::BoxFuture;
use mcpgate_backends::BackendKind;
use mcpgate_config::CodeModeConfig;
use mcpgate_core::{
    Answer, Backend, BackendError, CallContext, JsonObject, Mode, Operation, Principal, ScriptRunner,
    Surface, ToolCall, ToolDef, ToolOutcome,
};
use mcpgate_policy::{ArgumentSchema, ToolPolicy, authz};
use mcpgate_sandbox::{Binding, Failure, Limits, Program, Sandbox, ToolCaller, describe, names, search};
use parking_lot::Mutex;
use rmcp::model::Tool;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::time::Instant;

use crate::{
    dispatch::Door,
    gateway::{Gateway, Live},
    registry::RegistryHandle,
};

/// `search_tools`.
const SEARCH: &str = "search_tools";
/// `describe_tools`.
const DESCRIBE: &str = "describe_tools";
/// `execute`.
const EXECUTE: &str = "execute";

/// Most results `search_tools` gives, whatever the caller asks.
const MAX_SEARCH: u64 = 50;

/// Results remembered for `describe_tools` (principal and tool pairs), and the largest sample kept.
const OBSERVED_TOOLS: usize = 1_000;
const OBSERVED_BYTES: usize = 2_048;

/// What code mode keeps while the gateway runs: the sandbox (its slots) and the result shapes seen.
pub(crate) struct CodeMode {
    sandbox: Arc<dyn Sandbox>,
    /// A sample result per principal and tool without an output schema, to describe it better than `unknown`.
    /// Per principal: a result's keys may be data (`{"alice@example.com": …}`), which another caller must not see.
    observed: Mutex<HashMap<(Arc<str>, String), Value>>,
    defs: [ToolDef; 3],
    /// The definitions as `tools/list` items, converted once.
    wire: [Tool; 3],
    policies: [ToolPolicy; 3],
    /// The gateway, for the programs' calls (set once it is built).
    gateway: OnceLock<Weak<Gateway>>,
}

impl CodeMode {
    /// Code mode for `config`: its sandbox (fixed until restart: a reload changes the limits, not the sandbox).
    /// Nothing in `config` needing it (no code-mode caller, no script tool), it keeps no warm worker.
    pub(crate) fn new(config: &mcpgate_config::Config) -> Self {
        let mut sandbox = config.code_mode.sandbox.clone();
        if !CodeModeConfig::in_use(config) {
            sandbox.pool_size = 0;
        }
        let defs = definitions();
        let policies = defs.each_ref().map(|def| ToolPolicy {
            arguments: Some(ArgumentSchema::deferred(&def.input_schema)),
            retries: 0,
            breaker: None,
            rate_limit: Default::default(),
            cache: Default::default(),
        });
        let wire = defs.each_ref().map(|def| {
            let item = serde_json::to_value(def).and_then(serde_json::from_value);
            item.expect("code mode's own tool definitions are valid tools/list items")
        });
        Self {
            sandbox: mcpgate_sandbox::build(&sandbox),
            observed: Mutex::default(),
            defs,
            wire,
            policies,
            gateway: OnceLock::new(),
        }
    }

    /// Where the programs' calls go.
    pub(crate) fn attach(&self, gateway: &Arc<Gateway>) {
        let _ = self.gateway.set(Arc::downgrade(gateway));
    }

    /// The code-mode tools `config` offers: all three, or without `execute` when the sandbox is off.
    pub(crate) fn tools<'a>(&'a self, config: &CodeModeConfig) -> impl Iterator<Item = &'a ToolDef> + 'a {
        self.offered(config).map(|index| &self.defs[index])
    }

    /// Which of the three `config` offers, by index.
    fn offered(&self, config: &CodeModeConfig) -> impl Iterator<Item = usize> + use<'_> {
        let execute = config.sandbox.enabled;
        (0..self.defs.len()).filter(move |&index| execute || self.defs[index].name != EXECUTE)
    }

    /// `/status`'s `code_mode`.
    pub(crate) fn status(&self, config: &CodeModeConfig) -> Value {
        json!({
            "mode": config.mode,
            "sandbox": {
                "enabled": config.sandbox.enabled,
                "backend": self.sandbox.name(),
                "state": self.sandbox.status(),
            },
        })
    }

    /// `/ready`'s `sandbox` check: `None` when nothing in `config` needs the sandbox; else whether it can run
    /// programs (always, when `execute` is switched off: nothing will run).
    pub(crate) fn readiness(&self, config: &mcpgate_config::Config) -> Option<Result<(), String>> {
        let needed = CodeModeConfig::in_use(config);
        needed.then(|| if config.code_mode.sandbox.enabled { self.sandbox.ready() } else { Ok(()) })
    }
}

impl Gateway {
    /// The code-mode tools `principal` is offered under `live`'s configuration (none in direct mode).
    pub(crate) fn code_tools<'a>(
        &'a self,
        live: &'a Live,
        principal: &Principal,
    ) -> impl Iterator<Item = &'a ToolDef> + 'a {
        self.offered_to(live, principal).map(|index| &self.code.defs[index])
    }

    /// [`Gateway::code_tools`] as `tools/list` items.
    pub(crate) fn code_wire_tools<'a>(
        &'a self,
        live: &'a Live,
        principal: &Principal,
    ) -> impl Iterator<Item = &'a Tool> + 'a {
        self.offered_to(live, principal).map(|index| &self.code.wire[index])
    }

    /// Which code-mode tools, by index, `principal` is offered under `live`'s configuration.
    fn offered_to<'a>(&'a self, live: &'a Live, principal: &Principal) -> impl Iterator<Item = usize> + 'a {
        let in_code_mode = matches!(principal.mode, Mode::Code { .. });
        self.code.offered(&live.config.code_mode).filter(move |_| in_code_mode)
    }

    /// Whether `name` is a code-mode tool `principal` is offered under `live`'s configuration.
    pub(crate) fn offers_code_tool(&self, live: &Live, principal: &Principal, name: &str) -> bool {
        matches!(principal.mode, Mode::Code { .. })
            && self.code.tools(&live.config.code_mode).any(|def| def.name == name)
    }

    /// Run code-mode tool `name` (one [`Gateway::offers_code_tool`] says is offered) for `cx`, through the
    /// pipeline.
    pub(crate) async fn code_call(
        &self,
        door: &Door<'_>,
        cx: &CallContext,
        name: &str,
        arguments: JsonObject,
    ) -> Result<ToolOutcome, BackendError> {
        let index = self.code.defs.iter().position(|def| def.name == name);
        let gateway = self.code.gateway.get().and_then(Weak::upgrade);
        let (Some(index), Some(gateway)) = (index, gateway) else {
            return Err(BackendError::NotFound { kind: "tool", name: name.to_owned() });
        };
        let backend = CodeCall { gateway, live: door.live.clone(), registry: door.registry.clone() };
        let call = ToolCall { name: name.to_owned(), arguments };
        let policy = &self.code.policies[index];
        let run = door.live.pipeline.call_tool(cx, &backend, name, policy, call);
        self.metrics.timed_call(&self.metrics.tool(name), run).await
    }
}

/// One code-mode call's view of the gateway: the configuration and catalogue its request took.
struct CodeCall {
    gateway: Arc<Gateway>,
    live: Arc<Live>,
    registry: RegistryHandle,
}

#[async_trait]
impl Backend for CodeCall {
    fn name(&self) -> &str {
        "code_mode"
    }

    async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
        Ok(self.gateway.code.tools(&self.live.config.code_mode).cloned().collect())
    }

    fn may_contact_client(&self, _tool: &str) -> bool {
        false
    }

    async fn call_tool(&self, cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
        let inner = Arc::new(Principal { mode: Mode::Direct, ..(*cx.principal).clone() });
        let reachable = self.reachable(&inner);
        match call.name.as_str() {
            SEARCH => {
                let query = call.arguments.get("query").and_then(Value::as_str).unwrap_or_default();
                let default = u64::from(self.live.config.code_mode.search_limit);
                let limit = call
                    .arguments
                    .get("limit")
                    .and_then(Value::as_u64)
                    .unwrap_or(default)
                    .clamp(1, MAX_SEARCH);
                let mut hits = search::search(&entries(&reachable), query, limit as usize);
                // Two decimals tell the ranking; more are tokens for nothing.
                hits.iter_mut().for_each(|hit| hit.score = (hit.score * 100.0).round() / 100.0);
                let total = reachable.len();
                Ok(text(json!({ "tools": hits, "of": total })))
            }
            DESCRIBE => {
                let names: Vec<String> = match call.arguments.get("names") {
                    Some(Value::Array(names)) => {
                        names.iter().filter_map(Value::as_str).map(str::to_owned).collect()
                    }
                    Some(Value::String(name)) => vec![name.clone()],
                    _ => Vec::new(),
                };
                let who = cx.principal.id.clone();
                let observed = |tool: &str| {
                    self.gateway.code.observed.lock().get(&(who.clone(), tool.to_owned())).cloned()
                };
                let described = describe::describe(&entries(&reachable), &names, &observed);
                let mut out = described.declarations;
                if !described.unknown.is_empty() {
                    out.push_str(&format!(
                        "\n// Not found (or not yours to call): {}. Use search_tools to find names.\n",
                        described.unknown.join(", ")
                    ));
                }
                Ok(ToolOutcome::text(out))
            }
            EXECUTE => {
                let code = call.arguments.get("code").and_then(Value::as_str).unwrap_or_default().to_owned();
                // The audit line names the program by size and hash (the program itself only when the audit
                // log records arguments).
                let digest = hex::encode(sha2::Sha256::digest(code.as_bytes()));
                let detail = json!({ "code_bytes": code.len(), "code_sha256": digest });
                let bindings = reachable.into_iter().map(|(binding, _)| binding).collect();
                let outcome = self.execute(cx, inner, code, bindings).await;
                Ok(ToolOutcome { audit: Some(Box::new(detail)), ..outcome })
            }
            other => Err(BackendError::NotFound { kind: "tool", name: other.to_owned() }),
        }
    }
}

impl CodeCall {
    /// The tools `principal` may call directly, each with its name in programs.
    fn reachable(&self, principal: &Principal) -> Vec<(Binding, &ToolDef)> {
        let backends = self.registry.backends();
        let routes: Vec<_> =
            self.registry.routes().filter(|route| authz::may_use(principal, &route.def.name)).collect();
        // An upstream's tools come already prefixed (`fs__read_file`); in its namespace the prefix is noise.
        let named: Vec<(&str, &str, &str)> = routes
            .iter()
            .map(|route| {
                let backend = backends[route.backend].name.as_str();
                let own = route.original.strip_prefix(backend).and_then(|rest| rest.strip_prefix("__"));
                (backend, own.unwrap_or(&route.original), route.def.name.as_str())
            })
            .collect();
        let bindings = names::bind(&named);
        bindings
            .into_iter()
            .filter_map(|binding| {
                let def = self.registry.tool(&binding.tool).map(|route| &route.def)?;
                Some((binding, def))
            })
            .collect()
    }

    /// Run `code` in the sandbox, its calls dispatched as `principal`: `execute`'s answer.
    async fn execute(
        &self,
        cx: &CallContext,
        principal: Arc<Principal>,
        code: String,
        bindings: Vec<Binding>,
    ) -> ToolOutcome {
        let program = Program { code, bindings, input: None };
        let (run, calls) = self.run(cx, principal, program, false).await;
        let logs: Vec<String> = run
            .logs
            .iter()
            .map(|l| if l.level == "info" { l.text.clone() } else { format!("[{}] {}", l.level, l.text) })
            .collect();
        match run.outcome {
            Ok(value) => text(json!({ "result": value, "logs": logs, "calls": calls })),
            Err(failure) => {
                let detail = json!({ "error": failure.to_string(), "logs": logs, "calls": calls });
                ToolOutcome::error(detail.to_string())
            }
        }
    }

    /// Run `program` in the sandbox, its calls dispatched as `principal` (refused for script tools when
    /// `from_script`), and count it: the run and the calls it made.
    async fn run(
        &self,
        cx: &CallContext,
        principal: Arc<Principal>,
        program: Program,
        from_script: bool,
    ) -> (mcpgate_sandbox::Run, Vec<Value>) {
        let sandbox = &self.live.config.code_mode.sandbox;
        let calls = InnerCalls { call: self, cx: cx.clone(), principal, from_script, log: Mutex::default() };
        let started = Instant::now();
        let run = self.gateway.code.sandbox.run(program, Limits::from(sandbox), &calls).await;
        let calls = calls.log.into_inner();
        let outcome = match &run.outcome {
            Ok(_) => "ok",
            Err(Failure::Exception { .. } | Failure::Stalled) => "error",
            Err(Failure::Timeout(_)) => "timeout",
            Err(Failure::Memory(_)) => "memory",
            Err(Failure::Calls(_)) => "calls",
            Err(Failure::Output { .. }) => "output",
            Err(Failure::Cancelled) => "cancelled",
            Err(Failure::Sandbox(_)) => "sandbox",
        };
        let seconds = started.elapsed().as_secs_f64();
        let backend = self.gateway.code.sandbox.name();
        self.gateway.metrics.sandbox_execution(backend, outcome, seconds, calls.len());
        (run, calls)
    }

    /// Whether `tool` is a script tool (which script tools may not call: no chains of sandboxes).
    fn is_script(&self, tool: &str) -> bool {
        let route = self.registry.tool(tool);
        route.is_some_and(|route| self.registry.backends()[route.backend].kind == BackendKind::Script)
    }
}

/// Script tools' handlers run here: in the sandbox, as the caller, with the tools the caller may call (but no
/// other script tool).
#[async_trait]
impl ScriptRunner for CodeMode {
    async fn run(
        &self,
        cx: &CallContext,
        tool: &str,
        code: &str,
        input: JsonObject,
    ) -> Result<ToolOutcome, BackendError> {
        let unavailable = |reason: &str| BackendError::Unavailable {
            backend: tool.to_owned(),
            reason: reason.to_owned(),
            outage: None,
        };
        let gateway =
            self.gateway.get().and_then(Weak::upgrade).ok_or_else(|| unavailable("shutting down"))?;
        let live = gateway.live();
        if !live.config.code_mode.sandbox.enabled {
            return Err(unavailable("code_mode.sandbox.enabled is off: script tools cannot run"));
        }
        let call = CodeCall { registry: gateway.registry(), live, gateway };
        let principal = Arc::new(Principal { mode: Mode::Direct, ..(*cx.principal).clone() });
        let bindings = call
            .reachable(&principal)
            .into_iter()
            .map(|(binding, _)| binding)
            .filter(|b| !call.is_script(&b.tool));
        let program =
            Program { code: code.to_owned(), bindings: bindings.collect(), input: Some(input.into()) };
        let (run, _) = call.run(cx, principal, program, true).await;
        Ok(match run.outcome {
            Ok(Value::String(text)) => ToolOutcome::text(text),
            Ok(value) => ToolOutcome::text(value.to_string()).with_structured(value),
            Err(Failure::Sandbox(reason)) => return Err(unavailable(&reason)),
            Err(failure) => ToolOutcome::error(format!("{tool}: {failure}")),
        })
    }
}

/// The search and describe view of `reachable` tools.
fn entries<'a>(reachable: &'a [(Binding, &'a ToolDef)]) -> Vec<search::Entry<'a>> {
    reachable.iter().map(|(binding, tool)| search::Entry { binding, tool }).collect()
}

/// A program's tool calls, dispatched with its caller's principal and request id, each one logged.
struct InnerCalls<'a> {
    call: &'a CodeCall,
    cx: CallContext,
    principal: Arc<Principal>,
    /// The program is a script tool's: it may not call script tools.
    from_script: bool,
    log: Mutex<Vec<Value>>,
}

impl ToolCaller for InnerCalls<'_> {
    fn call(&self, tool: String, arguments: JsonObject) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            let started = Instant::now();
            let cx = CallContext {
                request_id: self.cx.request_id.clone(),
                principal: self.principal.clone(),
                cancel: self.cx.cancel.child_token(),
                timeout: None,
                progress_token: None,
                peer: None,
                surface: Surface::Code,
            };
            let door = Door::of(self.call.live.clone(), self.call.registry.clone());
            if self.from_script && self.call.is_script(&tool) {
                return Err(format!("{tool}: a script tool cannot call another script tool"));
            }
            let op = Operation::CallTool { name: tool.clone(), arguments };
            let answer = self.call.gateway.dispatch_at(&door, cx, op).await;
            let result = match answer {
                Ok(Answer::Tool(outcome)) => self.value_of(&tool, outcome),
                Ok(_) => Err(format!("{tool}: not a tool result")),
                Err(e) => Err(e.to_string()),
            };
            let ms = started.elapsed().as_secs_f64() * 1e3;
            self.log
                .lock()
                .push(json!({ "tool": tool, "ms": (ms * 10.0).round() / 10.0, "ok": result.is_ok() }));
            result
        })
    }
}

impl InnerCalls<'_> {
    /// What a tool's outcome is in a program: `structuredContent`; else one text item's JSON, or its text; else
    /// the content items. A tool error is the error's text. Remembers the shape of tools without an output
    /// schema for `describe_tools`.
    fn value_of(&self, tool: &str, outcome: ToolOutcome) -> Result<String, String> {
        let texts = || outcome.content.iter().filter_map(|item| item.get("text").and_then(Value::as_str));
        if outcome.is_error {
            let message: Vec<&str> = texts().collect();
            return Err(if message.is_empty() { format!("{tool} failed") } else { message.join("\n") });
        }
        let value = match (&outcome.structured_content, outcome.content.as_slice()) {
            (Some(structured), _) => structured.clone(),
            (None, [item]) if item.get("type").and_then(Value::as_str) == Some("text") => {
                let text = item.get("text").and_then(Value::as_str).unwrap_or_default();
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
            }
            (None, items) => Value::Array(items.to_vec()),
        };
        let json = value.to_string();
        let described = self.call.registry.tool(tool).is_some_and(|route| route.def.output_schema.is_some());
        if !described && json.len() <= OBSERVED_BYTES {
            let key = (self.principal.id.clone(), tool.to_owned());
            let mut observed = self.call.gateway.code.observed.lock();
            if observed.len() < OBSERVED_TOOLS || observed.contains_key(&key) {
                observed.insert(key, value);
            }
        }
        Ok(json)
    }
}

/// A result of JSON as one compact text item.
fn text(value: Value) -> ToolOutcome {
    ToolOutcome::text(value.to_string())
}

/// The three tools' definitions.
fn definitions() -> [ToolDef; 3] {
    [
        ToolDef::new(
            SEARCH,
            "Search the tools you can call from `execute`. Ranked by relevance over names, descriptions and \
             parameter names. Returns each tool's path in programs (tools.<namespace>.<name>), a one-line \
             description and a compact signature. An empty query lists tools by name.",
            json!({
                "type": "object",
                "properties": {
                    "query": { "type": "string", "description": "What you need, in words: \"read a file\", \"github issues\"." },
                    "limit": { "type": "integer", "minimum": 1, "maximum": MAX_SEARCH, "description": "Most results (default 10)." }
                },
                "required": ["query"],
                "additionalProperties": false
            }),
        ),
        ToolDef::new(
            DESCRIBE,
            "TypeScript declarations of tools, exactly as `execute` programs call them: parameters with their \
             documentation, and what each call resolves to.",
            json!({
                "type": "object",
                "properties": {
                    "names": {
                        "type": "array", "items": { "type": "string" }, "minItems": 1,
                        "description": "Tool names or paths from search_tools (`fs__read_file` or `tools.fs.read_file`)."
                    }
                },
                "required": ["names"],
                "additionalProperties": false
            }),
        ),
        ToolDef::new(
            EXECUTE,
            "Run a JavaScript program (the body of an async function) that calls tools and returns one result. \
             Tools are async functions: `const r = await tools.<namespace>.<name>({...})`; run calls in parallel \
             with Promise.all; a failed call throws. `console.log` output is returned. `return` the value you \
             need — only it, the logs and the list of calls come back, so filter and aggregate in the program. \
             No network, file system, timers or modules: only the tools.",
            json!({
                "type": "object",
                "properties": {
                    "code": { "type": "string", "description": "The program. Example: `const t = await tools.time.get_current_time({timezone: \"UTC\"}); return t;`" }
                },
                "required": ["code"],
                "additionalProperties": false
            }),
        ),
    ]
}
