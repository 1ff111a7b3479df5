//! The text a `text/html` alternative shows, when it is nothing but
//! presentation markup around that text.
//!
//! Some mailers send inline PGP as `multipart/alternative`: the armor in
//! `text/plain`, and the same armor again in `text/html` (in `<pre>`, or in
//! `<div>`s with `<br>`). Such an HTML part may pass only if it cannot carry
//! plaintext. So this is deliberately not an HTML parser but a gate: a short
//! list of tags, attributes only from a short list with values from fixed
//! lists (a value is stored in the clear, so a free-form one could hold a
//! sentence: `class="my password is hunter2"`), at most
//! `MAX_ATTRIBUTES` of them (an element repeating one already counted is
//! not counted again), entities decoded, and anything else —
//! comments, scripts, styles, images, links, unknown entities — makes the
//! part plaintext.
//!
//! The work is linear in the size of the part (every byte is looked at a
//! bounded number of times). The part is held whole to be compared with
//! its `text/plain` twin, so the detector holds at most
//! [`crate::detect::MAX_TWIN_PART`] of it and refuses a larger one with its
//! own reason.

/// Tags that only arrange text.
const TAGS: [&str; 11] = [
    "html", "head", "body", "meta", "pre", "div", "p", "br", "span", "tt", "code",
];

/// Tags after which the text continues on a new line.
const LINE_TAGS: [&str; 4] = ["br", "div", "p", "pre"];

/// Most attributes in one HTML part. What clients put around pasted armor
/// has a handful (Thunderbird: the `meta` pair, `text` and `bgcolor` on
/// `body`, `class` and `wrap` on `pre`; Gmail a `dir` or two); each value
/// comes from a fixed list, so a bounded number leaves no room for text.
pub const MAX_ATTRIBUTES: usize = 16;

/// `class` values mail clients write on these tags: Thunderbird
/// (`moz-…`), Gmail (`gmail_…`), Roundcube (`pre`).
const CLASSES: [&str; 10] = [
    "moz-quote-pre",
    "moz-cite-prefix",
    "moz-signature",
    "moz-forward-container",
    "moz-text-flowed",
    "moz-text-plain",
    "gmail_quote",
    "gmail_default",
    "gmail_signature",
    "pre",
];

/// Character sets an HTML part may name (`<meta charset>` or the
/// `Content-Type` `meta`): registered IANA names that mail uses.
const CHARSETS: [&str; 32] = [
    "utf-8",
    "us-ascii",
    "iso-8859-1",
    "iso-8859-2",
    "iso-8859-3",
    "iso-8859-4",
    "iso-8859-5",
    "iso-8859-6",
    "iso-8859-7",
    "iso-8859-8",
    "iso-8859-9",
    "iso-8859-10",
    "iso-8859-13",
    "iso-8859-14",
    "iso-8859-15",
    "iso-8859-16",
    "windows-1250",
    "windows-1251",
    "windows-1252",
    "windows-1253",
    "windows-1254",
    "windows-1255",
    "windows-1256",
    "windows-1257",
    "windows-1258",
    "koi8-r",
    "koi8-u",
    "gb2312",
    "gbk",
    "big5",
    "shift_jis",
    "iso-2022-jp",
];

/// The visible text of `html`, lines separated by `\n`; `Err` says why the
/// part is more than presentation markup around text.
pub fn visible_text(html: &[u8]) -> Result<String, String> {
    let html = std::str::from_utf8(html).map_err(|_| "HTML part is not UTF-8".to_owned())?;
    let mut attributes = Attributes::default();
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
            if check_tag(tag, &mut attributes)? {
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

/// The attributes of one part counted against `MAX_ATTRIBUTES`.
///
/// The limit is per part, counted over distinct attribute lists: an
/// element whose tag and attributes repeat, character for character, an
/// element already counted costs nothing more. Outlook and Gmail put the
/// same `style` (three or four declarations) on every line's `<div>`, so
/// armor of 20 lines would otherwise be 60 attributes. A repeat carries
/// no value of its own, only its presence, as the choice of the tags
/// themselves does; what the limit bounds is the number of values chosen
/// from the fixed lists, and each distinct list is still counted (and
/// checked) once.
#[derive(Debug, Default)]
struct Attributes {
    /// Attributes and CSS declarations counted so far.
    seen: usize,
    /// The distinct (tag, attribute text) pairs counted: at most
    /// `MAX_ATTRIBUTES` of them, since each counts at least one.
    lists: Vec<(String, String)>,
}

/// Checks one tag (between `<` and `>`); true if a line ends there.
fn check_tag(tag: &str, counted: &mut Attributes) -> Result<bool, String> {
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
    let repeat = counted
        .lists
        .iter()
        .any(|(t, a)| *t == name && a == attributes);
    if !attributes.is_empty() && !repeat {
        check_attributes(&name, attributes, &mut counted.seen)?;
        counted.lists.push((name.clone(), attributes.to_owned()));
    }
    Ok(LINE_TAGS.contains(&name.as_str()))
}

/// Only presentation attributes, with values from fixed lists, and at most
/// `MAX_ATTRIBUTES` in the part (`seen` counts them).
fn check_attributes(tag: &str, mut s: &str, seen: &mut usize) -> Result<(), String> {
    while !s.is_empty() {
        *seen += 1;
        if *seen > MAX_ATTRIBUTES {
            return Err(format!("more than {MAX_ATTRIBUTES} HTML attributes"));
        }
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
                v == "text/html"
                    || v.strip_prefix("text/html; charset=")
                        .is_some_and(is_charset)
            }
            ("meta", "charset") => is_charset(value),
            (_, "class") => CLASSES.contains(&value),
            (_, "dir") => ["ltr", "rtl", "auto"].contains(&value.to_ascii_lowercase().as_str()),
            (_, "lang") => is_language(value),
            ("pre", "wrap") => ["", "soft", "hard"].contains(&value.to_ascii_lowercase().as_str()),
            (_, "style") => {
                check_style(value, seen)?;
                true
            }
            ("body", "text" | "bgcolor") => {
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

/// Font families a `style` may name: the CSS generic families and the
/// fonts webmail and desktop clients put as defaults. A free-form name
/// could hold a sentence.
const FONTS: [&str; 30] = [
    "serif",
    "sans-serif",
    "monospace",
    "cursive",
    "fantasy",
    "system-ui",
    "arial",
    "helvetica",
    "helvetica neue",
    "times",
    "times new roman",
    "courier",
    "courier new",
    "verdana",
    "tahoma",
    "georgia",
    "garamond",
    "calibri",
    "cambria",
    "consolas",
    "menlo",
    "monaco",
    "segoe ui",
    "trebuchet ms",
    "lucida console",
    "lucida grande",
    "comic sans ms",
    "dejavu sans mono",
    "liberation mono",
    "-apple-system",
];

/// CSS keywords a property of `STYLE_KEYWORDS` may take.
const STYLE_KEYWORDS: [(&str, &[&str]); 12] = [
    (
        "font-size",
        &[
            "xx-small", "x-small", "small", "medium", "large", "x-large", "xx-large", "smaller",
            "larger",
        ],
    ),
    ("font-weight", &["normal", "bold", "bolder", "lighter"]),
    ("font-style", &["normal", "italic", "oblique"]),
    (
        "white-space",
        &[
            "normal",
            "pre",
            "pre-wrap",
            "pre-line",
            "nowrap",
            "break-spaces",
        ],
    ),
    ("word-wrap", &["normal", "break-word", "anywhere"]),
    ("overflow-wrap", &["normal", "break-word", "anywhere"]),
    (
        "line-break",
        &[
            "auto",
            "loose",
            "normal",
            "strict",
            "anywhere",
            "after-white-space",
        ],
    ),
    ("-webkit-nbsp-mode", &["normal", "space"]),
    (
        "text-align",
        &["left", "right", "center", "justify", "start", "end"],
    ),
    ("direction", &["ltr", "rtl"]),
    ("line-height", &["normal"]),
    ("font-variant", &["normal", "small-caps"]),
];

/// Colour names a `style` may use (CSS basic colours).
const COLOURS: [&str; 18] = [
    "black",
    "white",
    "gray",
    "grey",
    "silver",
    "red",
    "maroon",
    "yellow",
    "olive",
    "lime",
    "green",
    "aqua",
    "teal",
    "blue",
    "navy",
    "fuchsia",
    "purple",
    "transparent",
];

/// Most declarations in one `style` attribute.
const MAX_DECLARATIONS: usize = 8;

/// A `style` attribute as webmail writes it around text (Gmail's
/// `gmail_default` font, Apple Mail's wrapping): a closed list of CSS
/// properties, each value a keyword, a number with a unit, a colour, or
/// fonts from `FONTS`. Nothing else: no `content:` (generated text), no
/// `url(`, no comments, no escapes. Each declaration counts against
/// `MAX_ATTRIBUTES`.
fn check_style(style: &str, seen: &mut usize) -> Result<(), String> {
    let refuse = |d: &str| Err(format!("CSS {d:?} in a style attribute"));
    let declarations: Vec<&str> = style
        .split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if declarations.len() > MAX_DECLARATIONS {
        return Err(format!(
            "more than {MAX_DECLARATIONS} CSS declarations in a style attribute"
        ));
    }
    for d in declarations {
        *seen += 1;
        if *seen > MAX_ATTRIBUTES {
            return Err(format!("more than {MAX_ATTRIBUTES} HTML attributes"));
        }
        let Some((property, value)) = d.split_once(':') else {
            return refuse(d);
        };
        let property = property.trim().to_ascii_lowercase();
        let value = value.trim().to_ascii_lowercase();
        let value = value.strip_suffix("!important").unwrap_or(&value).trim();
        let ok = match property.as_str() {
            "font-family" => value.split(',').all(|f| {
                let f = f.trim();
                let f = f
                    .strip_prefix('\'')
                    .and_then(|f| f.strip_suffix('\''))
                    .unwrap_or(f);
                FONTS.contains(&f)
            }),
            "color" | "background-color" => is_colour(value),
            "font-size" | "line-height" => {
                is_length(value) || is_keyword(&property, value) || is_number(value)
            }
            "margin" | "padding" | "margin-top" | "margin-bottom" | "margin-left"
            | "margin-right" | "padding-top" | "padding-bottom" | "padding-left"
            | "padding-right" => {
                let n = value.split_ascii_whitespace().count();
                (1..=4).contains(&n) && value.split_ascii_whitespace().all(is_length)
            }
            "font-weight" => {
                is_keyword(&property, value)
                    || (value.len() == 3
                        && value.ends_with("00")
                        && ("1"..="9").contains(&&value[..1]))
            }
            p => is_keyword(p, value),
        };
        if !ok {
            return refuse(d);
        }
    }
    Ok(())
}

fn is_keyword(property: &str, value: &str) -> bool {
    STYLE_KEYWORDS
        .iter()
        .any(|(p, values)| *p == property && values.contains(&value))
}

/// A short decimal number (`1`, `1.15`, `.5`).
fn is_number(v: &str) -> bool {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    int.len() <= 3
        && frac.len() <= 2
        && !(int.is_empty() && frac.is_empty())
        && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
}

/// `0`, or a short number with a CSS unit.
fn is_length(v: &str) -> bool {
    v == "0"
        || ["px", "pt", "em", "rem", "ex", "%"]
            .iter()
            .any(|u| v.strip_suffix(u).is_some_and(is_number))
}

/// `#rgb`, `#rrggbb`, `rgb(r, g, b)` or a basic colour name.
fn is_colour(v: &str) -> bool {
    if let Some(hex) = v.strip_prefix('#') {
        return (hex.len() == 3 || hex.len() == 6) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    if let Some(args) = v.strip_prefix("rgb(").and_then(|a| a.strip_suffix(')')) {
        let parts: Vec<&str> = args.split(',').map(str::trim).collect();
        return parts.len() == 3
            && parts
                .iter()
                .all(|p| p.len() <= 3 && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    }
    COLOURS.contains(&v)
}

/// One of `CHARSETS` (without case).
fn is_charset(v: &str) -> bool {
    CHARSETS.contains(&v.to_ascii_lowercase().as_str())
}

/// A language and optional region (`en`, `de-CH`, ISO 639-1 and ISO 3166
/// letters): two plus two letters, no room for a word.
fn is_language(v: &str) -> bool {
    let two = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_alphabetic());
    match v.split_once('-') {
        Some((lang, region)) => two(lang) && two(region),
        None => two(v),
    }
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
            "<div style=\"color:the secret\">x</div>",
            "<div style=\"content:'secret'\">x</div>",
            "<div style=\"font-family:my password is hunter2\">x</div>",
            "<div style=\"background:url(https://example.org/?q=secret)\">x</div>",
            "<div style=\"color:red;/* secret */\">x</div>",
            "<div style=\"font-size:12px;color:#000;font-weight:bold;margin:0;padding:0;\
             line-height:1.2;text-align:left;direction:ltr;white-space:pre\">x</div>",
            "a &bogus; b",
            "a & b",
            "<div",
            "</div class=x>",
            "<meta content=\"secret\">",
            "<!DOCTYPE html PUBLIC \"the secret\">",
            "<\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}>",
            // Values outside the fixed lists: words as classes, charsets
            // or languages, a colour that is not one, colours or wrap on
            // other tags.
            "<span class=\"the\"><span class=\"merger\">x</span></span>",
            "<span class=\"DE89370400440532013000\">x</span>",
            "<pre class=\"moz-quote-pre moz-signature\">x</pre>",
            "<meta charset=\"hunter2\">",
            "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=hunter2\">",
            "<html lang=\"secret-plaintext\">",
            "<html lang=\"the\">",
            "<pre lang=\"en\" dir=\"ltr\" class=\"a\">x</pre>",
            "<div dir=\"up\">x</div>",
            "<body bgcolor=\"#secret\">",
            "<div bgcolor=\"#FFFFFF\">x</div>",
            "<div wrap=\"\">x</div>",
        ] {
            assert!(visible_text(html.as_bytes()).is_err(), "{html}");
        }
        assert!(visible_text(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn what_clients_write_passes() {
        for html in [
            // Thunderbird.
            "<html><head><meta http-equiv=\"content-type\" content=\"text/html; \
             charset=UTF-8\"></head><body text=\"#000000\" bgcolor=\"#ffffff\">\
             <pre class=\"moz-quote-pre\" wrap=\"\">x</pre>\
             <div class=\"moz-signature\">y</div></body></html>",
            // Gmail, Roundcube, an HTML5 charset, a language.
            "<div dir=\"ltr\"><div class=\"gmail_default\">x</div></div>",
            "<div class=\"pre\">x<br>y</div>",
            "<meta charset=\"utf-8\"><p lang=\"de-CH\">x</p>",
            // Gmail's default font, Outlook's and Apple Mail's styles.
            "<div dir=\"ltr\"><div class=\"gmail_default\" \
             style=\"font-family:arial,helvetica,sans-serif;font-size:small;color:#000000\">\
             x</div></div>",
            "<div style=\"font-family:Calibri,sans-serif;font-size:11pt\">x</div>",
            "<body style=\"word-wrap: break-word; -webkit-nbsp-mode: space; \
             line-break: after-white-space;\">x</body>",
            "<pre style=\"font-family:'Courier New',monospace;margin:0 0 1em\">x</pre>",
        ] {
            assert!(visible_text(html.as_bytes()).is_ok(), "{html}");
        }
    }

    #[test]
    fn attributes_are_bounded_in_number() {
        // Distinct attribute lists count: 17 different `lang` values are
        // too many.
        let span = |i: usize| {
            let l = [b'a' + (i / 26) as u8, b'a' + (i % 26) as u8];
            format!(
                "<span lang=\"{}\">x</span>",
                std::str::from_utf8(&l).unwrap()
            )
        };
        let at_limit: String = (0..MAX_ATTRIBUTES).map(span).collect();
        assert!(visible_text(at_limit.as_bytes()).is_ok());
        let over: String = (0..=MAX_ATTRIBUTES).map(span).collect();
        assert_eq!(
            visible_text(over.as_bytes()),
            Err(format!("more than {MAX_ATTRIBUTES} HTML attributes"))
        );
        // Three declarations and a class, 16 + 4 distinct: too many.
        let many = format!(
            "{at_limit}<div class=\"gmail_default\" style=\"font-size:small;color:#000000;margin:0\">x</div>"
        );
        assert!(visible_text(many.as_bytes()).is_err());
    }

    #[test]
    fn a_repeated_attribute_list_counts_once() {
        // Outlook and Gmail put the same `style` on every line's <div>.
        let line = "<div style=\"font-family:Calibri,Arial,Helvetica,sans-serif;font-size:12pt;\
                    color:rgb(0,0,0)\">hF4DeIlerHqjOqMSAQdAL7lKf6BVwxt3</div>\n";
        let html = format!("<html><body dir=\"ltr\">{}</body></html>", line.repeat(40));
        let text = visible_text(html.as_bytes()).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("hF4D")).count(), 40);
        // The same list on another element is another list.
        let other = "<span dir=\"ltr\">x</span><div dir=\"ltr\">x</div>";
        assert!(visible_text(other.repeat(9).as_bytes()).is_ok());
        // A repeated list is still checked.
        let bad = "<div class=\"hunter2\">x</div>".repeat(2);
        assert!(visible_text(bad.as_bytes()).is_err());
    }

    #[test]
    fn a_large_part_is_read_whole() {
        // No size limit of its own (the body cap bounds it): 5 MiB of
        // armor-like lines in <div>s give their text.
        let line = "<div>hF4DeIlerHqjOqMSAQdAL7lKf6BVwxt3LLdF3eW519CoVegx4cqE8Wpm7L15</div>\n";
        let n = (5 << 20) / line.len() + 1;
        let html = line.repeat(n);
        assert!(html.len() > 5 << 20);
        let text = visible_text(html.as_bytes()).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("hF4D")).count(), n);
    }
}
