//! What the gateway and a `sandbox-worker` say to each other: one JSON object a line, over the worker's stdin
//! (gateway → worker) and stdout (worker → gateway).
//!
//! ```text
//! worker  → {"ready": {"landlock": "fully_enforced", "seccomp": true, "no_new_privs": true}}
//! gateway → {"run": {"program": Program, "limits": Limits}}
//! worker  → {"call": {"id": 1, "tool": "demo__echo", "arguments": "{\"x\":1}"}}
//! gateway → {"answer": {"id": 1, "result": {"Ok": "{\"x\":1}"}}}
//! worker  → {"done": Run}                      (then it exits 0)
//! ```
//!
//! The worker confines itself and says `ready` before it reads anything, so a pooled worker is confined while it
//! waits. It runs one program, then exits. Every line either side reads is bounded ([`FIRST_LINE_LIMIT`],
//! [`answer_limit`], [`line_limit`]): a worker that sends more is a failed sandbox, never an out-of-memory
//! gateway. End of input is the end: a worker whose stdin closes stops.

use serde::{Deserialize, Serialize};

use crate::engine::{Completion, Limits, Program, Run};

/// A line the gateway sends the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToWorker {
    /// The one program to run: the first line after `ready`.
    Run {
        /// The program.
        program: Program,
        /// Its limits (the time left when the gateway sent it).
        limits: Limits,
    },
    /// The answer to one of the program's tool calls.
    Answer(Completion),
}

/// A line the worker sends the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromWorker {
    /// The worker confined itself and waits for its program.
    Ready(Confinement),
    /// The program started a tool call; its answer is an [`ToWorker::Answer`] with the same id.
    Call {
        /// The call's id in this run.
        id: u64,
        /// The public tool name.
        tool: String,
        /// The arguments, a JSON object as text.
        arguments: String,
    },
    /// The run ended; the worker exits next.
    Done(Run),
}

/// How a worker confined itself before reading its program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    /// Landlock's state: `fully_enforced`, `partially_enforced` (the kernel knows only some of the access
    /// rights; all it knows are denied) or `not_enforced` (no Landlock: accepted only with `--landlock
    /// best-effort`, which gVisor needs).
    pub landlock: String,
    /// Whether the seccomp filter is installed (always, or the worker does not start).
    pub seccomp: bool,
    /// Whether `no_new_privs` is set.
    pub no_new_privs: bool,
}

/// Most bytes the worker reads for its `run` line (the program, its bindings and its input).
pub const FIRST_LINE_LIMIT: usize = 64 << 20;

/// Most bytes the gateway reads for the worker's `ready` line.
pub const READY_LINE_LIMIT: usize = 4 << 10;

/// Slack over the limits for the JSON around a result or a call.
const SLACK: usize = 1 << 20;

/// Most bytes the gateway reads for one line of a worker running under `limits`: the result, the logs (each
/// byte of which may take six escaped: `\u0000`) and a MiB of slack. A tool call's arguments count against
/// this too. Longer is a failed sandbox.
pub fn line_limit(limits: &Limits) -> usize {
    limits.output.saturating_add(limits.logs.saturating_mul(6)).saturating_add(SLACK)
}

/// Most bytes the worker reads for one answer: more than its heap could hold is refused.
pub fn answer_limit(limits: &Limits) -> usize {
    limits.memory.saturating_add(SLACK)
}

/// `message` as one protocol line, newline included.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).unwrap_or_else(|e| {
        // Only a map with non-string keys fails, and none of these messages has one.
        format!("{{\"encode_error\":{:?}}}", e.to_string()).into_bytes()
    });
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::engine::{Failure, LogLine};

    #[test]
    fn the_lines_are_the_documented_json() {
        let call = FromWorker::Call { id: 1, tool: "t".into(), arguments: "{}".into() };
        let value: serde_json::Value = serde_json::from_slice(&encode(&call)).unwrap();
        assert_eq!(value, json!({"call": {"id": 1, "tool": "t", "arguments": "{}"}}));
        let answer = ToWorker::Answer(Completion { id: 1, result: Err("no".into()) });
        let value: serde_json::Value = serde_json::from_slice(&encode(&answer)).unwrap();
        assert_eq!(value, json!({"answer": {"id": 1, "result": {"Err": "no"}}}));
        let done = FromWorker::Done(Run {
            outcome: Err(Failure::Timeout(Duration::from_secs(1))),
            logs: vec![LogLine { level: "info".into(), text: "x".into() }],
        });
        let line = encode(&done);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(serde_json::from_slice::<FromWorker>(&line).unwrap(), done);
    }
}
