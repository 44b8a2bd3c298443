//! The audit log: one JSON line per operation — `tools/call`, `resources/read`, `prompts/get`,
//! `completion/complete`, `resources/subscribe` and `resources/unsubscribe`, refusals included — appended to a file.
//!
//! Each line is serialized onto its thread's queue and written with `write(2)` to a file opened with
//! `O_APPEND` before the answer leaves (the pipeline awaits its observers first). Once `write` returns the line
//! is the kernel's: a crash or SIGKILL of mcpgate cannot lose it, and there is no buffer of ours to flush; only a
//! crash of the machine can lose it, unless `fsync` is on. `O_APPEND` keeps lines whole when several processes
//! share the file. A line that cannot be written is counted ([`AuditCounters::failures`]) and logged (the first,
//! then every 1024th), and the call is still answered: the audit log records calls, it does not gate them.
//! [`AuditLog::reopen`] (SIGHUP) opens the path again, so a rotated file is left behind whole.
//!
//! **Group commit.** Each thread queues its lines apart. A call that finds no write of its thread's queue under
//! way becomes its writer: it queues its line, lets the tasks already ready on its thread run first (one `yield`,
//! as Redis writes its append-only file once per event-loop pass, before the replies go), then writes everything
//! queued in one `write` (and one `fsync`). Calls that finish meanwhile, or while that write is under way, queue
//! their lines and wait; when a write ends with lines left, one of them writes those. Alone, a call pays one
//! `yield` more than a plain `write`; under load one system call carries the lines of a whole scheduler pass, and
//! a worker's batch never waits for another worker's pass (the writes of two queues take turns at the file, so
//! lines of calls on different threads may reach it out of time order; each carries its time).
//!
//! A line (one per call, keys always in this order, absent values `null`):
//! `{"time":"2026-11-21T19:30:00.123Z","request_id":"5f0c…","surface":"mcp","principal":"ci-bot",
//! "client_ip":"10.0.0.7","operation":"tools/call","target":"docs__search","tool":"docs__search","backend":"docs",
//! "outcome":"ok","error_kind":null,"duration_ms":12.345,"cache":"miss","tokens_in":14,"tokens_out":512,
//! "budget":"within"}`, then `"arguments":{…}` when configured and `"detail":{…}` when the backend said something
//! about the call ([`mcpgate_core::ToolOutcome::audit`]).
//! `target` is what the operation named (the tool, the resource URI, the prompt, the completed prompt or
//! template); `tool` repeats it for `tools/call` and is `null` otherwise.
//! `outcome`: `ok`, `tool_error` (the tool ran and reported failure, or its arguments did not fit its schema),
//! `input_required` (a round of a multi-round call), `error` (with `error_kind`: `not_found`, `rate_limited`,
//! `timeout`, `unavailable`, …). `cache`: `none` (not cached), `miss`, `hit`. `budget`: `within`, `truncated`,
//! `refused`, or `null` when no budget applied.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::SystemTime,
};

use tokio::sync::Notify;

use mcpgate_config::AuditConfig;
use mcpgate_core::{BackendError, JsonObject, OperationKind};
use serde::Serialize;
use serde_json::Value;

use crate::{
    budget::BudgetVerdict,
    pipeline::{CacheStatus, CallObserver, CallReport, Outcome, Settling},
};

/// What a masked argument value becomes.
const REDACTED: &str = "[redacted]";

/// A queue buffer bigger than this (a batch of calls with huge arguments) is not kept for the next batch.
const KEPT_BUFFER: usize = 64 * 1024;

/// The audit log of a running gateway.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    /// The file open now, used by the one call writing at a time; [`AuditLog::reopen`] swaps it.
    file: parking_lot::Mutex<File>,
    /// The group-commit queues; each thread uses one ([`AuditLog::group`]).
    groups: Box<[Group]>,
    include_arguments: bool,
    /// Lower-cased field names whose values are masked.
    redact: Vec<String>,
    fsync: bool,
    counters: Arc<AuditCounters>,
    /// Whether a line of this log failed already (its first failure is logged whatever the counters say).
    failed_before: AtomicBool,
}

/// What the audit logs of a process have done, counted across every log it opens (a reload that changes the
/// `audit` section opens a new one), for `/status` and `/metrics`.
#[derive(Debug, Default)]
pub struct AuditCounters {
    failures: AtomicU64,
    writes: AtomicU64,
    lines: AtomicU64,
}

impl AuditCounters {
    /// Lines that could not be written.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// `write(2)` calls (each carries one line or, under load, many).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Lines written.
    pub fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }
}

/// Group-commit queues of an audit log. Each thread queues its calls' lines to its own (while there are no more
/// threads than this), so a worker thread's batch waits for no other thread's scheduler.
const GROUPS: usize = 16;

thread_local! {
    /// This thread's group-commit queue, modulo the number of queues.
    static GROUP: usize = {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

/// One group-commit queue.
#[derive(Debug, Default)]
struct Group {
    /// Lines waiting to be written, and whether a write is under way.
    queue: parking_lot::Mutex<Queue>,
    /// Woken whenever a write of this queue's lines ends.
    written: Notify,
}

/// The group-commit state. Lines are numbered in the order they are queued (a line's number is `queued` just
/// after it).
#[derive(Debug, Default)]
struct Queue {
    /// Lines queued and not yet taken by a writer.
    lines: Vec<u8>,
    /// Lines queued so far.
    queued: u64,
    /// Lines whose write has ended (written, or counted as failed).
    ended: u64,
    /// A call is writing, or is about to (its yield).
    writing: bool,
    /// Calls waiting for their line.
    waiting: usize,
}

/// One line, its keys in the documented order ([`Line::write`]).
struct Line<'a> {
    time: SystemTime,
    request_id: &'a str,
    surface: &'static str,
    principal: &'a str,
    client_ip: Option<IpAddr>,
    operation: &'static str,
    target: &'a str,
    tool: Option<&'a str>,
    backend: &'a str,
    outcome: &'static str,
    error_kind: Option<&'static str>,
    duration_ms: f64,
    cache: &'static str,
    tokens_in: Option<u64>,
    tokens_out: Option<u64>,
    budget: Option<&'static str>,
    /// Left out when `None`.
    arguments: Option<Value>,
    /// Left out when `None`.
    detail: Option<&'a Value>,
}

impl Line<'_> {
    /// The line as one JSON object onto `out`. The keys are written as they are (none needs escaping), only the
    /// values go through serde_json: a derived `Serialize` escaped every key of every line again.
    fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(b"{\"time\":\"");
        write!(out, "{}", humantime::format_rfc3339_millis(self.time)).map_err(serde_json::Error::io)?;
        out.push(b'"');
        field(out, "request_id", self.request_id)?;
        field(out, "surface", self.surface)?;
        field(out, "principal", self.principal)?;
        field(out, "client_ip", &self.client_ip)?;
        field(out, "operation", self.operation)?;
        field(out, "target", self.target)?;
        field(out, "tool", &self.tool)?;
        field(out, "backend", self.backend)?;
        field(out, "outcome", self.outcome)?;
        field(out, "error_kind", &self.error_kind)?;
        field(out, "duration_ms", &self.duration_ms)?;
        field(out, "cache", self.cache)?;
        field(out, "tokens_in", &self.tokens_in)?;
        field(out, "tokens_out", &self.tokens_out)?;
        field(out, "budget", &self.budget)?;
        if let Some(arguments) = &self.arguments {
            field(out, "arguments", arguments)?;
        }
        if let Some(detail) = self.detail {
            field(out, "detail", detail)?;
        }
        out.push(b'}');
        Ok(())
    }
}

/// `,"key":value` onto `out`; `key` must need no JSON escaping.
fn field<T: Serialize + ?Sized>(out: &mut Vec<u8>, key: &str, value: &T) -> serde_json::Result<()> {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    serde_json::to_writer(&mut *out, value)
}

impl AuditLog {
    /// The audit log `config` asks for, its file opened for appending (created if missing), counting into
    /// `counters`; `None` when no file is set.
    pub fn open(config: &AuditConfig, counters: Arc<AuditCounters>) -> std::io::Result<Option<Arc<Self>>> {
        let Some(path) = &config.file else { return Ok(None) };
        let file = open_append(path)?;
        Ok(Some(Arc::new(Self {
            path: path.clone(),
            file: parking_lot::Mutex::new(file),
            groups: (0..GROUPS).map(|_| Group::default()).collect(),
            include_arguments: config.include_arguments,
            redact: config.redact.iter().map(|f| f.to_ascii_lowercase()).collect(),
            fsync: config.fsync,
            counters,
            failed_before: AtomicBool::new(false),
        })))
    }

    /// Open the path again, for log rotation: after `mv audit.log audit.log.1` lines keep going to the moved
    /// file until this is called (SIGHUP), then to a new `audit.log`; none is lost or split. On failure the
    /// file in use stays.
    pub fn reopen(&self) -> std::io::Result<()> {
        let file = open_append(&self.path)?;
        *self.file.lock() = file;
        Ok(())
    }

    /// The file the log appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What this log, and the logs before it that shared its counters, have done.
    pub fn counters(&self) -> &AuditCounters {
        &self.counters
    }

    /// Append whole lines: one `write` (a regular file takes it whole unless the disk is full).
    fn append(&self, lines: &[u8]) -> std::io::Result<()> {
        let mut file = self.file.lock();
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        file.write_all(lines)?;
        if self.fsync {
            file.sync_data()?;
        }
        Ok(())
    }

    /// The group-commit queue of the calling thread.
    fn group(&self) -> &Group {
        &self.groups[GROUP.with(|g| *g) % self.groups.len()]
    }

    /// Serialize `line` onto `group`'s queue (the buffer the next write takes, so a line is neither allocated nor
    /// copied on its own): `Ok(Ok)` when the caller is to write (no write under way), `Ok(Err)` with the line's
    /// number to wait for, `Err` (nothing queued) when it does not serialize.
    fn enqueue(group: &Group, line: &Line<'_>) -> serde_json::Result<Result<(), u64>> {
        let mut queue = group.queue.lock();
        let start = queue.lines.len();
        if let Err(error) = line.write(&mut queue.lines) {
            queue.lines.truncate(start);
            return Err(error);
        }
        queue.lines.push(b'\n');
        queue.queued += 1;
        Ok(if queue.writing {
            queue.waiting += 1;
            Err(queue.queued)
        } else {
            queue.writing = true;
            Ok(())
        })
    }

    /// Write everything queued in `group`, as its one writer (`writing` is set by the caller). Lines queued
    /// meanwhile are left to the calls waiting on them; only lines nobody waits on any more (their call was
    /// dropped) are written here too.
    fn write_queued(&self, group: &Group) {
        loop {
            let (mut lines, upto, from) = {
                let mut queue = group.queue.lock();
                (std::mem::take(&mut queue.lines), queue.queued, queue.ended)
            };
            match self.append(&lines) {
                Ok(()) => _ = self.counters.lines.fetch_add(upto - from, Ordering::Relaxed),
                Err(error) => self.failed(upto - from, &error),
            }
            let again = {
                let mut queue = group.queue.lock();
                queue.ended = upto;
                lines.clear();
                if queue.lines.is_empty() && lines.capacity() <= KEPT_BUFFER {
                    queue.lines = lines; // its allocation serves the next batch
                }
                let orphaned = !queue.lines.is_empty() && queue.waiting == 0;
                queue.writing = orphaned;
                orphaned
            };
            group.written.notify_waiters();
            if !again {
                return;
            }
        }
    }

    /// `arguments` with every configured field masked, at any depth.
    fn redacted(&self, arguments: &JsonObject) -> Value {
        fn mask(value: &mut Value, redact: &[String]) {
            match value {
                Value::Object(map) => {
                    for (name, value) in map.iter_mut() {
                        if redact.iter().any(|r| name.eq_ignore_ascii_case(r)) {
                            *value = Value::String(REDACTED.into());
                        } else {
                            mask(value, redact);
                        }
                    }
                }
                Value::Array(items) => items.iter_mut().for_each(|item| mask(item, redact)),
                _ => {}
            }
        }
        let mut value = Value::Object(arguments.clone());
        mask(&mut value, &self.redact);
        value
    }

    /// Count `lines` that were not written; log this log's first failure and then one per 1024 lines, so a full
    /// disk does not flood the log as well.
    fn failed(&self, lines: u64, error: &dyn std::fmt::Display) {
        let before = self.counters.failures.fetch_add(lines, Ordering::Relaxed);
        let failures = before + lines;
        let first = !self.failed_before.swap(true, Ordering::Relaxed);
        if first || failures / 1024 > before / 1024 {
            tracing::error!(path = %self.path.display(), failures, %error, "audit log line not written");
        }
    }
}

/// The call that writes the next batch. Dropped before it writes (the call was abandoned), it writes on the
/// spot: the lines queued behind it have nobody else to write them.
struct Writer<'a> {
    log: &'a AuditLog,
    group: &'a Group,
    wrote: bool,
}

impl Writer<'_> {
    /// Let the tasks ready on this thread finish their calls and queue their lines, then write them all.
    async fn write(mut self) {
        tokio::task::yield_now().await;
        self.wrote = true;
        self.log.write_queued(self.group);
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if !self.wrote {
            self.log.write_queued(self.group);
        }
    }
}

/// A call waiting for its line. Dropped before its line is written (the call was abandoned), it still makes sure
/// someone writes the line.
struct Waiter<'a> {
    log: &'a AuditLog,
    group: &'a Group,
    number: u64,
    settled: bool,
}

/// What a waiting call does next.
enum Turn {
    /// Its line has been written.
    Done,
    /// No write is under way and its line is queued: it writes.
    Write,
    /// A write is under way.
    Wait,
}

impl Waiter<'_> {
    /// Wait until the line has been written: by the current writer, or by this call when the writer is done and
    /// the line is still queued. (The waiter is moved into the future when it is made, so dropping the future,
    /// polled or not, drops the waiter.)
    async fn settle(mut self) {
        loop {
            let written = self.group.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            match self.take_turn() {
                Turn::Done => return,
                Turn::Write => return self.log.write_queued(self.group),
                Turn::Wait => written.await,
            }
        }
    }

    fn take_turn(&mut self) -> Turn {
        let mut queue = self.group.queue.lock();
        let turn = if queue.ended >= self.number {
            Turn::Done
        } else if !queue.writing {
            queue.writing = true;
            Turn::Write
        } else {
            return Turn::Wait;
        };
        queue.waiting -= 1;
        self.settled = true;
        turn
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let write = {
            let mut queue = self.group.queue.lock();
            queue.waiting -= 1;
            let write = queue.ended < self.number && !queue.writing;
            queue.writing |= write;
            write
        };
        // With a write under way, its writer finds the line orphaned and writes it next.
        if write {
            self.log.write_queued(self.group);
        }
    }
}

impl CallObserver for AuditLog {
    fn call_finished(&self, report: &CallReport<'_>) -> Option<Settling<'_>> {
        let arguments = report.arguments.filter(|_| self.include_arguments).map(|a| self.redacted(a));
        let group = self.group();
        match Self::enqueue(group, &line(report, arguments)) {
            Ok(Ok(())) => Some(Box::pin(Writer { log: self, group, wrote: false }.write())),
            Ok(Err(number)) => Some(Box::pin(Waiter { log: self, group, number, settled: false }.settle())),
            Err(error) => {
                self.failed(1, &error);
                None
            }
        }
    }

    fn wants_arguments(&self) -> bool {
        self.include_arguments
    }
}

/// The line for `report`.
fn line<'r>(report: &CallReport<'r>, arguments: Option<Value>) -> Line<'r> {
    let (outcome, error_kind) = match report.outcome {
        Outcome::ToolError => ("tool_error", None),
        Outcome::Ok => ("ok", None),
        Outcome::Failed(BackendError::InputRequired) => ("input_required", None),
        Outcome::Failed(error) => ("error", Some(error.kind())),
    };
    let principal = &report.cx.principal;
    Line {
        time: SystemTime::now(),
        request_id: &report.cx.request_id,
        surface: report.cx.surface.as_str(),
        principal: &principal.name,
        client_ip: principal.client_ip,
        operation: report.operation.as_str(),
        target: report.tool,
        tool: (report.operation == OperationKind::CallTool).then_some(report.tool),
        backend: report.backend,
        outcome,
        error_kind,
        duration_ms: report.elapsed.as_micros() as f64 / 1000.0,
        cache: match report.cache {
            CacheStatus::NotCacheable => "none",
            CacheStatus::Miss => "miss",
            CacheStatus::Hit => "hit",
        },
        tokens_in: report.tokens.map(|t| t.input),
        tokens_out: report.tokens.and_then(|t| t.output),
        budget: report.budget.map(|b| match b {
            BudgetVerdict::Within => "within",
            BudgetVerdict::Truncated(_) => "truncated",
            BudgetVerdict::Refused(_) => "refused",
        }),
        arguments,
        detail: report.detail,
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod through_pipeline;

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use mcpgate_core::{CallContext, Principal, ToolOutcome};
    use serde_json::json;

    use super::*;

    /// A log with one group-commit queue, which every thread of a test shares.
    fn log(dir: &Path, include_arguments: bool) -> Arc<AuditLog> {
        let config =
            AuditConfig { file: Some(dir.join("audit.log")), include_arguments, ..AuditConfig::default() };
        let mut log = AuditLog::open(&config, Default::default()).unwrap().unwrap();
        Arc::get_mut(&mut log).unwrap().groups = Box::new([Group::default()]);
        log
    }

    /// Report a call; what is left to settle (another call was writing), not awaited.
    fn report<'a>(
        log: &'a AuditLog,
        cx: &CallContext,
        result: &Result<ToolOutcome, BackendError>,
        args: Option<&JsonObject>,
    ) -> Option<Settling<'a>> {
        log.call_finished(&CallReport {
            cx,
            operation: OperationKind::CallTool,
            tool: "search",
            backend: "docs",
            elapsed: Duration::from_micros(1500),
            outcome: Outcome::of_call(result),
            cache: CacheStatus::Miss,
            tokens: None,
            budget: None,
            arguments: args,
            detail: None,
        })
    }

    /// Await what calls left to settle, in order, on one thread (as the calls of one worker).
    fn settle(settling: Vec<Settling<'_>>) {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
            for settling in settling {
                settling.await;
            }
        });
    }

    /// A log in a new directory (kept alive by the returned guard) and its file.
    fn fresh() -> (tempfile::TempDir, Arc<AuditLog>, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path(), false);
        let file = dir.path().join("audit.log");
        (dir, log, file)
    }

    /// Report a call and wait until its line is written, as the pipeline does.
    fn finish(
        log: &AuditLog,
        cx: &CallContext,
        result: &Result<ToolOutcome, BackendError>,
        args: Option<&JsonObject>,
    ) {
        settle(report(log, cx, result, args).into_iter().collect());
    }

    /// Pretend another call is writing (`true`) or has just finished (`false`).
    fn someone_writing(log: &AuditLog, writing: bool) {
        log.groups[0].queue.lock().writing = writing;
        log.groups[0].written.notify_waiters();
    }

    #[test]
    fn lines_that_finish_during_a_write_go_out_together_in_the_next_one() {
        let (_dir, log, file) = fresh();
        let ok = Ok(ToolOutcome::text(""));
        finish(&log, &CallContext::detached("alone"), &ok, None);
        assert_eq!(writes_and_lines(&log, &file), (1, 1), "no write under way: written by its own call");
        someone_writing(&log, true);
        let cxs: Vec<_> = (0..3).map(|i| CallContext::detached(format!("queued-{i}"))).collect();
        let waiting: Vec<_> = cxs.iter().map(|cx| report(&log, cx, &ok, None).expect("waits")).collect();
        assert_eq!(lines(&file).len(), 1, "queued, not written yet");
        someone_writing(&log, false);
        settle(waiting);
        assert_eq!(writes_and_lines(&log, &file), (2, 4), "the three queued lines in one write");
    }

    #[test]
    fn calls_that_finish_while_the_writer_yields_share_its_write() {
        let (_dir, log, file) = fresh();
        let ok = Ok(ToolOutcome::text(""));
        let cxs: Vec<_> = (0..4).map(|i| CallContext::detached(format!("call-{i}"))).collect();
        // Four calls finishing in one pass of the scheduler, as tasks ready together do.
        let settling: Vec<_> =
            cxs.iter().map(|cx| report(&log, cx, &ok, None).expect("every call waits")).collect();
        assert_eq!(lines(&file).len(), 0, "nothing written before the writer's yield is over");
        settle(settling);
        assert_eq!(
            (log.counters().writes(), log.counters().lines(), lines(&file).len()),
            (1, 4, 4),
            "one write for the four lines"
        );
        // A writer abandoned before its write writes on the spot, lines queued behind it included.
        let writer = report(&log, &cxs[0], &ok, None).expect("the writer");
        let behind = report(&log, &cxs[1], &ok, None).expect("waits");
        drop(writer);
        assert_eq!(writes_and_lines(&log, &file), (2, 6));
        settle(vec![behind]);
        assert_eq!(log.groups[0].queue.lock().waiting, 0);
    }

    #[test]
    fn a_line_dropped_during_a_write_is_written_by_that_writer() {
        let (_dir, log, file) = fresh();
        let ok = Ok(ToolOutcome::text(""));
        std::thread::scope(|s| {
            // Holding the file keeps the first call, the writer, inside its write.
            let held = log.file.lock();
            let writer = s.spawn(|| finish(&log, &CallContext::detached("writer"), &ok, None));
            while !{
                let queue = log.groups[0].queue.lock();
                queue.writing && queue.queued == 1 && queue.lines.is_empty()
            } {
                std::thread::sleep(Duration::from_millis(1));
            }
            // A call that finishes now queues its line and is dropped before it is written; nobody else comes.
            drop(report(&log, &CallContext::detached("dropped"), &ok, None).expect("waits"));
            drop(held);
            writer.join().unwrap();
        });
        assert_eq!(writes_and_lines(&log, &file), (2, 2), "the writer went back for the orphaned line");
    }

    #[test]
    fn a_line_whose_call_was_dropped_is_still_written() {
        let (_dir, log, file) = fresh();
        let ok = Ok(ToolOutcome::text(""));
        // Dropped while a write is under way: it stays queued for the next write.
        someone_writing(&log, true);
        drop(report(&log, &CallContext::detached("dropped-1"), &ok, None).expect("waits"));
        assert_eq!(lines(&file).len(), 0);
        log.write_queued(&log.groups[0]);
        assert_eq!(lines(&file).len(), 1);
        // Dropped after the writer is gone: the drop writes it.
        someone_writing(&log, true);
        let settling = report(&log, &CallContext::detached("dropped-2"), &ok, None).expect("waits");
        someone_writing(&log, false);
        drop(settling);
        assert_eq!(lines(&file).len(), 2);
        assert_eq!(log.groups[0].queue.lock().waiting, 0);
    }

    /// `write`s so far, and the lines in `file`.
    fn writes_and_lines(log: &AuditLog, file: &Path) -> (u64, usize) {
        (log.counters().writes(), lines(file).len())
    }

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn a_line_is_its_keys_in_the_documented_order_with_values_escaped() {
        let (_dir, log, file) = fresh();
        let cx = CallContext::detached("a \"quoted\"\nid");
        finish(&log, &cx, &Err(BackendError::Timeout(Duration::from_secs(1))), None);
        let text = std::fs::read_to_string(&file).unwrap();
        let (time, rest) = text.strip_prefix("{\"time\":\"").unwrap().split_once('"').unwrap();
        assert!(time.ends_with('Z') && time.len() == "2026-11-21T19:30:00.123Z".len(), "{time}");
        assert_eq!(
            rest,
            concat!(
                r#","request_id":"a \"quoted\"\nid","surface":"mcp","principal":"anonymous","client_ip":null,"#,
                r#""operation":"tools/call","target":"search","tool":"search","backend":"docs","outcome":"error","#,
                r#""error_kind":"timeout","duration_ms":1.5,"cache":"miss","tokens_in":null,"tokens_out":null,"#,
                r#""budget":null}"#,
                "\n"
            )
        );
    }

    #[test]
    fn each_call_is_one_line_with_who_what_and_how_it_ended() {
        let (_dir, log, file) = fresh();
        let mut cx = CallContext::detached("req-1");
        cx.principal = Arc::new(
            Principal::named("ci", "free", &["*".into()]).with_client_ip(Some([10, 0, 0, 7].into())),
        );
        finish(&log, &cx, &Ok(ToolOutcome::text("hi")), None);
        finish(&log, &cx, &Ok(ToolOutcome::error("no")), None);
        finish(&log, &cx, &Err(BackendError::Timeout(Duration::from_secs(1))), None);
        let lines = lines(&file);
        assert_eq!(lines.len(), 3);
        let first = &lines[0];
        assert_eq!(
            (
                &first["request_id"],
                &first["principal"],
                &first["client_ip"],
                &first["tool"],
                &first["backend"]
            ),
            (&json!("req-1"), &json!("ci"), &json!("10.0.0.7"), &json!("search"), &json!("docs"))
        );
        assert_eq!(
            (&first["outcome"], &first["cache"], &first["duration_ms"]),
            (&json!("ok"), &json!("miss"), &json!(1.5))
        );
        assert!(first["time"].as_str().unwrap().ends_with('Z'), "{first}");
        assert!(first.get("arguments").is_none());
        assert_eq!(lines[1]["outcome"], "tool_error");
        assert_eq!((&lines[2]["outcome"], &lines[2]["error_kind"]), (&json!("error"), &json!("timeout")));
    }

    #[test]
    fn arguments_are_recorded_only_when_asked_with_named_fields_masked_at_any_depth() {
        let dir = tempfile::tempdir().unwrap();
        let arguments = json!({ "q": "x", "Password": "p", "nested": [{ "api_key": "k", "keep": 1 }] });
        let arguments = arguments.as_object().unwrap();
        let cx = CallContext::detached("r");
        let quiet = log(dir.path(), false);
        assert!(!quiet.wants_arguments());
        finish(&quiet, &cx, &Ok(ToolOutcome::text("")), Some(arguments));
        let loud = log(dir.path(), true);
        assert!(loud.wants_arguments());
        finish(&loud, &cx, &Ok(ToolOutcome::text("")), Some(arguments));
        let lines = lines(&dir.path().join("audit.log"));
        assert!(lines[0].get("arguments").is_none());
        assert_eq!(
            lines[1]["arguments"],
            json!({ "q": "x", "Password": "[redacted]", "nested": [{ "api_key": "[redacted]", "keep": 1 }] })
        );
    }

    #[test]
    fn lines_from_many_threads_stay_whole_and_none_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig {
            file: Some(dir.path().join("audit.log")),
            include_arguments: true,
            fsync: true,
            ..AuditConfig::default()
        };
        let log = AuditLog::open(&config, Default::default()).unwrap().unwrap();
        // Big enough arguments that a line split across writes would show.
        let arguments = json!({ "text": "x".repeat(10_000) });
        std::thread::scope(|s| {
            for thread in 0..8 {
                let (log, arguments) = (&log, arguments.as_object().unwrap());
                s.spawn(move || {
                    for call in 0..50 {
                        let cx = CallContext::detached(format!("{thread}-{call}"));
                        finish(log, &cx, &Ok(ToolOutcome::text("")), Some(arguments));
                    }
                });
            }
        });
        let lines = lines(&dir.path().join("audit.log"));
        let ids: std::collections::HashSet<_> = lines.iter().map(|l| l["request_id"].clone()).collect();
        assert_eq!((lines.len(), ids.len()), (400, 400));
        assert!(lines.iter().all(|l| l["arguments"]["text"].as_str().is_some_and(|t| t.len() == 10_000)));
    }

    #[test]
    fn a_line_that_cannot_be_written_is_counted_and_the_call_goes_on() {
        // `/dev/full` refuses every write with ENOSPC, as a full disk would.
        let config = AuditConfig { file: Some("/dev/full".into()), ..AuditConfig::default() };
        let log = AuditLog::open(&config, Default::default()).unwrap().unwrap();
        let cx = CallContext::detached("r");
        finish(&log, &cx, &Ok(ToolOutcome::text("")), None);
        finish(&log, &cx, &Ok(ToolOutcome::text("")), None);
        assert_eq!((log.counters().failures(), log.counters().lines()), (2, 0));
        // A log opened later with the same counters (a reload) goes on counting.
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig { file: Some(dir.path().join("audit.log")), ..AuditConfig::default() };
        let next = AuditLog::open(&config, log.counters.clone()).unwrap().unwrap();
        finish(&next, &cx, &Ok(ToolOutcome::text("")), None);
        assert_eq!((log.counters().failures(), log.counters().lines()), (2, 1));
    }

    #[test]
    fn no_file_no_log_and_an_unopenable_file_is_an_error() {
        assert!(AuditLog::open(&AuditConfig::default(), Default::default()).unwrap().is_none());
        let config =
            AuditConfig { file: Some("/nonexistent-dir/audit.log".into()), ..AuditConfig::default() };
        assert_eq!(
            AuditLog::open(&config, Default::default()).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
    }

    #[test]
    fn reopen_after_rotation_writes_to_a_new_file_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path(), false);
        let cx = CallContext::detached("r");
        finish(&log, &cx, &Ok(ToolOutcome::text("")), None);
        std::fs::rename(dir.path().join("audit.log"), dir.path().join("audit.log.1")).unwrap();
        // Until reopened, lines follow the moved file (as logrotate expects between rename and signal).
        finish(&log, &cx, &Ok(ToolOutcome::text("")), None);
        log.reopen().unwrap();
        finish(&log, &cx, &Ok(ToolOutcome::text("")), None);
        assert_eq!(lines(&dir.path().join("audit.log.1")).len(), 2);
        assert_eq!(lines(&dir.path().join("audit.log")).len(), 1);
        assert_eq!(log.counters().failures(), 0);
    }
}
