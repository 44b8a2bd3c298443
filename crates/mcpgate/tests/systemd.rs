//! `deploy/systemd/mcpgate.service` checked by systemd's own tool, and the notifications it relies on
//! (`Type=notify`) read from a `NOTIFY_SOCKET` this test owns: `READY=1` once `mcpgate serve` listens,
//! `RELOADING=1` and `READY=1` around a SIGHUP reload, `STOPPING=1` on SIGTERM. Also `mcpgate health`.

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
