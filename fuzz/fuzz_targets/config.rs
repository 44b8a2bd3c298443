//! Config loading (`mcpgate-config` load.rs, env.rs, validate.rs): YAML, TOML and JSON texts, then the
//! environment overlay and validation. Nothing may panic; a config that loads must survive a round trip
//! through its own serialization (`mcpgate config default` prints one, `reload` compares them), and the JSON
//! Schema must accept whatever the types accept.
//!
//! Input: a first line naming the format (`yaml`, `toml` or `json`; anything else is YAML), the config text,
//! and optionally a line `---env---` followed by `NAME=value` lines, the environment.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpgate_config::{Config, Format, apply_env, fuzz::schema_problems, parse_str_unchecked, validate};
use mcpgate_fuzz::split_at;
use serde_json::Value;

const ENV_MARKER: &str = "\n---env---\n";

fuzz_target!(|data: &[u8]| {
    let (format, rest) = split_at(data, b'\n');
    let format = match format {
        b"toml" => Format::Toml,
        b"json" => Format::Json,
        _ => Format::Yaml,
    };
    let Ok(rest) = std::str::from_utf8(rest) else { return };
    let (text, env) = rest.split_once(ENV_MARKER).unwrap_or((rest, ""));
    let vars: Vec<(&str, &str)> = env.lines().filter_map(|line| line.split_once('=')).collect();
    let lookup = |name: &str| vars.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned());

    let mut config = match parse_str_unchecked(text, format, "fuzz") {
        Ok(config) => {
            round_trip(&config);
            // The types accepted it: so does the schema that documents them, as written and as serialized.
            if let Some(written) = as_value(text, format) {
                let problems = schema_problems(&written);
                assert!(problems.is_empty(), "the types accept what the schema refuses: {problems:?}");
            }
            let problems = schema_problems(&serde_json::to_value(&config).expect("a config serializes"));
            assert!(problems.is_empty(), "the schema refuses a serialized config: {problems:?}");
            config
        }
        Err(error) => {
            // Every error can be shown.
            let _ = error.to_string();
            Config::default()
        }
    };
    let _ = validate(&config);
    let problems = apply_env(&mut config, lookup);
    for problem in &problems {
        assert!(problem.path.starts_with("env "), "an environment problem without its variable: {problem}");
    }
    let _ = validate(&config);
});

/// A config that loaded loads again, equal, from its JSON and its YAML serialization.
fn round_trip(config: &Config) {
    let json = serde_json::to_string(config).expect("a config serializes to JSON");
    match parse_str_unchecked(&json, Format::Json, "round trip") {
        Ok(again) => assert_eq!(&again, config, "JSON round trip of {json}"),
        Err(e) => panic!("a config's JSON does not load: {e}\n{json}"),
    }
    let yaml = serde_yaml_ng::to_string(config).expect("a config serializes to YAML");
    match parse_str_unchecked(&yaml, Format::Yaml, "round trip") {
        Ok(again) => assert_eq!(&again, config, "YAML round trip of {yaml}"),
        Err(e) => panic!("a config's YAML does not load: {e}\n{yaml}"),
    }
}

/// The text as the loader reads it before the types do (an empty document is an empty object).
fn as_value(text: &str, format: Format) -> Option<Value> {
    let value: Value = match format {
        Format::Yaml => serde_yaml_ng::from_str(text).ok()?,
        Format::Toml => toml::from_str(text).ok()?,
        Format::Json => serde_json::from_str(text).ok()?,
    };
    Some(if value.is_null() { Value::Object(Default::default()) } else { value })
}
