//! Hostile arguments to config-declared tools (`mcpgate-backends` command/ and http.rs): what a call renders,
//! before anything runs or is sent.
//!
//! - command: each `args` item is exactly one argument (an item rendering empty is dropped; an item that is
//!   exactly `{{ name }}` is dropped when the argument is absent and is one argument per element of an
//!   array), whatever the values hold; no argument holds a NUL; standard input is the value as written.
//! - http: whatever a value holds, the request goes to the configured origin, its path keeps its segments
//!   (a value stays inside its own), the query holds only the configured parameters, header values carry no
//!   control characters, and a body leaf that is exactly `{{ name }}` is the argument's JSON value.
//!
//! Input: the arguments as a JSON object; anything else is the string given to every argument.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mcpgate_backends::{
    command::CommandTools,
    fuzz::{Rendered, command_render, http_request},
    http::HttpTools,
};
use mcpgate_config::{BackendConfig, Format, parse_str};
use serde_json::{Value, json};

const CONFIG: &str = r#"
backends:
  cli:
    kind: command
    tools:
      run:
        description: every kind of args item
        input_schema:
          type: object
          properties: { name: {}, files: {}, opt: {}, a: {}, b: {}, flag: {}, body: {} }
        call:
          program: /bin/sh
          args: ["--name={{ name }}", "{{ files }}", "{{ opt }}", "literal", "{{ a }}{{ b }}", "{% if flag %}-v{% endif %}"]
          stdin: "{{ body }}"
  api:
    kind: http
    base_url: https://api.example.com/v1
    tools:
      item:
        description: path, query, header and body templates
        input_schema:
          type: object
          properties: { id: {}, q: {}, page: {}, trace: {}, name: {}, note: {} }
        call:
          method: POST
          url: "users/{{ id }}/items"
          query: { q: "{{ q }}", page: "p{{ page }}" }
          headers: { x-trace: "{{ trace }}" }
          body: { name: "{{ name }}", note: "hi {{ note }}", fixed: [1, "two"] }
"#;

static TOOLS: LazyLock<(CommandTools, HttpTools)> = LazyLock::new(|| {
    let config = parse_str(CONFIG, Format::Yaml, "fuzz").expect("the fuzz config is valid");
    let (BackendConfig::Command(cli), BackendConfig::Http(api)) =
        (&config.backends["cli"], &config.backends["api"])
    else {
        unreachable!("one command and one http backend")
    };
    (CommandTools::new("cli", cli).expect("builds"), HttpTools::new("api", api).expect("builds"))
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let arguments = match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => object,
        _ => {
            let names =
                ["name", "files", "opt", "a", "b", "flag", "body", "id", "q", "page", "trace", "note"];
            Value::Object(names.iter().map(|n| ((*n).to_owned(), Value::from(text.as_ref()))).collect())
        }
    };
    command(&arguments);
    http(&arguments);
});

fn command(arguments: &Value) {
    let (tools, _) = &*TOOLS;
    let Ok(Rendered { argv, stdin }) = command_render(tools, "run", arguments).expect("a known tool") else {
        return;
    };
    assert!(argv.iter().all(|a| !a.contains('\0')), "a NUL in {argv:?}");
    let string = |name: &str| arguments.get(name).and_then(Value::as_str);
    // How many arguments an item that is exactly `{{ name }}` gives.
    let sole = |name: &str| match arguments.get(name) {
        None | Some(Value::Null) => 0,
        Some(Value::Array(items)) => items.len(),
        Some(Value::String(s)) => usize::from(!s.is_empty()),
        Some(_) => 1,
    };
    // Items: --name=…, files (sole), opt (sole), literal, a+b, the flag.
    let literal = 1 + sole("files") + sole("opt");
    assert!(argv.len() <= literal + 3, "{} arguments from the items: {argv:?}", argv.len());
    assert_eq!(argv.get(literal).map(String::as_str), Some("literal"), "{argv:?}");
    if let Some(name) = string("name") {
        assert_eq!(argv[0], format!("--name={name}"));
    }
    if let Some(body) = string("body") {
        assert_eq!(stdin.as_deref(), Some(body));
    }
}

fn http(arguments: &Value) {
    let (_, tools) = &*TOOLS;
    let Ok(request) = http_request(tools, "item", arguments).expect("a known tool") else { return };
    let url = request.url();
    assert_eq!(
        (url.scheme(), url.host_str(), url.port(), url.username(), url.password()),
        ("https", Some("api.example.com"), None, "", None),
        "{url}"
    );
    let segments: Vec<&str> = url.path_segments().expect("a hierarchical URL").collect();
    assert!(segments.len() == 4 && segments[..2] == ["v1", "users"] && segments[3] == "items", "{url}");
    if let Some(id) = arguments.get("id").and_then(Value::as_str) {
        assert_eq!(percent_decode(segments[2]), id, "{url}");
    }
    assert!(url.fragment().is_none(), "{url}");
    let pairs: Vec<(String, String)> =
        url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    assert!(pairs.iter().all(|(k, _)| k == "q" || k == "page"), "{url}");
    assert!(pairs.iter().filter(|(k, _)| k == "q").count() <= 1, "{url}");
    assert!(pairs.iter().filter(|(k, _)| k == "page").count() == 1, "{url}");
    if let Some(q) = arguments.get("q").and_then(Value::as_str).filter(|q| !q.is_empty()) {
        assert!(pairs.contains(&("q".to_owned(), q.to_owned())), "{url}");
    }
    let trace = request.headers().get("x-trace").expect("the header");
    assert!(trace.as_bytes().iter().all(|&b| b == b'\t' || !b.is_ascii_control()), "{trace:?}");
    if let Some(value) = arguments.get("trace").and_then(Value::as_str) {
        assert_eq!(trace.as_bytes(), value.as_bytes());
    }
    let body: Value = serde_json::from_slice(request.body().and_then(|b| b.as_bytes()).expect("a JSON body"))
        .expect("the body is JSON");
    assert_eq!(body.get("name"), arguments.get("name"), "{body}");
    assert_eq!(body["fixed"], json!([1, "two"]));
    if let Some(note) = arguments.get("note").and_then(Value::as_str) {
        assert_eq!(body["note"], format!("hi {note}"));
    }
}

/// `%XX` decoded (the URL template's own encoding keeps everything else as is).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = segment.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
