//! Is a message OpenPGP mail? Decided from the parsed MIME structure and the
//! OpenPGP packets inside it, never from a substring of the raw message.
//!
//! * PGP/MIME encrypted (RFC 3156 §4): `multipart/encrypted;
//!   protocol="application/pgp-encrypted"` with exactly two parts, the
//!   `Version: 1` control part, then an `application/octet-stream` part
//!   holding one armored (or binary) encrypted OpenPGP message.
//! * PGP/MIME signed (§5): `multipart/signed;
//!   protocol="application/pgp-signature"` whose second part holds OpenPGP
//!   signature packets; encrypted if what it signs is PGP/MIME encrypted.
//! * Inline: every leaf that carries anything is an armored block (after its
//!   transfer encoding is undone) or a binary OpenPGP attachment; text next
//!   to the armor makes the message plaintext.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::armor::{self, Kind};
use crate::mime::{self, Event, Part, ReadError};
use crate::openpgp;
use crate::packets::{self, Shape};
use crate::payload::{
    Carried, Encoding, ErrorClass, Payload, PayloadError, PayloadKind, PayloadLimits, PayloadReader,
};

/// How the OpenPGP protection was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// RFC 3156 multipart/encrypted or multipart/signed.
    PgpMime,
    /// Armored blocks or OpenPGP attachments in ordinary parts.
    Inline,
    /// A cleartext signature.
    Cleartext,
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Form::PgpMime => "PGP/MIME",
            Form::Inline => "inline PGP",
            Form::Cleartext => "cleartext signature",
        })
    }
}

/// Why a message is not OpenPGP mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotPgp {
    /// Nothing OpenPGP at all.
    NoOpenPgp,
    /// Armor or packets that do not parse; the text says where and why.
    Invalid(String),
    /// A MIME structure that cannot be read safely (unparseable, nested
    /// too deep, ambiguous headers, cut off): not an OpenPGP problem.
    Mime(String),
    /// Plaintext next to (or instead of) the OpenPGP parts.
    PlaintextPart(String),
    /// Only an OpenPGP key, no message.
    KeyOnly,
    /// S/MIME (RFC 8551): encrypted or signed, but not OpenPGP.
    Smime,
    /// Signed, not encrypted (when encryption is required).
    SignedOnly(Form),
    /// The body was larger than the configured cap before it was proven.
    TooLarge(usize),
    /// The detector itself failed (a bug); tempfail, not reject.
    Internal(String),
    /// Too much text in preambles or epilogues (the whole reason).
    TextAround(String),
}

impl fmt::Display for NotPgp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotPgp::NoOpenPgp => f.write_str("no OpenPGP data found"),
            NotPgp::Invalid(why) => write!(f, "invalid OpenPGP data: {why}"),
            NotPgp::Mime(why) => write!(f, "unreadable MIME structure: {why}"),
            NotPgp::PlaintextPart(why) => write!(f, "unencrypted content: {why}"),
            NotPgp::KeyOnly => f.write_str(
                "only an OpenPGP key block (PGP PUBLIC KEY BLOCK), no encrypted message",
            ),
            NotPgp::Smime => f.write_str("S/MIME is not OpenPGP"),
            NotPgp::SignedOnly(form) => write!(f, "signed ({form}) but not encrypted"),
            NotPgp::TooLarge(cap) => write!(f, "not proven encrypted within the first {cap} bytes"),
            NotPgp::Internal(why) => write!(f, "internal error: {why}"),
            NotPgp::TextAround(why) => f.write_str(why),
        }
    }
}

/// The class of one MIME entity, ordered for combining parts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Class {
    /// Whitespace only.
    Empty,
    /// An OpenPGP key (public data; neither plaintext nor a message).
    Key,
    Encrypted(Form),
    Signed(Form),
    Plain(NotPgp),
}

/// What a message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    /// Encrypted OpenPGP mail.
    Encrypted(Form),
    /// Signed, not encrypted.
    Signed(Form),
    /// Not OpenPGP mail.
    Plain(NotPgp),
}

impl fmt::Display for Detection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detection::Encrypted(form) => write!(f, "encrypted ({form})"),
            Detection::Signed(form) => write!(f, "signed ({form})"),
            Detection::Plain(why) => why.fmt(f),
        }
    }
}

/// Classifies a whole message (headers, blank line, body; CRLF or LF).
/// Never panics: a panic in the parsers becomes `Plain(Internal)`.
pub fn detect(message: &[u8]) -> Detection {
    let mut d = Detector::new(Wanted::default());
    d.feed(message);
    d.finish().detection
}

/// What a [`Detector`] collects besides the detection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted {
    /// The PKESK recipients of each encrypted block.
    pub keys: bool,
}

/// Text (bytes other than ASCII white space) in the preambles and in the
/// epilogues of all multiparts of a message, every nesting level counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OuterText {
    /// Before the first boundary lines.
    pub preamble: usize,
    /// After the closing boundary lines.
    pub epilogue: usize,
}

/// What a message was found to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The detection.
    pub detection: Detection,
    /// When asked for: the PKESK recipients of each encrypted OpenPGP
    /// block (a passphrase-only block gives an empty list).
    pub targets: Vec<Vec<packets::KeyTarget>>,
    /// Text around the multiparts.
    pub outer: OuterText,
}

/// Judges a message as its bytes arrive, through the strict streaming
/// reader ([`crate::mime`]): fed any chunking of the message, it gives the
/// same detection, and a refusal as soon as one is proven (the first
/// plaintext leaf whose verdict nothing later can change, or a MIME
/// construct refused by the reader).
///
/// Memory: the reader's small constant, plus the decoded bytes of the
/// leaves that must be judged whole (OpenPGP data, armor, the HTML twin),
/// at most `limit` bytes in all.
#[derive(Debug)]
pub struct Detector {
    reader: mime::Reader,
    state: State,
}

#[derive(Debug)]
struct State {
    frames: Vec<Frame>,
    result: Option<Class>,
    refused: Option<NotPgp>,
    wanted: Wanted,
    targets: Vec<Vec<packets::KeyTarget>>,
    outer: OuterText,
    buffered: usize,
    limit: usize,
    budget: u64,
    /// What a streamed leaf hands on to the next (see
    /// [`PayloadReader::with_carried`]).
    carried: Carried,
}

/// How a multipart decides from its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// RFC 3156 §4.
    Encrypted,
    /// RFC 3156 §5: the signed entity is not judged.
    Signed,
    /// S/MIME signed.
    Smime,
    /// An HTML twin may repeat a text/plain armor.
    Alternative,
    /// Plaintext anywhere wins, then signed, then encrypted.
    Combine,
}

#[derive(Debug)]
struct Child {
    essence: String,
    class: Class,
    body: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Frame {
    essence: String,
    kind: FrameKind,
    /// Not judged (inside a signed entity or an S/MIME multipart).
    opaque: bool,
    /// The parent needs the decoded body at the end.
    keep: bool,
    /// Every ancestor combines its parts: a plaintext class here is the
    /// message's verdict, so it can be given at once.
    chain: bool,
}

#[derive(Debug)]
enum FrameKind {
    Leaf(Leaf),
    Multipart { rule: Rule, children: Vec<Child> },
    Message { class: Class },
}

const ARMOR_BEGIN: &[u8] = b"-----BEGIN PGP ";

/// Most of a kept RFC 3156 control part (`Version: 1` and white space).
const MAX_CONTROL: usize = 1024;

/// Most of a kept RFC 3156 signature part (§5): armored signatures, a few
/// hundred octets each; a key's worth of notations fits many times.
pub const MAX_SIGNATURE_PART: usize = 64 * 1024;

/// Most of each kept part of a `multipart/alternative` (the `text/plain`
/// armor and its `text/html` twin are compared line by line at the end,
/// so both are held). Twins are written by webmail around a pasted or
/// generated armor of a text message; a larger `text/plain` part is still
/// judged (streamed, as any armor), a larger `text/html` one is refused
/// with its own reason, since it can no longer be compared.
pub const MAX_TWIN_PART: usize = 1024 * 1024;

/// Most of a `text/html` part outside `multipart/alternative` kept to see
/// whether it shows anything: Exchange's "mixed up" PGP/MIME has an HTML
/// body of a few hundred octets that shows nothing. A larger one is
/// streamed and judged as any text part.
const MAX_BLANK_HTML: usize = 8 * 1024;

/// One leaf being read.
#[derive(Debug)]
enum Leaf {
    /// Kept whole, bounded, for a rule that reads the whole body: the
    /// control part, an HTML twin and its `text/plain` sibling, a
    /// signature part. `over`: more than `cap` bytes came (a control part
    /// that is not `Version: 1`).
    Kept {
        body: Vec<u8>,
        cap: usize,
        over: bool,
        decided: bool,
    },
    /// Judged as it streams by the OpenPGP payload reader.
    Streamed(Box<Streamed>),
}

#[derive(Debug)]
struct Streamed {
    reader: PayloadReader,
    /// The first bytes after leading white space, until they prove the
    /// part plaintext or possibly OpenPGP (at most a line's start).
    head: Vec<u8>,
    /// The first byte of the body.
    first: Option<u8>,
    decided: bool,
    /// Decided already (a part the parent judges whole: its early class).
    verdict: Option<Class>,
}

impl Detector {
    /// A detector at the start of a message; leaf data kept for judging is
    /// bounded by the default 64 MiB.
    pub fn new(wanted: Wanted) -> Detector {
        Detector::with_limit(wanted, openpgp::MAX_INPUT_BYTES)
    }

    /// With at most `limit` bytes of leaf data kept.
    pub fn with_limit(wanted: Wanted, limit: usize) -> Detector {
        Detector {
            reader: mime::Reader::new(),
            state: State {
                frames: Vec::new(),
                result: None,
                refused: None,
                wanted,
                targets: Vec::new(),
                outer: OuterText::default(),
                buffered: 0,
                limit,
                budget: openpgp::MAX_DECOMPRESSED_BYTES as u64,
                carried: Carried::default(),
            },
        }
    }

    /// The refusal proven so far, if any (nothing later changes it).
    pub fn refused(&self) -> Option<&NotPgp> {
        self.state.refused.as_ref()
    }

    /// Text around the multiparts so far.
    pub fn outer(&self) -> OuterText {
        self.state.outer
    }

    /// Reads the next bytes; returns the refusal once one is proven.
    /// Never panics: a panic in the parsers is an internal error.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<&NotPgp> {
        if self.state.refused.is_none() {
            let Detector { reader, state } = self;
            let mut budget = state.budget;
            let r = guarded(&mut budget, || reader.feed(bytes, &mut |e| state.event(e)));
            state.budget = budget;
            self.settle(r);
        }
        self.state.refused.as_ref()
    }

    /// The message ended: what it is.
    pub fn finish(mut self) -> Found {
        if self.state.refused.is_none() {
            let Detector { reader, state } = &mut self;
            let mut budget = state.budget;
            let r = guarded(&mut budget, || reader.finish(&mut |e| state.event(e)));
            state.budget = budget;
            self.settle(r);
        }
        let s = self.state;
        let detection = match (s.refused, s.result) {
            (Some(why), _) => Detection::Plain(why),
            (None, Some(class)) => class.into_detection(),
            (None, None) => Detection::Plain(NotPgp::Internal("message not finished".into())),
        };
        Found {
            detection,
            targets: s.targets,
            outer: s.outer,
        }
    }

    fn settle(&mut self, r: Result<Result<(), ReadError<NotPgp>>, NotPgp>) {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(ReadError::Mime(e))) => self.state.refused = Some(NotPgp::Mime(e.to_string())),
            Ok(Err(ReadError::Sink(why))) | Err(why) => self.state.refused = Some(why),
        }
    }
}

/// Judges one entity from the strict reader's events, for a caller that
/// reads the message itself (a delivery report judging the message it
/// returns): the same judgement a [`Detector`] gives, fed the events from
/// the entity's `Start` to its `End`.
#[derive(Debug)]
pub struct EntityJudge {
    state: State,
}

impl Default for EntityJudge {
    fn default() -> Self {
        EntityJudge::new()
    }
}

impl EntityJudge {
    /// A judge before the entity's `Start`.
    pub fn new() -> EntityJudge {
        EntityJudge {
            state: Detector::new(Wanted::default()).state,
        }
    }

    /// One event of the entity; an error is the final refusal (feed no
    /// more). Never panics: a panic in the parsers is an internal error.
    pub fn event(&mut self, e: Event<'_>) -> Result<(), NotPgp> {
        if let Some(why) = &self.state.refused {
            return Err(why.clone());
        }
        let state = &mut self.state;
        let mut budget = state.budget;
        let r = guarded(&mut budget, || state.event(e)).and_then(|r| r);
        state.budget = budget;
        if let Err(why) = &r {
            state.refused = Some(why.clone());
        }
        r
    }

    /// Text around the entity's multiparts so far.
    pub fn outer(&self) -> OuterText {
        self.state.outer
    }

    /// What the entity is (after its `End`).
    pub fn finish(self) -> Detection {
        let s = self.state;
        match (s.refused, s.result) {
            (Some(why), _) => Detection::Plain(why),
            (None, Some(class)) => class.into_detection(),
            (None, None) => Detection::Plain(NotPgp::Internal("entity not finished".into())),
        }
    }
}

/// Runs `f` with the message's decompression budget, catching a panic.
fn guarded<T>(budget: &mut u64, f: impl FnOnce() -> T) -> Result<T, NotPgp> {
    catch_unwind(AssertUnwindSafe(|| openpgp::resume_message(budget, f))).map_err(|panic| {
        let what = minimilter::panic_message(&*panic);
        NotPgp::Internal(format!("detector panicked: {}", openpgp::one_line(&what)))
    })
}

impl Class {
    fn into_detection(self) -> Detection {
        match self {
            Class::Encrypted(form) => Detection::Encrypted(form),
            Class::Signed(form) => Detection::Signed(form),
            Class::Empty => Detection::Plain(NotPgp::NoOpenPgp),
            Class::Key => Detection::Plain(NotPgp::KeyOnly),
            Class::Plain(why) => Detection::Plain(why),
        }
    }
}

/// Most text (bytes other than white space) allowed in the preambles of a
/// message's multiparts, all levels together, and again in their
/// epilogues. Readers ignore both (RFC 2046 §5.1.1; Thunderbird's MIME
/// parser drops their lines), but the bytes are stored in the mailbox in
/// the clear, so they must not become a channel for plaintext of any size.
/// Clients write a line at most there (Enigmail: "This is an OpenPGP/MIME
/// encrypted message (RFC 4880 and 3156)"); a list or a gateway may append
/// a short footer.
pub const MAX_OUTER_TEXT: usize = 4096;

impl State {
    fn event(&mut self, e: Event<'_>) -> Result<(), NotPgp> {
        match e {
            Event::Start(part) => {
                self.outer_ended()?;
                self.start(part)
            }
            Event::Body(bytes) => self.body(bytes),
            Event::Preamble(t) => {
                self.outer.preamble += text_bytes(t);
                self.outer_growing()
            }
            Event::Epilogue(t) => {
                self.outer.epilogue += text_bytes(t);
                self.outer_growing()
            }
            Event::End => {
                self.outer_ended()?;
                self.end()
            }
            Event::Finished => self.outer_ended(),
        }
    }

    /// While text is read: far over the limit, refused at once without
    /// reading on (the count is then "more than").
    fn outer_growing(&self) -> Result<(), NotPgp> {
        let t = self.outer;
        for (n, where_) in [
            (t.preamble, "before the first boundary (preamble)"),
            (t.epilogue, "after the closing boundary (epilogue)"),
        ] {
            if n > 2 * MAX_OUTER_TEXT {
                return Err(NotPgp::TextAround(format!(
                    "more than {} bytes of text {where_}, at most {MAX_OUTER_TEXT}",
                    2 * MAX_OUTER_TEXT
                )));
            }
        }
        Ok(())
    }

    /// Where a preamble or an epilogue may have ended (the next part, a
    /// multipart's end, the message's end): over the limit, refused with
    /// the count. Checked at fixed points of the message, so the reason
    /// does not depend on the chunking.
    fn outer_ended(&self) -> Result<(), NotPgp> {
        let t = self.outer;
        for (n, where_) in [
            (t.preamble, "before the first boundary (preamble)"),
            (t.epilogue, "after the closing boundary (epilogue)"),
        ] {
            if n > MAX_OUTER_TEXT {
                return Err(NotPgp::TextAround(format!(
                    "{n} bytes of text {where_}, at most {MAX_OUTER_TEXT}"
                )));
            }
        }
        Ok(())
    }

    fn start(&mut self, part: &Part) -> Result<(), NotPgp> {
        let essence = part.essence();
        let (opaque, keep, chain) = match self.frames.last() {
            None => (false, false, true),
            Some(parent) => {
                let nth = match &parent.kind {
                    FrameKind::Multipart { children, .. } => children.len(),
                    _ => 0,
                };
                let rule = match &parent.kind {
                    FrameKind::Multipart { rule, .. } => Some(*rule),
                    _ => None,
                };
                // The signed entity of PGP/MIME signed is not judged, but
                // for a PGP/MIME encrypted one (encrypt-then-sign, RFC 1847
                // §2.1 allows any entity there): judged, it makes the
                // message encrypted (see `pgp_mime_signed`).
                let opaque = parent.opaque
                    || rule == Some(Rule::Smime)
                    || (rule == Some(Rule::Signed) && nth == 0 && !is_pgp_mime_encrypted(part));
                let keep = match rule {
                    Some(Rule::Encrypted) => nth == 0,
                    Some(Rule::Signed) => nth == 1,
                    Some(Rule::Alternative) => essence == "text/plain" || essence == "text/html",
                    _ => false,
                };
                let chain = parent.chain
                    && !opaque
                    && match rule {
                        None | Some(Rule::Combine) => true,
                        Some(Rule::Alternative) => essence != "text/html",
                        _ => false,
                    };
                (opaque, keep, chain)
            }
        };
        let kind = if part.media.type_() == "multipart" {
            let protocol = part.media.param("protocol").map(str::to_ascii_lowercase);
            let rule = match (part.media.subtype(), protocol.as_deref()) {
                ("encrypted", Some("application/pgp-encrypted")) => Rule::Encrypted,
                ("signed", Some("application/pgp-signature")) => Rule::Signed,
                ("signed", Some(p)) if is_smime(p) => Rule::Smime,
                ("alternative", _) => Rule::Alternative,
                _ => Rule::Combine,
            };
            FrameKind::Multipart {
                rule,
                children: Vec::new(),
            }
        } else if essence == "message/rfc822" || essence == "message/global" {
            FrameKind::Message {
                class: Class::Empty,
            }
        } else {
            if chain && is_smime(essence) {
                return Err(NotPgp::Smime);
            }
            if !opaque
                && let Some(cs) = part.media.param("charset")
                && !armor_reads_as_ascii(cs)
            {
                return Err(NotPgp::PlaintextPart(format!(
                    "{essence} part in charset {cs}, which does not read armor as ASCII"
                )));
            }
            let kept = keep || essence == "application/pgp-encrypted" || essence == "text/html";
            let cap = if !keep && essence == "text/html" {
                MAX_BLANK_HTML
            } else if !keep || essence == "application/pgp-encrypted" {
                MAX_CONTROL
            } else if essence == "text/plain" || essence == "text/html" {
                MAX_TWIN_PART
            } else {
                MAX_SIGNATURE_PART
            };
            FrameKind::Leaf(if kept || opaque {
                Leaf::Kept {
                    body: Vec::new(),
                    cap,
                    over: false,
                    decided: false,
                }
            } else {
                self.streamed(essence)
            })
        };
        self.frames.push(Frame {
            essence: essence.to_owned(),
            kind,
            opaque,
            keep,
            chain,
        });
        Ok(())
    }

    fn streamed(&mut self, essence: &str) -> Leaf {
        let limits = PayloadLimits {
            max_decompressed_bytes: self.budget,
            ..PayloadLimits::default()
        };
        let encoding = if essence.starts_with("text/") {
            Encoding::Armored
        } else {
            Encoding::Auto
        };
        Leaf::Streamed(Box::new(Streamed {
            reader: PayloadReader::new(encoding, &limits)
                .with_carried(std::mem::take(&mut self.carried)),
            head: Vec::new(),
            first: None,
            decided: false,
            verdict: None,
        }))
    }

    fn body(&mut self, bytes: &[u8]) -> Result<(), NotPgp> {
        let Some(frame) = self.frames.last() else {
            return Ok(());
        };
        if frame.opaque || !matches!(frame.kind, FrameKind::Leaf(_)) {
            return Ok(());
        }
        let chain = frame.chain;
        // A control-type part too long to be `Version: 1` outside
        // multipart/encrypted is OpenPGP data or plaintext, and a
        // `text/plain` alternative too long to be compared with a twin is
        // armor or plaintext: stream it.
        let convert = matches!(
            &frame.kind,
            FrameKind::Leaf(Leaf::Kept { body, cap, .. })
                if (!frame.keep || frame.essence == "text/plain")
                    && body.len() + bytes.len() > *cap
        );
        if convert {
            let essence = frame.essence.clone();
            let mut leaf = self.streamed(&essence);
            let Some(Frame {
                kind: FrameKind::Leaf(old),
                ..
            }) = self.frames.last_mut()
            else {
                return Ok(());
            };
            std::mem::swap(old, &mut leaf);
            if let Leaf::Kept { body, .. } = leaf {
                self.buffered -= body.len();
                self.body(&body)?;
            }
            return self.body(bytes);
        }
        let Some(Frame {
            kind: FrameKind::Leaf(leaf),
            essence,
            ..
        }) = self.frames.last_mut()
        else {
            return Ok(());
        };
        let essence: &str = essence;
        match leaf {
            Leaf::Kept {
                body,
                cap,
                over,
                decided,
            } => {
                if *over {
                    return Ok(());
                }
                if body.len() + bytes.len() > *cap {
                    *over = true;
                    self.buffered -= body.len();
                    *body = Vec::new();
                    return Ok(());
                }
                self.buffered += bytes.len();
                if self.buffered > self.limit {
                    return Err(NotPgp::TooLarge(self.limit));
                }
                body.extend_from_slice(bytes);
                let t = body.trim_ascii_start();
                // Markup may show nothing (see `blank_html`): judged at
                // the end, or as it streams once over MAX_BLANK_HTML.
                let markup = essence == "text/html" && t.first() == Some(&b'<');
                if chain && !*decided && !t.is_empty() && !markup {
                    match early_leaf(essence, body[0], t) {
                        Some(Early::Plain(why)) => return Err(why),
                        Some(Early::Open) => *decided = true,
                        None => {}
                    }
                }
                Ok(())
            }
            Leaf::Streamed(s) => s.feed(essence, chain, bytes),
        }
    }

    fn end(&mut self) -> Result<(), NotPgp> {
        let Some(frame) = self.frames.pop() else {
            return Ok(());
        };
        let (class, body) = match frame.kind {
            FrameKind::Leaf(Leaf::Kept {
                body, over, cap, ..
            }) => {
                let class = if frame.opaque {
                    Class::Empty
                } else if over && frame.essence == "text/html" {
                    Class::Plain(NotPgp::PlaintextPart(format!(
                        "text/html alternative of more than {MAX_TWIN_PART} bytes, \
                         too large to compare with its text/plain armor"
                    )))
                } else if over {
                    Class::Plain(NotPgp::Invalid(format!(
                        "{} part of more than {cap} bytes",
                        frame.essence
                    )))
                } else if !frame.keep && frame.essence == "text/html" && blank_html(&body) {
                    Class::Empty
                } else {
                    leaf(
                        &frame.essence,
                        &body,
                        self.wanted.keys.then_some(&mut self.targets),
                    )
                };
                self.buffered -= body.len();
                (class, frame.keep.then_some(body))
            }
            FrameKind::Leaf(Leaf::Streamed(s)) => {
                let targets = self.wanted.keys.then_some(&mut self.targets);
                let carry = (&mut self.budget, &mut self.carried);
                (s.finish(&frame.essence, targets, carry), None)
            }
            FrameKind::Multipart { rule, children } => {
                let class = if frame.opaque {
                    Class::Empty
                } else {
                    multipart(rule, &children)
                };
                (class, None)
            }
            FrameKind::Message { class } => (class, None),
        };
        if let (true, Class::Plain(why)) = (frame.chain, &class) {
            return Err(why.clone());
        }
        match self.frames.last_mut().map(|f| &mut f.kind) {
            None => self.result = Some(class),
            Some(FrameKind::Multipart { children, .. }) => children.push(Child {
                essence: frame.essence,
                class,
                body,
            }),
            Some(FrameKind::Message { class: c }) => *c = class,
            Some(FrameKind::Leaf(_)) => {
                return Err(NotPgp::Internal("a part inside a leaf".into()));
            }
        }
        Ok(())
    }
}

fn text_bytes(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| !b.is_ascii_whitespace()).count()
}

enum Early {
    /// Refused whatever follows.
    Plain(NotPgp),
    /// Judged only at the end.
    Open,
}

/// What the first decoded bytes of a leaf already prove: `first` is its
/// first byte, `t` what follows its leading white space so far (not
/// empty). Exactly the verdict the leaf gets at its end, so that the
/// refusal does not depend on where the chunks were cut.
fn early_leaf(essence: &str, first: u8, t: &[u8]) -> Option<Early> {
    let n = t.len().min(ARMOR_BEGIN.len());
    if ARMOR_BEGIN.starts_with(&t[..n]) {
        return (n == ARMOR_BEGIN.len()).then_some(Early::Open);
    }
    if essence.starts_with("text/") {
        return Some(Early::Plain(NotPgp::PlaintextPart(format!(
            "{essence} part"
        ))));
    }
    const VERSION: &[u8] = b"Version: 1";
    let n = t.len().min(VERSION.len());
    if essence == "application/pgp-encrypted" && VERSION[..n].eq_ignore_ascii_case(&t[..n]) {
        return (n == VERSION.len()).then_some(Early::Open);
    }
    if first & 0x80 != 0 {
        // Perhaps an OpenPGP packet header.
        return Some(Early::Open);
    }
    Some(Early::Plain(NotPgp::PlaintextPart(format!(
        "{essence} attachment"
    ))))
}

impl Streamed {
    fn feed(&mut self, essence: &str, chain: bool, bytes: &[u8]) -> Result<(), NotPgp> {
        if self.verdict.is_some() || bytes.is_empty() {
            return Ok(());
        }
        self.first.get_or_insert(bytes[0]);
        if self.decided {
            return self.payload(essence, chain, bytes);
        }
        // Leading white space goes straight to the payload reader.
        let lead = if self.head.is_empty() {
            bytes.iter().take_while(|b| b.is_ascii_whitespace()).count()
        } else {
            0
        };
        self.payload(essence, chain, &bytes[..lead])?;
        self.head.extend_from_slice(&bytes[lead..]);
        if self.head.is_empty() || self.verdict.is_some() {
            return Ok(());
        }
        match early_leaf(essence, self.first.unwrap_or(b' '), &self.head) {
            Some(Early::Plain(why)) if chain => Err(why),
            Some(Early::Plain(why)) => {
                self.verdict = Some(Class::Plain(why));
                Ok(())
            }
            Some(Early::Open) => {
                self.decided = true;
                let head = std::mem::take(&mut self.head);
                self.payload(essence, chain, &head)
            }
            None => Ok(()),
        }
    }

    /// Bytes for the payload reader; its error is final.
    fn payload(&mut self, essence: &str, chain: bool, bytes: &[u8]) -> Result<(), NotPgp> {
        if bytes.is_empty() || self.verdict.is_some() {
            return Ok(());
        }
        if let Err(e) = self.reader.feed(bytes) {
            match payload_class(essence, Err(e), None, (&mut 0, &mut Carried::default())) {
                Class::Plain(why) if chain => return Err(why),
                c => self.verdict = Some(c),
            }
        }
        Ok(())
    }

    fn finish(mut self, essence: &str, targets: Targets<'_>, carry: Carry<'_>) -> Class {
        if let Some(v) = self.verdict.take() {
            return v;
        }
        if !self.decided && !self.head.is_empty() {
            if let Some(Early::Plain(why)) =
                early_leaf(essence, self.first.unwrap_or(b' '), &self.head)
            {
                return Class::Plain(why);
            }
            let head = std::mem::take(&mut self.head);
            if let Err(e) = self.reader.feed(&head) {
                return payload_class(essence, Err(e), None, carry);
            }
        }
        payload_class(essence, self.reader.finish(), targets, carry)
    }
}

/// What a streamed leaf hands on to the next: the message's decompression
/// budget and what the payload reader carries ([`Carried`]).
type Carry<'a> = (&'a mut u64, &'a mut Carried);

/// The class of a streamed leaf from the payload reader's verdict (the
/// reasons the whole-body functions give for the same bytes).
fn payload_class(
    essence: &str,
    r: Result<Payload, PayloadError>,
    targets: Targets<'_>,
    (budget, carried): Carry<'_>,
) -> Class {
    let mut p = match r {
        Ok(p) => p,
        Err(e) => {
            return Class::Plain(match (e.class(), &e) {
                (ErrorClass::Internal, _) => NotPgp::Internal(e.to_string()),
                (_, PayloadError::TextOutsideArmor) => {
                    NotPgp::PlaintextPart("text outside the OpenPGP armor".into())
                }
                (_, PayloadError::NotOpenPgp(_)) if essence.starts_with("text/") => {
                    NotPgp::PlaintextPart(format!("{essence} part"))
                }
                (_, PayloadError::NotOpenPgp(_)) => {
                    NotPgp::PlaintextPart(format!("{essence} attachment"))
                }
                (_, PayloadError::Unencrypted(why)) => {
                    NotPgp::Invalid(format!("PGP MESSAGE is not encrypted: {why}"))
                }
                (_, PayloadError::Armor(why)) => NotPgp::Invalid(format!("malformed armor: {why}")),
                (_, PayloadError::Truncated(why)) if why.starts_with("no END line") => {
                    NotPgp::Invalid(format!("armor is truncated ({why})"))
                }
                (_, PayloadError::Limit(why)) if why.starts_with("compressed data expands") => {
                    tracing::debug!(
                        limit = openpgp::MAX_DECOMPRESSED_BYTES,
                        "decompression budget of the message exhausted"
                    );
                    NotPgp::Invalid(format!(
                        "compressed data expands beyond the per-message limit of {} MiB",
                        openpgp::MAX_DECOMPRESSED_BYTES >> 20
                    ))
                }
                (ErrorClass::Plaintext, _) => NotPgp::PlaintextPart(e.to_string()),
                (ErrorClass::Invalid, _) => {
                    let text = e.to_string();
                    NotPgp::Invalid(
                        text.strip_prefix("invalid OpenPGP data: ")
                            .unwrap_or(&text)
                            .to_owned(),
                    )
                }
            });
        }
    };
    *budget = budget.saturating_sub(p.decompressed_bytes);
    *carried = std::mem::take(&mut p.carried);
    match p.kind {
        PayloadKind::Empty => Class::Empty,
        PayloadKind::Key => Class::Key,
        PayloadKind::Encrypted => {
            if let Some(out) = targets {
                out.extend(
                    p.blocks
                        .into_iter()
                        .filter(|b| b.kind == PayloadKind::Encrypted)
                        .map(|b| b.recipients),
                );
            }
            Class::Encrypted(Form::Inline)
        }
        PayloadKind::SignedMessage => Class::Signed(Form::Inline),
        PayloadKind::CleartextSigned => Class::Signed(Form::Cleartext),
        PayloadKind::Signature => Class::Plain(NotPgp::Invalid(
            "PGP SIGNATURE armor holding signatures, outside PGP/MIME signed".into(),
        )),
    }
}

/// A multipart's class from its parts' classes (and kept bodies).
fn multipart(rule: Rule, children: &[Child]) -> Class {
    match rule {
        Rule::Encrypted => pgp_mime_encrypted(children),
        Rule::Signed => pgp_mime_signed(children),
        Rule::Smime => Class::Plain(NotPgp::Smime),
        Rule::Alternative => combine(children.iter().map(|c| {
            if c.essence == "text/html" && html_twin(c, children) {
                Class::Empty
            } else {
                c.class.clone()
            }
        })),
        Rule::Combine => combine(children.iter().map(|c| c.class.clone())),
    }
}

/// The combination of the parts of a multipart: plaintext anywhere wins,
/// then signed, then encrypted.
fn combine(parts: impl IntoIterator<Item = Class>) -> Class {
    let mut acc = Class::Empty;
    for c in parts {
        acc = match (acc, c) {
            (p @ Class::Plain(_), _) | (_, p @ Class::Plain(_)) => return p,
            (s @ Class::Signed(_), _) | (_, s @ Class::Signed(_)) => s,
            (e @ Class::Encrypted(_), _) | (_, e @ Class::Encrypted(_)) => e,
            (Class::Key, _) | (_, Class::Key) => Class::Key,
            (Class::Empty, Class::Empty) => Class::Empty,
        };
    }
    acc
}

/// A `text/html` alternative that only repeats, in presentation markup, a
/// `text/plain` sibling that is nothing but valid armor adds nothing.
/// Repeats means the same lines (armor headers included, so a `Comment:`
/// cannot differ). Every other HTML part is judged as usual (HTML with any
/// other text is plaintext).
fn html_twin(html: &Child, siblings: &[Child]) -> bool {
    let lines = |text: &[u8]| -> Vec<Vec<u8>> {
        text.split(|&b| b == b'\n')
            .map(<[u8]>::trim_ascii)
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    };
    let only_armor = |text: &[u8]| {
        let s = armor::scan(text);
        !s.text_outside && !s.blocks.is_empty() && s.blocks.iter().all(Result::is_ok)
    };
    let Some(body) = &html.body else {
        return false;
    };
    let Ok(shown) = crate::html::visible_text(body) else {
        return false;
    };
    let shown = lines(shown.as_bytes());
    siblings.iter().any(|sibling| {
        sibling.essence == "text/plain"
            && sibling
                .body
                .as_deref()
                .is_some_and(|b| only_armor(b) && lines(b) == shown)
    })
}

/// A `text/html` part that shows nothing: presentation markup only (the
/// same gate as an HTML twin, `crate::html::visible_text`: no comments,
/// images, links, styles or free-form attribute values) around white
/// space and `&nbsp;`. Exchange's "mixed up" rewrite of PGP/MIME puts such
/// a body in front of the control part and the encrypted data, where it
/// counts as empty, as an empty `text/plain` body does.
fn blank_html(body: &[u8]) -> bool {
    body.trim_ascii_start().first() == Some(&b'<')
        && crate::html::visible_text(body).is_ok_and(|t| t.chars().all(char::is_whitespace))
}

/// S/MIME content types (RFC 8551 §3.2; the `x-` forms are what older
/// clients send): enveloped or signed data, and detached signatures.
fn is_smime(mime: &str) -> bool {
    matches!(
        mime.to_ascii_lowercase().as_str(),
        "application/pkcs7-mime"
            | "application/x-pkcs7-mime"
            | "application/pkcs7-signature"
            | "application/x-pkcs7-signature"
    )
}

/// Whether a reader showing bytes in charset `cs` shows ASCII armor as the
/// same ASCII characters. Not so for UTF-7 (a `+` starts base64 that is
/// read as UTF-16: armor lines can end in `+AG0AYQByAGsAZQBy`, "marker",
/// while their bytes stay random enough), UTF-16/32 and UCS-2/4 (pairs of
/// armor bytes read as CJK characters), HZ (`~{` switches to GB2312) and
/// EBCDIC. No client labels armor so; every other charset (ASCII, UTF-8,
/// ISO 8859, Windows code pages, the East Asian multibyte ones, which keep
/// ASCII bytes ASCII without escape sequences) passes.
fn armor_reads_as_ascii(cs: &str) -> bool {
    let c: String = cs
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    let c = c.as_str();
    if c.contains("utf8") {
        return true;
    }
    let unreadable = c.contains("utf7")
        || c.starts_with("utf16")
        || c.starts_with("utf32")
        || c.starts_with("ucs")
        || c.starts_with("iso10646")
        || c.starts_with("unicode")
        || c.starts_with("csunicode")
        || c.starts_with("utf1")
        || c == "utfebcdic"
        || c.starts_with("hz")
        || c.contains("ebcdic")
        || c == "bocu1"
        || c == "scsu"
        || matches!(
            c,
            "cp037"
                | "cp273"
                | "cp500"
                | "cp875"
                | "cp1026"
                | "cp1047"
                | "cp1140"
                | "ibm037"
                | "ibm273"
                | "ibm500"
                | "ibm1026"
                | "ibm1047"
                | "ibm1140"
        );
    !unreadable
}

/// RFC 3156 §4: the control part, then the encrypted data.
fn pgp_mime_encrypted(children: &[Child]) -> Class {
    let invalid = |why: &str| Class::Plain(NotPgp::Invalid(format!("PGP/MIME encrypted: {why}")));
    let [control, payload] = children else {
        return invalid(&format!("{} parts instead of 2", children.len()));
    };
    if control.essence != "application/pgp-encrypted" {
        return invalid("first part is not application/pgp-encrypted");
    }
    if !control.body.as_deref().is_some_and(is_version_1) {
        return invalid("control part without \"Version: 1\"");
    }
    if payload.essence != "application/octet-stream" {
        return invalid("second part is not application/octet-stream");
    }
    match &payload.class {
        Class::Encrypted(_) => Class::Encrypted(Form::PgpMime),
        Class::Plain(NotPgp::Invalid(why)) => invalid(why),
        Class::Plain(why @ NotPgp::Internal(_)) => Class::Plain(why.clone()),
        Class::Plain(NotPgp::PlaintextPart(why)) if why.starts_with("not ciphertext") => {
            Class::Plain(NotPgp::PlaintextPart(format!("PGP/MIME encrypted: {why}")))
        }
        Class::Empty => invalid("empty second part"),
        _ => invalid("second part is not an encrypted OpenPGP message"),
    }
}

/// The RFC 3156 control part's content: a `Version: 1` line, nothing else.
fn is_version_1(body: &[u8]) -> bool {
    let mut lines = body
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty());
    lines
        .next()
        .is_some_and(|l| l.eq_ignore_ascii_case(b"Version: 1"))
        && lines.next().is_none()
}

/// `multipart/encrypted; protocol="application/pgp-encrypted"`.
fn is_pgp_mime_encrypted(part: &Part) -> bool {
    part.essence() == "multipart/encrypted"
        && part
            .media
            .param("protocol")
            .is_some_and(|p| p.eq_ignore_ascii_case("application/pgp-encrypted"))
}

/// RFC 3156 §5: the signed entity, then the signature. A signed entity
/// that is itself well-formed PGP/MIME encrypted (encrypt-then-sign, which
/// RFC 1847 allows and RFC 3156 §6.1 mentions as the alternative to
/// signing inside the encryption) makes the message encrypted: it holds
/// nothing but the ciphertext, judged by the encrypted rules. Any other
/// signed entity, a malformed encrypted one included, is signed content
/// as before (refused under `require = "encrypted"`).
fn pgp_mime_signed(children: &[Child]) -> Class {
    let invalid = |why: &str| Class::Plain(NotPgp::Invalid(format!("PGP/MIME signed: {why}")));
    let [signed, signature] = children else {
        return invalid(&format!("{} parts instead of 2", children.len()));
    };
    if signature.essence != "application/pgp-signature" {
        return invalid("second part is not application/pgp-signature");
    }
    if let Class::Plain(NotPgp::Invalid(why)) = &signature.class
        && why.contains(" part of more than ")
    {
        // Over MAX_SIGNATURE_PART: not held, so not read.
        return invalid(why);
    }
    let body = signature.body.as_deref().unwrap_or_default();
    let s = armor::scan(body);
    match (s.text_outside, s.blocks.as_slice()) {
        (false, [Ok(block)]) if block.kind == Kind::Signature => {
            match packets::shape(&block.data) {
                Ok(Shape::Signatures) => match signed.class {
                    Class::Encrypted(_) if signed.essence == "multipart/encrypted" => {
                        Class::Encrypted(Form::PgpMime)
                    }
                    _ => Class::Signed(Form::PgpMime),
                },
                Ok(other) => invalid(&format!("signature part holds {other}")),
                Err(e) if e.is_internal() => Class::Plain(NotPgp::Internal(e.to_string())),
                Err(e) => invalid(&e.to_string()),
            }
        }
        (_, [Err(e)]) => invalid(&e.to_string()),
        _ => invalid("signature part is not one armored signature"),
    }
}

/// Where the recipients of encrypted blocks go, when collected.
type Targets<'a> = Option<&'a mut Vec<Vec<packets::KeyTarget>>>;

/// A leaf part: whatever its type, it must be empty, the RFC 3156 control
/// part, or OpenPGP data (armored, or binary in a non-text part).
fn leaf(mime: &str, body: &[u8], targets: Targets<'_>) -> Class {
    if is_smime(mime) {
        return Class::Plain(NotPgp::Smime);
    }
    let start = body.trim_ascii_start();
    if start.is_empty() {
        return Class::Empty;
    }
    if mime == "application/pgp-encrypted" && is_version_1(body) {
        // An RFC 3156 control part outside multipart/encrypted (Exchange
        // turns multipart/encrypted into multipart/mixed): no content.
        return Class::Empty;
    }
    if mime.starts_with("text/") {
        if !start.starts_with(ARMOR_BEGIN) {
            return Class::Plain(NotPgp::PlaintextPart(format!("{mime} part")));
        }
        return text(body, targets);
    }
    match openpgp_data(body, targets) {
        Class::Plain(NotPgp::NoOpenPgp) => {
            Class::Plain(NotPgp::PlaintextPart(format!("{mime} attachment")))
        }
        other => other,
    }
}

/// The decoded body of a non-text part: armor, or binary packets.
fn openpgp_data(body: &[u8], targets: Targets<'_>) -> Class {
    let start = body.trim_ascii_start();
    if start.starts_with(ARMOR_BEGIN) {
        return text(body, targets);
    }
    // Binary OpenPGP (a .pgp/.gpg attachment): only an encrypted message
    // counts; any other bytes are an ordinary (unencrypted) attachment.
    match packets_class(body, targets) {
        Ok(Shape::Encrypted { .. }) => Class::Encrypted(Form::Inline),
        Ok(Shape::Key) => Class::Key,
        Err(e) if e.is_internal() => Class::Plain(NotPgp::Internal(e.to_string())),
        _ => Class::Plain(NotPgp::NoOpenPgp),
    }
}

/// Parses packets once: their shape, and for an encrypted message its
/// recipients (when collected).
fn packets_class(data: &[u8], targets: Targets<'_>) -> Result<Shape, packets::ShapeError> {
    let parsed = openpgp::packets(data)?;
    let shape = packets::shape_of(&parsed)?;
    if let (Shape::Encrypted { .. }, Some(out)) = (&shape, targets) {
        out.push(packets::recipients(&parsed)?);
    }
    Ok(shape)
}

/// Decoded text: only armored blocks and whitespace, or plaintext.
fn text(body: &[u8], mut targets: Targets<'_>) -> Class {
    let s = armor::scan(body);
    if s.blocks.is_empty() {
        return Class::Plain(NotPgp::NoOpenPgp);
    }
    if s.text_outside {
        return Class::Plain(NotPgp::PlaintextPart(
            "text outside the OpenPGP armor".into(),
        ));
    }
    combine(s.blocks.iter().map(|b| block(b, targets.as_deref_mut())))
}

fn block(b: &Result<armor::Block, armor::ArmorError>, targets: Targets<'_>) -> Class {
    let b = match b {
        Ok(b) => b,
        Err(e) => return Class::Plain(NotPgp::Invalid(e.to_string())),
    };
    let targets = if b.kind == Kind::Message {
        targets
    } else {
        None
    };
    let shape = match packets_class(&b.data, targets) {
        Ok(s) => s,
        Err(e) if e.is_internal() => return Class::Plain(NotPgp::Internal(e.to_string())),
        Err(e) => return Class::Plain(NotPgp::Invalid(e.to_string())),
    };
    match (&b.kind, shape) {
        (Kind::Message, Shape::Encrypted { .. }) => Class::Encrypted(Form::Inline),
        (Kind::Message, Shape::Signed) => Class::Signed(Form::Inline),
        (Kind::Cleartext, Shape::Signatures) => Class::Signed(Form::Cleartext),
        (Kind::PublicKey | Kind::PrivateKey, Shape::Key) => Class::Key,
        (Kind::Message, Shape::Other(why)) => Class::Plain(NotPgp::Invalid(format!(
            "PGP MESSAGE is not encrypted: {why}"
        ))),
        (kind, shape) => Class::Plain(NotPgp::Invalid(format!("{kind} armor holding {shape}"))),
    }
}

/// The PKESK recipients of every encrypted OpenPGP message in `message`
/// (armored or binary, in any judged part), one list per encrypted block;
/// a passphrase-only block gives an empty list. Meant for a message
/// [`detect`] found encrypted. Never panics.
pub fn encrypted_to(message: &[u8]) -> Result<Vec<Vec<packets::KeyTarget>>, String> {
    let mut d = Detector::new(Wanted { keys: true });
    d.feed(message);
    let found = d.finish();
    match found.detection {
        Detection::Plain(NotPgp::Internal(why)) => Err(why),
        _ => Ok(found.targets),
    }
}

/// True if the headers of `message` (as far as present) declare a top-level
/// multipart; returns its boundary. Read by the strict reader: headers it
/// refuses declare nothing.
pub fn top_boundary(headers: &[u8]) -> Option<String> {
    let mut reader = mime::Reader::new();
    let mut boundary = None;
    let mut sink = |e: Event<'_>| -> Result<(), ()> {
        if let Event::Start(part) = e {
            if part.media.type_() == "multipart" {
                boundary = part.media.param("boundary").map(str::to_owned);
            }
            // The first entity is the message: nothing more is needed.
            return Err(());
        }
        Ok(())
    };
    // The headers may stop anywhere; a blank line ends them.
    let _ = reader
        .feed(headers, &mut sink)
        .and_then(|()| reader.feed(b"\r\n\r\n", &mut sink));
    boundary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_content_type_is_ambiguous_and_refused() {
        let m = b"Subject: x\r\n\
Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=enc-b\r\n\
Content-Type: text/plain\r\n\
\r\n\
Plaintext a reader using the last header would show.\r\n";
        assert!(matches!(
            detect(m),
            Detection::Plain(NotPgp::Mime(why)) if why.contains("2 Content-Type headers")
        ));
    }

    /// A `multipart/alternative` with a `text/plain` part and a
    /// `text/html` one.
    fn alternative(plain: &str, html: &str) -> Vec<u8> {
        format!(
            "Subject: twins\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n\
             --alt\r\nContent-Type: text/plain\r\n\r\n{plain}\r\n\
             --alt\r\nContent-Type: text/html\r\n\r\n{html}\r\n--alt--\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn kept_parts_are_bounded_and_refused_with_their_own_reason() {
        // An HTML twin over the cap is not held: refused saying why.
        let html = format!("<html><body>{}</body></html>", "<br>\r\n".repeat(200_000));
        assert!(html.len() > MAX_TWIN_PART);
        let d = detect(&alternative("", &html)).to_string();
        assert!(
            d.contains(&format!(
                "text/html alternative of more than {MAX_TWIN_PART} bytes"
            )),
            "{d}"
        );
        // The same markup under the cap is judged as usual (it repeats no
        // armor, so it is an HTML part of its own).
        let small = format!("<html><body>{}</body></html>", "<br>\r\n".repeat(1000));
        assert_eq!(
            detect(&alternative("", &small)),
            Detection::Plain(NotPgp::PlaintextPart("text/html part".into()))
        );
        // A text/plain alternative over the cap is still judged as armor
        // (streamed), not refused for its size.
        let armor = format!(
            "-----BEGIN PGP MESSAGE-----\r\n\r\n{}-----END PGP MESSAGE-----",
            "QUJD\r\n".repeat(MAX_TWIN_PART / 6 + 1)
        );
        let d = detect(&alternative(&armor, "")).to_string();
        assert!(d.starts_with("invalid OpenPGP data"), "{d}");
        assert!(!d.contains("more than"), "{d}");
        // Plaintext over the cap is plaintext.
        let text = "words ".repeat(MAX_TWIN_PART / 6 + 1);
        assert_eq!(
            detect(&alternative(&text, "")),
            Detection::Plain(NotPgp::PlaintextPart("text/plain part".into()))
        );
        // A PGP/MIME signature part over its cap: named, not read.
        let sig = format!(
            "-----BEGIN PGP SIGNATURE-----\r\n\r\n{}-----END PGP SIGNATURE-----",
            "QUJD\r\n".repeat(MAX_SIGNATURE_PART / 6 + 1)
        );
        let m = format!(
            "Subject: s\r\nContent-Type: multipart/signed; protocol=\"application/pgp-signature\"; \
             micalg=pgp-sha256; boundary=s\r\n\r\n--s\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
             --s\r\nContent-Type: application/pgp-signature\r\n\r\n{sig}\r\n--s--\r\n"
        );
        let d = detect(m.as_bytes()).to_string();
        assert!(
            d.contains(&format!(
                "application/pgp-signature part of more than {MAX_SIGNATURE_PART} bytes"
            )),
            "{d}"
        );
    }

    #[test]
    fn top_boundary_reads_the_headers_strictly() {
        let h = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=\"b 1\"\r\n";
        assert_eq!(top_boundary(h).as_deref(), Some("b 1"));
        // With the blank line and a body too.
        let m = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n";
        assert_eq!(top_boundary(m).as_deref(), Some("x"));
        assert_eq!(top_boundary(b"Content-Type: text/plain\r\n"), None);
        // Headers the strict reader refuses declare nothing.
        let twice = b"Content-Type: multipart/mixed; boundary=x; boundary=y\r\n";
        assert_eq!(top_boundary(twice), None);
    }

    #[test]
    fn plain_text_is_not_pgp() {
        let d = detect(b"Subject: hi\r\n\r\nHello there.\r\n");
        assert_eq!(
            d,
            Detection::Plain(NotPgp::PlaintextPart("text/plain part".into()))
        );
        assert_eq!(
            detect(b"Subject: hi\r\n\r\n\r\n"),
            Detection::Plain(NotPgp::NoOpenPgp)
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut m = String::from("Subject: deep\r\n");
        for i in 0..40 {
            m.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{i}x\"\r\n\r\n--b{i}x\r\n"
            ));
        }
        m.push_str("Content-Type: text/plain\r\n\r\nx\r\n");
        for i in (0..40).rev() {
            m.push_str(&format!("--b{i}x--\r\n"));
        }
        let d = detect(m.as_bytes()).to_string();
        assert!(d.contains("nested more than 16 deep"), "{d}");
    }

    #[test]
    fn combine_orders_classes() {
        use Class::*;
        assert_eq!(
            combine([Empty, Encrypted(Form::Inline)]),
            Encrypted(Form::Inline)
        );
        assert_eq!(
            combine([Encrypted(Form::Inline), Signed(Form::Cleartext)]),
            Signed(Form::Cleartext)
        );
        assert_eq!(
            combine([Encrypted(Form::Inline), Plain(NotPgp::NoOpenPgp), Key]),
            Plain(NotPgp::NoOpenPgp)
        );
        assert_eq!(combine([Key, Empty]), Key);
        assert_eq!(
            combine([Key, Encrypted(Form::Inline)]),
            Encrypted(Form::Inline)
        );
    }
}
