//! The public catalogue: every backend's tools, resources and prompts under the names clients see, and the way
//! from a public name back to the backend that serves it.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
};

use mcpgate_backends::{BackendKind, Facts};
use mcpgate_config::ResilienceConfig;
use mcpgate_core::{Backend, BackendError, PromptDef, ResourceDef, ResourceTemplateDef, ToolDef};
use mcpgate_policy::{ArgumentSchema, Breaker, HealthChecker, ToolPolicy, retries_for};
use rmcp::model::Tool;

use crate::metrics::series::ToolMetrics;

/// Where a public tool name leads.
pub struct ToolRoute {
    /// Index of the backend in [`Registry::backends`].
    pub backend: usize,
    /// The backend's own name for the tool.
    pub original: String,
    /// The tool as the backend described it (under its public name).
    pub def: ToolDef,
    /// Whether its input schema declares `x-mcp-header` parameters (SEP-2243), which the transport checks
    /// against `Mcp-Param-*` headers.
    pub declares_param_headers: bool,
    /// Whether a call may send the client anything before its result ([`Backend::may_contact_client`]).
    pub contacts_client: bool,
    /// What the pipeline applies to its calls (the compiled input schema, …).
    pub policy: ToolPolicy,
    /// Its metric series, resolved on first use ([`ToolRoute::metrics`]).
    metrics: OnceLock<ToolMetrics>,
}

impl ToolRoute {
    /// Its metric series: made by `make` (from the tool's public name) once, then a plain load on every call.
    pub(crate) fn metrics_or(&self, make: impl FnOnce(&str) -> ToolMetrics) -> &ToolMetrics {
        self.metrics.get_or_init(|| make(&self.def.name))
    }
}

/// One backend and what it contributed, for `/status` and `/ready`.
#[derive(Clone)]
pub struct BackendEntry {
    /// The configured name.
    pub name: String,
    /// Its kind.
    pub kind: BackendKind,
    /// The running backend.
    pub backend: Arc<dyn Backend>,
    /// Its circuit breaker, shared by its tools and its health checker; kept across catalogue rebuilds.
    pub breaker: Arc<Breaker>,
    /// Retries of a failed call to one of its idempotent tools (upstreams' `max_retries`; 0 elsewhere).
    pub max_retries: u32,
    /// Periodic health checks (upstreams).
    pub health: Option<Arc<HealthChecker>>,
    /// Readiness fails while it is down.
    pub required: bool,
}

impl BackendEntry {
    /// A backend the config describes, running: a breaker of its own, and the retries, health checks (sharing
    /// the breaker) and readiness rule its `facts` give.
    pub fn started(
        name: &str,
        facts: Facts,
        backend: Arc<dyn Backend>,
        resilience: &ResilienceConfig,
    ) -> Self {
        let mut entry = Self::new(name, facts.kind, backend, resilience);
        entry.max_retries = facts.max_retries;
        entry.required = facts.required;
        entry.health = facts
            .health_check_interval
            .map(|interval| HealthChecker::new(entry.backend.clone(), interval, Some(entry.breaker.clone())));
        entry
    }

    /// A backend with a breaker of its own, no retries, no periodic health checks, required for readiness.
    pub fn new(
        name: &str,
        kind: BackendKind,
        backend: Arc<dyn Backend>,
        resilience: &ResilienceConfig,
    ) -> Self {
        let breaker = &resilience.circuit_breaker;
        Self {
            name: name.to_owned(),
            kind,
            backend,
            breaker: Arc::new(Breaker::new(name, breaker.failure_threshold.get(), breaker.reset_timeout.0)),
            max_retries: 0,
            health: None,
            required: true,
        }
    }
}

/// A registry held by one request: the catalogue of the moment, whatever changes meanwhile.
pub type RegistryHandle = Arc<Registry>;

/// The catalogue the gateway serves. Built once from the backends; rebuilt (not mutated) when it changes.
pub struct Registry {
    backends: Vec<BackendEntry>,
    tools: Vec<ToolRoute>,
    tool_index: HashMap<String, usize>,
    /// `tools/list` items, converted once.
    wire_tools: Vec<Tool>,
    resources: Vec<(ResourceDef, usize)>,
    templates: Vec<(ResourceTemplateDef, usize)>,
    prompts: Vec<(PromptDef, usize)>,
    prompt_index: HashMap<String, usize>,
}

impl Registry {
    /// Ask every backend for its catalogue and merge them. A name served by two backends is an error naming
    /// both, so a collision never silently hides a tool.
    pub async fn build(backends: Vec<BackendEntry>) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut registry = Self {
            backends: Vec::new(),
            tools: Vec::new(),
            tool_index: HashMap::new(),
            wire_tools: Vec::new(),
            resources: Vec::new(),
            templates: Vec::new(),
            prompts: Vec::new(),
            prompt_index: HashMap::new(),
        };
        for (index, entry) in backends.iter().enumerate() {
            let backend = &entry.backend;
            let listed = async {
                Ok::<_, BackendError>((
                    backend.list_tools().await?,
                    backend.list_resources().await?,
                    backend.list_resource_templates().await?,
                    backend.list_prompts().await?,
                ))
            };
            let (tools, resources, templates, prompts) = match listed.await {
                Ok(lists) => lists,
                Err(e) => {
                    problems.push(format!("backend {}: cannot list its catalogue: {e}", entry.name));
                    continue;
                }
            };
            for def in tools {
                match registry.tool_index.get(&def.name) {
                    Some(&other) => problems.push(format!(
                        "tool {:?} is served by both {} and {}",
                        def.name, backends[registry.tools[other].backend].name, entry.name
                    )),
                    None if def.input_schema.get("type").and_then(|t| t.as_str()) != Some("object") => {
                        problems.push(format!(
                            "backend {}: tool {:?} has an inputSchema without \"type\": \"object\"",
                            entry.name, def.name
                        ));
                    }
                    None => {
                        let wire: Tool = match serde_json::to_value(&def).and_then(serde_json::from_value) {
                            Ok(tool) => tool,
                            Err(e) => {
                                problems.push(format!(
                                    "backend {}: tool {:?} is malformed: {e}",
                                    entry.name, def.name
                                ));
                                continue;
                            }
                        };
                        // Built-in tools' schemas are ours and known good (a test compiles them all): they compile
                        // at the tool's first call, so the default config starts without building jsonschema's
                        // meta-schema validator. Every other schema compiles here, to refuse a bad one at start.
                        let compiled = if entry.kind == BackendKind::Builtin {
                            Ok(ArgumentSchema::deferred(&def.input_schema))
                        } else {
                            ArgumentSchema::compile(&def.input_schema)
                        };
                        let arguments = match compiled {
                            Ok(schema) => schema,
                            Err(e) => {
                                problems.push(format!(
                                    "backend {}: tool {:?} has an inputSchema that does not compile: {e}",
                                    entry.name, def.name
                                ));
                                continue;
                            }
                        };
                        registry.tool_index.insert(def.name.clone(), registry.tools.len());
                        registry.wire_tools.push(wire);
                        let declares_param_headers = serde_json::to_string(&def.input_schema)
                            .is_ok_and(|s| s.contains("x-mcp-header"));
                        // `{"type": "object"}` alone admits every arguments object: no check to run per call.
                        let trivial = def.input_schema.len() == 1;
                        let policy = ToolPolicy {
                            arguments: (!trivial).then_some(arguments),
                            retries: retries_for(def.annotations.as_ref(), entry.max_retries, false),
                            breaker: Some(entry.breaker.clone()),
                            rate_limit: Default::default(),
                            cache: Default::default(),
                        };
                        registry.tools.push(ToolRoute {
                            backend: index,
                            contacts_client: entry.backend.may_contact_client(&def.name),
                            original: def.name.clone(),
                            def,
                            declares_param_headers,
                            policy,
                            metrics: OnceLock::new(),
                        });
                    }
                }
            }
            for resource in resources {
                if registry.resources.iter().any(|(r, _)| r.uri == resource.uri) {
                    problems.push(format!(
                        "resource {:?} is served twice (again by {})",
                        resource.uri, entry.name
                    ));
                } else {
                    registry.resources.push((resource, index));
                }
            }
            registry.templates.extend(templates.into_iter().map(|t| (t, index)));
            for prompt in prompts {
                if registry.prompt_index.contains_key(&prompt.name) {
                    problems
                        .push(format!("prompt {:?} is served twice (again by {})", prompt.name, entry.name));
                } else {
                    registry.prompt_index.insert(prompt.name.clone(), registry.prompts.len());
                    registry.prompts.push((prompt, index));
                }
            }
        }
        registry.backends = backends;
        if problems.is_empty() { Ok(registry) } else { Err(problems) }
    }

    /// The backends, in config order.
    pub fn backends(&self) -> &[BackendEntry] {
        &self.backends
    }

    /// The backend at `index`.
    pub fn backend(&self, index: usize) -> &Arc<dyn Backend> {
        &self.backends[index].backend
    }

    /// Look up a tool by its public name.
    pub fn tool(&self, name: &str) -> Option<&ToolRoute> {
        self.tool_index.get(name).map(|&i| &self.tools[i])
    }

    /// Resolve the metric series of every tool, so they exist at zero before the first call (a dashboard shows
    /// a tool that was never called).
    pub(crate) fn prime_metrics(&self, make: impl Fn(&str) -> ToolMetrics) {
        for route in &self.tools {
            route.metrics_or(&make);
        }
    }

    /// Tools in catalogue order, under their public names.
    pub fn tools(&self) -> impl Iterator<Item = &ToolDef> {
        self.tools.iter().map(|route| &route.def)
    }

    /// Every tool's route (its backend, its own name, its definition), in catalogue order.
    pub fn routes(&self) -> impl Iterator<Item = &ToolRoute> {
        self.tools.iter()
    }

    /// `tools/list` items in catalogue order.
    pub fn wire_tools(&self) -> &[Tool] {
        &self.wire_tools
    }

    /// Number of tools a backend contributes.
    pub fn tool_count(&self, backend: usize) -> usize {
        self.tools.iter().filter(|t| t.backend == backend).count()
    }

    /// Resources in catalogue order.
    pub fn resources(&self) -> impl Iterator<Item = &ResourceDef> {
        self.resources.iter().map(|(r, _)| r)
    }

    /// Resource templates in catalogue order.
    pub fn templates(&self) -> impl Iterator<Item = &ResourceTemplateDef> {
        self.templates.iter().map(|(t, _)| t)
    }

    /// The backend that serves a resource URI: a listed resource, else the first backend that claims it.
    pub async fn resource_owner(&self, uri: &str) -> Option<usize> {
        if let Some((_, index)) = self.resources.iter().find(|(r, _)| r.uri == uri) {
            return Some(*index);
        }
        for (index, entry) in self.backends.iter().enumerate() {
            if entry.backend.owns_resource(uri).await {
                return Some(index);
            }
        }
        None
    }

    /// Prompts in catalogue order.
    pub fn prompts(&self) -> impl Iterator<Item = &PromptDef> {
        self.prompts.iter().map(|(p, _)| p)
    }

    /// The backend that serves a prompt.
    pub fn prompt_owner(&self, name: &str) -> Option<usize> {
        self.prompt_index.get(name).map(|&i| self.prompts[i].1)
    }

    /// The backend that owns a resource template.
    pub fn template_owner(&self, uri_template: &str) -> Option<usize> {
        self.templates.iter().find(|(t, _)| t.uri_template == uri_template).map(|(_, i)| *i)
    }
}

/// One page of `items` starting at the opaque `cursor`; returns the page and the next cursor.
pub fn page<T: Clone>(
    items: &[T],
    cursor: Option<&str>,
    size: usize,
) -> Result<(Vec<T>, Option<String>), String> {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let start = match cursor {
        None => 0,
        Some(c) => URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("o:").and_then(|n| n.parse::<usize>().ok()))
            .filter(|&n| n <= items.len())
            .ok_or_else(|| format!("invalid cursor {c:?}"))?,
    };
    let end = start.saturating_add(size).min(items.len());
    let next = (end < items.len()).then(|| URL_SAFE_NO_PAD.encode(format!("o:{end}")));
    Ok((items[start..end].to_vec(), next))
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use mcpgate_core::{CallContext, ToolCall, ToolOutcome};

    use super::*;

    /// A backend listing one tool with the given input schema.
    struct OneTool(serde_json::Value);

    #[async_trait]
    impl Backend for OneTool {
        fn name(&self) -> &str {
            "one"
        }
        async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
            Ok(vec![ToolDef::new("t", "a tool", self.0.clone())])
        }
        async fn call_tool(&self, _: &CallContext, _: ToolCall) -> Result<ToolOutcome, BackendError> {
            Ok(ToolOutcome::text("ok"))
        }
    }

    async fn build_with(schema: serde_json::Value) -> Result<Registry, Vec<String>> {
        let entry = BackendEntry::new(
            "one",
            BackendKind::Builtin,
            Arc::new(OneTool(schema)),
            &ResilienceConfig::default(),
        );
        Registry::build(vec![entry]).await
    }

    #[tokio::test]
    async fn tools_need_an_object_input_schema() {
        assert!(build_with(serde_json::json!({ "type": "object" })).await.is_ok());
        for bad in [serde_json::json!("object"), serde_json::json!({ "type": "string" })] {
            let problems = build_with(bad).await.err().unwrap();
            assert!(problems[0].contains("inputSchema"), "{problems:?}");
        }
    }

    #[tokio::test]
    async fn every_built_in_tool_schema_compiles() {
        // The registry defers compiling these on that promise.
        let builtins: [Arc<dyn Backend>; 2] = [
            Arc::new(mcpgate_backends::builtin::demo::Demo::new("demo")),
            Arc::new(mcpgate_backends::builtin::conformance::Conformance::new("conformance")),
        ];
        for backend in builtins {
            let tools = backend.list_tools().await.unwrap();
            assert!(!tools.is_empty());
            for tool in tools {
                if let Err(e) = ArgumentSchema::compile(&tool.input_schema) {
                    panic!("{} {}: {e}", backend.name(), tool.name);
                }
            }
        }
    }

    #[test]
    fn pages_walk_the_whole_list_and_reject_forged_cursors() {
        let items: Vec<u32> = (0..5).collect();
        let (first, next) = page(&items, None, 2).unwrap();
        assert_eq!(first, [0, 1]);
        let (second, next) = page(&items, next.as_deref(), 2).unwrap();
        assert_eq!(second, [2, 3]);
        let (third, next) = page(&items, next.as_deref(), 2).unwrap();
        assert_eq!((third, next), (vec![4], None));
        assert!(page(&items, Some("garbage"), 2).is_err());
        assert!(page(&items, Some("bzo5OQ"), 2).is_err()); // "o:99": past the end
    }
}
