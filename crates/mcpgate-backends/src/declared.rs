//! What the three config-declared kinds (`http`, `command`, `sql`) share: turning a [`ToolConfig`] into the
//! [`ToolDef`] clients see.

use std::sync::Arc;

use mcpgate_config::ToolConfig;
use mcpgate_core::ToolDef;
use serde_json::Value;

/// The tool as listed to clients.
pub fn tool_def<C>(name: &str, tool: &ToolConfig<C>) -> ToolDef {
    let object = |schema: &Value| schema.as_object().cloned().map(Arc::new);
    ToolDef {
        name: name.to_owned(),
        title: tool.title.clone(),
        description: tool.description.clone(),
        input_schema: object(&tool.input_schema).unwrap_or_default(),
        output_schema: tool.output_schema.as_ref().and_then(object),
        annotations: tool.annotations.clone(),
        icons: None,
        meta: None,
    }
}
