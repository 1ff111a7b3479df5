//! HTML twins as webmail writes them around pasted armor: the same
//! `style` on every line's `<div>` (Outlook, Gmail). The attribute limit
//! counts distinct attribute lists, so such a twin passes; text in it, or
//! many different attribute values, does not.

use pgp_milter::{Decision, Policy, detect};

const ARMOR: &str = include_str!("fixtures/gpg/encrypted.asc");

/// `multipart/alternative`: the armor as text/plain, `html` as text/html.
fn alternative(html: &str) -> Vec<u8> {
    format!(
        "From: a@example.org\r\nTo: bob@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
         --alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n\
         --alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--alt--\r\n",
        ARMOR.trim_end().replace('\n', "\r\n")
    )
    .into_bytes()
}

/// The armor's lines, each in a `<div>` with `style` (an empty line as
/// `<br>`).
fn divs(style: &str, extra: &str) -> String {
    let mut html = String::from("<html><head><meta charset=\"utf-8\"></head><body dir=\"ltr\">");
    for line in ARMOR.lines() {
        if line.is_empty() {
            html.push_str(&format!("<div style=\"{style}\"><br></div>\r\n"));
        } else {
            html.push_str(&format!("<div style=\"{style}\">{line}</div>\r\n"));
        }
    }
    html.push_str(extra);
    html.push_str("</body></html>");
    html
}

const OUTLOOK: &str =
    "font-family: Calibri, Arial, Helvetica, sans-serif; font-size: 12pt; color: rgb(0, 0, 0);";

fn accepted(m: &[u8]) -> bool {
    matches!(Policy::default().judge(&detect(m)), Decision::Accept(_))
}

#[test]
fn a_style_repeated_on_every_line_passes() {
    // Three declarations a line: more than 16 attributes in all.
    assert!(3 * ARMOR.lines().count() > 16);
    let m = alternative(&divs(OUTLOOK, ""));
    assert!(accepted(&m), "{}", detect(&m));
    let gmail = "font-family:arial,helvetica,sans-serif;font-size:small;color:#000000";
    let m = alternative(&divs(gmail, ""));
    assert!(accepted(&m), "{}", detect(&m));
}

#[test]
fn text_or_many_values_in_such_a_twin_are_refused() {
    // A line of text besides the armor.
    let m = alternative(&divs(OUTLOOK, "<div>The marker: meet at noon.</div>"));
    assert!(!accepted(&m), "{}", detect(&m));
    // Every line different colours: values chosen per line.
    let mut html = String::from("<html><body>");
    for (i, line) in ARMOR.lines().enumerate() {
        html.push_str(&format!(
            "<div style=\"color:#{:06x};background-color:#{:06x};font-size:{}pt\">{line}</div>\r\n",
            i * 0x10101,
            i * 0x20202,
            10 + i
        ));
    }
    html.push_str("</body></html>");
    let m = alternative(&html);
    assert!(!accepted(&m), "{}", detect(&m));
    // A free-form value, repeated.
    let m = alternative(&divs("font-family: hunter2", ""));
    assert!(!accepted(&m), "{}", detect(&m));
}
