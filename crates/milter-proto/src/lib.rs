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
//!
//! # Driving a session
//!
//! A driver cuts the bytes it reads into [`Frame`]s with a
//! [`FrameDecoder`], hands each to the session's `receive`, acts on the
//! event, and writes the session's `output`. Here both ends run in one
//! process, the MTA side ([`MtaSession`], with Postfix's offer) and the
//! milter side ([`MilterSession`]) of a filter that wants only MAIL:
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use milter_proto::{
//!     Answer, Command, ConnectAddress, Dispatch, Event, FrameDecoder, MilterSession,
//!     MtaEvent, MtaSession, Offer, Requirements, SmtpReply, Step, Steps, Verdict,
//! };
//!
//! /// The frames in `bytes` (here always whole packets).
//! fn frames(bytes: &[u8]) -> Vec<milter_proto::Frame> {
//!     let decoder = FrameDecoder::new(1 << 20);
//!     let mut buf = BytesMut::from(bytes);
//!     std::iter::from_fn(|| decoder.decode(&mut buf).unwrap()).collect()
//! }
//!
//! let mut mta = MtaSession::new(Offer::postfix());
//! let mut milter = MilterSession::new(Requirements {
//!     steps: Steps::MAIL,
//!     ..Requirements::default()
//! });
//!
//! // Option negotiation: the MTA offers, the milter answers.
//! mta.start();
//! for f in frames(mta.output()) {
//!     assert_eq!(milter.receive(f).unwrap(), Event::Negotiated);
//! }
//! mta.clear_output();
//! for f in frames(milter.output()) {
//!     assert!(matches!(mta.receive(f).unwrap(), MtaEvent::Negotiated(_)));
//! }
//! milter.clear_output();
//!
//! // Connect was negotiated away: the MTA does not send it.
//! let connect = Command::Connect {
//!     hostname: Bytes::from_static(b"client.example"),
//!     address: ConnectAddress::Unknown,
//! };
//! assert_eq!(mta.send_step(connect), Dispatch::NotSent);
//!
//! // MAIL is sent and awaited; the filter refuses it.
//! let mail = Command::Mail(vec![Bytes::from_static(b"<a@example.org>")]);
//! assert_eq!(mta.send_step(mail), Dispatch::AwaitAnswer);
//! for f in frames(mta.output()) {
//!     match milter.receive(f).unwrap() {
//!         Event::Step { step: Step::Mail, deliver: true, .. } => {
//!             let reply = SmtpReply::new(550, Some("5.7.1"), "Not from you").unwrap();
//!             milter.reply(Verdict::reject_with(reply)).unwrap();
//!         }
//!         other => panic!("unexpected {other:?}"),
//!     }
//! }
//! mta.clear_output();
//! let answers: Vec<MtaEvent> = frames(milter.output())
//!     .into_iter()
//!     .map(|f| mta.receive(f).unwrap())
//!     .collect();
//! let MtaEvent::Answer(Answer::Reply(reply)) = &answers[0] else {
//!     panic!("{answers:?}")
//! };
//! assert_eq!(reply.to_string(), "550 5.7.1 Not from you");
//! ```

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
