//! Loading a `kind: http` backend: every `${VAR}` expanded, every template compiled, every header parsed — and
//! every problem collected with its config path, so `mcpgate validate` shows them all at once. Pure: no I/O
//! besides reading the environment.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mcpgate_config::{HttpBackend, HttpCall, HttpMethod, Problem, ToolConfig};
use mcpgate_core::ToolDef;
use minijinja::{ErrorKind, Output, State};
use reqwest::{
    Method, Url,
    header::{HeaderMap, HeaderName, HeaderValue},
};
use serde_json::Value;

use crate::{
    declared,
    template::{Templates, argument_names, expand_env, sole_variable},
};

/// Secrets shorter than this are not redacted from error text: redacting `ab` would garble every excerpt, and
/// a value that short protects nothing anyway.
const MIN_REDACTED_SECRET: usize = 4;

/// A backend config turned into what calls need. Built even when there are problems (the parts with problems
/// left out), so `check` and `new` share one walk.
pub(super) struct Plan {
    /// Base of relative tool URLs, always ending in `/`.
    pub base_url: Option<Url>,
    /// Backend headers, sent with every request (marked sensitive).
    pub headers: HeaderMap,
    /// The tools, by name.
    pub tools: BTreeMap<String, Tool>,
    /// URL templates: everything they print is percent-encoded.
    pub urls: TemplateSet,
    /// Every other template: query values, header values, body leaves, response templates.
    pub texts: TemplateSet,
    /// Values of the environment variables the config expands, to be cut out of any error text.
    pub secrets: Vec<String>,
}

/// One tool, ready to call.
pub(super) struct Tool {
    /// As listed to clients.
    pub def: ToolDef,
    pub method: Method,
    /// Name of the URL template in [`Plan::urls`].
    pub url: String,
    /// Query parameter name → template name in [`Plan::texts`], and the argument it is when the template is
    /// exactly `{{ name }}` (then the parameter is left out when the argument is absent).
    pub query: Vec<(String, String, Option<String>)>,
    pub headers: Vec<(HeaderName, HeaderSource)>,
    pub body: Option<Body>,
    /// JSON pointer narrowing a JSON response.
    pub pointer: Option<String>,
    /// Name of the response template in [`Plan::texts`].
    pub template: Option<String>,
    /// Whether the tool declares an `output_schema` (then `structuredContent` must be an object).
    pub has_output_schema: bool,
}

/// A call header's value.
pub(super) enum HeaderSource {
    /// No template syntax: sent as written (after `${VAR}` expansion).
    Fixed(HeaderValue),
    /// A template in [`Plan::texts`].
    Template(String),
}

/// The JSON body, compiled.
pub(super) enum Body {
    Object(Vec<(String, Body)>),
    Array(Vec<Body>),
    /// A leaf that is exactly `{{ name }}`: the argument's JSON value, or nothing when it is absent.
    Argument(String),
    /// A string leaf with template syntax: a template in [`Plan::texts`].
    Template(String),
    /// Anything else, sent as written.
    Literal(Value),
}

/// Templates plus the variables each reads, so a render failure can name the arguments that were missing.
pub(super) struct TemplateSet {
    templates: Templates,
    reads: HashMap<String, BTreeSet<String>>,
}

impl TemplateSet {
    fn new(url: bool) -> Self {
        let mut templates = Templates::default();
        let env = templates.env_mut();
        if url {
            env.set_formatter(percent_encoding_formatter);
        }
        Self { templates, reads: HashMap::new() }
    }

    fn add(&mut self, name: &str, source: &str, allowed: &BTreeSet<String>) -> Result<(), String> {
        self.templates.add(name, source, allowed)?;
        let reads = self.templates.env_mut().get_template(name).map(|t| t.undeclared_variables(false));
        self.reads.insert(name.to_owned(), reads.unwrap_or_default().into_iter().collect());
        Ok(())
    }

    /// Render `name` with `context`; the error names the template's field and any argument it reads that the
    /// call did not give.
    pub fn render(&self, name: &str, context: &Value) -> Result<String, String> {
        self.templates.render(name, context).map_err(|error| {
            let missing: Vec<String> = self
                .reads
                .get(name)
                .into_iter()
                .flatten()
                .filter(|v| context.get(v.as_str()).is_none())
                .map(|v| format!("{v:?}"))
                .collect();
            if missing.is_empty() {
                format!("cannot render {name}: {error}")
            } else {
                format!("cannot render {name}: argument {} not given ({error})", missing.join(", "))
            }
        })
    }
}

/// Walk `config`, building what can be built and collecting every problem under `path`.
pub(super) fn plan(path: &str, config: &HttpBackend) -> (Plan, Vec<Problem>) {
    let mut loader = Loader { problems: Vec::new(), secrets: Vec::new() };
    let base_url = config.base_url.as_ref().and_then(|raw| loader.base_url(&format!("{path}.base_url"), raw));
    let mut headers = HeaderMap::new();
    for (name, raw) in &config.headers {
        let field = format!("{path}.headers.{name}");
        let name = loader.header_name(&field, name);
        let value = loader.expand(&field, raw).and_then(|v| loader.header_value(&field, &v));
        if let (Some(name), Some(value)) = (name, value) {
            headers.insert(name, value);
        }
    }
    let mut plan = Plan {
        base_url,
        headers,
        tools: BTreeMap::new(),
        urls: TemplateSet::new(true),
        texts: TemplateSet::new(false),
        secrets: Vec::new(),
    };
    let base_url_given = config.base_url.is_some();
    for (name, tool) in &config.tools {
        let field = format!("{path}.tools.{name}");
        let compiled = loader.tool(&mut plan, &field, name, tool, base_url_given);
        plan.tools.insert(name.clone(), compiled);
    }
    plan.secrets = loader.secrets;
    (plan, loader.problems)
}

struct Loader {
    problems: Vec<Problem>,
    secrets: Vec<String>,
}

impl Loader {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    /// `${VAR}` expanded; the variables' values remembered as secrets. The error names variables, never values.
    fn expand(&mut self, path: &str, raw: &str) -> Option<String> {
        match expand_env(raw) {
            Ok(expanded) => {
                for name in env_names(raw) {
                    if let Ok(value) = std::env::var(name)
                        && value.len() >= MIN_REDACTED_SECRET
                        && !self.secrets.contains(&value)
                    {
                        self.secrets.push(value);
                    }
                }
                Some(expanded)
            }
            Err(message) => {
                self.problem(path, message);
                None
            }
        }
    }

    fn base_url(&mut self, path: &str, raw: &str) -> Option<Url> {
        let expanded = self.expand(path, raw)?;
        // The parse error never quotes the URL: it may hold a secret.
        let mut url = match Url::parse(&expanded) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => url,
            Ok(_) => return self.fail(path, "must be an http:// or https:// URL with a host"),
            Err(e) => return self.fail(path, format!("not a valid URL: {e}")),
        };
        // Relative tool URLs extend the base's path: `https://h/v1` is read as `https://h/v1/`, so `users`
        // resolves to `https://h/v1/users` rather than replacing `v1`.
        if !url.path().ends_with('/') {
            let with_slash = format!("{}/", url.path());
            url.set_path(&with_slash);
        }
        Some(url)
    }

    fn fail<T>(&mut self, path: &str, message: impl Into<String>) -> Option<T> {
        self.problem(path, message);
        None
    }

    fn header_name(&mut self, path: &str, name: &str) -> Option<HeaderName> {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| self.problem(path, format!("{name:?} is not a valid HTTP header name")))
            .ok()
    }

    fn header_value(&mut self, path: &str, value: &str) -> Option<HeaderValue> {
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| {
                self.problem(path, "not a valid HTTP header value (control characters such as CR, LF)")
            })
            .ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    fn template(&mut self, set: &mut TemplateSet, path: &str, source: &str, allowed: &BTreeSet<String>) {
        if let Err(message) = set.add(path, source, allowed) {
            self.problem(path, message);
        }
    }

    fn tool(
        &mut self,
        plan: &mut Plan,
        path: &str,
        name: &str,
        tool: &ToolConfig<HttpCall>,
        base_url_given: bool,
    ) -> Tool {
        let call = &tool.call;
        let args = argument_names(&tool.input_schema);

        let url = format!("{path}.call.url");
        self.url(&url, &call.url, plan.base_url.as_ref(), base_url_given);
        self.template(&mut plan.urls, &url, &call.url, &args);

        let mut query = Vec::new();
        for (param, source) in &call.query {
            let field = format!("{path}.call.query.{param}");
            self.template(&mut plan.texts, &field, source, &args);
            query.push((param.clone(), field, sole_variable(source).map(str::to_owned)));
        }

        let mut headers = Vec::new();
        for (header, raw) in &call.headers {
            let field = format!("{path}.call.headers.{header}");
            let name = self.header_name(&field, header);
            let source = self.expand(&field, raw).and_then(|expanded| {
                if !has_template_syntax(raw) {
                    return self.header_value(&field, &expanded).map(HeaderSource::Fixed);
                }
                if template_markers(&expanded) != template_markers(raw) {
                    return self.fail(
                        &field,
                        "an environment variable it uses holds template syntax ({{, {% or {#); \
                         such a value can only be used in a header without templates",
                    );
                }
                self.template(&mut plan.texts, &field, &expanded, &args);
                Some(HeaderSource::Template(field.clone()))
            });
            if let (Some(name), Some(source)) = (name, source) {
                headers.push((name, source));
            }
        }

        let body = call
            .body
            .as_ref()
            .map(|body| self.body(&mut plan.texts, &format!("{path}.call.body"), body, &args));

        let pointer = call.response.pointer.clone();
        if let Some(pointer) = &pointer {
            self.pointer(&format!("{path}.call.response.pointer"), pointer);
        }
        let template = call.response.template.as_ref().map(|source| {
            let field = format!("{path}.call.response.template");
            let mut allowed = args.clone();
            allowed.extend(["response".to_owned(), "status".to_owned()]);
            self.template(&mut plan.texts, &field, source, &allowed);
            field
        });

        Tool {
            def: declared::tool_def(name, tool),
            method: method(call.method),
            url,
            query,
            headers,
            body,
            pointer,
            template,
            has_output_schema: tool.output_schema.is_some(),
        }
    }

    /// What can be known of a URL template before any argument fills it.
    fn url(&mut self, path: &str, source: &str, base: Option<&Url>, base_url_given: bool) {
        let literal = source.find('{').map_or(source, |at| &source[..at]);
        let absolute = literal.contains("://");
        if !has_template_syntax(source) {
            let parsed = match base {
                Some(base) => base.join(source),
                None if base_url_given => return, // the base_url's own problem is reported
                None if !absolute => {
                    return self.problem(path, "a relative URL needs the backend's base_url");
                }
                None => Url::parse(source),
            };
            match parsed {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                Ok(_) => self.problem(path, "must be an http:// or https:// URL"),
                Err(e) => self.problem(path, format!("not a valid URL: {e}")),
            }
        } else if absolute {
            let scheme = literal.split("://").next().unwrap_or_default().to_ascii_lowercase();
            if !matches!(scheme.as_str(), "http" | "https") {
                self.problem(path, "must be an http:// or https:// URL");
            }
        } else if !base_url_given {
            self.problem(path, "a relative URL needs the backend's base_url");
        }
    }

    fn pointer(&mut self, path: &str, pointer: &str) {
        if !pointer.is_empty() && !pointer.starts_with('/') {
            self.problem(path, "a JSON pointer is empty or starts with '/' (\"/items/0\")");
        } else if pointer.split('~').skip(1).any(|after| !after.starts_with(['0', '1'])) {
            self.problem(path, "'~' in a JSON pointer must be followed by 0 or 1 (~0 is '~', ~1 is '/')");
        }
    }

    fn body(&mut self, texts: &mut TemplateSet, path: &str, value: &Value, args: &BTreeSet<String>) -> Body {
        match value {
            Value::Object(map) => Body::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.body(texts, &format!("{path}.{k}"), v, args)))
                    .collect(),
            ),
            Value::Array(items) => Body::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.body(texts, &format!("{path}.{i}"), v, args))
                    .collect(),
            ),
            Value::String(source) => match sole_variable(source) {
                Some(name) if args.contains(name) => Body::Argument(name.to_owned()),
                Some(name) => {
                    // Let the template set word the problem the same way as for every other template.
                    self.template(texts, path, source, args);
                    Body::Argument(name.to_owned())
                }
                None if has_template_syntax(source) => {
                    self.template(texts, path, source, args);
                    Body::Template(path.to_owned())
                }
                None => Body::Literal(value.clone()),
            },
            other => Body::Literal(other.clone()),
        }
    }
}

fn method(method: HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Head => Method::HEAD,
    }
}

fn has_template_syntax(text: &str) -> bool {
    template_markers(text) > 0
}

fn template_markers(text: &str) -> usize {
    ["{{", "{%", "{#"].iter().map(|m| text.matches(m).count()).sum()
}

/// The `NAME`s of the `${NAME}` in `text` (not of the escaped `$${`).
fn env_names(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        let escaped = rest[..at].ends_with('$');
        rest = &rest[at + 2..];
        if let (false, Some(end)) = (escaped, rest.find('}')) {
            names.push(&rest[..end]);
            rest = &rest[end + 1..];
        }
    }
    names
}

/// The formatter of URL templates: whatever a `{{ … }}` prints is percent-encoded (RFC 3986: all but the
/// unreserved `A-Z a-z 0-9 - . _ ~`), so `/`, `?`, `#` in a value stay inside its segment. A value that is
/// exactly `.` or `..` is refused: URL parsing would read it as a dot segment even encoded.
fn percent_encoding_formatter(
    out: &mut Output,
    _: &mut State,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    if value.is_undefined() {
        return Err(minijinja::Error::new(ErrorKind::UndefinedError, "undefined value"));
    }
    let text = value.to_string();
    if text == "." || text == ".." {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("the value {text:?} cannot be inserted into a URL"),
        ));
    }
    out.write_str(&percent_encode(&text))?;
    Ok(())
}

fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xF)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("a-b.c_d~e"), "a-b.c_d~e");
        assert_eq!(percent_encode("../x?y=1#z"), "..%2Fx%3Fy%3D1%23z");
        assert_eq!(percent_encode("é %"), "%C3%A9%20%25");
    }

    #[test]
    fn env_names_skip_escaped_dollars() {
        assert_eq!(env_names("Bearer ${A} $${B} ${C}"), vec!["A", "C"]);
    }
}
