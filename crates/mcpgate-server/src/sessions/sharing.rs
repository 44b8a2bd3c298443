//! Sessions any node can serve: the id of a session opened here is its record — the negotiated protocol version
//! and the client's `initialize` params — sealed (HMAC-SHA256, the codec that seals `requestState`, under a
//! binding of its own) with the key every node shares. A node meeting an id it does not hold opens it, asks Redis
//! once whether the session is alive, and adopts it parked: its next request that needs the protocol layer
//! replays the `initialize` into a worker, as for a session parked here. Serving a request costs no round trip;
//! the only traffic is this one question per session per node, telling Redis the session is alive at most once a
//! quarter of the idle timeout, a client's DELETE, published to every node, and the client's answers to what a
//! server asked it (sampling, elicitation), published so that the node whose call waits for one gets it whichever
//! node the balancer gave it to.
//!
//! What stays per node: a session opened by the protocol layer (an `initialize` the fast path does not answer,
//! e.g. one with an `Origin`) keeps a random id; the seats a session takes are counted on the node that opened
//! it.

use std::{
    sync::{Arc, Weak, atomic::Ordering},
    time::Duration,
};

use futures::{Stream, StreamExt};
use mcpgate_state::{Heard, Life, SharedSessions};
use rmcp::{
    model::ServerJsonRpcMessage,
    transport::{
        common::server_side_http::ServerSseMessage,
        streamable_http_server::{SessionId, SessionManager},
    },
};
use rmcp::{
    model::{RequestStateCodec, SealOptions},
    transport::streamable_http_server::session::local::LocalSessionManagerError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{Session, Sessions};

/// What binds a sealed session id to its use, so no other sealed value (a `requestState`) passes for one.
const BINDING: &[u8] = b"mcpgate legacy session id";

/// The largest `initialize` sealed into an id; a larger one (a client sending kilobytes of capabilities) gets a
/// random id, served by this node only, rather than a header that size.
const MAX_SEALED: usize = 2048;

/// What a sealed id holds.
#[derive(Serialize, Deserialize)]
struct Record {
    /// The negotiated protocol version.
    v: String,
    /// The client's `initialize` params, as JSON text.
    i: String,
    /// When it was opened, in Unix milliseconds.
    t: u64,
    /// Makes every id unique, even for identical `initialize` requests.
    n: String,
}

/// How this node shares its sessions: the sealing codec and what Redis keeps.
pub(crate) struct Sharing {
    codec: RequestStateCodec,
    store: SharedSessions,
}

impl std::fmt::Debug for Sharing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharing").finish_non_exhaustive()
    }
}

impl Sharing {
    /// Sessions sealed with `codec` (whose key every node shares), kept alive in `store`.
    pub(crate) fn new(codec: RequestStateCodec, store: SharedSessions) -> Self {
        Self { codec, store }
    }

    /// The sealed id of a new session, told alive to the other nodes; `None` for an `initialize` too large to
    /// seal.
    pub(super) fn seal(&self, initialize: &str, version: &str) -> Option<Arc<str>> {
        if initialize.len() > MAX_SEALED {
            return None;
        }
        let record = Record {
            v: version.into(),
            i: initialize.into(),
            t: unix_millis(),
            n: uuid::Uuid::new_v4().simple().to_string(),
        };
        let id: Arc<str> =
            self.codec.seal_json_with(&record, &SealOptions::new().associated_data(BINDING)).ok()?.into();
        self.tell_alive(id.clone());
        Some(id)
    }

    /// The `initialize` params and version sealed in `id`, when it is a sealed id of a session still alive: one
    /// Redis knows alive, one too young for Redis to know yet, or any while Redis cannot say (sealed sessions go
    /// on while it is down).
    pub(super) async fn adoptable(&self, id: &str) -> Option<(Box<str>, String)> {
        let record: Record = self.codec.open_json_with(id, BINDING).ok()?;
        let young = unix_millis().saturating_sub(record.t) < SharedSessions::YOUNG.as_millis() as u64;
        match self.store.life(id).await {
            Some(Life::Alive) | None => {}
            Some(Life::Unknown) if young => {}
            Some(Life::Ended | Life::Unknown) => {
                tracing::debug!("a sealed session id names a session that expired or was ended");
                return None;
            }
        }
        Some((record.i.into_boxed_str(), record.v))
    }

    /// `session` (sealed id `id`) was used at `now` ([`Sessions::epoch`] milliseconds): tell the other nodes
    /// it is alive, unless this node did within the last quarter of the idle timeout.
    pub(super) fn used(&self, id: &Arc<str>, session: &Session, now: u64, idle: Duration) {
        let told = session.told_alive.load(Ordering::Relaxed);
        let quarter = u64::try_from((idle / 4).as_millis()).unwrap_or(u64::MAX);
        if told != 0 && now.saturating_sub(told) < quarter {
            return;
        }
        if session.told_alive.compare_exchange(told, now.max(1), Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            self.tell_alive(id.clone());
        }
    }

    fn tell_alive(&self, id: Arc<str>) {
        let store = self.store.clone();
        tokio::spawn(async move { store.alive(&id).await });
    }

    /// The client ended session `id`: every node forgets it.
    pub(super) async fn end(&self, id: &str) {
        self.store.end(id).await;
    }

    /// Pass the client's answer `message` in session `id` to every node; `false` when that cannot be done.
    pub(super) async fn answer(&self, id: &str, message: &str) -> bool {
        self.store.answer(id, message).await
    }

    /// Follow, in `sessions`, what every node publishes, for as long as `sessions` lives: forget the sessions
    /// ended anywhere, hand the client's answers to the workers of the sessions live here.
    pub(super) fn listen(&self, sessions: Weak<Sessions>) {
        let mut heard = self.store.heard();
        tokio::spawn(async move {
            loop {
                match heard.recv().await {
                    Ok(Heard::Ended(id)) => {
                        let Some(sessions) = sessions.upgrade() else { return };
                        if sessions.get(&id).is_some() {
                            tracing::debug!("a session ended on another node is forgotten here");
                            sessions.remove(&id).await;
                        }
                    }
                    Ok(Heard::Answer(id, message)) => {
                        let Some(sessions) = sessions.upgrade() else { return };
                        sessions.deliver(&id, &message).await;
                    }
                    Ok(Heard::Stream(id, message, event)) => {
                        let Some(sessions) = sessions.upgrade() else { return };
                        if sessions.streamed.receiver_count() > 0 {
                            match serde_json::from_str::<ServerJsonRpcMessage>(&message) {
                                Ok(message) => {
                                    drop(sessions.streamed.send((id, Arc::new(message), Some(event))))
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "a published stream message does not parse")
                                }
                            }
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "session news came faster than it was followed; some was lost"
                        );
                    }
                    // Followed by the node holding the session's listening stream (`listening.rs`).
                    Ok(Heard::Subscriptions(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }
}

fn unix_millis() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// What the gateway does while a shared session's listening stream is held on this node: given the session's id
/// and a token cancelled when the stream ends.
pub(crate) type OnListen = Arc<dyn Fn(Arc<str>, CancellationToken) + Send + Sync>;

/// The hook, which has nothing to show.
pub(super) struct Hook(pub(super) OnListen);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// A message for a listening stream, as the nodes pass it: the session's id, the message, and its event id in the
/// session's Redis stream (`None` for one passed locally while Redis could not be reached).
pub(super) type Streamed = (Arc<str>, Arc<ServerJsonRpcMessage>, Option<Arc<str>>);

impl Sessions {
    /// Have `on_listen` run for every listening stream of a shared session opened here.
    pub(crate) fn on_listen(&self, on_listen: OnListen) {
        let _ = self.on_listen.set(Hook(on_listen));
    }

    /// Whether session `id` is one this node shares with the others.
    pub(super) fn shares(&self, id: &str) -> bool {
        self.sharing.is_some() && self.get(id).is_some_and(|session| session.is_shared())
    }

    /// The client's listening stream of session `id`, opened here — for a shared session, resumed after event
    /// `after` when given: this node's channel of the worker, merged with what every node published for the
    /// session, with the gateway's hook running for as long as it is open. Counted as activity while open.
    pub(super) async fn listening_stream<'s, 'i>(
        &'s self,
        id: &'i SessionId,
        after: Option<&str>,
    ) -> Result<
        impl Stream<Item = ServerSseMessage> + Send + Sync + 'static + use<'s, 'i>,
        LocalSessionManagerError,
    > {
        self.ensure_drain(id).await;
        let own = self.inner.create_standalone_stream(id).await?;
        let merged = self.with_relayed(id, own, after).await;
        let listening = self.listening(id);
        Ok(self.hold(
            id,
            merged.map(move |message| {
                let _listening = &listening;
                message
            }),
        ))
    }

    /// A listening stream of shared session `id` opens here: run the gateway's hook, whose token is cancelled when
    /// the returned guard (held by the stream) drops.
    fn listening(&self, id: &SessionId) -> Option<tokio_util::sync::DropGuard> {
        let Hook(on_listen) = self.on_listen.get().filter(|_| self.shares(id))?;
        let until = CancellationToken::new();
        on_listen(Arc::from(&**id), until.clone());
        Some(until.drop_guard())
    }

    /// Make sure the worker of shared session `id` has its listening-stream channel taken by this node, which
    /// appends what it carries to the session's Redis stream (and so to the node holding the client's `GET`
    /// stream, this one included; straight to this node's own streams while Redis cannot be reached). Taken once
    /// per worker, before the client's own `GET` stream is opened here, so that stream gets every message through
    /// Redis, with an event id any node can resume from.
    pub(super) async fn ensure_drain(&self, id: &SessionId) {
        if self.sharing.is_none() {
            return;
        }
        let (Some(this), Some(session)) = (self.this.upgrade(), self.get(id)) else { return };
        let mut draining = session.draining.lock().await;
        if *draining {
            return;
        }
        let Ok(stream) = self.inner.create_standalone_stream(id).await else { return };
        *draining = true;
        drop(draining);
        let id = Arc::<str>::from(&**id);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let Some(message) = item.message else { continue };
                let event = match (serde_json::to_string(&*message), &this.sharing) {
                    (Ok(json), Some(sharing)) => sharing.store.to_stream(&id, &json).await,
                    _ => None,
                };
                if event.is_none() {
                    let _ = this.streamed.send((id.clone(), message, None));
                }
            }
            // The worker is gone (parked or closed): the next one is drained afresh.
            *session.draining.lock().await = false;
        });
    }

    /// The listening stream of shared session `id` as the client sees it: `own` (this node's channel of the
    /// worker, which carries nothing but keep-alives once drained) merged with every message published for the
    /// session — first, with `after` (a `Last-Event-ID`), what the session's Redis stream holds after it — until
    /// `own` ends. A session that is not shared gets `own` alone.
    pub(super) async fn with_relayed<S>(
        &self,
        id: &SessionId,
        own: S,
        after: Option<&str>,
    ) -> impl Stream<Item = ServerSseMessage> + Send + Sync + 'static + use<S>
    where
        S: Stream<Item = ServerSseMessage> + Send + Sync + 'static,
    {
        let sharing = self.sharing.as_ref().filter(|_| self.shares(id));
        // Subscribed before the replay is read, so nothing falls between them; what both carry is sent once.
        let receiver = sharing.map(|_| self.streamed.subscribe());
        let mut replayed = Vec::new();
        if let (Some(sharing), Some(after)) = (sharing, after) {
            for (event, message) in sharing.store.stream_after(id, after).await.unwrap_or_default() {
                match serde_json::from_str::<ServerJsonRpcMessage>(&message) {
                    Ok(message) => replayed.push(ServerSseMessage::new(event, message)),
                    Err(e) => tracing::warn!(error = %e, "a stored stream message does not parse"),
                }
            }
        }
        let last = replayed.last().and_then(|m| m.event_id.as_deref()).and_then(event_order);
        let wanted: Arc<str> = Arc::from(&**id);
        let relayed = futures::stream::unfold((receiver, last), move |(receiver, mut last)| {
            let wanted = wanted.clone();
            async move {
                let mut receiver = receiver?;
                loop {
                    match receiver.recv().await {
                        Ok((id, message, event)) if id == wanted => {
                            let order = event.as_deref().and_then(event_order);
                            if order.is_some() && order <= last {
                                continue;
                            }
                            last = order.or(last);
                            let message = ServerJsonRpcMessage::clone(&message);
                            let item = match event {
                                Some(event) => ServerSseMessage::new(&*event, message),
                                None => ServerSseMessage::from_message(message),
                            };
                            return Some((Some(item), (Some(receiver), last)));
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        // The listening stream ends when the worker's does: its end is a `None` that stops the merged stream.
        let own = own.map(Some).chain(futures::stream::once(async { None }));
        let replayed = futures::stream::iter(replayed.into_iter().map(Some));
        futures::stream::select(own, replayed.chain(relayed))
            .take_while(|item| std::future::ready(item.is_some()))
            .filter_map(std::future::ready)
    }
}

/// A Redis stream entry id (`1733550000000-3`) as something ordered; `None` for any other event id.
pub(super) fn event_order(event: &str) -> Option<(u64, u64)> {
    let (millis, sequence) = event.split_once('-')?;
    Some((millis.parse().ok()?, sequence.parse().ok()?))
}
