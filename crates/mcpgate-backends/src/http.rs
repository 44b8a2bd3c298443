//! `kind: http` — tools that call an HTTP API.
//!
//! Each call renders its tool's templates with the arguments (method and URL, query, headers, JSON body), sends
//! one request through the backend's client, and turns the response into the result.
//!
//! - **One client per backend**: connections are pooled and kept alive between calls; the backend `timeout`
//!   bounds a whole request, connecting and reading the body included, and its expiry is
//!   [`BackendError::Timeout`]. A request that cannot be delivered (refused, DNS) is
//!   [`BackendError::Unavailable`].
//! - **URLs**: whatever a `{{ … }}` prints into the URL template is percent-encoded, so `../`, `?`, `#` or `/`
//!   in an argument stay inside their segment; a value of exactly `.` or `..` is refused. A relative URL
//!   resolves against `base_url`, read as a directory: `https://h/v1` and `https://h/v1/` both resolve `users`
//!   to `https://h/v1/users`, while `/users` starts from the host's root.
//! - **Query parameters** are form-encoded; one rendering empty, or exactly `{{ name }}` with the argument
//!   absent, is left out.
//! - **Headers**: `${VAR}` in `base_url` and header values is replaced when the config loads, before any
//!   template is compiled, so an argument can never name an environment variable. Header values are marked
//!   sensitive, and the variables' values are cut out of every error text. A rendered header value holding CR,
//!   LF or another control character is a tool error: it never becomes a header.
//! - **Responses**: at most `max_response_size` bytes are read. A non-2xx status is a tool error with the status
//!   and an excerpt of the body (at most 500 characters, secrets cut out). A 2xx JSON response (by
//!   `Content-Type`), narrowed by `pointer`, is the text item and — when it is an object, as MCP requires —
//!   `structuredContent`; a tool declaring an `output_schema` whose result is not an object gets a tool error.
//!   Anything else is text. A response `template` replaces the text and sees `response`, `status` and the
//!   arguments.

mod load;
mod response;

use std::time::Duration;

use async_trait::async_trait;
use mcpgate_config::{HttpBackend, Problem};
use mcpgate_core::{Backend, BackendError, CallContext, ToolCall, ToolDef, ToolOutcome};
use reqwest::{Client, Request, Url, header::HeaderValue};
use serde_json::Value;

use self::load::{Body, HeaderSource, Plan, TemplateSet, Tool};

/// The tools of one `kind: http` backend.
pub struct HttpTools {
    name: String,
    client: Client,
    timeout: Duration,
    max_response_size: u64,
    plan: Plan,
}

impl HttpTools {
    /// Compile the templates and build the HTTP client. Fails with every problem [`check`] would report.
    pub fn new(name: &str, config: &HttpBackend) -> Result<Self, String> {
        let (plan, problems) = load::plan(&format!("backends.{name}"), config);
        if !problems.is_empty() {
            return Err(problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("; "));
        }
        let client = Client::builder()
            .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")))
            // After the user agent, so a configured `User-Agent` header wins.
            .default_headers(plan.headers.clone())
            .timeout(config.timeout.0)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", describe(&e)))?;
        Ok(Self {
            name: name.to_owned(),
            client,
            timeout: config.timeout.0,
            max_response_size: config.max_response_size.0,
            plan,
        })
    }

    /// The request a call makes, or the tool error saying why it cannot be made.
    fn request(&self, tool: &Tool, arguments: &Value) -> Result<Request, String> {
        let texts = &self.plan.texts;
        let rendered = self.plan.urls.render(&tool.url, arguments)?;
        let mut url = match &self.plan.base_url {
            Some(base) => base.join(&rendered),
            None => Url::parse(&rendered),
        }
        // Neither the URL nor the parse error is quoted: the base may hold a secret.
        .map_err(|e| format!("the URL of {} does not parse: {e}", tool.url))?;
        for (param, template, sole) in &tool.query {
            if sole.as_ref().is_some_and(|name| arguments.get(name).is_none_or(Value::is_null)) {
                continue;
            }
            let value = texts.render(template, arguments)?;
            if !value.is_empty() {
                url.query_pairs_mut().append_pair(param, &value);
            }
        }
        let mut request = self.client.request(tool.method.clone(), url);
        for (name, source) in &tool.headers {
            let value = match source {
                HeaderSource::Fixed(value) => value.clone(),
                HeaderSource::Template(template) => {
                    let mut value =
                        HeaderValue::from_str(&texts.render(template, arguments)?).map_err(|_| {
                            format!(
                                "header {name}: the value is not a valid HTTP header value \
                             (control characters such as CR or LF are not allowed)"
                            )
                        })?;
                    value.set_sensitive(true);
                    value
                }
            };
            request = request.header(name, value);
        }
        if let Some(body) =
            tool.body.as_ref().map(|b| render_body(b, texts, arguments)).transpose()?.flatten()
        {
            request = request.json(&body);
        }
        request.build().map_err(|e| format!("cannot build the request: {}", describe(&e.without_url())))
    }

    /// The response as the result; errors from reading the body are transport errors.
    async fn respond(
        &self,
        tool: &Tool,
        mut response: reqwest::Response,
        arguments: &Value,
    ) -> Result<ToolOutcome, BackendError> {
        let status = response.status();
        let json = response::is_json(&response);
        let too_large = || {
            ToolOutcome::error(format!(
                "the response is larger than max_response_size ({})",
                mcpgate_config::ByteSize(self.max_response_size)
            ))
        };
        // A declared length over the limit fails before a byte is read; an undeclared one while streaming.
        if status.is_success() && response.content_length().is_some_and(|n| n > self.max_response_size) {
            return Ok(too_large());
        }
        let limit = response::read_limit(status, self.max_response_size);
        let body = response::read_bounded(&mut response, limit).await.map_err(|e| self.transport_error(e))?;
        if !status.is_success() {
            return Ok(ToolOutcome::error(self.redact(response::status_error(status, &body.bytes))));
        }
        if body.over {
            return Ok(too_large());
        }
        Ok(response::success(tool, &self.plan.texts, status, json, &body.bytes, arguments)
            .unwrap_or_else(|message| ToolOutcome::error(self.redact(message))))
    }

    /// A failed exchange: the deadline, or a server that could not be reached or stopped answering.
    fn transport_error(&self, error: reqwest::Error) -> BackendError {
        if error.is_timeout() {
            return BackendError::Timeout(self.timeout);
        }
        BackendError::unavailable(&self.name, self.redact(describe(&error.without_url())))
    }

    /// `text` with the value of every environment variable the config expanded cut out.
    fn redact(&self, mut text: String) -> String {
        for secret in &self.plan.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[redacted]");
            }
        }
        text
    }
}

#[cfg(feature = "fuzzing")]
impl HttpTools {
    /// The request a call of `tool` with `arguments` would send (or the tool error); `None` for an unknown
    /// tool. For the fuzz targets.
    pub(crate) fn fuzz_request(&self, tool: &str, arguments: &Value) -> Option<Result<Request, String>> {
        Some(self.request(self.plan.tools.get(tool)?, arguments))
    }
}

/// Problems only this backend can see: templates that do not compile or read unknown variables, unset
/// `${VAR}`s, URLs and header names that cannot work, malformed JSON pointers — all of them, with paths.
pub fn check(path: &str, config: &HttpBackend) -> Vec<Problem> {
    load::plan(path, config).1
}

/// The JSON body of a call: `None` when it is a lone `{{ name }}` whose argument is absent. Inside an object an
/// absent argument's key is left out; inside an array its place is `null`, so positions keep their meaning.
fn render_body(body: &Body, texts: &TemplateSet, arguments: &Value) -> Result<Option<Value>, String> {
    Ok(Some(match body {
        Body::Object(fields) => {
            let mut object = serde_json::Map::new();
            for (key, field) in fields {
                if let Some(value) = render_body(field, texts, arguments)? {
                    object.insert(key.clone(), value);
                }
            }
            Value::Object(object)
        }
        Body::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| render_body(item, texts, arguments).map(Option::unwrap_or_default))
                .collect::<Result<_, _>>()?,
        ),
        Body::Argument(name) => return Ok(arguments.get(name).cloned()),
        Body::Template(template) => Value::String(texts.render(template, arguments)?),
        Body::Literal(value) => value.clone(),
    }))
}

/// An error with its cause chain, on one line (reqwest's own message is only the outermost layer).
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[async_trait]
impl Backend for HttpTools {
    fn name(&self) -> &str {
        &self.name
    }

    fn may_contact_client(&self, _tool: &str) -> bool {
        false
    }

    async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
        Ok(self.plan.tools.values().map(|tool| tool.def.clone()).collect())
    }

    async fn call_tool(&self, _cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
        let Some(tool) = self.plan.tools.get(&call.name) else {
            return Err(BackendError::NotFound { kind: "tool", name: call.name });
        };
        let arguments = Value::Object(call.arguments);
        let request = match self.request(tool, &arguments) {
            Ok(request) => request,
            Err(message) => return Ok(ToolOutcome::error(self.redact(message))),
        };
        let started = tokio::time::Instant::now();
        let response = self.client.execute(request).await.map_err(|e| self.transport_error(e))?;
        // Neither the URL nor any header is logged: both may carry secrets.
        tracing::debug!(
            backend = %self.name,
            tool = %call.name,
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "http tool answered"
        );
        self.respond(tool, response, &arguments).await
    }
}
