//! Validation: the JSON Schema (generated from the config types) catches shape errors — unknown fields, wrong
//! types, bad enum values — all at once; [`validate`] adds the checks a schema cannot express.

use std::{collections::BTreeMap, fmt, net::SocketAddr, sync::OnceLock};

use serde_json::Value;

use crate::{
    BackendConfig, Config, HashMethod, KeyHash, SecurityConfig, ToolConfig, UpstreamConfig,
    UpstreamTransport, model::schema, parse_cidr,
};

/// One problem in a configuration, with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path (`backends.demo.kind`), empty for the whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "(root)" } else { &self.path };
        write!(f, "{path}: {}", self.message)
    }
}

/// The most `server.workers` accepted: far past any CPU count, short of a typo's thousands of threads.
const MAX_WORKERS: usize = 1024;

/// Checks a schema cannot express. Returns every problem found.
pub fn validate(config: &Config) -> Vec<Problem> {
    semantic_problems(config)
}

pub(crate) fn semantic_problems(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let server = &config.server;
    if let Err(e) = server.listen.parse::<SocketAddr>() {
        problems.push(Problem::new("server.listen", format!("{:?} is not IP:PORT ({e})", server.listen)));
    }
    for (path, value) in [
        ("server.max_sessions", server.max_sessions),
        ("server.max_sessions_per_client", server.max_sessions_per_client),
        ("server.max_connections", server.max_connections),
    ] {
        if value == 0 {
            problems.push(Problem::new(path, "must be at least 1"));
        }
    }
    if server.page_size == 0 {
        problems.push(Problem::new("server.page_size", "must be at least 1"));
    }
    for (field, d) in [
        ("server.request_timeout", server.request_timeout),
        ("server.session_idle_timeout", server.session_idle_timeout),
        ("server.session_park_after", server.session_park_after),
        ("server.header_read_timeout", server.header_read_timeout),
        ("server.body_read_timeout", server.body_read_timeout),
        ("server.idle_timeout", server.idle_timeout),
    ] {
        if d.0.is_zero() {
            problems.push(Problem::new(field, "must be longer than zero"));
        }
    }
    if server.max_request_size.0 < 1024 {
        problems.push(Problem::new("server.max_request_size", "must be at least 1kb"));
    }
    if server.workers.is_some_and(|n| n.get() > MAX_WORKERS) {
        problems.push(Problem::new("server.workers", format!("at most {MAX_WORKERS} threads")));
    }
    if let Err(e) = tracing_filter_ok(&config.logging.level) {
        problems.push(Problem::new("logging.level", e));
    }
    for (name, backend) in &config.backends {
        if !valid_name(name) {
            problems.push(Problem::new(
                format!("backends.{name}"),
                "backend names may hold only letters, digits, '_' and '-' (1-64 characters)",
            ));
        }
        let path = format!("backends.{name}");
        match backend {
            BackendConfig::Builtin(_) => {}
            BackendConfig::Http(http) => tool_problems(&path, &http.tools, &mut problems),
            BackendConfig::Command(command) => tool_problems(&path, &command.tools, &mut problems),
            BackendConfig::Script(script) => {
                tool_problems(&path, &script.tools, &mut problems);
                for (tool, config) in &script.tools {
                    if config.call.file.is_some() == config.call.code.is_some() {
                        let at = format!("{path}.tools.{tool}.call");
                        problems.push(Problem::new(at, "needs exactly one of file and code"));
                    }
                }
                if !config.code_mode.sandbox.enabled {
                    let message = "script tools need code_mode.sandbox.enabled (code never runs unsandboxed)";
                    problems.push(Problem::new(path.clone(), message));
                }
            }
            BackendConfig::Sql(sql) => {
                tool_problems(&path, &sql.tools, &mut problems);
                if sql.tools.is_empty() && !sql.database_tools {
                    problems.push(Problem::new(path.clone(), "declares no tools and no database_tools"));
                }
                if sql.max_rows == 0 {
                    problems.push(Problem::new(format!("{path}.max_rows"), "must be at least 1"));
                }
                if sql.max_connections == 0 {
                    problems.push(Problem::new(format!("{path}.max_connections"), "must be at least 1"));
                }
            }
        }
    }
    for (section, upstreams) in [("upstreams", &config.upstreams), ("mcpServers", &config.mcp_servers)] {
        for (name, upstream) in upstreams {
            upstream_problems(&format!("{section}.{name}"), upstream, &mut problems);
            if config.backends.contains_key(name) {
                problems.push(Problem::new(format!("{section}.{name}"), "a backend has the same name"));
            }
        }
    }
    for name in config.upstreams.keys().filter(|n| config.mcp_servers.contains_key(*n)) {
        problems.push(Problem::new(format!("mcpServers.{name}"), "also defined under upstreams"));
    }
    security_problems(&config.security, &mut problems);
    crate::metrics::problems(config, &mut problems);
    crate::limits::problems(config, &mut problems);
    crate::telemetry::problems(config, &mut problems);
    crate::cache::problems(config, &mut problems);
    crate::state::problems(config, &mut problems);
    crate::budget::problems(config, &mut problems);
    crate::audit::problems(config, &mut problems);
    crate::jwt::problems(config, &mut problems);
    crate::compression::problems(config, &mut problems);
    crate::code_mode::problems(config, &mut problems);
    crate::ui::problems(config, &mut problems);
    crate::chat::problems(config, &mut problems);
    let serves = config.backends.values().any(BackendConfig::enabled)
        || config.all_upstreams().any(|(_, u)| u.enabled);
    if !serves {
        problems.push(Problem::new(
            "backends",
            "no enabled backend or upstream: the gateway would serve nothing",
        ));
    }
    problems
}

/// Names and schemas of config-declared tools: each name spec-safe, each `input_schema` an object schema that
/// compiles under draft 2020-12, each `output_schema` a schema that compiles.
fn tool_problems<C>(backend: &str, tools: &BTreeMap<String, ToolConfig<C>>, problems: &mut Vec<Problem>) {
    for (name, tool) in tools {
        let path = format!("{backend}.tools.{name}");
        if !valid_name(name) {
            problems.push(Problem::new(
                path.clone(),
                "tool names may hold only letters, digits, '_' and '-' (1-64 characters)",
            ));
        }
        if tool.input_schema.get("type").and_then(Value::as_str) != Some("object") {
            problems.push(Problem::new(
                format!("{path}.input_schema"),
                "must be an object schema (\"type\": \"object\")",
            ));
        }
        for (field, schema) in
            [("input_schema", Some(&tool.input_schema)), ("output_schema", tool.output_schema.as_ref())]
        {
            if let Some(Err(e)) = schema.map(jsonschema::draft202012::new) {
                problems
                    .push(Problem::new(format!("{path}.{field}"), format!("not a valid JSON Schema: {e}")));
            }
        }
    }
}

/// An upstream: a usable name, one way to reach it, and published names of the spec-safe shape.
fn upstream_problems(path: &str, upstream: &UpstreamConfig, problems: &mut Vec<Problem>) {
    let mut problem = |field: &str, message: String| {
        let at = if field.is_empty() { path.to_owned() } else { format!("{path}.{field}") };
        problems.push(Problem::new(at, message));
    };
    let name = path.rsplit('.').next().unwrap_or(path);
    if !valid_name(name) {
        problem("", "upstream names may hold only letters, digits, '_' and '-' (1-64 characters)".into());
    }
    match (upstream.transport(), &upstream.command, &upstream.url) {
        (None, Some(_), Some(_)) => problem("", "give either command (stdio) or url (HTTP), not both".into()),
        (None, _, _) => problem("", "give command (a local server over stdio) or url (a remote one)".into()),
        (Some(UpstreamTransport::Stdio), None, _) => {
            problem("command", "the stdio transport needs a command".into())
        }
        (Some(_), _, None) if upstream.transport() != Some(UpstreamTransport::Stdio) => {
            problem("url", "the HTTP transport needs a url".into());
        }
        _ => {}
    }
    // A URL built from `${VAR}`s is checked when the upstream starts, after the environment is applied.
    if let Some(url) = &upstream.url
        && !url.starts_with("${")
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        problem("url", format!("{url:?} is not an http:// or https:// URL"));
    }
    for (kind, naming) in [("tools", &upstream.tools), ("prompts", &upstream.prompts)] {
        for (from, to) in &naming.rename {
            if !valid_name(to) {
                problem(
                    &format!("{kind}.rename.{from}"),
                    format!("{to:?} is not a valid name (^[a-zA-Z0-9_-]{{1,64}}$)"),
                );
            }
        }
    }
}

/// API keys that can be checked (unique names and hashes, a known hash form, the salt an HMAC hash needs, an
/// RFC 3339 expiry), someone able to get in, and IP lists that parse.
fn security_problems(security: &SecurityConfig, problems: &mut Vec<Problem>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut hashes: BTreeMap<[u8; 32], usize> = BTreeMap::new();
    for (i, key) in security.api_keys.iter().enumerate() {
        let path = format!("security.api_keys.{i}");
        if !valid_name(&key.name) {
            let message = "key names may hold only letters, digits, '_' and '-' (1-64 characters)";
            problems.push(Problem::new(format!("{path}.name"), message));
        }
        if let Some(first) = seen.insert(&key.name, i) {
            let message = format!("{:?} also names security.api_keys.{first}", key.name);
            problems.push(Problem::new(format!("{path}.name"), message));
        }
        match key.hash.parse::<KeyHash>() {
            Err(e) => problems.push(Problem::new(format!("{path}.hash"), e)),
            Ok(hash) => {
                if hash.method == HashMethod::HmacSha256 && security.api_key_salt.is_none() {
                    problems.push(Problem::new(
                        format!("{path}.hash"),
                        "an hmac-sha256 hash needs API_KEY_SALT (the salt it was made with) in the environment, \
                         and it is unset",
                    ));
                }
                if let Some(first) = hashes.insert(hash.digest, i) {
                    let message = format!("the same key as security.api_keys.{first}");
                    problems.push(Problem::new(format!("{path}.hash"), message));
                }
            }
        }
        if key.tier.trim().is_empty() {
            problems.push(Problem::new(format!("{path}.tier"), "must not be empty"));
        }
        for (j, tool) in key.tools.iter().enumerate() {
            if tool.trim().is_empty() {
                problems.push(Problem::new(format!("{path}.tools.{j}"), "an empty glob matches no tool"));
            }
        }
        if let Err(e) = key.expires_at() {
            problems.push(Problem::new(format!("{path}.expires"), e));
        }
    }
    if security.allow_anonymous == Some(false) && security.api_keys.is_empty() && security.jwt.is_none() {
        problems.push(Problem::new(
            "security.allow_anonymous",
            "false with no api_keys (nor MCP_API_KEYS): every /mcp request would be refused",
        ));
    }
    for (field, list) in
        [("allowed_ips", &security.allowed_ips), ("trusted_proxies", &security.trusted_proxies)]
    {
        for (i, cidr) in list.iter().enumerate() {
            if let Err(e) = parse_cidr(cidr) {
                problems.push(Problem::new(format!("security.{field}.{i}"), e));
            }
        }
    }
}

/// `^[a-zA-Z0-9_-]{1,64}$`, the spec-safe name shape used for backends and tools.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Adds a problem at `path` unless `pattern` is a tool name or a glob (`*`, `?`) of the tool-name shape.
pub(crate) fn check_tool_pattern(path: impl Into<String>, pattern: &str, problems: &mut Vec<Problem>) {
    if !valid_name(&pattern.replace(['*', '?'], "x")) {
        problems.push(Problem::new(
            path,
            "a tool name or glob holds only letters, digits, '_', '-', '*' and '?' (1-64 characters)",
        ));
    }
}

fn tracing_filter_ok(level: &str) -> Result<(), String> {
    // Accept plain levels and `target=level` directives; the binary parses the full syntax.
    let levels = ["trace", "debug", "info", "warn", "error", "off"];
    for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let lvl = directive.rsplit('=').next().unwrap_or(directive).to_ascii_lowercase();
        if !levels.contains(&lvl.as_str()) && directive.contains('=') {
            return Err(format!("{directive:?}: unknown level {lvl:?}; use one of {levels:?}"));
        }
        if !directive.contains('=')
            && !levels.contains(&lvl.as_str())
            && !lvl.chars().all(|c| c.is_alphanumeric() || c == '_' || c == ':')
        {
            return Err(format!("{directive:?} is neither a level nor a target"));
        }
    }
    Ok(())
}

struct CompiledSchema {
    root: Value,
    validator: jsonschema::Validator,
}

fn compiled() -> &'static CompiledSchema {
    static SCHEMA: OnceLock<CompiledSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let root = schema();
        let validator = jsonschema::draft202012::new(&root).expect("the generated config schema compiles");
        CompiledSchema { root, validator }
    })
}

/// Every schema violation in `value`, with paths. Two kinds of mismatch are refined so the message names the
/// offending field rather than the alternatives: a tagged union (`oneOf`), by validating alone the variant the
/// `kind` field names; and an optional section (`anyOf` of a schema and `null`) that is set, by validating it
/// alone against that schema.
pub(crate) fn schema_problems(value: &Value) -> Vec<Problem> {
    let schema = compiled();
    let mut problems = Vec::new();
    for error in schema.validator.iter_errors(value) {
        let instance_path = error.instance_path().to_string();
        let schema_path = error.schema_path().to_string();
        let instance = value.pointer(&instance_path).unwrap_or(&Value::Null);
        let refined = if schema_path.ends_with("/oneOf") {
            refine_one_of(&schema.root, &schema_path, instance, &instance_path)
        } else if schema_path.ends_with("/anyOf") {
            refine_optional(&schema.root, &schema_path, instance, &instance_path)
        } else {
            None
        };
        match refined {
            Some(refined) => problems.extend(refined),
            None => problems.push(Problem::new(dotted(&instance_path), error.to_string())),
        }
    }
    problems
}

/// `anyOf: [X, {type: null}]` (what an `Option` of a section becomes) failed for a value that is set: the
/// problems are X's.
fn refine_optional(
    root: &Value,
    schema_path: &str,
    instance: &Value,
    instance_path: &str,
) -> Option<Vec<Problem>> {
    let [first, second] = resolve(root, schema_path)?.as_array()?.as_slice() else {
        return None;
    };
    let is_null =
        |v: &Value| v.as_object().is_some_and(|o| o.len() == 1 && o.get("type") == Some(&"null".into()));
    let set = match (is_null(first), is_null(second)) {
        (true, false) => second,
        (false, true) => first,
        _ => return None,
    };
    validate_alone(root, set, instance, instance_path)
}

fn refine_one_of(
    root: &Value,
    schema_path: &str,
    instance: &Value,
    instance_path: &str,
) -> Option<Vec<Problem>> {
    let variants = resolve(root, schema_path)?.as_array()?;
    let tag = |v: &Value| v.pointer("/properties/kind/const").and_then(Value::as_str).map(str::to_owned);
    let known: Vec<String> = variants.iter().filter_map(tag).collect();
    if known.is_empty() {
        return None;
    }
    let here = dotted(instance_path);
    let at = |field: &str| if here.is_empty() { field.to_owned() } else { format!("{here}.{field}") };
    let Some(kind) = instance.get("kind") else {
        return Some(vec![Problem::new(at("kind"), format!("missing; one of {known:?}"))]);
    };
    let Some(variant) = variants.iter().find(|v| tag(v).as_deref() == kind.as_str()) else {
        return Some(vec![Problem::new(at("kind"), format!("unknown kind {kind}; one of {known:?}"))]);
    };
    validate_alone(root, variant, instance, instance_path)
}

/// The problems of `instance` (at `instance_path`) under `part` of the schema alone, `$ref`s resolved against
/// `root`; `None` when there are none.
fn validate_alone(root: &Value, part: &Value, instance: &Value, instance_path: &str) -> Option<Vec<Problem>> {
    let mut standalone = part.clone();
    if let (Some(obj), Some(defs)) = (standalone.as_object_mut(), root.get("$defs")) {
        obj.insert("$defs".into(), defs.clone());
    }
    let validator = jsonschema::draft202012::new(&standalone).ok()?;
    let problems: Vec<Problem> = validator
        .iter_errors(instance)
        .map(|e| {
            let sub = e.instance_path().to_string();
            Problem::new(dotted(&format!("{instance_path}{sub}")), e.to_string())
        })
        .collect();
    (!problems.is_empty()).then_some(problems)
}

/// Walk a keyword location through the schema, following `$ref`s to `#/$defs/…`.
fn resolve<'a>(root: &'a Value, location: &str) -> Option<&'a Value> {
    let mut node = root;
    for segment in location.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment == "$ref" {
            let target = node.get("$ref")?.as_str()?.strip_prefix('#')?;
            node = root.pointer(target)?;
            continue;
        }
        node = match node {
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            other => other.get(&segment)?,
        };
    }
    Some(node)
}

fn dotted(pointer: &str) -> String {
    pointer
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}
