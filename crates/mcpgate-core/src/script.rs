//! What runs script tools' handlers: code mode's sandbox, with their tool calls back through the dispatch. The
//! gateway provides it; a script backend only holds the code.

use async_trait::async_trait;

use crate::{BackendError, CallContext, JsonObject, ToolOutcome};

/// Runs a script tool's handler for one call.
#[async_trait]
pub trait ScriptRunner: Send + Sync {
    /// Run `code` (the handler: the body of an async function of `(tools, console, input)`) with `input` for the
    /// caller `cx` describes: its tool calls reach what that caller may call. The returned value is the result
    /// (a string as text, anything else as `structuredContent` with its JSON as text); a thrown error, a limit
    /// reached, is a tool error; a sandbox that cannot run is `Err`.
    async fn run(
        &self,
        cx: &CallContext,
        tool: &str,
        code: &str,
        input: JsonObject,
    ) -> Result<ToolOutcome, BackendError>;
}
