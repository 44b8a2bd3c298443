//! A real `redis-server` for a test: started on a free loopback port with nothing persisted, stopped (and
//! started again, on the same port) when the test says, killed when dropped.

use std::{
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A `redis-server` of the test's own.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// A config file given first (a sentinel's, which Sentinel rewrites as it learns).
    config: Option<std::path::PathBuf>,
    extra: Vec<String>,
}

impl RedisServer {
    /// Start one, or `None` after a loud message saying `what` was skipped when `redis-server` is not installed —
    /// unless `MCPGATE_REQUIRE_REDIS=1` (set by `scripts/test.sh`), which makes that a failure.
    pub fn start(what: &str) -> Option<Self> {
        Self::start_with(what, &[])
    }

    /// [`start`](Self::start) with more `redis-server` arguments (`--requirepass`, `--replicaof`, …).
    pub fn start_with(what: &str, extra: &[&str]) -> Option<Self> {
        if !crate::have_program(what, "redis-server", "MCPGATE_REQUIRE_REDIS", "apt-get install redis-server")
        {
            return None;
        }
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut server = Self { port: crate::free_port(), child: None, config: None, extra };
        server.restart();
        Some(server)
    }

    /// A Sentinel (`redis-server CONF --sentinel`) watching the master on `master_port` under `name`, with a
    /// quorum of one and a master taken as down after 500 ms; `None` as for [`start`](Self::start).
    pub fn sentinel(what: &str, name: &str, master_port: u16) -> Option<Self> {
        let mut sentinel = Self::start_with(what, &[])?;
        sentinel.kill();
        let config = std::env::temp_dir().join(format!(
            "mcpgate-sentinel-{}-{}.conf",
            std::process::id(),
            sentinel.port
        ));
        let text = format!(
            "sentinel monitor {name} 127.0.0.1 {master_port} 1\nsentinel down-after-milliseconds {name} 500\n\
             sentinel failover-timeout {name} 2000\nsentinel parallel-syncs {name} 1\n"
        );
        std::fs::write(&config, text).expect("write the sentinel's config");
        sentinel.config = Some(config);
        sentinel.extra = vec!["--sentinel".into()];
        sentinel.restart();
        Some(sentinel)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill it (SIGKILL: an outage, not a shutdown) and wait until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it (again) on its port, empty, and wait until it accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        let mut command = Command::new("redis-server");
        let port = self.port.to_string();
        match &self.config {
            // Sentinel takes its own settings from the file; persistence is not one of them.
            Some(config) => command.arg(config).args(["--port", &port, "--bind", "127.0.0.1"]),
            None => {
                command.args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            }
        };
        let child = command
            .args(["--dir", &std::env::temp_dir().display().to_string()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        // At most 1,000 looks 10 ms apart (about 10 s): a bounded wait for the port to open.
        for attempt in 0.. {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            assert!(attempt < 1000, "redis-server on port {} did not start", self.port);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(config) = &self.config {
            let _ = std::fs::remove_file(config);
        }
    }
}
