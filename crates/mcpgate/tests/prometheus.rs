//! `deploy/prometheus/`: the scrape config and the alert rules pass `promtool check`, every alert's unit tests
//! pass `promtool test rules`, and every metric the rules name is one a real `mcpgate serve` exposes.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::{collections::BTreeSet, path::Path, process::Command, time::Duration};

use mcpgate_testkit::have_program;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/prometheus");

/// `promtool`, or `None` when it is not installed and not required (`MCPGATE_REQUIRE_PROMETHEUS=1`).
fn promtool(test: &str) -> Option<&'static str> {
    let program = "promtool";
    have_program(test, program, "MCPGATE_REQUIRE_PROMETHEUS", "apt-get install prometheus").then_some(program)
}

fn run(promtool: &str, args: &[&str]) {
    let out = Command::new(promtool).args(args).current_dir(DIR).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.contains("SUCCESS"), "promtool {args:?}:\n{said}");
}

#[test]
fn the_config_and_rules_check_and_every_alert_passes_its_unit_tests() {
    let Some(promtool) = promtool("the Prometheus rules") else { return };
    run(promtool, &["check", "config", "prometheus.yml"]);
    run(promtool, &["check", "rules", "alerts.yml"]);
    run(promtool, &["test", "rules", "alerts.test.yml"]);
    // Every alert has a unit test.
    let rules = std::fs::read_to_string(Path::new(DIR).join("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(Path::new(DIR).join("alerts.test.yml")).unwrap();
    let alerts: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert!(alerts.len() >= 12, "{alerts:?}");
    for alert in alerts {
        assert!(tests.contains(&format!("alertname: {alert}\n")), "{alert} has no unit test");
    }
}

#[test]
fn every_metric_the_rules_name_is_exposed_by_mcpgate() {
    let rules = std::fs::read_to_string(Path::new(DIR).join("alerts.yml")).unwrap();
    let named: BTreeSet<String> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("mcp_"))
        .map(|word| {
            let base =
                ["_bucket", "_total"].iter().find_map(|suffix| word.strip_suffix(suffix)).unwrap_or(word);
            base.to_owned()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (_gateway, addr) = support::serve(None, &dir.path().join("serve.log"), Duration::from_secs(20));
    let metrics = support::http_get(&addr, "/metrics");
    for name in &named {
        assert!(metrics.contains(&format!("# TYPE {name} ")), "{name} is not exposed:\n{metrics}");
    }
    assert!(named.len() >= 12, "{named:?}");
}
