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
//! * [`config`]: the TOML file, checked at start-up;
//! * [`refusal`]: the class of a decision, for metrics;
//! * [`metered`]: the milter with its own counters (bytes judged);
//! * [`cli`]: the daemon (`pgp-milter`), its command line and reloads.

//!
//! For chatmail relays (`profile = "chatmail"`), also testable without a
//! socket:
//! * [`securejoin`]: the unencrypted first SecureJoin step, exactly;
//! * [`sender_match`]: `From:` against the envelope sender of an
//!   authenticated submission.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod armor;
pub mod cli;
pub mod config;
pub mod detect;
pub mod html;
pub mod keyring;
pub mod metered;
pub mod milter;
pub mod mime;
pub mod openpgp;
pub mod packets;
pub mod payload;
pub mod policy;
pub mod refusal;
pub mod report;
pub mod securejoin;
pub mod sender_match;

pub use config::{Config, ConfigError, DEFAULT_LISTEN};
pub use detect::{Detection, Form, NotPgp, detect};
pub use keyring::{Keyring, KeyringError, SharedKeyring};
pub use milter::PgpMilter;
pub use policy::{Decision, HiddenRecipients, Policy, Require, UnknownRecipient};
