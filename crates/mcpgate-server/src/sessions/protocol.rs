//! The sessions as rmcp's Streamable HTTP service sees them: its [`SessionManager`] (the local one, wrapped to
//! keep the gateway's records and to park and restore workers) and its [`SessionStore`] (the records' saved
//! `initialize`, which a parked session's worker is restored from).

use std::{sync::Arc, sync::atomic::Ordering, time::Duration};

use futures::{Stream, StreamExt};
use rmcp::{
    model::{
        ClientJsonRpcMessage, ClientNotification, GetExtensions, InitializeRequestParams, JsonRpcMessage,
        ServerJsonRpcMessage, ServerResult,
    },
    transport::{
        common::server_side_http::ServerSseMessage,
        streamable_http_server::{
            RestoreOutcome, SessionId, SessionManager, SessionRestoreMarker,
            session::{
                local::{LocalSessionManager, LocalSessionManagerError},
                store::{SessionState as Saved, SessionStore, SessionStoreError},
            },
        },
    },
};

use super::{Session, Sessions, Worker};
use crate::metrics::labels::{McpMethod, heard};

/// Longest a request waits for a worker being released to be gone, or being restored to be live; either takes
/// well under a millisecond.
const WORKER_WAIT: Duration = Duration::from_secs(5);

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

/// Whether a message is the replay of a restore rather than the client's own (not counted in metrics).
fn replayed(message: &ClientJsonRpcMessage) -> bool {
    let extensions = match message {
        JsonRpcMessage::Request(r) => r.request.extensions(),
        JsonRpcMessage::Notification(n) => n.notification.extensions(),
        _ => return false,
    };
    extensions.get::<SessionRestoreMarker>().is_some()
}

impl Sessions {
    /// Wait until the worker of `session` is past `from` (released, or restored), for at most
    /// [`WORKER_WAIT`]; the worker state it reached.
    async fn worker_past(&self, session: &Session, from: Worker) -> Worker {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                let now = *session.worker();
                if now != from {
                    return now;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(WORKER_WAIT, wait).await {
            Ok(now) => now,
            Err(_) => {
                tracing::warn!("a session's worker stayed {from:?} for {WORKER_WAIT:?}; taking it as parked");
                *session.worker() = Worker::Parked;
                Worker::Parked
            }
        }
    }
}

impl SessionManager for Sessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.inner.create_session().await?;
        let session = Session::default();
        *session.worker() = Worker::Live;
        self.touch(&session);
        self.table.write().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), Arc::new(session));
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        if !replayed(&message) {
            heard(McpMethod::of_message(&message));
        }
        if let Some(session) = self.get(id) {
            session.learn_client(&message);
        }
        let response = self.inner.initialize_session(id, message).await?;
        if let (Some(session), Some(version)) = (self.touch_id(id), negotiated_version(&response)) {
            let _ = session.version.set(version);
        }
        Ok(response)
    }

    /// Whether the session has a live worker. A parked one answers no, so rmcp restores it from the store; one
    /// being restored is waited for. The check counts as activity, under the worker lock the reaper parks under.
    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        let Some(session) = self.find(id).await else { return Ok(false) };
        let worker = {
            let worker = session.worker();
            self.touch(&session);
            *worker
        };
        Ok(match worker {
            Worker::Live => true,
            Worker::Restoring => self.worker_past(&session, Worker::Restoring).await == Worker::Live,
            Worker::Parked | Worker::Parking => false,
        })
    }

    /// The worker is done: the client's DELETE (the store's `delete` then forgets the session), its service
    /// ended, or the reaper released it. The session's record stays until then.
    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let Some(session) = self.get(id) else { return self.inner.close_session(id).await };
        let closed = if *session.worker() == Worker::Parking {
            // The reaper released it and took it out of the local manager already: a restore may be waiting
            // to put a new one there, which must not be closed here.
            Ok(())
        } else {
            self.inner.close_session(id).await
        };
        *session.worker() = Worker::Parked;
        self.changed.notify_waiters();
        closed
    }

    async fn restore_session(&self, id: SessionId) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        let Some(session) = self.find(&id).await else { return Ok(RestoreOutcome::NotSupported) };
        self.worker_past(&session, Worker::Parking).await;
        *session.worker() = Worker::Restoring;
        let mut outcome = self.inner.restore_session(id.clone()).await;
        if matches!(outcome, Ok(RestoreOutcome::AlreadyPresent)) {
            // rmcp restores one session at a time, so this is no concurrent restore but a worker left by one
            // whose replay failed: release it as the reaper does (its end is awaited), then restore afresh.
            tracing::warn!(session = %id, "a leftover worker was in the way of a restore; releasing it");
            *session.worker() = Worker::Parking;
            self.inner.close_session(&id).await?;
            self.worker_past(&session, Worker::Parking).await;
            *session.worker() = Worker::Restoring;
            outcome = self.inner.restore_session(id.clone()).await;
        }
        if !matches!(outcome, Ok(RestoreOutcome::Restored(_))) {
            *session.worker() = Worker::Parked;
            self.changed.notify_waiters();
        }
        tracing::debug!(session = %id, "session restored: a worker replays its initialize");
        outcome
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
        let replay = replayed(&message);
        if !replay {
            heard(McpMethod::of_message(&message));
        }
        let initialized = matches!(
            &message,
            JsonRpcMessage::Notification(n) if matches!(n.notification, ClientNotification::InitializedNotification(_))
        );
        self.inner.accept_message(id, message).await?;
        if let Some(session) = self.touch_id(id)
            && initialized
        {
            session.ready.store(true, Ordering::Release);
            if replay {
                // The restored worker has had its handshake: requests waiting for it go on, and a shared session's
                // listening-stream messages are published from now on.
                *session.worker() = Worker::Live;
                self.changed.notify_waiters();
                if session.sealed.get().is_some()
                    && let Some(this) = self.this.upgrade()
                {
                    let id = id.clone();
                    tokio::spawn(async move { this.ensure_drain(&id).await });
                }
            }
        }
        Ok(())
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.listening_stream(id, None).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        // An event id of a shared session's Redis stream resumes on any node: from Redis.
        if self.shares(id) && super::sharing::event_order(&last_event_id).is_some() {
            return Ok(self.listening_stream(id, Some(&last_event_id)).await?.left_stream());
        }
        let stream = self.inner.resume(id, last_event_id).await?;
        Ok(self.hold(id, stream).right_stream())
    }
}

/// The store rmcp restores a session's worker from: the `initialize` each record keeps.
#[async_trait::async_trait]
impl SessionStore for Sessions {
    async fn load(&self, id: &str) -> Result<Option<Saved>, SessionStoreError> {
        let Some(saved) = self.get(id).and_then(|session| session.initialize.get().cloned()) else {
            return Ok(None);
        };
        let params: InitializeRequestParams = serde_json::from_str(&saved)?;
        Ok(Some(Saved::new(params)))
    }

    async fn store(&self, id: &str, state: &Saved) -> Result<(), SessionStoreError> {
        let json = serde_json::to_string(&state.initialize_params)?;
        if let Some(session) = self.get(id) {
            let _ = session.initialize.set(json.into_boxed_str());
        }
        Ok(())
    }

    /// The client ended the session (DELETE): forget it, on every node when it is shared.
    async fn delete(&self, id: &str) -> Result<(), SessionStoreError> {
        self.end(id).await;
        Ok(())
    }
}
