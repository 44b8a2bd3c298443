//! Connection hygiene at the HTTP edge: slow clients are closed after `server.header_read_timeout` (a slow
//! body gets 408 after `server.body_read_timeout`), idle keep-alive connections after `server.idle_timeout`
//! (never an open stream or a call in progress), and past `server.max_connections` the gateway stops accepting
//! until a connection closes — each counted in its metric.
//! Clients here are raw sockets, so each test knows exactly which connection is which.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{DEMO, TestGateway, event_stream, initialize, spawn};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

/// Longest any awaited state change may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(5);

/// A gateway of the demo tools with these `server` settings (indented YAML lines).
async fn gateway(server: &str) -> TestGateway {
    let server = if server.is_empty() { String::new() } else { format!("server:\n{server}") };
    let mut gw = spawn(&format!("{server}{DEMO}")).await;
    // One connection per request: a pooled connection the idle timeout closed would fail the next request.
    gw.http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    gw
}

/// Wait (at most [`DEADLINE`]) for the gateway to close `stream`, discarding what it sends; the time the close
/// was seen.
async fn closed(stream: &mut TcpStream) -> Instant {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                Err(e) => panic!("reading: {e}"),
            }
        }
    })
    .await
    .expect("the gateway closes the connection in time");
    Instant::now()
}

/// `GET /health` on a kept-alive connection; returns the response's head and body.
async fn health(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    tokio::time::timeout(DEADLINE, response(stream)).await.expect("answered in time")
}

/// One HTTP/1.1 response with a `content-length`.
async fn response(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before a whole response: {:?}", String::from_utf8_lossy(&bytes));
        bytes.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&bytes);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .expect("a content-length");
            if body.len() >= length {
                return text.into_owned();
            }
        }
    }
}

/// A sample of `/metrics`: `series` is the name with its labels as exposed (`name{label="value"}`).
async fn metric(gw: &TestGateway, series: &str) -> f64 {
    let text = gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn slow_clients_are_closed_after_the_header_read_timeout_and_counted() {
    let gw = gateway("  header_read_timeout: 200ms\n").await;
    let timeout = Duration::from_millis(200);
    let addr = gw.server.local_addr;
    let started = Instant::now();
    // Half a request line, then nothing: the measured slow-loris.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /mcp HT").await.unwrap();
    // Nothing at all.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // A byte every 20 ms: bytes do not extend the time a head may take.
    let trickle = TcpStream::connect(addr).await.unwrap();
    let (mut trickle_read, mut trickle_write) = trickle.into_split();
    let writer = tokio::spawn(async move {
        for byte in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".iter().cycle() {
            if trickle_write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    for stream in [&mut half, &mut silent] {
        let at = closed(stream).await;
        assert!(at - started >= timeout, "closed after {:?}", at - started);
    }
    let mut buf = [0u8; 64];
    let gone = tokio::time::timeout(DEADLINE, trickle_read.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(gone, Ok(0) | Err(_)), "{gone:?}");
    assert!(started.elapsed() >= timeout);
    writer.abort();
    assert_eq!(metric(&gw, r#"mcp_connections_closed_total{reason="header_read_timeout"}"#).await, 3.0);
    assert_eq!(metric(&gw, r#"mcp_connections_closed_total{reason="idle_timeout"}"#).await, 0.0);
    // A client that sends its head in time is served as ever.
    let mut prompt = TcpStream::connect(addr).await.unwrap();
    assert!(health(&mut prompt).await.starts_with("HTTP/1.1 200"));
    gw.assert_serving().await;
}

#[tokio::test]
async fn a_body_that_stops_coming_gets_408_and_its_connection_is_closed() {
    let gw = gateway("  body_read_timeout: 300ms\n").await;
    let timeout = Duration::from_millis(300);
    // A whole head announcing 200 bytes, then 20 of them and nothing more: the head timeout no longer applies.
    let mut slow = TcpStream::connect(gw.server.local_addr).await.unwrap();
    let head = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                Accept: application/json, text/event-stream\r\nContent-Length: 200\r\n\r\n";
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(br#"{"jsonrpc":"2.0","id":"#).await.unwrap();
    let started = Instant::now();
    // The answer, then the close: read to the end.
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, slow.read_to_end(&mut answer)).await.expect("closed in time").unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(started.elapsed() >= timeout, "answered after {:?}", started.elapsed());
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert!(answer.contains("server.body_read_timeout") && answer.contains("-32600"), "{answer}");
    assert_eq!(metric(&gw, r#"mcp_connections_closed_total{reason="body_read_timeout"}"#).await, 1.0);
    // A body that comes in time is served as ever.
    gw.assert_serving().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_while_an_open_stream_and_a_slow_call_are_not() {
    let gw = gateway("  idle_timeout: 300ms\n").await;
    let idle_timeout = Duration::from_millis(300);
    let (session, _) = initialize(&gw, "2025-11-25").await;
    let mut stream = event_stream(&gw, &session).await;
    assert_eq!(stream.status(), 200);
    let slow = gw.modern_request(
        "tools/call",
        Some("sleep"),
        json!({ "name": "sleep", "arguments": { "ms": 1500 } }),
        &[],
    );
    let slow = tokio::spawn(async move { slow.send().await.unwrap().text().await.unwrap() });
    // A keep-alive connection that makes one request and then says nothing.
    let mut idle = TcpStream::connect(gw.server.local_addr).await.unwrap();
    let asked = Instant::now();
    assert!(health(&mut idle).await.starts_with("HTTP/1.1 200"));
    let at = closed(&mut idle).await;
    assert!(at - asked >= idle_timeout, "closed after {:?}", at - asked);
    // The call's connection was silent for five idle timeouts while the tool slept.
    let answer = slow.await.unwrap();
    assert!(answer.contains("slept 1500 ms"), "{answer}");
    // So was the listening stream's: it is still open (events, if any, are fine; its end is not).
    let open_until = Instant::now() + Duration::from_millis(200);
    loop {
        match tokio::time::timeout_at(open_until, stream.chunk()).await {
            Err(_) => break,
            Ok(Ok(Some(_))) => continue,
            Ok(ended) => panic!("the listening stream was cut: {ended:?}"),
        }
    }
    assert!(metric(&gw, r#"mcp_connections_closed_total{reason="idle_timeout"}"#).await >= 1.0);
    assert_eq!(metric(&gw, r#"mcp_connections_closed_total{reason="header_read_timeout"}"#).await, 0.0);
}

/// Log lines, as the test's subscriber writes them.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// One thread: the gateway's tasks run where the test's log subscriber is installed.
#[tokio::test(flavor = "current_thread")]
async fn past_max_connections_a_connection_waits_until_one_closes_then_is_served() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer({
        let logs = logs.clone();
        move || logs.clone()
    });
    let _logging = tracing::subscriber::set_default(subscriber.finish());
    let gw = gateway("  max_connections: 2\n").await;
    let addr = gw.server.local_addr;
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert!(health(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(health(&mut second).await.starts_with("HTTP/1.1 200"));
    // The kernel completes the third handshake (the backlog), but the gateway does not take the connection.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(300), third.peek(&mut buf)).await;
    assert!(waited.is_err(), "served past the cap: {waited:?}");
    assert!(logs.text().contains("connection limit reached"), "{}", logs.text());
    assert!(logs.text().contains("max_connections=2"), "{}", logs.text());
    assert!(logs.text().contains("server.max_connections"), "{}", logs.text());
    // One closes: the third is taken and answered.
    drop(first);
    let answer =
        tokio::time::timeout(DEADLINE, response(&mut third)).await.expect("served once a seat is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    closed(&mut third).await;
    // The scrape's connection takes the seat the third gave back: the second and it are open.
    assert_eq!(metric(&gw, "mcp_open_connections").await, 2.0);
    assert!(metric(&gw, "mcp_connection_limit_reached_total").await >= 1.0);
    // The warning is not repeated for every connection that waits.
    let warnings = logs.text().matches("connection limit reached").count();
    assert_eq!(warnings, 1, "{}", logs.text());
    assert!(health(&mut second).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn draining_closes_idle_and_half_sent_connections_without_waiting_for_the_drain_timeout() {
    let gw = gateway("  header_read_timeout: 200ms\n  drain_timeout: 30s\n").await;
    let addr = gw.server.local_addr;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert!(health(&mut idle).await.starts_with("HTTP/1.1 200"));
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty").await.unwrap();
    gw.server.shutdown.cancel();
    closed(&mut idle).await;
    closed(&mut half).await;
    tokio::time::timeout(DEADLINE, gw.server.join).await.expect("drained in time").unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn h2c_with_prior_knowledge_is_served_as_before() {
    let gw = gateway("").await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let health = h2.get(format!("{}/health", gw.base)).send().await.unwrap();
    assert_eq!((health.version(), health.status().as_u16()), (reqwest::Version::HTTP_2, 200));
}
