//! From the upstream back to whoever called: the gateway's `ClientHandler` on each upstream connection.
//!
//! - **Calls in flight.** A message from the upstream is related to a call through the call's registration
//!   ([`Calls`]: the JSON-RPC id and progress token of its upstream request), and queued for the call's own task.
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
//! A message may come a moment before its call is registered: the lookups of [`Calls`] wait a moment for it.
//!
//! rmcp marks sampling, roots and logging deprecated (SEP-2577, a revision after 2026-07-28); the protocol
//! versions this gateway serves still have them, so the deprecation is allowed in this file.
#![allow(deprecated)]

use std::{sync::Arc, time::Duration};

use mcpgate_core::ClientRequestError;
use rmcp::{
    ClientHandler, Peer, RoleClient,
    model::{
        ClientConfig, CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
        ErrorData, ListRootsResult, LoggingMessageNotificationParam, ProgressNotificationParam,
    },
    service::{InboundStreamOrigin, NotificationContext, RequestContext},
};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{
    calls::{Calls, Delivery},
    state::Shared,
    wire::{answer, client_config, refusal, to_json},
};

/// Longest time a refetch after `list_changed` may take.
const REFETCH_TIMEOUT: Duration = Duration::from_secs(10);

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
