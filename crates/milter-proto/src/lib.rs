//! The milter protocol (Sendmail's libmilter protocol, versions 2 to 6, as
//! Sendmail 8.18 and Postfix 3.x speak it) with no I/O: packets in, packets out.
//!
//! Layers, bottom up:
//! - [`frame`]: cutting a byte stream into packets, with the length checked
//!   before anything is allocated;
//! - [`Command`] and [`Response`]: every packet of both directions, parsed and
//!   encoded byte-exact (the same types serve a milter and an MTA-side client);
//! - [`negotiate()`]: what to ask of an MTA, given what it offers and what a
//!   filter needs;
//! - [`MilterSession`]: the milter side of a connection as a state machine that
//!   enforces which replies are legal when;
//! - [`SmtpReply`]: reply texts built so that both MTAs accept them.
//!
//! Nothing here touches a socket, a clock or a runtime, so every rule can be
//! tested, fuzzed and reused by any driver.

#![warn(missing_docs)]

pub mod command;
pub mod flags;
pub mod frame;
pub mod macros;
pub mod message_model;
pub mod mta;
pub mod negotiate;
pub mod optneg;
mod payload;
pub mod reply;
pub mod response;
pub mod session;
pub mod step;
pub mod verdict;

pub use command::{Command, ConnectAddress};
pub use flags::{Actions, CHUNK_SIZE, DataSize, Protocol};
pub use frame::{Frame, FrameDecoder, FrameError, classify_probe, encode_frame};
pub use macros::MacroStore;
pub use mta::{
    Answer, Dispatch, MilterOptions, MtaEvent, MtaSession, Offer, Violation, encode_macros,
};
pub use negotiate::{
    MAX_VERSION, MIN_VERSION, Negotiated, NegotiationError, Requirements, negotiate,
};
pub use optneg::{MacroRequest, MacroStage, OptNeg};
pub use payload::PayloadError;
pub use reply::{ReplyError, SmtpReply};
pub use response::Response;
pub use session::{
    Event, MilterSession, ModifyError, OPTNEG_MAX_PAYLOAD, Sent, SessionError, check_modification,
    check_values,
};
pub use step::{Step, Steps};
pub use verdict::Verdict;
