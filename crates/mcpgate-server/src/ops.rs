//! Operator endpoints: `/health` (liveness), `/ready` (readiness, one entry per check), `/status` (what runs).

use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use mcpgate_core::BackendHealth;
use mcpgate_policy::{BreakerPhase, StoreHealth};
use serde_json::{Value, json};

use crate::{gateway::Gateway, protocol::SUPPORTED};

/// Liveness: 200 while the process serves.
pub async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn backend_checks(gateway: &Gateway) -> Vec<Value> {
    let mut checks = Vec::new();
    for entry in gateway.registry().backends() {
        // Backends with periodic health checks answer from the last one (a probe per request would be load);
        // the others are asked. An open breaker is down whatever the last check said.
        let health = match entry.health.as_ref().and_then(|h| h.last()) {
            Some(last) => last.health,
            None => entry.backend.health().await,
        };
        let (status, reason) = match (health, entry.breaker.snapshot().phase) {
            (_, BreakerPhase::Open) => ("down", Some("circuit breaker open".to_owned())),
            (BackendHealth::Up, _) => ("up", None),
            (BackendHealth::Down(reason), _) => ("down", Some(reason)),
        };
        checks.push(json!({
            "name": format!("backend:{}", entry.name),
            "status": status,
            "required": entry.required,
            "reason": reason,
        }));
    }
    checks
}

/// Readiness: 200 when every required check passes, else 503; the body lists every check.
pub async fn ready(State(gateway): State<Arc<Gateway>>) -> impl IntoResponse {
    let mut checks = vec![json!({ "name": "config", "status": "up", "required": true })];
    checks.extend(backend_checks(&gateway).await);
    // The store behind rate limits and the cache. Out of reach, the node still serves (falling back as
    // `state.on_unavailable` says), so it stays ready unless `state.required`.
    let (name, required) = (format!("state:{}", gateway.state.kind().as_str()), gateway.state.required());
    checks.push(match gateway.state.health().await {
        StoreHealth::Up => json!({ "name": name, "status": "up", "required": required }),
        StoreHealth::Down(reason) => {
            json!({ "name": name, "status": "down", "required": required, "reason": reason })
        }
    });
    // Code mode's sandbox: one that cannot run fails the node, never falls back to a weaker one.
    match gateway.code.readiness(&gateway.live().config) {
        None => {}
        Some(Ok(())) => checks.push(json!({ "name": "sandbox", "status": "up", "required": true })),
        Some(Err(reason)) => {
            checks.push(json!({ "name": "sandbox", "status": "down", "required": true, "reason": reason }));
        }
    }
    if gateway.shutdown.is_cancelled() {
        checks.push(json!({ "name": "shutdown", "status": "down", "required": true, "reason": "draining" }));
    }
    let ready = checks.iter().all(|c| c["status"] == "up" || c["required"] == false);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "status": if ready { "ready" } else { "not_ready" }, "checks": checks })))
}

/// `/status`'s `state`: where buckets and cached results live, whether that store answers, and whether the sealing
/// key is shared by the nodes.
fn state_status(gateway: &Gateway) -> Value {
    let state = &gateway.state;
    let seal_key = if state.seal_key().is_shared() { "configured" } else { "per-process" };
    json!({ "backend": state.kind().as_str(), "at": state.location(), "up": state.is_up(), "seal_key": seal_key })
}

/// `/status`'s `cache`: whether results are cached, the default TTL, what the store holds and the hit counts.
fn cache_status(gateway: &Gateway, live: &crate::gateway::Live) -> Value {
    let config = &live.config.cache;
    let (hits, misses) = gateway.metrics.cache_counts();
    match live.pipeline.cache() {
        Some(cache) => {
            let usage = cache.usage();
            json!({
                "enabled": true,
                "ttl": config.ttl.to_string(),
                "max_size": config.max_size.0,
                "tools": config.tools.len(),
                "entries": usage.entries,
                "bytes": usage.bytes,
                "hits": hits,
                "misses": misses,
            })
        }
        None => json!({ "enabled": false }),
    }
}

/// `/status`'s `audit`: the file and what the gateway's audit logs have written since it started (a reload that
/// opens a new log goes on counting).
fn audit_status(live: &crate::gateway::Live) -> Value {
    match &live.audit {
        Some(audit) => json!({
            "enabled": true,
            "file": audit.path().display().to_string(),
            "lines": audit.counters().lines(),
            "writes": audit.counters().writes(),
            "failures": audit.counters().failures(),
        }),
        None => json!({ "enabled": false }),
    }
}

/// Status: version, uptime, a config summary and each backend with its state and tool count.
pub async fn status(State(gateway): State<Arc<Gateway>>) -> impl IntoResponse {
    Json(status_value(&gateway).await)
}

/// What `/status` shows (the admin page shows it too).
pub(crate) async fn status_value(gateway: &Arc<Gateway>) -> Value {
    let registry = gateway.registry();
    let checks = backend_checks(gateway).await;
    let backends: Vec<Value> = registry
        .backends()
        .iter()
        .enumerate()
        .zip(checks)
        .map(|((index, entry), check)| {
            json!({
                "name": entry.name,
                "kind": entry.kind.as_str(),
                "state": check["status"],
                "reason": check["reason"],
                "tools": registry.tool_count(index),
                "protocol": entry.backend.protocol(),
                "breaker": entry.breaker.snapshot().to_json(),
                "health_check": entry.health.as_ref().and_then(|h| h.last()).map(|last| last.to_json()),
            })
        })
        .collect();
    let live = gateway.live();
    let server = &live.config.server;
    let sessions = gateway.sessions.get().and_then(std::sync::Weak::upgrade).map_or(0, |s| s.len());
    json!({
        "name": server.name,
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": humantime::format_rfc3339_seconds(gateway.started_at).to_string(),
        "uptime_seconds": gateway.started.elapsed().as_secs(),
        "protocol_versions": SUPPORTED.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
        "config": {
            "listen": server.listen,
            "max_request_size": server.max_request_size.0,
            "request_timeout_ms": server.request_timeout.0.as_millis() as u64,
            "session_idle_timeout_s": server.session_idle_timeout.0.as_secs(),
            "backends": registry.backends().len(),
            "tools": registry.wire_tools().len(),
            "resources": registry.resources().count(),
            "prompts": registry.prompts().count(),
        },
        "backends": backends,
        "sessions": sessions,
        "rate_limits": crate::limits::status(gateway).await,
        "state": state_status(gateway),
        "cache": cache_status(gateway, &live),
        "audit": audit_status(&live),
        "reloads": gateway.reloads.lock().to_json(),
        "calls": { "fast_path": gateway.fast_path_calls.load(std::sync::atomic::Ordering::Relaxed) },
        "code_mode": gateway.code.status(&live.config.code_mode),
    })
}
