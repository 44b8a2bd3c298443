//! Legacy sessions. The gateway keeps a small record of each session — negotiated version, readiness, requests
//! in flight, last activity, the client's `initialize` — and rmcp's local session manager does the protocol work
//! (`protocol.rs`) only while the session needs it.
//!
//! The record is what lets the fast path serve a plain `tools/call` inside a session without a trip through
//! the session's worker (`fast.rs`), and what decides idle expiry: rmcp's own keep-alive only sees traffic
//! that passes its worker, so it is off, and a reaper here closes sessions that have had no request and no
//! open stream for `session_idle_timeout`.
//!
//! **Parked sessions.** rmcp's worker for one session (its tasks, channels and buffers) costs 75–100 KB
//! (measured: 77 KB idle, ~100 KB once it has answered requests); the record under 1 KB (718 bytes per idle
//! session, measured). A session opened on the fast path (`FastPath::initialize`) starts without a worker, and
//! the reaper releases the worker of a session that has had no request, no open stream and no subscription for
//! `session_park_after`. The session stays: its next request that needs the protocol layer finds no worker
//! (`has_session`), and rmcp restores one from the record — the `SessionStore` it reads is this table — by
//! replaying the client's `initialize` and `notifications/initialized`, in-process, in well under a millisecond.
//!
//! **Any node serves any session** (`sharing.rs`). With shared state (Redis) and a sealing key every node
//! shares, a session opened here gets an id that is its record — protocol version and the client's `initialize`,
//! sealed — so a node that has never seen the session adopts it from the id alone, parked, after asking Redis once
//! whether it is still alive. Redis also carries a client's DELETE to every node.
//!
//! [`SessionState`] is the protocol handler's own per-session state (the client's log level).

mod protocol;
mod sharing;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock, RwLock, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::{Stream, StreamExt};
use mcpgate_core::LogLevel;
use rmcp::{
    model::ClientJsonRpcMessage,
    transport::{
        common::server_side_http::ServerSseMessage,
        streamable_http_server::{SessionId, SessionManager, session::local::LocalSessionManager},
    },
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(crate) use sharing::Sharing;

/// What the gateway knows of one legacy session.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// The protocol version `initialize` settled on.
    version: OnceLock<String>,
    /// Set once the client has sent `notifications/initialized`.
    ready: AtomicBool,
    /// Milliseconds since [`Sessions::epoch`] of the last request or stream activity.
    last_seen: AtomicU64,
    /// Open listening streams (GET, resumed).
    streams: AtomicUsize,
    /// Requests being answered, by JSON-RPC id (its JSON text), each with a token that cancels the call when
    /// it runs on the fast path.
    requests: Mutex<HashMap<String, CancellationToken>>,
    /// What the fast path needs of the client, set from its `initialize` request (before the answer leaves,
    /// so the first call after `notifications/initialized` finds it).
    link: OnceLock<ClientLink>,
    /// The session's protocol state (the client's log level), shared by the protocol layer's handler and the
    /// fast path.
    state: Arc<SessionState>,
    /// The client its seat is counted against ([`Sessions::admit`]).
    owner: OnceLock<Arc<str>>,
    /// The params of the client's `initialize` request, as JSON: what a worker is restored from.
    initialize: OnceLock<Box<str>>,
    /// Whether rmcp holds a worker for it. Read and changed under this short lock, never held across an await.
    worker: Mutex<Worker>,
    /// Its id, when it is sealed (any node may serve it): the activity of such a session is told to the other
    /// nodes.
    sealed: OnceLock<Arc<str>>,
    /// When this node last told the other nodes the session is alive ([`Sessions::epoch`] milliseconds).
    told_alive: AtomicU64,
    /// Whether this node has taken the listening-stream channel of the session's worker (a shared session's).
    draining: tokio::sync::Mutex<bool>,
}

/// Whether a session has a protocol worker (rmcp's).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Worker {
    /// None: requests that need one restore it.
    #[default]
    Parked,
    /// Its worker is being released: a restore waits until it is gone.
    Parking,
    /// A worker is being restored (the client's `initialize` replayed): requests wait until it is live.
    Restoring,
    /// It has one.
    Live,
}

/// What the fast path needs to serve a session's calls to tools that may contact the client.
#[derive(Debug)]
pub(crate) struct ClientLink {
    /// What the client declared at `initialize`.
    pub(crate) capabilities: serde_json::Value,
    /// Whether the client declared anything a server may ask it (sampling, elicitation, roots): its answer
    /// would come back through the session's worker, so such calls take the protocol layer.
    pub(crate) askable: bool,
}

impl Session {
    /// The negotiated protocol version, when the session is ready for requests.
    pub(crate) fn ready_version(&self) -> Option<&str> {
        self.ready.load(Ordering::Acquire).then(|| self.version.get().map(String::as_str)).flatten()
    }

    /// What the fast path needs of the client, once the session is initialized.
    pub(crate) fn link(&self) -> Option<&ClientLink> {
        self.link.get()
    }

    /// The session's protocol state (the client's log level).
    pub(crate) fn state(&self) -> &Arc<SessionState> {
        &self.state
    }

    /// Whether any node may serve it (its id is its sealed record).
    pub(crate) fn is_shared(&self) -> bool {
        self.sealed.get().is_some()
    }

    /// Record what the client declared in its `initialize` request (the first one wins).
    fn learn_client(&self, initialize: &ClientJsonRpcMessage) {
        let declared = serde_json::to_value(initialize)
            .ok()
            .and_then(|message| message.pointer("/params/capabilities").filter(|c| c.is_object()).cloned());
        if let Some(capabilities) = declared {
            self.learn(capabilities);
        }
    }

    /// Record the capabilities the client declared (the first ones win).
    fn learn(&self, capabilities: serde_json::Value) {
        let askable = ["sampling", "elicitation", "roots"].iter().any(|cap| capabilities.get(cap).is_some());
        let _ = self.link.set(ClientLink { capabilities, askable });
    }

    /// Cancel the request with this id, if it is being answered on the fast path (the protocol layer cancels
    /// its own requests).
    pub(crate) fn cancel(&self, id: &str) {
        if let Some(token) = self.requests.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            token.cancel();
        }
    }

    fn busy(&self) -> bool {
        self.streams.load(Ordering::Acquire) > 0
            || !self.requests.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    fn worker(&self) -> std::sync::MutexGuard<'_, Worker> {
        self.worker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether rmcp holds a worker for it (else the fast path answers its notifications).
    pub(crate) fn is_live(&self) -> bool {
        *self.worker() == Worker::Live
    }

    /// The client sent `notifications/initialized` (to a parked session, on the fast path).
    pub(crate) fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

/// A request of a session being answered: keeps the session busy and its id taken until dropped.
pub(crate) struct InSession {
    sessions: Arc<Sessions>,
    session: Arc<Session>,
    id: String,
    /// Cancelled by `notifications/cancelled` naming this request.
    pub(crate) cancel: CancellationToken,
}

impl Drop for InSession {
    fn drop(&mut self) {
        self.session.requests.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
        self.sessions.touch(&self.session);
    }
}

/// Keeps a session busy while a listening stream is open.
struct StreamOpen(Arc<Sessions>, Arc<Session>);

impl Drop for StreamOpen {
    fn drop(&mut self) {
        self.1.streams.fetch_sub(1, Ordering::AcqRel);
        self.0.touch(&self.1);
    }
}

/// How many legacy sessions may be open: in all, and per client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionCaps {
    /// For everyone together.
    pub(crate) total: usize,
    /// For one client (a key or token holder, or an anonymous client address).
    pub(crate) per_client: usize,
}

/// Seats taken, by everyone and per client: sessions open and `initialize` requests under way.
#[derive(Debug, Default)]
struct Seats {
    total: usize,
    by_client: HashMap<Arc<str>, usize>,
}

/// Why an `initialize` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// Every seat of the gateway is taken.
    Gateway,
    /// Every seat of this client is taken.
    Client,
}

/// A seat taken for an `initialize` under way: given to the session it opens ([`Seat::bind`]), or given back when
/// dropped without one.
pub(crate) struct Seat {
    sessions: Arc<Sessions>,
    owner: Arc<str>,
    bound: bool,
}

impl Seat {
    /// The `initialize` opened session `id`: the seat is its until it closes.
    pub(crate) fn bind(mut self, id: &str) {
        if let Some(session) = self.sessions.get(id)
            && session.owner.set(self.owner.clone()).is_ok()
        {
            self.bound = true;
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if !self.bound {
            self.sessions.release(&self.owner);
        }
    }
}

/// rmcp's [`LocalSessionManager`] plus the gateway's record of each session and idle expiry.
#[derive(Debug)]
pub(crate) struct Sessions {
    inner: LocalSessionManager,
    table: RwLock<HashMap<Arc<str>, Arc<Session>>>,
    caps: SessionCaps,
    seats: Mutex<Seats>,
    idle: Duration,
    /// A session's worker is released after this long without requests, streams or subscriptions.
    park_after: Duration,
    /// Woken each time a session's worker is gone or live.
    changed: tokio::sync::Notify,
    /// How sessions are shared with other nodes, when they are.
    sharing: Option<Sharing>,
    /// What the gateway does while a shared session's listening stream is held here (watch its subscriptions),
    /// until the token it is given is cancelled (the stream ended).
    on_listen: OnceLock<sharing::Hook>,
    /// Messages for listening streams, by session id, as any node's worker sent them (shared sessions only).
    streamed: tokio::sync::broadcast::Sender<sharing::Streamed>,
    epoch: Instant,
    /// Handle to itself, for the guards of the streams it hands out through rmcp's `&self` methods.
    this: Weak<Sessions>,
}

/// Why a request could not be registered in its session.
pub(crate) enum Refused {
    /// Another request with the same id is still being answered.
    IdInFlight,
}

impl Sessions {
    /// Sessions that expire after `idle` without requests or open streams, whose workers are released after
    /// `park_after`, at most `caps` of them, shared with other nodes as `sharing` says; starts the reaper (and
    /// the listener for sessions ended on other nodes).
    pub(crate) fn start(
        idle: Duration,
        park_after: Duration,
        caps: SessionCaps,
        sharing: Option<Sharing>,
    ) -> Arc<Self> {
        let mut inner = LocalSessionManager::default();
        inner.session_config.keep_alive = None;
        let sessions = Arc::new_cyclic(|this| Self {
            inner,
            table: RwLock::default(),
            caps,
            seats: Mutex::default(),
            idle,
            park_after,
            changed: tokio::sync::Notify::new(),
            sharing,
            on_listen: OnceLock::new(),
            streamed: tokio::sync::broadcast::channel(1024).0,
            epoch: Instant::now(),
            this: this.clone(),
        });
        if let Some(sharing) = &sessions.sharing {
            sharing.listen(Arc::downgrade(&sessions));
        }
        let period = (idle.min(park_after) / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        let weak = Arc::downgrade(&sessions);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(sessions) = weak.upgrade() else { return };
                sessions.reap().await;
            }
        });
        sessions
    }

    /// Live sessions (`mcp_active_sessions`).
    pub(crate) fn len(&self) -> usize {
        self.table.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Sessions holding a protocol worker, being restored or released included (`mcp_session_workers`).
    pub(crate) fn workers(&self) -> usize {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        table.values().filter(|session| *session.worker() != Worker::Parked).count()
    }

    /// Take a seat for an `initialize` of `client`, or say which cap is reached.
    pub(crate) fn admit(self: &Arc<Self>, client: Arc<str>) -> Result<Seat, Full> {
        let mut seats = self.seats.lock().unwrap_or_else(|e| e.into_inner());
        if seats.total >= self.caps.total {
            return Err(Full::Gateway);
        }
        let taken = seats.by_client.entry(client.clone()).or_default();
        if *taken >= self.caps.per_client {
            return Err(Full::Client);
        }
        *taken += 1;
        seats.total += 1;
        Ok(Seat { sessions: Arc::clone(self), owner: client, bound: false })
    }

    /// Give back a seat of `client`.
    fn release(&self, client: &Arc<str>) {
        let mut seats = self.seats.lock().unwrap_or_else(|e| e.into_inner());
        seats.total = seats.total.saturating_sub(1);
        if let Some(taken) = seats.by_client.get_mut(client) {
            *taken = taken.saturating_sub(1);
            if *taken == 0 {
                seats.by_client.remove(client);
            }
        }
    }

    /// The record of a live session.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// Register request `id` as being answered in `session`, refusing an id already in flight (the protocol
    /// layer would cancel the first request and never finish its response).
    pub(crate) fn begin(self: &Arc<Self>, session: Arc<Session>, id: String) -> Result<InSession, Refused> {
        let cancel = CancellationToken::new();
        {
            let mut requests = session.requests.lock().unwrap_or_else(|e| e.into_inner());
            if requests.contains_key(&id) {
                return Err(Refused::IdInFlight);
            }
            requests.insert(id.clone(), cancel.clone());
        }
        self.touch(&session);
        Ok(InSession { sessions: Arc::clone(self), session, id, cancel })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn touch(&self, session: &Session) {
        let now = self.now_ms();
        session.last_seen.store(now, Ordering::Release);
        if let (Some(sharing), Some(id)) = (&self.sharing, session.sealed.get()) {
            sharing.used(id, session, now, self.idle);
        }
    }

    fn touch_id(&self, id: &SessionId) -> Option<Arc<Session>> {
        let session = self.get(id)?;
        self.touch(&session);
        Some(session)
    }

    /// Close every session idle for longer than the timeout; release the worker of every session idle for
    /// longer than `park_after`.
    async fn reap(&self) {
        let now = self.now_ms();
        let (idle_ms, park_ms) = (self.idle.as_millis() as u64, self.park_after.as_millis() as u64);
        let (mut expired, mut parking) = (Vec::new(), Vec::new());
        for (id, session) in self.table.read().unwrap_or_else(|e| e.into_inner()).iter() {
            let quiet = now.saturating_sub(session.last_seen.load(Ordering::Acquire));
            if session.busy() {
                continue;
            }
            if quiet > idle_ms {
                expired.push(id.clone());
            } else if quiet > park_ms && !session.state.keeps_worker() && *session.worker() == Worker::Live {
                // Only live workers: the parked sessions, nearly all of them, cost a pass nothing but a look.
                parking.push((id.clone(), session.clone()));
            }
        }
        for id in expired {
            tracing::debug!(session = %id, "session expired");
            self.remove(&id).await;
        }
        for (id, session) in parking {
            self.park(&id, &session, park_ms).await;
        }
    }

    /// Release the worker of `session` if it is still live and quiet — checked under its worker lock, which
    /// `has_session` takes too, so a request arriving now either is seen here or finds the session parking.
    async fn park(&self, id: &Arc<str>, session: &Session, park_ms: u64) {
        {
            let mut worker = session.worker();
            let quiet = self.now_ms().saturating_sub(session.last_seen.load(Ordering::Acquire));
            if *worker != Worker::Live || quiet <= park_ms || session.busy() {
                return;
            }
            *worker = Worker::Parking;
        }
        tracing::debug!(session = %id, "session parked: its worker is released");
        // The worker's service ends and rmcp then calls `close_session`, which marks it parked.
        if let Err(e) = self.inner.close_session(&SessionId::from(&**id)).await {
            tracing::warn!(session = %id, error = %e, "releasing a session's worker failed");
            *session.worker() = Worker::Parked;
            self.changed.notify_waiters();
        }
    }

    /// Forget a session (expired or closed by the client): give its seat back and end its worker, whatever its
    /// record says (closing one rmcp does not hold is a no-op).
    async fn remove(&self, id: &str) {
        let removed = self.table.write().unwrap_or_else(|e| e.into_inner()).remove(id);
        let Some(session) = removed else { return };
        if let Some(owner) = session.owner.get() {
            self.release(owner);
        }
        if let Err(e) = self.inner.close_session(&SessionId::from(id)).await {
            tracing::warn!(session = %id, error = %e, "closing a session's worker failed");
        }
    }

    /// A session opened on the fast path: no worker yet. `initialize` holds the params of the client's request
    /// as JSON, `version` the protocol version negotiated. Shared with other nodes, its id is its sealed record.
    pub(crate) fn open(
        &self,
        initialize: Box<str>,
        capabilities: Option<serde_json::Value>,
        version: String,
    ) -> Arc<str> {
        let sealed = self.sharing.as_ref().and_then(|sharing| sharing.seal(&initialize, &version));
        let session = Session::default();
        let id = match sealed {
            Some(id) => {
                // Sealing told Redis it is alive.
                let _ = session.sealed.set(id.clone());
                session.told_alive.store(self.now_ms().max(1), Ordering::Relaxed);
                id
            }
            None => rmcp::transport::common::server_side_http::session_id(),
        };
        let _ = session.initialize.set(initialize);
        let _ = session.version.set(version);
        if let Some(capabilities) = capabilities {
            session.learn(capabilities);
        }
        self.touch(&session);
        self.table.write().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), Arc::new(session));
        id
    }

    /// The record of session `id`: the one this node holds, or — for a sealed id of a session still alive — one
    /// adopted from the id, parked and ready (its client was initialized on the node that opened it).
    pub(crate) async fn find(&self, id: &str) -> Option<Arc<Session>> {
        if let Some(session) = self.get(id) {
            return Some(session);
        }
        let sharing = self.sharing.as_ref()?;
        let (initialize, version) = sharing.adoptable(id).await?;
        let session = Session::default();
        let capabilities = serde_json::from_str::<serde_json::Value>(&initialize)
            .ok()
            .and_then(|params| params.get("capabilities").filter(|c| c.is_object()).cloned());
        let _ = session.sealed.set(id.into());
        let _ = session.initialize.set(initialize);
        let _ = session.version.set(version);
        if let Some(capabilities) = capabilities {
            session.learn(capabilities);
        }
        session.ready.store(true, Ordering::Release);
        session.last_seen.store(self.now_ms(), Ordering::Release);
        tracing::debug!("session adopted from its sealed id");
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        Some(table.entry(id.into()).or_insert_with(|| Arc::new(session)).clone())
    }

    /// The client's answer `message` (a JSON-RPC response) in session `session` (id `id`) to a request a
    /// server sent it: with shared sessions it is published to every node, since the call waiting for it may be
    /// on another ([`Sessions::deliver`] takes it there). `false` when it was not (the session is not shared, or
    /// Redis cannot be reached): then the protocol layer here takes it, as for one node.
    pub(crate) async fn forward_answer(&self, id: &str, session: &Session, message: &[u8]) -> bool {
        let (Some(sharing), Some(_)) = (&self.sharing, session.sealed.get()) else { return false };
        let Ok(message) = std::str::from_utf8(message) else { return false };
        sharing.answer(id, message).await
    }

    /// A client's answer published by any node: hand it to the session's worker, if it has one here (a parked
    /// session has no call waiting).
    async fn deliver(&self, id: &str, message: &str) {
        let Some(session) = self.get(id) else { return };
        if !session.is_live() {
            return;
        }
        match serde_json::from_str::<ClientJsonRpcMessage>(message) {
            Ok(message) => {
                if let Err(e) = self.inner.accept_message(&SessionId::from(id), message).await {
                    tracing::debug!(error = %e, "a client's answer found no worker to take it");
                }
            }
            Err(e) => tracing::warn!(error = %e, "a published answer is not a JSON-RPC message"),
        }
    }

    /// The client ended session `id` (DELETE): forget it here and, shared, on every node.
    async fn end(&self, id: &str) {
        self.remove(id).await;
        if let Some(sharing) = &self.sharing {
            sharing.end(id).await;
        }
    }

    /// Count a listening stream as activity for as long as it is open.
    fn hold<S: Stream<Item = ServerSseMessage> + Send + Sync + 'static>(
        &self,
        id: &SessionId,
        stream: S,
    ) -> impl Stream<Item = ServerSseMessage> + Send + Sync + 'static + use<S> {
        let open = match (self.this.upgrade(), self.touch_id(id)) {
            (Some(sessions), Some(session)) => {
                session.streams.fetch_add(1, Ordering::AcqRel);
                Some(StreamOpen(sessions, session))
            }
            _ => None,
        };
        stream.map(move |message| {
            let _open = &open;
            message
        })
    }
}

/// Per-session state of a legacy (initialize-based) client. Stateless requests get a fresh one each time.
#[derive(Debug)]
pub struct SessionState {
    log_level: Mutex<LogLevel>,
    /// Set once the client subscribed to a resource: its updates go through the session's worker, which is then
    /// never parked.
    keep_worker: AtomicBool,
}

impl Default for SessionState {
    fn default() -> Self {
        // Until the client sets a level, send info and above.
        Self { log_level: Mutex::new(LogLevel::Info), keep_worker: AtomicBool::new(false) }
    }
}

impl SessionState {
    /// Keep the session's worker for as long as the session lives (it subscribed to a resource).
    pub fn keep_worker(&self) {
        self.keep_worker.store(true, Ordering::Release);
    }

    /// Whether the session's worker is never parked.
    pub fn keeps_worker(&self) -> bool {
        self.keep_worker.load(Ordering::Acquire)
    }

    /// Set the minimum level of log messages sent to the client (`logging/setLevel`).
    pub fn set_log_level(&self, level: LogLevel) {
        *self.log_level.lock().unwrap_or_else(|e| e.into_inner()) = level;
    }

    /// Whether a message at `level` goes to the client.
    pub fn log_enabled(&self, level: LogLevel) -> bool {
        level >= *self.log_level.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Parse a protocol log level name.
pub fn parse_level(name: &str) -> Option<LogLevel> {
    Some(match name {
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "notice" => LogLevel::Notice,
        "warning" => LogLevel::Warning,
        "error" => LogLevel::Error,
        "critical" => LogLevel::Critical,
        "alert" => LogLevel::Alert,
        "emergency" => LogLevel::Emergency,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::transport::streamable_http_server::RestoreOutcome;

    /// Let the reaper run its passes up to now.
    async fn settle() {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_sessions_expire_and_busy_ones_do_not() {
        let sessions = Sessions::start(
            Duration::from_secs(1),
            Duration::from_secs(3600),
            SessionCaps { total: 10, per_client: 10 },
            None,
        );
        let (idle, _) = sessions.create_session().await.unwrap();
        let (working, _) = sessions.create_session().await.unwrap();
        let (listening, _) = sessions.create_session().await.unwrap();
        // A request in flight and an open listening stream keep their sessions busy.
        let request = sessions.begin(sessions.get(&working).unwrap(), "1".into()).ok().unwrap();
        let stream = sessions.hold(&listening, futures::stream::pending::<ServerSseMessage>());
        tokio::time::advance(Duration::from_millis(900)).await;
        settle().await;
        assert_eq!(sessions.len(), 3, "nothing is idle for longer than the timeout yet");
        tokio::time::advance(Duration::from_millis(600)).await;
        settle().await;
        assert!(sessions.get(&idle).is_none(), "idle for 1.5 s: closed");
        assert!(sessions.get(&working).is_some() && sessions.get(&listening).is_some());
        // Ten timeouts later, still busy, still there.
        tokio::time::advance(Duration::from_secs(10)).await;
        settle().await;
        assert_eq!(sessions.len(), 2);
        // Once the request is answered and the stream closed, each is idle from that moment.
        drop(request);
        drop(stream);
        tokio::time::advance(Duration::from_millis(900)).await;
        settle().await;
        assert_eq!(sessions.len(), 2, "activity ended 0.9 s ago");
        tokio::time::advance(Duration::from_millis(600)).await;
        settle().await;
        assert_eq!(sessions.len(), 0);
        assert!(!sessions.has_session(&working).await.unwrap(), "rmcp's session is closed too");
    }

    #[tokio::test(start_paused = true)]
    async fn a_seat_is_held_by_its_session_until_it_closes_or_expires() {
        let sessions = Sessions::start(
            Duration::from_secs(1),
            Duration::from_secs(3600),
            SessionCaps { total: 2, per_client: 1 },
            None,
        );
        let client: Arc<str> = "key:a".into();
        // A seat not bound to a session (the initialize failed) is given back.
        drop(sessions.admit(client.clone()).ok().unwrap());
        let seat = sessions.admit(client.clone()).ok().unwrap();
        let (id, _) = sessions.create_session().await.unwrap();
        seat.bind(&id);
        assert_eq!(sessions.admit(client.clone()).err(), Some(Full::Client));
        let other = sessions.admit("ip:192.0.2.7".into()).ok().unwrap();
        assert_eq!(sessions.admit("key:b".into()).err(), Some(Full::Gateway), "two seats taken");
        drop(other);
        // The idle session expires and gives its seat back (the reaper looks every 250 ms).
        for _ in 0..20 {
            tokio::time::advance(Duration::from_millis(100)).await;
            settle().await;
        }
        assert!(sessions.get(&id).is_none());
        assert!(sessions.admit(client).is_ok(), "the expired session's seat is free again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_left_by_a_failed_restore_does_not_block_the_next_one() {
        let sessions = Sessions::start(
            Duration::from_secs(60),
            Duration::from_secs(30),
            SessionCaps { total: 10, per_client: 10 },
            None,
        );
        let id: SessionId =
            sessions.open(r#"{"protocolVersion":"2025-11-25"}"#.into(), None, "2025-11-25".into());
        assert!(!sessions.has_session(&id).await.unwrap(), "born parked");
        let first = sessions.restore_session(id.clone()).await.unwrap();
        assert!(matches!(first, RestoreOutcome::Restored(_)));
        // Its replay never happened (the worker was never served): the next restore releases the leftover
        // worker and makes a new one, rather than answering AlreadyPresent (a 500) until the session expires.
        drop(first);
        let second = sessions.restore_session(id.clone()).await.unwrap();
        assert!(matches!(second, RestoreOutcome::Restored(_)));
        assert_eq!(*sessions.get(&id).unwrap().worker(), Worker::Restoring);
        // Forgetting the session ends rmcp's worker too, whatever the record says.
        *sessions.get(&id).unwrap().worker() = Worker::Parked;
        sessions.remove(&id).await;
        assert!(!sessions.inner.has_session(&id).await.unwrap());
    }
}
