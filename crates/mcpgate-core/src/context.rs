//! The context a call runs in: who makes it, its deadline, and the way back to the client.

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{BackendError, Principal};

/// Log levels of `notifications/message`, in the protocol's order (RFC 5424 severities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Notice.
    Notice,
    /// Warning.
    Warning,
    /// Error.
    Error,
    /// Critical.
    Critical,
    /// Alert.
    Alert,
    /// Emergency.
    Emergency,
}

impl LogLevel {
    /// The protocol's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Notice => "notice",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
            Self::Alert => "alert",
            Self::Emergency => "emergency",
        }
    }
}

/// Why a request to the client did not produce an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientRequestError {
    /// The answer will come with the client's retry (stateless multi round-trip); the backend should stop and
    /// let the gateway answer `input_required`.
    #[error("the client must answer before the call can continue")]
    Deferred,
    /// The client does not support this request (capability not declared).
    #[error("the client does not support {0}")]
    Unsupported(&'static str),
    /// The client answered with an error, or the channel failed.
    #[error("{0}")]
    Failed(String),
}

impl From<ClientRequestError> for BackendError {
    fn from(error: ClientRequestError) -> Self {
        match error {
            ClientRequestError::Deferred => BackendError::InputRequired,
            other => BackendError::ClientRequest(other.to_string()),
        }
    }
}

/// The way back to the client that caused a call: notifications on the call's stream and server-to-client
/// requests (sampling, elicitation, roots). The protocol layer implements it for each era.
#[async_trait]
pub trait ClientPeer: Send + Sync {
    /// Send `notifications/progress` for the call's progress token.
    async fn progress(&self, token: &Value, progress: f64, total: Option<f64>, message: Option<String>);

    /// Send `notifications/message`.
    async fn log(&self, level: LogLevel, logger: Option<&str>, data: Value);

    /// Ask the client something (`sampling/createMessage`, `elicitation/create`, `roots/list`) and wait for the
    /// answer. `key` names the request so a stateless client's retry can carry the answer back under it.
    async fn request(&self, key: &str, method: &str, params: Value) -> Result<Value, ClientRequestError>;

    /// The capabilities the client declared, as JSON (`{}` when unknown).
    fn client_capabilities(&self) -> Value;

    /// The session this way back belongs to, when the client has one that outlives a request (a legacy
    /// session, stdio): resource subscriptions are kept per session. `None`: the client cannot subscribe.
    fn session(&self) -> Option<&str> {
        None
    }

    /// Tell the client a resource it subscribed to changed (`notifications/resources/updated`).
    async fn resource_updated(&self, _uri: &str) {}

    /// Whether the way back has closed for good (the session ended), so nothing more can reach it.
    fn is_closed(&self) -> bool {
        false
    }
}

/// The surface a call came in through, as the audit line names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Surface {
    /// MCP: Streamable HTTP (either era) or stdio.
    #[default]
    Mcp,
    /// The REST facade (`/api`).
    Rest,
    /// A code-mode program's inner call.
    Code,
    /// The admin page's tool playground.
    Admin,
    /// An LLM's tool call in the chat loop (`POST /chat`, `mcpgate chat`).
    Chat,
}

impl Surface {
    /// The audit line's `surface` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mcp => "mcp",
            Self::Rest => "rest",
            Self::Code => "code",
            Self::Admin => "admin",
            Self::Chat => "chat",
        }
    }
}

/// Everything a call carries besides its arguments.
#[derive(Clone)]
pub struct CallContext {
    /// Correlation id of the HTTP request (or stdio message) that caused the call.
    pub request_id: Arc<str>,
    /// Who is calling.
    pub principal: Arc<Principal>,
    /// Cancelled when the client cancels or the gateway drains.
    pub cancel: CancellationToken,
    /// Time the call may take, enforced by the pipeline.
    pub timeout: Option<Duration>,
    /// The client's progress token for this call, if it asked for progress.
    pub progress_token: Option<Value>,
    /// The way back to the client, when the transport has one.
    pub peer: Option<Arc<dyn ClientPeer>>,
    /// Where the call came in.
    pub surface: Surface,
}

impl fmt::Debug for CallContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallContext")
            .field("request_id", &self.request_id)
            .field("principal", &self.principal.name)
            .field("timeout", &self.timeout)
            .field("progress_token", &self.progress_token)
            .finish_non_exhaustive()
    }
}

impl CallContext {
    /// A context with only a correlation id: anonymous, its own cancellation token, the pipeline's default
    /// deadline, no progress token and no way back to the client. Callers set what they know.
    pub fn detached(request_id: impl Into<Arc<str>>) -> Self {
        Self {
            request_id: request_id.into(),
            principal: Principal::shared_anonymous(),
            cancel: CancellationToken::new(),
            timeout: None,
            progress_token: None,
            peer: None,
            surface: Surface::Mcp,
        }
    }

    /// Report progress, if the client asked for it. Silently nothing otherwise.
    pub async fn progress(&self, progress: f64, total: Option<f64>, message: Option<String>) {
        if let (Some(peer), Some(token)) = (&self.peer, &self.progress_token) {
            peer.progress(token, progress, total, message).await;
        }
    }

    /// Send a log message to the client, if there is a way back.
    pub async fn log(&self, level: LogLevel, logger: Option<&str>, data: Value) {
        if let Some(peer) = &self.peer {
            peer.log(level, logger, data).await;
        }
    }

    /// Ask the client something and wait for its answer.
    pub async fn request_client(
        &self,
        key: &str,
        method: &str,
        params: Value,
    ) -> Result<Value, ClientRequestError> {
        match &self.peer {
            Some(peer) => peer.request(key, method, params).await,
            None => Err(ClientRequestError::Unsupported("server-to-client requests on this transport")),
        }
    }
}
