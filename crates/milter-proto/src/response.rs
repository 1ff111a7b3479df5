//! Responses: the packets a milter sends to an MTA, both verdicts (`c`, `a`,
//! `r`, ...) and end-of-message modifications (`h`, `+`, `b`, ...).

use bytes::{Bytes, BytesMut};

use crate::flags::Actions;
use crate::frame::{Frame, encode_frame};
use crate::optneg::OptNeg;
use crate::payload::{Cursor, PayloadError, has_nul};

/// Response codes (`SMFIR_*`).
pub mod code {
    /// `SMFIR_ADDRCPT`.
    pub const ADDRCPT: u8 = b'+';
    /// `SMFIR_DELRCPT`.
    pub const DELRCPT: u8 = b'-';
    /// `SMFIR_ADDRCPT_PAR`.
    pub const ADDRCPT_PAR: u8 = b'2';
    /// `SMFIR_SHUTDOWN`.
    pub const SHUTDOWN: u8 = b'4';
    /// `SMFIR_ACCEPT`.
    pub const ACCEPT: u8 = b'a';
    /// `SMFIR_REPLBODY`.
    pub const REPLBODY: u8 = b'b';
    /// `SMFIR_CONTINUE`.
    pub const CONTINUE: u8 = b'c';
    /// `SMFIR_DISCARD`.
    pub const DISCARD: u8 = b'd';
    /// `SMFIR_CHGFROM`.
    pub const CHGFROM: u8 = b'e';
    /// `SMFIR_CONN_FAIL`.
    pub const CONN_FAIL: u8 = b'f';
    /// `SMFIR_ADDHEADER`.
    pub const ADDHEADER: u8 = b'h';
    /// `SMFIR_INSHEADER`.
    pub const INSHEADER: u8 = b'i';
    /// `SMFIR_SETSYMLIST`.
    pub const SETSYMLIST: u8 = b'l';
    /// `SMFIR_CHGHEADER`.
    pub const CHGHEADER: u8 = b'm';
    /// `SMFIR_OPTNEG`.
    pub const OPTNEG: u8 = b'O';
    /// `SMFIR_PROGRESS`.
    pub const PROGRESS: u8 = b'p';
    /// `SMFIR_QUARANTINE`.
    pub const QUARANTINE: u8 = b'q';
    /// `SMFIR_REJECT`.
    pub const REJECT: u8 = b'r';
    /// `SMFIR_SKIP`.
    pub const SKIP: u8 = b's';
    /// `SMFIR_TEMPFAIL`.
    pub const TEMPFAIL: u8 = b't';
    /// `SMFIR_REPLYCODE`.
    pub const REPLYCODE: u8 = b'y';
}

/// A response from a milter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `O`: the milter's side of option negotiation.
    OptNeg(OptNeg),
    /// `c`: go on to the next step.
    Continue,
    /// `a`: accept; the milter wants nothing more of this message (or connection).
    Accept,
    /// `r`: reject with the MTA's default 5xx text.
    Reject,
    /// `t`: temporary failure with the MTA's default 4xx text.
    Tempfail,
    /// `d`: accept and silently throw the message away.
    Discard,
    /// `s`: skip the rest of the events of this type (body chunks).
    Skip,
    /// `f`: connection failure. Not supported by Postfix or Sendmail (a protocol error there).
    ConnFail,
    /// `4`: shutdown; the MTA answers 421 and closes the SMTP session.
    Shutdown,
    /// `y`: reject or tempfail with this SMTP reply text (without the NUL).
    ReplyCode(Bytes),
    /// `h`: append a header.
    AddHeader {
        /// Field name.
        name: Bytes,
        /// Field value.
        value: Bytes,
    },
    /// `i`: insert a header at an index (0 = topmost).
    InsertHeader {
        /// Position.
        index: u32,
        /// Field name.
        name: Bytes,
        /// Field value.
        value: Bytes,
    },
    /// `m`: change the `index`-th (1-based, per name) header; an empty value deletes it.
    ChangeHeader {
        /// 1-based index among headers of this name.
        index: u32,
        /// Field name.
        name: Bytes,
        /// New value; empty deletes the header.
        value: Bytes,
    },
    /// `+`: add a recipient.
    AddRcpt(Bytes),
    /// `2`: add a recipient with ESMTP arguments.
    AddRcptPar {
        /// The recipient.
        rcpt: Bytes,
        /// ESMTP arguments, space separated; `None` sends none.
        args: Option<Bytes>,
    },
    /// `-`: delete a recipient.
    DelRcpt(Bytes),
    /// `e`: change the envelope sender.
    ChangeFrom {
        /// The new sender.
        sender: Bytes,
        /// ESMTP arguments, space separated; `None` sends none.
        args: Option<Bytes>,
    },
    /// `b`: one chunk of a replacement body.
    ReplaceBody(Bytes),
    /// `q`: put the message on hold with this reason.
    Quarantine(Bytes),
    /// `p`: still working; restart the MTA's timer.
    Progress,
    /// `l`: macro list for one stage (libmilter sends these inside the `O` reply instead).
    SetSymList {
        /// Stage number (see [`MacroStage`](crate::MacroStage)).
        stage: u32,
        /// Space-separated macro names.
        names: Bytes,
    },
}

impl Response {
    /// The response code byte.
    pub fn code(&self) -> u8 {
        match self {
            Response::OptNeg(_) => code::OPTNEG,
            Response::Continue => code::CONTINUE,
            Response::Accept => code::ACCEPT,
            Response::Reject => code::REJECT,
            Response::Tempfail => code::TEMPFAIL,
            Response::Discard => code::DISCARD,
            Response::Skip => code::SKIP,
            Response::ConnFail => code::CONN_FAIL,
            Response::Shutdown => code::SHUTDOWN,
            Response::ReplyCode(_) => code::REPLYCODE,
            Response::AddHeader { .. } => code::ADDHEADER,
            Response::InsertHeader { .. } => code::INSHEADER,
            Response::ChangeHeader { .. } => code::CHGHEADER,
            Response::AddRcpt(_) => code::ADDRCPT,
            Response::AddRcptPar { .. } => code::ADDRCPT_PAR,
            Response::DelRcpt(_) => code::DELRCPT,
            Response::ChangeFrom { .. } => code::CHGFROM,
            Response::ReplaceBody(_) => code::REPLBODY,
            Response::Quarantine(_) => code::QUARANTINE,
            Response::Progress => code::PROGRESS,
            Response::SetSymList { .. } => code::SETSYMLIST,
        }
    }

    /// True for the end-of-message modification requests, which do not end
    /// the milter's answer to a command.
    pub fn is_modification(&self) -> bool {
        self.required_action().is_some()
    }

    /// True for the responses that end the milter's answer to a command.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Response::Continue
                | Response::Accept
                | Response::Reject
                | Response::Tempfail
                | Response::Discard
                | Response::Skip
                | Response::ConnFail
                | Response::Shutdown
                | Response::ReplyCode(_)
        )
    }

    /// The action bit that must have been negotiated for this modification.
    pub fn required_action(&self) -> Option<Actions> {
        Some(match self {
            Response::AddHeader { .. } | Response::InsertHeader { .. } => Actions::ADD_HEADERS,
            Response::ChangeHeader { .. } => Actions::CHANGE_HEADERS,
            Response::AddRcpt(_) => Actions::ADD_RCPT,
            Response::AddRcptPar { .. } => Actions::ADD_RCPT_PAR,
            Response::DelRcpt(_) => Actions::DELETE_RCPT,
            Response::ChangeFrom { .. } => Actions::CHANGE_FROM,
            Response::ReplaceBody(_) => Actions::CHANGE_BODY,
            Response::Quarantine(_) => Actions::QUARANTINE,
            _ => return None,
        })
    }

    /// Parses a packet received from a milter.
    pub fn parse(frame: Frame) -> Result<Response, PayloadError> {
        let Frame { code, payload } = frame;
        let mut c = Cursor::new(code, payload);
        let r = match code {
            code::OPTNEG => return OptNeg::parse(c).map(Response::OptNeg),
            code::CONTINUE => Response::Continue,
            code::ACCEPT => Response::Accept,
            code::REJECT => Response::Reject,
            code::TEMPFAIL => Response::Tempfail,
            code::DISCARD => Response::Discard,
            code::SKIP => Response::Skip,
            code::CONN_FAIL => Response::ConnFail,
            code::SHUTDOWN => Response::Shutdown,
            code::PROGRESS => Response::Progress,
            code::REPLYCODE => Response::ReplyCode(c.cstr("reply text")?),
            code::ADDHEADER => Response::AddHeader {
                name: c.cstr("header name")?,
                value: c.cstr("header value")?,
            },
            code::INSHEADER | code::CHGHEADER => {
                let index = c.u32("header index")?;
                let name = c.cstr("header name")?;
                let value = c.cstr("header value")?;
                if code == code::INSHEADER {
                    Response::InsertHeader { index, name, value }
                } else {
                    Response::ChangeHeader { index, name, value }
                }
            }
            code::ADDRCPT => Response::AddRcpt(c.cstr("recipient")?),
            code::DELRCPT => Response::DelRcpt(c.cstr("recipient")?),
            code::ADDRCPT_PAR => {
                let rcpt = c.cstr("recipient")?;
                let args = if c.is_empty() {
                    None
                } else {
                    Some(c.cstr("ESMTP arguments")?)
                };
                Response::AddRcptPar { rcpt, args }
            }
            code::CHGFROM => {
                let sender = c.cstr("sender")?;
                let args = if c.is_empty() {
                    None
                } else {
                    Some(c.cstr("ESMTP arguments")?)
                };
                Response::ChangeFrom { sender, args }
            }
            code::REPLBODY => Response::ReplaceBody(c.rest()),
            code::QUARANTINE => Response::Quarantine(c.cstr("reason")?),
            code::SETSYMLIST => Response::SetSymList {
                stage: c.u32("macro stage")?,
                names: c.cstr("macro list")?,
            },
            other => return Err(PayloadError::UnknownCode(other)),
        };
        c.finish()?;
        Ok(r)
    }

    /// Whether this response can be written (no NUL inside string fields).
    pub fn is_encodable(&self) -> bool {
        match self {
            Response::OptNeg(o) => o.is_encodable(),
            Response::ReplyCode(s)
            | Response::AddRcpt(s)
            | Response::DelRcpt(s)
            | Response::Quarantine(s) => !has_nul(s),
            Response::AddHeader { name, value }
            | Response::InsertHeader { name, value, .. }
            | Response::ChangeHeader { name, value, .. } => !has_nul(name) && !has_nul(value),
            Response::AddRcptPar { rcpt: s, args } | Response::ChangeFrom { sender: s, args } => {
                !has_nul(s) && args.as_ref().is_none_or(|a| !has_nul(a))
            }
            Response::SetSymList { names, .. } => !has_nul(names),
            _ => true,
        }
    }

    /// Appends the packet to `out`.
    ///
    /// # Panics
    /// If [`is_encodable`](Self::is_encodable) is false.
    pub fn encode(&self, out: &mut BytesMut) {
        assert!(self.is_encodable(), "response cannot be encoded: {self:?}");
        let nul: &[u8] = b"\0";
        let c = self.code();
        match self {
            Response::OptNeg(o) => o.encode(out),
            Response::ReplyCode(s)
            | Response::AddRcpt(s)
            | Response::DelRcpt(s)
            | Response::Quarantine(s) => encode_frame(c, &[s, nul], out),
            Response::AddHeader { name, value } => encode_frame(c, &[name, nul, value, nul], out),
            Response::InsertHeader { index, name, value }
            | Response::ChangeHeader { index, name, value } => {
                encode_frame(c, &[&index.to_be_bytes(), name, nul, value, nul], out)
            }
            Response::AddRcptPar { rcpt: s, args } | Response::ChangeFrom { sender: s, args } => {
                match args {
                    Some(a) => encode_frame(c, &[s, nul, a, nul], out),
                    None => encode_frame(c, &[s, nul], out),
                }
            }
            Response::ReplaceBody(b) => encode_frame(c, &[b], out),
            Response::SetSymList { stage, names } => {
                encode_frame(c, &[&stage.to_be_bytes(), names, nul], out)
            }
            Response::Continue
            | Response::Accept
            | Response::Reject
            | Response::Tempfail
            | Response::Discard
            | Response::Skip
            | Response::ConnFail
            | Response::Shutdown
            | Response::Progress => encode_frame(c, &[], out),
        }
    }
}
