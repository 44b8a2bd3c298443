//! The `/mcp` edge's checks of a POST (`edge::guard`): media type, UTF-8, nesting depth, JSON, the JSON-RPC
//! envelope, and the JSON-RPC error body of every refusal.
//!
//! Input: the `Content-Type` value, a newline, then the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpgate_fuzz::{split_at, text_depth};
use mcpgate_server::fuzz::{self, EdgeVerdict, HeaderMap, HeaderValue, MAX_DEPTH};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = split_at(data, b'\n');
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(content_type) {
        headers.insert("content-type", value);
    }
    // Written apart from the edge: the media type, parameters aside, is application/json.
    let json_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
    let parsed = serde_json::from_slice::<Value>(body).ok();
    // The depth scan agrees with a real parser on every document that parser reads — duplicate keys included,
    // which a parsed `Value` drops (found after an hour: `{"_meta":{…},"_meta":"x"}`).
    if parsed.is_some() {
        assert_eq!(Some(fuzz::nesting_depth(body)), text_depth(body), "depth of a valid document");
    }

    let verdict = fuzz::edge(&headers, body);
    assert_eq!(format!("{:?}", fuzz::edge(&headers, body)), format!("{verdict:?}"), "deterministic");
    // Written apart from the edge: what a well-formed JSON-RPC message is.
    let well_formed = json_type
        && parsed.as_ref().is_some_and(|value| {
            let fields = value.as_object();
            let get = |key: &str| fields.and_then(|f| f.get(key)).filter(|v| !v.is_null());
            text_depth(body).is_some_and(|depth| depth <= MAX_DEPTH)
                && get("jsonrpc") == Some(&Value::from("2.0"))
                && get("method").is_none_or(Value::is_string)
                && (get("method").is_some() || get("result").is_some() || get("error").is_some())
                && TopKeys::of(body).is_some_and(|keys| keys.unique())
        });
    match verdict {
        EdgeVerdict::Passed { id, method } => {
            assert!(json_type, "passed without a JSON media type");
            let value = parsed.expect("passed a body that is not JSON");
            assert!(
                text_depth(body).is_some_and(|depth| depth <= MAX_DEPTH),
                "passed a body nested too deep"
            );
            let object = value.as_object().expect("passed a body that is not an object");
            assert_eq!(object.get("jsonrpc"), Some(&Value::from("2.0")));
            assert_eq!(id.unwrap_or(Value::Null), object.get("id").cloned().unwrap_or(Value::Null));
            assert_eq!(method.map(Value::from), object.get("method").cloned().filter(|m| !m.is_null()));
            let present = |key: &str| object.get(key).is_some_and(|v| !v.is_null());
            assert!(present("method") || present("result") || present("error"));
        }
        EdgeVerdict::Refused { status, body: answer } => {
            let answer: Value = serde_json::from_slice(&answer).expect("a refusal's body is JSON");
            assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
            assert!(answer["error"]["message"].is_string(), "{answer}");
            let code = answer["error"]["code"].as_i64();
            match status {
                415 => assert!(!json_type && code == Some(-32600), "{answer}"),
                400 => assert!(json_type && matches!(code, Some(-32700 | -32600)), "{answer}"),
                other => panic!("refused with status {other}: {answer}"),
            }
            // A body that is valid JSON is never called a parse error, unless it is too deep.
            if let (Some(_), Some(-32700)) = (&parsed, code) {
                assert!(
                    text_depth(body).is_some_and(|depth| depth > MAX_DEPTH),
                    "a parse error for valid JSON: {answer}"
                );
            }
            assert!(!well_formed, "refused a well-formed message: {answer}");
        }
    }
});

/// The keys of a JSON object, in order and with repeats (a `Value` keeps the last of a repeated key).
struct TopKeys(Vec<String>);

impl TopKeys {
    fn of(body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }

    fn unique(&self) -> bool {
        let mut keys = self.0.clone();
        keys.sort();
        keys.windows(2).all(|pair| pair[0] != pair[1])
    }
}

impl<'de> serde::Deserialize<'de> for TopKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = TopKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<TopKeys, A::Error> {
                let mut keys = Vec::new();
                while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    keys.push(key);
                }
                Ok(TopKeys(keys))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}
