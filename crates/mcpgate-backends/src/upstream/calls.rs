//! The calls in flight on one connection, and what the upstream sends for each of them on its way to the
//! caller's client.
//!
//! - **Registration.** Each call that has a downstream [`CallContext`] is registered ([`Calls`]) under the
//!   JSON-RPC id and progress token of its upstream request (rmcp always sets its own token; a lane call sets
//!   its id as its token), for as long as it runs. A message from the upstream is related to a call through them.
//! - **Delivery.** What is for a call's client is queued ([`Delivery`]) for the call's own task to send, never
//!   sent from the task that read it: the downstream transport relates what it sends to the request whose task
//!   sends it.
//! - **Progress** with a known token goes to that call's client; a value not above the last one forwarded is
//!   dropped, so the client sees increasing progress.
//! - **Log messages** carry nothing that ties them to a request: they go to the client of the only call in
//!   flight, if there is exactly one.
//!
//! A message may come a moment before its call is registered (the request is on the wire before rmcp hands
//! back its id): lookups wait up to [`REGISTRATION_GRACE`] for it. Those that cannot wait — the transport's
//! reader (`Ordered`) — look once ([`Calls::deliver_now`], [`Calls::ask_now`]).
//!
//! rmcp marks logging deprecated (SEP-2577, a revision after 2026-07-28); the revisions served here still
//! have it, so the deprecation is allowed in this file.
#![allow(deprecated)]

use std::{collections::HashMap, sync::Arc, time::Duration};

use mcpgate_core::{CallContext, ClientRequestError, LogLevel};
use parking_lot::Mutex;
use rmcp::model::{
    LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken, RequestId, ServerNotification,
};
use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::wire::log_level;

/// How long a message from the upstream may wait for its call to be registered.
const REGISTRATION_GRACE: Duration = Duration::from_millis(250);

/// The calls in flight on one connection.
#[derive(Default)]
pub(super) struct Calls {
    inner: Mutex<Inner>,
    registered: Notify,
}

#[derive(Default)]
struct Inner {
    next: u64,
    slots: HashMap<u64, Arc<Slot>>,
}

/// Something for a caller's client, handed to the call's own task: the downstream transport relates what
/// it sends to the request whose task sends it (rmcp's task-local), so it must not be sent from rmcp's
/// client tasks, or it would land on the session's standalone stream.
pub(super) enum Delivery {
    /// `notifications/progress`.
    Progress {
        /// Progress so far.
        progress: f64,
        /// Total, if known.
        total: Option<f64>,
        /// What is happening.
        message: Option<String>,
    },
    /// `notifications/message`.
    Log {
        /// Severity.
        level: LogLevel,
        /// Logger name.
        logger: Option<String>,
        /// The message.
        data: Value,
    },
    /// A request to the client, and where its answer goes.
    Request {
        /// Names the request for a stateless client's retry.
        key: String,
        /// `sampling/createMessage`, `elicitation/create` or `roots/list`.
        method: String,
        /// Its params.
        params: Value,
        /// The answer.
        reply: oneshot::Sender<Result<Value, ClientRequestError>>,
    },
}

impl Delivery {
    /// Send it to the client of `cx`.
    pub(super) async fn deliver(self, cx: &CallContext) {
        match self {
            Self::Progress { progress, total, message } => cx.progress(progress, total, message).await,
            Self::Log { level, logger, data } => cx.log(level, logger.as_deref(), data).await,
            Self::Request { key, method, params, mut reply } => {
                let answer = tokio::select! {
                    answer = cx.request_client(&key, &method, params) => answer,
                    () = reply.closed() => return,
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// Deliver what is still queued when the call has its result (a message sent just before it).
    pub(super) async fn drain(queue: &mut mpsc::UnboundedReceiver<Delivery>, cx: &CallContext) {
        tokio::task::yield_now().await;
        while let Ok(delivery) = queue.try_recv() {
            if !matches!(delivery, Self::Request { .. }) {
                delivery.deliver(cx).await;
            }
        }
    }
}

/// One call in flight: where its deliveries go, and the upstream request's id and progress token.
pub(super) struct Slot {
    /// The caller's cancellation.
    pub cancel: CancellationToken,
    /// The call's queue, which its own task delivers.
    pub deliveries: mpsc::UnboundedSender<Delivery>,
    request_id: RequestId,
    progress_token: ProgressToken,
    last_progress: Mutex<Option<f64>>,
}

impl Slot {
    /// Queue a log message for the call's client.
    pub(super) fn log(&self, params: &LoggingMessageNotificationParam) {
        let (level, logger, data) = (log_level(params.level), params.logger.clone(), params.data.clone());
        let _ = self.deliveries.send(Delivery::Log { level, logger, data });
    }

    /// Queue progress for the call's client, unless it is not above what was forwarded already.
    pub(super) fn progress(&self, params: &ProgressNotificationParam) {
        if self.advance(params.progress) {
            let (progress, total, message) = (params.progress, params.total, params.message.clone());
            let _ = self.deliveries.send(Delivery::Progress { progress, total, message });
        }
    }

    /// Whether `progress` is above everything forwarded so far (and remember it if so).
    fn advance(&self, progress: f64) -> bool {
        let mut last = self.last_progress.lock();
        if last.is_some_and(|last| progress <= last) {
            return false;
        }
        *last = Some(progress);
        true
    }
}

/// Removes its call from [`Calls`] when dropped, however the call ends.
pub(super) struct Registration {
    calls: Arc<Calls>,
    key: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.calls.inner.lock().slots.remove(&self.key);
    }
}

impl Calls {
    /// Register a call for as long as the returned guard lives; what is meant for its client arrives on the
    /// returned queue, for the call's task to deliver.
    pub(super) fn register(
        self: &Arc<Self>,
        cx: &CallContext,
        request_id: RequestId,
        progress_token: ProgressToken,
    ) -> (Registration, mpsc::UnboundedReceiver<Delivery>) {
        let (deliveries, queue) = mpsc::unbounded_channel();
        let slot = Arc::new(Slot {
            cancel: cx.cancel.clone(),
            deliveries,
            request_id,
            progress_token,
            last_progress: Mutex::new(None),
        });
        let key = {
            let mut inner = self.inner.lock();
            inner.next += 1;
            let key = inner.next;
            inner.slots.insert(key, slot);
            key
        };
        self.registered.notify_waiters();
        (Registration { calls: self.clone(), key }, queue)
    }

    /// The one call `pick` chooses from those in flight, waiting up to [`REGISTRATION_GRACE`] for it to be
    /// registered. `pick` answers `Err` for "no, and waiting cannot help".
    async fn wait_for<T>(
        &self,
        pick: impl Fn(&[Arc<Slot>]) -> Result<Option<T>, String>,
    ) -> Result<T, String> {
        let deadline = tokio::time::Instant::now() + REGISTRATION_GRACE;
        loop {
            let notified = self.registered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let slots: Vec<Arc<Slot>> = self.inner.lock().slots.values().cloned().collect();
            if let Some(found) = pick(&slots)? {
                return Ok(found);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return pick(&slots)?.ok_or_else(|| "no call in flight matches".to_owned());
            }
        }
    }

    /// The call whose upstream request has `token`.
    pub(super) async fn by_progress_token(&self, token: &ProgressToken) -> Option<Arc<Slot>> {
        self.wait_for(|slots| Ok(slots.iter().find(|s| &s.progress_token == token).cloned())).await.ok()
    }

    /// The call whose upstream request has `id`.
    pub(super) async fn by_request_id(&self, id: &RequestId) -> Result<Arc<Slot>, String> {
        self.wait_for(|slots| Ok(slots.iter().find(|s| &s.request_id == id).cloned())).await
    }

    /// Whether no call is in flight, once [`REGISTRATION_GRACE`] has passed without one.
    pub(super) async fn idle(&self) -> bool {
        self.wait_for(|slots| Ok((!slots.is_empty()).then_some(()))).await.is_err()
    }

    /// Put a log message or progress on the queue of the call it is for, if that call is in flight now (see
    /// `Ordered`); `false` when it is something else, or for no call registered yet,
    /// and goes on to rmcp.
    pub(super) fn deliver_now(&self, notification: &ServerNotification) -> bool {
        let inner = self.inner.lock();
        match notification {
            ServerNotification::LoggingMessageNotification(log) => {
                let mut slots = inner.slots.values();
                let (Some(slot), None) = (slots.next(), slots.next()) else { return false };
                slot.log(&log.params);
                true
            }
            ServerNotification::ProgressNotification(progress) => {
                let token = &progress.params.progress_token;
                let Some(slot) = inner.slots.values().find(|s| &s.progress_token == token) else {
                    return false;
                };
                slot.progress(&progress.params);
                true
            }
            _ => false,
        }
    }

    /// Put a request of the upstream's to the client of the only call in flight now, if there is exactly one
    /// (see `Ordered`); where its answer will come, or `None` when there is no such
    /// call.
    pub(super) fn ask_now(
        &self,
        key: String,
        method: &str,
        params: Value,
    ) -> Option<oneshot::Receiver<Result<Value, ClientRequestError>>> {
        let inner = self.inner.lock();
        let mut slots = inner.slots.values();
        let (Some(slot), None) = (slots.next(), slots.next()) else { return None };
        let (reply, answer) = oneshot::channel();
        let request = Delivery::Request { key, method: method.to_owned(), params, reply };
        slot.deliveries.send(request).ok()?;
        Some(answer)
    }

    /// The only call in flight; an error when there are several.
    pub(super) async fn single(&self) -> Result<Arc<Slot>, String> {
        self.wait_for(|slots| match slots {
            [] => Ok(None),
            [only] => Ok(Some(only.clone())),
            several => Err(format!("{} calls are in flight", several.len())),
        })
        .await
    }
}
