//! One request to an upstream, from the caller's task: sent through rmcp, or for `tools/call` through the
//! connection's direct [lane](super::lane) when it has one; either way attended the same — what the upstream sends
//! about it reaches the caller's client, and it fails at once when the connection dies or the caller cancels.

use std::time::Duration;

use mcpgate_core::{BackendError, Blame, CallContext, ClientRequestError};
use rmcp::{
    ServiceError,
    model::{CancelledNotificationParam, ClientRequest, ProgressToken, RequestId, ServerResult},
    service::PeerRequestOptions,
};
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};

use super::{
    Upstream,
    calls::Delivery,
    convert::{self, read_result},
    lane::Lane,
    state::Link,
    wire::caller_meta,
};

/// Most `input_required` rounds one call may take with an upstream before it is given up.
const MAX_ROUNDS: usize = 10;

/// What one round brought back.
#[allow(clippy::large_enum_variant)] // moved once per round; a box would cost an allocation instead
pub(super) enum Answer {
    /// Through rmcp, typed.
    Typed(ServerResult),
    /// Through the lane: the `result` member as the upstream sent it, unparsed.
    Raw(Box<RawValue>),
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
                Answer::Raw(result) if asks_for_input(&result) => {
                    convert::from_raw::<Value>(&self.name, &result)?
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
            Some(cx) => PeerRequestOptions::with_timeout(self.timeout).with_meta(caller_meta(cx)),
            None => PeerRequestOptions::with_timeout(self.timeout),
        };
        let handle = match link.peer.send_request_with_option(request, options).await {
            Ok(handle) => handle,
            Err(ServiceError::TransportClosed | ServiceError::TransportSend(_)) => {
                return Err(self.gone(&link).await);
            }
            Err(e) => return Err(convert::service_error(&self.name, e)),
        };
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
    ) -> Result<Box<RawValue>, BackendError> {
        let sent = lane.call(&self.name, cx, params)?;
        let (request_id, token) = (sent.request_id(), sent.progress_token().clone());
        let exchange = sent.answer(&self.name, cx, self.gone(link));
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
        self.attend(Some(cx), link, request_id.clone(), token, response).await
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
                    let is_request = matches!(delivery, Delivery::Request { .. });
                    let cx = cx.expect("a queue comes with its caller");
                    delivering = Some((is_request, Box::pin(delivery.deliver(cx))));
                }
                result = &mut response => break result,
                () = link.dead.cancelled() => break Err(self.disconnected(link)),
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
            Delivery::drain(queue, cx).await;
        }
        result
    }

    /// The error for a request whose connection closed under it. The transport may see the end before the
    /// supervisor does: it gets a moment to say why.
    async fn gone(&self, link: &Link) -> BackendError {
        let _ = tokio::time::timeout(Duration::from_millis(500), link.dead.cancelled()).await;
        self.disconnected(link)
    }
}

/// A delivery to the caller's client under way.
type DeliveryFuture<'a> = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Whether a lane result is `input_required` rather than complete. Nearly every result is complete and never
/// names the type: those are told by a substring search, without parsing them.
fn asks_for_input(result: &RawValue) -> bool {
    #[derive(Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "resultType", borrow)]
        result_type: Option<std::borrow::Cow<'a, str>>,
    }
    result.get().contains("input_required")
        && serde_json::from_str::<Kind<'_>>(result.get())
            .is_ok_and(|kind| kind.result_type.as_deref() == Some("input_required"))
}
