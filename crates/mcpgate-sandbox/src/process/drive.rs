//! One program in one worker: the `run` line out, the program's tool calls answered concurrently (as the
//! in-process sandbox does), until the worker says `done`, dies, or runs past its deadline.

use std::{collections::VecDeque, time::Duration};

use futures::{StreamExt, stream::FuturesUnordered};
use tokio::{io::AsyncWriteExt, time::Instant};

use super::{child::Worker, lines::Line};
use crate::{
    engine::{Completion, Failure, Limits, Program, Run},
    local::ToolCaller,
    protocol::{self, FromWorker, ToWorker},
};

/// How long past its deadline a worker may take to report its own timeout before it is killed.
const GRACE: Duration = Duration::from_millis(500);

/// Run `program` in `worker`: `sent` are the limits it is given (the time left), `limits` the caller's (for the
/// failures' wording and the line bound); `deadline` is when its time is up.
pub(crate) async fn drive(
    worker: &mut Worker,
    program: Program,
    sent: Limits,
    limits: &Limits,
    tools: &dyn ToolCaller,
    deadline: Instant,
) -> Run {
    let bound = protocol::line_limit(limits);
    let Some(mut stdin) = worker.stdin.take() else {
        return failed(Failure::Sandbox("the worker has no stdin".into()));
    };
    let mut outbox = VecDeque::from([protocol::encode(&ToWorker::Run { program, limits: sent })]);
    let mut written = 0;
    let mut calls = FuturesUnordered::new();
    let mut made = 0u32;
    let hard_deadline = deadline + GRACE;
    loop {
        tokio::select! {
            line = worker.stdout.next(bound) => match line {
                Ok(Line::Complete(line)) => match serde_json::from_slice::<FromWorker>(&line) {
                    Ok(FromWorker::Call { id, tool, arguments }) => {
                        // The engine stops a program at its limit; a worker asking for more is not the engine.
                        made += 1;
                        if made > limits.calls {
                            return failed(Failure::Calls(limits.calls));
                        }
                        calls.push(call(tools, id, tool, arguments));
                    }
                    Ok(FromWorker::Done(run)) => {
                        worker.finished = true;
                        return reworded(run, limits);
                    }
                    Ok(FromWorker::Ready(_)) => return failed(Failure::Sandbox("the worker said `ready` twice".into())),
                    Err(e) => return failed(Failure::Sandbox(format!("the worker sent a line that is not the protocol: {e}"))),
                },
                Ok(Line::TooLong) => {
                    return failed(Failure::Sandbox(format!("the worker sent a line over {bound} bytes")));
                }
                Ok(Line::Eof) | Err(_) => return ended(worker, limits).await,
            },
            Some(completion) = calls.next(), if !calls.is_empty() => {
                outbox.push_back(protocol::encode(&ToWorker::Answer(completion)));
            }
            wrote = stdin.write(outbox.front().map(|line| &line[written..]).unwrap_or_default()), if !outbox.is_empty() => {
                match wrote {
                    Ok(n) => {
                        written += n;
                        if outbox.front().is_some_and(|line| written == line.len()) {
                            outbox.pop_front();
                            written = 0;
                        }
                    }
                    // The worker is gone: its stdout ends next, and says how.
                    Err(_) => outbox.clear(),
                }
            }
            () = worker.stderr.pump() => {}
            () = tokio::time::sleep_until(hard_deadline) => return failed(Failure::Timeout(limits.time)),
        }
    }
}

/// Answer one tool call.
async fn call(tools: &dyn ToolCaller, id: u64, tool: String, arguments: String) -> Completion {
    let result = match serde_json::from_str::<serde_json::Value>(&arguments) {
        Ok(serde_json::Value::Object(arguments)) => tools.call(tool, arguments).await,
        _ => Err(format!("{tool}: arguments must be a JSON object")),
    };
    Completion { id, result }
}

/// The worker's run, its timeout given as the caller's limit (the worker had only the time left).
fn reworded(run: Run, limits: &Limits) -> Run {
    match run.outcome {
        Err(Failure::Timeout(_)) => Run { outcome: Err(Failure::Timeout(limits.time)), logs: run.logs },
        _ => run,
    }
}

/// The worker ended without `done`: out of memory, killed by seccomp, or crashed.
async fn ended(worker: &mut Worker, limits: &Limits) -> Run {
    let message = worker.explain("the worker ended without a result".into()).await;
    if worker.oom_killed() {
        return failed(Failure::Memory(limits.memory));
    }
    failed(Failure::Sandbox(message))
}

pub(crate) fn failed(failure: Failure) -> Run {
    Run { outcome: Err(failure), logs: Vec::new() }
}
