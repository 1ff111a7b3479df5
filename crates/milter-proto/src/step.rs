//! The steps of an SMTP session a milter can be consulted at, and how each
//! maps onto the protocol's "don't send" and "don't wait for a reply" bits.

use bitflags::bitflags;

use crate::command::code;
use crate::flags::Protocol;

/// One step of the SMTP session, as the milter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// The SMTP client connected (`C`): host name and address.
    Connect,
    /// HELO or EHLO (`H`).
    Helo,
    /// MAIL FROM (`M`): the sender and its ESMTP arguments.
    Mail,
    /// RCPT TO (`R`): one recipient and its ESMTP arguments.
    Rcpt,
    /// DATA (`T`), protocol version 4 and later.
    Data,
    /// One message header (`L`).
    Header,
    /// End of the headers (`N`).
    EndOfHeaders,
    /// One body chunk (`B`).
    Body,
    /// End of message (`E`): always sent; the only step that may modify.
    EndOfMessage,
    /// An SMTP command the MTA did not recognise (`U`), version 3 and later.
    Unknown,
}

bitflags! {
    /// A set of steps.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Steps: u16 {
        /// [`Step::Connect`].
        const CONNECT = 1 << 0;
        /// [`Step::Helo`].
        const HELO = 1 << 1;
        /// [`Step::Mail`].
        const MAIL = 1 << 2;
        /// [`Step::Rcpt`].
        const RCPT = 1 << 3;
        /// [`Step::Data`].
        const DATA = 1 << 4;
        /// [`Step::Header`].
        const HEADER = 1 << 5;
        /// [`Step::EndOfHeaders`].
        const END_OF_HEADERS = 1 << 6;
        /// [`Step::Body`].
        const BODY = 1 << 7;
        /// [`Step::EndOfMessage`].
        const END_OF_MESSAGE = 1 << 8;
        /// [`Step::Unknown`].
        const UNKNOWN = 1 << 9;
    }
}

impl Step {
    /// Every step, in protocol order.
    pub const ALL: [Step; 10] = [
        Step::Connect,
        Step::Helo,
        Step::Mail,
        Step::Rcpt,
        Step::Data,
        Step::Header,
        Step::EndOfHeaders,
        Step::Body,
        Step::EndOfMessage,
        Step::Unknown,
    ];

    /// The step a command code starts, if it is a step.
    pub fn from_command_code(c: u8) -> Option<Step> {
        Some(match c {
            code::CONNECT => Step::Connect,
            code::HELO => Step::Helo,
            code::MAIL => Step::Mail,
            code::RCPT => Step::Rcpt,
            code::DATA => Step::Data,
            code::HEADER => Step::Header,
            code::EOH => Step::EndOfHeaders,
            code::BODY => Step::Body,
            code::BODYEOB => Step::EndOfMessage,
            code::UNKNOWN => Step::Unknown,
            _ => return None,
        })
    }

    /// The command code of this step.
    pub fn command_code(self) -> u8 {
        match self {
            Step::Connect => code::CONNECT,
            Step::Helo => code::HELO,
            Step::Mail => code::MAIL,
            Step::Rcpt => code::RCPT,
            Step::Data => code::DATA,
            Step::Header => code::HEADER,
            Step::EndOfHeaders => code::EOH,
            Step::Body => code::BODY,
            Step::EndOfMessage => code::BODYEOB,
            Step::Unknown => code::UNKNOWN,
        }
    }

    /// This step as a one-element set.
    pub fn as_set(self) -> Steps {
        match self {
            Step::Connect => Steps::CONNECT,
            Step::Helo => Steps::HELO,
            Step::Mail => Steps::MAIL,
            Step::Rcpt => Steps::RCPT,
            Step::Data => Steps::DATA,
            Step::Header => Steps::HEADER,
            Step::EndOfHeaders => Steps::END_OF_HEADERS,
            Step::Body => Steps::BODY,
            Step::EndOfMessage => Steps::END_OF_MESSAGE,
            Step::Unknown => Steps::UNKNOWN,
        }
    }

    /// The bit asking the MTA not to send this step (none for end of message,
    /// which is always sent).
    pub fn no_send_bit(self) -> Protocol {
        match self {
            Step::Connect => Protocol::NO_CONNECT,
            Step::Helo => Protocol::NO_HELO,
            Step::Mail => Protocol::NO_MAIL,
            Step::Rcpt => Protocol::NO_RCPT,
            Step::Data => Protocol::NO_DATA,
            Step::Header => Protocol::NO_HEADERS,
            Step::EndOfHeaders => Protocol::NO_EOH,
            Step::Body => Protocol::NO_BODY,
            Step::EndOfMessage => Protocol::empty(),
            Step::Unknown => Protocol::NO_UNKNOWN,
        }
    }

    /// The bit telling the MTA not to wait for a reply to this step (none for
    /// end of message, which is always answered).
    pub fn no_reply_bit(self) -> Protocol {
        match self {
            Step::Connect => Protocol::NR_CONNECT,
            Step::Helo => Protocol::NR_HELO,
            Step::Mail => Protocol::NR_MAIL,
            Step::Rcpt => Protocol::NR_RCPT,
            Step::Data => Protocol::NR_DATA,
            Step::Header => Protocol::NR_HEADER,
            Step::EndOfHeaders => Protocol::NR_EOH,
            Step::Body => Protocol::NR_BODY,
            Step::EndOfMessage => Protocol::empty(),
            Step::Unknown => Protocol::NR_UNKNOWN,
        }
    }

    /// True for the steps of a message (MAIL to end of message).
    pub fn is_message_step(self) -> bool {
        !matches!(self, Step::Connect | Step::Helo | Step::Unknown)
    }

    /// True for the steps Postfix times with its content timeout (300 s) rather
    /// than its command timeout (30 s).
    pub fn is_content_step(self) -> bool {
        matches!(
            self,
            Step::Header | Step::EndOfHeaders | Step::Body | Step::EndOfMessage
        )
    }

    /// A short lower-case name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::Helo => "helo",
            Step::Mail => "mail",
            Step::Rcpt => "rcpt",
            Step::Data => "data",
            Step::Header => "header",
            Step::EndOfHeaders => "eoh",
            Step::Body => "body",
            Step::EndOfMessage => "eom",
            Step::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Steps {
    /// Iterates the steps in the set, in protocol order.
    pub fn steps(self) -> impl Iterator<Item = Step> {
        Step::ALL
            .into_iter()
            .filter(move |s| self.contains(s.as_set()))
    }
}
