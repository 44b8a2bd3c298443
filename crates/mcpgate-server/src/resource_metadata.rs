//! The OAuth 2.0 protected-resource metadata document (RFC 9728) at `/.well-known/oauth-protected-resource`,
//! and at the path-suffixed form MCP clients try first (`/.well-known/oauth-protected-resource/mcp`, or the
//! path of the configured `resource`). Served only while `security.oauth` is set — read from the configuration
//! in force, so a reload can add, change or remove it; otherwise 404.
//!
//! The document is public (it is how a client without a token learns where to get one): no key is asked for,
//! and any origin may read it.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    response::{IntoResponse, Response},
    routing::get,
};
use http::{HeaderValue, StatusCode, header};
use mcpgate_config::OAuthResourceConfig;
use serde_json::{Value, json};

use crate::gateway::Gateway;

/// The RFC 8615 well-known path of the document.
pub(crate) const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The two routes; both answer 404 while `security.oauth` is unset.
pub(crate) fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route(WELL_KNOWN, get(root))
        .route(&format!("{WELL_KNOWN}/{{*resource_path}}"), get(suffixed))
}

async fn root(State(gateway): State<Arc<Gateway>>) -> Response {
    answer(gateway.live().config.security.oauth.as_ref())
}

/// `…/mcp` (this server's endpoint) or the path of the configured resource (behind a proxy that mounts the
/// gateway elsewhere); any other suffix names another resource: 404.
async fn suffixed(State(gateway): State<Arc<Gateway>>, Path(resource_path): Path<String>) -> Response {
    let live = gateway.live();
    let oauth = live.config.security.oauth.as_ref().filter(|oauth| {
        let asked = resource_path.trim_matches('/');
        asked == "mcp"
            || oauth.metadata_url().is_ok_and(|url| url.ends_with(&format!("{WELL_KNOWN}/{asked}")))
    });
    answer(oauth)
}

fn answer(oauth: Option<&OAuthResourceConfig>) -> Response {
    let Some(oauth) = oauth else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = Json(document(oauth)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// The metadata (RFC 9728 §2): tokens are accepted in the `Authorization` header only (never in a query, as the
/// MCP spec forbids).
pub(crate) fn document(oauth: &OAuthResourceConfig) -> Value {
    let mut document = json!({
        "resource": oauth.resource,
        "authorization_servers": oauth.authorization_servers,
        "bearer_methods_supported": ["header"],
    });
    if !oauth.scopes_supported.is_empty() {
        document["scopes_supported"] = json!(oauth.scopes_supported);
    }
    if let Some(name) = &oauth.resource_name {
        document["resource_name"] = json!(name);
    }
    if let Some(url) = &oauth.resource_documentation {
        document["resource_documentation"] = json!(url);
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_holds_what_is_configured_and_no_more() {
        let mut oauth = OAuthResourceConfig {
            resource: "https://mcp.example.com/mcp".into(),
            authorization_servers: vec!["https://idp.example.com".into()],
            scopes_supported: vec![],
            resource_name: None,
            resource_documentation: None,
        };
        assert_eq!(
            document(&oauth),
            json!({
                "resource": "https://mcp.example.com/mcp",
                "authorization_servers": ["https://idp.example.com"],
                "bearer_methods_supported": ["header"],
            })
        );
        oauth.scopes_supported = vec!["tools:read".into()];
        oauth.resource_name = Some("Tools".into());
        let full = document(&oauth);
        assert_eq!(full["scopes_supported"], json!(["tools:read"]));
        assert_eq!(full["resource_name"], "Tools");
        assert!(full.get("resource_documentation").is_none());
    }
}
