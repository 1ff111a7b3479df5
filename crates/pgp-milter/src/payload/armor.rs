//! Incremental ASCII armor (RFC 9580 §6.2) and cleartext signatures (§7):
//! lines are classified as they arrive, base64 is decoded on the fly into
//! the packet framing, the CRC24 is computed on the way, and only lines
//! that must be read whole (BEGIN, END, armor headers, checksum) are held,
//! each with a bound.
//!
//! The reading matches [`crate::armor`] (lines end in LF or CRLF, white
//! space at line ends and blank lines between data lines are ignored as
//! GnuPG does, the checksum is optional and checked when present, a block
//! may lack the blank line after BEGIN when it has no headers), with two
//! additions:
//!
//! * armor headers are bounded: at most
//!   [`PayloadLimits::max_header_lines`](super::PayloadLimits) lines of at
//!   most `max_header_line_bytes` octets, with a key RFC 9580 §6.2.2 (or
//!   RFC 4880) defines — `Version`, `Comment`, `Hash`, `Charset`,
//!   `MessageID` — written as `Key: value`. What GnuPG, Sequoia, OpenPGP.js,
//!   GopenPGP, Mailvelope and Enigmail write fits (one or two short lines);
//!   forty lines of prose do not;
//! * outside the blocks only white space is allowed, and a line that
//!   begins with `-` but is not a BEGIN line is text.

use super::framing::{Ctx, PacketStream};
use super::grammar::Shape;
use super::{Block, PayloadError, PayloadKind};

/// Longest BEGIN or END line (`-----BEGIN PGP PRIVATE KEY BLOCK-----` is 37
/// octets) plus room for trailing white space.
const MAX_MARKER_LINE: usize = 80;

/// The armor's label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// `PGP MESSAGE`.
    Message,
    /// `PGP SIGNATURE`.
    Signature,
    /// `PGP PUBLIC KEY BLOCK`.
    PublicKey,
    /// `PGP PRIVATE KEY BLOCK`.
    PrivateKey,
    /// `PGP SIGNED MESSAGE` (its signature's armor is read as this label).
    SignedMessage,
}

impl Label {
    fn text(self) -> &'static str {
        match self {
            Label::Message => "MESSAGE",
            Label::Signature | Label::SignedMessage => "SIGNATURE",
            Label::PublicKey => "PUBLIC KEY BLOCK",
            Label::PrivateKey => "PRIVATE KEY BLOCK",
        }
    }

    fn from_text(s: &[u8]) -> Option<Label> {
        Some(match s {
            b"MESSAGE" => Label::Message,
            b"SIGNATURE" => Label::Signature,
            b"PUBLIC KEY BLOCK" => Label::PublicKey,
            b"PRIVATE KEY BLOCK" => Label::PrivateKey,
            b"SIGNED MESSAGE" => Label::SignedMessage,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Between blocks; `line_start`: nothing but the line end seen yet.
    Outside { line_start: bool },
    /// Reading a line that begins with `-` outside a block.
    Begin,
    /// Armor headers (or cleartext `Hash:` headers).
    Headers { cleartext: bool },
    /// Base64 lines.
    Data { line_start: bool },
    /// A line beginning with `=` (the checksum).
    Checksum,
    /// After the checksum: blank lines, then END.
    AfterChecksum { line_start: bool },
    /// A line beginning with `-` inside the block (END).
    End,
    /// The signed text of a cleartext signature.
    Cleartext { line_start: bool },
    /// A line of signed text that begins with `-`.
    ClearDash,
}

/// base64 alphabet value, or a class.
const INVALID: u8 = 0xff;
const fn table() -> [u8; 256] {
    let mut t = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
}
static B64: [u8; 256] = table();

/// CRC24 tables for slicing by eight (the CRC kept left-aligned in a
/// `u32`, so the MSB-first update is the usual big-endian table walk):
/// `T[0][i]` is one byte's update, `T[k][i]` the same byte `k` bytes
/// further back.
const fn crc_tables() -> [[u32; 256]; 8] {
    const POLY: u32 = 0x864C_FB00;
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ POLY
            } else {
                crc << 1
            };
            k += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev << 8) ^ t[0][(prev >> 24) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}
static CRC: [[u32; 256]; 8] = crc_tables();

/// CRC24 (RFC 9580 §6.1) continued over `data`.
pub fn crc24_update(crc: u32, data: &[u8]) -> u32 {
    let mut c = crc << 8;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let hi = c ^ u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
        c = CRC[7][(hi >> 24) as usize]
            ^ CRC[6][((hi >> 16) & 0xff) as usize]
            ^ CRC[5][((hi >> 8) & 0xff) as usize]
            ^ CRC[4][(hi & 0xff) as usize]
            ^ CRC[3][usize::from(w[4])]
            ^ CRC[2][usize::from(w[5])]
            ^ CRC[1][usize::from(w[6])]
            ^ CRC[0][usize::from(w[7])];
    }
    for &b in words.remainder() {
        c = (c << 8) ^ CRC[0][((c >> 24) as u8 ^ b) as usize];
    }
    c >> 8
}

/// The CRC24 initial value.
pub const CRC24_INIT: u32 = 0xB7_04CE;

/// The block being read.
#[derive(Debug)]
struct Current {
    label: Label,
    headers: usize,
    quad: [u8; 4],
    quad_len: usize,
    padding: usize,
    crc: u32,
    checksum: Option<u32>,
    data_bytes: u64,
    stream: PacketStream,
    /// White space after base64 on the current line: only the line end
    /// may follow. No OpenPGP implementation writes spaces inside an armor
    /// line, and allowing them would let "ciphertext" lines read as words.
    gap: bool,
}

/// Reads armored text; see the module documentation.
#[derive(Debug)]
pub struct ArmorReader {
    state: St,
    line: Vec<u8>,
    current: Option<Current>,
    cleartext_headers: usize,
    /// The finished blocks.
    pub blocks: Vec<Block>,
    /// Longest line held.
    pub peak_line: usize,
}

fn armor_err(why: impl Into<String>) -> PayloadError {
    PayloadError::Armor(why.into())
}

impl Default for ArmorReader {
    fn default() -> Self {
        ArmorReader {
            state: St::Outside { line_start: true },
            line: Vec::with_capacity(MAX_MARKER_LINE),
            current: None,
            cleartext_headers: 0,
            blocks: Vec::new(),
            peak_line: 0,
        }
    }
}

impl ArmorReader {
    /// The next decoded bytes of the text.
    pub fn feed(&mut self, bytes: &[u8], ctx: &mut Ctx) -> Result<(), PayloadError> {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                St::Data { line_start } => {
                    i = self.data(bytes, i, line_start, ctx)?;
                }
                St::Cleartext { line_start } => {
                    if line_start && bytes[i] == b'-' {
                        self.state = St::ClearDash;
                        continue;
                    }
                    match bytes[i..].iter().position(|&b| b == b'\n') {
                        Some(p) => {
                            i += p + 1;
                            self.state = St::Cleartext { line_start: true };
                        }
                        None => {
                            i = bytes.len();
                            self.state = St::Cleartext { line_start: false };
                        }
                    }
                }
                St::Outside { line_start } => {
                    let b = bytes[i];
                    match b {
                        b'\n' => self.state = St::Outside { line_start: true },
                        b' ' | b'\t' | b'\r' => self.state = St::Outside { line_start: false },
                        b'-' if line_start => {
                            self.state = St::Begin;
                            continue;
                        }
                        _ => return Err(PayloadError::TextOutsideArmor),
                    }
                    i += 1;
                }
                St::AfterChecksum { line_start } => {
                    let b = bytes[i];
                    match b {
                        b'\n' => self.state = St::AfterChecksum { line_start: true },
                        b' ' | b'\t' | b'\r' => {}
                        b'-' if line_start => {
                            self.state = St::End;
                            continue;
                        }
                        _ => return Err(armor_err("data after the checksum line")),
                    }
                    i += 1;
                }
                St::Begin | St::Headers { .. } | St::Checksum | St::End | St::ClearDash => {
                    let b = bytes[i];
                    i += 1;
                    if b == b'\n' {
                        self.line_done(ctx)?;
                    } else {
                        self.line.push(b);
                        self.peak_line = self.peak_line.max(self.line.len());
                        self.line_grew(ctx)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks a held line as it grows (early reject, and the bound).
    fn line_grew(&mut self, ctx: &mut Ctx) -> Result<(), PayloadError> {
        let line = &self.line;
        match self.state {
            St::Begin => {
                let want = b"-----BEGIN PGP ";
                let n = line.len().min(want.len());
                if line[..n] != want[..n] {
                    return Err(PayloadError::TextOutsideArmor);
                }
                if line.len() > MAX_MARKER_LINE {
                    return Err(armor_err("BEGIN line too long"));
                }
            }
            St::End if line.len() > MAX_MARKER_LINE => {
                return Err(armor_err("line beginning with '-' inside the armor"));
            }
            St::Checksum if line.len() > 16 => {
                return Err(armor_err("line beginning with '=' is not a checksum"));
            }
            St::ClearDash => {
                let want = b"-----BEGIN PGP SIGNATURE-----";
                let n = line.len().min(want.len());
                if line[..n] != want[..n]
                    || (line.len() > n && !line[n..].iter().all(|b| b.is_ascii_whitespace()))
                    || line.len() > MAX_MARKER_LINE
                {
                    // Signed text that begins with a dash.
                    self.line.clear();
                    self.state = St::Cleartext { line_start: false };
                }
            }
            St::Headers { cleartext } => {
                let limit = ctx.limits.max_header_line_bytes + 1;
                if line.len() > limit {
                    let headerish = line.contains(&b':');
                    if headerish || cleartext {
                        return Err(armor_err(format!(
                            "armor header line over {} octets",
                            ctx.limits.max_header_line_bytes
                        )));
                    }
                    match line[0] {
                        b'-' => return Err(armor_err("line beginning with '-' inside the armor")),
                        b'=' => return Err(armor_err("line beginning with '=' is not a checksum")),
                        _ => {}
                    }
                    // A long first data line without the blank line.
                    let held = std::mem::take(&mut self.line);
                    self.state = St::Data { line_start: true };
                    self.data(&held, 0, true, ctx)?;
                    self.line = held;
                    self.line.clear();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A held line ended (at LF, or at the end of the text).
    fn line_done(&mut self, ctx: &mut Ctx) -> Result<(), PayloadError> {
        let mut line = std::mem::take(&mut self.line);
        let trimmed_len = line.trim_ascii_end().len();
        line.truncate(trimmed_len);
        let r = self.line_done_inner(&line, ctx);
        line.clear();
        self.line = line;
        r
    }

    fn line_done_inner(&mut self, line: &[u8], ctx: &mut Ctx) -> Result<(), PayloadError> {
        match self.state {
            St::Begin => {
                let label = line
                    .strip_prefix(b"-----BEGIN PGP ")
                    .and_then(|l| l.strip_suffix(b"-----"))
                    .ok_or(PayloadError::TextOutsideArmor)?;
                let Some(label) = Label::from_text(label) else {
                    return Err(armor_err(format!(
                        "unsupported armor BEGIN PGP {}",
                        String::from_utf8_lossy(label)
                    )));
                };
                if self.blocks.len() >= ctx.limits.max_blocks {
                    return Err(PayloadError::Limit(format!(
                        "more than {} armored blocks",
                        ctx.limits.max_blocks
                    )));
                }
                if label == Label::SignedMessage {
                    self.cleartext_headers = 0;
                    self.state = St::Headers { cleartext: true };
                } else {
                    self.open(label);
                }
            }
            St::Headers { cleartext } => {
                if line.trim_ascii().is_empty() {
                    self.state = if cleartext {
                        St::Cleartext { line_start: true }
                    } else {
                        St::Data { line_start: true }
                    };
                } else if line.contains(&b':') {
                    let count = if cleartext {
                        self.cleartext_headers += 1;
                        self.cleartext_headers
                    } else {
                        let cur = self.current.as_mut().expect("block open");
                        cur.headers += 1;
                        cur.headers
                    };
                    if count > ctx.limits.max_header_lines {
                        return Err(armor_err(format!(
                            "more than {} armor header lines",
                            ctx.limits.max_header_lines
                        )));
                    }
                    check_header(line, cleartext)?;
                } else if cleartext {
                    return Err(armor_err("cleartext signature header without a colon"));
                } else if line[0] == b'-' {
                    self.state = St::End;
                    return self.line_done_inner(line, ctx);
                } else if line[0] == b'=' {
                    self.state = St::Checksum;
                    return self.line_done_inner(line, ctx);
                } else {
                    // Data right after the BEGIN line (no headers, no blank
                    // line): some writers do this.
                    self.state = St::Data { line_start: true };
                    self.data(line, 0, true, ctx)?;
                    self.state = St::Data { line_start: true };
                }
            }
            St::Checksum => {
                let sum = line.trim_ascii();
                let digits = sum.strip_prefix(b"=").unwrap_or(sum);
                let v: Option<Vec<u8>> = digits
                    .iter()
                    .map(|&c| {
                        let v = B64[usize::from(c)];
                        (v != INVALID).then_some(v)
                    })
                    .collect();
                match v.as_deref() {
                    Some(&[a, b, c, d]) => {
                        let crc = (u32::from(a) << 18)
                            | (u32::from(b) << 12)
                            | (u32::from(c) << 6)
                            | u32::from(d);
                        self.current.as_mut().expect("block open").checksum = Some(crc);
                        self.state = St::AfterChecksum { line_start: true };
                    }
                    _ => return Err(armor_err("malformed checksum line")),
                }
            }
            St::End => {
                let cur = self.current.as_ref().expect("block open");
                let want = format!("-----END PGP {}-----", cur.label.text());
                if line.trim_ascii_start() != want.as_bytes() {
                    return Err(armor_err(format!(
                        "unexpected {} inside BEGIN PGP {}",
                        String::from_utf8_lossy(line),
                        cur.label.text()
                    )));
                }
                self.close(ctx)?;
                self.state = St::Outside { line_start: true };
            }
            St::ClearDash => {
                if line == b"-----BEGIN PGP SIGNATURE-----" {
                    self.open(Label::SignedMessage);
                } else {
                    // Signed text that begins with a dash.
                    self.state = St::Cleartext { line_start: true };
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn open(&mut self, label: Label) {
        self.current = Some(Current {
            label,
            headers: 0,
            quad: [0; 4],
            quad_len: 0,
            padding: 0,
            crc: CRC24_INIT,
            checksum: None,
            data_bytes: 0,
            stream: PacketStream::new(0),
            gap: false,
        });
        self.state = St::Headers { cleartext: false };
    }

    /// Base64 data from `bytes[i..]`; returns where it stopped (the end, or
    /// a line that must be held).
    fn data(
        &mut self,
        bytes: &[u8],
        i: usize,
        line_start: bool,
        ctx: &mut Ctx,
    ) -> Result<usize, PayloadError> {
        // The output buffer is zeroed on every call: a small one for a
        // small input (a session-key packet's armor), so that zeroing does
        // not cost more than decoding. How often decoded bytes are flushed
        // to the packets does not change what they make of them.
        if bytes.len().saturating_sub(i) <= 1024 {
            self.data_into::<768>(bytes, i, line_start, ctx)
        } else {
            self.data_into::<{ 3 * 1024 }>(bytes, i, line_start, ctx)
        }
    }

    /// [`Self::data`], decoding into a buffer of `N` octets.
    fn data_into<const N: usize>(
        &mut self,
        bytes: &[u8],
        mut i: usize,
        mut line_start: bool,
        ctx: &mut Ctx,
    ) -> Result<usize, PayloadError> {
        let mut out = [0u8; N];
        let mut n = 0;
        let cur = self.current.as_mut().expect("block open");
        let mut result = Ok(());
        while i < bytes.len() {
            // Fast path: four alphabet characters in a row.
            if cur.quad_len == 0
                && cur.padding == 0
                && !cur.gap
                && i + 4 <= bytes.len()
                && n + 3 <= out.len()
            {
                let (a, b, c, d) = (
                    B64[usize::from(bytes[i])],
                    B64[usize::from(bytes[i + 1])],
                    B64[usize::from(bytes[i + 2])],
                    B64[usize::from(bytes[i + 3])],
                );
                if (a | b | c | d) & 0xc0 == 0 {
                    let v = (u32::from(a) << 18)
                        | (u32::from(b) << 12)
                        | (u32::from(c) << 6)
                        | u32::from(d);
                    out[n] = (v >> 16) as u8;
                    out[n + 1] = (v >> 8) as u8;
                    out[n + 2] = v as u8;
                    n += 3;
                    i += 4;
                    line_start = false;
                    continue;
                }
            }
            if n + 3 > out.len() {
                flush(cur, &out[..n], ctx)?;
                n = 0;
            }
            let b = bytes[i];
            let v = B64[usize::from(b)];
            if v != INVALID {
                if cur.gap {
                    result = Err(armor_err("white space inside an armor line"));
                    break;
                }
                if cur.padding > 0 {
                    result = Err(armor_err("armor data after base64 padding"));
                    break;
                }
                cur.quad[cur.quad_len] = v;
                cur.quad_len += 1;
                if cur.quad_len == 4 {
                    let q = cur.quad;
                    let v = (u32::from(q[0]) << 18)
                        | (u32::from(q[1]) << 12)
                        | (u32::from(q[2]) << 6)
                        | u32::from(q[3]);
                    out[n] = (v >> 16) as u8;
                    out[n + 1] = (v >> 8) as u8;
                    out[n + 2] = v as u8;
                    n += 3;
                    cur.quad_len = 0;
                }
                line_start = false;
                i += 1;
                continue;
            }
            match b {
                b'\n' => {
                    line_start = true;
                    cur.gap = false;
                }
                b' ' | b'\t' if !line_start => cur.gap = true,
                b' ' | b'\t' | b'\r' => {}
                b'-' if line_start => {
                    self.state = St::End;
                    break;
                }
                b'=' if line_start => {
                    self.state = St::Checksum;
                    break;
                }
                b'=' if cur.gap => {
                    result = Err(armor_err("white space inside an armor line"));
                    break;
                }
                b'=' => {
                    // Padding: closes a quad of two or three characters.
                    if cur.padding == 0 {
                        match tail(cur) {
                            Ok(tail) => {
                                out[n..n + tail.len()].copy_from_slice(&tail);
                                n += tail.len();
                            }
                            Err(e) => {
                                result = Err(e);
                                break;
                            }
                        }
                    }
                    cur.padding += 1;
                    if cur.padding > 2 {
                        result = Err(armor_err("misplaced base64 padding"));
                        break;
                    }
                }
                _ => {
                    result = Err(armor_err("armor data is not base64"));
                    break;
                }
            }
            i += 1;
        }
        // What was decoded before a bad character reaches the packets
        // first, so the verdict is the first fault in byte order whatever
        // the chunking.
        if n > 0 {
            flush(cur, &out[..n], ctx)?;
        }
        result?;
        if let St::Data { .. } = self.state {
            self.state = St::Data { line_start };
        }
        Ok(i)
    }

    fn close(&mut self, ctx: &mut Ctx) -> Result<(), PayloadError> {
        let mut cur = self.current.take().expect("block open");
        if cur.quad_len > 0 {
            let t = tail(&mut cur)?;
            flush(&mut cur, &t, ctx)?;
        }
        if cur.data_bytes == 0 {
            return Err(armor_err("armor has no data"));
        }
        if let Some(sum) = cur.checksum
            && sum != cur.crc
        {
            return Err(armor_err("armor checksum mismatch"));
        }
        let shape = cur.stream.finish(ctx)?;
        let kind = match (cur.label, shape) {
            (Label::Message, Shape::Encrypted) => PayloadKind::Encrypted,
            (Label::Message, Shape::Signed) => PayloadKind::SignedMessage,
            (Label::SignedMessage, Shape::Signatures) => PayloadKind::CleartextSigned,
            (Label::Signature, Shape::Signatures) => PayloadKind::Signature,
            (Label::PublicKey | Label::PrivateKey, Shape::Key) => PayloadKind::Key,
            (Label::Message, Shape::Unsigned) => {
                return Err(PayloadError::Unencrypted(
                    "PGP MESSAGE holds compressed (unencrypted, unsigned) data".into(),
                ));
            }
            (label, shape) => {
                let label = if label == Label::SignedMessage {
                    "SIGNED MESSAGE"
                } else {
                    label.text()
                };
                return Err(PayloadError::Packets(format!(
                    "PGP {label} armor holding {}",
                    shape_words(shape)
                )));
            }
        };
        self.blocks.push(Block {
            kind,
            recipients: std::mem::take(&mut ctx.recipients),
        });
        Ok(())
    }

    /// The end of the text.
    pub fn finish(&mut self, ctx: &mut Ctx) -> Result<(), PayloadError> {
        match self.state {
            St::Begin | St::End | St::Checksum | St::Headers { .. } | St::ClearDash
                if !self.line.is_empty() =>
            {
                self.line_done(ctx)?;
            }
            _ => {}
        }
        match self.state {
            St::Outside { .. } => Ok(()),
            St::Cleartext { .. } | St::ClearDash | St::Headers { cleartext: true } => {
                Err(PayloadError::Truncated(
                    "no signature after the signed text (BEGIN PGP SIGNED MESSAGE)".into(),
                ))
            }
            _ => Err(PayloadError::Truncated(format!(
                "no END line for BEGIN PGP {}",
                self.current
                    .as_ref()
                    .map_or("SIGNATURE", |c| c.label.text())
            ))),
        }
    }
}

fn shape_words(shape: Shape) -> &'static str {
    match shape {
        Shape::Encrypted => "an encrypted message",
        Shape::Signed => "a signed message",
        Shape::Signatures => "signatures only",
        Shape::Key => "a key",
        Shape::Unsigned => "unencrypted data",
    }
}

/// The octets of a quad closed early (two or three characters).
fn tail(cur: &mut Current) -> Result<Vec<u8>, PayloadError> {
    let q = cur.quad;
    let out = match cur.quad_len {
        2 => {
            if q[1] & 0x0f != 0 {
                return Err(armor_err("armor data is not base64 (trailing bits)"));
            }
            vec![(q[0] << 2) | (q[1] >> 4)]
        }
        3 => {
            if q[2] & 0x03 != 0 {
                return Err(armor_err("armor data is not base64 (trailing bits)"));
            }
            vec![(q[0] << 2) | (q[1] >> 4), (q[1] << 4) | (q[2] >> 2)]
        }
        _ => return Err(armor_err("armor data is not base64 (cut off)")),
    };
    cur.quad_len = 0;
    Ok(out)
}

fn flush(cur: &mut Current, data: &[u8], ctx: &mut Ctx) -> Result<(), PayloadError> {
    cur.crc = crc24_update(cur.crc, data);
    cur.data_bytes += data.len() as u64;
    cur.stream.feed(data, ctx)
}

/// `Key: value`: a key of printable ASCII that does not begin or end with a
/// space (a cleartext signature's only `Hash`), a space, and a printable
/// value.
///
/// Keys beyond those RFC 9580 §6.2.2 and RFC 4880 §6.2 define (`Version`,
/// `Comment`, `Hash`, `Charset`, `MessageID`) are tolerated, as GnuPG
/// ("unknown armor header", then it goes on, even for `Bad Key: x`) and
/// OpenPGP.js (a debug line) tolerate them: refusing them would lose mail those readers decrypt, and
/// a defined key (`Comment`) carries any text anyway, so what keeps prose
/// out of the armor is the bound on the lines' count and length.
fn check_header(line: &[u8], cleartext: bool) -> Result<(), PayloadError> {
    let colon = line.iter().position(|&b| b == b':').unwrap_or(0);
    let key = &line[..colon];
    let well_formed = if cleartext {
        key == b"Hash"
    } else {
        !key.is_empty()
            && key.iter().all(|b| (0x20..0x7f).contains(b))
            && key[0] != b' '
            && key[key.len() - 1] != b' '
    };
    if !well_formed {
        return Err(armor_err(format!(
            "{} {:?}",
            if cleartext {
                "cleartext signature header that is not Hash:"
            } else {
                "malformed armor header key"
            },
            String::from_utf8_lossy(&key[..key.len().min(40)])
        )));
    }
    let value = &line[colon + 1..];
    if !(value.is_empty() || value[0] == b' ')
        || value.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f)
    {
        return Err(armor_err("malformed armor header line"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc24_matches_the_bitwise_definition() {
        assert_eq!(crc24_update(CRC24_INIT, b""), 0xB7_04CE);
        assert_eq!(crc24_update(CRC24_INIT, b"123456789"), 0x21_CF02);
        let data: Vec<u8> = (0..10_000u32).map(|i| ((i * 7919) >> 3) as u8).collect();
        for cut in [0, 1, 7, 8, 9, 4999, 10_000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(
                crc24_update(crc24_update(CRC24_INIT, a), b),
                crate::armor::crc24(&data),
                "{cut}"
            );
        }
    }
}
