//! What the fuzz targets share: how a target reads its input, and small independent oracles the gateway's
//! code is held against. Each target's input format is described in `README.md`.

use mcpgate_server::fuzz::{HeaderMap, HeaderName, HeaderValue};

/// `data` cut at the first `separator`: what comes before it, and what comes after (empty when there is none).
pub fn split_at(data: &[u8], separator: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == separator) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// A header block of `name: value` lines (LF or CRLF); a line that is not a valid header is skipped.
pub fn headers(block: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (name, value) = split_at(line, b':');
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            map.append(name, value);
        }
    }
    map
}

/// The deepest array/object nesting of a JSON text as a parser walks it — every member, duplicate keys included
/// (a parsed `Value` keeps only the last of duplicate keys, so its depth can be less); `None` when
/// serde_json does not read the text. The edge's byte scan must agree with it.
pub fn text_depth(text: &[u8]) -> Option<usize> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

    struct Depth;
    impl<'de> DeserializeSeed<'de> for Depth {
        type Value = usize;
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
            deserializer.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Depth {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut deepest = 0;
            while let Some(depth) = seq.next_element_seed(Depth)? {
                deepest = deepest.max(depth);
            }
            Ok(1 + deepest)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
            let mut deepest = 0;
            while map.next_key::<IgnoredAny>()?.is_some() {
                deepest = deepest.max(map.next_value_seed(Depth)?);
            }
            Ok(1 + deepest)
        }
        fn visit_bool<E>(self, _: bool) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_i64<E>(self, _: i64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_u64<E>(self, _: u64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_f64<E>(self, _: f64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_str<E>(self, _: &str) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_unit<E>(self) -> Result<usize, E> {
            Ok(0)
        }
    }

    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let depth = Depth.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(depth)
}

/// The size of each event in an event stream, as the SSE spec cuts it: lines end at CRLF, CR or LF; a blank
/// line ends an event; an event's size is the bytes of its lines, line ends aside. The last, unfinished event
/// counts too. Written apart from the transport's own counter, to check it.
pub fn sse_event_sizes(stream: &[u8]) -> Vec<usize> {
    let mut sizes = Vec::new();
    let (mut event, mut line) = (0usize, 0usize);
    let mut i = 0;
    while i < stream.len() {
        match stream[i] {
            b'\r' | b'\n' => {
                if stream[i] == b'\r' && stream.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                if line == 0 {
                    sizes.push(event);
                    event = 0;
                }
                event += line;
                line = 0;
            }
            _ => line += 1,
        }
        i += 1;
    }
    sizes.push(event + line);
    sizes
}

/// A small deterministic byte reader for the binary prefix of a target's input.
pub struct Bytes<'a>(pub &'a [u8]);

impl<'a> Bytes<'a> {
    /// The next byte (0 once the input is used up).
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// Whatever is left.
    pub fn rest(self) -> &'a [u8] {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_sizes_follow_the_spec_line_ends() {
        assert_eq!(sse_event_sizes(b"data: 1234\n\ndata: 12\r\n\r\n"), [10, 8, 0]);
        assert_eq!(sse_event_sizes(b"a\rb\r\r\nc"), [2, 1]);
        assert_eq!(sse_event_sizes(b"\n\nab"), [0, 0, 2]);
    }
}
