//! The `code_mode` section: whether clients meet the tools directly or write programs that call them
//! (`search_tools`, `describe_tools`, `execute`), and the sandbox those programs run in.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ByteSize, Config, HumanDuration, validate::Problem};

/// Code mode. Off (`mode: direct`) by default. In `code` mode a client is offered `search_tools`,
/// `describe_tools` and `execute` instead of the catalogue; in `hybrid` mode also the tools `direct_tools`
/// names. API keys may choose their own mode (`security.api_keys[].mode`), so one endpoint serves direct and
/// code-mode clients at once. A program's tool calls go through the same authorization, limits, audit and
/// metrics as direct calls, with its caller's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CodeModeConfig {
    /// How callers without a mode of their own (anonymous, tokens, stdio, keys without `mode`) meet the tools
    /// (`EXECUTION_MODE`): `direct`, `code` or `hybrid`; also the guide's `mcp_only`, `code_execution`.
    pub mode: ExecutionMode,
    /// Tools still offered directly in `hybrid` mode, as globs of public names (`time__*`, `echo`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub direct_tools: Vec<String>,
    /// Where programs run, and their limits.
    pub sandbox: SandboxConfig,
    /// Most hits `search_tools` returns when the caller gives no `limit` (the caller may ask for up to 50).
    pub search_limit: u32,
}

impl Default for CodeModeConfig {
    fn default() -> Self {
        Self {
            mode: ExecutionMode::Direct,
            direct_tools: Vec::new(),
            sandbox: SandboxConfig::default(),
            search_limit: 10,
        }
    }
}

impl CodeModeConfig {
    /// Whether anything needs the sandbox: a caller that can be in code mode (the default mode, or a key's), or
    /// an enabled script backend.
    pub fn in_use(config: &Config) -> bool {
        let scripts =
            config.backends.values().any(|b| matches!(b, crate::BackendConfig::Script(s) if s.enabled));
        scripts
            || config.code_mode.mode != ExecutionMode::Direct
            || config.security.api_keys.iter().any(|key| key.mode.is_some_and(|m| m != ExecutionMode::Direct))
    }
}

/// How a caller meets the tools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    /// Every tool listed and called directly.
    #[default]
    #[serde(alias = "mcp_only")]
    Direct,
    /// Only `search_tools`, `describe_tools` and `execute`.
    #[serde(alias = "code_execution")]
    Code,
    /// The code-mode tools plus `direct_tools`.
    Hybrid,
}

/// Where programs run. No backend ever falls back to another: one that cannot run here fails `/ready` and every
/// `execute`, naming why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Whether `execute` is offered at all (`SANDBOX_ENABLED`). Off: code mode offers only `search_tools` and
    /// `describe_tools`. Code never runs outside a sandbox.
    pub enabled: bool,
    /// The sandbox (`SANDBOX_BACKEND`): `quickjs`, the engine in the gateway's process with its own heap,
    /// stack and time limits and no access to anything but the tools; `process`, each program in a worker
    /// process of its own under bubblewrap (namespaces, no network, an empty read-only root, a memory and
    /// pids cgroup, Landlock and seccomp; needs `bwrap` and root or delegated cgroups); `gvisor` (or
    /// `runsc`), the same worker under gVisor's `runsc`; `docker` (or `podman`), the same worker in a container
    /// of `image` run by `container_engine` (no network, read-only root, uid 65534, no capabilities, the
    /// engine's memory and pids limits). `firecracker` is refused: it needs KVM.
    pub backend: SandboxBackend,
    /// Wall-clock time one program may run, its tool calls included (`MAX_EXECUTION_TIME`, in seconds). The
    /// request's own deadline (`server.request_timeout`) still applies to the whole `execute`.
    pub max_execution_time: HumanDuration,
    /// Heap one program may use (`MAX_MEMORY_MB`, in MiB).
    pub max_memory: ByteSize,
    /// Native stack the interpreter may use; deep recursion fails here with a `RangeError`.
    pub max_stack: ByteSize,
    /// Largest JSON-encoded value a program may return.
    pub max_output: ByteSize,
    /// `console` output kept per program; what is over it is dropped with a marker.
    pub max_logs: ByteSize,
    /// Tool calls one program may make; the next one ends it with an error.
    pub max_calls: u32,
    /// Programs running at once on this node; more wait for a slot (within their deadline).
    pub max_concurrent: u32,
    /// `process`, `gvisor` and `docker`: workers kept started, confined and waiting for a program, so a run
    /// does not wait for one to start (each runs one program, then a new one is started in the background). 0
    /// starts each worker when its program comes.
    pub pool_size: u32,
    /// `process` and `gvisor`: the `bwrap` or `runsc` executable. Unset: found on `PATH`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// `process` and `gvisor`: the executable run as `<it> sandbox-worker` in the sandbox. Unset: this mcpgate
    /// binary (set it where the running binary is not the one to use, as in tests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_command: Option<String>,
    /// `docker`: the container engine's executable, `podman` or `docker` (or a compatible one). Unset:
    /// `podman` found on `PATH`, else `docker`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_engine: Option<String>,
    /// `docker`: the image workers run in, which holds the mcpgate binary at `/mcpgate` (and its libraries);
    /// `scripts/sandbox-image.sh` builds it locally from a binary. It is never pulled: a missing image makes
    /// the sandbox unavailable.
    pub image: String,
}

impl SandboxConfig {
    /// The image the `docker` sandbox runs by default (`scripts/sandbox-image.sh` builds it).
    pub const DEFAULT_IMAGE: &str = "localhost/mcpgate-sandbox:latest";
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            backend: SandboxBackend::Quickjs,
            max_execution_time: HumanDuration(std::time::Duration::from_secs(30)),
            max_memory: ByteSize(64 << 20),
            max_stack: ByteSize(512 << 10),
            max_output: ByteSize(1 << 20),
            max_logs: ByteSize(64 << 10),
            max_calls: 100,
            max_concurrent: 8,
            pool_size: 2,
            runner: None,
            worker_command: None,
            container_engine: None,
            image: Self::DEFAULT_IMAGE.to_owned(),
        }
    }
}

/// The sandboxes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SandboxBackend {
    /// QuickJS in the gateway's process.
    #[default]
    Quickjs,
    /// QuickJS in a worker process of its own per program, under bubblewrap, a cgroup, Landlock and seccomp.
    Process,
    /// The same worker under gVisor (`runsc`).
    #[serde(alias = "runsc")]
    Gvisor,
    /// The same worker in a container run by Docker or Podman.
    #[serde(alias = "podman")]
    Docker,
    /// Firecracker microVMs: not supported (no KVM guests here); refused at load.
    Firecracker,
}

impl SandboxBackend {
    /// Every backend, in declaration order (metrics keep one series each).
    pub const ALL: [Self; 5] = [Self::Quickjs, Self::Process, Self::Gvisor, Self::Docker, Self::Firecracker];

    /// Its name in config, metrics and `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quickjs => "quickjs",
            Self::Process => "process",
            Self::Gvisor => "gvisor",
            Self::Docker => "docker",
            Self::Firecracker => "firecracker",
        }
    }
}

/// `EXECUTION_MODE`, `SANDBOX_BACKEND`, `SANDBOX_ENABLED`, `MAX_EXECUTION_TIME` (seconds, or `30s`) and
/// `MAX_MEMORY_MB` (MiB, or a size with its unit).
pub(crate) fn apply_env(code: &mut CodeModeConfig, get: impl Fn(&str) -> Option<String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut bad = |name: &str, message: String| problems.push(Problem::new(format!("env {name}"), message));
    if let Some(value) = get("EXECUTION_MODE") {
        match serde_json::from_value(serde_json::Value::String(value.to_ascii_lowercase())) {
            Ok(mode) => code.mode = mode,
            Err(_) => bad(
                "EXECUTION_MODE",
                format!("{value:?}: use direct, code or hybrid (or mcp_only, code_execution)"),
            ),
        }
    }
    if let Some(value) = get("SANDBOX_BACKEND") {
        match value.to_ascii_lowercase().as_str() {
            "quickjs" => code.sandbox.backend = SandboxBackend::Quickjs,
            "process" => code.sandbox.backend = SandboxBackend::Process,
            "gvisor" | "runsc" => code.sandbox.backend = SandboxBackend::Gvisor,
            "docker" | "podman" => code.sandbox.backend = SandboxBackend::Docker,
            "firecracker" => code.sandbox.backend = SandboxBackend::Firecracker,
            _ => bad("SANDBOX_BACKEND", format!("{value:?}: use quickjs, process, gvisor or docker")),
        }
    }
    if let Some(value) = get("SANDBOX_ENABLED") {
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => code.sandbox.enabled = true,
            "false" | "0" | "no" | "off" => code.sandbox.enabled = false,
            _ => bad("SANDBOX_ENABLED", format!("{value:?}: use true or false")),
        }
    }
    if let Some(value) = get("MAX_EXECUTION_TIME") {
        let parsed = match value.parse::<u64>() {
            Ok(seconds) => Ok(HumanDuration(std::time::Duration::from_secs(seconds))),
            Err(_) => value.parse::<HumanDuration>().map_err(|e| e.to_string()),
        };
        match parsed {
            Ok(time) => code.sandbox.max_execution_time = time,
            Err(e) => bad("MAX_EXECUTION_TIME", format!("{e}; or whole seconds, e.g. 30")),
        }
    }
    if let Some(value) = get("MAX_MEMORY_MB") {
        let parsed = match value.parse::<u64>() {
            Ok(mib) => {
                mib.checked_mul(1 << 20).map(ByteSize).ok_or_else(|| format!("{value:?} is too large"))
            }
            Err(_) => value.parse::<ByteSize>(),
        };
        match parsed {
            Ok(size) => code.sandbox.max_memory = size,
            Err(e) => bad("MAX_MEMORY_MB", format!("{e}; or whole MiB, e.g. 512")),
        }
    }
    problems
}

/// What the schema cannot say: limits that leave a program room to run, and a backend that can run here.
pub(crate) fn problems(config: &Config, problems: &mut Vec<Problem>) {
    let sandbox = &config.code_mode.sandbox;
    let mut check = |field: &str, ok: bool, message: &str| {
        if !ok {
            problems.push(Problem::new(format!("code_mode.sandbox.{field}"), message.to_owned()));
        }
    };
    check(
        "max_execution_time",
        sandbox.max_execution_time.0 >= std::time::Duration::from_millis(10),
        "at least 10ms",
    );
    check(
        "max_memory",
        sandbox.max_memory.0 >= 4 << 20,
        "at least 4MiB (the engine itself needs about 1MiB)",
    );
    check("max_memory", sandbox.max_memory.0 <= 16 << 30, "at most 16GiB");
    check("max_stack", (64 << 10..=64 << 20).contains(&sandbox.max_stack.0), "between 64KiB and 64MiB");
    check("max_output", sandbox.max_output.0 >= 1 << 10, "at least 1KiB");
    check("max_calls", sandbox.max_calls >= 1, "at least 1");
    check("max_concurrent", sandbox.max_concurrent >= 1, "at least 1");
    check("pool_size", sandbox.pool_size <= 64, "at most 64");
    for (field, value) in [
        ("runner", &sandbox.runner),
        ("worker_command", &sandbox.worker_command),
        ("container_engine", &sandbox.container_engine),
    ] {
        check(field, value.as_deref().is_none_or(|p| p.starts_with('/')), "an absolute path");
    }
    let image = &sandbox.image;
    check(
        "image",
        !image.is_empty()
            && !image.starts_with('-')
            && !image.chars().any(|c| c.is_whitespace() || c.is_control()),
        "an image name, such as localhost/mcpgate-sandbox:latest",
    );
    if sandbox.backend == SandboxBackend::Firecracker {
        problems.push(Problem::new(
            "code_mode.sandbox.backend",
            "firecracker needs KVM guests, which mcpgate does not support; use quickjs, process, gvisor or \
             docker (mcpgate never runs code outside the sandbox you chose)",
        ));
    }
    let search = config.code_mode.search_limit;
    if !(1..=50).contains(&search) {
        problems.push(Problem::new("code_mode.search_limit", format!("{search}: between 1 and 50")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)], code: &mut CodeModeConfig) -> Vec<Problem> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        apply_env(code, |name| vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn the_guides_variables_set_the_mode_and_the_limits() {
        let mut code = CodeModeConfig::default();
        let problems = env(
            &[("EXECUTION_MODE", "code_execution"), ("MAX_EXECUTION_TIME", "5"), ("MAX_MEMORY_MB", "128")],
            &mut code,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(code.mode, ExecutionMode::Code);
        assert_eq!(code.sandbox.max_execution_time.0, std::time::Duration::from_secs(5));
        assert_eq!(code.sandbox.max_memory.0, 128 << 20);
        assert!(env(&[("EXECUTION_MODE", "mcp_only"), ("SANDBOX_ENABLED", "false")], &mut code).is_empty());
        assert_eq!((code.mode, code.sandbox.enabled), (ExecutionMode::Direct, false));
        assert!(env(&[("EXECUTION_MODE", "HYBRID")], &mut code).is_empty());
        assert_eq!(code.mode, ExecutionMode::Hybrid);
    }

    #[test]
    fn bad_values_and_unavailable_backends_are_named() {
        let mut code = CodeModeConfig::default();
        let problems = env(
            &[("EXECUTION_MODE", "turbo"), ("SANDBOX_BACKEND", "lxc"), ("MAX_MEMORY_MB", "lots")],
            &mut code,
        );
        let paths: Vec<_> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 3, "{paths:?}");
        assert!(paths[1].contains("use quickjs, process, gvisor or docker"), "{paths:?}");
        assert_eq!(code, CodeModeConfig::default(), "nothing applied from a bad value");
    }

    #[test]
    fn the_process_gvisor_and_docker_backends_are_chosen_by_env() {
        let mut code = CodeModeConfig::default();
        assert!(env(&[("SANDBOX_BACKEND", "PROCESS")], &mut code).is_empty());
        assert_eq!(code.sandbox.backend, SandboxBackend::Process);
        for name in ["gvisor", "runsc"] {
            assert!(env(&[("SANDBOX_BACKEND", name)], &mut code).is_empty());
            assert_eq!(code.sandbox.backend, SandboxBackend::Gvisor);
        }
        let problems = env(&[("SANDBOX_BACKEND", "kvm")], &mut code);
        assert!(problems[0].to_string().contains("use quickjs"), "{problems:?}");
        assert_eq!(code.sandbox.backend, SandboxBackend::Gvisor, "a refused value changes nothing");
        for name in ["docker", "Podman"] {
            assert!(env(&[("SANDBOX_BACKEND", name)], &mut code).is_empty());
            assert_eq!(code.sandbox.backend, SandboxBackend::Docker);
        }
        let parsed: SandboxConfig = serde_json::from_value(serde_json::json!({"backend": "runsc"})).unwrap();
        assert_eq!((parsed.backend, parsed.pool_size), (SandboxBackend::Gvisor, 2));
        let parsed: SandboxConfig = serde_json::from_value(serde_json::json!({"backend": "podman"})).unwrap();
        assert_eq!(
            (parsed.backend, parsed.image.as_str()),
            (SandboxBackend::Docker, SandboxConfig::DEFAULT_IMAGE)
        );
        assert_eq!(
            SandboxBackend::ALL.map(SandboxBackend::as_str),
            ["quickjs", "process", "gvisor", "docker", "firecracker"]
        );
    }
}
