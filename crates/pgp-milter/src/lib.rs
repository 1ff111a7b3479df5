//! `pgp-milter`: accept only mail that really is OpenPGP, refuse the rest
//! while the SMTP session is still open.
//!
//! Layers, each testable without a socket, each using only the ones
//! listed before it (no import circles; `use crate::` lines say so):
//! * [`address`], [`armor`], [`mime`], [`html`]: leaves that need nothing
//!   else of the crate — envelope addresses in the one form policy
//!   compares; OpenPGP ASCII armor; the strict streaming MIME reader
//!   (header fields, RFC 2046 structure, transfer decoding), sans-IO; the
//!   text of an HTML alternative that is only markup around a repeated
//!   armor;
//! * [`openpgp`]: the one door to rpgp (packet parsing, isolated: bounded
//!   input, a panic in it is an error), with the names it shares upwards
//!   (packet tags, [`openpgp::KeyTarget`], [`openpgp::cert::Cert`]) and
//!   the work allowance of a step judged inline; uses [`address`] only;
//! * [`packets`]: the message grammar over rpgp's packets, PKESK recipients;
//! * [`payload`]: the streaming OpenPGP payload reader of one leaf
//!   (armor, packet framing, grammar, ciphertext randomness);
//! * [`keyring`]: the public keys of `keyring_dir`, by e-mail address;
//! * [`detect`](mod@detect): what a message is (encrypted, signed, plain), judged on
//!   the reader's events as the bytes arrive;
//! * [`report`]: a delivery status report from the null sender;
//! * [`policy`]: who is checked, what passes, what the refusal says;
//! * [`milter`]: the [`minimilter::Milter`] tying them to the SMTP steps;
//! * [`config`]: the TOML file, checked at start-up.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod armor;
pub mod config;
pub mod detect;
pub mod html;
pub mod keyring;
pub mod milter;
pub mod mime;
pub mod openpgp;
pub mod packets;
pub mod payload;
pub mod policy;
pub mod report;

pub use config::{Config, ConfigError, DEFAULT_LISTEN};
pub use detect::{Detection, Form, NotPgp, detect};
pub use keyring::{Keyring, KeyringError, SharedKeyring};
pub use milter::PgpMilter;
pub use policy::{Decision, HiddenRecipients, Policy, Require, UnknownRecipient};
