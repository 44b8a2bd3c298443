//! Unit tests of the conformance surface, with a fake client peer for the multi round-trip tools.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use mcpgate_core::{Backend, BackendError, CallContext, ClientPeer, ClientRequestError, LogLevel, ToolCall};
use serde_json::{Value, json};

use super::{AUDIO_WAV_BASE64, Conformance};

/// One progress notification: token, progress, total, message.
type Progress = (Value, f64, Option<f64>, Option<String>);

/// A client that answers requests from a map and defers the rest, recording what it saw.
#[derive(Default)]
struct FakePeer {
    answers: HashMap<String, Value>,
    capabilities: Value,
    /// `(key, method, answered)` of every request, in order.
    requests: Mutex<Vec<(String, String, bool)>>,
    progress: Mutex<Vec<Progress>>,
    logs: Mutex<Vec<(LogLevel, Value)>>,
}

impl FakePeer {
    fn answering(answers: &[(&str, Value)]) -> Arc<Self> {
        let answers = answers.iter().map(|(key, value)| ((*key).to_owned(), value.clone())).collect();
        Arc::new(Self {
            answers,
            capabilities: json!({"sampling": {}, "elicitation": {}}),
            ..Self::default()
        })
    }

    fn deferred_keys(&self) -> Vec<String> {
        let requests = self.requests.lock().unwrap();
        requests.iter().filter(|(_, _, answered)| !answered).map(|(key, ..)| key.clone()).collect()
    }

    fn methods(&self) -> Vec<String> {
        self.requests.lock().unwrap().iter().map(|(_, method, _)| method.clone()).collect()
    }
}

#[async_trait]
impl ClientPeer for FakePeer {
    async fn progress(&self, token: &Value, progress: f64, total: Option<f64>, message: Option<String>) {
        self.progress.lock().unwrap().push((token.clone(), progress, total, message));
    }

    async fn log(&self, level: LogLevel, _logger: Option<&str>, data: Value) {
        self.logs.lock().unwrap().push((level, data));
    }

    async fn request(&self, key: &str, method: &str, _params: Value) -> Result<Value, ClientRequestError> {
        let answer = self.answers.get(key).cloned();
        self.requests.lock().unwrap().push((key.to_owned(), method.to_owned(), answer.is_some()));
        answer.ok_or(ClientRequestError::Deferred)
    }

    fn client_capabilities(&self) -> Value {
        self.capabilities.clone()
    }
}

fn context(peer: &Arc<FakePeer>) -> CallContext {
    let mut cx = CallContext::detached("test");
    cx.peer = Some(peer.clone());
    cx
}

fn accept(content: Value) -> Value {
    json!({ "action": "accept", "content": content })
}

async fn call_with(cx: &CallContext, name: &str) -> Result<mcpgate_core::ToolOutcome, BackendError> {
    Conformance::new("conformance")
        .call_tool(cx, ToolCall { name: name.into(), arguments: Default::default() })
        .await
}

async fn text_of(cx: &CallContext, name: &str) -> String {
    let outcome = call_with(cx, name).await.unwrap();
    outcome.content[0]["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn listed_tools_have_valid_names_descriptions_and_object_schemas() {
    let tools = Conformance::new("c").list_tools().await.unwrap();
    assert!(tools.len() >= 25);
    for tool in &tools {
        let name_ok = (1..=64).contains(&tool.name.len())
            && tool.name.chars().all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c));
        assert!(name_ok, "{}", tool.name);
        assert!(tool.description.as_deref().is_some_and(|d| !d.is_empty()), "{}", tool.name);
        assert_eq!(tool.input_schema.get("type"), Some(&json!("object")), "{}", tool.name);
    }
    for diagnostic in ["test_missing_capability", "test_streaming_elicitation", "test_logging_tool"] {
        assert!(tools.iter().any(|tool| tool.name == diagnostic), "{diagnostic}");
    }
    assert!(!tools.iter().any(|tool| tool.name.starts_with("test_trigger_")));
}

#[tokio::test]
async fn content_tools_return_the_exact_items() {
    let cx = CallContext::detached("t");
    assert_eq!(text_of(&cx, "test_simple_text").await, "This is a simple text response for testing.");
    let audio = call_with(&cx, "test_audio_content").await.unwrap();
    assert_eq!(
        audio.content,
        vec![json!({"type": "audio", "data": AUDIO_WAV_BASE64, "mimeType": "audio/wav"})]
    );
    let mixed = call_with(&cx, "test_multiple_content_types").await.unwrap();
    let kinds: Vec<_> = mixed.content.iter().map(|item| item["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["text", "image", "resource"]);
    assert_eq!(mixed.content[2]["resource"]["text"], r#"{"test":"data","value":123}"#);
    let error = call_with(&cx, "test_error_handling").await.unwrap();
    assert!(error.is_error);
    assert_eq!(error.content[0]["text"], "This tool intentionally returns an error for testing");
    assert!(matches!(call_with(&cx, "nope").await, Err(BackendError::NotFound { kind: "tool", .. })));
}

#[tokio::test(start_paused = true)]
async fn progress_echoes_the_token_and_logging_sends_three_messages() {
    let peer = FakePeer::answering(&[]);
    let mut cx = context(&peer);
    cx.progress_token = Some(json!("progress-test-1"));
    assert_eq!(text_of(&cx, "test_tool_with_progress").await, "progress-test-1");
    let progress = peer.progress.lock().unwrap().clone();
    let steps: Vec<_> = progress.iter().map(|(token, p, total, _)| (token.clone(), *p, *total)).collect();
    assert_eq!(steps, [0.0, 50.0, 100.0].map(|p| (json!("progress-test-1"), p, Some(100.0))));
    assert_eq!(progress[0].3.as_deref(), Some("Completed step 0 of 100"));
    cx.progress_token = Some(json!(7));
    assert_eq!(text_of(&cx, "test_tool_with_progress").await, "7");

    assert_eq!(text_of(&cx, "test_tool_with_logging").await, "Tool with logging executed successfully");
    let logs = peer.logs.lock().unwrap().clone();
    assert_eq!(logs.len(), 3);
    assert_eq!(logs[0], (LogLevel::Info, json!("Tool execution started")));
}

#[tokio::test]
async fn sampling_and_elicitation_build_their_texts_from_the_answers() {
    let sampled = json!({"role": "assistant", "content": {"type": "text", "text": "Hi"}, "model": "m"});
    let peer = FakePeer::answering(&[
        ("sampling_request", sampled),
        ("elicitation_request", accept(json!({"a": 1}))),
    ]);
    let cx = context(&peer);
    let backend = Conformance::new("c");
    let arguments = json!({"prompt": "p", "message": "m"}).as_object().cloned().unwrap();
    let call = |name: &str| ToolCall { name: name.into(), arguments: arguments.clone() };
    let out = backend.call_tool(&cx, call("test_sampling")).await.unwrap();
    assert_eq!(out.content[0]["text"], "LLM response: Hi");
    let out = backend.call_tool(&cx, call("test_elicitation")).await.unwrap();
    assert_eq!(out.content[0]["text"], r#"User response: action=accept, content={"a":1}"#);
    let missing =
        backend.call_tool(&cx, ToolCall { name: "test_sampling".into(), arguments: Default::default() });
    assert!(matches!(missing.await, Err(BackendError::InvalidArguments(_))));
}

#[tokio::test]
async fn multi_round_asks_one_step_per_round() {
    let peer = FakePeer::answering(&[]);
    let result = call_with(&context(&peer), "test_input_required_result_multi_round").await;
    assert!(matches!(result, Err(BackendError::InputRequired)));
    assert_eq!(peer.deferred_keys(), ["step1"]);

    let peer = FakePeer::answering(&[("step1", accept(json!({"name": "Alice"})))]);
    let result = call_with(&context(&peer), "test_input_required_result_multi_round").await;
    assert!(matches!(result, Err(BackendError::InputRequired)));
    assert_eq!(peer.deferred_keys(), ["step2"]);

    let peer = FakePeer::answering(&[
        ("step1", accept(json!({"name": "Alice"}))),
        ("step2", accept(json!({"color": "blue"}))),
    ]);
    let text = text_of(&context(&peer), "test_input_required_result_multi_round").await;
    assert_eq!(text, "Multi-round complete for Alice who likes blue");
}

#[tokio::test]
async fn multiple_inputs_asks_all_three_in_the_first_round() {
    let peer = FakePeer::answering(&[]);
    let result = call_with(&context(&peer), "test_input_required_result_multiple_inputs").await;
    assert!(matches!(result, Err(BackendError::InputRequired)));
    assert_eq!(peer.deferred_keys(), ["user_name", "greeting", "client_roots"]);
    assert_eq!(peer.methods(), ["elicitation/create", "sampling/createMessage", "roots/list"]);

    let peer = FakePeer::answering(&[
        ("user_name", accept(json!({"name": "Alice"}))),
        ("greeting", json!({"role": "assistant", "content": {"type": "text", "text": "Hey"}, "model": "m"})),
        ("client_roots", json!({"roots": [{"uri": "file:///test/root", "name": "Test Root"}]})),
    ]);
    let text = text_of(&context(&peer), "test_input_required_result_multiple_inputs").await;
    assert_eq!(text, "Name: Alice; Greeting: Hey; Roots: 1");
}

#[tokio::test]
async fn elicitation_answers_are_checked_without_panicking() {
    let peer = FakePeer::answering(&[("user_name", accept(json!({"name": "Alice"})))]);
    assert_eq!(text_of(&context(&peer), "test_input_required_result_elicitation").await, "Hello, Alice!");
    let peer = FakePeer::answering(&[("user_name", json!({"action": "decline"}))]);
    assert_eq!(text_of(&context(&peer), "test_input_required_result_elicitation").await, "Hello, unknown!");
    let peer = FakePeer::answering(&[("user_name", json!(12345))]);
    let result = call_with(&context(&peer), "test_input_required_result_elicitation").await;
    assert!(matches!(result, Err(BackendError::InvalidArguments(_))));
}

#[tokio::test]
async fn capabilities_tool_asks_only_for_declared_capabilities() {
    let mut peer = FakePeer::answering(&[]);
    Arc::get_mut(&mut peer).unwrap().capabilities = json!({"sampling": {}});
    let result = call_with(&context(&peer), "test_input_required_result_capabilities").await;
    assert!(matches!(result, Err(BackendError::InputRequired)));
    assert_eq!(peer.methods(), ["sampling/createMessage"]);

    let mut peer = FakePeer::answering(&[("sample_input", json!({"role": "assistant", "content": {}}))]);
    Arc::get_mut(&mut peer).unwrap().capabilities = json!({"sampling": {}});
    let text = text_of(&context(&peer), "test_input_required_result_capabilities").await;
    assert_eq!(text, "capabilities-ok: received sample_input");
    assert!(!peer.methods().iter().any(|method| method == "elicitation/create"));
}

#[tokio::test]
async fn missing_capability_needs_sampling() {
    let mut peer = FakePeer::answering(&[]);
    Arc::get_mut(&mut peer).unwrap().capabilities = json!({});
    let result = call_with(&context(&peer), "test_missing_capability").await;
    let Err(BackendError::MissingClientCapability { required }) = result else { panic!("{result:?}") };
    assert_eq!(required, json!({"sampling": {}}));
    assert_eq!(text_of(&context(&FakePeer::answering(&[])), "test_missing_capability").await, "Success");
}

#[tokio::test]
async fn resources_read_static_and_template_uris() {
    let backend = Conformance::new("c");
    let cx = CallContext::detached("t");
    let text = backend.read_resource(&cx, "test://static-text").await.unwrap();
    assert_eq!(text["contents"][0]["text"], "This is the content of the static text resource.");
    let binary = backend.read_resource(&cx, "test://static-binary").await.unwrap();
    assert_eq!(binary["contents"][0]["mimeType"], "image/png");
    assert!(binary["contents"][0]["blob"].is_string());
    let templated = backend.read_resource(&cx, "test://template/123/data").await.unwrap();
    assert_eq!(templated["contents"][0]["uri"], "test://template/123/data");
    assert_eq!(
        templated["contents"][0]["text"],
        r#"{"id":"123","templateTest":true,"data":"Data for ID: 123"}"#
    );
    assert!(backend.owns_resource("test://template/9/data").await);
    assert!(!backend.owns_resource("test://template//data").await);
    let missing = backend.read_resource(&cx, "test://nonexistent-resource-for-conformance-testing").await;
    assert!(matches!(missing, Err(BackendError::NotFound { kind: "resource", .. })));
}

#[tokio::test]
async fn prompts_render_arguments_and_require_them() {
    let backend = Conformance::new("c");
    let cx = CallContext::detached("t");
    let prompts = backend.list_prompts().await.unwrap();
    assert!(prompts.iter().all(|prompt| prompt.description.is_some()));
    let arguments = json!({"arg1": "testValue1", "arg2": "testValue2"}).as_object().cloned().unwrap();
    let rendered = backend.get_prompt(&cx, "test_prompt_with_arguments", arguments).await.unwrap();
    assert_eq!(
        rendered["messages"][0]["content"]["text"],
        "Prompt with arguments: arg1='testValue1', arg2='testValue2'"
    );
    let missing = backend.get_prompt(&cx, "test_prompt_with_arguments", Default::default()).await;
    assert!(matches!(missing, Err(BackendError::InvalidArguments(_))));

    let peer = FakePeer::answering(&[("user_context", accept(json!({"context": "test context"})))]);
    let cx = context(&peer);
    let rendered = backend.get_prompt(&cx, "test_input_required_result_prompt", Default::default());
    let rendered = rendered.await.unwrap();
    assert_eq!(rendered["messages"][0]["content"]["text"], "Prompt with context: test context");

    let reference = json!({"type": "ref/prompt", "name": "test_prompt_with_arguments"});
    let completion = backend.complete(&reference, "arg1", "testi", &Default::default()).await.unwrap();
    assert_eq!(completion.values, ["testing"]);
}
