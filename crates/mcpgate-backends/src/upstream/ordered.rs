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

use std::{borrow::Cow, sync::Arc};

use rmcp::{
    RoleClient,
    model::{ClientJsonRpcMessage, JsonRpcMessage, JsonRpcNotification, ServerJsonRpcMessage},
    transport::Transport,
};

use super::forward::Calls;

/// A transport whose reader delivers the log messages and progress of calls in flight, in order.
pub(super) struct Ordered<T> {
    inner: T,
    calls: Arc<Calls>,
}

impl<T> Ordered<T> {
    /// Wrap `inner`, delivering to the calls of `calls`.
    pub(super) fn new(inner: T, calls: Arc<Calls>) -> Self {
        Self { inner, calls }
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
        loop {
            let message = self.inner.receive().await?;
            let delivered = match &message {
                JsonRpcMessage::Notification(JsonRpcNotification { notification, .. }) => {
                    self.calls.deliver_now(notification)
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
