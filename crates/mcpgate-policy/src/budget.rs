//! The token and size budget: what one tool result may send back to the model.
//!
//! **What counts.** Tokens (o200k BPE, [`bpe_openai`]; an estimate for other models) of the text the client
//! sees: text items, embedded text resources, `structuredContent` as compact JSON, and other item kinds as their
//! JSON. Bytes: that text, plus binary data (images, audio, blobs) as sent (base64), which is never counted as
//! tokens.
//!
//! **Over a limit.** `refuse`: the result becomes a tool error naming its size and the limit, so the model can
//! ask for less. `truncate`: the items that fit are kept in order; the first that does not is cut — text at a
//! token boundary that is also a character boundary — and the rest dropped; a last text item says so
//! (`[truncated by mcpgate: 8123 tokens, limit 1000]`), and the limit holds with the marker included.
//! `structuredContent` cannot be cut into something valid: a result whose structured part alone is over the limit
//! is refused.
//!
//! **Cost.** Nothing when the section is off. With only `max_bytes`, lengths are added up, no tokenizing. Counting
//! tokens costs about 2.6 ms per 100 KB of text (release build); the tokenizer loads once, on a thread of its own
//! at start, in about 0.1 s.

use std::{num::NonZeroU64, sync::Arc};

use bpe_openai::Tokenizer;
use mcpgate_config::{BudgetConfig, OnExceed};
use mcpgate_core::{JsonObject, ToolOutcome};
use serde_json::{Value, json};

/// The o200k tokenizer, loaded on first use.
fn o200k() -> &'static Tokenizer {
    bpe_openai::o200k_base()
}

/// How big a result is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResultSize {
    /// Its tokens, when they are counted.
    pub tokens: Option<u64>,
    /// Its bytes.
    pub bytes: u64,
}

/// What the budget step did to a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetVerdict {
    /// Within every limit: sent whole.
    Within,
    /// Over a limit, and cut to fit; the size is the result's before the cut.
    Truncated(ResultSize),
    /// Over a limit, and replaced by a tool error; the size is the result's as the tool returned it.
    Refused(ResultSize),
}

/// What the budget step did, and the tokens that went back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Sent whole, cut or refused.
    pub verdict: BudgetVerdict,
    /// Tokens of what goes back to the client (the cut result with its marker, or the refusal), when counted.
    pub tokens: Option<u64>,
}

/// The `budget` section, prepared.
#[derive(Debug, Clone)]
pub struct Budget {
    max_tokens: Option<u64>,
    max_bytes: Option<u64>,
    on_exceed: OnExceed,
    count_tokens: bool,
}

impl Budget {
    /// The budget `config` asks for; `None` when it has nothing to do (no limit, no counting). When tokens are to
    /// be counted, the tokenizer starts loading on a thread of its own, so the first call does not wait for it.
    pub fn from_config(config: &BudgetConfig) -> Option<Arc<Self>> {
        if !config.is_active() {
            return None;
        }
        let budget = Self {
            max_tokens: config.max_tokens.map(NonZeroU64::get),
            max_bytes: config.max_bytes.map(|size| size.0),
            on_exceed: config.on_exceed,
            count_tokens: config.count_tokens || config.max_tokens.is_some(),
        };
        if budget.count_tokens {
            let _ = std::thread::Builder::new().name("mcpgate-tokenizer".into()).spawn(|| {
                o200k();
            });
        }
        Some(Arc::new(budget))
    }

    /// Whether tokens are counted.
    pub fn counts_tokens(&self) -> bool {
        self.count_tokens
    }

    /// Tokens of a call's arguments (as compact JSON), when tokens are counted.
    pub fn count_arguments(&self, arguments: &JsonObject) -> Option<u64> {
        self.count_tokens.then(|| {
            let text = serde_json::to_string(arguments).unwrap_or_default();
            o200k().count(text.as_str()) as u64
        })
    }

    /// Hold `outcome` to the limits: leave it, cut it or replace it, as configured.
    pub fn apply(&self, outcome: &mut ToolOutcome) -> Applied {
        let (size, structured) = self.measure(outcome);
        if !self.over(size) {
            return Applied { verdict: BudgetVerdict::Within, tokens: size.tokens };
        }
        let exceeded = self.exceeded(size);
        let cut = match self.on_exceed {
            OnExceed::Truncate => self.truncate(outcome, &exceeded, structured),
            OnExceed::Refuse => None,
        };
        match cut {
            Some(tokens) => Applied { verdict: BudgetVerdict::Truncated(size), tokens },
            None => {
                let message = format!(
                    "result refused by mcpgate: {exceeded}. Ask for less: a narrower query, fewer items or a \
                     smaller page."
                );
                let tokens = self.count_text(&message);
                *outcome = ToolOutcome { meta: outcome.meta.take(), ..ToolOutcome::error(message) };
                Applied { verdict: BudgetVerdict::Refused(size), tokens }
            }
        }
    }

    /// Hold a `resources/read` result (`contents`) or a `prompts/get` result (`messages`) to the limits, as a
    /// tool result is held: what the client sees is measured the same way (text as text, blobs by size), a
    /// result over a limit is cut (what fits, then a marker item saying what was cut) or refused. `Err` carries
    /// the refusal, which for these operations is a protocol error (they have no `isError` result).
    pub fn apply_contents(&self, result: &mut JsonObject, kind: Contents) -> Result<Applied, String> {
        let field = kind.field();
        let Some(Value::Array(items)) = result.get_mut(field) else {
            return Ok(Applied { verdict: BudgetVerdict::Within, tokens: None });
        };
        // Seen as a tool result's content: an embedded resource per resource item, a prompt message's content.
        let originals = std::mem::take(items);
        let content = originals.iter().map(|item| kind.as_content(item)).collect();
        let mut outcome = ToolOutcome { content, ..ToolOutcome::default() };
        let applied = self.apply(&mut outcome);
        let kept = match applied.verdict {
            BudgetVerdict::Within => originals,
            BudgetVerdict::Refused(_) => {
                *items = originals;
                let refusal =
                    outcome.content.first().and_then(|item| item["text"].as_str()).unwrap_or_default();
                return Err(refusal.to_owned());
            }
            BudgetVerdict::Truncated(_) => {
                // What fits, in order (the last maybe cut), then the marker.
                let mut pieces = outcome.content;
                let marker = pieces.pop().unwrap_or(Value::Null);
                let mut kept: Vec<Value> = pieces
                    .into_iter()
                    .zip(&originals)
                    .map(|(piece, original)| kind.restore(original, piece))
                    .collect();
                kept.push(kind.marker(marker, &originals));
                kept
            }
        };
        *items = kept;
        Ok(applied)
    }

    fn over(&self, size: ResultSize) -> bool {
        let tokens_over = matches!((size.tokens, self.max_tokens), (Some(t), Some(max)) if t > max);
        tokens_over || self.max_bytes.is_some_and(|max| size.bytes > max)
    }

    /// What is over, and by how much: `8123 tokens, limit 1000; 204800 bytes, limit 102400`.
    fn exceeded(&self, size: ResultSize) -> String {
        let mut parts = Vec::with_capacity(2);
        if let (Some(tokens), Some(max)) = (size.tokens, self.max_tokens)
            && tokens > max
        {
            parts.push(format!("{tokens} tokens, limit {max}"));
        }
        if let Some(max) = self.max_bytes
            && size.bytes > max
        {
            parts.push(format!("{} bytes, limit {max}", size.bytes));
        }
        parts.join("; ")
    }

    fn count_text(&self, text: &str) -> Option<u64> {
        self.count_tokens.then(|| o200k().count(text) as u64)
    }

    /// The cost of one piece of what the client sees.
    fn cost(&self, view: &View<'_>) -> Cost {
        match view {
            View::Text(text) => Cost { tokens: self.count_text(text).unwrap_or(0), bytes: text.len() as u64 },
            View::Binary(bytes) => Cost { tokens: 0, bytes: *bytes as u64 },
            View::Json(value) => self.json_cost(value),
        }
    }

    /// The cost of `value` as JSON: its serialized length, and its tokens when they are counted (only then is
    /// the text built).
    fn json_cost(&self, value: &Value) -> Cost {
        if self.count_tokens {
            let json = value.to_string();
            return Cost { tokens: o200k().count(&json) as u64, bytes: json.len() as u64 };
        }
        let mut length = Length(0);
        // Serializing a `Value` cannot fail, and `Length` takes every byte.
        let _ = serde_json::to_writer(&mut length, value);
        Cost { tokens: 0, bytes: length.0 }
    }

    /// The size of what the client sees, and the cost of its structured content (zero when it has none), which
    /// truncating needs again.
    fn measure(&self, outcome: &ToolOutcome) -> (ResultSize, Cost) {
        let structured = outcome.structured_content.as_ref().map_or(Cost::default(), |v| self.json_cost(v));
        let total = outcome.content.iter().map(|item| self.cost(&view(item))).fold(structured, Cost::plus);
        (ResultSize { tokens: self.count_tokens.then_some(total.tokens), bytes: total.bytes }, structured)
    }

    /// Keep what fits of `outcome` with a marker saying what was cut; `Some(tokens sent)` (`Some(None)` when
    /// tokens are not counted), or `None` when its structured content (costing `structured`) alone does not fit
    /// (it cannot be cut).
    fn truncate(&self, outcome: &mut ToolOutcome, exceeded: &str, structured: Cost) -> Option<Option<u64>> {
        let marker = format!("[truncated by mcpgate: {exceeded}]");
        let marker_cost = self.cost(&View::Text(&marker));
        let mut room = Room {
            tokens: self.max_tokens.map_or(u64::MAX, |max| max.saturating_sub(marker_cost.tokens)),
            bytes: self.max_bytes.map_or(u64::MAX, |max| max.saturating_sub(marker_cost.bytes)),
            used_tokens: marker_cost.tokens,
        };
        if !room.take(structured) {
            return None;
        }
        let mut kept = Vec::with_capacity(outcome.content.len() + 1);
        for mut item in std::mem::take(&mut outcome.content) {
            let piece = view(&item);
            if room.take(self.cost(&piece)) {
                kept.push(item);
                continue;
            }
            if let View::Text(text) = piece {
                let (at, cost) = self.cut(text, room);
                if at > 0
                    && let Some(text) = text_mut(&mut item)
                {
                    text.truncate(at);
                    room.take(cost);
                    kept.push(item);
                }
            }
            break;
        }
        kept.push(json!({ "type": "text", "text": marker }));
        outcome.content = kept;
        Some(self.count_tokens.then_some(room.used_tokens))
    }

    /// Where to cut `text` so it fits `room`: a byte index on a character boundary and, when tokens are counted,
    /// on a token boundary; and the cost of the part kept.
    fn cut(&self, text: &str, room: Room) -> (usize, Cost) {
        let byte_room = usize::try_from(room.bytes).unwrap_or(usize::MAX).min(text.len());
        if !self.count_tokens {
            let at = text.floor_char_boundary(byte_room);
            return (at, Cost { tokens: 0, bytes: at as u64 });
        }
        let tokenizer = o200k();
        let (mut at, mut tokens) = (0usize, 0u64);
        for piece in tokenizer.split(text) {
            let count = tokenizer.bpe.count(piece.as_bytes()) as u64;
            if tokens + count <= room.tokens && at + piece.len() <= byte_room {
                at += piece.len();
                tokens += count;
                continue;
            }
            // The piece that does not fit whole: as many of its tokens as fit, ending on a character boundary.
            let (part, part_tokens) = prefix_within(tokenizer, piece, room.tokens - tokens, byte_room - at);
            at += part;
            tokens += part_tokens;
            break;
        }
        (at, Cost { tokens, bytes: at as u64 })
    }
}

/// The longest prefix of `piece` (one pre-tokenizer piece) of at most `max_tokens` tokens and `max_bytes` bytes
/// that ends on a token and a character boundary: its length and its tokens.
fn prefix_within(tokenizer: &Tokenizer, piece: &str, max_tokens: u64, max_bytes: usize) -> (usize, u64) {
    let tokens = tokenizer.bpe.encode_via_backtracking(piece.as_bytes());
    let mut ends = Vec::with_capacity(tokens.len());
    let mut end = 0;
    for &token in &tokens {
        end += tokenizer.bpe.token_len(token);
        if end > max_bytes || ends.len() as u64 >= max_tokens {
            break;
        }
        ends.push(end);
    }
    // The prefix re-encoded on its own may take other tokens than the whole piece's first ones: check, and step
    // back a token at a time (a few steps at most in practice).
    for &end in ends.iter().rev().take(8) {
        if !piece.is_char_boundary(end) {
            continue;
        }
        let count = tokenizer.bpe.count(&piece.as_bytes()[..end]) as u64;
        if count <= max_tokens {
            return (end, count);
        }
    }
    (0, 0)
}

/// What is left of the limits while items are kept, and the tokens kept so far.
#[derive(Debug, Clone, Copy)]
struct Room {
    tokens: u64,
    bytes: u64,
    used_tokens: u64,
}

impl Room {
    /// Take `cost` if it fits; whether it did.
    fn take(&mut self, cost: Cost) -> bool {
        let fits = cost.tokens <= self.tokens && cost.bytes <= self.bytes;
        if fits {
            self.tokens -= cost.tokens;
            self.bytes -= cost.bytes;
            self.used_tokens += cost.tokens;
        }
        fits
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    tokens: u64,
    bytes: u64,
}

impl Cost {
    fn plus(self, other: Self) -> Self {
        Self { tokens: self.tokens + other.tokens, bytes: self.bytes + other.bytes }
    }
}

/// Counts the bytes written to it.
struct Length(u64);

impl std::io::Write for Length {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the client sees of one content item.
enum View<'a> {
    /// Text the model reads.
    Text(&'a str),
    /// Binary data (base64), counted in bytes only.
    Binary(usize),
    /// An item of another kind, measured as JSON.
    Json(&'a Value),
}

fn view(item: &Value) -> View<'_> {
    fn text(value: &Value) -> Option<View<'_>> {
        value.as_str().map(View::Text)
    }
    fn binary(value: &Value) -> Option<View<'_>> {
        value.as_str().map(|data| View::Binary(data.len()))
    }
    let found = match item.get("type").and_then(Value::as_str) {
        Some("text") => item.get("text").and_then(text),
        Some("image" | "audio") => item.get("data").and_then(binary),
        Some("resource") => item.get("resource").and_then(|resource| {
            resource.get("text").and_then(text).or_else(|| resource.get("blob").and_then(binary))
        }),
        _ => None,
    };
    found.unwrap_or(View::Json(item))
}

/// Results held to the budget besides a tool's: what their items are, and how each is seen as a tool result's
/// content item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// `resources/read`: `contents`, each `{uri, mimeType, text | blob}`.
    Resource,
    /// `prompts/get`: `messages`, each `{role, content}`.
    Prompt,
}

impl Contents {
    fn field(self) -> &'static str {
        match self {
            Self::Resource => "contents",
            Self::Prompt => "messages",
        }
    }

    /// An item as a tool result's content item.
    fn as_content(self, item: &Value) -> Value {
        match self {
            Self::Resource => json!({ "type": "resource", "resource": item }),
            Self::Prompt => item.get("content").cloned().unwrap_or(Value::Null),
        }
    }

    /// The item a kept (maybe cut) content item stands for: `original`, with its text as `piece` has it.
    fn restore(self, original: &Value, piece: Value) -> Value {
        match self {
            Self::Resource => piece.get("resource").cloned().unwrap_or_else(|| original.clone()),
            Self::Prompt => {
                let mut message = original.clone();
                message["content"] = piece;
                message
            }
        }
    }

    /// The marker saying what was cut, as an item of this kind: a text resource under the first item's URI, a
    /// user message.
    fn marker(self, piece: Value, originals: &[Value]) -> Value {
        match self {
            Self::Resource => {
                let uri = originals.first().and_then(|item| item.get("uri")).cloned().unwrap_or(json!(""));
                json!({ "uri": uri, "mimeType": "text/plain", "text": piece.get("text").cloned().unwrap_or_default() })
            }
            Self::Prompt => json!({ "role": "user", "content": piece }),
        }
    }
}

/// The text of a text item or an embedded text resource, to cut.
fn text_mut(item: &mut Value) -> Option<&mut String> {
    let target = match item.get("type").and_then(Value::as_str) {
        Some("text") => item.get_mut("text")?,
        Some("resource") => item.get_mut("resource")?.get_mut("text")?,
        _ => return None,
    };
    match target {
        Value::String(text) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
