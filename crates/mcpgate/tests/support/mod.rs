//! What the process-level tests share: gateway processes that are always stopped, free ports, and one
//! stateless (2026-07-28) MCP request over plain HTTP/1.1.

#![allow(dead_code, clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_mcpgate");

/// A process stopped (SIGTERM, then SIGKILL after 3 s) when the test ends, pass or fail.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        for _ in 0..150 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The environment variables naming real upstream servers (`eval "$(scripts/upstreams.sh)"` sets them), or
/// `None` after a loud line when one is unset — unless `MCPGATE_REQUIRE_UPSTREAMS=1`, when the test fails.
pub fn upstream_vars<const N: usize>(test: &str, names: [&str; N]) -> Option<[String; N]> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let missing: Vec<&str> = names.iter().copied().filter(|n| var(n).is_none()).collect();
    if missing.is_empty() {
        return Some(names.map(|n| var(n).unwrap()));
    }
    let message = format!(
        "real upstream MCP servers not configured ({} unset); run `eval \"$(scripts/upstreams.sh)\"` first",
        missing.join(", ")
    );
    if std::env::var("MCPGATE_REQUIRE_UPSTREAMS").as_deref() == Ok("1") {
        panic!("{test}: MCPGATE_REQUIRE_UPSTREAMS=1 but {message}");
    }
    eprintln!("\n!!!!!!!! SKIPPED {test}: {message} !!!!!!!!\n");
    None
}

/// Whether something listens on `addr`. A connection to itself does not count: with nothing listening, the
/// kernel may pick that very port as the probe's source port (TCP simultaneous open), and the connect "succeeds".
pub fn listens(addr: impl std::net::ToSocketAddrs) -> bool {
    std::net::TcpStream::connect(addr).is_ok_and(|probe| probe.local_addr().ok() != probe.peer_addr().ok())
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Start `mcpgate serve` on a free port (with `config`, or the embedded default), its log in `log`; returns
/// once it listens (within `within`).
pub fn serve(config: Option<&Path>, log: &Path, within: Duration) -> (Process, String) {
    serve_with_env(config, log, within, &[])
}

/// [`serve`] with environment variables set. Variables that change who may connect are cleared first, so the
/// caller's environment cannot lock a test out.
pub fn serve_with_env(
    config: Option<&Path>,
    log: &Path,
    within: Duration,
    env: &[(&str, &str)],
) -> (Process, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(BIN);
    command.env_remove("PORT").env_remove("MCP_PORT").env_remove("LOG_LEVEL").env_remove("MCP_CONFIG_PATH");
    command.env_remove("MCP_API_KEYS").env_remove("MCP_API_KEY").env_remove("API_KEY_SALT");
    command.env_remove("RATE_LIMIT_WINDOW_MS").env_remove("RATE_LIMIT_MAX_REQUESTS");
    command.envs(env.iter().copied());
    command.args(["serve", "--listen", &addr]);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let file = std::fs::File::create(log).unwrap();
    let mut process = Process(command.stdout(Stdio::null()).stderr(file).spawn().unwrap());
    let said = || std::fs::read_to_string(log).unwrap_or_default();
    let tries = within.as_millis() / 20;
    for _ in 0..tries {
        if listens(&addr) {
            return (process, addr);
        }
        if let Ok(Some(status)) = process.0.try_wait() {
            panic!("mcpgate exited ({status}) before listening on {addr}:\n{}", said());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("mcpgate did not listen on {addr} within {within:?}:\n{}", said());
}

/// One stateless (2026-07-28) request over a fresh connection; the last JSON-RPC message of the answer, or
/// `None` when there is none (with the raw answer).
pub fn modern(addr: &str, method: &str, name: Option<&str>, params: Value) -> Result<Value, String> {
    modern_with(addr, &[], method, name, params).map(|(_, message)| message)
}

/// [`modern`] with extra request headers (`x-api-key: …`); also returns the HTTP status.
pub fn modern_with(
    addr: &str,
    headers: &[(&str, &str)],
    method: &str,
    name: Option<&str>,
    mut params: Value,
) -> Result<(u16, Value), String> {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string();
    let mut all = vec![("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", method)];
    all.extend(name.map(|name| ("Mcp-Name", name)));
    all.extend_from_slice(headers);
    let (status, _, mut messages) = try_post(addr, &all, &body)?;
    messages.pop().map(|m| (status, m)).ok_or_else(|| format!("no JSON-RPC message in the answer ({status})"))
}

/// POST `body` to `/mcp` over a fresh connection with extra `headers`: the HTTP status, the response head
/// (lower-cased) and the JSON-RPC messages of the answer in order, from plain JSON or an event stream.
pub fn post(addr: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, Vec<Value>) {
    try_post(addr, headers, body).unwrap()
}

/// [`post`], saying what went wrong instead of panicking.
pub fn try_post(
    addr: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String, Vec<Value>), String> {
    let extra: String = headers.iter().map(|(h, v)| format!("{h}: {v}\r\n")).collect();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{extra}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(25))).map_err(|e| e.to_string())?;
    stream.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP response: {raw:?}"))?;
    let head = head.to_ascii_lowercase();
    let status = head.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
    let body = if head.contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
    let messages = if head.contains("content-type: text/event-stream") {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    } else {
        serde_json::from_str(&body).map(|v| vec![v]).unwrap_or_default()
    };
    Ok((status, head, messages))
}

/// POST an `initialize` (`body`) with `headers`: the `Mcp-Session-Id` of the answer, its case kept (a sealed id is
/// case-sensitive base64url, which [`post`]'s lower-cased head would spoil).
pub fn session_id_of(addr: &str, headers: &[(&str, &str)], body: &str) -> String {
    let extra: String = headers.iter().map(|(h, v)| format!("{h}: {v}\r\n")).collect();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{extra}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let head = raw.split_once("\r\n\r\n").map_or(raw.as_str(), |(head, _)| head);
    head.lines()
        .find_map(|line| line.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("mcp-session-id")))
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_else(|| panic!("no session id in: {head}"))
}

/// `DELETE /mcp` with `headers` over a fresh connection: the HTTP status, the head and the body.
pub fn try_delete(addr: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let extra: String = headers.iter().map(|(h, v)| format!("{h}: {v}\r\n")).collect();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "DELETE /mcp HTTP/1.1\r\nHost: {addr}\r\nMCP-Protocol-Version: 2025-11-25\r\n{extra}Connection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// The body of a chunked HTTP/1.1 response.
pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

/// One POST in a legacy (2025-11-25) session, or the `initialize` that opens one (`session` None): the response
/// head (lower-cased) and its JSON-RPC messages in order, from plain JSON or an event stream.
pub fn legacy_post(addr: &str, session: Option<&str>, body: &Value) -> (String, Vec<Value>) {
    let headers = match session {
        Some(session) => vec![("Mcp-Session-Id", session), ("MCP-Protocol-Version", "2025-11-25")],
        None => Vec::new(),
    };
    let (_, head, messages) = post(addr, &headers, &body.to_string());
    (head, messages)
}

/// `GET path` over a fresh connection: the raw response, head and body (chunked bodies decoded).
pub fn http_get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    match raw.split_once("\r\n\r\n") {
        Some((head, body)) if head.to_ascii_lowercase().contains("transfer-encoding: chunked") => {
            format!("{head}\r\n\r\n{}", dechunk(body))
        }
        _ => raw,
    }
}
