//! One program in one worker: the `run` line out, the program's tool calls answered concurrently (as the
//! in-process sandbox does), until the worker says `done`, dies, or runs past its deadline.

use std::{collections::VecDeque, time::Duration};

use futures::{StreamExt, stream::FuturesUnordered};
use tokio::{io::AsyncWriteExt, time::Instant};

use super::{child::Worker, lines::Line};
use crate::{
    engine::{Failure, Limits, Program, Run},
    local::{ToolCaller, answer},
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
        return Run::failed(Failure::Sandbox("the worker has no stdin".into()));
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
                            return Run::failed(Failure::Calls(limits.calls));
                        }
                        calls.push(answer(tools, id, tool, arguments));
                    }
                    Ok(FromWorker::Done(run)) => {
                        worker.finished = true;
                        return run.timed_out_at(limits.time);
                    }
                    Ok(FromWorker::Ready(_)) => return Run::failed(Failure::Sandbox("the worker said `ready` twice".into())),
                    Err(e) => return Run::failed(Failure::Sandbox(format!("the worker sent a line that is not the protocol: {e}"))),
                },
                Ok(Line::TooLong) => {
                    return Run::failed(Failure::Sandbox(format!("the worker sent a line over {bound} bytes")));
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
            () = tokio::time::sleep_until(hard_deadline) => return Run::failed(Failure::Timeout(limits.time)),
        }
    }
}

/// The worker ended without `done`: out of memory, killed by seccomp, or crashed.
async fn ended(worker: &mut Worker, limits: &Limits) -> Run {
    let message = worker.explain("the worker ended without a result".into()).await;
    if worker.oom_killed() {
        return Run::failed(Failure::Memory(limits.memory));
    }
    Run::failed(Failure::Sandbox(message))
}
