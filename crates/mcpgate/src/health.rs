//! `mcpgate health`: probe a running gateway's `/health` (or `/ready`) and exit 0 when it answers 200, 1
//! otherwise — a container `HEALTHCHECK` or a script needs no curl. A plain HTTP/1.1 GET over loopback, bounded
//! by a timeout.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    time::Duration,
};

use anyhow::{Context, bail};

/// Probe `path` at `addr` (`HOST:PORT`) within `timeout`: `Ok` with the status line when it answers 200.
pub(crate) fn probe(addr: &str, path: &str, timeout: Duration) -> anyhow::Result<String> {
    let target: SocketAddr = addr
        .to_socket_addrs()
        .with_context(|| format!("{addr}: not an address"))?
        .next()
        .context("no address")?;
    let mut stream =
        TcpStream::connect_timeout(&target, timeout).with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut head = Vec::new();
    // The status line is all that is needed; a large body is not read.
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") && head.len() < 256 {
        if stream.read(&mut byte).context("no answer")? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head).trim().to_owned();
    match line.split(' ').nth(1) {
        Some("200") => Ok(line),
        Some(_) => bail!("{path} answered {line:?}"),
        None => bail!("{path}: not an HTTP answer ({line:?})"),
    }
}

/// The address a gateway started with the same environment listens on, as a client reaches it: `BIND_IP` and
/// `MCP_PORT` / `PORT` (the wildcard and unset host taken as loopback), else `127.0.0.1:8000`.
pub(crate) fn default_addr(get: impl Fn(&str) -> Option<String>) -> String {
    let port = get("MCP_PORT").or_else(|| get("PORT")).unwrap_or_else(|| "8000".into());
    let host = match get("BIND_IP").as_deref() {
        None | Some("0.0.0.0") | Some("") => "127.0.0.1".to_owned(),
        Some("::") => "[::1]".to_owned(),
        Some(ip) if ip.contains(':') => format!("[{ip}]"),
        Some(ip) => ip.to_owned(),
    };
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_follows_the_environment_and_a_wildcard_is_loopback() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(default_addr(env(&[])), "127.0.0.1:8000");
        assert_eq!(default_addr(env(&[("PORT", "9000"), ("MCP_PORT", "9100")])), "127.0.0.1:9100");
        assert_eq!(default_addr(env(&[("BIND_IP", "0.0.0.0"), ("PORT", "80")])), "127.0.0.1:80");
        assert_eq!(default_addr(env(&[("BIND_IP", "::")])), "[::1]:8000");
        assert_eq!(default_addr(env(&[("BIND_IP", "10.0.0.5")])), "10.0.0.5:8000");
    }

    #[test]
    fn nothing_listening_is_an_error_naming_the_address() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let error = probe(&format!("127.0.0.1:{port}"), "/health", Duration::from_secs(1)).unwrap_err();
        assert!(format!("{error:#}").contains("cannot connect"), "{error:#}");
    }
}
