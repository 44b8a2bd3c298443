//! Templates of config-declared tools (`mcpgate-backends` template.rs): any template source compiles or is
//! refused, any compiled template renders or fails, within its fuel, whatever the arguments. Argument values
//! are data: a value is printed as its characters and never evaluated, and a template that `sole_variable`
//! calls exactly one variable prints exactly that argument.
//!
//! Input: the template source, a NUL byte, the arguments (a JSON object; anything else is the string `x`).

#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use mcpgate_backends::template::{Templates, argument_names, expand_env, sole_variable};
use mcpgate_fuzz::split_at;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let (source, arguments) = split_at(data, 0);
    let (Ok(source), arguments) = (std::str::from_utf8(source), String::from_utf8_lossy(arguments)) else {
        return;
    };
    let context = match serde_json::from_str::<Value>(&arguments) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({ "x": arguments }),
    };
    let mut allowed: BTreeSet<String> = argument_names(&json!({ "properties": context }));
    allowed.insert("x".into());

    let mut templates = Templates::default();
    if templates.add("t", source, &allowed).is_ok() {
        let _ = templates.render("t", &context);
    }
    let _ = expand_env(source);

    // Values are printed as their characters, whatever they hold.
    let x = context["x"].as_str().map_or_else(|| arguments.to_string(), str::to_owned);
    let values = json!({ "x": x });
    templates.add("plain", "{{ x }}", &allowed).expect("compiles");
    templates.add("framed", "[{{ x }}]", &allowed).expect("compiles");
    assert_eq!(templates.render("plain", &values).as_deref(), Ok(x.as_str()));
    assert_eq!(templates.render("framed", &values), Ok(format!("[{x}]")));

    // What `sole_variable` calls one variable prints that variable.
    if let Some(name) = sole_variable(source) {
        let allowed = BTreeSet::from([name.to_owned()]);
        let mut sole = Templates::default();
        if sole.add("sole", source.trim(), &allowed).is_ok() {
            let rendered = sole.render("sole", &json!({ name: x }));
            assert_eq!(rendered.as_deref(), Ok(x.as_str()), "{source:?} as the sole variable {name:?}");
        }
    }
});
