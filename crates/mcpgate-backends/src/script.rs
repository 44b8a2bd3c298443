//! `kind: script` — tools whose handler is JavaScript, run by the gateway's [`ScriptRunner`] (code mode's
//! sandbox, with tool calls back through the dispatch as the caller). This backend only holds each tool's code:
//! read from its file when the backend starts (so a reload picks up an edited file), or inline.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use async_trait::async_trait;
use mcpgate_config::{Problem, ScriptBackend};
use mcpgate_core::{Backend, BackendError, CallContext, ScriptRunner, ToolCall, ToolDef, ToolOutcome};

use crate::declared::tool_def;

/// The tools of one `kind: script` backend.
pub struct ScriptTools {
    name: String,
    code: BTreeMap<String, Arc<str>>,
    defs: Vec<ToolDef>,
    runner: Arc<dyn ScriptRunner>,
}

impl ScriptTools {
    /// The backend `config` describes, its handlers run by `runner`; fails when a handler file cannot be read.
    pub fn new(name: &str, config: &ScriptBackend, runner: Arc<dyn ScriptRunner>) -> Result<Self, String> {
        let mut code = BTreeMap::new();
        for (tool, declared) in &config.tools {
            let source = match (&declared.call.file, &declared.call.code) {
                (Some(file), _) => read(file).map_err(|e| format!("tool {tool}: {e}"))?,
                (None, Some(inline)) => inline.clone(),
                (None, None) => return Err(format!("tool {tool}: needs a file or code")),
            };
            code.insert(tool.clone(), Arc::from(source));
        }
        let defs = config.tools.iter().map(|(tool, declared)| tool_def(tool, declared)).collect();
        Ok(Self { name: name.to_owned(), code, defs, runner })
    }
}

fn read(file: &Path) -> Result<String, String> {
    std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}

/// What the config schema cannot see: handler files that are missing or unreadable.
pub fn check(path: &str, config: &ScriptBackend) -> Vec<Problem> {
    let unreadable = config.tools.iter().filter_map(|(tool, declared)| {
        let file = declared.call.file.as_ref()?;
        read(file).err().map(|e| Problem::new(format!("{path}.tools.{tool}.call.file"), e))
    });
    unreadable.collect()
}

#[async_trait]
impl Backend for ScriptTools {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
        Ok(self.defs.clone())
    }

    fn may_contact_client(&self, _tool: &str) -> bool {
        false
    }

    async fn call_tool(&self, cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
        let Some(code) = self.code.get(&call.name) else {
            return Err(BackendError::NotFound { kind: "tool", name: call.name });
        };
        self.runner.run(cx, &call.name, code, call.arguments).await
    }
}
