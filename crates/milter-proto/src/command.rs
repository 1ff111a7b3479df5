//! Commands: the packets an MTA sends to a milter.

use bytes::{Bytes, BytesMut};

use crate::frame::{Frame, encode_frame};
use crate::optneg::OptNeg;
use crate::payload::{Cursor, PayloadError, has_nul};

/// Command codes (`SMFIC_*`).
pub mod code {
    /// `SMFIC_ABORT`.
    pub const ABORT: u8 = b'A';
    /// `SMFIC_BODY`.
    pub const BODY: u8 = b'B';
    /// `SMFIC_CONNECT`.
    pub const CONNECT: u8 = b'C';
    /// `SMFIC_MACRO`.
    pub const MACRO: u8 = b'D';
    /// `SMFIC_BODYEOB`.
    pub const BODYEOB: u8 = b'E';
    /// `SMFIC_HELO`.
    pub const HELO: u8 = b'H';
    /// `SMFIC_QUIT_NC`.
    pub const QUIT_NC: u8 = b'K';
    /// `SMFIC_HEADER`.
    pub const HEADER: u8 = b'L';
    /// `SMFIC_MAIL`.
    pub const MAIL: u8 = b'M';
    /// `SMFIC_EOH`.
    pub const EOH: u8 = b'N';
    /// `SMFIC_OPTNEG`.
    pub const OPTNEG: u8 = b'O';
    /// `SMFIC_QUIT`.
    pub const QUIT: u8 = b'Q';
    /// `SMFIC_RCPT`.
    pub const RCPT: u8 = b'R';
    /// `SMFIC_DATA`.
    pub const DATA: u8 = b'T';
    /// `SMFIC_UNKNOWN`.
    pub const UNKNOWN: u8 = b'U';
}

/// The address family of a connecting SMTP client (`SMFIA_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectAddress {
    /// Family `U`: unknown; no port or address is sent.
    Unknown,
    /// Family `L`: a unix-domain (local) client, with the socket path (often empty).
    Unix {
        /// Port field as sent (0 in practice).
        port: u16,
        /// Socket path.
        path: Bytes,
    },
    /// Family `4`.
    Inet {
        /// Client port.
        port: u16,
        /// Dotted-quad text as the MTA sent it.
        addr: Bytes,
    },
    /// Family `6`. Sendmail may prefix the text with `IPv6:`; see
    /// [`ConnectAddress::ip_text`].
    Inet6 {
        /// Client port.
        port: u16,
        /// Address text as the MTA sent it.
        addr: Bytes,
    },
}

impl ConnectAddress {
    /// The address text without Sendmail's `IPv6:` tag (libmilter strips it too).
    pub fn ip_text(&self) -> Option<&[u8]> {
        match self {
            ConnectAddress::Inet { addr, .. } => Some(addr),
            ConnectAddress::Inet6 { addr, .. } => {
                let a: &[u8] = addr;
                Some(
                    a.strip_prefix(b"IPv6:")
                        .or_else(|| a.strip_prefix(b"ipv6:"))
                        .unwrap_or(a),
                )
            }
            _ => None,
        }
    }

    /// The client IP address, if the family carries one that parses.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        let text = std::str::from_utf8(self.ip_text()?).ok()?;
        text.parse().ok()
    }
}

/// A command from the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `O`: option negotiation, always first.
    OptNeg(OptNeg),
    /// `D`: macros for the command whose code is `stage`, sent before it.
    Macro {
        /// The code of the command these macros belong to (`C`, `H`, `M`, ...).
        /// `0` stands for a packet with no stage byte at all.
        stage: u8,
        /// Name/value pairs, names as sent (`i`, `{auth_authen}`).
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// `C`: the SMTP client connected.
    Connect {
        /// Client host name, `[addr]` when it did not resolve.
        hostname: Bytes,
        /// Client address.
        address: ConnectAddress,
    },
    /// `H`: HELO/EHLO argument.
    Helo(Bytes),
    /// `M`: MAIL FROM; the first argument is the sender (`<a@b>`), the rest ESMTP arguments.
    Mail(Vec<Bytes>),
    /// `R`: RCPT TO; the first argument is the recipient, the rest ESMTP arguments.
    Rcpt(Vec<Bytes>),
    /// `T`: the DATA command.
    Data,
    /// `L`: one message header.
    Header {
        /// Header field name.
        name: Bytes,
        /// Header value, folded lines joined with LF.
        value: Bytes,
    },
    /// `N`: end of headers.
    EndOfHeaders,
    /// `B`: a body chunk (CRLF line ends, at most the negotiated size).
    Body(Bytes),
    /// `E`: end of message. The payload is empty from Postfix and Sendmail;
    /// libmilter treats a non-empty one as a last body chunk.
    EndOfMessage(Bytes),
    /// `A`: abort the current message; the connection goes on.
    Abort,
    /// `Q`: quit; close the connection.
    Quit,
    /// `K`: quit, but a new SMTP connection follows on this socket.
    QuitNewConnection,
    /// `U`: an SMTP command the MTA did not recognise.
    Unknown(Bytes),
}

impl Command {
    /// The command code byte.
    pub fn code(&self) -> u8 {
        match self {
            Command::OptNeg(_) => code::OPTNEG,
            Command::Macro { .. } => code::MACRO,
            Command::Connect { .. } => code::CONNECT,
            Command::Helo(_) => code::HELO,
            Command::Mail(_) => code::MAIL,
            Command::Rcpt(_) => code::RCPT,
            Command::Data => code::DATA,
            Command::Header { .. } => code::HEADER,
            Command::EndOfHeaders => code::EOH,
            Command::Body(_) => code::BODY,
            Command::EndOfMessage(_) => code::BODYEOB,
            Command::Abort => code::ABORT,
            Command::Quit => code::QUIT,
            Command::QuitNewConnection => code::QUIT_NC,
            Command::Unknown(_) => code::UNKNOWN,
        }
    }

    /// Parses a packet received from an MTA.
    pub fn parse(frame: Frame) -> Result<Command, PayloadError> {
        let Frame { code, payload } = frame;
        let mut c = Cursor::new(code, payload);
        let cmd = match code {
            code::OPTNEG => return OptNeg::parse(c).map(Command::OptNeg),
            code::MACRO => return Ok(parse_macro(c)),
            code::CONNECT => {
                let hostname = c.cstr("host name")?;
                let address = match c.u8("address family")? {
                    b'U' => ConnectAddress::Unknown,
                    fam @ (b'L' | b'4' | b'6') => {
                        let port = c.u16("port")?;
                        let addr = c.cstr("address")?;
                        match fam {
                            b'L' => ConnectAddress::Unix { port, path: addr },
                            b'4' => ConnectAddress::Inet { port, addr },
                            _ => ConnectAddress::Inet6 { port, addr },
                        }
                    }
                    _ => return Err(c.invalid("address family")),
                };
                Command::Connect { hostname, address }
            }
            code::HELO => Command::Helo(c.cstr("HELO name")?),
            code::MAIL => Command::Mail(parse_args(&mut c, "sender")?),
            code::RCPT => Command::Rcpt(parse_args(&mut c, "recipient")?),
            code::DATA => Command::Data,
            code::HEADER => Command::Header {
                name: c.cstr("header name")?,
                value: c.cstr("header value")?,
            },
            code::EOH => Command::EndOfHeaders,
            code::BODY => Command::Body(c.rest()),
            code::BODYEOB => Command::EndOfMessage(c.rest()),
            code::ABORT => Command::Abort,
            code::QUIT => Command::Quit,
            code::QUIT_NC => Command::QuitNewConnection,
            code::UNKNOWN => Command::Unknown(c.cstr("command")?),
            other => return Err(PayloadError::UnknownCode(other)),
        };
        c.finish()?;
        Ok(cmd)
    }

    /// Whether this command can be written: strings must not contain NUL,
    /// argument lists must not be empty, a macro packet needs a stage byte.
    pub fn is_encodable(&self) -> bool {
        match self {
            Command::OptNeg(o) => o.is_encodable(),
            Command::Macro { stage, pairs } => {
                *stage != 0 && pairs.iter().all(|(n, v)| !has_nul(n) && !has_nul(v))
            }
            Command::Connect { hostname, address } => {
                !has_nul(hostname)
                    && match address {
                        ConnectAddress::Unknown => true,
                        ConnectAddress::Unix { path: a, .. }
                        | ConnectAddress::Inet { addr: a, .. }
                        | ConnectAddress::Inet6 { addr: a, .. } => !has_nul(a),
                    }
            }
            Command::Helo(s) | Command::Unknown(s) => !has_nul(s),
            Command::Mail(args) | Command::Rcpt(args) => {
                !args.is_empty() && args.iter().all(|a| !has_nul(a))
            }
            Command::Header { name, value } => !has_nul(name) && !has_nul(value),
            _ => true,
        }
    }

    /// Appends the packet to `out`.
    ///
    /// # Panics
    /// If [`is_encodable`](Self::is_encodable) is false: such a packet would be
    /// read back differently, so writing it would desynchronise the stream.
    pub fn encode(&self, out: &mut BytesMut) {
        assert!(self.is_encodable(), "command cannot be encoded: {self:?}");
        let nul: &[u8] = b"\0";
        match self {
            Command::OptNeg(o) => o.encode(out),
            Command::Macro { stage, pairs } => {
                let stage = [*stage];
                let mut pieces: Vec<&[u8]> = vec![&stage];
                for (n, v) in pairs {
                    pieces.extend_from_slice(&[n, nul, v, nul]);
                }
                encode_frame(code::MACRO, &pieces, out);
            }
            Command::Connect { hostname, address } => match address {
                ConnectAddress::Unknown => encode_frame(code::CONNECT, &[hostname, nul, b"U"], out),
                ConnectAddress::Unix { port, path: a }
                | ConnectAddress::Inet { port, addr: a }
                | ConnectAddress::Inet6 { port, addr: a } => {
                    let fam: &[u8] = match address {
                        ConnectAddress::Unix { .. } => b"L",
                        ConnectAddress::Inet { .. } => b"4",
                        _ => b"6",
                    };
                    encode_frame(
                        code::CONNECT,
                        &[hostname, nul, fam, &port.to_be_bytes(), a, nul],
                        out,
                    )
                }
            },
            Command::Helo(s) => encode_frame(code::HELO, &[s, nul], out),
            Command::Mail(args) | Command::Rcpt(args) => {
                let mut pieces: Vec<&[u8]> = Vec::with_capacity(args.len() * 2);
                for a in args {
                    pieces.extend_from_slice(&[a, nul]);
                }
                encode_frame(self.code(), &pieces, out);
            }
            Command::Header { name, value } => {
                encode_frame(code::HEADER, &[name, nul, value, nul], out)
            }
            Command::Body(b) | Command::EndOfMessage(b) => encode_frame(self.code(), &[b], out),
            Command::Unknown(s) => encode_frame(code::UNKNOWN, &[s, nul], out),
            Command::Data
            | Command::EndOfHeaders
            | Command::Abort
            | Command::Quit
            | Command::QuitNewConnection => encode_frame(self.code(), &[], out),
        }
    }
}

/// Most ESMTP arguments accepted on one MAIL or RCPT. Real commands carry a
/// handful; a packet of a million empty strings must not become a million
/// `Bytes` (32 bytes each).
pub const MAX_ESMTP_ARGS: usize = 64;

/// Most macro pairs kept from one packet (Sendmail sends at most 50 per
/// stage, `MAXFILTERMACROS`). Further pairs are ignored.
pub const MAX_MACRO_PAIRS: usize = 256;

fn parse_args(c: &mut Cursor, first: &'static str) -> Result<Vec<Bytes>, PayloadError> {
    let mut args = vec![c.cstr(first)?];
    while !c.is_empty() {
        if args.len() > MAX_ESMTP_ARGS {
            return Err(c.invalid("argument list (too many ESMTP arguments)"));
        }
        args.push(c.cstr("ESMTP argument")?);
    }
    Ok(args)
}

/// Macro packets are parsed leniently, as libmilter does: Postfix sends them
/// with no pairs (stage byte only), and a malformed tail must not end the
/// session, since macros are informational. A dangling name is dropped, and
/// so are pairs with an empty name and pairs beyond [`MAX_MACRO_PAIRS`].
fn parse_macro(mut c: Cursor) -> Command {
    let stage = c.u8("stage").unwrap_or(0);
    let mut pairs = Vec::new();
    while !c.is_empty() && pairs.len() < MAX_MACRO_PAIRS {
        let Ok(name) = c.cstr("macro name") else {
            break;
        };
        let Ok(value) = c.cstr("macro value") else {
            break;
        };
        // A pair without a name cannot be looked up; keeping it only costs memory.
        if !name.is_empty() {
            pairs.push((name, value));
        }
    }
    Command::Macro { stage, pairs }
}
