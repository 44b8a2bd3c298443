//! What a caller can ask the gateway to do, and the one door it asks through.
//!
//! Every surface — the HTTP fast path, the protocol layer of both eras, stdio, and later code mode's inner calls,
//! the REST facade and chat — turns its request into an [`Operation`] and hands it to a [`Dispatch`] with the
//! caller's [`CallContext`]. Authorization, limits, deadlines, audit and metrics happen behind that door, so a
//! new surface gets them by calling it and copies none of them.

use async_trait::async_trait;
use serde_json::Value;

use crate::{
    BackendError, CallContext, CompletionValues, JsonObject, PromptDef, ResourceDef, ResourceTemplateDef,
    ToolDef, ToolOutcome,
};

/// One request to the gateway, named the way clients name things (public names, not a backend's own).
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// `tools/call`: run the tool published as `name`.
    CallTool {
        /// The public tool name.
        name: String,
        /// The arguments object (empty when the client sent none).
        arguments: JsonObject,
    },
    /// `resources/read`.
    ReadResource {
        /// The resource's URI.
        uri: String,
    },
    /// `prompts/get`: render the prompt published as `name`.
    GetPrompt {
        /// The prompt's name.
        name: String,
        /// Its arguments.
        arguments: JsonObject,
    },
    /// `completion/complete`: suggest values for an argument of a prompt or resource template.
    Complete {
        /// The protocol's `ref` object (`{"type": "ref/prompt", "name": …}` or `{"type": "ref/resource", "uri": …}`).
        reference: Value,
        /// The argument's name.
        argument: String,
        /// What the user typed so far.
        value: String,
        /// Arguments already resolved.
        context: JsonObject,
    },
    /// `resources/subscribe`: tell the caller's session when `uri` changes.
    Subscribe {
        /// The resource's URI.
        uri: String,
    },
    /// `resources/unsubscribe`.
    Unsubscribe {
        /// The resource's URI.
        uri: String,
    },
    /// `tools/list`, `resources/list`, `resources/templates/list` or `prompts/list`: what the caller may see.
    List(ListKind),
}

/// Which catalogue list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// Tools.
    Tools,
    /// Resources.
    Resources,
    /// Resource templates.
    ResourceTemplates,
    /// Prompts.
    Prompts,
}

/// The kind of an [`Operation`], without its data: what logs, the audit log and metrics label it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationKind {
    /// `tools/call`.
    CallTool,
    /// `resources/read`.
    ReadResource,
    /// `prompts/get`.
    GetPrompt,
    /// `completion/complete`.
    Complete,
    /// `resources/subscribe`.
    Subscribe,
    /// `resources/unsubscribe`.
    Unsubscribe,
    /// One of the lists.
    List(ListKind),
}

impl OperationKind {
    /// The protocol's method name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallTool => "tools/call",
            Self::ReadResource => "resources/read",
            Self::GetPrompt => "prompts/get",
            Self::Complete => "completion/complete",
            Self::Subscribe => "resources/subscribe",
            Self::Unsubscribe => "resources/unsubscribe",
            Self::List(ListKind::Tools) => "tools/list",
            Self::List(ListKind::Resources) => "resources/list",
            Self::List(ListKind::ResourceTemplates) => "resources/templates/list",
            Self::List(ListKind::Prompts) => "prompts/list",
        }
    }
}

impl Operation {
    /// Its kind.
    pub fn kind(&self) -> OperationKind {
        match self {
            Self::CallTool { .. } => OperationKind::CallTool,
            Self::ReadResource { .. } => OperationKind::ReadResource,
            Self::GetPrompt { .. } => OperationKind::GetPrompt,
            Self::Complete { .. } => OperationKind::Complete,
            Self::Subscribe { .. } => OperationKind::Subscribe,
            Self::Unsubscribe { .. } => OperationKind::Unsubscribe,
            Self::List(list) => OperationKind::List(*list),
        }
    }

    /// What it names: the tool, the resource URI, the prompt, the completed prompt or template; empty for lists.
    pub fn target(&self) -> &str {
        match self {
            Self::CallTool { name, .. } | Self::GetPrompt { name, .. } => name,
            Self::ReadResource { uri } | Self::Subscribe { uri } | Self::Unsubscribe { uri } => uri,
            Self::Complete { reference, .. } => {
                reference.get("name").or_else(|| reference.get("uri")).and_then(Value::as_str).unwrap_or("")
            }
            Self::List(_) => "",
        }
    }
}

/// What an [`Operation`] produced, one variant per kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A tool's outcome (maybe `is_error`).
    Tool(ToolOutcome),
    /// A `resources/read` result object (`contents`).
    Resource(JsonObject),
    /// A `prompts/get` result object (`messages`, maybe `description`).
    Prompt(JsonObject),
    /// Completion values.
    Completion(CompletionValues),
    /// A subscription change was accepted.
    Done,
    /// The tools the caller may see.
    Tools(Vec<ToolDef>),
    /// The resources the caller may see.
    Resources(Vec<ResourceDef>),
    /// The resource templates the caller may see.
    ResourceTemplates(Vec<ResourceTemplateDef>),
    /// The prompts the caller may see.
    Prompts(Vec<PromptDef>),
}

/// The gateway's one door: run `op` for the caller `cx` describes, through every policy that applies.
///
/// Answers `Err(BackendError::NotFound)` for what does not exist *and* for what the caller may not use, so a
/// refusal tells nothing about what is there. `Err(BackendError::InputRequired)` means the operation asked the
/// client something it must answer first (stateless multi-round calls).
#[async_trait]
pub trait Dispatch: Send + Sync {
    /// Run one operation.
    async fn dispatch(&self, cx: CallContext, op: Operation) -> Result<Answer, BackendError>;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn kinds_name_their_protocol_methods_and_targets() {
        let complete = Operation::Complete {
            reference: json!({ "type": "ref/prompt", "name": "greet" }),
            argument: "who".into(),
            value: "a".into(),
            context: JsonObject::new(),
        };
        assert_eq!((complete.kind().as_str(), complete.target()), ("completion/complete", "greet"));
        let read = Operation::ReadResource { uri: "test://x".into() };
        assert_eq!((read.kind().as_str(), read.target()), ("resources/read", "test://x"));
        let list = Operation::List(ListKind::ResourceTemplates);
        assert_eq!((list.kind().as_str(), list.target()), ("resources/templates/list", ""));
    }
}
