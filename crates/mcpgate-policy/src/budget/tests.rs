use std::num::NonZeroU64;

use mcpgate_config::{BudgetConfig, ByteSize, OnExceed};
use mcpgate_core::ToolOutcome;
use serde_json::{Value, json};
use tokio::time::Instant as Wall;

use super::*;

fn budget(max_tokens: Option<u64>, max_bytes: Option<u64>, on_exceed: OnExceed) -> Arc<Budget> {
    let config = BudgetConfig {
        max_tokens: max_tokens.and_then(NonZeroU64::new),
        max_bytes: max_bytes.map(ByteSize),
        on_exceed,
        count_tokens: false,
    };
    Budget::from_config(&config).expect("a limit")
}

fn tokens(text: &str) -> u64 {
    o200k().count(text) as u64
}

fn texts(outcome: &ToolOutcome) -> Vec<&str> {
    outcome.content.iter().filter_map(|item| item["text"].as_str()).collect()
}

/// Prose with multi-byte characters, about `n` KB.
fn prose(kb: usize) -> String {
    let line = "Gateways cut tokens — “Ünïcödé” façade, 東京の天気は晴れ ✓ {\"json\": [1, 2, 3]}\n";
    line.repeat(kb * 1024 / line.len() + 1)
}

#[test]
fn a_result_within_the_limits_goes_whole_and_its_tokens_are_counted() {
    let budget = budget(Some(1000), Some(100 << 10), OnExceed::Truncate);
    let mut outcome = ToolOutcome::text("hello world").with_structured(json!({ "sum": 5 }));
    let before = outcome.clone();
    let applied = budget.apply(&mut outcome);
    assert_eq!(applied.verdict, BudgetVerdict::Within);
    assert_eq!(applied.tokens, Some(tokens("hello world") + tokens(r#"{"sum":5}"#)));
    assert_eq!(outcome, before);
    assert_eq!(
        budget.count_arguments(&json!({ "q": "rust" }).as_object().cloned().unwrap()),
        Some(tokens(r#"{"q":"rust"}"#))
    );
    // Off: no step at all; bytes alone: nothing tokenized.
    assert!(Budget::from_config(&BudgetConfig::default()).is_none());
    let bytes_only = self::budget(None, Some(1 << 10), OnExceed::Truncate);
    assert!(!bytes_only.counts_tokens());
    assert_eq!(bytes_only.apply(&mut ToolOutcome::text("hi")).tokens, None);
}

#[test]
fn a_long_text_is_cut_at_a_token_boundary_under_the_limit_with_a_marker() {
    let budget = budget(Some(1000), None, OnExceed::Truncate);
    let original = prose(20);
    let total = tokens(&original);
    assert!(total > 4000, "{total}");
    let mut outcome = ToolOutcome {
        content: vec![
            json!({ "type": "text", "text": original }),
            json!({ "type": "text", "text": "dropped" }),
        ],
        ..Default::default()
    };
    let applied = budget.apply(&mut outcome);
    let expected_total = total + tokens("dropped");
    assert_eq!(
        applied.verdict,
        BudgetVerdict::Truncated(ResultSize {
            tokens: Some(expected_total),
            bytes: (original.len() + 7) as u64
        })
    );
    let kept = texts(&outcome);
    assert_eq!(kept.len(), 2, "the cut text and the marker: {kept:?}");
    assert!(original.starts_with(kept[0]) && kept[0].len() < original.len());
    assert_eq!(kept[1], format!("[truncated by mcpgate: {expected_total} tokens, limit 1000]"));
    let sent = tokens(kept[0]) + tokens(kept[1]);
    assert_eq!(applied.tokens, Some(sent));
    assert!(
        (950..=1000).contains(&sent),
        "the limit holds, marker included, and little room is wasted: {sent}"
    );
    // The cut text is a token-boundary prefix: its tokens are the first ones of the whole text.
    let whole = o200k().encode(original.as_str());
    let cut = o200k().encode(kept[0]);
    assert_eq!(&whole[..cut.len()], &cut[..]);
}

#[test]
fn a_size_limit_alone_cuts_on_a_character_boundary_without_tokenizing() {
    let budget = budget(None, Some(4 << 10), OnExceed::Truncate);
    let original = prose(10);
    let mut outcome = ToolOutcome::text(original.clone());
    let applied = budget.apply(&mut outcome);
    assert_eq!(
        applied,
        Applied {
            verdict: BudgetVerdict::Truncated(ResultSize { tokens: None, bytes: original.len() as u64 }),
            tokens: None
        }
    );
    let kept = texts(&outcome);
    assert!(original.starts_with(kept[0]));
    assert_eq!(kept[1], format!("[truncated by mcpgate: {} bytes, limit 4096]", original.len()));
    let bytes: usize = kept.iter().map(|t| t.len()).sum();
    assert!((4000..=4096).contains(&bytes), "{bytes}");
}

#[test]
fn images_count_as_bytes_not_tokens_and_are_dropped_whole() {
    let image = json!({ "type": "image", "data": "A".repeat(40 << 10), "mimeType": "image/png" });
    let mut outcome = ToolOutcome {
        content: vec![json!({ "type": "text", "text": "a chart:" }), image],
        ..Default::default()
    };
    let by_tokens = budget(Some(100), None, OnExceed::Truncate);
    let applied = by_tokens.apply(&mut outcome.clone());
    assert_eq!(applied.verdict, BudgetVerdict::Within, "40 KB of image is no token");
    let by_bytes = budget(None, Some(8 << 10), OnExceed::Truncate);
    let applied = by_bytes.apply(&mut outcome);
    assert!(matches!(applied.verdict, BudgetVerdict::Truncated(size) if size.bytes == 8 + (40 << 10)));
    assert_eq!(outcome.content.len(), 2);
    assert_eq!(outcome.content[0]["text"], "a chart:");
    assert!(outcome.content[1]["text"].as_str().unwrap().starts_with("[truncated by mcpgate: 40968 bytes"));
}

#[test]
fn refuse_answers_a_tool_error_naming_the_size() {
    let budget = budget(Some(100), Some(1 << 20), OnExceed::Refuse);
    let mut meta = serde_json::Map::new();
    meta.insert("trace".into(), json!("t-1"));
    let mut outcome = ToolOutcome { meta: Some(meta.clone()), ..ToolOutcome::text(prose(2)) };
    let total = tokens(&prose(2));
    let applied = budget.apply(&mut outcome);
    assert_eq!(
        applied.verdict,
        BudgetVerdict::Refused(ResultSize { tokens: Some(total), bytes: prose(2).len() as u64 })
    );
    assert!(outcome.is_error);
    let text = texts(&outcome)[0];
    assert!(text.contains(&format!("{total} tokens, limit 100")) && text.contains("Ask for less"), "{text}");
    assert_eq!(applied.tokens, Some(tokens(text)));
    assert_eq!(outcome.meta, Some(meta), "_meta stays");
}

#[test]
fn structured_content_that_does_not_fit_cannot_be_cut_and_is_refused() {
    let budget = budget(Some(200), None, OnExceed::Truncate);
    let rows: Vec<Value> = (0..200).map(|i| json!({ "id": i, "name": format!("row {i}") })).collect();
    let mut outcome = ToolOutcome::text("200 rows").with_structured(json!({ "rows": rows }));
    let applied = budget.apply(&mut outcome);
    assert!(matches!(applied.verdict, BudgetVerdict::Refused(_)), "{applied:?}");
    assert!(outcome.is_error && outcome.structured_content.is_none());
    // Structured content that fits stays whole, and the text beside it is cut.
    let mut outcome = ToolOutcome::text(prose(4)).with_structured(json!({ "rows": 3 }));
    let applied = budget.apply(&mut outcome);
    assert!(matches!(applied.verdict, BudgetVerdict::Truncated(_)), "{applied:?}");
    assert_eq!(outcome.structured_content, Some(json!({ "rows": 3 })));
    assert!(applied.tokens.unwrap() <= 200);
}

#[test]
fn a_piece_longer_than_the_limit_is_cut_inside_it() {
    // One pre-tokenizer piece of thousands of tokens (letters only, no space): cut inside it, not dropped.
    let budget = budget(Some(100), None, OnExceed::Truncate);
    let word: String = "Donaudampfschifffahrtsgesellschaftskapitän".repeat(200);
    let mut outcome = ToolOutcome::text(word.clone());
    let applied = budget.apply(&mut outcome);
    let kept = texts(&outcome);
    assert!(!kept[0].is_empty() && word.starts_with(kept[0]), "{kept:?}");
    assert!(applied.tokens.unwrap() <= 100 && applied.tokens.unwrap() >= 90, "{applied:?}");
}

/// Counting is deterministic over a large text, loaded or not. The time it takes is printed (the figure
/// `cargo test --release -p mcpgate-policy counting_100_kb -- --nocapture` gives), not asserted: speed is
/// measured, not tested.
#[test]
fn counting_100_kb_is_deterministic() {
    let text = prose(100);
    let started = Wall::now();
    let first = o200k().count(text.as_str());
    let loaded = started.elapsed();
    assert!(first > 10_000, "{first}");
    let started = Wall::now();
    for _ in 0..5 {
        assert_eq!(o200k().count(text.as_str()), first);
    }
    let per_count = started.elapsed() / 5;
    eprintln!("o200k: load + first count {loaded:?}; count of {} bytes: {per_count:?}", text.len());
}

#[test]
fn a_resource_read_is_held_to_the_budget_as_a_tool_result_is() {
    let long = prose(8);
    let contents = || {
        json!({ "contents": [
            { "uri": "docs://a", "mimeType": "text/plain", "text": "short" },
            { "uri": "docs://b", "mimeType": "text/plain", "text": long },
            { "uri": "docs://c", "mimeType": "image/png", "blob": "aGVsbG8=" },
        ] })
        .as_object()
        .cloned()
        .unwrap()
    };
    // Within: untouched.
    let mut whole = contents();
    let within =
        budget(None, Some(64 << 10), OnExceed::Truncate).apply_contents(&mut whole, Contents::Resource);
    assert_eq!(within.unwrap().verdict, BudgetVerdict::Within);
    assert_eq!(whole, contents());
    // Over: the first item whole, the second cut, the third dropped, then the marker as a text resource.
    let mut cut = contents();
    let applied =
        budget(None, Some(1024), OnExceed::Truncate).apply_contents(&mut cut, Contents::Resource).unwrap();
    assert!(matches!(applied.verdict, BudgetVerdict::Truncated(_)), "{applied:?}");
    let items = cut["contents"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{items:#?}");
    assert_eq!(items[0], contents()["contents"][0]);
    let kept = items[1]["text"].as_str().unwrap();
    assert!(kept.len() < 1024 && long.starts_with(kept) && items[1]["uri"] == "docs://b", "{items:#?}");
    assert_eq!(items[2]["uri"], "docs://a");
    assert!(items[2]["text"].as_str().unwrap().starts_with("[truncated by mcpgate:"), "{items:#?}");
    assert!(serde_json::to_string(&cut).unwrap().len() < 1600);
    // Refused: the result stays as it was for nobody; the refusal says why.
    let mut refused = contents();
    let refusal = budget(None, Some(1024), OnExceed::Refuse).apply_contents(&mut refused, Contents::Resource);
    assert!(refusal.unwrap_err().starts_with("result refused by mcpgate:"));
}

#[test]
fn a_prompts_messages_are_held_to_the_budget_and_keep_their_roles() {
    let long = prose(4);
    let mut prompt = json!({ "description": "d", "messages": [
        { "role": "user", "content": { "type": "text", "text": "You are terse." } },
        { "role": "assistant", "content": { "type": "text", "text": long } },
    ] })
    .as_object()
    .cloned()
    .unwrap();
    let applied =
        budget(None, Some(512), OnExceed::Truncate).apply_contents(&mut prompt, Contents::Prompt).unwrap();
    assert!(matches!(applied.verdict, BudgetVerdict::Truncated(_)));
    let messages = prompt["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert_eq!(
        (&messages[0]["role"], &messages[1]["role"], &messages[2]["role"]),
        (&json!("user"), &json!("assistant"), &json!("user"))
    );
    assert!(messages[1]["content"]["text"].as_str().unwrap().len() < 512);
    assert!(messages[2]["content"]["text"].as_str().unwrap().starts_with("[truncated by mcpgate:"));
    assert_eq!(prompt["description"], "d");
}
