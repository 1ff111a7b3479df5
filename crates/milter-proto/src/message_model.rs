//! A message as an MTA would deliver it after a milter's modifications,
//! applied the way Postfix 3.x does (`cleanup_milter.c`), with no I/O.
//!
//! What it models:
//! - headers as the milter sees them: one space after the colon removed
//!   unless `HDR_LEADSPC` was negotiated; folds as LF + whitespace;
//! - change/delete: 1-based index among headers of that name (case-
//!   insensitive), 0 counts as 1; a change rewrites the whole header, under
//!   the name as the milter spelt it; a change of a missing header appends
//!   one; a delete removes, so later indexes of that name shift;
//! - insert: position in the delivered header list, Postfix's own
//!   `Received:` (not held here, see [`MessageModel::own_received_at`])
//!   included: index N goes before the header at position N of that list,
//!   so 0 is the very top and 1 right below Postfix's `Received:` (the top
//!   of the message's own headers); past the end appends;
//! - values a milter sends: one space put after the colon unless
//!   `HDR_LEADSPC`; each line break becomes CRLF, and a line that does not
//!   start with a space or tab gets a tab, so a fold stays a fold;
//! - recipients added (with `NOTIFY`/`ORCPT` only) and deleted (every one
//!   equal to the address, brackets and spaces removed, case counting); the sender
//!   changed (with `RET`/`ENVID` only); other ESMTP arguments are dropped
//!   with a warning, as Postfix logs and ignores them;
//! - the body replaced by the concatenation of the replacement chunks;
//! - the body as lines: LF (with one CR before it) ends a line, a CR
//!   elsewhere is data, and a last line without an end gets one;
//! - quarantine reasons truncated to 100 bytes.
//!
//! The header parsing follows Postfix's `is_header()`: a name of printable
//! ASCII without spaces or colon, optionally followed by spaces or tabs, then
//! the colon. The first line that is neither a header nor a continuation
//! starts the body (Postfix puts a blank line before it when delivering).
//!
//! Checked against Postfix 3.7.11 (a milter sending raw modifications, the
//! delivered Maildir files compared). Known difference from it: Postfix's
//! smtpd turns a bare CR of the original message into a space;
//! [`MessageModel::parse`] keeps it.

use crate::response::Response;

/// One header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// Field name: the text before the colon as it appears in the message,
    /// which may end in spaces or tabs (`Subject :`); those are not part of
    /// the name a milter sees or matches (see [`HeaderField::field_name`]).
    pub name: String,
    /// Everything after the colon as it appears in the message, folds kept
    /// as CRLF + whitespace, without the final CRLF.
    pub value: String,
}

impl HeaderField {
    /// The name without the spaces or tabs Postfix allows before the colon:
    /// what a milter receives and what change/delete requests match.
    pub fn field_name(&self) -> &str {
        self.name.trim_end_matches([' ', '\t'])
    }
}

/// An envelope recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The address as given (without angle brackets when the MTA got it so).
    pub address: String,
    /// ESMTP arguments kept.
    pub args: Vec<String>,
}

/// The envelope and content of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageModel {
    /// Envelope sender.
    pub sender: String,
    /// ESMTP arguments of MAIL FROM kept.
    pub sender_args: Vec<String>,
    /// Envelope recipients.
    pub recipients: Vec<Recipient>,
    /// Header fields in order.
    pub headers: Vec<HeaderField>,
    /// The body, after the blank line (line ends as given; CRLF when rendered).
    pub body: Vec<u8>,
    /// Quarantine (hold) reason, if a milter asked.
    pub quarantine: Option<String>,
    /// Where Postfix's own `Received:` header, which the MTA puts on top and
    /// never shows the milter, sits among [`headers`](Self::headers): the
    /// number of headers above it. 0 after [`parse`](Self::parse); grows when
    /// a milter inserts at index 0 (above it). Only insert indexes count it;
    /// it is not rendered.
    pub own_received_at: usize,
}

fn lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    // Lines without their terminator; a final line without LF is kept.
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

/// Postfix's `is_header()`: printable ASCII other than space and colon, then
/// optional spaces or tabs, then a colon. Returns the colon's position.
fn is_header_start(line: &[u8]) -> Option<usize> {
    let label = line
        .iter()
        .position(|&b| !(b.is_ascii_graphic() && b != b':'))?;
    if label == 0 {
        return None;
    }
    let colon = label
        + line[label..]
            .iter()
            .position(|&b| !matches!(b, b' ' | b'\t'))?;
    (line[colon] == b':').then_some(colon)
}

fn strip_brackets(a: &str) -> &str {
    let t = a.trim();
    t.strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(t)
}

fn same_address(a: &str, b: &str) -> bool {
    // Postfix compares the internal forms with strcmp().
    strip_brackets(a) == strip_brackets(b)
}

/// The body as Postfix stores and sends it: lines, each ended by CRLF. LF
/// (with one CR before it) ends a line, a CR elsewhere is data, and a last
/// line without an end gets one.
fn body_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32 + 2);
    let mut rest = data;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..i];
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
        rest = &rest[i + 1..];
    }
    if !rest.is_empty() {
        out.extend_from_slice(rest);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl MessageModel {
    /// Splits a raw message (CRLF or LF) into header fields and body. A first
    /// line that is not a header starts the body; a message with no blank
    /// line is all headers (or all body). Never fails.
    pub fn parse(sender: &str, recipients: &[&str], raw: &[u8]) -> MessageModel {
        let mut headers: Vec<HeaderField> = Vec::new();
        let mut body_start = raw.len();
        let mut offset = 0;
        for line in lines(raw) {
            let consumed = line.len()
                + if raw[offset + line.len()..].starts_with(b"\r\n") {
                    2
                } else if raw[offset + line.len()..].starts_with(b"\n") {
                    1
                } else {
                    0
                };
            if line.is_empty() {
                body_start = offset + consumed;
                break;
            }
            if matches!(line[0], b' ' | b'\t') {
                if let Some(last) = headers.last_mut() {
                    last.value.push_str("\r\n");
                    last.value.push_str(&String::from_utf8_lossy(line));
                    offset += consumed;
                    continue;
                }
                body_start = offset;
                break;
            }
            match is_header_start(line) {
                Some(colon) => headers.push(HeaderField {
                    name: String::from_utf8_lossy(&line[..colon]).into_owned(),
                    value: String::from_utf8_lossy(&line[colon + 1..]).into_owned(),
                }),
                None => {
                    body_start = offset;
                    break;
                }
            }
            offset += consumed;
        }
        MessageModel {
            sender: sender.to_owned(),
            sender_args: Vec::new(),
            recipients: recipients
                .iter()
                .map(|r| Recipient {
                    address: (*r).to_owned(),
                    args: Vec::new(),
                })
                .collect(),
            headers,
            body: raw[body_start.min(raw.len())..].to_vec(),
            quarantine: None,
            own_received_at: 0,
        }
    }

    /// The header as a milter receives it in a header packet: the name
    /// (without spaces before the colon), and the value with one leading
    /// space (not a tab) removed unless `leading_space`, folds as LF +
    /// whitespace.
    pub fn milter_header(h: &HeaderField, leading_space: bool) -> (Vec<u8>, Vec<u8>) {
        let value = if leading_space {
            h.value.as_str()
        } else {
            h.value.strip_prefix(' ').unwrap_or(&h.value)
        };
        (
            h.field_name().as_bytes().to_vec(),
            value.replace("\r\n", "\n").into_bytes(),
        )
    }

    /// The body as body chunks carry it: lines ended by CRLF, the last one
    /// included (as Postfix sends its stored lines).
    pub fn milter_body(&self) -> Vec<u8> {
        body_crlf(&self.body)
    }

    /// The stored form of a value a milter sent, as Postfix writes it: a
    /// space added unless `leading_space`; each LF ends a line (CRLF when
    /// rendered, any CR before it kept as data, as Postfix does), and a line
    /// after it that does not start with a space or tab gets a tab.
    fn stored_value(value: &[u8], leading_space: bool) -> String {
        let text = String::from_utf8_lossy(value);
        let mut v = String::with_capacity(text.len() + 2);
        if !leading_space {
            v.push(' ');
        }
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                v.push_str("\r\n");
                if !line.starts_with([' ', '\t']) {
                    v.push('\t');
                }
            }
            v.push_str(line);
        }
        v
    }

    /// Applies one end of message's modifications, in order. Returns what
    /// Postfix would log as ignored.
    pub fn apply(&mut self, mods: &[Response], leading_space: bool) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut new_body: Option<Vec<u8>> = None;
        for m in mods {
            match m {
                Response::AddHeader { name, value } => self.headers.push(HeaderField {
                    name: String::from_utf8_lossy(name).into_owned(),
                    value: Self::stored_value(value, leading_space),
                }),
                Response::InsertHeader { index, name, value } => {
                    // The index counts the delivered list, Postfix's own
                    // Received header (not held here) included: it goes
                    // before position `index` of that list.
                    let index = *index as usize;
                    let r = self.own_received_at.min(self.headers.len());
                    let at = if index <= r {
                        // Above Postfix's Received (index 0 at first).
                        self.own_received_at = r + 1;
                        index
                    } else {
                        (index - 1).min(self.headers.len())
                    };
                    self.headers.insert(
                        at,
                        HeaderField {
                            name: String::from_utf8_lossy(name).into_owned(),
                            value: Self::stored_value(value, leading_space),
                        },
                    );
                }
                Response::ChangeHeader { index, name, value } => {
                    // Postfix's own Received header never matches: indexes
                    // count the headers the milter was shown (and added).
                    let name = String::from_utf8_lossy(name).into_owned();
                    let wanted = (*index).max(1) as usize;
                    let pos = self
                        .headers
                        .iter()
                        .enumerate()
                        .filter(|(_, h)| h.field_name().eq_ignore_ascii_case(&name))
                        .nth(wanted - 1)
                        .map(|(i, _)| i);
                    match (pos, value.is_empty()) {
                        (Some(i), true) => {
                            self.headers.remove(i);
                            if i < self.own_received_at {
                                self.own_received_at -= 1;
                            }
                        }
                        (Some(i), false) => {
                            // Postfix writes a new header: the milter's name.
                            self.headers[i] = HeaderField {
                                name,
                                value: Self::stored_value(value, leading_space),
                            }
                        }
                        (None, true) => {}
                        (None, false) => self.headers.push(HeaderField {
                            name,
                            value: Self::stored_value(value, leading_space),
                        }),
                    }
                }
                Response::AddRcpt(r) => self.recipients.push(Recipient {
                    address: String::from_utf8_lossy(r).into_owned(),
                    args: Vec::new(),
                }),
                Response::AddRcptPar { rcpt, args } => {
                    let args = keep_args(
                        args.as_deref(),
                        &["NOTIFY", "ORCPT"],
                        "add recipient",
                        &mut warnings,
                    );
                    self.recipients.push(Recipient {
                        address: String::from_utf8_lossy(rcpt).into_owned(),
                        args,
                    });
                }
                Response::DelRcpt(r) => {
                    let r = String::from_utf8_lossy(r);
                    let before = self.recipients.len();
                    self.recipients.retain(|x| !same_address(&x.address, &r));
                    if self.recipients.len() == before {
                        warnings.push(format!("delete recipient {r}: no such recipient"));
                    }
                }
                Response::ChangeFrom { sender, args } => {
                    self.sender = String::from_utf8_lossy(sender).into_owned();
                    self.sender_args = keep_args(
                        args.as_deref(),
                        &["RET", "ENVID"],
                        "change sender",
                        &mut warnings,
                    );
                }
                Response::ReplaceBody(chunk) => new_body
                    .get_or_insert_with(Vec::new)
                    .extend_from_slice(chunk),
                Response::Quarantine(reason) => {
                    let mut r = reason.to_vec();
                    r.truncate(100);
                    self.quarantine = Some(String::from_utf8_lossy(&r).into_owned());
                }
                other => warnings.push(format!("not a modification: {other:?}")),
            }
        }
        if let Some(b) = new_body {
            self.body = b;
        }
        warnings
    }

    /// The message as delivered (without Postfix's own `Received:` and the
    /// delivery agent's headers): headers, blank line, body, CRLF line ends.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for h in &self.headers {
            out.extend_from_slice(h.name.as_bytes());
            out.push(b':');
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        // Postfix stores the body as lines: a last line gets its end.
        out.extend_from_slice(&body_crlf(&self.body));
        out
    }
}

/// Keeps the ESMTP arguments Postfix accepts for this modification.
fn keep_args(
    args: Option<&[u8]>,
    allowed: &[&str],
    what: &str,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let Some(args) = args else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    for a in String::from_utf8_lossy(args).split_whitespace() {
        let key = a.split('=').next().unwrap_or_default();
        if allowed.iter().any(|k| k.eq_ignore_ascii_case(key)) {
            kept.push(a.to_owned());
        } else {
            warnings.push(format!(
                "{what}: ESMTP argument {a} ignored (Postfix keeps only {})",
                allowed.join(", ")
            ));
        }
    }
    kept
}
