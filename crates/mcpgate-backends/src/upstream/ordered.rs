//! What an upstream says about a call reaches the call in the order the upstream said it.
//!
//! rmcp handles each notification in a task of its own, while it hands a response to its waiting request at
//! once (and the [lanes](super::pipe) route their answers before rmcp sees anything): a log message or
//! progress sent just before an answer could reach the call's queue after the call had finished with it, and
//! be lost (issue 13: "Tool execution completed", the last log message of a tool, missing under load). So every
//! transport is wrapped here: a log message or progress for a call in flight is put on that call's queue by
//! the reader itself, before it reads the next message — the answer comes later on the same connection, so it
//! finds everything sent before it already queued. What has no call to go to yet (a message that comes a moment
//! before its call is registered) goes on to rmcp and [`GatewayClient`](super::forward::GatewayClient) as
//! before.
//!
//! Over stdio nothing says which request a request of the upstream's (sampling, elicitation, roots) belongs to,
//! and a `tools/call` on the [lane](super::pipe) is no request of rmcp's: rmcp refuses such a request from a
//! 2026-07-28 upstream as unassociated (SEP-2260). So there the reader also puts it to the client of the one
//! call in flight, and writes the answer back when it comes; with no call, or several, rmcp decides as before.

use std::{borrow::Cow, sync::Arc};

use rmcp::{
    RoleClient,
    model::{
        ClientJsonRpcMessage, ClientResult, CustomResult, ErrorData, JsonRpcMessage, JsonRpcNotification,
        JsonRpcRequest, RequestId, ServerJsonRpcMessage, ServerRequest,
    },
    transport::Transport,
};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{calls::Calls, wire::refusal};

/// A transport whose reader delivers the log messages and progress of calls in flight, in order.
pub(super) struct Ordered<T> {
    inner: T,
    calls: Arc<Calls>,
    asks: Option<Asks>,
}

/// The upstream's requests put to a caller by the reader, for a transport that cannot tell which of its
/// requests they belong to.
struct Asks {
    /// Upstream name: requests are named `UPSTREAM:ID` to the client, as over rmcp.
    upstream: String,
    /// Answers ready to be written back.
    answered: mpsc::UnboundedSender<ClientJsonRpcMessage>,
    answers: mpsc::UnboundedReceiver<ClientJsonRpcMessage>,
}

impl<T> Ordered<T> {
    /// Wrap `inner`, delivering to the calls of `calls`.
    pub(super) fn new(inner: T, calls: Arc<Calls>) -> Self {
        Self { inner, calls, asks: None }
    }

    /// Also put the upstream's requests to the client of the only call in flight (stdio).
    pub(super) fn asking_the_only_call(mut self, upstream: &str) -> Self {
        let (answered, answers) = mpsc::unbounded_channel();
        self.asks = Some(Asks { upstream: upstream.to_owned(), answered, answers });
        self
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Ordered<T> {
    type Error = T::Error;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    /// Cancel-safe as the inner transport's: a message once read is delivered or returned without waiting.
    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        let Self { inner, calls, asks } = self;
        loop {
            let message = match asks.as_mut() {
                None => inner.receive().await?,
                Some(asks) => tokio::select! {
                    Some(answer) = asks.answers.recv() => {
                        // Written in a task of its own, as rmcp writes its messages.
                        let send = inner.send(answer);
                        tokio::spawn(async move {
                            if let Err(e) = send.await {
                                tracing::warn!("cannot send the answer to the upstream's request: {e}");
                            }
                        });
                        continue;
                    }
                    message = inner.receive() => message?,
                },
            };
            let delivered = match &message {
                JsonRpcMessage::Notification(JsonRpcNotification { notification, .. }) => {
                    calls.deliver_now(notification)
                }
                JsonRpcMessage::Request(request) => {
                    asks.as_ref().is_some_and(|asks| asks.put(calls, request))
                }
                _ => false,
            };
            if !delivered {
                return Some(message);
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close().await
    }
}

impl Asks {
    /// Put `request` to the client of the only call in flight, its answer to be written back when it comes;
    /// `false` when it is not a request for the client, or there is no such call.
    fn put(&self, calls: &Calls, request: &JsonRpcRequest<ServerRequest>) -> bool {
        let method = match &request.request {
            ServerRequest::CreateMessageRequest(_) => "sampling/createMessage",
            ServerRequest::ElicitRequest(_) => "elicitation/create",
            ServerRequest::ListRootsRequest(_) => "roots/list",
            _ => return false,
        };
        let Ok(Value::Object(mut wire)) = serde_json::to_value(&request.request) else { return false };
        let params = wire.remove("params").unwrap_or_else(|| Value::Object(Default::default()));
        let key = format!("{}:{}", self.upstream, request.id);
        let Some(answer) = calls.ask_now(key, method, params) else { return false };
        let (id, answered) = (request.id.clone(), self.answered.clone());
        tokio::spawn(async move {
            let answer = answer.await.unwrap_or_else(|_| {
                Err(mcpgate_core::ClientRequestError::Failed("the call has ended".into()))
            });
            let _ = answered.send(reply(id, answer.map_err(refusal)));
        });
        true
    }
}

/// The JSON-RPC answer to the upstream's request `id`.
fn reply(id: RequestId, answer: Result<Value, ErrorData>) -> ClientJsonRpcMessage {
    match answer {
        Ok(result) => {
            ClientJsonRpcMessage::response(ClientResult::CustomResult(CustomResult::new(result)), id)
        }
        Err(error) => ClientJsonRpcMessage::error(error, Some(id)),
    }
}
