//! The `quickjs` sandbox: the engine on a thread of the gateway's own process, one fresh runtime per program.
//!
//! The program runs on a dedicated thread (it may compute for its whole time limit and must not hold a tokio
//! worker); its tool calls come back to the async side, which runs them concurrently (so `Promise.all` makes
//! concurrent calls) and sends each answer to the engine. Dropping [`Quickjs::run`]'s future — the caller
//! cancelled, the request's deadline passed — cancels the calls in flight and stops the engine at its next
//! check. A fixed number of slots bounds the programs running at once; a slot is freed when the thread ends,
//! not when the caller stops waiting.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
    mpsc,
};

use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, mpsc as async_mpsc},
    time::Instant,
};

use crate::engine::{self, Completion, Failure, Host, Limits, Program, Run, Stopped};

/// Native stack the engine thread gets beyond the interpreter's own limit (the host functions, serde).
const STACK_MARGIN: usize = 2 << 20;

/// How the gateway answers a program's tool call.
pub trait ToolCaller: Send + Sync {
    /// Call `tool` with `arguments` (a JSON object): the JSON value the call resolves to in the program, or the
    /// message it rejects with.
    fn call(
        &self,
        tool: String,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> BoxFuture<'_, Result<String, String>>;
}

/// The in-process QuickJS sandbox.
pub struct Quickjs {
    slots: Arc<Semaphore>,
    size: usize,
}

/// What the engine thread tells the async side.
enum Event {
    Call { id: u64, tool: String, arguments: String },
    Done(Run),
}

/// The engine thread's end of the channels.
struct Channel {
    events: async_mpsc::UnboundedSender<Event>,
    answers: mpsc::Receiver<Completion>,
}

impl Host for Channel {
    fn call(&mut self, id: u64, tool: &str, arguments: &str) {
        let call = Event::Call { id, tool: tool.to_owned(), arguments: arguments.to_owned() };
        // A closed channel means the caller went away; `wait` reports it.
        let _ = self.events.send(call);
    }

    fn wait(&mut self, deadline: Instant) -> Result<Option<Completion>, Stopped> {
        match self.answers.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(completion) => Ok(Some(completion)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Stopped),
        }
    }
}

/// Sets the engine's cancel flag when the run's future is dropped before the end.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Quickjs {
    /// A sandbox running at most `max_concurrent` programs at once.
    pub fn new(max_concurrent: usize) -> Self {
        Self { slots: Arc::new(Semaphore::new(max_concurrent.max(1))), size: max_concurrent.max(1) }
    }

    /// Programs running now.
    pub fn running(&self) -> usize {
        self.size - self.slots.available_permits()
    }

    /// Programs that may run at once.
    pub fn capacity(&self) -> usize {
        self.size
    }
}

#[async_trait::async_trait]
impl crate::Sandbox for Quickjs {
    fn name(&self) -> &'static str {
        "quickjs"
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({ "ready": true, "running": self.running(), "slots": self.capacity() })
    }

    /// Run `program` within `limits`, its tool calls answered by `tools`. Waiting for a free slot counts
    /// against the time limit.
    async fn run(&self, program: Program, limits: Limits, tools: &dyn ToolCaller) -> Run {
        let deadline = Instant::now() + limits.time;
        let slot = match tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return failed(Failure::Sandbox("the sandbox is shut down".into())),
            Err(_) => return failed(Failure::Timeout(limits.time)),
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let limits = Limits { time: remaining, ..limits };
        let (events, mut from_engine) = async_mpsc::unbounded_channel();
        let (answer, answers) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancel.clone());
        if let Err(e) = spawn(program, limits, Channel { events, answers }, cancel, slot) {
            return failed(Failure::Sandbox(format!("cannot start the engine thread: {e}")));
        }
        let mut calls = FuturesUnordered::new();
        loop {
            tokio::select! {
                event = from_engine.recv() => match event {
                    Some(Event::Call { id, tool, arguments }) => calls.push(async move {
                        let result = match serde_json::from_str::<serde_json::Value>(&arguments) {
                            Ok(serde_json::Value::Object(arguments)) => tools.call(tool, arguments).await,
                            _ => Err(format!("{tool}: arguments must be a JSON object")),
                        };
                        Completion { id, result }
                    }),
                    Some(Event::Done(run)) => return run,
                    None => return failed(Failure::Sandbox("the engine thread ended without a result".into())),
                },
                Some(completion) = calls.next(), if !calls.is_empty() => {
                    // The engine may have finished meanwhile; its result is on the way.
                    let _ = answer.send(completion);
                }
            }
        }
    }
}

/// Run the engine on a thread of its own, which holds `slot` until it ends.
fn spawn(
    program: Program,
    limits: Limits,
    mut channel: Channel,
    cancel: Arc<AtomicBool>,
    slot: OwnedSemaphorePermit,
) -> std::io::Result<()> {
    let builder =
        std::thread::Builder::new().name("mcpgate-js".into()).stack_size(limits.stack + STACK_MARGIN);
    builder.spawn(move || {
        let run = engine::run(&program, &limits, &mut channel, &cancel);
        let _ = channel.events.send(Event::Done(run));
        drop(slot);
    })?;
    Ok(())
}

fn failed(failure: Failure) -> Run {
    Run { outcome: Err(failure), logs: Vec::new() }
}
