//! The benchmark "ceiling": a minimal, fast hyper 1.x server that answers the
//! same JSON-RPC `tools/call` on `echo` that mcpgate answers — and the "floor"
//! of a proxy hop: the smallest honest relays in front of it.
//!
//! It exists only to give `bench/run.sh` reference points measured in the same
//! run on the same machine: whatever mcpgate does on top of "parse the JSON-RPC
//! request, build the result, serialize it" is the gateway's overhead, and
//! whatever mcpgate's proxies add on top of what a relay with the same stack
//! (tokio + hyper) adds is the proxy's own share.
//!
//! It stays honest: every request body is parsed with `serde_json` into typed
//! structures, and every answer is serialized for real; the relays parse,
//! re-id, forward and restore the id like any MCP proxy must.
//!
//! Usage:
//! * `mcpgate-bench-ceiling [ADDR]` (default `127.0.0.1:8100`): the ceiling
//!   (`rpc.rs` for what it answers, `serve.rs` for the HTTP edge);
//! * `mcpgate-bench-ceiling ADDR --http-upstream http://HOST:PORT/mcp`: the
//!   HTTP relay (`http_relay.rs`);
//! * `mcpgate-bench-ceiling ADDR --stdio-upstream PROGRAM [ARGS...]`: the stdio
//!   relay, PROGRAM as its child (`stdio_relay.rs`);
//! * `mcpgate-bench-ceiling --stdio`: the ceiling over stdin/stdout
//!   (`stdio_server.rs`).
//!
//! Every HTTP mode: `POST /mcp` (a notification → `202 Accepted`, empty body)
//! and `GET /health` → `200 ok`.

mod http_relay;
mod relay;
mod rpc;
mod serve;
mod stdio_relay;
mod stdio_server;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use hyper::header::HeaderMap;
use tokio::net::TcpListener;

use crate::serve::{HttpResponse, McpHandler};

const DEFAULT_ADDR: &str = "127.0.0.1:8100";

const USAGE: &str = "usage: mcpgate-bench-ceiling [ADDR]
       mcpgate-bench-ceiling ADDR --http-upstream http://HOST:PORT/PATH
       mcpgate-bench-ceiling ADDR --stdio-upstream PROGRAM [ARGS...]
       mcpgate-bench-ceiling --stdio";

/// What the process runs, from its arguments.
enum Mode {
    Ceiling(SocketAddr),
    HttpRelay(SocketAddr, String),
    StdioRelay(SocketAddr, String, Vec<String>),
    Stdio,
    Help,
}

fn parse_args(args: &[String]) -> Result<Mode, String> {
    let addr =
        |a: &str| a.parse::<SocketAddr>().map_err(|e| format!("`{a}` is not an address (HOST:PORT): {e}"));
    match args {
        [] => Ok(Mode::Ceiling(addr(DEFAULT_ADDR)?)),
        [h] if h == "-h" || h == "--help" => Ok(Mode::Help),
        [s] if s == "--stdio" => Ok(Mode::Stdio),
        [a] if !a.starts_with('-') => Ok(Mode::Ceiling(addr(a)?)),
        [a, flag, url] if flag == "--http-upstream" => Ok(Mode::HttpRelay(addr(a)?, url.clone())),
        [a, flag, program, rest @ ..] if flag == "--stdio-upstream" => {
            Ok(Mode::StdioRelay(addr(a)?, program.clone(), rest.to_vec()))
        }
        [_, flag] if flag == "--http-upstream" || flag == "--stdio-upstream" => {
            Err(format!("{flag} needs a value"))
        }
        _ => Err(format!("unexpected arguments: {}", args.join(" "))),
    }
}

/// The ceiling's `POST /mcp`: answered in place.
struct Ceiling;

impl McpHandler for Ceiling {
    async fn mcp(&self, _headers: HeaderMap, body: Bytes) -> HttpResponse {
        serve::reply(rpc::handle_rpc(&body))
    }
}

async fn listen<H: McpHandler>(addr: SocketAddr, what: &str, handler: H) -> Result<(), String> {
    let listener = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("mcpgate-bench-ceiling ({what}) listening on {local}");
    serve::run(listener, handler).await
}

async fn run(mode: Mode) -> Result<(), String> {
    match mode {
        Mode::Ceiling(addr) => listen(addr, "ceiling", Ceiling).await,
        Mode::HttpRelay(addr, url) => listen(addr, "HTTP relay", http_relay::HttpRelay::new(&url)?).await,
        Mode::StdioRelay(addr, program, args) => {
            // The child first: it is ready (or has failed) before /health answers.
            let relay = stdio_relay::StdioRelay::spawn(&program, &args)?;
            listen(addr, "stdio relay", relay).await
        }
        Mode::Stdio => stdio_server::run().await.map_err(|e| format!("stdio: {e}")),
        Mode::Help => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match parse_args(&args) {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("mcpgate-bench-ceiling: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // The stdio server is one sequential loop: one thread, no cross-thread wake-ups.
    let runtime = match mode {
        Mode::Stdio => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    let result = match runtime {
        Ok(rt) => rt.block_on(run(mode)),
        Err(e) => Err(format!("cannot start the tokio runtime: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcpgate-bench-ceiling: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Mode, String> {
        parse_args(&a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn modes_come_from_the_arguments() {
        assert!(matches!(args(&[]), Ok(Mode::Ceiling(_))));
        assert!(matches!(args(&["127.0.0.1:1"]), Ok(Mode::Ceiling(_))));
        assert!(matches!(args(&["--stdio"]), Ok(Mode::Stdio)));
        assert!(
            matches!(args(&["127.0.0.1:1", "--http-upstream", "http://h:2/mcp"]), Ok(Mode::HttpRelay(_, u)) if u == "http://h:2/mcp")
        );
        let Ok(Mode::StdioRelay(_, program, rest)) =
            args(&["127.0.0.1:1", "--stdio-upstream", "bin", "--stdio", "-x"])
        else {
            panic!("not a stdio relay")
        };
        assert_eq!((program.as_str(), rest), ("bin", vec!["--stdio".to_owned(), "-x".to_owned()]));
    }

    #[test]
    fn bad_arguments_are_named() {
        assert!(args(&["nowhere"]).is_err_and(|e| e.contains("`nowhere` is not an address")));
        assert!(
            args(&["127.0.0.1:1", "--http-upstream"])
                .is_err_and(|e| e.contains("--http-upstream needs a value"))
        );
        assert!(args(&["127.0.0.1:1", "--bogus", "x"]).is_err_and(|e| e.contains("unexpected arguments")));
        assert!(http_relay::HttpRelay::new("https://h/mcp").is_err());
    }
}
