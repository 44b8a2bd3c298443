//! `mcpgate-bench-tokens`: counts o200k_base tokens (the GPT-4o / o-series BPE, via `bpe-openai`, whose
//! vocabulary is compiled in: no download) of text, for `bench/codemode.py`.
//!
//! Usage:
//! ```text
//! mcpgate-bench-tokens                 # all of stdin is one text; prints its token count
//! mcpgate-bench-tokens --json-lines    # each stdin line is a JSON string; prints one count per line
//! ```
//! The count is of the exact bytes given (as UTF-8): no chat template, no per-message overhead.

use std::io::{BufRead, Read, Write};

fn fail(msg: &str) -> ! {
    eprintln!("mcpgate-bench-tokens: {msg}");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json_lines = match args.as_slice() {
        [] => false,
        [flag] if flag == "--json-lines" => true,
        [flag] if flag == "--help" || flag == "-h" => {
            eprintln!("usage: mcpgate-bench-tokens [--json-lines] < TEXT");
            return;
        }
        _ => fail("usage: mcpgate-bench-tokens [--json-lines] < TEXT"),
    };
    let tokenizer = bpe_openai::o200k_base();
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json_lines {
        for (n, line) in stdin.lock().lines().enumerate() {
            let line = line.unwrap_or_else(|e| fail(&format!("read: {e}")));
            if line.is_empty() {
                continue;
            }
            let text: String = serde_json::from_str(&line)
                .unwrap_or_else(|e| fail(&format!("line {}: not a JSON string: {e}", n + 1)));
            writeln!(out, "{}", tokenizer.count(&text)).unwrap_or_else(|e| fail(&format!("write: {e}")));
        }
    } else {
        let mut text = String::new();
        stdin.lock().read_to_string(&mut text).unwrap_or_else(|e| fail(&format!("read: {e}")));
        writeln!(out, "{}", tokenizer.count(&text)).unwrap_or_else(|e| fail(&format!("write: {e}")));
    }
    out.flush().unwrap_or_else(|e| fail(&format!("write: {e}")));
}
