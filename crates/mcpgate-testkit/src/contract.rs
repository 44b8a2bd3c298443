//! The backend contract suite: what every backend kind promises the gateway (DESIGN.md, "The Backend
//! contract"), checked the same way for each.
//!
//! A test builds a [`Subject`] — a started backend and what its kind can offer: a tool that answers at once, a
//! tool slow enough to be cut short, a call that runs and fails, the marker its child processes carry, and how
//! its dependency goes away — then runs the rules, one test per rule
//! ([`contract_tests!`](crate::contract_tests)) or all at once ([`run_contract`]). Calls go through
//! [`Pipeline::call_tool`], as the gateway's do, so the deadline and the cancellation are the pipeline's, and
//! what is checked is that the backend lets go of the work when the pipeline drops it.
//!
//! The rules:
//! - [`lists_object_schemas_and_is_up`]: every listed tool's `inputSchema` is an object schema, the subject's
//!   tools are among them, and `health()` says `Up` while the backend serves;
//! - [`a_quick_call_answers`]: the quick tool answers, and leaves no process behind;
//! - [`a_failing_tool_is_an_outcome`]: a tool that ran and failed is `Ok` with `is_error: true`;
//! - [`the_deadline_is_honoured`]: the slow tool under a deadline fails with [`BackendError::Timeout`] within
//!   the deadline plus [`Subject::slack`], the work stops (no process of the call lingers; the subject's own
//!   "work stopped" probe turns true) and the next call is served at once;
//! - [`cancellation_ends_the_call`]: cancelling `cx.cancel` mid-call ends it with [`BackendError::Cancelled`]
//!   within the slack, the work stops, and the next call is served;
//! - [`an_unreachable_dependency_is_an_error`]: once the dependency is gone (API down, database closed,
//!   program removed, upstream killed), a call fails fast with the expected error kind, blame and
//!   retryability — never a panic, never a timeout;
//! - [`shutdown_leaves_no_process`]: after `shutdown()` no process the backend started lingers.
//!
//! Every call runs on a task of its own, so a backend that panics fails the rule with a message saying so.

use std::{
    any::Any,
    collections::BTreeSet,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use mcpgate_core::{Backend, BackendError, BackendHealth, Blame, CallContext, ToolCall, ToolOutcome};
use mcpgate_policy::{Pipeline, ToolPolicy};
use serde_json::Value;
use tokio::time::Instant;

use crate::{
    eventually,
    process::{Marker, Proc, lingering},
};

/// The gateway's own default deadline in these tests: far beyond any rule's, so only the call's own counts.
const GATEWAY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a slow call may take to be seen running, and processes to be seen gone.
const OBSERVE: Duration = Duration::from_secs(5);

/// A future the subject's hooks return.
pub type HookFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What takes a dependency away, given the subject.
pub type Cause = Box<dyn Fn(&Subject) -> HookFuture<'_> + Send + Sync>;

/// How a rule tells that the slow call is under way, so it cuts the call while the backend works on it.
#[derive(Clone)]
pub enum Running {
    /// After this long (tokio time): in-process work that starts as soon as the call is polled.
    After(Duration),
    /// Once this many new marked processes run (the program, and what it started).
    Processes(usize),
    /// Once this counter, bumped by the fixture when the slow work begins (a server received the request),
    /// has moved.
    Counter(Arc<AtomicUsize>),
}

/// How the dependency of a backend goes away, and the error a call must then fail with.
pub struct Outage {
    /// Takes the dependency away (stops a database, kills an upstream, removes a program); `None` when it is
    /// unreachable from the start (an API on a port nobody listens on).
    pub cause: Option<Cause>,
    /// A call that needs the dependency.
    pub call: ToolCall,
    /// [`BackendError::kind`] of the expected error (`unavailable`, …).
    pub kind: &'static str,
    /// Who is to blame.
    pub blame: Blame,
    /// Whether a retry may help.
    pub retryable: bool,
}

impl Outage {
    /// The usual outage: `call` fails as [`BackendError::Unavailable`], the upstream's fault, worth a retry.
    pub fn unavailable(call: ToolCall) -> Self {
        Self { cause: None, call, kind: "unavailable", blame: Blame::Upstream, retryable: true }
    }

    /// The same outage, brought about by `cause`.
    pub fn caused_by(mut self, cause: impl Fn(&Subject) -> HookFuture<'_> + Send + Sync + 'static) -> Self {
        self.cause = Some(Box::new(cause));
        self
    }
}

/// A started backend and what its kind can offer the rules.
pub struct Subject {
    kind: String,
    backend: Arc<dyn Backend>,
    quick: ToolCall,
    slow: ToolCall,
    failing: ToolCall,
    running: Running,
    marker: Option<Marker>,
    outage: Option<Outage>,
    work_stopped: Option<Box<dyn Fn() -> bool + Send + Sync>>,
    deadline: Duration,
    slack: Duration,
    kept: Vec<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subject")
            .field("kind", &self.kind)
            .field("backend", &self.backend.name())
            .field("quick", &self.quick.name)
            .field("slow", &self.slow.name)
            .field("failing", &self.failing.name)
            .field("marker", &self.marker)
            .field("deadline", &self.deadline)
            .field("slack", &self.slack)
            .finish_non_exhaustive()
    }
}

/// A tool call by name with arguments given as a JSON object (anything else is no arguments).
pub fn call(name: &str, arguments: Value) -> ToolCall {
    ToolCall { name: name.to_owned(), arguments: arguments.as_object().cloned().unwrap_or_default() }
}

impl Subject {
    /// `backend` (of kind `kind`, for messages) with a tool call that answers at once, one that takes long
    /// enough to be cut (10 s or more, or never ends) and one that runs and fails. By default the slow call is
    /// taken as running after 200 ms, its deadline is 500 ms and calls may end 1 s late.
    pub fn new(
        kind: &str,
        backend: Arc<dyn Backend>,
        quick: ToolCall,
        slow: ToolCall,
        failing: ToolCall,
    ) -> Self {
        Self {
            kind: kind.to_owned(),
            backend,
            quick,
            slow,
            failing,
            running: Running::After(Duration::from_millis(200)),
            marker: None,
            outage: None,
            work_stopped: None,
            deadline: Duration::from_millis(500),
            slack: Duration::from_secs(1),
            kept: Vec::new(),
        }
    }

    /// The backend's children carry `marker` in their environment: the rules check that none outlives its call
    /// or the backend.
    pub fn spawns(self, marker: Marker) -> Self {
        Self { marker: Some(marker), ..self }
    }

    /// How to tell that the slow call is under way.
    pub fn running(self, running: Running) -> Self {
        Self { running, ..self }
    }

    /// How the backend's dependency goes away.
    pub fn outage(self, outage: Outage) -> Self {
        Self { outage: Some(outage), ..self }
    }

    /// A probe that turns true once the backend has stopped the slow work of a call cut short (the server
    /// saw the request go away).
    pub fn work_stops_when(self, probe: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self { work_stopped: Some(Box::new(probe)), ..self }
    }

    /// The deadline the slow call is given.
    pub fn deadline(self, deadline: Duration) -> Self {
        Self { deadline, ..self }
    }

    /// How late, past the point where it must end, a call may still end.
    pub fn slack(self, slack: Duration) -> Self {
        Self { slack, ..self }
    }

    /// Keep `value` (a test server, a temporary directory) alive as long as the subject.
    pub fn keep(mut self, value: impl Any + Send + Sync) -> Self {
        self.kept.push(Box::new(value));
        self
    }

    /// The backend under test.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The marker its children carry, if it starts any.
    pub fn marker(&self) -> Option<&Marker> {
        self.marker.as_ref()
    }

    /// `what`, prefixed with the kind under test.
    fn says(&self, what: impl fmt::Display) -> String {
        format!("[{} backend {:?}] {what}", self.kind, self.backend.name())
    }

    /// The marked processes now (none when the backend starts none).
    fn processes(&self) -> BTreeSet<Proc> {
        self.marker.as_ref().map(Marker::processes).unwrap_or_default()
    }

    /// Start `call` through the pipeline, with `cx`, on a task of its own.
    fn start(
        &self,
        cx: CallContext,
        call: ToolCall,
    ) -> tokio::task::JoinHandle<Result<ToolOutcome, BackendError>> {
        let backend = Arc::clone(&self.backend);
        tokio::spawn(async move {
            let name = call.name.clone();
            Pipeline::new(GATEWAY_TIMEOUT)
                .call_tool(&cx, &*backend, &name, &ToolPolicy::default(), call)
                .await
        })
    }

    /// Run `call` through the pipeline and wait at most `within` for its result; fails the rule when the
    /// backend panics or the call does not end.
    async fn run(
        &self,
        cx: CallContext,
        call: ToolCall,
        within: Duration,
    ) -> Result<ToolOutcome, BackendError> {
        let name = call.name.clone();
        let task = self.start(cx, call);
        self.finish(&name, task, within).await
    }

    async fn finish(
        &self,
        name: &str,
        mut task: tokio::task::JoinHandle<Result<ToolOutcome, BackendError>>,
        within: Duration,
    ) -> Result<ToolOutcome, BackendError> {
        match tokio::time::timeout(within, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => panic!("{}", self.says(format!("the call of {name} panicked: {join}"))),
            Err(_) => {
                task.abort();
                panic!("{}", self.says(format!("the call of {name} did not end within {within:?}")))
            }
        }
    }

    /// Wait until the slow call started with `before` (the marked processes before it) is under way; the
    /// processes it started.
    async fn wait_running(&self, before: &BTreeSet<Proc>, counted: usize) -> BTreeSet<Proc> {
        match &self.running {
            Running::After(delay) => tokio::time::sleep(*delay).await,
            Running::Processes(count) => {
                let what = self.says(format!("{count} processes of the slow call run"));
                eventually(&what, OBSERVE, || self.processes().difference(before).count() >= *count).await;
            }
            Running::Counter(counter) => {
                let what = self.says("the slow call reached its dependency");
                eventually(&what, OBSERVE, || counter.load(Ordering::SeqCst) > counted).await;
            }
        }
        self.processes().difference(before).copied().collect()
    }

    fn counted(&self) -> usize {
        match &self.running {
            Running::Counter(counter) => counter.load(Ordering::SeqCst),
            _ => 0,
        }
    }

    /// After a call was cut short: no process it started lingers, none was started since `before`, the work
    /// stopped, and the next quick call answers within the slack.
    async fn after_cut(&self, before: &BTreeSet<Proc>, started: &BTreeSet<Proc>) {
        if self.marker.is_some() {
            let what = self.says("no process of the cut call lingers");
            eventually(&what, OBSERVE, || {
                lingering(started).is_empty() && self.processes().is_subset(before)
            })
            .await;
        }
        if let Some(stopped) = &self.work_stopped {
            eventually(&self.says("the backend stops the work of the cut call"), OBSERVE, stopped).await;
        }
        let quick = self.run(CallContext::detached("contract-next"), self.quick.clone(), self.slack).await;
        match quick {
            Ok(outcome) if !outcome.is_error => {}
            other => panic!("{}", self.says(format!("the call after a cut one is not served: {other:?}"))),
        }
    }
}

/// Every listed tool's `inputSchema` has `"type": "object"`, the subject's tools are listed, and `health()`
/// is `Up` while the backend serves.
pub async fn lists_object_schemas_and_is_up(subject: &Subject) {
    let tools = subject.backend.list_tools().await.unwrap_or_else(|e| panic!("{}", subject.says(e)));
    for tool in &tools {
        assert_eq!(
            tool.input_schema.get("type"),
            Some(&Value::String("object".to_owned())),
            "{}",
            subject.says(format!("the inputSchema of {} is not an object schema", tool.name))
        );
    }
    for call in [&subject.quick, &subject.slow, &subject.failing] {
        assert!(
            tools.iter().any(|tool| tool.name == call.name),
            "{}",
            subject.says(format!("{} is not listed", call.name))
        );
    }
    assert_eq!(subject.backend.health().await, BackendHealth::Up, "{}", subject.says("health"));
}

/// The quick tool answers (not a tool error), within the slack, and leaves no process behind.
pub async fn a_quick_call_answers(subject: &Subject) {
    let before = subject.processes();
    let result =
        subject.run(CallContext::detached("contract-quick"), subject.quick.clone(), subject.slack).await;
    match result {
        Ok(outcome) if !outcome.is_error => {}
        other => panic!("{}", subject.says(format!("the quick call failed: {other:?}"))),
    }
    if subject.marker.is_some() {
        let what = subject.says("no process of the quick call lingers");
        eventually(&what, OBSERVE, || subject.processes().is_subset(&before)).await;
    }
    assert_eq!(subject.backend.health().await, BackendHealth::Up, "{}", subject.says("health"));
}

/// A tool that ran and failed is `Ok(outcome)` with `is_error: true`, not an error.
pub async fn a_failing_tool_is_an_outcome(subject: &Subject) {
    let result =
        subject.run(CallContext::detached("contract-failing"), subject.failing.clone(), subject.slack).await;
    match result {
        Ok(outcome) if outcome.is_error => {}
        other => panic!("{}", subject.says(format!("the failing call is not a tool error: {other:?}"))),
    }
}

/// The slow tool under a deadline fails with [`BackendError::Timeout`] of that deadline, no sooner than it and
/// no later than the slack after it; the backend stops the work and serves the next call.
pub async fn the_deadline_is_honoured(subject: &Subject) {
    let before = subject.processes();
    let counted = subject.counted();
    let mut cx = CallContext::detached("contract-deadline");
    cx.timeout = Some(subject.deadline);
    let started_at = Instant::now();
    let task = subject.start(cx, subject.slow.clone());
    // The processes are looked for while the call runs; the deadline may cut it before they all show.
    let started = match subject.running {
        Running::Processes(_) | Running::Counter(_) => subject.wait_running(&before, counted).await,
        Running::After(_) => BTreeSet::new(),
    };
    let result = subject.finish(&subject.slow.name, task, subject.deadline + subject.slack * 2).await;
    let elapsed = started_at.elapsed();
    assert!(
        matches!(result, Err(BackendError::Timeout(after)) if after == subject.deadline),
        "{}",
        subject.says(format!("a call past its {:?} deadline: {result:?}", subject.deadline))
    );
    assert!(
        elapsed >= subject.deadline && elapsed <= subject.deadline + subject.slack,
        "{}",
        subject.says(format!("the {:?} deadline ended the call after {elapsed:?}", subject.deadline))
    );
    subject.after_cut(&before, &started).await;
}

/// Cancelling `cx.cancel` while the slow call runs ends it with [`BackendError::Cancelled`] within the slack;
/// the backend stops the work and serves the next call.
pub async fn cancellation_ends_the_call(subject: &Subject) {
    let before = subject.processes();
    let counted = subject.counted();
    let cx = CallContext::detached("contract-cancel");
    let cancel = cx.cancel.clone();
    let task = subject.start(cx, subject.slow.clone());
    let started = subject.wait_running(&before, counted).await;
    assert!(!task.is_finished(), "{}", subject.says("the slow call ended before it was cancelled"));
    cancel.cancel();
    let cancelled_at = Instant::now();
    let result = subject.finish(&subject.slow.name, task, subject.slack * 2).await;
    let elapsed = cancelled_at.elapsed();
    assert!(
        matches!(result, Err(BackendError::Cancelled)),
        "{}",
        subject.says(format!("a cancelled call: {result:?}"))
    );
    assert!(elapsed <= subject.slack, "{}", subject.says(format!("cancellation took {elapsed:?}")));
    subject.after_cut(&before, &started).await;
}

/// Once the dependency is gone, a call fails — within a few seconds, without a panic, not by timing out —
/// with the expected error kind, blame and retryability. A backend that notices the loss asynchronously (an
/// upstream's supervisor) may answer a few more calls first.
pub async fn an_unreachable_dependency_is_an_error(subject: &Subject) {
    let Some(outage) = &subject.outage else {
        panic!("{}", subject.says("no outage declared: this kind has no dependency to lose"));
    };
    if let Some(cause) = &outage.cause {
        cause(subject).await;
    }
    let deadline = Instant::now() + OBSERVE;
    let error = loop {
        let mut cx = CallContext::detached("contract-outage");
        cx.timeout = Some(OBSERVE);
        match subject.run(cx, outage.call.clone(), OBSERVE + subject.slack).await {
            Err(error) => break error,
            Ok(outcome) => assert!(
                Instant::now() < deadline,
                "{}",
                subject.says(format!("calls still answer without the dependency: {outcome:?}"))
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        error.kind() == outage.kind && error.blame() == outage.blame && error.is_retryable() == outage.retryable,
        "{}",
        subject.says(format!(
            "without its dependency a call fails with {error:?} (kind {}, blame {:?}, retryable {}); expected \
             kind {}, blame {:?}, retryable {}",
            error.kind(),
            error.blame(),
            error.is_retryable(),
            outage.kind,
            outage.blame,
            outage.retryable
        ))
    );
}

/// After a quick call, `shutdown()` leaves no process the backend started: its children are gone (and reaped).
pub async fn shutdown_leaves_no_process(subject: &Subject) {
    let answered =
        subject.run(CallContext::detached("contract-shutdown"), subject.quick.clone(), subject.slack).await;
    assert!(answered.is_ok(), "{}", subject.says(format!("the quick call: {answered:?}")));
    shut_down(subject).await;
}

/// `shutdown()`, then no marked process may linger, those running before included.
async fn shut_down(subject: &Subject) {
    let running = subject.processes();
    subject.backend.shutdown().await;
    if subject.marker.is_some() {
        let what = subject.says("no process lingers after shutdown");
        eventually(&what, OBSERVE, || lingering(&running).is_empty() && subject.processes().is_empty()).await;
    }
}

/// Every rule, in an order that leaves the backend serving until the end: the outage (when declared), then
/// the shutdown — checked for processes left behind, without the quick call first, which an outage may fail.
pub async fn run_contract(subject: &Subject) {
    lists_object_schemas_and_is_up(subject).await;
    a_quick_call_answers(subject).await;
    a_failing_tool_is_an_outcome(subject).await;
    the_deadline_is_honoured(subject).await;
    cancellation_ends_the_call(subject).await;
    if subject.outage.is_some() {
        an_unreachable_dependency_is_an_error(subject).await;
    }
    shut_down(subject).await;
}

/// One test per rule for the subjects `fixture().await` builds (a fresh one per test), each test carrying
/// the attributes given first:
///
/// ```ignore
/// mcpgate_testkit::contract_tests!(#[tokio::test(start_paused = true)] demo_subject);
/// ```
///
/// `an_unreachable_dependency_is_an_error` is generated only with `outage` after the fixture.
#[macro_export]
macro_rules! contract_tests {
    (@rules [$($attr:tt)*] $fixture:path; $rule:ident $($rest:ident)*) => {
        $($attr)*
        async fn $rule() {
            $crate::contract::$rule(&$fixture().await).await;
        }
        $crate::contract_tests!(@rules [$($attr)*] $fixture; $($rest)*);
    };
    (@rules [$($attr:tt)*] $fixture:path;) => {};
    ($(#[$attr:meta])* $fixture:path) => {
        $crate::contract_tests!(@rules [$(#[$attr])*] $fixture;
            lists_object_schemas_and_is_up a_quick_call_answers a_failing_tool_is_an_outcome
            the_deadline_is_honoured cancellation_ends_the_call shutdown_leaves_no_process);
    };
    ($(#[$attr:meta])* $fixture:path, outage) => {
        $crate::contract_tests!($(#[$attr])* $fixture);
        $crate::contract_tests!(@rules [$(#[$attr])*] $fixture; an_unreachable_dependency_is_an_error);
    };
}
