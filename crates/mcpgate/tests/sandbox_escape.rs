//! The sandboxes against programs that try to get out, on every backend this machine can run: `quickjs` (for
//! comparison), `process` (bubblewrap), `gvisor` (runsc) and `docker` (Podman or Docker). Each attack ends
//! with its precise failure within its limit, and no worker process (or container) outlives its run. The
//! OS-level confinement of a live pooled worker is checked from outside (/proc, the engine's `inspect`):
//! no_new_privs, seccomp, uid 65534, its own network namespace, its cgroup's limits, an empty or read-only
//! root. A sandbox whose runner, engine or image is missing fails closed.
//!
//! The `process`, `gvisor` and `docker` tests are skipped, loudly, where bwrap / runsc / podman and docker
//! are missing or cgroups cannot be made — unless `MCPGATE_REQUIRE_SANDBOXES=1` (scripts/test.sh), when they
//! fail. The `docker` tests build their image (`IMAGE`) from this binary with scripts/sandbox-image.sh first.

#![allow(clippy::unwrap_used)]

use std::{
    collections::HashMap,
    future::Future,
    io::ErrorKind,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use mcpgate_config::{ByteSize, HumanDuration, SandboxBackend, SandboxConfig};
use mcpgate_sandbox::{Binding, Failure, Limits, Program, Run, Sandbox, ToolCaller};
use serde_json::{Value, json};
use tokio::time::Instant;

/// The binary the workers run.
const BIN: &str = env!("CARGO_BIN_EXE_mcpgate");

/// The image the `docker` workers run: this binary, built by the tests (not the operators' image).
const IMAGE: &str = "localhost/mcpgate-sandbox:test";

/// The tests that start workers count them: one at a time (each test has its own runtime; tokio's mutex does
/// not mind).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TIME: Duration = Duration::from_secs(2);

fn config(backend: SandboxBackend, pool_size: u32) -> SandboxConfig {
    SandboxConfig {
        backend,
        pool_size,
        worker_command: Some(BIN.into()),
        max_execution_time: HumanDuration(TIME),
        max_memory: ByteSize(64 << 20),
        max_calls: 20,
        image: IMAGE.into(),
        ..SandboxConfig::default()
    }
}

fn limits(config: &SandboxConfig) -> Limits {
    Limits::from(config)
}

/// `echo` answers with its arguments, `hang` never answers; counts the calls.
#[derive(Default)]
struct Tools {
    calls: AtomicUsize,
}

impl ToolCaller for Tools {
    fn call(
        &self,
        tool: String,
        arguments: serde_json::Map<String, Value>,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            match tool.as_str() {
                "echo" => Ok(Value::Object(arguments).to_string()),
                "hang" => std::future::pending().await,
                // A result nearly as big as the program's whole heap.
                "big" => Ok(format!("\"{}\"", "x".repeat(60 << 20))),
                _ => Err(format!("{tool}: no such tool")),
            }
        })
    }
}

fn program(code: &str) -> Program {
    let bindings = ["echo", "hang", "big"]
        .map(|t| Binding { namespace: "demo".into(), identifier: t.into(), tool: t.into() })
        .to_vec();
    Program { code: code.into(), bindings, input: None }
}

async fn run(sandbox: &dyn Sandbox, config: &SandboxConfig, code: &str) -> (Run, Duration) {
    let started = Instant::now();
    let run = sandbox.run(program(code), limits(config), &Tools::default()).await;
    (run, started.elapsed())
}

/// The sandbox for `backend`, or `None` (after a loud line) when it cannot run here.
async fn available(backend: SandboxBackend, pool_size: u32) -> Option<(Arc<dyn Sandbox>, SandboxConfig)> {
    let config = config(backend, pool_size);
    let image = if backend == SandboxBackend::Docker { docker_image() } else { Ok(()) };
    let ready = match image {
        Err(reason) => Err(reason),
        Ok(()) => {
            let sandbox = mcpgate_sandbox::build(&config);
            // A pool's first worker says whether workers start at all.
            let deadline = Instant::now() + Duration::from_secs(30);
            while pool_size > 0 && warm(&*sandbox) < 1 && sandbox.ready().is_ok() && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sandbox.ready().map(|()| sandbox)
        }
    };
    match ready {
        Ok(sandbox) => Some((sandbox, config)),
        Err(reason) if std::env::var("MCPGATE_REQUIRE_SANDBOXES").as_deref() == Ok("1") => {
            panic!("MCPGATE_REQUIRE_SANDBOXES=1 but the {} sandbox cannot run: {reason}", backend.as_str())
        }
        Err(reason) => {
            eprintln!("\n!!!!!!!! SKIPPED the {} sandbox: {reason} !!!!!!!!\n", backend.as_str());
            None
        }
    }
}

fn warm(sandbox: &dyn Sandbox) -> u64 {
    sandbox.status()["pool"]["warm"].as_u64().unwrap_or(0)
}

/// Wait until `sandbox`'s pool is full.
async fn wait_warm(sandbox: &dyn Sandbox, size: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while warm(sandbox) < size {
        assert!(Instant::now() < deadline, "the pool did not fill: {}", sandbox.status());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The container engine the `docker` sandbox finds: `podman`, else `docker`, on PATH.
fn container_engine() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["podman", "docker"].iter().find_map(|program| {
        std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
    })
}

/// Build `IMAGE` from this binary, once per test process (the script keeps an image that is up to date).
fn docker_image() -> Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let Some(engine) = container_engine() else {
                return Err("neither podman nor docker is on PATH (Debian package podman)".into());
            };
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/sandbox-image.sh");
            let output = std::process::Command::new("bash")
                .arg(&script)
                .args([BIN, IMAGE])
                .env("CONTAINER_ENGINE", &engine)
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            eprintln!("sandbox-image.sh: {}{stderr}", String::from_utf8_lossy(&output.stdout));
            match output.status.success() {
                true => Ok(()),
                false => Err(format!("scripts/sandbox-image.sh cannot build {IMAGE}: {stderr}")),
            }
        })
        .clone()
}

/// `<engine> ARGS`'s stdout.
fn engine_says(args: &[&str]) -> String {
    let output = std::process::Command::new(container_engine().unwrap()).args(args).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// This process's workers' containers, running or not.
fn our_containers() -> Vec<String> {
    let prefix = format!("mcpgate-sb-{}-", std::process::id());
    let names = engine_says(&["ps", "-a", "--filter", &format!("name={prefix}"), "--format", "{{.Names}}"]);
    names.lines().filter(|n| n.starts_with(&prefix)).map(str::to_owned).collect()
}

/// Wait until only the pool's containers are left, each with its engine client, and nothing else we started.
async fn only_the_pools_containers_are_left(pool_size: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let containers = our_containers();
        let processes = descendants();
        let zombies: Vec<i32> = all_descendants().into_iter().filter(|pid| zombie(*pid)).collect();
        if containers.len() == pool_size && processes.len() == pool_size && zombies.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: left behind: containers {containers:?} (pool {pool_size}), processes {processes:?}, \
             zombies {zombies:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Our processes, as /proc shows them: pid → (parent, cmdline).
fn processes() -> HashMap<i32, (i32, Vec<String>)> {
    let mut all = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
        let Some(ppid) = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty());
        let args = args.map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        all.insert(pid, (ppid.parse().unwrap_or(0), args));
    }
    all
}

/// The processes descending from this test process, zombies included.
fn all_descendants() -> Vec<i32> {
    let all = processes();
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let mut frontier = vec![me];
    while let Some(parent) = frontier.pop() {
        for (&pid, (ppid, _)) in &all {
            if *ppid == parent && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

fn zombie(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

/// The live processes descending from this test process.
fn descendants() -> Vec<i32> {
    all_descendants().into_iter().filter(|pid| !zombie(*pid)).collect()
}

/// The confined workers themselves (`/mcpgate sandbox-worker` inside bubblewrap).
fn bwrap_workers() -> Vec<i32> {
    let all = processes();
    descendants()
        .into_iter()
        .filter(|pid| all.get(pid).is_some_and(|(_, args)| args.first().is_some_and(|a| a == "/mcpgate")))
        .collect()
}

/// The pids cgroup directory our workers' cgroups are made in.
fn cgroup_parent() -> PathBuf {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let v1 = own.lines().find_map(|l| l.split_once(":pids:").map(|(_, p)| format!("pids{p}")));
    let v2 = own.lines().find_map(|l| l.strip_prefix("0::").map(str::to_owned));
    let relative = v1.or(v2).unwrap();
    PathBuf::from("/sys/fs/cgroup").join(relative.trim_start_matches('/')).join("mcpgate-sandbox")
}

/// This process's workers' cgroups.
fn our_cgroups() -> Vec<String> {
    let prefix = format!("{}-", std::process::id());
    let Ok(entries) = std::fs::read_dir(cgroup_parent()) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// Wait until only the pool's workers are left: as many cgroups as the pool holds, and every process we
/// started inside one of them.
async fn only_the_pool_is_left(pool_size: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let cgroups = our_cgroups();
        let strays: Vec<i32> = descendants()
            .into_iter()
            .filter(|pid| {
                let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
                !cgroups.iter().any(|name| cgroup.contains(&format!("mcpgate-sandbox/{name}")))
            })
            .collect();
        // gVisor's state directories go with their worker's cgroup.
        let scratch: Vec<String> = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter_map(|e| {
                e.file_name().to_str().and_then(|n| n.strip_prefix("mcpgate-runsc-")).map(str::to_owned)
            })
            .filter(|name| name.starts_with(&format!("{}-", std::process::id())) && !cgroups.contains(name))
            .collect();
        // Killed workers are reaped, not left as zombies.
        let zombies: Vec<i32> = all_descendants().into_iter().filter(|pid| zombie(*pid)).collect();
        if cgroups.len() == pool_size && strays.is_empty() && scratch.is_empty() && zombies.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: left behind: cgroups {cgroups:?} (pool {pool_size}), processes outside them {strays:?}, \
             runsc state of dead workers {scratch:?}, zombies {zombies:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A timeout naming the time limit. (The in-process sandbox names the time left after waiting for a slot,
/// a few microseconds less.)
fn timed_out(run: &Run, limits: &Limits) -> bool {
    matches!(&run.outcome, Err(Failure::Timeout(t)) if limits.time - *t < Duration::from_millis(100))
}

/// One attack and how it must end.
struct Attack {
    name: &'static str,
    code: String,
    expect: fn(&Run, &Limits) -> bool,
}

fn catalogue(secret: &std::path::Path, outside: &std::path::Path, port: u16) -> Vec<Attack> {
    let secret = secret.display();
    let outside = outside.display();
    let tries = |attempts: &[String]| {
        let body: String = attempts
            .iter()
            .map(|a| format!("try {{ out.push(String(await (async () => {a})())); }} catch (e) {{ out.push('refused: ' + e); }}\n"))
            .collect();
        format!("const out = [];\n{body}return out;")
    };
    let refused = |run: &Run, _: &Limits| {
        run.outcome.as_ref().is_ok_and(|v| {
            v.as_array()
                .is_some_and(|a| a.iter().all(|x| x.as_str().is_some_and(|s| s.starts_with("refused: "))))
        })
    };
    vec![
        Attack {
            name: "read a host file",
            code: tries(&[
                format!("std.loadFile('{secret}')"),
                format!("require('fs').readFileSync('{secret}', 'utf8')"),
                format!("import('{secret}')"),
                format!("os.open('{secret}', 0)"),
                format!("new Worker('{secret}')"),
                "globalThis.scriptArgs".into(),
            ]),
            expect: |run, _| {
                // scriptArgs is simply undefined; everything else throws.
                let out = run.outcome.as_ref().ok().and_then(Value::as_array).cloned().unwrap_or_default();
                out.len() == 6 && out[..5].iter().all(|x| x.as_str().is_some_and(|s| s.starts_with("refused: ")))
            },
        },
        Attack {
            name: "write outside",
            code: tries(&[
                format!("std.open('{outside}', 'w').puts('x')"),
                format!("require('fs').writeFileSync('{outside}', 'x')"),
                format!("os.exec(['/bin/sh', '-c', 'touch {outside}'])"),
            ]),
            expect: refused,
        },
        Attack {
            name: "connect to a listener on 127.0.0.1",
            code: tries(&[
                format!("fetch('http://127.0.0.1:{port}/')"),
                format!("new WebSocket('ws://127.0.0.1:{port}/')"),
                format!("new XMLHttpRequest().open('GET', 'http://127.0.0.1:{port}/')"),
                format!("require('net').connect({port}, '127.0.0.1')"),
                format!("import('http://127.0.0.1:{port}/x.js')"),
            ]),
            expect: refused,
        },
        Attack {
            name: "fork bomb",
            code: "try { os.exec(['/bin/sh']); } catch (e) {}\n\
                   const bomb = () => { Promise.resolve().then(bomb); Promise.resolve().then(bomb); };\n\
                   bomb(); await new Promise(() => {});"
                .into(),
            expect: |run, limits| matches!(&run.outcome, Err(Failure::Memory(m)) if *m == limits.memory)
                || timed_out(run, limits)
                || matches!(&run.outcome, Err(Failure::Exception { message, .. }) if message.contains("out of memory") || message == "uncaught null"),
        },
        Attack {
            name: "1 GB allocation",
            code: "const b = new ArrayBuffer(1 << 30); return b.byteLength;".into(),
            expect: |run, limits| matches!(&run.outcome, Err(Failure::Memory(m)) if *m == limits.memory),
        },
        Attack {
            name: "string growth",
            code: "const a = []; for (let i = 0; ; i++) a.push('x'.repeat(1 << 20) + i);".into(),
            expect: |run, limits| matches!(&run.outcome, Err(Failure::Memory(m)) if *m == limits.memory),
        },
        Attack {
            name: "busy loop in try/catch",
            code: "for (;;) { try { for (;;) {} } catch (e) {} }".into(),
            expect: |run, limits| timed_out(run, limits),
        },
        Attack {
            name: "catastrophic regex",
            code: "return /^(a+)+$/.test('a'.repeat(64) + 'b');".into(),
            expect: |run, limits| timed_out(run, limits),
        },
        Attack {
            name: "deep recursion",
            code: "const f = (n) => f(n + 1) + 1; return f(0);".into(),
            expect: |run, _| {
                matches!(&run.outcome, Err(Failure::Exception { message, .. }) if message.contains("stack"))
            },
        },
        Attack {
            name: "100 MB of output",
            code: "const s = 'x'.repeat(1 << 20);\nfor (let i = 0; i < 100; i++) console.log(s);\nreturn s + s;".into(),
            expect: |run, limits| {
                let logged: usize = run.logs.iter().map(|l| l.text.len()).sum();
                matches!(&run.outcome, Err(Failure::Output { size, limit }) if *size == (2 << 20) + 2 && *limit == limits.output)
                    && logged <= limits.logs + 200
            },
        },
        Attack {
            name: "endless inner calls",
            code: "for (;;) { try { await tools.demo.echo({}); } catch (e) {} }".into(),
            expect: |run, limits| matches!(&run.outcome, Err(Failure::Calls(n)) if *n == limits.calls),
        },
        Attack {
            name: "a hung inner tool",
            code: "return await tools.demo.hang({});".into(),
            expect: |run, limits| timed_out(run, limits),
        },
        Attack {
            name: "prototype pollution",
            code: "Object.prototype.polluted = 'yes'; Array.prototype.push = null; globalThis.leak = 1; return 1;".into(),
            expect: |run, _| run.outcome == Ok(json!(1)),
        },
        Attack {
            name: "after the pollution",
            code: "return [({}).polluted ?? null, typeof [].push, typeof leak];".into(),
            expect: |run, _| run.outcome == Ok(json!([null, "function", "undefined"])),
        },
    ]
}

/// What an attack may leave: nothing to check (in-process), the pool's cgroups, or the pool's containers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leftovers {
    Nothing,
    Cgroups,
    Containers,
}

/// Every attack on `sandbox`: its failure, its time, what it left behind.
async fn attack(sandbox: &dyn Sandbox, config: &SandboxConfig, leftovers: Leftovers) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "TOPSECRET-7f3a9").unwrap();
    let outside = dir.path().join("written-by-the-program");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let limits = limits(config);
    let name = sandbox.name();
    for attack in catalogue(&secret, &outside, port) {
        let (run, took) = run(sandbox, config, &attack.code).await;
        eprintln!("{name}: {}: {:?} in {} ms", attack.name, run.outcome, took.as_millis());
        assert!((attack.expect)(&run, &limits), "{name}: {}: {run:?}", attack.name);
        assert!(!format!("{run:?}").contains("TOPSECRET"), "{name}: {}: the secret leaked", attack.name);
        assert!(took < limits.time + Duration::from_secs(2), "{name}: {} took {took:?}", attack.name);
        let what = format!("{name}: {}", attack.name);
        match leftovers {
            Leftovers::Nothing => {}
            Leftovers::Cgroups => only_the_pool_is_left(config.pool_size as usize, &what).await,
            Leftovers::Containers => {
                only_the_pools_containers_are_left(config.pool_size as usize, &what).await
            }
        }
    }
    assert!(!outside.exists(), "{name}: a file was written outside");
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("{name}: the listener saw a connection: {other:?}"),
    }
}

#[tokio::test]
async fn the_escape_catalogue_fails_each_attack_precisely_in_quickjs() {
    let config = config(SandboxBackend::Quickjs, 0);
    let sandbox = mcpgate_sandbox::build(&config);
    attack(&*sandbox, &config, Leftovers::Nothing).await;
}

#[tokio::test]
async fn the_escape_catalogue_fails_each_attack_precisely_in_process_workers() {
    catalogue_on_a_pool(SandboxBackend::Process, Leftovers::Cgroups).await;
}

#[tokio::test]
async fn the_escape_catalogue_fails_each_attack_precisely_in_gvisor() {
    catalogue_on_a_pool(SandboxBackend::Gvisor, Leftovers::Cgroups).await;
}

#[tokio::test]
async fn the_escape_catalogue_fails_each_attack_precisely_in_docker() {
    catalogue_on_a_pool(SandboxBackend::Docker, Leftovers::Containers).await;
}

/// Every attack on an OS sandbox with a warm pool of two, then nothing of it left once it is dropped.
async fn catalogue_on_a_pool(backend: SandboxBackend, leftovers: Leftovers) {
    let _serial = SERIAL.lock().await;
    let Some((sandbox, config)) = available(backend, 2).await else { return };
    wait_warm(&*sandbox, 2).await;
    attack(&*sandbox, &config, leftovers).await;
    drop(sandbox);
    let after = format!("{}: after the sandbox is dropped", backend.as_str());
    match leftovers {
        Leftovers::Containers => only_the_pools_containers_are_left(0, &after).await,
        Leftovers::Cgroups | Leftovers::Nothing => only_the_pool_is_left(0, &after).await,
    }
}

fn status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap_or_default();
    line.split_once(':').map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

#[tokio::test]
async fn a_pooled_process_worker_is_confined_at_the_os_level() {
    let _serial = SERIAL.lock().await;
    let Some((sandbox, config)) = available(SandboxBackend::Process, 2).await else { return };
    wait_warm(&*sandbox, 2).await;
    let status = sandbox.status();
    assert_eq!(status["confinement"]["seccomp"], true, "{status}");
    let landlock = status["confinement"]["landlock"].as_str().unwrap_or_default();
    assert!(["fully_enforced", "partially_enforced"].contains(&landlock), "{status}");
    let workers = bwrap_workers();
    assert_eq!(workers.len(), 2, "two warm workers: {workers:?}");
    let own_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    let mut secret = std::env::temp_dir();
    secret.push("mcpgate-sandbox-escape-secret");
    std::fs::write(&secret, "TOPSECRET").unwrap();
    for pid in workers {
        assert_eq!(status_field(pid, "NoNewPrivs"), "1", "worker {pid}");
        assert_eq!(status_field(pid, "Seccomp"), "2", "worker {pid}: seccomp filter mode");
        assert_eq!(status_field(pid, "Uid"), "65534 65534 65534 65534", "worker {pid}");
        assert_eq!(status_field(pid, "Gid"), "65534 65534 65534 65534", "worker {pid}");
        assert_eq!(status_field(pid, "CapEff"), "0000000000000000", "worker {pid}");
        assert_eq!(status_field(pid, "Threads"), "2", "worker {pid}: main and engine thread");
        let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
        assert_eq!(uid_map.split_whitespace().collect::<Vec<_>>(), ["65534", "65534", "1"], "worker {pid}");
        let net = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
        assert_ne!(net, own_net, "worker {pid} has its own network namespace");
        // Its root is an empty read-only tmpfs with the binary and the libraries: no /tmp, no /etc, no /proc.
        let mut root: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/root"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        root.sort();
        assert!(root.iter().all(|n| ["lib", "lib64", "mcpgate", "usr"].contains(&n.as_str())), "{root:?}");
        assert!(!PathBuf::from(format!("/proc/{pid}/root")).join(secret.strip_prefix("/").unwrap()).exists());
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        let root_mount = mounts.lines().find(|l| l.split_whitespace().nth(4) == Some("/")).unwrap();
        assert!(root_mount.split_whitespace().nth(5).unwrap().split(',').any(|o| o == "ro"), "{root_mount}");
        // Its cgroups: the memory limit the pool sized, and a handful of tasks.
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let path = |controller: &str| {
            cgroups
                .lines()
                .find_map(|l| l.split_once(&format!(":{controller}:")).map(|(_, p)| p.to_owned()))
                .unwrap()
        };
        let memory = PathBuf::from("/sys/fs/cgroup/memory").join(path("memory").trim_start_matches('/'));
        let limit: u64 =
            std::fs::read_to_string(memory.join("memory.limit_in_bytes")).unwrap().trim().parse().unwrap();
        let heap = config.max_memory.0;
        assert!(
            limit > heap && limit <= heap + (64 << 20),
            "memory.limit_in_bytes {limit} for a {heap}-byte heap"
        );
        let pids = PathBuf::from("/sys/fs/cgroup/pids").join(path("pids").trim_start_matches('/'));
        assert_eq!(std::fs::read_to_string(pids.join("pids.max")).unwrap().trim(), "8");
        assert!(path("pids").contains("mcpgate-sandbox/"), "{cgroups}");
    }
    std::fs::remove_file(&secret).unwrap();
}

#[tokio::test]
async fn a_pooled_gvisor_worker_runs_in_its_cgroup_without_network() {
    let _serial = SERIAL.lock().await;
    let Some((sandbox, _config)) = available(SandboxBackend::Gvisor, 1).await else { return };
    wait_warm(&*sandbox, 1).await;
    let status = sandbox.status();
    assert_eq!(status["confinement"]["seccomp"], true, "{status}");
    let own_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    let all = processes();
    let gvisor: Vec<i32> = descendants()
        .into_iter()
        .filter(|pid| {
            all.get(pid).is_some_and(|(_, a)| a.first().is_some_and(|a| a.contains("runsc-sandbox")))
        })
        .collect();
    assert_eq!(gvisor.len(), 1, "one gVisor sandbox: {gvisor:?}");
    for pid in gvisor {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(cgroups.lines().any(|l| l.contains(":pids:") && l.contains("mcpgate-sandbox/")), "{cgroups}");
        assert!(
            cgroups.lines().any(|l| l.contains(":memory:") && l.contains("mcpgate-sandbox/")),
            "{cgroups}"
        );
        assert_ne!(std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(), own_net);
        assert_eq!(status_field(pid, "Seccomp"), "2", "gVisor's sentry runs under its own filter");
    }
}

#[tokio::test]
async fn a_dropped_run_kills_its_worker() {
    let _serial = SERIAL.lock().await;
    let Some((sandbox, config)) = available(SandboxBackend::Process, 1).await else { return };
    wait_warm(&*sandbox, 1).await;
    let running = run(&*sandbox, &config, "for (;;) {}");
    assert!(tokio::time::timeout(Duration::from_millis(300), running).await.is_err());
    only_the_pool_is_left(1, "a dropped run").await;
}

#[tokio::test]
async fn a_worker_over_its_memory_cgroup_is_a_memory_failure() {
    let _serial = SERIAL.lock().await;
    let Some((sandbox, config)) = available(SandboxBackend::Process, 1).await else { return };
    // The answer is read and decoded outside the JavaScript heap: the cgroup, not the engine, stops it.
    let (run, took) = run(&*sandbox, &config, "const s = await tools.demo.big({}); return s.length;").await;
    assert_eq!(run.outcome, Err(Failure::Memory(config.max_memory.0 as usize)), "in {took:?}");
    only_the_pool_is_left(1, "an out-of-memory worker").await;
}

#[tokio::test]
async fn a_missing_runner_fails_closed() {
    for (backend, program) in [
        (SandboxBackend::Gvisor, "runsc"),
        (SandboxBackend::Process, "bwrap"),
        (SandboxBackend::Docker, "podman"),
    ] {
        let missing = Some(format!("/nonexistent/{program}"));
        let config = match backend {
            SandboxBackend::Docker => SandboxConfig { container_engine: missing, ..config(backend, 2) },
            _ => SandboxConfig { runner: missing, ..config(backend, 2) },
        };
        let sandbox = mcpgate_sandbox::build(&config);
        let reason = sandbox.ready().unwrap_err();
        let missing = reason.contains("not found") || reason.contains("not an executable");
        assert!(reason.contains(program) && missing, "{reason}");
        assert_eq!(sandbox.status()["ready"], false);
        let (run, _) = run(&*sandbox, &config, "return 1").await;
        match run.outcome {
            Err(Failure::Sandbox(message)) => assert!(message.contains(program), "{message}"),
            other => panic!("{}: {other:?}", backend.as_str()),
        }
    }
}

#[tokio::test]
async fn cold_and_warm_starts_are_measured() {
    let _serial = SERIAL.lock().await;
    'backends: for backend in [SandboxBackend::Process, SandboxBackend::Gvisor, SandboxBackend::Docker] {
        let mut medians = Vec::new();
        for pool in [0, 1] {
            let Some((sandbox, config)) = available(backend, pool).await else { continue 'backends };
            let mut times = Vec::new();
            for _ in 0..7 {
                wait_warm(&*sandbox, u64::from(pool)).await;
                let (run, took) = run(&*sandbox, &config, "return 1;").await;
                assert_eq!(run.outcome, Ok(json!(1)), "{}", backend.as_str());
                times.push(took.as_millis());
            }
            times.sort();
            medians.push(times[times.len() / 2]);
        }
        eprintln!(
            "{}: median run of `return 1`: cold {} ms, warm {} ms",
            backend.as_str(),
            medians[0],
            medians[1]
        );
        assert!(medians[1] <= medians[0], "a warm worker is no slower than a cold one: {medians:?}");
    }
}

#[tokio::test]
async fn a_missing_image_fails_closed() {
    let _serial = SERIAL.lock().await;
    let image = format!("localhost/mcpgate-sandbox:missing-{}", std::process::id());
    let config = SandboxConfig { image: image.clone(), ..config(SandboxBackend::Docker, 2) };
    let sandbox = mcpgate_sandbox::build(&config);
    let reason = sandbox.ready().unwrap_err();
    match container_engine() {
        Some(_) => assert!(
            reason.contains(&format!("image {image} not found: build it with scripts/sandbox-image.sh"))
                || reason.contains("cannot inspect the image"),
            "{reason}"
        ),
        None => assert!(reason.contains("neither podman nor docker"), "{reason}"),
    }
    let (run, _) = run(&*sandbox, &config, "return 1").await;
    assert!(
        matches!(&run.outcome, Err(Failure::Sandbox(m)) if m.contains("docker sandbox cannot run")),
        "{run:?}"
    );
}

/// The engine's view of a container: `{{field}}` for each field, in order.
fn inspect(container: &str, fields: &[&str]) -> Vec<String> {
    let format: Vec<String> = fields.iter().map(|f| format!("{{{{{f}}}}}")).collect();
    let said = engine_says(&["inspect", "--format", &format.join("|"), container]);
    said.trim().split('|').map(str::to_owned).collect()
}

#[tokio::test]
async fn a_pooled_docker_worker_is_confined() {
    let _serial = SERIAL.lock().await;
    let Some((sandbox, config)) = available(SandboxBackend::Docker, 1).await else { return };
    wait_warm(&*sandbox, 1).await;
    let status = sandbox.status();
    assert_eq!(status["confinement"]["seccomp"], true, "{status}");
    let landlock = status["confinement"]["landlock"].as_str().unwrap_or_default();
    assert!(["fully_enforced", "partially_enforced"].contains(&landlock), "{status}");
    let containers = our_containers();
    assert_eq!(containers.len(), 1, "one warm container: {containers:?}");
    let fields = [
        ".HostConfig.NetworkMode",
        ".HostConfig.ReadonlyRootfs",
        ".Config.User",
        ".HostConfig.Memory",
        ".HostConfig.MemorySwap",
        ".HostConfig.PidsLimit",
        ".State.Pid",
    ];
    let seen = inspect(&containers[0], &fields);
    assert_eq!(seen[..3], ["none", "true", "65534:65534"], "{fields:?}: {seen:?}");
    let memory: u64 = seen[3].parse().unwrap();
    let heap = config.max_memory.0;
    assert!(memory > heap && memory <= heap + (64 << 20), "memory {memory} for a {heap}-byte heap");
    assert_eq!(seen[4], seen[3], "no swap beyond the memory limit");
    assert_eq!(seen[5], "8", "pids limit");
    // The worker itself, from outside.
    let pid: i32 = seen[6].parse().unwrap();
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(status_field(pid, "Seccomp"), "2", "seccomp filter mode");
    assert_eq!(status_field(pid, "Uid"), "65534 65534 65534 65534");
    assert_eq!(status_field(pid, "Gid"), "65534 65534 65534 65534");
    assert_eq!(status_field(pid, "CapEff"), "0000000000000000");
    assert_eq!(status_field(pid, "Threads"), "2", "main and engine thread");
    let own_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
        own_net,
        "its own network namespace"
    );
    let devices = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
    let interfaces: Vec<&str> =
        devices.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    assert_eq!(interfaces, ["lo"], "no network but loopback");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root_mount = mounts.lines().find(|l| l.split_whitespace().nth(4) == Some("/")).unwrap();
    assert!(root_mount.split_whitespace().nth(5).unwrap().split(',').any(|o| o == "ro"), "{root_mount}");
    assert!(PathBuf::from(format!("/proc/{pid}/root/mcpgate")).is_file());
    assert!(
        !PathBuf::from(format!("/proc/{pid}/root/bin")).exists(),
        "nothing but the binary and its libraries"
    );
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    if let Some(path) = cgroups.lines().find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_owned())) {
        let dir = PathBuf::from("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
        let limit = std::fs::read_to_string(dir.join("memory.limit_in_bytes")).unwrap();
        assert_eq!(limit.trim(), seen[3], "the engine's memory cgroup");
    }
}

#[tokio::test]
async fn a_dropped_or_timed_out_docker_run_leaves_no_container() {
    let _serial = SERIAL.lock().await;
    let Some((sandbox, config)) = available(SandboxBackend::Docker, 1).await else { return };
    wait_warm(&*sandbox, 1).await;
    let running = run(&*sandbox, &config, "for (;;) {}");
    assert!(tokio::time::timeout(Duration::from_millis(300), running).await.is_err());
    only_the_pools_containers_are_left(1, "docker: a dropped run").await;
    wait_warm(&*sandbox, 1).await;
    let (timed, _) = run(&*sandbox, &config, "return await tools.demo.hang({});").await;
    assert!(timed_out(&timed, &limits(&config)), "{timed:?}");
    only_the_pools_containers_are_left(1, "docker: a timed-out run").await;
    let (done, _) = run(&*sandbox, &config, "return 1;").await;
    assert_eq!(done.outcome, Ok(json!(1)));
    only_the_pools_containers_are_left(1, "docker: a finished run").await;
    drop(sandbox);
    only_the_pools_containers_are_left(0, "docker: after the sandbox is dropped").await;
}

#[tokio::test]
async fn a_docker_worker_over_its_memory_limit_is_a_memory_failure() {
    let _serial = SERIAL.lock().await;
    let Some((sandbox, config)) = available(SandboxBackend::Docker, 1).await else { return };
    // The answer is read and decoded outside the JavaScript heap: the engine's memory limit stops it.
    let (run, took) = run(&*sandbox, &config, "const s = await tools.demo.big({}); return s.length;").await;
    assert_eq!(run.outcome, Err(Failure::Memory(config.max_memory.0 as usize)), "in {took:?}");
    only_the_pools_containers_are_left(1, "docker: an out-of-memory worker").await;
}
