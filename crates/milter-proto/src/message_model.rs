//! A message as an MTA would deliver it after a milter's modifications,
//! applied the way Postfix 3.x does (`cleanup_milter.c`), with no I/O.
//!
//! What it models:
//! - headers as the milter sees them: one space after the colon removed
//!   unless `HDR_LEADSPC` was negotiated; folds as LF + whitespace;
//! - change/delete: 1-based index among headers of that name (case-
//!   insensitive), 0 counts as 1; a change of a missing header appends one;
//!   a delete removes, so later indexes of that name shift;
//! - insert: position in the delivered header list, where Postfix's own
//!   `Received:` (not modelled) is index 0, so 0 and 1 are the top of the
//!   message's headers and N goes before the N-th; past the end appends;
//! - recipients added (with `NOTIFY`/`ORCPT` only) and deleted; the sender
//!   changed (with `RET`/`ENVID` only); other ESMTP arguments are dropped
//!   with a warning, as Postfix logs and ignores them;
//! - the body replaced by the concatenation of the replacement chunks;
//! - quarantine reasons truncated to 100 bytes.

use crate::response::Response;

/// One header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// Field name.
    pub name: String,
    /// Everything after the colon as it appears in the message, folds kept
    /// as CRLF + whitespace, without the final CRLF.
    pub value: String,
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

fn is_header_start(line: &[u8]) -> Option<usize> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    (!name.is_empty() && name.iter().all(|&b| b.is_ascii_graphic() && b != b':')).then_some(colon)
}

fn strip_brackets(a: &str) -> &str {
    let t = a.trim();
    t.strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(t)
}

fn same_address(a: &str, b: &str) -> bool {
    strip_brackets(a).eq_ignore_ascii_case(strip_brackets(b))
}

/// CRLF line ends; bare LF (and bare CR) become CRLF.
fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' if data.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
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
        }
    }

    /// The header as a milter receives it in a header packet: the name, and
    /// the value with one leading space removed unless `leading_space`, folds
    /// as LF + whitespace.
    pub fn milter_header(h: &HeaderField, leading_space: bool) -> (Vec<u8>, Vec<u8>) {
        let value = if leading_space {
            h.value.as_str()
        } else {
            h.value.strip_prefix(' ').unwrap_or(&h.value)
        };
        (
            h.name.as_bytes().to_vec(),
            value.replace("\r\n", "\n").into_bytes(),
        )
    }

    /// The body as body chunks carry it: CRLF line ends.
    pub fn milter_body(&self) -> Vec<u8> {
        crlf(&self.body)
    }

    /// The stored form of a value a milter sent: a space added unless
    /// `leading_space`, LF folds as CRLF.
    fn stored_value(value: &[u8], leading_space: bool) -> String {
        let v = String::from_utf8_lossy(value)
            .replace("\r\n", "\n")
            .replace('\n', "\r\n");
        if leading_space { v } else { format!(" {v}") }
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
                    // Postfix counts its own Received header (which the milter
                    // never saw, and this model does not hold) as index 0:
                    // 0 goes above it, 1 right below it, so both are the top
                    // of the message's own headers.
                    let at = (*index as usize).saturating_sub(1).min(self.headers.len());
                    self.headers.insert(
                        at,
                        HeaderField {
                            name: String::from_utf8_lossy(name).into_owned(),
                            value: Self::stored_value(value, leading_space),
                        },
                    );
                }
                Response::ChangeHeader { index, name, value } => {
                    let name = String::from_utf8_lossy(name).into_owned();
                    let wanted = (*index).max(1) as usize;
                    let pos = self
                        .headers
                        .iter()
                        .enumerate()
                        .filter(|(_, h)| h.name.eq_ignore_ascii_case(&name))
                        .nth(wanted - 1)
                        .map(|(i, _)| i);
                    match (pos, value.is_empty()) {
                        (Some(i), true) => {
                            self.headers.remove(i);
                        }
                        (Some(i), false) => {
                            self.headers[i].value = Self::stored_value(value, leading_space)
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

    /// The message as delivered: headers, blank line, body, CRLF line ends.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for h in &self.headers {
            out.extend_from_slice(h.name.as_bytes());
            out.push(b':');
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&crlf(&self.body));
        // Postfix stores the body as lines: a last line gets its end.
        if !self.body.is_empty() && !out.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
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
