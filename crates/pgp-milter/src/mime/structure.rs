//! RFC 2046 structure, read as the bytes arrive: the [`Reader`].
//!
//! A line inside a multipart is a delimiter only if it is exactly
//! `--boundary`, optionally `--` (the close delimiter), then only spaces or
//! tabs (transport padding), then the line end (CRLF or LF), for the
//! boundary of an open multipart at any depth. A line that begins with an
//! open multipart's `--boundary` and is not exactly a delimiter is refused
//! (one reader takes it for a delimiter, another for text), so is a line
//! that is a delimiter of two open multiparts, a delimiter of an inner
//! multipart that never closed, or one after a multipart's close
//! delimiter. An inner boundary that extends the outer one (`b` and `b-2`)
//! is fine: a line is exactly one of them.
//!
//! NUL bytes are allowed only in the body of a `binary` leaf; a bare CR (not
//! followed by LF, a line end to some readers) only there and outside any
//! multipart.
//!
//! The CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1),
//! so each content line's end is held back until the next line is known
//! not to be a delimiter. Content lines are streamed, never held whole:
//! only header lines and lines that could be delimiters (starting with
//! `--`, at most 998 octets) are buffered.

use super::fields::{HeaderBlock, MAX_HEADER_LINE, MAX_LINE};
use super::transfer::Decoder;
use super::{Event, MimeError, ReadError};

/// Deepest multipart nesting read; real mail stays far below.
pub const MAX_MULTIPART_NESTING: usize = 16;
/// Deepest nesting of encapsulated messages (`message/rfc822`).
pub const MAX_MESSAGE_NESTING: usize = 8;
/// Octets of the header lines of all parts and encapsulated messages
/// together (the message's own header is the MTA's to bound: Postfix's
/// `header_size_limit` is 100 KiB). The fields are not judged, but they
/// are stored in the clear: without a bound a part header could hold
/// megabytes of text next to a small encrypted body. Real parts have a
/// few hundred octets of header each.
pub const MAX_PART_HEADERS: u64 = 256 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Preamble,
    Parts,
    Epilogue,
}

#[derive(Debug)]
enum Kind {
    Leaf {
        decoder: Decoder,
        binary: bool,
    },
    Multipart {
        boundary: Vec<u8>,
        phase: Phase,
        parts: usize,
        digest: bool,
        essence: String,
    },
    Message,
}

#[derive(Debug)]
struct Entity {
    kind: Kind,
    depth: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The current line is collected in `line` (a header line, or a body
    /// line that may still be a delimiter).
    Buffer,
    /// The current line is content, passed on until its LF.
    Stream,
}

/// The streaming reader of one message. Feed it the message (header, blank
/// line, body) in chunks of any size, then call [`Reader::finish`]; events
/// go to the sink as soon as they are known. The same bytes give the same
/// events (up to how `Body`, `Preamble` and `Epilogue` bytes are split)
/// whatever the chunking. After an error the reader refuses everything.
#[derive(Debug)]
pub struct Reader {
    stack: Vec<Entity>,
    /// While the header of the next entity is read: its fields, depth, and
    /// whether it is a part of a `multipart/digest`.
    headers: Option<(HeaderBlock, usize, bool)>,
    line: Vec<u8>,
    mode: Mode,
    /// The last byte streamed was a CR whose line end is not known yet.
    cr: bool,
    /// The end of the previous content line (`true`: CRLF), held back.
    held_eol: Option<bool>,
    multiparts: usize,
    messages: usize,
    /// Octets of part header lines so far (see [`MAX_PART_HEADERS`]).
    part_headers: u64,
    out: Vec<u8>,
    poisoned: Option<MimeError>,
    finished: bool,
}

impl Default for Reader {
    fn default() -> Self {
        Reader::new()
    }
}

/// A line that may be a delimiter is at most this long (a delimiter line
/// is a header-length line: 998 octets and a CR).
const MAX_CANDIDATE: usize = MAX_LINE + 1;

impl Reader {
    /// A reader at the start of a message.
    pub fn new() -> Reader {
        Reader {
            stack: Vec::new(),
            headers: Some((HeaderBlock::default(), 0, false)),
            line: Vec::new(),
            mode: Mode::Buffer,
            cr: false,
            held_eol: None,
            multiparts: 0,
            messages: 0,
            part_headers: 0,
            out: Vec::new(),
            poisoned: None,
            finished: false,
        }
    }

    /// Reads the next bytes of the message.
    pub fn feed<E, S>(&mut self, bytes: &[u8], sink: &mut S) -> Result<(), ReadError<E>>
    where
        S: FnMut(Event<'_>) -> Result<(), E>,
    {
        self.guard(|r| r.feed_inner(bytes, sink))
    }

    /// The message ends: closes every open entity (an unclosed multipart or
    /// a part cut off in its header is refused), then `Finished`.
    pub fn finish<E, S>(&mut self, sink: &mut S) -> Result<(), ReadError<E>>
    where
        S: FnMut(Event<'_>) -> Result<(), E>,
    {
        self.guard(|r| r.finish_inner(sink))
    }

    fn guard<E>(
        &mut self,
        f: impl FnOnce(&mut Reader) -> Result<(), ReadError<E>>,
    ) -> Result<(), ReadError<E>> {
        if let Some(e) = &self.poisoned {
            return Err(ReadError::Mime(e.clone()));
        }
        if self.finished {
            return Err(ReadError::Mime(MimeError::malformed(
                "bytes after the end of the message",
            )));
        }
        let r = f(self);
        if let Err(e) = &r {
            self.poisoned = Some(match e {
                ReadError::Mime(m) => m.clone(),
                ReadError::Sink(_) => MimeError::malformed("reading stopped"),
            });
        }
        r
    }

    fn feed_inner<E, S>(&mut self, bytes: &[u8], sink: &mut S) -> Result<(), ReadError<E>>
    where
        S: FnMut(Event<'_>) -> Result<(), E>,
    {
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            if self.mode == Mode::Buffer && self.headers.is_none() && self.line.is_empty() {
                // The common case: a run of whole lines that cannot be
                // delimiters, passed on as one piece (their inner line ends
                // are content; the last one is held back).
                if let Some(n) = self.content_run(rest, sink)? {
                    i += n;
                    continue;
                }
            }
            let nl = memchr::memchr(b'\n', rest);
            let seg = &rest[..nl.unwrap_or(rest.len())];
            match self.mode {
                Mode::Stream => {
                    self.content(seg, nl.is_some(), sink)?;
                    i += seg.len() + usize::from(nl.is_some());
                }
                Mode::Buffer if self.headers.is_none() => {
                    // Enough of the line to tell whether it may be a delimiter.
                    let need = 2usize.saturating_sub(self.line.len()).min(seg.len());
                    self.line.extend_from_slice(&seg[..need]);
                    let add = &seg[need..];
                    if !self.may_be_delimiter() {
                        self.start_streaming(sink)?;
                        i += need;
                        continue;
                    }
                    if self.line.len() + add.len() > MAX_CANDIDATE {
                        let room = MAX_CANDIDATE - self.line.len();
                        self.line.extend_from_slice(&add[..room]);
                        if self.begins_with_delimiter() {
                            return Err(MimeError::ambiguous(format!(
                                "line of more than {MAX_LINE} octets beginning with a boundary"
                            ))
                            .into());
                        }
                        self.start_streaming(sink)?;
                        i += need + room;
                        continue;
                    }
                    self.line.extend_from_slice(add);
                    i += seg.len();
                    if nl.is_some() {
                        i += 1;
                        self.complete_line(true, sink)?;
                    }
                }
                Mode::Buffer => {
                    // A header line (and its CR) of the longest kind any
                    // field may have; the header block bounds each field.
                    if self.line.len() + seg.len() > MAX_HEADER_LINE + 1 {
                        return Err(MimeError::ambiguous(format!(
                            "header line longer than {MAX_HEADER_LINE} octets"
                        ))
                        .into());
                    }
                    if nl.is_some() && self.line.is_empty() {
                        // A whole header line in this chunk: read in place,
                        // as `complete_line` reads a collected one.
                        i += seg.len() + 1;
                        self.one_line(seg, true, sink)?;
                        continue;
                    }
                    self.line.extend_from_slice(seg);
                    i += seg.len();
                    if nl.is_some() {
                        i += 1;
                        self.complete_line(true, sink)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn finish_inner<E, S>(&mut self, sink: &mut S) -> Result<(), ReadError<E>>
    where
        S: FnMut(Event<'_>) -> Result<(), E>,
    {
        match self.mode {
            Mode::Stream => {
                if std::mem::take(&mut self.cr) {
                    self.bare_cr_allowed()?;
                    self.emit(b"\r", sink)?;
                }
            }
            Mode::Buffer if !self.line.is_empty() => self.complete_line(false, sink)?,
            Mode::Buffer => {}
        }
        if let Some((block, depth, _)) = self.headers.take() {
            if depth > 0 {
                return Err(
                    MimeError::malformed("message ends inside the header of a part").into(),
                );
            }
            // A message that is all header: an empty body.
            self.headers = Some((block, depth, false));
            self.end_headers(sink)?;
        }
        if let Some(crlf) = self.held_eol.take() {
            self.emit(if crlf { b"\r\n" } else { b"\n" }, sink)?;
        }
        while let Some(e) = self.stack.pop() {
            self.close(e, sink)?;
        }
        self.finished = true;
        sink(Event::Finished).map_err(ReadError::Sink)
    }

    /// Closes an entity that ends (at a delimiter of an outer multipart, or
    /// at the end of the message).
    fn close<E, S>(&mut self, e: Entity, sink: &mut S) -> Result<(), ReadError<E>>
    where
        S: FnMut(Event<'_>) -> Result<(), E>,
    {
        match e.kind {
            Kind::Leaf { mut decoder, .. } => {
                self.out.clear();
                decoder.finish(&mut self.out)?;
                if !self.out.is_empty() {
                    sink(Event::Body(&self.out)).map_err(ReadError::Sink)?;
                }
            }
            Kind::Multipart { phase, essence, .. } => {
                if phase != Phase::Epilogue {
                    return Err(MimeError::malformed(format!(
                        "{essence} without its closing boundary (truncated)"
                    ))
                    .into());
                }
                self.multiparts -= 1;
            }
            Kind::Message => self.messages -= 1,
        }
        sink(Event::End).map_err(ReadError::Sink)
    }

    /// At the start of a body line: passes on every whole line at the start
    /// of `bytes` that cannot be a delimiter and holds no NUL or CR of its
    /// own (what the line-by-line path would do with them, in one piece).
    /// Returns how many bytes were taken, `None` if not even one line.
    fn content_run<E, S>(
        &mut self,
        bytes: &[u8],
        sink: &mut S,
    ) -> Result<Option<usize>, ReadError<E>>
    where
        S: FnMut(Event<'_>) -> Result<(), E>,
    {
        let mut j = 0;
        let mut last: Option<(usize, bool)> = None;
        loop {
            let rest = &bytes[j..];
            if self.multiparts > 0 && rest.first() == Some(&b'-') {
                break;
            }
            // The first LF, CR or NUL: the line's end (LF or CRLF), or
            // what ends the run (NUL, a CR not before LF, no line end).
            let Some(k) = memchr::memchr3(b'\n', b'\r', 0, rest) else {
                break;
            };
            let crlf = match rest[k] {
                b'\n' => false,
                b'\r' if rest.get(k + 1) == Some(&b'\n') => true,
                _ => break,
            };
            last = Some((j + k, crlf));
            j += k + 1 + usize::from(crlf);
        }
        let Some((end, crlf)) = last else {
            return Ok(None);
        };
        self.flush_held(sink)?;
        self.emit(&bytes[..end], sink)?;
        self.held_eol = Some(crlf);
        Ok(Some(j))
    }

    /// Whether the buffered start of a body line may be a delimiter.
    fn may_be_delimiter(&self) -> bool {
        self.multiparts > 0 && self.line.iter().take(2).all(|&b| b == b'-')
    }

    /// Whether the buffered line begins with `--boundary` of an open multipart.
    fn begins_with_delimiter(&self) -> bool {
        self.starts_with_boundary(&self.line)
    }

    fn starts_with_boundary(&self, line: &[u8]) -> bool {
        self.boundaries()
            .any(|(_, b)| line.strip_prefix(b"--").is_some_and(|l| l.starts_with(b)))
    }

    fn boundaries(&self) -> impl Iterator<Item = (usize, &[u8])> {
        self.stack
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.kind {
                Kind::Multipart { boundary, .. } => Some((i, boundary.as_slice())),
                _ => None,
            })
    }

    /// The buffered beginning of the current line is content: stream it and
    /// the rest of the line.
    fn start_streaming<E, S>(&mut self, sink: &mut S) -> Result<(), ReadError<E>>
    where
        S: FnMut(Event<'_>) -> Result<(), E>,
    {
        self.flush_held(sink)?;
        self.mode = Mode::Stream;
        let head = std::mem::take(&mut self.line);
        let r = self.content(&head, false, sink);
        self.line = head;
        self.line.clear();
        r
    }

    /// Bytes of the current content line (no LF among them); `lf`: the
    /// line ends right after them.
    fn content<E, S>(&mut self, seg: &[u8], lf: bool, sink: &mut S) -> Result<(), ReadError<E>>
    where
        S: FnMut(Event<'_>) -> Result<(), E>,
    {
        let mut crlf = false;
        let mut seg = seg;
        if std::mem::take(&mut self.cr) {
            if seg.is_empty() && lf {
                crlf = true;
            } else {
                self.bare_cr_allowed()?;
                self.emit(b"\r", sink)?;
            }
        }
        if let Some(body) = seg.strip_suffix(b"\r") {
            seg = body;
            if lf {
                crlf = true;
            } else {
                self.cr = true;
            }
        }
        self.emit_checked(seg, sink)?;
        if lf {
            self.held_eol = Some(crlf);
            self.mode = Mode::Buffer;
        }
        Ok(())
    }

    /// A line is complete in `line` (`lf`: it ended in LF; else the message
    /// ended).
    fn complete_line<E, S>(&mut self, lf: bool, sink: &mut S) -> Result<(), ReadError<E>>
    where
        S: FnMut(Event<'_>) -> Result<(), E>,
    {
        let mut line = std::mem::take(&mut self.line);
        let r = self.one_line(&line, lf, sink);
        line.clear();
        self.line = line;
        r
    }

    /// One whole line (`lf`: it ended in LF, not included; else the
    /// message ended).
    fn one_line<E, S>(&mut self, line: &[u8], lf: bool, sink: &mut S) -> Result<(), ReadError<E>>
    where
        S: FnMut(Event<'_>) -> Result<(), E>,
    {
        let crlf = lf && line.last() == Some(&b'\r');
        let line = if crlf { &line[..line.len() - 1] } else { line };
        if line.len() > MAX_LINE && self.starts_with_boundary(line) {
            // Only a header line gets here this long: a break at octet 998
            // would make it a delimiter, or not.
            return Err(MimeError::ambiguous(format!(
                "line of more than {MAX_LINE} octets beginning with a boundary"
            ))
            .into());
        }
        if self.multiparts > 0
            && let Some((k, close)) = self.delimiter(line)?
        {
            self.held_eol = None;
            return self.on_delimiter(k, close, sink);
        }
        if let Some((block, depth, _)) = &mut self.headers {
            if *depth > 0 {
                self.part_headers += line.len() as u64 + 1;
                if self.part_headers > MAX_PART_HEADERS {
                    return Err(MimeError::malformed(format!(
                        "part headers of more than {MAX_PART_HEADERS} bytes together"
                    ))
                    .into());
                }
            }
            // One scan for both; a NUL anywhere is the reason given.
            if let Some(k) = memchr::memchr2(0, b'\r', line) {
                if line[k] == 0 || memchr::memchr(0, &line[k..]).is_some() {
                    return Err(MimeError::ambiguous("NUL byte in a header").into());
                }
                return Err(
                    MimeError::ambiguous("bare CR (not followed by LF) in a header").into(),
                );
            }
            if line.is_empty() && lf {
                return self.end_headers(sink);
            }
            if lf {
                block.line(line, crlf)?;
            } else {
                block.last_line(line)?;
            }
            return Ok(());
        }
        self.flush_held(sink)?;
        if let (false, Some((b'\r', line))) = (lf, line.split_last()) {
            self.emit_checked(line, sink)?;
            self.bare_cr_allowed()?;
            return self.emit(b"\r", sink);
        }
        self.emit_checked(line, sink)?;
        if lf {
            self.held_eol = Some(crlf);
        }
        Ok(())
    }

    /// Which open multipart `line` is a delimiter of, and whether it is the
    /// close delimiter; refuses lines that only begin like one.
    fn delimiter(&self, line: &[u8]) -> Result<Option<(usize, bool)>, MimeError> {
        let Some(after) = line.strip_prefix(b"--") else {
            return Ok(None);
        };
        let mut found = None;
        let mut begins = false;
        for (k, b) in self.boundaries() {
            let Some(rest) = after.strip_prefix(b) else {
                continue;
            };
            let (close, pad) = match rest.strip_prefix(b"--") {
                Some(p) => (true, p),
                None => (false, rest),
            };
            if pad.iter().all(|&c| c == b' ' || c == b'\t') {
                if found.is_some() {
                    return Err(MimeError::ambiguous(
                        "a line that is a delimiter of two nested multiparts",
                    ));
                }
                found = Some((k, close));
            } else {
                begins = true;
            }
        }
        if found.is_none() && begins {
            return Err(MimeError::ambiguous(format!(
                "a line that begins with a boundary but is not a delimiter: {:?}",
                String::from_utf8_lossy(&line[..line.len().min(60)])
            )));
        }
        Ok(found)
    }

    fn on_delimiter<E, S>(
        &mut self,
        k: usize,
        close: bool,
        sink: &mut S,
    ) -> Result<(), ReadError<E>>
    where
        S: FnMut(Event<'_>) -> Result<(), E>,
    {
        if self.headers.is_some() {
            return Err(MimeError::ambiguous(
                "a part's header not ended by a blank line before the boundary",
            )
            .into());
        }
        while self.stack.len() > k + 1 {
            let e = self.stack.pop().expect("above k");
            self.close(e, sink)?;
        }
        let depth = self.stack[k].depth;
        let Kind::Multipart {
            phase,
            parts,
            digest,
            essence,
            ..
        } = &mut self.stack[k].kind
        else {
            return Err(MimeError::malformed("delimiter of a non-multipart").into());
        };
        if *phase == Phase::Epilogue {
            return Err(MimeError::ambiguous(format!(
                "a boundary line after the closing boundary of {essence}"
            ))
            .into());
        }
        if close {
            if *parts == 0 {
                return Err(MimeError::malformed(format!("{essence} without parts")).into());
            }
            *phase = Phase::Epilogue;
        } else {
            *phase = Phase::Parts;
            *parts += 1;
            self.headers = Some((HeaderBlock::default(), depth + 1, *digest));
        }
        self.mode = Mode::Buffer;
        Ok(())
    }

    fn end_headers<E, S>(&mut self, sink: &mut S) -> Result<(), ReadError<E>>
    where
        S: FnMut(Event<'_>) -> Result<(), E>,
    {
        let (block, depth, digest) = self.headers.take().expect("reading a header");
        let part = block.finish(depth, digest)?;
        let essence = part.essence();
        let kind = if part.media.type_() == "multipart" {
            if self.multiparts >= MAX_MULTIPART_NESTING {
                return Err(MimeError::malformed(format!(
                    "multiparts nested more than {MAX_MULTIPART_NESTING} deep"
                ))
                .into());
            }
            let Some(boundary) = part.media.param("boundary") else {
                return Err(MimeError::malformed(format!("{essence} without a boundary")).into());
            };
            if !part.encoding.is_identity() {
                return Err(MimeError::ambiguous(format!(
                    "{essence} with a transfer encoding other than 7bit, 8bit or binary"
                ))
                .into());
            }
            if self.boundaries().any(|(_, b)| b == boundary.as_bytes()) {
                return Err(MimeError::ambiguous(format!(
                    "{essence} reuses the boundary of an enclosing multipart"
                ))
                .into());
            }
            self.multiparts += 1;
            Kind::Multipart {
                boundary: boundary.as_bytes().to_vec(),
                phase: Phase::Preamble,
                parts: 0,
                digest: part.media.subtype() == "digest",
                essence: essence.to_owned(),
            }
        } else if essence == "message/rfc822" || essence == "message/global" {
            if !part.encoding.is_identity() {
                return Err(MimeError::ambiguous(format!(
                    "{essence} with a transfer encoding other than 7bit, 8bit or binary"
                ))
                .into());
            }
            if self.messages >= MAX_MESSAGE_NESTING {
                return Err(MimeError::malformed(format!(
                    "messages nested more than {MAX_MESSAGE_NESTING} deep"
                ))
                .into());
            }
            self.messages += 1;
            self.headers = Some((HeaderBlock::default(), depth + 1, false));
            Kind::Message
        } else {
            Kind::Leaf {
                decoder: Decoder::new(part.encoding),
                binary: part.encoding == super::Encoding::Binary,
            }
        };
        sink(Event::Start(&part)).map_err(ReadError::Sink)?;
        self.stack.push(Entity { kind, depth });
        self.held_eol = None;
        self.mode = Mode::Buffer;
        Ok(())
    }

    fn flush_held<E, S>(&mut self, sink: &mut S) -> Result<(), ReadError<E>>
    where
        S: FnMut(Event<'_>) -> Result<(), E>,
    {
        match self.held_eol.take() {
            Some(crlf) => self.emit(if crlf { b"\r\n" } else { b"\n" }, sink),
            None => Ok(()),
        }
    }

    fn in_binary_leaf(&self) -> bool {
        self.headers.is_none()
            && matches!(
                self.stack.last(),
                Some(Entity {
                    kind: Kind::Leaf { binary: true, .. },
                    ..
                })
            )
    }

    fn bare_cr_allowed(&self) -> Result<(), MimeError> {
        if self.in_binary_leaf() && self.multiparts == 0 {
            return Ok(());
        }
        Err(MimeError::ambiguous("bare CR (not followed by LF)"))
    }

    /// NUL and bare CR in content (`seg` holds no line end).
    /// Emits content (`seg` holds no line end) up to its first NUL or bare
    /// CR that is not allowed here, then refuses: what comes before the
    /// offending byte is read as it would be had the chunk been cut there,
    /// so the outcome does not depend on the chunking.
    fn emit_checked<E, S>(&mut self, seg: &[u8], sink: &mut S) -> Result<(), ReadError<E>>
    where
        S: FnMut(Event<'_>) -> Result<(), E>,
    {
        let nul_ok = self.in_binary_leaf();
        let cr_ok = self.bare_cr_allowed().is_ok();
        let bad = match (nul_ok, cr_ok) {
            (false, false) => memchr::memchr2(0, b'\r', seg),
            (false, true) => memchr::memchr(0, seg),
            (true, false) => memchr::memchr(b'\r', seg),
            (true, true) => None,
        };
        let Some(at) = bad else {
            return self.emit(seg, sink);
        };
        self.emit(&seg[..at], sink)?;
        Err(if seg[at] == 0 {
            MimeError::ambiguous("NUL byte outside a binary part")
        } else {
            MimeError::ambiguous("bare CR (not followed by LF)")
        }
        .into())
    }

    /// Content bytes of the innermost entity.
    fn emit<E, S>(&mut self, bytes: &[u8], sink: &mut S) -> Result<(), ReadError<E>>
    where
        S: FnMut(Event<'_>) -> Result<(), E>,
    {
        if bytes.is_empty() {
            return Ok(());
        }
        let Reader { stack, out, .. } = self;
        let event = match stack.last_mut().map(|e| &mut e.kind) {
            Some(Kind::Leaf {
                decoder: Decoder::Identity,
                ..
            }) => Event::Body(bytes),
            Some(Kind::Leaf { decoder, .. }) => {
                out.clear();
                let r = decoder.decode(bytes, out);
                // What was decoded before an error is read first (as if the
                // chunk had been cut at the error).
                if !out.is_empty() {
                    sink(Event::Body(out)).map_err(ReadError::Sink)?;
                }
                return r.map_err(ReadError::Mime);
            }
            Some(Kind::Multipart {
                phase: Phase::Preamble,
                ..
            }) => Event::Preamble(bytes),
            Some(Kind::Multipart {
                phase: Phase::Epilogue,
                ..
            }) => Event::Epilogue(bytes),
            _ => return Err(MimeError::malformed("content outside any part").into()),
        };
        sink(event).map_err(ReadError::Sink)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fields::MAX_HEADER_LINE;
    use super::super::{Item, MimeError, Transcript, transcript};

    /// The transcript, checked to be the same fed whole and byte by byte.
    fn read(m: &str) -> Transcript {
        let m = m.replace('\n', "\r\n");
        let whole = transcript(m.as_bytes(), &[]);
        let bytewise: Vec<usize> = (0..m.len()).collect();
        assert_eq!(whole, transcript(m.as_bytes(), &bytewise), "{m}");
        whole
    }

    /// A compact view: `<type/subtype`, `>`, `B:text`, `P:text`, `E:text`.
    fn shape(t: &Transcript) -> Vec<String> {
        let items = match t {
            Transcript::Read(i) => i,
            Transcript::Refused(_, e) => panic!("refused: {e}"),
        };
        items
            .iter()
            .filter_map(|i| match i {
                Item::Start(p) => Some(format!("<{}", p.essence())),
                Item::End => Some(">".into()),
                Item::Body(b) => Some(format!("B:{}", String::from_utf8_lossy(b))),
                Item::Preamble(b) => Some(format!("P:{}", String::from_utf8_lossy(b))),
                Item::Epilogue(b) => Some(format!("E:{}", String::from_utf8_lossy(b))),
                Item::Finished => None,
            })
            .collect()
    }

    fn refusal(m: &str) -> String {
        match read(m) {
            Transcript::Refused(_, e) => e.to_string(),
            Transcript::Read(i) => panic!("read: {i:?}"),
        }
    }

    #[test]
    fn a_single_part_message() {
        assert_eq!(
            shape(&read("Subject: x\n\nHello\nthere\n")),
            ["<text/plain", "B:Hello\r\nthere\r\n", ">"]
        );
        assert_eq!(shape(&read("Subject: x\n")), ["<text/plain", ">"]);
        assert_eq!(
            shape(&read("Content-Transfer-Encoding: base64\n\nSGVs\nbG8=\n")),
            ["<text/plain", "B:Hello", ">"]
        );
    }

    #[test]
    fn nested_multiparts_with_an_inner_boundary_extending_the_outer() {
        let m = "Content-Type: multipart/mixed; boundary=b\n\
\n\
pre\n\
--b\n\
Content-Type: multipart/alternative; boundary=\"b-2\"\n\
\n\
--b-2\n\
\n\
one\n\
--b-2  \n\
Content-Type: text/html\n\
\n\
two\n\
--b-2--\n\
inner epi\n\
--b\n\
Content-Type: application/octet-stream\n\
Content-Transfer-Encoding: quoted-printable\n\
\n\
a=3Db\n\
--b--\n\
post\n";
        assert_eq!(
            shape(&read(m)),
            [
                "<multipart/mixed",
                "P:pre",
                "<multipart/alternative",
                "<text/plain",
                "B:one",
                ">",
                "<text/html",
                "B:two",
                ">",
                "E:inner epi",
                ">",
                "<application/octet-stream",
                "B:a=b",
                ">",
                "E:post\r\n",
                ">"
            ]
        );
    }

    #[test]
    fn an_encapsulated_message_is_read_as_a_message() {
        let m = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\
Content-Type: message/rfc822\n\n\
Subject: inner\n\
Content-Type: text/plain\n\nsecret\n--b--\n";
        assert_eq!(
            shape(&read(m)),
            [
                "<multipart/mixed",
                "<message/rfc822",
                "<text/plain",
                "B:secret",
                ">",
                ">",
                ">"
            ]
        );
    }

    #[test]
    fn delimiter_look_alikes_are_refused_by_name() {
        let wrap = |inner: &str| {
            format!("Content-Type: multipart/mixed; boundary=b\n\n--b\n\n{inner}\n--b--\n")
        };
        for (inner, why) in [
            ("--b--x", "begins with a boundary but is not a delimiter"),
            ("--bz", "begins with a boundary but is not a delimiter"),
            ("x\n--b--\n--b\n\ny", "after the closing boundary"),
        ] {
            let e = refusal(&wrap(inner));
            assert!(e.contains(why), "{inner}: {e}");
        }
        // Text after the close delimiter that only looks like one.
        assert!(
            refusal("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n--b--x\n")
                .contains("begins with a boundary")
        );
        // Truncation and empty multiparts.
        assert!(
            refusal("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n")
                .contains("without its closing boundary")
        );
        assert!(
            refusal("Content-Type: multipart/mixed; boundary=b\n\n--b--\n")
                .contains("without parts")
        );
        assert!(refusal("Content-Type: multipart/mixed\n\nx\n").contains("without a boundary"));
        // An inner multipart closed by its parent's delimiter.
        let m = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\
Content-Type: multipart/mixed; boundary=c\n\n--c\n\nx\n--b--\n";
        assert!(refusal(m).contains("multipart/mixed without its closing boundary"));
        // The same boundary twice.
        let m = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\
Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n--b--\n";
        assert!(refusal(m).contains("reuses the boundary"));
        // Headers of a part that run into the delimiter.
        assert!(refusal("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n--b--\n")
            .contains("not ended by a blank line"));
    }

    #[test]
    fn line_ends_nul_and_bare_cr() {
        // LF-only messages read like CRLF ones (but keep their line ends).
        let m = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n";
        assert_eq!(
            shape(&transcript(m.as_bytes(), &[])),
            ["<multipart/mixed", "<text/plain", "B:x", ">", ">"]
        );
        let t = transcript(b"A: b\r\nC: d\n\nx", &[]);
        assert!(
            matches!(t, Transcript::Refused(_, MimeError::Ambiguous(w)) if w.contains("mixed line ends"))
        );
        let t = transcript(b"A: b\r\n\r\nx\ry\r\n", &[]);
        assert!(
            matches!(t, Transcript::Refused(_, MimeError::Ambiguous(w)) if w.contains("bare CR"))
        );
        let t = transcript(b"A: b\r\n\r\nx\0y\r\n", &[]);
        assert!(matches!(t, Transcript::Refused(_, MimeError::Ambiguous(w)) if w.contains("NUL")));
        // A top-level binary body may hold both.
        let t = transcript(b"Content-Transfer-Encoding: binary\r\n\r\nx\0\ry\r", &[]);
        assert_eq!(shape(&t), ["<text/plain", "B:x\0\ry\r", ">"]);
        // Inside a multipart, a bare CR could end a line for a reader.
        let m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Transfer-Encoding: binary\r\n\r\nx\r--b--\r\n--b--\r\n";
        let t = transcript(m, &[]);
        assert!(
            matches!(t, Transcript::Refused(_, MimeError::Ambiguous(w)) if w.contains("bare CR"))
        );
    }

    #[test]
    fn long_lines() {
        let body = "y".repeat(5000);
        assert_eq!(
            shape(&read(&format!("A: b\n\n{body}"))),
            ["<text/plain", &format!("B:{body}"), ">"]
        );
        let m = format!("Content-Type: multipart/mixed; boundary=b\n\n--b\n\n--{body}\n--b--\n");
        assert_eq!(
            shape(&read(&m)),
            [
                "<multipart/mixed",
                "<text/plain",
                &format!("B:--{body}"),
                ">",
                ">"
            ]
        );
        let m = format!(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\n\n--b{}\n--b--\n",
            " ".repeat(1000)
        );
        assert!(refusal(&m).contains("more than 998 octets beginning with a boundary"));
        // A long header line of a field no reader takes structure from is
        // read; one beginning with a boundary is not.
        assert_eq!(
            shape(&read(&format!("A: {body}\n\nx"))),
            ["<text/plain", "B:x", ">"]
        );
        let m = format!(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\nA: c\n--b{}\n\n--b--\n",
            " ".repeat(1000)
        );
        assert!(refusal(&m).contains("more than 998 octets beginning with a boundary"));
        let huge = "y".repeat(MAX_HEADER_LINE);
        assert!(refusal(&format!("A: {huge}\n\n")).contains("longer than 65536"));
    }

    #[test]
    fn limits() {
        let mut m = String::new();
        for i in 0..20 {
            m.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{i}x\"\n\n--b{i}x\n"
            ));
        }
        assert!(refusal(&m).contains("multiparts nested more than 16 deep"));
        let m = "Content-Type: message/rfc822\n\n".repeat(10);
        assert!(refusal(&m).contains("messages nested more than 8 deep"));
        assert!(
            refusal("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nx")
                .contains("transfer encoding other than")
        );
    }
}
