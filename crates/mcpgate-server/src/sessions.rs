//! Legacy sessions. rmcp's local session manager does the protocol work, and the gateway keeps its own record
//! of each session beside it — negotiated version, readiness, requests in flight, last activity.
//!
//! The record is what lets the fast path serve a plain `tools/call` inside a session without a trip through
//! the session's worker (`fast.rs`), and what decides idle expiry: rmcp's own keep-alive only sees traffic
//! that passes its worker, so it is off, and a reaper here closes sessions that have had no request and no
//! open stream for `session_idle_timeout`.
//!
//! [`SessionState`] is the protocol handler's own per-session state (the client's log level).

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
    model::{ClientJsonRpcMessage, ClientNotification, JsonRpcMessage, ServerJsonRpcMessage, ServerResult},
    transport::{
        common::server_side_http::ServerSseMessage,
        streamable_http_server::{
            SessionId, SessionManager,
            session::local::{LocalSessionManager, LocalSessionManagerError},
        },
    },
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::labels::{McpMethod, heard};

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

    /// Record what the client declared in its `initialize` request (the first one wins).
    fn learn_client(&self, initialize: &ClientJsonRpcMessage) {
        let declared = serde_json::to_value(initialize)
            .ok()
            .and_then(|message| message.pointer("/params/capabilities").filter(|c| c.is_object()).cloned());
        let Some(capabilities) = declared else { return };
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
    /// Sessions that expire after `idle` without requests or open streams, at most `caps` of them; starts the
    /// reaper.
    pub(crate) fn start(idle: Duration, caps: SessionCaps) -> Arc<Self> {
        let mut inner = LocalSessionManager::default();
        inner.session_config.keep_alive = None;
        let sessions = Arc::new_cyclic(|this| Self {
            inner,
            table: RwLock::default(),
            caps,
            seats: Mutex::default(),
            idle,
            epoch: Instant::now(),
            this: this.clone(),
        });
        let period = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
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
        session.last_seen.store(self.now_ms(), Ordering::Release);
    }

    fn touch_id(&self, id: &SessionId) -> Option<Arc<Session>> {
        let session = self.get(id)?;
        self.touch(&session);
        Some(session)
    }

    /// Close every session idle for longer than the timeout.
    async fn reap(&self) {
        let now = self.now_ms();
        let idle_ms = self.idle.as_millis() as u64;
        let expired: Vec<Arc<str>> = self
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, s)| !s.busy() && now.saturating_sub(s.last_seen.load(Ordering::Acquire)) > idle_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            tracing::debug!(session = %id, "session expired");
            if let Err(e) = self.close_session(&id).await {
                tracing::warn!(session = %id, error = %e, "closing an expired session failed");
            }
        }
    }

    /// Count a listening stream as activity for as long as it is open.
    fn hold<S: Stream<Item = ServerSseMessage> + Send + Sync + 'static>(
        &self,
        id: &SessionId,
        stream: S,
    ) -> impl Stream<Item = ServerSseMessage> + Send + Sync + 'static {
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

/// The protocol version in an `initialize` response.
fn negotiated_version(response: &ServerJsonRpcMessage) -> Option<String> {
    match response {
        JsonRpcMessage::Response(r) => match &r.result {
            ServerResult::InitializeResult(init) => Some(init.protocol_version.to_string()),
            _ => None,
        },
        _ => None,
    }
}

impl SessionManager for Sessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.inner.create_session().await?;
        let session = Arc::new(Session::default());
        self.touch(&session);
        self.table.write().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), session);
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        heard(McpMethod::of_message(&message));
        if let Some(session) = self.get(id) {
            session.learn_client(&message);
        }
        let response = self.inner.initialize_session(id, message).await?;
        if let (Some(session), Some(version)) = (self.touch_id(id), negotiated_version(&response)) {
            let _ = session.version.set(version);
        }
        Ok(response)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let closed = self.table.write().unwrap_or_else(|e| e.into_inner()).remove(id);
        if let Some(owner) = closed.as_ref().and_then(|session| session.owner.get()) {
            self.release(owner);
        }
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        heard(McpMethod::of_message(&message));
        self.touch_id(id);
        self.inner.create_stream(id, message).await
    }

    async fn accept_message(&self, id: &SessionId, message: ClientJsonRpcMessage) -> Result<(), Self::Error> {
        heard(McpMethod::of_message(&message));
        let initialized = matches!(
            &message,
            JsonRpcMessage::Notification(n) if matches!(n.notification, ClientNotification::InitializedNotification(_))
        );
        self.inner.accept_message(id, message).await?;
        if let Some(session) = self.touch_id(id)
            && initialized
        {
            session.ready.store(true, Ordering::Release);
        }
        Ok(())
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stream = self.inner.create_standalone_stream(id).await?;
        Ok(self.hold(id, stream))
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stream = self.inner.resume(id, last_event_id).await?;
        Ok(self.hold(id, stream))
    }
}

/// Per-session state of a legacy (initialize-based) client. Stateless requests get a fresh one each time.
#[derive(Debug)]
pub struct SessionState {
    log_level: Mutex<LogLevel>,
}

impl Default for SessionState {
    fn default() -> Self {
        // Until the client sets a level, send info and above.
        Self { log_level: Mutex::new(LogLevel::Info) }
    }
}

impl SessionState {
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

    /// Let the reaper run its passes up to now.
    async fn settle() {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_sessions_expire_and_busy_ones_do_not() {
        let sessions = Sessions::start(Duration::from_secs(1), SessionCaps { total: 10, per_client: 10 });
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
        let sessions = Sessions::start(Duration::from_secs(1), SessionCaps { total: 2, per_client: 1 });
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
}
