//! The header fields of one MIME entity (RFC 5322 §2.2, RFC 2045 §5–6,
//! RFC 2183), read strictly.
//!
//! Only the MIME fields are kept (`Content-Type`,
//! `Content-Transfer-Encoding`, `Content-Disposition`); every other field is
//! checked for its syntax and dropped. Refused, because readers read them
//! differently: white space before a field's colon, a line that is not a
//! field, lines over 998 octets, mixed line ends, a MIME field given twice,
//! a parameter given twice, comments (but for the few every reader reads
//! alike: [`parse_content_type`], `7bit (comment)`) or encoded words in
//! the structural fields, RFC 2231 encoding of a structural parameter,
//! 8-bit bytes but for UTF-8 in a quoted `name`/`filename` (see `utf8`),
//! a media type that is not `type/subtype`, an unknown transfer encoding,
//! a boundary RFC 2046 does not allow.

use super::MimeError;

/// Longest header line (RFC 5322 §2.1.1), without its line end, in a MIME
/// field, and the longest stretch before a field name's colon: an MTA that
/// enforces the limit (Postfix's `smtp(8)` breaks longer lines at octet 998
/// with CRLF SPACE) would change the structure there, so such lines are
/// ambiguous. A delimiter line is bounded the same way.
pub const MAX_LINE: usize = 998;
/// Longest header line of any other field. Real mail has them beyond 998
/// octets (Outlook writes a long thread's `References` on one line; some
/// libraries Q-encode a long `Subject` unfolded) and Postfix passes them
/// on; a break at octet 998 makes a continuation line of the same field,
/// which no reader takes structure from. The bound keeps the line buffer
/// small; part headers are bounded together besides.
pub const MAX_HEADER_LINE: usize = 65536;
/// Longest unfolded MIME field kept (several folded lines).
pub const MAX_FIELD: usize = 8192;

/// A transfer encoding (RFC 2045 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `7bit` (also the default).
    SevenBit,
    /// `8bit`.
    EightBit,
    /// `binary`.
    Binary,
    /// `quoted-printable`.
    QuotedPrintable,
    /// `base64`.
    Base64,
}

impl Encoding {
    /// No decoding needed (7bit, 8bit, binary): the only encodings a
    /// multipart or an encapsulated message may have (RFC 2045 §6.4).
    pub fn is_identity(self) -> bool {
        matches!(
            self,
            Encoding::SevenBit | Encoding::EightBit | Encoding::Binary
        )
    }

    fn parse(value: &str) -> Result<Encoding, MimeError> {
        let mut v = value.trim_matches([' ', '\t']);
        let mut commented = false;
        if let Some(i) = v.find('(') {
            // `7bit (comment)`: Python's `email` (either policy) then
            // decodes nothing, GMime ignores the comment; they agree only
            // for the encodings that decode nothing.
            let comment = "comment in Content-Transfer-Encoding";
            if !is_plain_comment(&v[i..]) {
                return Err(MimeError::ambiguous(comment));
            }
            v = v[..i].trim_end_matches([' ', '\t']);
            commented = true;
        }
        if v.contains("=?") {
            return Err(MimeError::ambiguous(
                "encoded word in Content-Transfer-Encoding",
            ));
        }
        let encoding = match v.to_ascii_lowercase().as_str() {
            "7bit" => Encoding::SevenBit,
            "8bit" => Encoding::EightBit,
            "binary" => Encoding::Binary,
            "quoted-printable" => Encoding::QuotedPrintable,
            "base64" => Encoding::Base64,
            _ => {
                return Err(MimeError::ambiguous(format!(
                    "unknown Content-Transfer-Encoding {:?}",
                    shorten(v)
                )));
            }
        };
        if commented && !encoding.is_identity() {
            return Err(MimeError::ambiguous(format!(
                "comment in Content-Transfer-Encoding {v}, which Python's email then does not decode"
            )));
        }
        Ok(encoding)
    }
}

/// A media type: `type/subtype` (lowercase) and its parameters (names
/// lowercase, values as written, quotes removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// `type/subtype`, lowercase: kept whole, since every reader of a part
    /// asks for it (one string, not one per look-up).
    essence: String,
    /// Where the `/` is in `essence`.
    slash: usize,
    /// In order; no name twice.
    pub params: Vec<(String, String)>,
}

impl MediaType {
    /// `type/subtype`.
    pub fn essence(&self) -> &str {
        &self.essence
    }

    /// `text`, `multipart`, ...
    pub fn type_(&self) -> &str {
        &self.essence[..self.slash]
    }

    /// `plain`, `mixed`, ...
    pub fn subtype(&self) -> &str {
        &self.essence[self.slash + 1..]
    }

    /// A parameter's value (name in lowercase).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn default_for(message: bool) -> MediaType {
        let (t, s) = if message {
            ("message", "rfc822")
        } else {
            ("text", "plain")
        };
        MediaType {
            essence: format!("{t}/{s}"),
            slash: t.len(),
            params: Vec::new(),
        }
    }
}

/// One MIME entity as its header fields describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 0 for the message, 1 for its parts, and so on (an encapsulated
    /// message is one deeper than its `message/rfc822` part).
    pub depth: usize,
    /// From `Content-Type`, or the default (`text/plain`, or
    /// `message/rfc822` in a `multipart/digest`).
    pub media: MediaType,
    /// True if there was no `Content-Type` field.
    pub defaulted: bool,
    /// From `Content-Transfer-Encoding` (default `7bit`).
    pub encoding: Encoding,
    /// The disposition type (`inline`, `attachment`), lowercase.
    pub disposition: Option<String>,
    /// `filename` of `Content-Disposition`, else `name` of `Content-Type`
    /// (as written; RFC 2231 or RFC 2047 forms are not decoded).
    pub filename: Option<String>,
}

impl Part {
    /// `type/subtype`.
    pub fn essence(&self) -> &str {
        self.media.essence()
    }
}

/// Parameters whose value decides the structure or the protocol, or (the
/// `charset`) which characters a reader shows for the bytes: they must be
/// plain (no RFC 2231 encoding, no encoded words, no backslash) and given
/// once.
const STRUCTURAL_PARAMS: [&str; 6] = [
    "boundary",
    "protocol",
    "report-type",
    "type",
    "micalg",
    "charset",
];

/// The MIME fields being collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    ContentType,
    Encoding,
    Disposition,
}

/// Header lines of one entity, fed one by one.
#[derive(Debug, Default)]
pub struct HeaderBlock {
    /// The line end of the first line (`true` for CRLF).
    crlf: Option<bool>,
    /// The field being unfolded, if it is one we keep.
    current: Option<(Which, Vec<u8>)>,
    /// Whether any field has started (a continuation needs one).
    started: bool,
    content_type: Option<Vec<u8>>,
    encoding: Option<Vec<u8>>,
    disposition: Option<Vec<u8>>,
}

impl HeaderBlock {
    /// One header line without its line end (`crlf`: it ended in CRLF,
    /// else LF). The structure layer has refused NUL and bare CR already.
    pub fn line(&mut self, line: &[u8], crlf: bool) -> Result<(), MimeError> {
        let too_long =
            || MimeError::ambiguous(format!("header line longer than {MAX_LINE} octets"));
        if line.len() > MAX_HEADER_LINE {
            return Err(MimeError::ambiguous(format!(
                "header line longer than {MAX_HEADER_LINE} octets"
            )));
        }
        match self.crlf {
            None => self.crlf = Some(crlf),
            Some(c) if c != crlf => {
                return Err(MimeError::ambiguous(
                    "mixed line ends (CRLF and LF) in one part's header",
                ));
            }
            Some(_) => {}
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if !self.started {
                return Err(MimeError::ambiguous(
                    "header starts with a continuation line",
                ));
            }
            if let Some((_, value)) = &mut self.current {
                if line.len() > MAX_LINE {
                    return Err(too_long());
                }
                if value.len() + line.len() > MAX_FIELD {
                    return Err(MimeError::malformed(format!(
                        "MIME header field longer than {MAX_FIELD} octets"
                    )));
                }
                value.extend_from_slice(line);
            }
            return Ok(());
        }
        self.close_field()?;
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(MimeError::ambiguous(format!(
                "header line without a colon: {:?}",
                shorten(&String::from_utf8_lossy(line))
            )));
        };
        if colon >= MAX_LINE {
            return Err(too_long());
        }
        let name = &line[..colon];
        if name.last().is_some_and(|b| matches!(b, b' ' | b'\t')) {
            return Err(MimeError::ambiguous(format!(
                "white space before the colon of header field {:?}",
                shorten(&String::from_utf8_lossy(name.trim_ascii_end()))
            )));
        }
        if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
            return Err(MimeError::ambiguous(format!(
                "malformed header field name {:?}",
                shorten(&String::from_utf8_lossy(name))
            )));
        }
        self.started = true;
        let which = if name.eq_ignore_ascii_case(b"Content-Type") {
            Some(Which::ContentType)
        } else if name.eq_ignore_ascii_case(b"Content-Transfer-Encoding") {
            Some(Which::Encoding)
        } else if name.eq_ignore_ascii_case(b"Content-Disposition") {
            Some(Which::Disposition)
        } else {
            None
        };
        if which.is_some() && line.len() > MAX_LINE {
            return Err(too_long());
        }
        self.current = which.map(|w| (w, line[colon + 1..].to_vec()));
        Ok(())
    }

    /// The message ends in this header line (no line end).
    pub fn last_line(&mut self, line: &[u8]) -> Result<(), MimeError> {
        let crlf = self.crlf.unwrap_or(true);
        self.line(line, crlf)
    }

    fn close_field(&mut self) -> Result<(), MimeError> {
        let Some((which, value)) = self.current.take() else {
            return Ok(());
        };
        let (slot, name) = match which {
            Which::ContentType => (&mut self.content_type, "Content-Type"),
            Which::Encoding => (&mut self.encoding, "Content-Transfer-Encoding"),
            Which::Disposition => (&mut self.disposition, "Content-Disposition"),
        };
        if slot.is_some() {
            return Err(MimeError::ambiguous(format!("2 {name} headers")));
        }
        *slot = Some(value);
        Ok(())
    }

    /// The blank line came: the entity these fields describe, at `depth`;
    /// `in_digest`: a part of a `multipart/digest` (default type
    /// `message/rfc822`).
    pub fn finish(mut self, depth: usize, in_digest: bool) -> Result<Part, MimeError> {
        self.close_field()?;
        let (media, defaulted) = match &self.content_type {
            Some(v) => (parse_content_type(utf8(v, "Content-Type")?)?, false),
            None => (MediaType::default_for(in_digest), true),
        };
        let encoding = match &self.encoding {
            Some(v) => Encoding::parse(text(v, "Content-Transfer-Encoding")?)?,
            None => Encoding::SevenBit,
        };
        let (disposition, dparams) = match &self.disposition {
            Some(v) => {
                let (d, p) = parse_disposition(utf8(v, "Content-Disposition")?)?;
                (Some(d), p)
            }
            None => (None, Vec::new()),
        };
        let named = |params: &[(String, String)], base: &str| {
            params
                .iter()
                .find(|(n, _)| {
                    n == base || n.strip_prefix(base).is_some_and(|r| r.starts_with('*'))
                })
                .map(|(_, v)| v.clone())
        };
        let filename = named(&dparams, "filename").or_else(|| named(&media.params, "name"));
        Ok(Part {
            depth,
            media,
            defaulted,
            encoding,
            disposition,
            filename,
        })
    }
}

/// A MIME field's value as text: 8-bit bytes are not allowed in these.
fn text<'a>(v: &'a [u8], name: &str) -> Result<&'a str, MimeError> {
    match std::str::from_utf8(v) {
        Ok(t) if t.is_ascii() => Ok(t),
        _ => Err(MimeError::ambiguous(format!("8-bit bytes in {name}"))),
    }
}

/// A `Content-Type` or `Content-Disposition` value as text: valid UTF-8
/// (RFC 6532), where the parameter reader lets 8-bit characters through
/// only inside the quoted value of a parameter that is not structural
/// (`name`, `filename`: Gmail, Outlook and Apple Mail write
/// `filename="Präsentation.pdf.pgp"` unencoded). Python's `email` (both
/// policies) and GMime read the same structure, types and transfer
/// encodings around such a value (`tests/header_params.rs`), and the
/// detector never decides by a file name. Everywhere else 8-bit bytes stay
/// refused: the type, subtype, disposition type and parameter names must
/// be tokens, a structural parameter ([`STRUCTURAL_PARAMS`]) must be ASCII,
/// and bytes that are not UTF-8 (Latin-1) are refused outright, since
/// readers decode such a value each their own way.
fn utf8<'a>(v: &'a [u8], name: &str) -> Result<&'a str, MimeError> {
    std::str::from_utf8(v)
        .map_err(|_| MimeError::ambiguous(format!("8-bit bytes that are not UTF-8 in {name}")))
}

/// At most 40 characters of a value, for a reason.
fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

/// RFC 2045 §5.1 `tspecials`.
const TSPECIALS: &[u8] = b"()<>@,;:\\\"/[]?=";

/// RFC 2045 token characters by octet: printable US-ASCII other than
/// space and `tspecials` (a table: every parameter of every part is
/// checked with it).
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 33;
    while c < 127 {
        let mut special = false;
        let mut k = 0;
        while k < TSPECIALS.len() {
            special |= TSPECIALS[k] == c as u8;
            k += 1;
        }
        t[c] = !special;
        c += 1;
    }
    t
};

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| TOKEN[usize::from(b)])
}

/// `type/subtype`, two tokens: what a `protocol` parameter names. Some
/// senders leave it unquoted (`protocol=application/pgp-encrypted`: KMail
/// 3's GPGME plug-in, Python's genemail). Readers then disagree on the
/// value (Python's default policy reads `application`, GMime the media
/// type), never on the structure around it (the `/` is the only special
/// character, so the parameter still ends at the `;`), and the detector
/// judges every part whatever the protocol names.
fn is_media_type(s: &str) -> bool {
    s.split_once('/')
        .is_some_and(|(t, sub)| is_token(t) && is_token(sub))
}

/// `s` without its leading spaces and tabs.
fn skip_ws(s: &str) -> &str {
    let n = s.bytes().take_while(|&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// `type/subtype *(; parameter)`, strictly.
///
/// One comment (RFC 2045 §5.1, RFC 5322 CFWS) is read, where the three
/// readers we compare with (`tests/header_params.rs`) agree on what the
/// field means: at the very end, after the value of a `name` or of a
/// `charset` of `us-ascii` or `utf-8` (`text/plain; charset=us-ascii
/// (Plain Text)`). Python's `email` with policy=default drops it; with
/// compat32, and GMime, it becomes part of the value, an unknown charset
/// that they show as ASCII-compatible bytes, which is what `us-ascii` and
/// `utf-8` are; the detector never decides by a `name`. A comment after a
/// structural parameter (`boundary=b (c)`: GMime's boundary is `b (c)`),
/// after the type (`text/plain (c)`: Python's type is `text/plain (c)`),
/// before the end, nested or holding `;`, `=`, quotes or a backslash
/// (`(a ; boundary=x)` sets a boundary for GMime) stays refused.
pub fn parse_content_type(value: &str) -> Result<MediaType, MimeError> {
    let mut value = value;
    let mut commented = false;
    if has_comment(value) {
        let at = comment_start(value);
        let refused = || MimeError::ambiguous("comment in Content-Type");
        if !is_plain_comment(&value[at..]) {
            return Err(refused());
        }
        value = value[..at].trim_end_matches([' ', '\t']);
        if value.ends_with(';') {
            return Err(refused());
        }
        commented = true;
    }
    let (head, rest) = split_head(value);
    let head = head.trim_matches([' ', '\t']);
    let not_type = || {
        MimeError::ambiguous(format!(
            "Content-Type {:?} is not type/subtype",
            shorten(head)
        ))
    };
    let (t, s) = head.split_once('/').ok_or_else(not_type)?;
    if !is_token(t) || !is_token(s) {
        return Err(not_type());
    }
    let params = parse_params(rest, "Content-Type")?;
    let mut essence = String::with_capacity(head.len());
    essence.push_str(head);
    essence.make_ascii_lowercase();
    let media = MediaType {
        essence,
        slash: t.len(),
        params,
    };
    if let Some(b) = media.param("boundary") {
        check_boundary(b)?;
    }
    if commented {
        let ok = match media.params.last() {
            Some((n, v)) if n == "charset" => {
                v.eq_ignore_ascii_case("us-ascii") || v.eq_ignore_ascii_case("utf-8")
            }
            Some((n, _)) => n == "name",
            None => false,
        };
        if !ok {
            return Err(MimeError::ambiguous(
                "comment in Content-Type where readers read it differently",
            ));
        }
    }
    Ok(media)
}

/// Where the first `(` outside a quoted string is (the caller knows there
/// is one).
fn comment_start(value: &str) -> usize {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => quoted = !quoted,
            (false, _, '(') => return i,
            _ => {}
        }
    }
    value.len()
}

/// `(` text `)` and then only white space: printable ASCII without
/// parentheses (no nesting), quotes, backslashes, `;` or `=`, which every
/// reader skips whole or keeps whole.
fn is_plain_comment(s: &str) -> bool {
    let s = s.trim_end_matches([' ', '\t']);
    s.strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .is_some_and(|inner| {
            inner.bytes().all(|b| {
                (b == b' ' || b == b'\t' || b.is_ascii_graphic())
                    && !matches!(b, b'(' | b')' | b'"' | b'\\' | b';' | b'=')
            })
        })
}

fn parse_disposition(value: &str) -> Result<(String, Vec<(String, String)>), MimeError> {
    if has_comment(value) {
        return Err(MimeError::ambiguous("comment in Content-Disposition"));
    }
    let (head, rest) = split_head(value);
    let head = head.trim_matches([' ', '\t']);
    if !is_token(head) {
        return Err(MimeError::ambiguous(format!(
            "Content-Disposition {:?} is not a disposition type",
            shorten(head)
        )));
    }
    Ok((
        head.to_ascii_lowercase(),
        parse_params(rest, "Content-Disposition")?,
    ))
}

/// Splits at the first `;` (the head holds no quotes).
fn split_head(value: &str) -> (&str, &str) {
    match value.find(';') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    }
}

/// True if `(` appears outside a quoted string.
fn has_comment(value: &str) -> bool {
    if !value.contains('(') {
        return false;
    }
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => quoted = !quoted,
            (false, _, '(') => return true,
            _ => {}
        }
    }
    false
}

/// `*(";" attribute "=" value)`; `rest` is empty or starts with `;`.
fn parse_params(rest: &str, field: &str) -> Result<Vec<(String, String)>, MimeError> {
    let mut params: Vec<(String, String)> = Vec::new();
    let mut s = rest;
    let malformed = |s: &str| {
        MimeError::ambiguous(format!(
            "malformed parameter in {field}: {:?}",
            shorten(s.trim_start_matches([' ', '\t', ';']))
        ))
    };
    loop {
        s = skip_ws(s);
        if s.is_empty() {
            return Ok(params);
        }
        let Some(after) = s.strip_prefix(';') else {
            return Err(malformed(s));
        };
        s = skip_ws(after);
        if s.is_empty() || s.starts_with(';') {
            // An empty parameter (`; ;` or a trailing `;`): nothing to read
            // differently.
            continue;
        }
        let end = s
            .bytes()
            .position(|b| !TOKEN[usize::from(b)])
            .unwrap_or(s.len());
        let name = s[..end].to_ascii_lowercase();
        if name.is_empty() {
            return Err(malformed(s));
        }
        s = skip_ws(&s[end..]);
        let Some(after) = s.strip_prefix('=') else {
            return Err(malformed(&name));
        };
        s = skip_ws(after);
        let (value, had_backslash);
        let plain_quoted = s.strip_prefix('"').and_then(|q| {
            // The common case, read in one piece: no backslash before the
            // closing quote (what the loop below reads the same).
            let i = memchr::memchr2(b'"', b'\\', q.as_bytes())?;
            (q.as_bytes()[i] == b'"').then(|| (q[..i].to_owned(), &q[i + 1..]))
        });
        if let Some((v, after)) = plain_quoted {
            value = v;
            had_backslash = false;
            s = after;
        } else if let Some(q) = s.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut close = None;
            let mut bs = false;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        bs = true;
                        match chars.next() {
                            Some((_, e)) => v.push(e),
                            None => break,
                        }
                    }
                    '"' => {
                        close = Some(i);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let Some(close) = close else {
                return Err(MimeError::ambiguous(format!(
                    "unterminated quoted string in parameter {name} of {field}"
                )));
            };
            value = v;
            had_backslash = bs;
            s = &q[close + 1..];
        } else {
            let end = memchr::memchr3(b';', b' ', b'\t', s.as_bytes()).unwrap_or(s.len());
            let v = &s[..end];
            let bare_protocol = name == "protocol" && is_media_type(v);
            if !(is_token(v) || bare_protocol) {
                return Err(MimeError::ambiguous(format!(
                    "parameter {name} of {field} holds special characters without quotes"
                )));
            }
            value = v.to_owned();
            had_backslash = false;
            s = &s[end..];
        }
        let base = param_base(&name);
        if STRUCTURAL_PARAMS.contains(&base) {
            if !value.is_ascii() {
                return Err(MimeError::ambiguous(format!(
                    "8-bit bytes in parameter {base} of {field}"
                )));
            }
            if name != base {
                return Err(MimeError::ambiguous(format!(
                    "RFC 2231 encoding of parameter {base} in {field}"
                )));
            }
            if had_backslash {
                return Err(MimeError::ambiguous(format!(
                    "backslash in parameter {base} of {field}"
                )));
            }
            if is_encoded_word(&value) {
                return Err(MimeError::ambiguous(format!(
                    "encoded word in parameter {base} of {field}"
                )));
            }
        }
        if params.iter().any(|(n, _)| *n == name)
            || (STRUCTURAL_PARAMS.contains(&base)
                && params.iter().any(|(n, _)| param_base(n) == base))
        {
            return Err(MimeError::ambiguous(format!(
                "parameter {name} given twice in {field}"
            )));
        }
        params.push((name, value));
    }
}

/// Looks like an RFC 2047 encoded word somewhere (`=?` … `?=`).
fn is_encoded_word(v: &str) -> bool {
    find_pair(v.as_bytes(), b'=', b'?')
        .is_some_and(|i| find_pair(&v.as_bytes()[i + 2..], b'?', b'=').is_some())
}

/// Where `a` followed by `b` first occurs in `s` (short values: no
/// searcher to set up).
fn find_pair(s: &[u8], a: u8, b: u8) -> Option<usize> {
    memchr::memchr_iter(a, s).find(|&i| s.get(i + 1) == Some(&b))
}

/// A parameter name without its RFC 2231 section or encoding mark
/// (`name*0*` is `name`).
fn param_base(name: &str) -> &str {
    &name[..memchr::memchr(b'*', name.as_bytes()).unwrap_or(name.len())]
}

/// RFC 2046 §5.1.1: 1 to 70 of `bchars`, not ending in a space.
fn check_boundary(b: &str) -> Result<(), MimeError> {
    let ok_char = |c: u8| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'\''
                    | b'('
                    | b')'
                    | b'+'
                    | b'_'
                    | b','
                    | b'-'
                    | b'.'
                    | b'/'
                    | b':'
                    | b'='
                    | b'?'
                    | b' '
            )
    };
    if b.is_empty() || b.len() > 70 || b.ends_with(' ') || !b.bytes().all(ok_char) {
        return Err(MimeError::ambiguous(format!(
            "boundary {:?} is not allowed by RFC 2046",
            shorten(b)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(lines: &[&str]) -> Result<Part, MimeError> {
        let mut h = HeaderBlock::default();
        for l in lines {
            h.line(l.as_bytes(), true)?;
        }
        h.finish(0, false)
    }

    fn refused(lines: &[&str]) -> String {
        part(lines).expect_err("refused").to_string()
    }

    #[test]
    fn a_bare_protocol_media_type_is_read() {
        let p = part(&[
            "Content-Type: multipart/encrypted; protocol=application/pgp-encrypted; boundary=b",
        ])
        .unwrap();
        assert_eq!(p.media.param("protocol"), Some("application/pgp-encrypted"));
        assert_eq!(p.media.param("boundary"), Some("b"));
    }

    #[test]
    fn mime_fields_are_parsed() {
        let p = part(&[
            "Subject: x",
            "Content-Type: Multipart/Encrypted; protocol=\"application/pgp-encrypted\";",
            "\tboundary=\"b 1\"",
            "Content-Transfer-Encoding:  7BIT ",
        ])
        .unwrap();
        assert_eq!(p.essence(), "multipart/encrypted");
        assert_eq!(p.media.param("boundary"), Some("b 1"));
        assert_eq!(p.media.param("protocol"), Some("application/pgp-encrypted"));
        assert_eq!(p.encoding, Encoding::SevenBit);
        let p = part(&[
            "Content-Type: application/octet-stream; name=\"x.asc\"",
            "Content-Disposition: attachment; filename*=utf-8''x%20y.asc",
        ])
        .unwrap();
        assert_eq!(p.disposition.as_deref(), Some("attachment"));
        assert_eq!(p.filename.as_deref(), Some("utf-8''x%20y.asc"));
        let p = part(&["X: y"]).unwrap();
        assert!(p.defaulted);
        assert_eq!(p.essence(), "text/plain");
        // A trailing semicolon is common and harmless.
        assert!(part(&["Content-Type: text/plain; charset=utf-8;"]).is_ok());
    }

    #[test]
    fn ambiguous_fields_are_refused_by_name() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["Content-Type : text/plain"],
                "white space before the colon",
            ),
            (
                &["Content-Type: text/plain", "Content-Type: text/html"],
                "2 Content-Type headers",
            ),
            (
                &[
                    "Content-Transfer-Encoding: base64",
                    "content-transfer-encoding: 7bit",
                ],
                "2 Content-Transfer-Encoding headers",
            ),
            (
                &["Content-Type: multipart/mixed; boundary=a; boundary=b"],
                "given twice",
            ),
            (
                &["Content-Type: multipart/mixed; boundary=a; BOUNDARY*=''b"],
                "RFC 2231",
            ),
            (
                &["Content-Type: multipart/mixed; boundary=\"=?utf-8?q?x?=\""],
                "encoded word",
            ),
            (
                &["Content-Type: =?utf-8?q?text/plain?="],
                "not type/subtype",
            ),
            (
                &["Content-Transfer-Encoding: =?utf-8?q?base64?="],
                "encoded word",
            ),
            (&["Content-Transfer-Encoding: base64 (comment)"], "comment"),
            (&["Content-Transfer-Encoding: 7bit (a(b))"], "comment"),
            (
                &["Content-Transfer-Encoding: x-uuencode"],
                "unknown Content-Transfer-Encoding",
            ),
            (&["Content-Type: text /plain"], "not type/subtype"),
            (&["Content-Type: plaintext"], "not type/subtype"),
            (&["Content-Type: text/plain (x)"], "comment"),
            (
                &["Content-Type: multipart/mixed; boundary=\"a\\\"b\""],
                "backslash",
            ),
            (
                &["Content-Type: multipart/mixed; boundary=\"a<b\""],
                "not allowed by RFC 2046",
            ),
            (
                &["Content-Type: multipart/mixed; boundary=\"ab \""],
                "not allowed by RFC 2046",
            ),
            (
                &["Content-Type: multipart/mixed; boundary=a=b"],
                "without quotes",
            ),
            (
                &["Content-Type: multipart/encrypted; protocol=a/b/c"],
                "without quotes",
            ),
            (
                &["Content-Type: multipart/mixed; boundary=a/b"],
                "without quotes",
            ),
            (
                &["Content-Type: text/plain; charset"],
                "malformed parameter",
            ),
            (&["Content-Type: text/plain; name=\"x"], "unterminated"),
            (&["Content-Type: text/plain x"], "not type/subtype"),
            (&[" folded: first"], "continuation"),
            (&["no colon here"], "without a colon"),
        ];
        for (lines, want) in cases {
            let why = refused(lines);
            assert!(why.contains(want), "{lines:?}: {why}");
            assert!(why.starts_with("ambiguous MIME: "), "{why}");
        }
        // Over 998 octets only where a break at octet 998 changes what
        // readers see: a MIME field, or before a field name's colon.
        let mut h = HeaderBlock::default();
        h.line(format!("X-Long: {}", "a".repeat(MAX_LINE)).as_bytes(), true)
            .unwrap();
        h.line(format!(" {}", "a".repeat(MAX_LINE)).as_bytes(), true)
            .unwrap();
        for lines in [
            &[format!(
                "Content-Type: text/plain; x=\"{}\"",
                "a".repeat(MAX_LINE)
            )][..],
            &[
                "Content-Type: text/plain;".to_owned(),
                format!(" x=\"{}\"", "a".repeat(MAX_LINE)),
            ],
            &[format!("X-{}: a", "n".repeat(MAX_LINE))],
            &[format!("X-Long: {}", "a".repeat(MAX_HEADER_LINE))],
        ] {
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            assert!(refused(&lines).contains("longer than"), "{lines:?}");
        }
        let mut h = HeaderBlock::default();
        h.line(b"A: b", true).unwrap();
        assert!(
            h.line(b"C: d", false)
                .unwrap_err()
                .to_string()
                .contains("mixed line ends")
        );
    }

    #[test]
    fn comments_readers_agree_on_are_read() {
        let p = part(&[
            "Content-Type: text/plain; charset=us-ascii (Plain Text)",
            "Content-Transfer-Encoding: 7bit (comment)",
        ])
        .unwrap();
        assert_eq!(p.essence(), "text/plain");
        assert_eq!(p.media.param("charset"), Some("us-ascii"));
        assert_eq!(p.encoding, Encoding::SevenBit);
        let p = part(&[
            "Content-Type: application/octet-stream; name=\"a.pgp\" (OpenPGP)",
            "Content-Transfer-Encoding: 8BIT\t(x)",
        ])
        .unwrap();
        assert_eq!(p.media.param("name"), Some("a.pgp"));
        assert_eq!(p.encoding, Encoding::EightBit);
        assert_eq!(
            part(&["Content-Type: text/plain; charset=\"UTF-8\"(y)"])
                .unwrap()
                .media
                .param("charset"),
            Some("UTF-8")
        );
    }

    #[test]
    fn comments_readers_disagree_on_are_refused() {
        for line in [
            // Python's `email` (compat32) and GMime read the comment into
            // the value, policy=default does not.
            "Content-Type: multipart/mixed; boundary=b (c)",
            "Content-Type: multipart/mixed; boundary=\"b\" (c)",
            "Content-Type: multipart/encrypted; boundary=b; protocol=\"application/pgp-encrypted\" (c)",
            "Content-Type: text/plain; charset=utf-7 (c)",
            "Content-Type: text/plain; format=flowed (c)",
            // Python takes the comment into the type.
            "Content-Type: text/plain (c)",
            "Content-Type: text/plain (c); charset=us-ascii",
            // Not at the end, nested, or hiding a parameter.
            "Content-Type: text/plain; charset=us-ascii (c); name=x",
            "Content-Type: text/plain; (c) charset=us-ascii",
            "Content-Type: text/plain; charset=(c)us-ascii",
            "Content-Type: text/plain; charset=us-ascii (a (b) c)",
            "Content-Type: text/plain; charset=us-ascii (a ; boundary=x)",
            "Content-Type: text/plain; charset=us-ascii (a \"b\" c)",
            "Content-Type: text/plain; charset=us-ascii (unterminated",
            "Content-Type: text/plain; charset=us-ascii (é)",
            // Readers decode differently (Python does not decode at all).
            "Content-Transfer-Encoding: base64 (c)",
            "Content-Transfer-Encoding: quoted-printable (c)",
            "Content-Transfer-Encoding: (c) 7bit",
            "Content-Transfer-Encoding: 7bit (a (b))",
        ] {
            let why = refused(&[line]);
            assert!(why.starts_with("ambiguous MIME: "), "{line}: {why}");
        }
    }

    #[test]
    fn utf8_in_a_name_or_filename_is_read() {
        // RFC 6532 raw UTF-8, as Gmail, Outlook and Apple Mail write it.
        let p = part(&[
            "Content-Type: application/octet-stream; name=\"Präsentation.pdf.pgp\"",
            "Content-Disposition: attachment; filename=\"Präsentation.pdf.pgp\"",
        ])
        .unwrap();
        assert_eq!(p.essence(), "application/octet-stream");
        assert_eq!(p.disposition.as_deref(), Some("attachment"));
        assert_eq!(p.filename.as_deref(), Some("Präsentation.pdf.pgp"));
        let p = part(&["Content-Type: text/plain; charset=utf-8; name=\"Grüße.asc\""]).unwrap();
        assert_eq!(p.media.param("charset"), Some("utf-8"));
    }

    #[test]
    fn eight_bit_bytes_where_they_could_change_structure_are_refused() {
        let cases: &[&[u8]] = &[
            // In the type or the subtype.
            "Content-Type: täxt/plain".as_bytes(),
            "Content-Type: text/pläin".as_bytes(),
            // In a structural parameter, quoted or not.
            "Content-Type: multipart/mixed; boundary=\"bö\"".as_bytes(),
            "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\u{a0}\"; boundary=b"
                .as_bytes(),
            "Content-Type: text/plain; charset=\"utf-8\u{a0}\"".as_bytes(),
            // Unquoted in a name: not a token.
            "Content-Type: application/octet-stream; name=Präsentation.pgp".as_bytes(),
            // In a parameter's name or the disposition type.
            "Content-Type: application/octet-stream; nämе=\"x\"".as_bytes(),
            "Content-Disposition: ättachment; filename=\"x\"".as_bytes(),
            // Anywhere in the transfer encoding.
            "Content-Transfer-Encoding: 7bit\u{a0}".as_bytes(),
            // Not UTF-8 (Latin-1): readers decode the value differently.
            b"Content-Disposition: attachment; filename=\"Pr\xe4sentation.pdf.pgp\"",
            b"Content-Type: application/octet-stream; name=\"Pr\xe4sentation.pdf.pgp\"",
        ];
        for line in cases {
            let mut h = HeaderBlock::default();
            let why = h
                .line(line, true)
                .and_then(|()| h.finish(0, false))
                .expect_err(&String::from_utf8_lossy(line))
                .to_string();
            assert!(why.starts_with("ambiguous MIME: "), "{why}");
        }
    }

    #[test]
    fn boundaries_rfc_2046_allows() {
        for b in [
            "a",
            "----=_Part_0_1.2",
            "Apple-Mail=_1 2",
            &"x".repeat(70),
            "'()+_,-./:=?",
        ] {
            assert!(check_boundary(b).is_ok(), "{b}");
        }
        for b in ["", &"x".repeat(71), "a b ", "a\"b", "a;b", "a\\b", "é"] {
            assert!(check_boundary(b).is_err(), "{b}");
        }
    }
}
