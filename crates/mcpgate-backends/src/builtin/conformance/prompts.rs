//! The conformance prompts and argument completions.

use mcpgate_core::{BackendError, CallContext, CompletionValues, JsonObject, PromptArgument, PromptDef};
use serde_json::{Value, json};

use super::{ELICIT, IMAGE_PNG_BASE64, elicitation_params, elicited_text, into_object};

/// `(argument, description)` pairs of a prompt; all arguments are required.
type Arguments = &'static [(&'static str, &'static str)];

/// Name, title, description and arguments of every prompt.
const PROMPTS: [(&str, &str, &str, Arguments); 5] = [
    ("test_simple_prompt", "Simple Test Prompt", "A simple prompt without arguments", &[]),
    (
        "test_prompt_with_arguments",
        "Prompt With Arguments",
        "A prompt with required arguments",
        &[("arg1", "First test argument"), ("arg2", "Second test argument")],
    ),
    (
        "test_prompt_with_embedded_resource",
        "Prompt With Embedded Resource",
        "A prompt that includes an embedded resource",
        &[("resourceUri", "URI of the resource to embed")],
    ),
    ("test_prompt_with_image", "Prompt With Image", "A prompt that includes image content", &[]),
    (
        "test_input_required_result_prompt",
        "Prompt Requiring Input",
        "MRTR: prompt that requires elicitation input",
        &[],
    ),
];

/// The listed prompts.
pub(super) fn list() -> Vec<PromptDef> {
    PROMPTS
        .iter()
        .map(|(name, title, description, arguments)| PromptDef {
            name: (*name).to_owned(),
            title: Some((*title).to_owned()),
            description: Some((*description).to_owned()),
            arguments: arguments
                .iter()
                .map(|(name, description)| PromptArgument {
                    name: (*name).to_owned(),
                    description: Some((*description).to_owned()),
                    required: true,
                })
                .collect(),
        })
        .collect()
}

/// Render one prompt: `{"description": ..., "messages": [...]}`.
pub(super) async fn get(
    cx: &CallContext,
    name: &str,
    arguments: &JsonObject,
) -> Result<JsonObject, BackendError> {
    let Some((_, _, description, _)) = PROMPTS.iter().find(|(known, ..)| *known == name) else {
        return Err(BackendError::NotFound { kind: "prompt", name: name.to_owned() });
    };
    let messages = match name {
        "test_simple_prompt" => vec![user_text("This is a simple prompt for testing.")],
        "test_prompt_with_arguments" => {
            let arg1 = required(arguments, "arg1")?;
            let arg2 = required(arguments, "arg2")?;
            vec![user_text(&format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))]
        }
        "test_prompt_with_embedded_resource" => {
            let uri = required(arguments, "resourceUri")?;
            let resource = json!({ "uri": uri, "mimeType": "text/plain", "text": "Embedded resource content for testing." });
            vec![
                json!({ "role": "user", "content": { "type": "resource", "resource": resource } }),
                user_text("Please process the embedded resource above."),
            ]
        }
        "test_prompt_with_image" => vec![
            json!({
                "role": "user",
                "content": { "type": "image", "data": IMAGE_PNG_BASE64, "mimeType": "image/png" }
            }),
            user_text("Please analyze the image above."),
        ],
        "test_input_required_result_prompt" => {
            let params = elicitation_params("What context should the prompt use?", "context", "string");
            let answer = cx.request_client("user_context", ELICIT, params).await?;
            let context = elicited_text("user_context", &answer, "context")?;
            vec![user_text(&format!("Prompt with context: {context}"))]
        }
        _ => return Err(BackendError::NotFound { kind: "prompt", name: name.to_owned() }),
    };
    Ok(into_object(json!({ "description": description, "messages": messages })))
}

/// Suggestions for the arguments of `test_prompt_with_arguments`, filtered by the typed prefix.
pub(super) fn complete(reference: &Value, argument: &str, value: &str) -> CompletionValues {
    let field = |key: &str| reference.get(key).and_then(Value::as_str);
    let candidates: &[&str] = match (field("type"), field("name"), argument) {
        (Some("ref/prompt"), Some("test_prompt_with_arguments"), "arg1") => &["test", "testing", "tested"],
        (Some("ref/prompt"), Some("test_prompt_with_arguments"), "arg2") => &["value", "value1", "value2"],
        _ => &[],
    };
    let values: Vec<String> =
        candidates.iter().filter(|candidate| candidate.starts_with(value)).map(|c| (*c).to_owned()).collect();
    CompletionValues { total: u32::try_from(values.len()).ok(), values, has_more: false }
}

/// A user message with one text item.
fn user_text(text: &str) -> Value {
    json!({ "role": "user", "content": { "type": "text", "text": text } })
}

/// A required string argument.
fn required<'a>(arguments: &'a JsonObject, name: &str) -> Result<&'a str, BackendError> {
    match arguments.get(name) {
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(BackendError::InvalidArguments(format!("prompt argument {name:?} must be a string"))),
        None => Err(BackendError::InvalidArguments(format!("missing required prompt argument {name:?}"))),
    }
}
