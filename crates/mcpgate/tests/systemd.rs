//! `deploy/systemd/mcpgate.service` checked by systemd's own tool, and the notifications it relies on
//! (`Type=notify`) read from a `NOTIFY_SOCKET` this test owns: `READY=1` once `mcpgate serve` listens,
//! `RELOADING=1` and `READY=1` around a SIGHUP reload, `STOPPING=1` on SIGTERM. Also `mcpgate health`, and the
//! guides' operator variables a unit's `EnvironmentFile` sets: `LOG_FILE` (opened again on SIGHUP, for
//! logrotate), `HEALTH_CHECK_PATH`, `WORKERS`, `SESSION_SECRET`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::{os::unix::net::UnixDatagram, process::Command, time::Duration};

use mcpgate_testkit::have_program;
use support::{BIN, serve_with_env};

/// `systemd-analyze`, or `None` when it is not installed and not required (`MCPGATE_REQUIRE_SYSTEMD=1`).
fn systemd_analyze(test: &str) -> Option<&'static str> {
    let program = "systemd-analyze";
    have_program(test, program, "MCPGATE_REQUIRE_SYSTEMD", "apt-get install systemd").then_some(program)
}

#[test]
fn the_unit_verifies_and_its_exposure_is_ok() {
    let Some(analyze) = systemd_analyze("the systemd unit") else { return };
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/systemd/mcpgate.service"))
            .unwrap();
    // The unit names the installed path; here the binary under test stands in for it.
    assert!(unit.contains("ExecStart=/usr/local/bin/mcpgate serve"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcpgate.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/mcpgate", BIN)).unwrap();

    let verify = Command::new(analyze).arg("verify").arg(&path).output().unwrap();
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");

    let security = Command::new(analyze).args(["security", "--offline=true"]).arg(&path).output().unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    let overall =
        report.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{report}"));
    eprintln!("{overall}");
    let score: f64 =
        overall.split(':').nth(1).and_then(|s| s.split_whitespace().next()).unwrap().parse().unwrap();
    assert!(score <= 2.0 && overall.contains("OK"), "exposure {score}: {overall}");
}

/// The next notification on `socket` (at most 20 s).
fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let read = socket.recv(&mut buf).expect("a notification within 20 s");
    String::from_utf8_lossy(&buf[..read]).into_owned()
}

#[test]
fn systemd_is_told_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let env = [("NOTIFY_SOCKET", path.to_str().unwrap())];
    let (gateway, addr) = serve_with_env(None, &dir.path().join("serve.log"), Duration::from_secs(20), &env);
    assert_eq!(next(&socket), "READY=1\n");
    // READY=1 came once the port was bound: it answers.
    assert!(support::http_get(&addr, "/health").starts_with("HTTP/1.1 200"));

    let pid = gateway.0.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let reloading = next(&socket);
    assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading:?}");
    assert_eq!(next(&socket), "READY=1\n");

    // `mcpgate health` probes the same gateway: 0 when it answers, 1 when nothing listens.
    let health = Command::new(BIN).args(["health", "--addr", &addr, "--ready"]).output().unwrap();
    assert!(health.status.success(), "{}", String::from_utf8_lossy(&health.stderr));
    let closed = format!("127.0.0.1:{}", support::free_port());
    let down = Command::new(BIN).args(["health", "--addr", &closed, "--timeout", "1"]).output().unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot connect"));

    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert_eq!(next(&socket), "STOPPING=1\n");
}

/// What `pid`'s threads named `comm` number.
fn threads_named(pid: u32, comm: &str) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let names = tasks.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok());
    names.filter(|name| name.trim_end() == comm).count()
}

/// Poll `done` every 20 ms for up to 20 s.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} within 20 s");
}

#[test]
fn the_guides_operator_variables_apply_and_the_log_file_follows_logrotate() {
    let dir = tempfile::tempdir().unwrap();
    let (log_file, rotated) = (dir.path().join("server.log"), dir.path().join("server.log.1"));
    let secret = "a-session-secret-of-the-configurable-guide-0123456789";
    let env = [
        ("LOG_FILE", log_file.to_str().unwrap()),
        ("HEALTH_CHECK_PATH", "/healthz"),
        ("WORKERS", "3"),
        ("SESSION_SECRET", secret),
    ];
    let (gateway, addr) = serve_with_env(None, &dir.path().join("serve.log"), Duration::from_secs(20), &env);
    let pid = gateway.0.id();

    // The liveness endpoint moved; `mcpgate health` follows the same variable.
    assert!(support::http_get(&addr, "/healthz").starts_with("HTTP/1.1 200"));
    assert!(support::http_get(&addr, "/health").starts_with("HTTP/1.1 404"));
    let probe = |path: Option<&str>| {
        let mut command = Command::new(BIN);
        command.args(["health", "--addr", &addr, "--timeout", "5"]).env_remove("HEALTH_CHECK_PATH");
        path.map(|p| command.env("HEALTH_CHECK_PATH", p));
        command.output().unwrap().status.code()
    };
    assert_eq!((probe(Some("/healthz")), probe(None)), (Some(0), Some(1)));
    assert_eq!(threads_named(pid, "tokio-rt-worker"), 3, "WORKERS=3 runtime threads");

    // The log goes to the file as well as stderr.
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
    wait_for("the start logged to LOG_FILE", || read(&log_file).contains("serving MCP at /mcp"));
    assert!(read(&dir.path().join("serve.log")).contains("serving MCP at /mcp"));

    // logrotate: rename, then SIGHUP. The reload's lines go to a new file at the old path.
    std::fs::rename(&log_file, &rotated).unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
    wait_for("the reload logged to a new LOG_FILE", || read(&log_file).contains("SIGHUP received"));
    assert!(!read(&rotated).contains("SIGHUP received"), "{}", read(&rotated));
    assert!(read(&rotated).contains("serving MCP at /mcp"));
    // The key itself is never logged, wherever the log goes.
    assert!(!read(&log_file).contains(secret) && !read(&rotated).contains(secret));
}
