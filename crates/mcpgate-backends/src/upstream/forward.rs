//! From the upstream back to whoever called: the gateway's `ClientHandler` on each upstream connection.
//!
//! - **Calls in flight.** Each call that has a downstream [`CallContext`] is registered ([`Calls`]) under the
//!   JSON-RPC id and progress token rmcp gave its upstream request (rmcp always sets its own token), for as
//!   long as it runs. A message from the upstream is related to a call through them.
//! - **Progress** with a known token goes to that call's client (nothing when the client asked for none);
//!   unknown tokens are dropped. A value not above the last one forwarded is dropped, so the client sees
//!   increasing progress.
//! - **Log messages** carry nothing that ties them to a request: with exactly one call in flight they go to
//!   its client, otherwise to the gateway's own log under the upstream's name.
//! - **Order.** The transport's reader queues the log messages and progress of a registered call itself, in
//!   the order they come and so before the answer that follows them ([`Ordered`](super::ordered::Ordered));
//!   only those that come before their call is registered take rmcp's path (a task per notification) to the
//!   handler below.
//! - **Sampling, elicitation, roots.** Over Streamable HTTP rmcp says on which request's stream the request
//!   came (and a `tools/call` on the [HTTP lane](super::http_lane) reads its own stream); over stdio nothing
//!   does, so it goes to the one call in flight — put there by the pipe's reader ([`Ordered`](super::ordered::Ordered)), since a lane
//!   call is no request of rmcp's — and with none or several the upstream gets an error. A client that can
//!   only answer in a later round (stateless 2026-07-28) gets the upstream an error too: such a request, sent
//!   while the call runs, cannot be replayed. (An upstream may instead ask with `input_required`, which is
//!   forwarded round by round: `Upstream::with_input`.)
//! - **`list_changed`** refetches that list over the live connection and republishes the catalogue.
//!
//! A message may come a moment before its call is registered (the request is on the wire before rmcp hands
//! back its id): lookups wait up to [`REGISTRATION_GRACE`] for it.
//!
//! rmcp marks sampling, roots and logging deprecated (SEP-2577, a revision after 2026-07-28); the protocol
//! versions this gateway serves still have them, so the deprecation is allowed in this file.
#![allow(deprecated)]

use std::{collections::HashMap, sync::Arc, time::Duration};

use mcpgate_core::{CallContext, ClientRequestError, LogLevel};
use parking_lot::Mutex;
use rmcp::{
    ClientHandler, Peer, RoleClient,
    model::{
        ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
        ElicitRequestParams, ElicitResult, ElicitationCapability, ErrorCode, ErrorData, Implementation,
        ListRootsResult, LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam,
        ProgressToken, RequestId, RequestMetaObject, ServerNotification,
    },
    service::{InboundStreamOrigin, NotificationContext, RequestContext},
};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::connection::Shared;

/// How long a message from the upstream may wait for its call to be registered.
const REGISTRATION_GRACE: Duration = Duration::from_millis(250);
/// Longest time a refetch after `list_changed` may take.
const REFETCH_TIMEOUT: Duration = Duration::from_secs(10);

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
    cancel: CancellationToken,
    deliveries: mpsc::UnboundedSender<Delivery>,
    request_id: RequestId,
    progress_token: ProgressToken,
    last_progress: Mutex<Option<f64>>,
}

impl Slot {
    /// Queue a log message for the call's client.
    fn log(&self, params: &LoggingMessageNotificationParam) {
        let (level, logger, data) = (log_level(params.level), params.logger.clone(), params.data.clone());
        let _ = self.deliveries.send(Delivery::Log { level, logger, data });
    }

    /// Queue progress for the call's client, unless it is not above what was forwarded already.
    fn progress(&self, params: &ProgressNotificationParam) {
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
    async fn by_progress_token(&self, token: &ProgressToken) -> Option<Arc<Slot>> {
        self.wait_for(|slots| Ok(slots.iter().find(|s| &s.progress_token == token).cloned())).await.ok()
    }

    /// The call whose upstream request has `id`.
    async fn by_request_id(&self, id: &RequestId) -> Result<Arc<Slot>, String> {
        self.wait_for(|slots| Ok(slots.iter().find(|s| &s.request_id == id).cloned())).await
    }

    /// Whether no call is in flight, once [`REGISTRATION_GRACE`] has passed without one.
    async fn idle(&self) -> bool {
        self.wait_for(|slots| Ok((!slots.is_empty()).then_some(()))).await.is_err()
    }

    /// Put a log message or progress on the queue of the call it is for, if that call is in flight now (see
    /// [`Ordered`](super::ordered::Ordered)); `false` when it is something else, or for no call registered yet,
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
    /// (see [`Ordered`](super::ordered::Ordered)); where its answer will come, or `None` when there is no such
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
    async fn single(&self) -> Result<Arc<Slot>, String> {
        self.wait_for(|slots| match slots {
            [] => Ok(None),
            [only] => Ok(Some(only.clone())),
            several => Err(format!("{} calls are in flight", several.len())),
        })
        .await
    }
}

/// Which list a `list_changed` notification names.
#[derive(Debug, Clone, Copy)]
enum List {
    Tools,
    Prompts,
    Resources,
}

/// The gateway as the client of one upstream connection.
#[derive(Clone)]
pub(super) struct GatewayClient {
    /// Upstream name, for the log.
    pub name: String,
    /// Where a refetched list is published.
    pub shared: Arc<Shared>,
    /// The connection's calls in flight.
    pub calls: Arc<Calls>,
    /// Cancelled when the connection is gone: a refetch then publishes nothing.
    pub dead: CancellationToken,
    /// Refetches run one at a time, so an older list never overwrites a newer one.
    pub refetch: Arc<tokio::sync::Mutex<()>>,
}

impl GatewayClient {
    /// Ask the caller's client on the upstream's behalf.
    async fn forward(
        &self,
        ctx: &RequestContext<RoleClient>,
        method: &str,
        params: Value,
    ) -> Result<Value, ErrorData> {
        let slot = match ctx.extensions.get::<InboundStreamOrigin>() {
            Some(InboundStreamOrigin::OutboundRequest(id)) => self.calls.by_request_id(id).await,
            _ => self.calls.single().await,
        };
        let slot = slot.map_err(|why| {
            tracing::warn!(upstream = %self.name, %method, "refused: cannot tell which caller it belongs to ({why})");
            ErrorData::internal_error(format!("cannot tell which caller this request belongs to: {why}"), None)
        })?;
        let (reply, answer) = oneshot::channel();
        let key = format!("{}:{}", self.name, ctx.id);
        let request = Delivery::Request { key, method: method.to_owned(), params, reply };
        if slot.deliveries.send(request).is_err() {
            return Err(ErrorData::internal_error("the call has ended", None));
        }
        tokio::select! {
            answer = answer => answer
                .unwrap_or_else(|_| Err(ClientRequestError::Failed("the call has ended".into())))
                .map_err(refusal),
            () = ctx.ct.cancelled() => Err(ErrorData::internal_error("cancelled", None)),
            () = slot.cancel.cancelled() => Err(ErrorData::internal_error("the call was cancelled", None)),
        }
    }

    /// Fetch one list again and republish the catalogue.
    async fn refetch(&self, peer: Peer<RoleClient>, list: List) {
        let _one_at_a_time = self.refetch.lock().await;
        let name = &self.name;
        let fetch = async {
            match list {
                List::Tools => peer.list_all_tools().await.map(|tools| {
                    self.shared.update(&self.dead, |c| c.tools = tools);
                }),
                List::Prompts => peer.list_all_prompts().await.map(|prompts| {
                    self.shared.update(&self.dead, |c| c.prompts = prompts);
                }),
                List::Resources => {
                    let resources = peer.list_all_resources().await?;
                    let templates = peer.list_all_resource_templates().await?;
                    self.shared.update(&self.dead, |c| {
                        c.resources = resources;
                        c.templates = templates;
                    });
                    Ok(())
                }
            }
        };
        tokio::select! {
            () = self.dead.cancelled() => {}
            result = tokio::time::timeout(REFETCH_TIMEOUT, fetch) => match result {
                Ok(Ok(())) => tracing::info!(upstream = %name, ?list, "list changed; catalogue republished"),
                Ok(Err(e)) => tracing::warn!(upstream = %name, ?list, "list changed but cannot fetch it: {e}"),
                Err(_) => tracing::warn!(upstream = %name, ?list, "list changed but fetching it timed out"),
            },
        }
    }
}

/// What the upstream is told when the caller's client gives no answer to its request.
pub(super) fn refusal(error: ClientRequestError) -> ErrorData {
    match error {
        ClientRequestError::Deferred => ErrorData::internal_error(
            "the client answers in a later round; forwarding over several rounds is not supported yet",
            None,
        ),
        ClientRequestError::Unsupported(what) => {
            ErrorData::new(ErrorCode::METHOD_NOT_FOUND, format!("the client does not support {what}"), None)
        }
        ClientRequestError::Failed(message) => ErrorData::internal_error(message, None),
    }
}

/// Options of a request made for a caller. To a 2026-07-28 upstream (which reads them per request): the
/// caller's own client capabilities, so the upstream asks the caller only what its client can answer and
/// refuses (-32021) what it cannot; and every log message (it sends none unless the request names a level),
/// which the caller's own level filters on the way down.
pub(super) fn caller_meta(cx: &CallContext) -> RequestMetaObject {
    let mut meta = RequestMetaObject::default();
    meta.set_log_level(LoggingLevel::Debug);
    let capabilities = cx.peer.as_ref().map(|peer| peer.client_capabilities()).unwrap_or_else(|| json!({}));
    if let Ok(capabilities) = serde_json::from_value::<ClientCapabilities>(capabilities) {
        meta.set_client_capabilities(capabilities);
    }
    super::trace::add_to_meta(&mut meta);
    meta
}

/// The gateway as a client: what it tells upstreams it is and can forward. A caller whose client lacks a
/// capability gets the upstream an error.
pub(super) fn client_config() -> ClientConfig {
    let mut elicitation = ElicitationCapability::default();
    elicitation.form = Some(Default::default());
    let mut capabilities = ClientCapabilities::default();
    capabilities.sampling = Some(Default::default());
    capabilities.elicitation = Some(elicitation);
    capabilities.roots = Some(Default::default());
    ClientConfig::new(capabilities, Implementation::new("mcpgate", env!("CARGO_PKG_VERSION")))
}

/// The `_meta` every request on this connection carries: for a 2026-07-28 upstream the protocol version,
/// client info and capabilities (what rmcp adds to its own requests), for an older one nothing.
pub(super) fn connection_meta(peer: &Peer<RoleClient>) -> RequestMetaObject {
    let mut meta = RequestMetaObject::default();
    if let Some(info) = peer.peer_info()
        && !info.protocol_version.has_initialize()
    {
        let config = client_config();
        meta.set_protocol_version(info.protocol_version.clone());
        meta.set_client_info(config.client_info);
        meta.set_client_capabilities(config.capabilities);
    }
    meta
}

fn answer<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ErrorData> {
    serde_json::from_value(value)
        .map_err(|e| ErrorData::internal_error(format!("the client's answer is malformed: {e}"), None))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ErrorData> {
    serde_json::to_value(value).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

pub(super) fn log_level(level: LoggingLevel) -> LogLevel {
    match level {
        LoggingLevel::Debug => LogLevel::Debug,
        LoggingLevel::Info => LogLevel::Info,
        LoggingLevel::Notice => LogLevel::Notice,
        LoggingLevel::Warning => LogLevel::Warning,
        LoggingLevel::Error => LogLevel::Error,
        LoggingLevel::Critical => LogLevel::Critical,
        LoggingLevel::Alert => LogLevel::Alert,
        LoggingLevel::Emergency => LogLevel::Emergency,
    }
}

impl ClientHandler for GatewayClient {
    fn get_info(&self) -> ClientConfig {
        client_config()
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        answer(self.forward(&context, "sampling/createMessage", to_json(&params)?).await?)
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        answer(self.forward(&context, "elicitation/create", to_json(&request)?).await?)
    }

    async fn list_roots(&self, context: RequestContext<RoleClient>) -> Result<ListRootsResult, ErrorData> {
        // Asked outside any call (many servers ask once they are initialized), no client's roots apply, and
        // the gateway has none of its own.
        let on_a_call = matches!(context.extensions.get(), Some(InboundStreamOrigin::OutboundRequest(_)));
        if !on_a_call && self.calls.idle().await {
            return Ok(ListRootsResult::default());
        }
        answer(self.forward(&context, "roots/list", json!({})).await?)
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let Some(slot) = self.calls.by_progress_token(&params.progress_token).await else {
            tracing::debug!(upstream = %self.name, token = ?params.progress_token, "progress for no call in flight");
            return;
        };
        slot.progress(&params);
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        match self.calls.single().await {
            Ok(slot) => slot.log(&params),
            Err(_) => tracing::info!(
                upstream = %self.name,
                level = ?params.level,
                logger = params.logger.as_deref().unwrap_or(""),
                "{}",
                params.data
            ),
        }
    }

    async fn on_tool_list_changed(&self, context: NotificationContext<RoleClient>) {
        self.refetch(context.peer, List::Tools).await;
    }

    async fn on_prompt_list_changed(&self, context: NotificationContext<RoleClient>) {
        self.refetch(context.peer, List::Prompts).await;
    }

    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        // Nobody listening is fine: the subscriber may just have left.
        let _ = self.shared.updates.send(params.uri);
    }

    async fn on_resource_list_changed(&self, context: NotificationContext<RoleClient>) {
        self.refetch(context.peer, List::Resources).await;
    }
}
