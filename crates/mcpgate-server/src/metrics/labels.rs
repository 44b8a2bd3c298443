//! Label values from closed lists: a client can never mint one.

use std::{cell::Cell, sync::Arc};

use prometheus_client::encoding::EncodeLabelSet;
use rmcp::model::{ClientJsonRpcMessage, ClientNotification, JsonRpcMessage};

/// A closed set of label values: an enum, every value in order, and its label text.
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [Self; [$(stringify!($variant)),+].len()] = [$(Self::$variant),+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }
    };
}

label_values! {
    /// `mcp_tokens_used{direction}`.
    TokenDirection {
        /// Tokens the model sent: a call's arguments.
        Input = "input",
        /// Tokens going back to the model: a call's result.
        Output = "output",
    }
}

label_values! {
    /// `mcp_sandbox_timeouts_total{backend}`: the code-mode sandbox backends.
    SandboxBackend {
        /// QuickJS, embedded.
        Quickjs = "quickjs",
        /// A process under bubblewrap or namespaces.
        Process = "process",
        /// gVisor (`runsc`).
        Gvisor = "gvisor",
        /// A docker or podman container.
        Docker = "docker",
    }
}

label_values! {
    /// `mcp_rate_limited_total{scope}`: which limit refused a request.
    RateLimitScope {
        /// The gateway-wide limit.
        Global = "global",
        /// A per-tool limit.
        Tool = "tool",
        /// A per-key limit.
        Key = "key",
        /// A per-tier limit.
        Tier = "tier",
        /// A per-client-address limit.
        Ip = "ip",
        /// A per-resource limit.
        Resource = "resource",
        /// A per-prompt limit.
        Prompt = "prompt",
    }
}

/// The `method` label: the JSON-RPC method of an `/mcp` request when it is one the gateway serves, else what the
/// request was. Closed, so a client cannot mint label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum McpMethod {
    Initialize,
    Ping,
    Discover,
    ToolsList,
    ToolsCall,
    ResourcesList,
    ResourceTemplatesList,
    ResourcesRead,
    ResourcesSubscribe,
    ResourcesUnsubscribe,
    SubscriptionsListen,
    PromptsList,
    PromptsGet,
    Complete,
    SetLevel,
    Initialized,
    Cancelled,
    Progress,
    RootsListChanged,
    /// Any other JSON-RPC method.
    Other,
    /// A client's answer to a request of the server (legacy sessions: sampling, elicitation, roots).
    Response,
    /// `GET /mcp`: a legacy session's listening stream.
    HttpGet,
    /// `DELETE /mcp`: a legacy session closed.
    HttpDelete,
    /// A request refused before anything read its method (bad JSON, too large, wrong media type, …).
    Unknown,
}

impl McpMethod {
    /// Every value, in declaration order.
    pub(super) const ALL: [Self; 24] = [
        Self::Initialize,
        Self::Ping,
        Self::Discover,
        Self::ToolsList,
        Self::ToolsCall,
        Self::ResourcesList,
        Self::ResourceTemplatesList,
        Self::ResourcesRead,
        Self::ResourcesSubscribe,
        Self::ResourcesUnsubscribe,
        Self::SubscriptionsListen,
        Self::PromptsList,
        Self::PromptsGet,
        Self::Complete,
        Self::SetLevel,
        Self::Initialized,
        Self::Cancelled,
        Self::Progress,
        Self::RootsListChanged,
        Self::Other,
        Self::Response,
        Self::HttpGet,
        Self::HttpDelete,
        Self::Unknown,
    ];
    pub(super) const COUNT: usize = Self::ALL.len();

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Initialize => "initialize",
            Self::Ping => "ping",
            Self::Discover => "server/discover",
            Self::ToolsList => "tools/list",
            Self::ToolsCall => "tools/call",
            Self::ResourcesList => "resources/list",
            Self::ResourceTemplatesList => "resources/templates/list",
            Self::ResourcesRead => "resources/read",
            Self::ResourcesSubscribe => "resources/subscribe",
            Self::ResourcesUnsubscribe => "resources/unsubscribe",
            Self::SubscriptionsListen => "subscriptions/listen",
            Self::PromptsList => "prompts/list",
            Self::PromptsGet => "prompts/get",
            Self::Complete => "completion/complete",
            Self::SetLevel => "logging/setLevel",
            Self::Initialized => "notifications/initialized",
            Self::Cancelled => "notifications/cancelled",
            Self::Progress => "notifications/progress",
            Self::RootsListChanged => "notifications/roots/list_changed",
            Self::Other => "other",
            Self::Response => "response",
            Self::HttpGet => "GET",
            Self::HttpDelete => "DELETE",
            Self::Unknown => "unknown",
        }
    }

    /// Whether the value names a JSON-RPC method (not a stand-in such as `other` or `GET`).
    pub(crate) fn is_jsonrpc_method(self) -> bool {
        !matches!(self, Self::Other | Self::Response | Self::HttpGet | Self::HttpDelete | Self::Unknown)
    }

    /// The label of a JSON-RPC method name: itself when known, else `other`.
    pub(crate) fn from_name(name: &str) -> Self {
        match name {
            "initialize" => Self::Initialize,
            "ping" => Self::Ping,
            "server/discover" => Self::Discover,
            "tools/list" => Self::ToolsList,
            "tools/call" => Self::ToolsCall,
            "resources/list" => Self::ResourcesList,
            "resources/templates/list" => Self::ResourceTemplatesList,
            "resources/read" => Self::ResourcesRead,
            "resources/subscribe" => Self::ResourcesSubscribe,
            "resources/unsubscribe" => Self::ResourcesUnsubscribe,
            "subscriptions/listen" => Self::SubscriptionsListen,
            "prompts/list" => Self::PromptsList,
            "prompts/get" => Self::PromptsGet,
            "completion/complete" => Self::Complete,
            "logging/setLevel" => Self::SetLevel,
            "notifications/initialized" => Self::Initialized,
            "notifications/cancelled" => Self::Cancelled,
            "notifications/progress" => Self::Progress,
            "notifications/roots/list_changed" => Self::RootsListChanged,
            _ => Self::Other,
        }
    }

    /// The label of a message rmcp has parsed.
    pub(crate) fn of_message(message: &ClientJsonRpcMessage) -> Self {
        match message {
            JsonRpcMessage::Request(request) => Self::from_name(request.request.method()),
            JsonRpcMessage::Notification(notification) => match &notification.notification {
                ClientNotification::InitializedNotification(_) => Self::Initialized,
                ClientNotification::CancelledNotification(_) => Self::Cancelled,
                ClientNotification::ProgressNotification(_) => Self::Progress,
                ClientNotification::RootsListChangedNotification(_) => Self::RootsListChanged,
                _ => Self::Other,
            },
            JsonRpcMessage::Response(_) | JsonRpcMessage::Error(_) => Self::Response,
        }
    }
}

/// The label sets. Values are `&'static str` from the lists here, or a catalogue tool name shared as `Arc<str>`:
/// building a label set never allocates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RequestLabels {
    pub(super) method: &'static str,
    pub(super) status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RequestDurationLabels {
    pub(super) method: &'static str,
    pub(super) route: &'static str,
    pub(super) status_code: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ToolStatusLabels {
    pub(super) tool: Arc<str>,
    pub(super) status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ToolLabels {
    pub(super) tool: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct OperationLabels {
    pub(super) operation: &'static str,
    pub(super) status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct OperationKindLabels {
    pub(super) operation: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct KindLabels {
    pub(super) kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct DirectionLabels {
    pub(super) direction: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct BackendLabels {
    pub(super) backend: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct SandboxOutcomeLabels {
    pub(super) backend: &'static str,
    pub(super) outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ScopeLabels {
    pub(super) scope: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ReasonLabels {
    pub(super) reason: &'static str,
}

tokio::task_local! {
    /// The method of the `/mcp` request this task is answering, once code below [`track`] has parsed it.
    pub(super) static HEARD: Cell<Option<McpMethod>>;
}

/// Tell [`track`] the method of the `/mcp` request being answered. Does nothing outside one (stdio).
pub(crate) fn heard(method: McpMethod) {
    let _ = HEARD.try_with(|heard| heard.set(Some(method)));
}

/// The method [`heard`] so far for the `/mcp` request this task is answering (the telemetry span reads it).
pub(crate) fn heard_so_far() -> Option<McpMethod> {
    HEARD.try_with(Cell::get).ok().flatten()
}
