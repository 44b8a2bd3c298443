//! The way back to the client of a call whose result may be kept, watched: a result built on the client's answer
//! to an elicitation, a sampling request or a roots request depends on input that is not part of the cache key,
//! so it must not be kept.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use async_trait::async_trait;
use mcpgate_core::{CallContext, ClientPeer, ClientRequestError, LogLevel};
use serde_json::Value;

/// A [`ClientPeer`] that notes whether the call asked the client anything.
pub(crate) struct WatchedPeer {
    inner: Arc<dyn ClientPeer>,
    asked: AtomicBool,
}

impl WatchedPeer {
    /// `cx` with its way back to the client watched, and the watcher; `None` when the call has no way back
    /// (then it cannot ask the client anything).
    pub(crate) fn watch(cx: &CallContext) -> Option<(CallContext, Arc<Self>)> {
        let inner = cx.peer.clone()?;
        let watched = Arc::new(Self { inner, asked: AtomicBool::new(false) });
        let mut cx = cx.clone();
        cx.peer = Some(watched.clone());
        Some((cx, watched))
    }

    /// Whether the call asked the client anything.
    pub(crate) fn asked(&self) -> bool {
        self.asked.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl ClientPeer for WatchedPeer {
    async fn progress(&self, token: &Value, progress: f64, total: Option<f64>, message: Option<String>) {
        self.inner.progress(token, progress, total, message).await;
    }

    async fn log(&self, level: LogLevel, logger: Option<&str>, data: Value) {
        self.inner.log(level, logger, data).await;
    }

    async fn request(&self, key: &str, method: &str, params: Value) -> Result<Value, ClientRequestError> {
        self.asked.store(true, Ordering::Relaxed);
        self.inner.request(key, method, params).await
    }

    fn client_capabilities(&self) -> Value {
        self.inner.client_capabilities()
    }
}
