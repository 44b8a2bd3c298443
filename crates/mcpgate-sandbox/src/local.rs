//! The `quickjs` sandbox: the engine on a thread of the gateway's own process, one fresh runtime per program.
//!
//! The program runs on a dedicated thread (it may compute for its whole time limit and must not hold a tokio
//! worker); its tool calls come back to the async side, which runs them concurrently (so `Promise.all` makes
//! concurrent calls) and sends each answer to the engine. Dropping `Quickjs::run`'s future — the caller
//! cancelled, the request's deadline passed — cancels the calls in flight and stops the engine at its next
//! check. A fixed number of slots bounds the programs running at once; a slot is freed when the engine is done
//! with the program, not when the caller stops waiting. Engine threads are kept and reused, one program at a
//! time each (the runtime is fresh per program): starting a thread per program cost up to ~3 ms on a busy
//! machine, more than the program itself.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
    mpsc,
};

use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use parking_lot::Mutex;
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

/// Answer tool call `id` of a program with `tools`: `arguments` (JSON text) must be an object.
pub(crate) async fn answer(tools: &dyn ToolCaller, id: u64, tool: String, arguments: String) -> Completion {
    let result = match serde_json::from_str::<serde_json::Value>(&arguments) {
        Ok(serde_json::Value::Object(arguments)) => tools.call(tool, arguments).await,
        _ => Err(format!("{tool}: arguments must be a JSON object")),
    };
    Completion { id, result }
}

/// One of `slots`, waited for until `deadline`; else the run it ends as (a timeout reported as `limit`).
pub(crate) async fn slot(
    slots: &Arc<Semaphore>,
    deadline: Instant,
    limit: std::time::Duration,
) -> Result<OwnedSemaphorePermit, Run> {
    match tokio::time::timeout_at(deadline, slots.clone().acquire_owned()).await {
        Ok(Ok(slot)) => Ok(slot),
        Ok(Err(_)) => Err(Run::failed(Failure::Sandbox("the sandbox is shut down".into()))),
        Err(_) => Err(Run::failed(Failure::Timeout(limit))),
    }
}

/// The in-process QuickJS sandbox.
pub struct Quickjs {
    slots: Arc<Semaphore>,
    size: usize,
    /// Engine threads waiting for a program (at most one per slot).
    idle: Arc<Mutex<Vec<EngineThread>>>,
}

/// A program for an engine thread, with what it needs to report and to give back its slot.
type Job = Box<dyn FnOnce() + Send>;

/// What an engine thread is told.
enum Work {
    /// Run this program.
    Run(Job),
    /// End.
    Quit,
}

/// A kept engine thread: where its next program goes, and the native stack it was started with.
struct EngineThread {
    jobs: mpsc::Sender<Work>,
    stack: usize,
}

impl Drop for Quickjs {
    fn drop(&mut self) {
        for thread in self.idle.lock().drain(..) {
            let _ = thread.jobs.send(Work::Quit);
        }
    }
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
        let size = max_concurrent.max(1);
        Self { slots: Arc::new(Semaphore::new(size)), size, idle: Arc::default() }
    }

    /// Programs running now.
    pub fn running(&self) -> usize {
        self.size - self.slots.available_permits()
    }

    /// Programs that may run at once.
    pub fn capacity(&self) -> usize {
        self.size
    }

    /// Engine threads waiting for a program.
    pub fn idle_threads(&self) -> usize {
        self.idle.lock().len()
    }
}

#[async_trait::async_trait]
impl crate::Sandbox for Quickjs {
    fn name(&self) -> &'static str {
        "quickjs"
    }

    fn status(&self) -> serde_json::Value {
        let idle = self.idle_threads();
        serde_json::json!({ "ready": true, "running": self.running(), "slots": self.capacity(), "idle_threads": idle })
    }

    /// Run `program` within `limits`, its tool calls answered by `tools`. Waiting for a free slot counts
    /// against the time limit.
    async fn run(&self, program: Program, limits: Limits, tools: &dyn ToolCaller) -> Run {
        let deadline = Instant::now() + limits.time;
        let slot = match slot(&self.slots, deadline, limits.time).await {
            Ok(slot) => slot,
            Err(run) => return run,
        };
        let limit = limits.time;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let limits = Limits { time: remaining, ..limits };
        let (events, mut from_engine) = async_mpsc::unbounded_channel();
        let (to_engine, answers) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancel.clone());
        let mut channel = Channel { events, answers };
        let job: Job = Box::new(move || {
            let run = engine::run(&program, &limits, &mut channel, &cancel);
            // The slot first: whoever hears `Done` finds it free.
            drop(slot);
            let _ = channel.events.send(Event::Done(run));
        });
        if let Err(e) = self.start(job, limits.stack + STACK_MARGIN) {
            return Run::failed(Failure::Sandbox(format!("cannot start the engine thread: {e}")));
        }
        let mut calls = FuturesUnordered::new();
        loop {
            tokio::select! {
                event = from_engine.recv() => match event {
                    Some(Event::Call { id, tool, arguments }) => calls.push(answer(tools, id, tool, arguments)),
                    Some(Event::Done(run)) => return run.timed_out_at(limit),
                    None => return Run::failed(Failure::Sandbox("the engine thread ended without a result".into())),
                },
                Some(completion) = calls.next(), if !calls.is_empty() => {
                    // The engine may have finished meanwhile; its result is on the way.
                    let _ = to_engine.send(completion);
                }
            }
        }
    }
}

impl Quickjs {
    /// Run `job` on an idle engine thread with at least `stack` bytes of stack, or on a new one. (A thread with
    /// less — `max_stack` grew in a reload — is let go.)
    fn start(&self, job: Job, stack: usize) -> std::io::Result<()> {
        let mut job = job;
        while let Some(thread) = self.idle.lock().pop() {
            if thread.stack < stack {
                let _ = thread.jobs.send(Work::Quit);
                continue;
            }
            match thread.jobs.send(Work::Run(job)) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(Work::Run(back))) => job = back,
                Err(mpsc::SendError(Work::Quit)) => unreachable!("sent a program"),
            }
        }
        let (jobs, next) = mpsc::channel::<Work>();
        let (idle, own) = (Arc::downgrade(&self.idle), jobs.clone());
        let builder = std::thread::Builder::new().name("mcpgate-js".into()).stack_size(stack);
        builder.spawn(move || {
            while let Ok(Work::Run(job)) = next.recv() {
                job();
                // Back among the idle, unless the sandbox is gone.
                let Some(idle) = idle.upgrade() else { break };
                idle.lock().push(EngineThread { jobs: own.clone(), stack });
            }
        })?;
        jobs.send(Work::Run(job)).map_err(|_| std::io::Error::other("the engine thread ended at once"))
    }
}
