//! Writing transcript lines straight into the file's text.
//!
//! The recorder writes thousands of lines a second on one thread, so each
//! line is written in place rather than built as a `serde_json::Value`
//! (a map node, a key string and a value string per field) and then
//! serialised. The output is byte for byte what `serde_json` writes for the
//! same object: keys in sorted order (a `Value` object is a sorted map), no
//! spaces, strings escaped as `serde_json` escapes them. The codec's tests
//! hold the two side by side, so the format cannot drift from
//! `docs/transcript.md` or from what the readers (`file`, `replay`) parse.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::Bodies;

/// One field's value.
#[derive(Clone, Copy)]
pub enum Val<'a> {
    /// A number.
    U64(u64),
    /// `true` or `false`.
    Bool(bool),
    /// A string.
    Str(&'a str),
    /// A byte string: a string if UTF-8, else `{"hex": ...}`.
    Bytes(&'a [u8]),
    /// A body in the transcript's `--bodies` mode.
    Body(&'a [u8], Bodies),
    /// A list of byte strings.
    List(&'a [Bytes]),
    /// Macros: `[[name, value], ...]`.
    Pairs(&'a [(Bytes, Bytes)]),
    /// A list of strings.
    Strs(&'a [String]),
    /// A packet's one-letter code (see [`super::codec::code_str`]).
    Code(u8),
}

/// Most fields of one line (a command with all its extras has 11).
const MAX_FIELDS: usize = 12;

/// A line being put together: fields in any order, written sorted.
pub struct Line<'a> {
    fields: [(&'static str, Val<'a>); MAX_FIELDS],
    len: usize,
}

impl<'a> Default for Line<'a> {
    fn default() -> Self {
        Line {
            fields: [("", Val::U64(0)); MAX_FIELDS],
            len: 0,
        }
    }
}

impl<'a> Line<'a> {
    /// An empty line.
    pub fn new() -> Self {
        Line::default()
    }

    /// Adds a field. `key` is plain (written without escapes) and not
    /// yet set.
    pub fn set(&mut self, key: &'static str, v: Val<'a>) -> &mut Self {
        debug_assert!(
            self.fields[..self.len].iter().all(|f| f.0 != key),
            "{key} set twice"
        );
        debug_assert!(!key.is_empty() && !key.contains(['"', '\\']));
        // Every line the recorder writes has at most 11 fields (a connect
        // command with all its extras); the tests run with this check.
        debug_assert!(self.len < MAX_FIELDS, "a transcript line has few fields");
        if let Some(f) = self.fields.get_mut(self.len) {
            *f = (key, v);
            self.len += 1;
        }
        self
    }

    /// Writes `{...}` (no newline) to `out`.
    pub fn write(&mut self, out: &mut String) {
        let fields = &mut self.fields[..self.len];
        // Keys mostly differ in their first letter: compare that before
        // calling `memcmp`.
        fields.sort_unstable_by(|a, b| {
            let (x, y) = (a.0.as_bytes(), b.0.as_bytes());
            x.first().cmp(&y.first()).then_with(|| x.cmp(y))
        });
        out.push('{');
        for (i, (k, v)) in fields.iter().enumerate() {
            out.push_str(if i > 0 { ",\"" } else { "\"" });
            out.push_str(k);
            out.push_str("\":");
            value(*v, out);
        }
        out.push('}');
    }

    /// Writes the line and its newline to `out`.
    pub fn write_line(&mut self, out: &mut String) {
        self.write(out);
        out.push('\n');
    }
}

fn value(v: Val<'_>, out: &mut String) {
    match v {
        Val::U64(n) => number(n, out),
        Val::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Val::Str(s) => string(s, out),
        Val::Bytes(b) => bytes(b, out),
        Val::Body(b, mode) => body(b, mode, out),
        Val::List(items) => {
            out.push('[');
            for (i, b) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                bytes(b, out);
            }
            out.push(']');
        }
        Val::Pairs(pairs) => {
            out.push('[');
            for (i, (n, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('[');
                bytes(n, out);
                out.push(',');
                bytes(v, out);
                out.push(']');
            }
            out.push(']');
        }
        Val::Strs(items) => {
            out.push('[');
            for (i, s) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(s, out);
            }
            out.push(']');
        }
        Val::Code(c) if c.is_ascii_graphic() => {
            let c = [c];
            // One ASCII character.
            string(std::str::from_utf8(&c).unwrap_or_default(), out);
        }
        Val::Code(c) => {
            out.push_str("\"\\\\x");
            hex(&[c], out);
            out.push('"');
        }
    }
}

/// A number as JSON.
pub fn number(n: u64, out: &mut String) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// A byte string: a JSON string if UTF-8, else `{"hex":"..."}`.
pub fn bytes(b: &[u8], out: &mut String) {
    match std::str::from_utf8(b) {
        Ok(s) => string(s, out),
        Err(_) => {
            out.push_str("{\"hex\":\"");
            hex(b, out);
            out.push_str("\"}");
        }
    }
}

/// A body in the given mode (see [`super::codec::body_to_json`]).
pub fn body(b: &[u8], mode: Bodies, out: &mut String) {
    match mode {
        _ if b.is_empty() => out.push_str("\"\""),
        Bodies::Keep => bytes(b, out),
        Bodies::Hash => {
            out.push_str("{\"len\":");
            number(b.len() as u64, out);
            out.push_str(",\"sha256\":\"");
            hex(&Sha256::digest(b), out);
            out.push_str("\"}");
        }
        Bodies::Drop => {
            out.push_str("{\"len\":");
            number(b.len() as u64, out);
            out.push('}');
        }
    }
}

/// Lower-case hex digits of `b`.
pub fn hex(b: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(b.len() * 2);
    for &x in b {
        out.push(DIGITS[usize::from(x >> 4)] as char);
        out.push(DIGITS[usize::from(x & 15)] as char);
    }
}

/// A JSON string, escaped as `serde_json` escapes: `"` and `\`, the
/// control characters below 0x20 (`\b \t \n \f \r` by name, the others as
/// `\u00xx`), nothing else.
pub fn string(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    // Eight bytes at a time while none needs an escape (bodies and header
    // values are long runs of plain text), then byte by byte.
    while i < bytes.len() {
        let end = if let Some(chunk) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            if !needs_escape(word) {
                i += 8;
                continue;
            }
            i + 8
        } else {
            bytes.len()
        };
        for (j, &b) in bytes.iter().enumerate().take(end).skip(i) {
            if b < 0x20 || b == b'"' || b == b'\\' {
                // Escapes are ASCII, so `j` is on a character boundary.
                out.push_str(&s[start..j]);
                escape(b, out);
                start = j + 1;
            }
        }
        i = end;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn escape(b: u8, out: &mut String) {
    match b {
        b'"' => out.push_str("\\\""),
        b'\\' => out.push_str("\\\\"),
        0x08 => out.push_str("\\b"),
        0x09 => out.push_str("\\t"),
        0x0a => out.push_str("\\n"),
        0x0c => out.push_str("\\f"),
        0x0d => out.push_str("\\r"),
        _ => {
            out.push_str("\\u00");
            hex(&[b], out);
        }
    }
}

/// Whether any of the eight bytes of `w` is below 0x20, `"` or `\`.
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero exactly when this sets its high bit (bytes
    // with the high bit set in `w` are excluded by `!w`; they are never
    // escaped).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (below_space | zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\')))) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn written(v: Val<'_>) -> String {
        let mut s = String::new();
        value(v, &mut s);
        s
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        // Every byte value from 0 to 0x7f and some beyond, each alone and
        // in company.
        let mut all = String::new();
        for c in (0u8..0x80).map(char::from).chain(['é', '€', '𝄞', '\u{7f}']) {
            let s = format!("a{c}b");
            assert_eq!(written(Val::Str(&s)), serde_json::to_string(&s).unwrap());
            all.push(c);
        }
        assert_eq!(
            written(Val::Str(&all)),
            serde_json::to_string(&all).unwrap()
        );
        assert_eq!(written(Val::Str("")), "\"\"");
    }

    #[test]
    fn long_strings_with_escapes_anywhere_match_serde_json() {
        // Fixed-seed xorshift: strings of plain text with an escape, a
        // multi-byte character or a high byte's character at any offset
        // (the writer looks at eight bytes at a time).
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pool = [
            'a', ' ', '"', '\\', '\n', '\u{1}', '\u{1f}', 'é', '€', '𝄞', '\u{7f}', '~',
        ];
        for _ in 0..3000 {
            let len = (next() % 40) as usize;
            let s: String = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 4 == 0 {
                        pool[(r / 4 % pool.len() as u64) as usize]
                    } else {
                        'x'
                    }
                })
                .collect();
            assert_eq!(
                written(Val::Str(&s)),
                serde_json::to_string(&s).unwrap(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn numbers_and_lists_match_serde_json() {
        for n in [0, 1, 9, 10, 99, 12345, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(written(Val::U64(n)), json!(n).to_string());
        }
        let items = [
            Bytes::from_static(b"<a@b>"),
            Bytes::from_static(b"\xff\x00"),
        ];
        assert_eq!(
            written(Val::List(&items)),
            json!(["<a@b>", {"hex": "ff00"}]).to_string()
        );
        let pairs = [(Bytes::from_static(b"i"), Bytes::from_static(b"Q\"1"))];
        assert_eq!(
            written(Val::Pairs(&pairs)),
            json!([["i", "Q\"1"]]).to_string()
        );
        assert_eq!(written(Val::Pairs(&[])), "[]");
        for c in 0..=255u8 {
            assert_eq!(
                written(Val::Code(c)),
                json!(super::super::codec::code_str(c)).to_string()
            );
        }
        let notes = ["x".to_owned(), "y\n".to_owned()];
        assert_eq!(written(Val::Strs(&notes)), json!(["x", "y\n"]).to_string());
    }

    #[test]
    fn keys_are_sorted_like_a_json_object() {
        let mut l = Line::new();
        l.set("type", Val::Str("end"))
            .set("at_us", Val::U64(5))
            .set("verdict", Val::Str("accept"))
            .set("reason", Val::Str("quit"))
            .set("truncated", Val::Bool(true))
            .set("at", Val::Str("eom"));
        let mut s = String::new();
        l.write(&mut s);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(s, v.to_string());
    }
}
