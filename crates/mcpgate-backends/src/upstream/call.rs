//! One request to an upstream, from the caller's task: sent through rmcp, or for `tools/call` on a stdio
//! upstream through the direct [lane](super::pipe); either way attended the same — what the upstream sends
//! about it reaches the caller's client, and it fails at once when the connection dies or the caller cancels.

use std::time::Duration;

use mcpgate_core::{BackendError, Blame, CallContext, ClientRequestError};
use rmcp::{
    ServiceError,
    model::{
        CancelledNotificationParam, ClientRequest, ErrorData, NumberOrString, ProgressToken, RequestId,
        RequestMetaObject, ServerResult,
    },
    service::PeerRequestOptions,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    Link, Upstream,
    connection::Lane,
    convert, forward,
    http_lane::HttpLane,
    pipe::{Pending, PipeLane},
    read_result,
};

/// Most `input_required` rounds one call may take with an upstream before it is given up.
const MAX_ROUNDS: usize = 10;

/// What one round brought back.
#[allow(clippy::large_enum_variant)] // moved once per round; a box would cost an allocation instead
pub(super) enum Answer {
    /// Through rmcp, typed.
    Typed(ServerResult),
    /// Through the lane: the `result` member as the upstream sent it.
    Raw(Value),
}

/// How a request is sent.
#[derive(Clone, Copy)]
pub(super) enum Via {
    /// rmcp, with this request shape.
    Rmcp(fn(&Value) -> Result<ClientRequest, serde_json::Error>),
    /// `tools/call`: the lane when the connection has one, else rmcp.
    ToolCall,
}

impl Upstream {
    /// Send a request the upstream may answer with `input_required` (2026-07-28 multi round-trip): ask the
    /// caller's client each input request — under the upstream's own keys, through [`CallContext::request_client`]
    /// — and send the request again with the answers and the upstream's `requestState`, until it completes.
    /// A stateless caller answers in its own next round: the call stops with [`BackendError::InputRequired`],
    /// and the caller's retry replays the rounds with the answers it brings.
    pub(super) async fn with_input(
        &self,
        cx: &CallContext,
        mut params: Value,
        via: Via,
    ) -> Result<Answer, BackendError> {
        for _ in 0..MAX_ROUNDS {
            let input = match self.round(cx, &params, via).await? {
                Answer::Typed(ServerResult::InputRequiredResult(input)) => {
                    read_result::<_, Value>(&self.name, &input)?
                }
                Answer::Raw(result)
                    if result.get("resultType").and_then(Value::as_str) == Some("input_required") =>
                {
                    result
                }
                done => return Ok(done),
            };
            let mut responses = serde_json::Map::new();
            // Every request is put to the client before any deferral stops the call, so a stateless client
            // gets all of this round's requests at once.
            let mut deferred = false;
            for (key, asked) in input.get("inputRequests").and_then(Value::as_object).into_iter().flatten() {
                let method = asked.get("method").and_then(Value::as_str).unwrap_or_default();
                let asked_params = asked.get("params").cloned().unwrap_or_else(|| json!({}));
                match cx.request_client(key, method, asked_params).await {
                    Ok(answer) => {
                        responses.insert(key.clone(), answer);
                    }
                    Err(ClientRequestError::Deferred) => deferred = true,
                    Err(ClientRequestError::Unsupported(capability)) => {
                        return Err(BackendError::MissingClientCapability {
                            required: json!({ capability: {} }),
                        });
                    }
                    Err(ClientRequestError::Failed(message)) => {
                        return Err(BackendError::ClientRequest(message));
                    }
                }
            }
            if deferred {
                return Err(BackendError::InputRequired);
            }
            params["inputResponses"] = Value::Object(responses);
            match input.get("requestState") {
                Some(state) => params["requestState"] = state.clone(),
                None => {
                    if let Some(object) = params.as_object_mut() {
                        object.remove("requestState");
                    }
                }
            }
        }
        Err(BackendError::Failed {
            backend: self.name.clone(),
            message: format!("upstream {} still asked for input after {MAX_ROUNDS} rounds", self.name),
            blame: Blame::Upstream,
        })
    }

    /// One round of a request.
    async fn round(&self, cx: &CallContext, params: &Value, via: Via) -> Result<Answer, BackendError> {
        let link = self.link()?;
        match (via, &link.lane) {
            (Via::ToolCall, Some(lane)) => self.on_lane(cx, &link, lane, params).await.map(Answer::Raw),
            (Via::ToolCall, None) => {
                let make = |p: &Value| {
                    Deserialize::deserialize(p)
                        .map(|p| ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(p)))
                };
                self.request(Some(cx), self.make(make, params)?).await.map(Answer::Typed)
            }
            (Via::Rmcp(make), _) => self.request(Some(cx), self.make(make, params)?).await.map(Answer::Typed),
        }
    }

    fn make(
        &self,
        make: fn(&Value) -> Result<ClientRequest, serde_json::Error>,
        params: &Value,
    ) -> Result<ClientRequest, BackendError> {
        make(params).map_err(|e| BackendError::InvalidArguments(format!("{}: {e}", self.name)))
    }

    /// Send one request through rmcp and wait for its result.
    pub(super) async fn request(
        &self,
        cx: Option<&CallContext>,
        request: ClientRequest,
    ) -> Result<ServerResult, BackendError> {
        let link = self.link()?;
        let options = match cx {
            Some(cx) => PeerRequestOptions::with_timeout(self.timeout).with_meta(forward::caller_meta(cx)),
            None => PeerRequestOptions::with_timeout(self.timeout),
        };
        let handle = (link.peer.send_request_with_option(request, options).await)
            .map_err(|e| convert::service_error(&self.name, e))?;
        let (id, token) = (handle.id.clone(), handle.progress_token.clone());
        let response = async {
            match handle.await_response().await {
                Err(ServiceError::TransportClosed) => Err(self.gone(&link).await),
                other => other.map_err(|e| convert::service_error(&self.name, e)),
            }
        };
        self.attend(cx, &link, id, token, response).await
    }

    /// Send `tools/call` on the lane and wait for its `result`.
    async fn on_lane(
        &self,
        cx: &CallContext,
        link: &Link,
        lane: &Lane,
        params: &Value,
    ) -> Result<Value, BackendError> {
        let (mut sent, id, mut meta) = match lane {
            Lane::Pipe(pipe) => {
                let pending = pipe.expect();
                let id = pending.id();
                (Sent::Pipe(pipe, pending), id, pipe.base_meta())
            }
            Lane::Http(http) => (Sent::Http(http), http.next_id(), http.base_meta()),
        };
        let request_id = RequestId::String(id.as_str().into());
        let token = ProgressToken(NumberOrString::String(id.as_str().into()));
        meta.extend(forward::caller_meta(cx));
        meta.set_progress_token(token.clone());
        let line = LaneRequest::new(&id, "tools/call", params, &meta).to_line().map_err(|e| {
            BackendError::InvalidArguments(format!("{}: cannot write the request: {e}", self.name))
        })?;
        let exchange = async {
            match &mut sent {
                Sent::Pipe(pipe, pending) => {
                    if let Err(e) = pipe.write(line).await {
                        return Err(self.unavailable(format!("upstream {}: cannot send: {e}", self.name)));
                    }
                    match (&mut pending.answer).await {
                        Ok(answer) => read_answer(&self.name, &answer),
                        Err(_) => Err(self.gone(link).await),
                    }
                }
                Sent::Http(http) => {
                    let tool = params.get("name").and_then(Value::as_str).unwrap_or_default();
                    http.call(&self.name, cx, &id, &token, tool, line).await
                }
            }
        };
        let response = async {
            match tokio::time::timeout(self.timeout, exchange).await {
                Ok(result) => result,
                Err(_) => {
                    let notice =
                        CancelledNotificationParam::new(Some(request_id.clone()), Some("timed out".into()));
                    let _ = link.peer.notify_cancelled(notice).await;
                    Err(BackendError::Timeout(self.timeout))
                }
            }
        };
        self.attend(Some(cx), link, request_id.clone(), token.clone(), response).await
    }

    /// Wait for `response` while delivering what the upstream sends for the caller (registered under the
    /// request's id and progress token), failing at once when the connection dies or the caller cancels
    /// (which also cancels upstream). Deliveries go one at a time, in the order queued; one under way when the
    /// response comes is finished (a request to the client is dropped instead: its call is over), then what
    /// is still queued follows — all before the result is returned.
    async fn attend<T>(
        &self,
        cx: Option<&CallContext>,
        link: &Link,
        id: RequestId,
        token: ProgressToken,
        response: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let cancel = cx.map(|cx| cx.cancel.clone()).unwrap_or_default();
        let (_in_flight, mut queue) = match cx {
            Some(cx) => {
                let (registration, queue) = link.calls.register(cx, id.clone(), token);
                (Some(registration), Some(queue))
            }
            None => (None, None),
        };
        let mut response = std::pin::pin!(response);
        // What the upstream sends for the caller is delivered from this task, the downstream request's own.
        let mut delivering: Option<(bool, DeliveryFuture<'_>)> = None;
        let result = loop {
            tokio::select! {
                () = async { delivering.as_mut().map(|(_, d)| d).expect("guarded").await }, if delivering.is_some() => {
                    delivering = None;
                }
                Some(delivery) = async { queue.as_mut().expect("guarded").recv().await },
                    if delivering.is_none() && queue.is_some() =>
                {
                    let is_request = matches!(delivery, forward::Delivery::Request { .. });
                    let cx = cx.expect("a queue comes with its caller");
                    delivering = Some((is_request, Box::pin(delivery.deliver(cx))));
                }
                result = &mut response => break result,
                () = link.dead.cancelled() => {
                    break Err(self.unavailable(format!("upstream {} disconnected: {}", self.name, link.reason())));
                }
                () = cancel.cancelled() => {
                    let notice = CancelledNotificationParam::new(Some(id), Some("cancelled by the client".into()));
                    let _ = link.peer.notify_cancelled(notice).await;
                    break Err(BackendError::Cancelled);
                }
            }
        };
        if let Some((false, delivery)) = delivering {
            delivery.await;
        }
        if let (Some(cx), Some(queue)) = (cx, queue.as_mut()) {
            forward::Delivery::drain(queue, cx).await;
        }
        result
    }

    /// The error for a request whose connection closed under it. The transport may see the end before the
    /// supervisor does: it gets a moment to say why.
    async fn gone(&self, link: &Link) -> BackendError {
        let _ = tokio::time::timeout(Duration::from_millis(500), link.dead.cancelled()).await;
        self.unavailable(format!("upstream {} disconnected: {}", self.name, link.reason()))
    }
}

/// A delivery to the caller's client under way.
type DeliveryFuture<'a> = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A lane request on its way: on a pipe its answer arrives through `pending`; over HTTP it is the POST's own
/// response.
enum Sent<'a> {
    Pipe(&'a PipeLane, Pending<'a>),
    Http(&'a HttpLane),
}

/// A request line written on the lane.
#[derive(Serialize)]
struct LaneRequest<'a> {
    jsonrpc: &'static str,
    id: &'a str,
    method: &'static str,
    params: LaneParams<'a>,
}

#[derive(Serialize)]
struct LaneParams<'a> {
    #[serde(flatten)]
    params: &'a Value,
    #[serde(rename = "_meta")]
    meta: &'a RequestMetaObject,
}

impl<'a> LaneRequest<'a> {
    fn new(id: &'a str, method: &'static str, params: &'a Value, meta: &'a RequestMetaObject) -> Self {
        Self { jsonrpc: "2.0", id, method, params: LaneParams { params, meta } }
    }

    fn to_line(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut line = serde_json::to_vec(self)?;
        line.push(b'\n');
        Ok(line)
    }
}

/// The `result` of an answer line, or its `error` as the caller should see it.
pub(super) fn read_answer(name: &str, line: &[u8]) -> Result<Value, BackendError> {
    #[derive(Deserialize)]
    struct Reply {
        result: Option<Value>,
        error: Option<ErrorData>,
    }
    let unreadable = |why: String| BackendError::Failed {
        backend: name.to_owned(),
        message: format!("cannot read the upstream's answer: {why}"),
        blame: Blame::Upstream,
    };
    match serde_json::from_slice::<Reply>(line).map_err(|e| unreadable(e.to_string()))? {
        Reply { error: Some(error), .. } => Err(convert::service_error(name, ServiceError::McpError(error))),
        Reply { result: Some(result), .. } => Ok(result),
        Reply { result: None, error: None } => Err(unreadable("neither a result nor an error".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_request_is_one_json_rpc_line_with_its_meta() {
        let mut meta = RequestMetaObject::default();
        meta.set_progress_token(ProgressToken(NumberOrString::String("~5".into())));
        let params = json!({ "name": "echo", "arguments": { "message": "hi" } });
        let line = LaneRequest::new("~5", "tools/call", &params, &meta).to_line().unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        let sent: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            sent,
            json!({ "jsonrpc": "2.0", "id": "~5", "method": "tools/call", "params": {
                "name": "echo", "arguments": { "message": "hi" }, "_meta": { "progressToken": "~5" } } })
        );
    }

    #[test]
    fn answers_are_results_or_the_upstreams_errors() {
        let ok = read_answer("up", br#"{"jsonrpc":"2.0","id":"~1","result":{"content":[]}}"#).unwrap();
        assert_eq!(ok, json!({ "content": [] }));
        let bad_params =
            read_answer("up", br#"{"jsonrpc":"2.0","id":"~1","error":{"code":-32602,"message":"no"}}"#);
        assert!(matches!(bad_params, Err(BackendError::InvalidArguments(m)) if m.contains("upstream up")));
        let failed =
            read_answer("up", br#"{"jsonrpc":"2.0","id":"~1","error":{"code":-32000,"message":"boom"}}"#);
        assert!(matches!(failed, Err(BackendError::Failed { message, .. }) if message.contains("boom")));
        assert!(read_answer("up", br#"{"jsonrpc":"2.0","id":"~1"}"#).is_err());
    }
}
