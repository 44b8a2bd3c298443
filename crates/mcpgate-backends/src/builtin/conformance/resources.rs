//! The conformance resources: static text and binary, a watched resource, and one template.

use mcpgate_core::{BackendError, JsonObject, ResourceDef, ResourceTemplateDef};
use serde_json::{Value, json};

use super::{IMAGE_PNG_BASE64, into_object};

/// What a static resource holds.
enum Body {
    /// UTF-8 text.
    Text(&'static str),
    /// Base64 bytes.
    Blob(&'static str),
}

/// One static resource: URI, name, title, description, MIME type, body.
struct Static {
    uri: &'static str,
    name: &'static str,
    title: &'static str,
    description: &'static str,
    mime_type: &'static str,
    body: Body,
}

/// The static resources, in listing order.
const STATIC: [Static; 4] = [
    Static {
        uri: "test://static-text",
        name: "static-text",
        title: "Static Text Resource",
        description: "A static text resource for testing",
        mime_type: "text/plain",
        body: Body::Text("This is the content of the static text resource."),
    },
    Static {
        uri: "test://static-binary",
        name: "static-binary",
        title: "Static Binary Resource",
        description: "A static binary resource (image) for testing",
        mime_type: "image/png",
        body: Body::Blob(IMAGE_PNG_BASE64),
    },
    Static {
        uri: "test://watched-resource",
        name: "watched-resource",
        title: "Watched Resource",
        description: "A resource clients may subscribe to",
        mime_type: "text/plain",
        body: Body::Text("Watched resource content"),
    },
    Static {
        uri: "test://stateless-static-text",
        name: "Stateless Static Text",
        title: "Stateless Static Text",
        description: "A static text resource served on the draft path",
        mime_type: "text/plain",
        body: Body::Text("Static text content from the stateless draft path."),
    },
];

/// The URI template of the one resource template.
const TEMPLATE: &str = "test://template/{id}/data";
/// What a template URI starts with, before the id.
const TEMPLATE_PREFIX: &str = "test://template/";
/// What a template URI ends with, after the id.
const TEMPLATE_SUFFIX: &str = "/data";

/// The listed resources.
pub(super) fn list() -> Vec<ResourceDef> {
    STATIC
        .iter()
        .map(|resource| ResourceDef {
            uri: resource.uri.to_owned(),
            name: resource.name.to_owned(),
            title: Some(resource.title.to_owned()),
            description: Some(resource.description.to_owned()),
            mime_type: Some(resource.mime_type.to_owned()),
            size: None,
        })
        .collect()
}

/// The listed resource templates.
pub(super) fn templates() -> Vec<ResourceTemplateDef> {
    vec![ResourceTemplateDef {
        uri_template: TEMPLATE.to_owned(),
        name: "template".to_owned(),
        title: Some("Resource Template".to_owned()),
        description: Some("A resource template with parameter substitution".to_owned()),
        mime_type: Some("application/json".to_owned()),
    }]
}

/// Whether `uri` is a listed resource or matches the template.
pub(super) fn owns(uri: &str) -> bool {
    STATIC.iter().any(|resource| resource.uri == uri) || template_id(uri).is_some()
}

/// Read one resource: `{"contents": [...]}`.
pub(super) fn read(uri: &str) -> Result<JsonObject, BackendError> {
    let content = if let Some(resource) = STATIC.iter().find(|resource| resource.uri == uri) {
        match resource.body {
            Body::Text(text) => json!({ "uri": uri, "mimeType": resource.mime_type, "text": text }),
            Body::Blob(blob) => json!({ "uri": uri, "mimeType": resource.mime_type, "blob": blob }),
        }
    } else if let Some(id) = template_id(uri) {
        json!({ "uri": uri, "mimeType": "application/json", "text": template_text(id) })
    } else {
        return Err(BackendError::NotFound { kind: "resource", name: uri.to_owned() });
    };
    Ok(into_object(json!({ "contents": [content] })))
}

/// The id of a URI matching `test://template/{id}/data` (one non-empty path segment).
fn template_id(uri: &str) -> Option<&str> {
    let id = uri.strip_prefix(TEMPLATE_PREFIX)?.strip_suffix(TEMPLATE_SUFFIX)?;
    (!id.is_empty() && !id.contains(['/', '?', '#'])).then_some(id)
}

/// The template's JSON text, keys in the reference order (`id`, `templateTest`, `data`).
fn template_text(id: &str) -> String {
    let data = Value::String(format!("Data for ID: {id}"));
    format!(r#"{{"id":{},"templateTest":true,"data":{data}}}"#, Value::String(id.to_owned()))
}
