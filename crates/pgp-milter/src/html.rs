//! The text a `text/html` alternative shows, when it is nothing but
//! presentation markup around that text.
//!
//! Some mailers send inline PGP as `multipart/alternative`: the armor in
//! `text/plain`, and the same armor again in `text/html` (in `<pre>`, or in
//! `<div>`s with `<br>`). Such an HTML part may pass only if it cannot carry
//! plaintext. So this is deliberately not an HTML parser but a gate: a short
//! list of tags, attributes only from a short list with short token values
//! (a value is stored in the clear, so a free-form one could hold a
//! sentence), entities decoded, and anything else — comments, scripts,
//! styles, images, links, unknown entities — makes the part plaintext.

/// Tags that only arrange text.
const TAGS: [&str; 11] = [
    "html", "head", "body", "meta", "pre", "div", "p", "br", "span", "tt", "code",
];

/// Tags after which the text continues on a new line.
const LINE_TAGS: [&str; 4] = ["br", "div", "p", "pre"];

/// Largest HTML part looked at (armor repeated in HTML is a few times the
/// size of the armor; the body cap bounds it anyway).
const MAX_HTML_BYTES: usize = 4 << 20;

/// The visible text of `html`, lines separated by `\n`; `Err` says why the
/// part is more than presentation markup around text.
pub fn visible_text(html: &[u8]) -> Result<String, String> {
    if html.len() > MAX_HTML_BYTES {
        return Err(format!("HTML part over {MAX_HTML_BYTES} bytes"));
    }
    let html = std::str::from_utf8(html).map_err(|_| "HTML part is not UTF-8".to_owned())?;
    let mut out = String::new();
    let mut rest = html;
    while let Some(i) = rest.find(['<', '&']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with('&') {
            let end = rest
                .find(';')
                .filter(|&e| e <= 10)
                .ok_or("a bare & in HTML")?;
            out.push(entity(&rest[1..end])?);
            rest = &rest[end + 1..];
        } else {
            let end = tag_end(rest).ok_or("an unclosed HTML tag")?;
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            if tag.eq_ignore_ascii_case("!doctype html") {
                continue;
            }
            if check_tag(tag)? {
                out.push('\n');
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Where the `>` closing the tag at the start of `s` is (quoted `>`
/// skipped).
fn tag_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (None, '>') => return Some(i),
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    None
}

/// Checks one tag (between `<` and `>`); true if a line ends there.
fn check_tag(tag: &str) -> Result<bool, String> {
    let tag = tag.strip_suffix('/').unwrap_or(tag);
    let (closing, tag) = match tag.strip_prefix('/') {
        Some(t) => (true, t),
        None => (false, tag),
    };
    let name_end = tag
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(tag.len());
    let name = tag[..name_end].to_ascii_lowercase();
    if !TAGS.contains(&name.as_str()) {
        return Err(format!("HTML element <{name}> beyond presentation markup"));
    }
    let attributes = tag[name_end..].trim();
    if closing && !attributes.is_empty() {
        return Err("attributes on a closing HTML tag".into());
    }
    check_attributes(&name, attributes)?;
    Ok(LINE_TAGS.contains(&name.as_str()))
}

/// Only presentation attributes, with token values.
fn check_attributes(tag: &str, mut s: &str) -> Result<(), String> {
    while !s.is_empty() {
        let name_end = s
            .find(|c: char| c == '=' || c.is_ascii_whitespace())
            .unwrap_or(s.len());
        let name = s[..name_end].to_ascii_lowercase();
        s = s[name_end..].trim_start();
        let mut value = "";
        if let Some(v) = s.strip_prefix('=') {
            let v = v.trim_start();
            let (val, after) = match v.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let end = v[1..].find(q).ok_or("an unclosed attribute value")? + 1;
                    (&v[1..end], &v[end + 1..])
                }
                _ => {
                    let end = v.find(|c: char| c.is_ascii_whitespace()).unwrap_or(v.len());
                    (&v[..end], &v[end..])
                }
            };
            value = val;
            s = after.trim_start();
        }
        let allowed = match (tag, name.as_str()) {
            ("meta", "http-equiv") => value.eq_ignore_ascii_case("content-type"),
            ("meta", "content") => {
                let v = value.to_ascii_lowercase();
                v == "text/html" || v.strip_prefix("text/html; charset=").is_some_and(is_token)
            }
            ("meta", "charset") => is_token(value),
            (_, "class" | "dir" | "lang" | "wrap") => is_token(value),
            (_, "text" | "bgcolor") => {
                value.len() == 7
                    && value.starts_with('#')
                    && value[1..].chars().all(|c| c.is_ascii_hexdigit())
            }
            _ => false,
        };
        if !allowed {
            return Err(format!("HTML attribute {name}=\"{value}\" on <{tag}>"));
        }
    }
    Ok(())
}

/// A short name-like value (`moz-quote-pre`, `utf-8`, `ltr`).
fn is_token(v: &str) -> bool {
    v.len() <= 32
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// One character reference (`amp`, `#43`, `#x2B`).
fn entity(name: &str) -> Result<char, String> {
    let c = match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some(' '),
        n => n
            .strip_prefix("#x")
            .or_else(|| n.strip_prefix("#X"))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .or_else(|| n.strip_prefix('#').and_then(|d| d.parse().ok()))
            .and_then(char::from_u32),
    };
    c.ok_or_else(|| format!("unknown HTML entity &{name};"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presentation_markup_gives_its_text() {
        let html = "<!DOCTYPE html>\n<html><head><meta http-equiv=\"Content-Type\" \
                    content=\"text/html; charset=UTF-8\"></head>\
                    <body text=\"#000000\" bgcolor=\"#FFFFFF\"><pre class=\"moz-quote-pre\" \
                    wrap=\"\">a&lt;b&#43;c&#x2F;d&amp;</pre><div>x<br/>y</div></body></html>";
        let text = visible_text(html.as_bytes()).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines, ["a<b+c/d&", "x", "y"]);
    }

    #[test]
    fn anything_that_could_carry_text_is_refused() {
        for html in [
            "<p title=\"the secret\">x</p>",
            "<img src=\"cid:x\">",
            "<a href=\"https://example.org/?q=secret\">x</a>",
            "<!-- the secret -->",
            "<style>p::before{content:\"secret\"}</style>",
            "<script>1</script>",
            "<div class=\"not a token\">x</div>",
            "<div style=\"color:red\">x</div>",
            "a &bogus; b",
            "a & b",
            "<div",
            "</div class=x>",
            "<meta content=\"secret\">",
            "<!DOCTYPE html PUBLIC \"the secret\">",
            "<\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}>",
        ] {
            assert!(visible_text(html.as_bytes()).is_err(), "{html}");
        }
        assert!(visible_text(&[0xff, 0xfe]).is_err());
    }
}
