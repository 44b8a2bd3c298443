//! Sealed `requestState` (`dispatch.rs`: `seal_answers`, `open_answers`, `binding`; rmcp's
//! `RequestStateCodec`): what a client sends back as a multi-round call's state is attacker-controlled.
//!
//! - Arbitrary bytes are never accepted as a state (a forgery needs the key).
//! - Sealing then opening for the same operation gives the answers back; a state opens only for the
//!   operation it was sealed for (method, target and arguments: the binding never mixes two operations up),
//!   never under another key, and an altered state never opens to anything but what was sealed.
//!
//! Input: lines `op A`, `arguments A` (JSON), `op B`, `arguments B`, `answers` (JSON object), then a token.
//! An op is `tool NAME`, `prompt NAME` or `resource URI`.

#![no_main]

use std::{collections::BTreeMap, sync::LazyLock};

use libfuzzer_sys::fuzz_target;
use mcpgate_core::{JsonObject, Operation};
use mcpgate_server::fuzz::{Sealer, binding};
use serde_json::Value;

static KEY: LazyLock<Sealer> = LazyLock::new(|| Sealer::new(b"fuzz-seal-key-0123456789abcdefghij").unwrap());
static OTHER_KEY: LazyLock<Sealer> =
    LazyLock::new(|| Sealer::new(b"fuzz-seal-key-other-0123456789abcd").unwrap());

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(6, '\n');
    let mut line = || lines.next().unwrap_or("");
    let (a, a_arguments) = (line(), line());
    let (b, b_arguments) = (line(), line());
    let (answers, token) = (line(), line());
    let a = operation(a, a_arguments);
    let b = operation(b, b_arguments);
    let answers: BTreeMap<String, Value> = serde_json::from_str(answers)
        .unwrap_or_else(|_| BTreeMap::from([("k".to_owned(), Value::from(answers))]));

    assert_eq!(KEY.open(&a, token), None, "accepted a state it never sealed: {token:?}");

    let sealed = KEY.seal(&a, &answers).expect("answers seal");
    assert_eq!(KEY.open(&a, &sealed).as_ref(), Some(&answers), "round trip");
    assert_eq!(OTHER_KEY.open(&a, &sealed), None, "opened under another key");
    let same = identity(&a) == identity(&b);
    assert_eq!(binding(&a) == binding(&b), same, "binding of {a:?} and {b:?}");
    match KEY.open(&b, &sealed) {
        Some(opened) => assert!(same && opened == answers, "a state of {a:?} opened for {b:?}"),
        None => assert!(!same, "a state refused for its own operation"),
    }

    // Alter the state where the token's bytes say; whatever opens must be what was sealed.
    let mut altered = sealed.clone().into_bytes();
    for pair in token.as_bytes().chunks(2).take(8) {
        let at = usize::from(pair[0]) * 131 % altered.len().max(1);
        match pair.get(1) {
            Some(&b) if !altered.is_empty() => altered[at] = b,
            _ => altered.truncate(at),
        }
    }
    if let Ok(altered) = String::from_utf8(altered)
        && let Some(opened) = KEY.open(&a, &altered)
    {
        assert_eq!(opened, answers, "an altered state {altered:?} opened to other answers");
    }
});

fn operation(spec: &str, arguments: &str) -> Operation {
    let (kind, target) = spec.split_once(' ').unwrap_or(("tool", spec));
    let arguments: JsonObject = serde_json::from_str(arguments).unwrap_or_default();
    match kind {
        "prompt" => Operation::GetPrompt { name: target.to_owned(), arguments },
        "resource" => Operation::ReadResource { uri: target.to_owned() },
        _ => Operation::CallTool { name: target.to_owned(), arguments },
    }
}

/// What makes two multi-round operations the same one, written apart from the binding.
fn identity(op: &Operation) -> (&'static str, &str, Option<&JsonObject>) {
    match op {
        Operation::CallTool { name, arguments } => ("tool", name, Some(arguments)),
        Operation::GetPrompt { name, arguments } => ("prompt", name, Some(arguments)),
        Operation::ReadResource { uri } => ("resource", uri, None),
        _ => unreachable!("only these run in rounds"),
    }
}
