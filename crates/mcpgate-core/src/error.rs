//! The error a backend returns when it could not produce a result.

use std::time::Duration;

/// Who is to blame for a failure: decides the error a client sees and whether a retry may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The request was wrong; retrying the same request cannot help.
    Client,
    /// The backend (an upstream server, a database, a program) failed; a retry may help.
    Upstream,
    /// The gateway itself failed.
    Gateway,
}

/// "Could not get a result": what failed, who is to blame, whether a retry may help.
///
/// A tool that ran and reported a failure is not a `BackendError` but a
/// [`ToolOutcome`](crate::ToolOutcome) with `is_error` set.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The backend has no tool, prompt or resource of that name.
    #[error("unknown {kind}: {name}")]
    NotFound {
        /// What was looked up (`tool`, `prompt`, `resource`).
        kind: &'static str,
        /// The name or URI asked for.
        name: String,
    },
    /// The arguments were rejected before the backend ran.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The backend cannot be reached or is not running.
    #[error("backend {backend} unavailable: {reason}")]
    Unavailable {
        /// Backend name.
        backend: String,
        /// Why.
        reason: String,
        /// The outage this failure belongs to, when the backend knows it: every call that one lost connection
        /// fails — those in flight when it dropped and those made before it is back — carries the same number,
        /// so a circuit breaker counts the outage once rather than once per call. `None`: the failure stands
        /// alone.
        outage: Option<u64>,
    },
    /// The call did not finish before its deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The client cancelled the call, or the gateway is shutting down.
    #[error("cancelled")]
    Cancelled,
    /// The backend needs answers from the client (sampling, elicitation, roots) before it can finish.
    ///
    /// Sessions of the legacy protocol get these answers in-line; stateless 2026-07-28 requests get an
    /// `input_required` result and retry with the answers.
    #[error("client input required")]
    InputRequired,
    /// The call needs a capability the client did not declare (`-32021` on the 2026-07-28 wire).
    #[error("the client lacks a required capability: {required}")]
    MissingClientCapability {
        /// The capabilities needed, as a `ClientCapabilities` object (`{"sampling": {}}`).
        required: serde_json::Value,
    },
    /// The client refused or failed a request the backend made to it.
    #[error("client request failed: {0}")]
    ClientRequest(String),
    /// A rate limit refused the call before it ran; the same call may pass after `retry_after`.
    #[error("rate limited by the {scope} limit; retry in {} ms", retry_after.as_nanos().div_ceil(1_000_000))]
    RateLimited {
        /// Which limit refused it (`tool`, `key`, …).
        scope: &'static str,
        /// How long until that limit has room again.
        retry_after: Duration,
    },
    /// The backend failed in a way it could describe.
    #[error("{backend}: {message}")]
    Failed {
        /// Backend name.
        backend: String,
        /// What happened.
        message: String,
        /// Who is to blame.
        blame: Blame,
    },
}

impl BackendError {
    /// [`BackendError::Unavailable`] standing alone (no outage).
    pub fn unavailable(backend: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Unavailable { backend: backend.into(), reason: reason.into(), outage: None }
    }

    /// The outage an [`Unavailable`](Self::Unavailable) failure belongs to, if the backend said.
    pub fn outage(&self) -> Option<u64> {
        match self {
            Self::Unavailable { outage, .. } => *outage,
            _ => None,
        }
    }

    /// Who is to blame for this failure.
    pub fn blame(&self) -> Blame {
        match self {
            Self::NotFound { .. } | Self::InvalidArguments(_) | Self::Cancelled => Blame::Client,
            Self::InputRequired | Self::ClientRequest(_) | Self::MissingClientCapability { .. } => {
                Blame::Client
            }
            Self::RateLimited { .. } => Blame::Client,
            Self::Unavailable { .. } | Self::Timeout(_) => Blame::Upstream,
            Self::Failed { blame, .. } => *blame,
        }
    }

    /// Whether repeating the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Timeout(_))
            || matches!(self, Self::Failed { blame: Blame::Upstream, .. })
    }

    /// A short stable name for logs, metrics and audit (`not_found`, `timeout`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::InvalidArguments(_) => "invalid_arguments",
            Self::Unavailable { .. } => "unavailable",
            Self::Timeout(_) => "timeout",
            Self::Cancelled => "cancelled",
            Self::InputRequired => "input_required",
            Self::ClientRequest(_) => "client_request",
            Self::MissingClientCapability { .. } => "missing_capability",
            Self::RateLimited { .. } => "rate_limited",
            Self::Failed { .. } => "failed",
        }
    }
}
