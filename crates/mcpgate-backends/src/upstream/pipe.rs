//! A stdio upstream's pipes: rmcp's transport, plus a direct lane for `tools/call`.
//!
//! rmcp's client sends each request through its service task, which spawns a task to write it, and reads each
//! answer into its typed model before the gateway converts it again: three task hand-offs and two extra
//! conversions per call. The lane writes a `tools/call` line straight from the caller's task (under the same
//! lock as rmcp's own writes, so lines never interleave), and the reader, which tells a lane answer apart in
//! one scan of the line, hands that task the answer's `result` as it came (or its error), never parsed for
//! rmcp. PipeLane requests have string ids (`"~N"`) and rmcp's are numbers, so the two never meet. Everything
//! else — the handshake, list requests, notifications, the upstream's own
//! requests — goes through rmcp as before.

use std::{
    collections::HashMap,
    io,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use futures::FutureExt;
use mcpgate_core::BackendError;
use parking_lot::Mutex;
use rmcp::{
    RoleClient,
    model::{ClientJsonRpcMessage, RequestMetaObject, ServerJsonRpcMessage},
    transport::Transport,
};
use serde_json::value::RawValue;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{ChildStdin, ChildStdout},
    sync::oneshot,
};

use super::wire::{Head, MAX_MESSAGE, Reply, unreadable};

/// The prefix of a lane request's id.
const LANE_ID: &str = "~";

/// Writes to the child and routes lane answers back to their callers.
pub(super) struct PipeLane {
    writer: Arc<tokio::sync::Mutex<Option<ChildStdin>>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    next: AtomicU64,
    meta: OnceLock<RequestMetaObject>,
}

/// A lane request in flight; dropping it forgets the request (a late answer is then ignored).
pub(super) struct Pending<'a> {
    lane: &'a PipeLane,
    number: u64,
    /// The answer.
    pub answer: oneshot::Receiver<Answer>,
}

/// What a lane request's caller receives: the answer's `result` as it came, or its error.
pub(super) type Answer = Result<Box<RawValue>, BackendError>;

impl Pending<'_> {
    /// The request's JSON-RPC id.
    pub(super) fn id(&self) -> String {
        format!("{LANE_ID}{}", self.number)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.lane.pending.lock().remove(&self.number);
    }
}

impl PipeLane {
    /// Reserve an id for a request and the place its answer will arrive.
    pub(super) fn expect(&self) -> Pending<'_> {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let (sender, answer) = oneshot::channel();
        self.pending.lock().insert(number, sender);
        Pending { lane: self, number, answer }
    }

    /// Set, once the handshake is done, the `_meta` every request on this connection carries.
    pub(super) fn set_base_meta(&self, meta: RequestMetaObject) {
        let _ = self.meta.set(meta);
    }

    /// The `_meta` every request on this connection carries (none before the handshake is done).
    pub(super) fn base_meta(&self) -> &RequestMetaObject {
        static NONE: OnceLock<RequestMetaObject> = OnceLock::new();
        self.meta.get().unwrap_or_else(|| NONE.get_or_init(RequestMetaObject::default))
    }

    /// Write one message (a whole line, newline included). A line once begun is always finished, even if the
    /// caller stops waiting: a line cut short would corrupt the stream for every message after it.
    pub(super) async fn write(&self, line: Vec<u8>) -> io::Result<()> {
        let mut writer = self.writer.clone().lock_owned().await;
        let Some(stdin) = writer.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "the upstream's stdin is closed"));
        };
        // Almost always the whole line goes out at once, without waiting.
        let written = match stdin.write(&line).now_or_never() {
            Some(written) => written?,
            None => 0,
        };
        if written == line.len() {
            return Ok(());
        }
        // The pipe is full: a task of its own finishes the line (holding the lock), whatever this caller does.
        let rest = tokio::spawn(async move {
            match writer.as_mut() {
                Some(stdin) => stdin.write_all(&line[written..]).await,
                None => Err(io::Error::new(io::ErrorKind::NotConnected, "the upstream's stdin is closed")),
            }
        });
        rest.await.map_err(io::Error::other)?
    }

    /// Hand a lane answer from upstream `name` to its caller, read from the line as it was told apart (one
    /// scan of the line in all). `false` when the line is not a lane answer.
    fn route(&self, name: &str, line: &[u8]) -> bool {
        let Some((number, answer)) = lane_answer(name, line) else { return false };
        let sender = self.pending.lock().remove(&number);
        if let Some(sender) = sender {
            let _ = sender.send(answer);
        }
        true
    }

    /// The child's output ended: every caller still waiting learns it at once.
    fn close(&self) {
        self.pending.lock().clear();
    }
}

/// The number of the lane request this line (from upstream `name`) answers, and the answer, if it is such an
/// answer (an id, no method).
fn lane_answer(name: &str, line: &[u8]) -> Option<(u64, Answer)> {
    match serde_json::from_slice::<Reply<'_>>(line) {
        Ok(reply) if reply.method.is_none() => Some((lane_number(reply.id?)?, reply.answer(name))),
        Ok(_) => None,
        // Not readable as an answer (a member twice, say), yet perhaps one to a lane request: its caller is told
        // at once rather than left waiting for its deadline.
        Err(e) => {
            let head: Head<'_> =
                serde_json::from_slice(line).ok().filter(|h: &Head<'_>| h.method.is_none())?;
            Some((lane_number(head.id?)?, Err(unreadable(name, &e.to_string()))))
        }
    }
}

/// The number of a lane request's id (`"~N"`).
fn lane_number(id: &RawValue) -> Option<u64> {
    id.get().strip_prefix('"')?.strip_suffix('"')?.strip_prefix(LANE_ID)?.parse().ok()
}

/// rmcp's transport over the child's pipes, sharing the writer with the [`PipeLane`].
pub(super) struct PipeTransport {
    name: String,
    reader: BufReader<ChildStdout>,
    line: Vec<u8>,
    lane: Arc<PipeLane>,
}

impl PipeTransport {
    /// The transport and the lane of one child.
    pub(super) fn new(name: &str, stdout: ChildStdout, stdin: ChildStdin) -> (Self, Arc<PipeLane>) {
        let lane = Arc::new(PipeLane {
            writer: Arc::new(tokio::sync::Mutex::new(Some(stdin))),
            pending: Mutex::default(),
            next: AtomicU64::new(1),
            meta: OnceLock::new(),
        });
        let transport = Self {
            name: name.to_owned(),
            reader: BufReader::new(stdout),
            line: Vec::new(),
            lane: lane.clone(),
        };
        (transport, lane)
    }

    /// Read one whole line into `self.line`; `false` at the end of the stream (or a line too long to keep).
    /// Cancel-safe: a read cut short leaves its bytes in `self.line`, and the next call goes on from there.
    async fn read_line(&mut self) -> bool {
        let room = (MAX_MESSAGE + 1).saturating_sub(self.line.len()) as u64;
        match (&mut self.reader).take(room).read_until(b'\n', &mut self.line).await {
            Ok(0) => false,
            Ok(_) if self.line.ends_with(b"\n") => true,
            Ok(_) if self.line.len() > MAX_MESSAGE => {
                tracing::error!(upstream = %self.name, "a message over {MAX_MESSAGE} bytes; closing the connection");
                false
            }
            // The stream ended in the middle of a line.
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(upstream = %self.name, "cannot read from the upstream: {e}");
                false
            }
        }
    }
}

impl Transport<RoleClient> for PipeTransport {
    type Error = io::Error;

    fn send(&mut self, item: ClientJsonRpcMessage) -> impl Future<Output = io::Result<()>> + Send + 'static {
        let line = serde_json::to_vec(&item).map(|mut line| {
            line.push(b'\n');
            line
        });
        let lane = self.lane.clone();
        async move { lane.write(line.map_err(io::Error::other)?).await }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        loop {
            if !self.read_line().await {
                self.lane.close();
                return None;
            }
            let text = self.line.trim_ascii();
            let message = (!text.is_empty() && !self.lane.route(&self.name, text))
                .then(|| serde_json::from_slice::<ServerJsonRpcMessage>(text));
            self.line.clear();
            match message {
                None => {}
                Some(Ok(message)) => return Some(message),
                Some(Err(e)) => tracing::warn!(upstream = %self.name, "ignored a malformed message: {e}"),
            }
        }
    }

    async fn close(&mut self) -> io::Result<()> {
        self.lane.close();
        // Closing the child's stdin tells it to exit.
        self.lane.writer.lock().await.take();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    fn lane_answer(line: &[u8]) -> Option<u64> {
        super::lane_answer("up", line).map(|(number, _)| number)
    }

    #[test]
    fn only_answers_to_lane_ids_are_taken() {
        assert_eq!(lane_answer(br#"{"jsonrpc":"2.0","id":"~42","result":{}}"#), Some(42));
        assert_eq!(lane_answer(br#"{"result":{"id":"~1"},"jsonrpc":"2.0","id":"~7"}"#), Some(7));
        assert_eq!(lane_answer(br#"{"jsonrpc":"2.0","id":"~3","error":{"code":-1,"message":"x"}}"#), Some(3));
        // rmcp's own (numeric ids), requests and notifications from the upstream, other strings, junk.
        assert_eq!(lane_answer(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#), None);
        assert_eq!(lane_answer(br#"{"jsonrpc":"2.0","id":"~4","method":"roots/list"}"#), None);
        assert_eq!(lane_answer(br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#), None);
        assert_eq!(lane_answer(br#"{"jsonrpc":"2.0","id":"x~4","result":{}}"#), None);
        assert_eq!(lane_answer(br#"{"jsonrpc":"2.0","id":"~","result":{}}"#), None);
        assert_eq!(lane_answer(b"not json"), None);
        // An answer to a lane request that cannot be read still reaches its caller, as an error.
        let twice = br#"{"jsonrpc":"2.0","id":"~9","result":{},"result":{}}"#;
        assert!(
            matches!(super::lane_answer("up", twice), Some((9, Err(e))) if e.to_string().contains("cannot read"))
        );
        let fine = super::lane_answer("up", br#"{"jsonrpc":"2.0","id":"~8","result":{"content":[]}}"#);
        assert!(matches!(fine, Some((8, Ok(result))) if result.get() == r#"{"content":[]}"#));
    }
}
