//! `kind: command` — tools that run a program, never through a shell.
//!
//! Each `args` item is a template that renders to exactly one argument (an item rendering empty is dropped),
//! so an argument value is never split, globbed or interpreted: `; rm -rf /` arrives as those characters. An
//! item that is exactly `{{ name }}` is dropped when that argument is absent (an optional argument), and
//! expands to one argument per element when it is an array (strings, numbers, booleans) — the way to pass a
//! list of files. The program's environment is empty but for
//! `env_allow` (copied from the gateway's environment when the config loads) and `env`.
//!
//! Process lifetime. The program leads its own process group, and one thread per call owns the child: it
//! spawns it, waits for it to exit *without reaping it* (`waitid(WNOWAIT)`), kills the whole group — whatever
//! the program left running does not outlive the call — and only then reaps it. While the exited leader is
//! an unreaped zombie its pid, which is the group id, cannot be reused, so signalling the group can never hit
//! an unrelated process. The call itself holds a `GroupKiller`: a timeout, an oversized output or the call
//! future being dropped (client cancellation, the gateway's deadline) kills the group, unless the child was
//! reaped already. A blocking waiter thread rather than `tokio::process` keeps that kill-then-reap order
//! simple and needs no SIGCHLD machinery.

mod process;

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
    io,
    os::unix::{fs::PermissionsExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    time::Duration,
};

use async_trait::async_trait;
use mcpgate_config::{CommandBackend, CommandCall, OutputFormat, Problem, ToolConfig};
use mcpgate_core::{Backend, BackendError, CallContext, ToolCall, ToolDef, ToolOutcome};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use self::process::{Finished, Ran, RunError, run};
use crate::{
    declared::tool_def,
    template::{self, Templates},
};

/// Characters of standard error (or output) quoted in a tool error.
const EXCERPT_CHARS: usize = 1000;

/// The tools of one `kind: command` backend.
pub struct CommandTools {
    name: String,
    templates: Templates,
    tools: BTreeMap<String, Tool>,
    defs: Vec<ToolDef>,
}

/// One tool, resolved: absolute program, compiled templates, captured environment.
struct Tool {
    program: PathBuf,
    args: Vec<Arg>,
    cwd: Option<PathBuf>,
    env: Vec<(String, OsString)>,
    /// Name of the stdin template.
    stdin: Option<String>,
    timeout: Duration,
    max_stdout: usize,
    max_stderr: usize,
    output: OutputFormat,
}

/// One `args` item.
struct Arg {
    /// Template name (its config path).
    template: String,
    /// `args[2]`, for tool errors.
    label: String,
    /// The variables the template reads, to name the missing ones when rendering fails.
    reads: Vec<String>,
    /// When the item is exactly `{{ name }}`: `name`, whose array value expands to several arguments.
    sole: Option<String>,
}

// === impl CommandTools ===

impl CommandTools {
    /// Compile the templates and resolve the programs; fails with every problem [`check`] reports.
    pub fn new(name: &str, config: &CommandBackend) -> Result<Self, String> {
        compile(name, &format!("backends.{name}"), config)
            .map_err(|problems| problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
    }

    /// The arguments after the program, rendered. `Err` is a tool error: the caller's arguments do not fit.
    fn argv(&self, tool: &Tool, context: &Value) -> Result<Vec<String>, String> {
        let mut argv = Vec::with_capacity(tool.args.len());
        for arg in &tool.args {
            // An item that is exactly `{{ name }}` is dropped when the argument is absent (optional arguments).
            if let Some(name) = &arg.sole
                && context.get(name).is_none_or(Value::is_null)
            {
                continue;
            }
            if let Some(name) = &arg.sole
                && let Some(Value::Array(items)) = context.get(name)
            {
                for item in items {
                    argv.push(match item {
                        Value::String(s) => s.clone(),
                        Value::Number(_) | Value::Bool(_) => item.to_string(),
                        _ => {
                            return Err(format!(
                                "{}: the elements of argument {name:?} must be strings, numbers or booleans",
                                arg.label
                            ));
                        }
                    });
                }
                continue;
            }
            let rendered = self.templates.render(&arg.template, context).map_err(|error| {
                let missing: Vec<String> = arg
                    .reads
                    .iter()
                    .filter(|v| context.get(v.as_str()).is_none())
                    .map(|v| format!("{v:?}"))
                    .collect();
                if missing.is_empty() {
                    format!("cannot render {}: {error}", arg.label)
                } else {
                    format!("cannot render {}: missing argument {}", arg.label, missing.join(", "))
                }
            })?;
            if !rendered.is_empty() {
                argv.push(rendered);
            }
        }
        if let Some(bad) = argv.iter().position(|a| a.contains('\0')) {
            return Err(format!("argument {} of the program contains a NUL character", bad + 1));
        }
        Ok(argv)
    }
}

#[cfg(feature = "fuzzing")]
impl CommandTools {
    /// What a call of `tool` with `arguments` would run with (or the tool error); `None` for an unknown tool.
    /// For the fuzz targets.
    pub(crate) fn fuzz_render(
        &self,
        tool: &str,
        arguments: &Value,
    ) -> Option<Result<crate::fuzz::Rendered, String>> {
        let tool = self.tools.get(tool)?;
        let rendered = self.argv(tool, arguments).and_then(|argv| {
            let stdin = tool.stdin.as_ref().map(|name| self.templates.render(name, arguments)).transpose()?;
            Ok(crate::fuzz::Rendered { argv, stdin })
        });
        Some(rendered)
    }
}

#[async_trait]
impl Backend for CommandTools {
    fn name(&self) -> &str {
        &self.name
    }

    fn may_contact_client(&self, _tool: &str) -> bool {
        false
    }

    async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
        Ok(self.defs.clone())
    }

    async fn call_tool(&self, _cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
        let Some(tool) = self.tools.get(&call.name) else {
            return Err(BackendError::NotFound { kind: "tool", name: call.name });
        };
        let context = Value::Object(call.arguments);
        let argv = match self.argv(tool, &context) {
            Ok(argv) => argv,
            Err(message) => return Ok(ToolOutcome::error(message)),
        };
        let input = match &tool.stdin {
            None => None,
            Some(template) => match self.templates.render(template, &context) {
                Ok(input) => Some(input),
                Err(error) => return Ok(ToolOutcome::error(format!("cannot render stdin: {error}"))),
            },
        };
        let unavailable = |reason: String| BackendError::unavailable(&self.name, reason);
        match run(tool, argv, input).await {
            Ok(Ran::Finished(finished)) => Ok(outcome(tool.output, finished)),
            Ok(Ran::StdoutTooLarge) => Ok(ToolOutcome::error(format!(
                "the program's standard output exceeds max_stdout ({} bytes); it was killed",
                tool.max_stdout
            ))),
            Err(RunError::Timeout) => Err(BackendError::Timeout(tool.timeout)),
            Err(RunError::Spawn(error)) => Err(unavailable(format!("{}: {error}", tool.program.display()))),
            Err(RunError::Io(error)) => Err(unavailable(error.to_string())),
        }
    }
}

// === config: compile and check ===

/// Problems only this backend can see: templates that do not compile or read unknown variables, programs
/// not found, working directories missing, `${VAR}` unset — all of them, each with its path.
pub fn check(path: &str, config: &CommandBackend) -> Vec<Problem> {
    compile("", path, config).err().unwrap_or_default()
}

fn compile(name: &str, path: &str, config: &CommandBackend) -> Result<CommandTools, Vec<Problem>> {
    let mut templates = Templates::default();
    let mut problems = Vec::new();
    let mut tools = BTreeMap::new();
    for (tool_name, tool) in &config.tools {
        let path = format!("{path}.tools.{tool_name}.call");
        if let Some(tool) = compile_tool(&path, tool, &mut templates, &mut problems) {
            tools.insert(tool_name.clone(), tool);
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let defs = config.tools.iter().map(|(name, tool)| tool_def(name, tool)).collect();
    Ok(CommandTools { name: name.to_owned(), templates, tools, defs })
}

/// One tool's call, compiled into `templates`; `None` (with `problems` extended) when anything is wrong.
fn compile_tool(
    path: &str,
    tool: &ToolConfig<CommandCall>,
    templates: &mut Templates,
    problems: &mut Vec<Problem>,
) -> Option<Tool> {
    let before = problems.len();
    let call = &tool.call;
    let allowed = template::argument_names(&tool.input_schema);
    let mut add = |name: String, source: &str, problems: &mut Vec<Problem>| {
        add_template(templates, name, source, &allowed).map_err(|problem| problems.push(problem)).ok()
    };

    let program = resolve_program(&call.program)
        .map_err(|message| problems.push(Problem::new(format!("{path}.program"), message)))
        .ok();
    let mut args = Vec::with_capacity(call.args.len());
    for (i, source) in call.args.iter().enumerate() {
        if let Some((template, reads)) = add(format!("{path}.args[{i}]"), source, problems) {
            let sole = template::sole_variable(source).map(str::to_owned);
            args.push(Arg { template, label: format!("args[{i}]"), reads, sole });
        }
    }
    let stdin = call.stdin.as_ref().and_then(|source| add(format!("{path}.stdin"), source, problems));
    let cwd = call.cwd.as_ref().and_then(|cwd| match directory(cwd) {
        Ok(cwd) => Some(cwd),
        Err(message) => {
            problems.push(Problem::new(format!("{path}.cwd"), message));
            None
        }
    });
    let mut env = Vec::new();
    for (i, name) in call.env_allow.iter().enumerate() {
        match env_name(name) {
            Err(message) => problems.push(Problem::new(format!("{path}.env_allow[{i}]"), message)),
            Ok(()) => env.extend(std::env::var_os(name).map(|value| (name.clone(), value))),
        }
    }
    for (name, value) in &call.env {
        let at = format!("{path}.env.{name}");
        match env_name(name).and_then(|()| template::expand_env(value)) {
            Ok(value) => env.push((name.clone(), value.into())),
            Err(message) => problems.push(Problem::new(at, message)),
        }
    }

    if problems.len() > before {
        return None;
    }
    Some(Tool {
        program: program?,
        args,
        cwd,
        env,
        stdin: stdin.map(|(name, _)| name),
        timeout: call.timeout.0,
        max_stdout: usize::try_from(call.max_stdout.0).unwrap_or(usize::MAX),
        max_stderr: usize::try_from(call.max_stderr.0).unwrap_or(usize::MAX),
        output: call.output,
    })
}

/// Compile one template; its name back with the variables it reads.
fn add_template(
    templates: &mut Templates,
    name: String,
    source: &str,
    allowed: &BTreeSet<String>,
) -> Result<(String, Vec<String>), Problem> {
    if let Err(message) = templates.add(&name, source, allowed) {
        return Err(Problem::new(name, message));
    }
    let reads = templates
        .env_mut()
        .get_template(&name)
        .map(|t| t.undeclared_variables(false).into_iter().collect())
        .unwrap_or_default();
    Ok((name, reads))
}

/// The program as an absolute path: a name without `/` looked up on the gateway's `PATH`, once.
fn resolve_program(program: &str) -> Result<PathBuf, String> {
    find_program(program, &std::env::var_os("PATH").unwrap_or_default(), None)
}

/// `program` as an absolute path: a name without `/` looked up on `search` (a `PATH` value), a path with one
/// taken from `cwd` (else the gateway's working directory); it must be an executable file.
pub(crate) fn find_program(
    program: &str,
    search: &std::ffi::OsStr,
    cwd: Option<&Path>,
) -> Result<PathBuf, String> {
    if program.is_empty() {
        return Err("empty program".into());
    }
    if program.contains('/') {
        let path = cwd.map_or_else(|| PathBuf::from(program), |cwd| cwd.join(program));
        let path = std::path::absolute(path).map_err(|e| format!("{program}: {e}"))?;
        return executable(&path).map(|()| path).map_err(|why| format!("{program}: {why}"));
    }
    std::env::split_paths(search)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate).is_ok())
        .and_then(|found| std::path::absolute(found).ok())
        .ok_or_else(|| format!("{program:?} not found on PATH"))
}

fn executable(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| describe_io(&e))?;
    if !meta.is_file() {
        return Err("not a file".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err("not executable".into());
    }
    Ok(())
}

/// The working directory as an absolute path (the child's, so it must not depend on the gateway's later).
fn directory(cwd: &Path) -> Result<PathBuf, String> {
    let shown = cwd.display();
    let meta = std::fs::metadata(cwd).map_err(|e| format!("{shown}: {}", describe_io(&e)))?;
    if !meta.is_dir() {
        return Err(format!("{shown}: not a directory"));
    }
    std::path::absolute(cwd).map_err(|e| format!("{shown}: {e}"))
}

fn env_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return Err(format!("{name:?} is not an environment variable name"));
    }
    Ok(())
}

fn describe_io(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "no such file or directory".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => error.to_string(),
    }
}

/// The result of a program that ran to its end.
///
/// Exit status 0: standard output as text; with `output: json` also as `structuredContent` — an object as
/// it is, any other JSON value wrapped as `{"result": value}` (MCP wants an object there). Anything else is a
/// tool error quoting standard error (standard output when standard error is empty).
fn outcome(format: OutputFormat, run: Finished) -> ToolOutcome {
    if !run.status.success() {
        let why = match (run.status.code(), run.status.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => match Signal::try_from(signal) {
                Ok(signal) => format!("killed by {signal}"),
                Err(_) => format!("killed by signal {signal}"),
            },
            (None, None) => "failed".to_owned(),
        };
        let (quoted, cut) = if String::from_utf8_lossy(&run.stderr).trim().is_empty() {
            (excerpt(&run.stdout), None)
        } else {
            (excerpt(&run.stderr), run.stderr_cut)
        };
        let mut message = if quoted.is_empty() { why } else { format!("{why}: {quoted}") };
        if let Some(limit) = cut {
            message.push_str(&format!(" (standard error cut at max_stderr, {limit} bytes)"));
        }
        return ToolOutcome::error(message);
    }
    let text = String::from_utf8_lossy(&run.stdout).into_owned();
    match format {
        OutputFormat::Text => ToolOutcome::text(text),
        OutputFormat::Json => match serde_json::from_slice::<Value>(&run.stdout) {
            Ok(object @ Value::Object(_)) => ToolOutcome::text(text).with_structured(object),
            Ok(other) => ToolOutcome::text(text).with_structured(json!({ "result": other })),
            Err(error) => ToolOutcome::error(format!(
                "the program's output is not JSON ({error}): {}",
                excerpt(&run.stdout)
            )),
        },
    }
}

/// The start of `bytes` as text, trimmed, at most [`EXCERPT_CHARS`] characters (cut on a char boundary).
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_cut_on_char_boundaries() {
        let long = "é".repeat(EXCERPT_CHARS + 5);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt(b"  short\n"), "short");
    }

    #[test]
    fn programs_resolve_on_path_or_as_paths() {
        assert!(resolve_program("sh").unwrap().is_absolute());
        assert!(resolve_program("/bin/sh").is_ok());
        assert!(resolve_program("surely-not-a-program-here").unwrap_err().contains("not found on PATH"));
        assert!(resolve_program("/etc/passwd").unwrap_err().contains("not executable"));
        assert!(resolve_program("/").unwrap_err().contains("not a file"));
    }
}
