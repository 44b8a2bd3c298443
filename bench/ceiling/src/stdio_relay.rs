//! `--stdio-upstream PROGRAM [ARGS...]`: the floor's stdio relay. It spawns
//! PROGRAM with piped stdin/stdout and carries every `POST /mcp` request over
//! that one pipe pair, newline-delimited, the way a stdio MCP proxy must:
//!
//! * the caller parses the request, gives it a fresh id, registers a oneshot
//!   under that id in the pending map, and queues the line for the writer;
//! * one writer task owns the child's stdin: it writes whatever is queued in
//!   one go, then waits for more;
//! * one reader task owns the child's stdout: it parses each line's id and
//!   completes the waiting caller's oneshot;
//! * the caller puts the client's id back and answers with JSON.
//!
//! When the child is gone, every waiting and every later call gets a 502
//! saying why. Notifications are answered 202 without touching the child.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::HeaderMap;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};

use crate::relay::{self, Answer, IdSource, Parsed, UPSTREAM_TIMEOUT, UpstreamError};
use crate::rpc::Reply;
use crate::serve::{self, HttpResponse, McpHandler};

/// Lines queued for the writer before callers wait (backpressure on a stuck child).
const QUEUE: usize = 4096;
/// Read buffer for the child's stdout.
const READ_BUF: usize = 64 * 1024;

type Waiter = oneshot::Sender<Result<Answer, UpstreamError>>;

/// Calls waiting for the child's answer, by the relay's id; `closed` once the
/// child is gone (then nothing new is registered).
#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, Waiter>,
    closed: Option<String>,
}

/// The pending map, shared by callers and the two pipe tasks.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Pending>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic elsewhere cannot leave the map inconsistent (single inserts/removes): keep going.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the child gone (the first reason wins) and fails every waiting call with it.
    fn close(&self, why: String) {
        let (why, waiting) = {
            let mut p = self.lock();
            let why = p.closed.get_or_insert(why).clone();
            (why, std::mem::take(&mut p.waiting))
        };
        for waiter in waiting.into_values() {
            let _ = waiter.send(Err(UpstreamError::Unavailable(why.clone())));
        }
    }

    fn closed_reason(&self) -> String {
        self.lock().closed.clone().unwrap_or_else(|| "the child's stdin writer stopped".to_owned())
    }
}

/// Removes a call from the pending map if it ends without an answer (timeout,
/// client gone), so abandoned ids do not accumulate.
struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
    answered: bool,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.shared.lock().waiting.remove(&self.id);
        }
    }
}

/// The relay's state: the queue to the child's stdin, the pending map, the id counter.
pub struct StdioRelay {
    to_child: mpsc::Sender<Vec<u8>>,
    shared: Shared,
    ids: IdSource,
}

impl StdioRelay {
    /// Spawns `program` with `args` (argv, no shell; stderr inherited) and starts
    /// the writer and reader tasks. Must run inside the tokio runtime.
    pub fn spawn(program: &str, args: &[String]) -> Result<Self, String> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("--stdio-upstream `{program}`: cannot start it: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(format!("--stdio-upstream `{program}`: no piped stdin/stdout"));
        };
        let shared = Shared::default();
        let (to_child, queue) = mpsc::channel(QUEUE);
        tokio::spawn(write_lines(stdin, queue, shared.clone()));
        tokio::spawn(read_lines(stdout, child, shared.clone()));
        Ok(Self { to_child, shared, ids: IdSource::default() })
    }

    /// Sends `line` (newline-terminated, carrying id `id`) and waits for its answer.
    async fn call(&self, id: u64, line: Vec<u8>) -> Result<Answer, UpstreamError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.shared.lock();
            if let Some(why) = &p.closed {
                return Err(UpstreamError::Unavailable(why.clone()));
            }
            // Registered before the line is queued: the answer cannot come first.
            p.waiting.insert(id, tx);
        }
        let mut registration = Registration { shared: &self.shared, id, answered: false };
        if self.to_child.send(line).await.is_err() {
            return Err(UpstreamError::Unavailable(self.shared.closed_reason()));
        }
        match tokio::time::timeout(UPSTREAM_TIMEOUT, rx).await {
            // The reader (or `close`) took the entry out of the map when it completed the oneshot.
            Ok(Ok(answer)) => {
                registration.answered = true;
                answer
            }
            Ok(Err(_)) => {
                registration.answered = true;
                Err(UpstreamError::Unavailable(self.shared.closed_reason()))
            }
            // Still registered: the registration's drop removes it.
            Err(_) => Err(UpstreamError::TimedOut),
        }
    }
}

impl McpHandler for StdioRelay {
    async fn mcp(&self, _headers: HeaderMap, body: Bytes) -> HttpResponse {
        let msg = match relay::parse(&body) {
            Ok(Parsed::Request(msg)) => msg,
            Ok(Parsed::Notification) => return serve::reply(Reply::Accepted),
            Err(reply) => return serve::reply(reply),
        };
        let our_id = self.ids.next();
        let mut line = Vec::with_capacity(body.len() + 16);
        if let Err(e) = relay::reid(&msg, our_id, &mut line) {
            return e.into_response(msg.id());
        }
        line.push(b'\n');
        let restored = match self.call(our_id, line).await {
            Ok(answer) => answer.restore(msg.id()),
            Err(e) => Err(e),
        };
        match restored {
            Ok(body) => serve::reply(Reply::Json(StatusCode::OK, body)),
            Err(e) => e.into_response(msg.id()),
        }
    }
}

/// The writer task: owns the child's stdin; writes every queued line in one
/// write, then waits for more. A failed write closes the relay.
async fn write_lines(mut stdin: ChildStdin, mut queue: mpsc::Receiver<Vec<u8>>, shared: Shared) {
    let mut lines = Vec::new();
    let mut buf = Vec::with_capacity(READ_BUF);
    while queue.recv_many(&mut lines, QUEUE).await > 0 {
        buf.clear();
        for line in lines.drain(..) {
            buf.extend_from_slice(&line);
        }
        if let Err(e) = stdin.write_all(&buf).await {
            shared.close(format!("writing to the child's stdin: {e}"));
            return;
        }
    }
}

/// The reader task: owns the child's stdout (and the child); completes the
/// waiting call of each answer line. At EOF or a read error it closes the
/// relay with the child's exit status when there is one.
async fn read_lines(stdout: ChildStdout, mut child: Child, shared: Shared) {
    let mut reader = BufReader::with_capacity(READ_BUF, stdout);
    let mut line = Vec::with_capacity(1024);
    let why = loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) => break "the child closed its stdout".to_owned(),
            Ok(_) => dispatch(&line, &shared),
            Err(e) => break format!("reading the child's stdout: {e}"),
        }
    };
    // A child that closed stdout is usually exiting: name its status if it comes quickly.
    let why = match tokio::time::timeout(Duration::from_millis(200), child.wait()).await {
        Ok(Ok(status)) => format!("the child exited ({status})"),
        _ => why,
    };
    eprintln!("stdio relay: {why}");
    shared.close(why);
}

/// Hands one line from the child to the call waiting for its id. Lines that are
/// not answers to a pending call (blank, server-to-client messages, late
/// answers to abandoned calls) are dropped; unreadable ones are reported.
fn dispatch(line: &[u8], shared: &Shared) {
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let answer: Answer = match serde_json::from_slice(line) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("stdio relay: ignoring a line from the child that is not JSON-RPC: {e}");
            return;
        }
    };
    if answer.method.is_some() {
        return;
    }
    let Some(id) = answer.id.as_ref().and_then(serde_json::Value::as_u64) else {
        eprintln!(
            "stdio relay: ignoring an answer without a relay id: {}",
            String::from_utf8_lossy(line).trim_end()
        );
        return;
    };
    let waiter = shared.lock().waiting.remove(&id);
    if let Some(waiter) = waiter {
        let _ = waiter.send(Ok(answer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_child_that_exits_makes_every_call_fail_with_its_status() {
        let relay = StdioRelay::spawn("sh", &["-c".to_owned(), "exit 3".to_owned()]).unwrap();
        // Wait until the reader has seen the child go (no call races a write into the closed pipe).
        for _ in 0..500 {
            if relay.shared.lock().closed.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
        let resp = relay.mcp(HeaderMap::new(), Bytes::from_static(call)).await;
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
        let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(err["id"], 1);
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains("the child exited (exit status: 3)"), "{message}");
    }

    #[tokio::test]
    async fn a_program_that_cannot_start_is_a_precise_error() {
        let Err(e) = StdioRelay::spawn("/nonexistent/mcp-server", &[]) else { panic!("spawned") };
        assert!(e.contains("/nonexistent/mcp-server") && e.contains("cannot start"), "{e}");
    }
}
