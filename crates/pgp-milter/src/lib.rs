//! `pgp-milter`: accept only mail that really is OpenPGP, refuse the rest
//! while the SMTP session is still open.
//!
//! Layers, each testable without a socket:
//! * [`address`]: envelope addresses in the one form policy compares;
//! * [`armor`]: OpenPGP ASCII armor;
//! * [`openpgp`]: the one door to rpgp (packet parsing, isolated: bounded
//!   input, a panic in it is an error);
//! * [`packets`]: the message grammar over rpgp's packets, PKESK recipients;
//! * [`keyring`]: the public keys of `keyring_dir`, by e-mail address;
//! * [`mime`]: the strict streaming MIME reader (header fields, RFC 2046
//!   structure, transfer decoding), sans-IO;
//! * [`payload`]: the streaming OpenPGP payload reader of one leaf
//!   (armor, packet framing, grammar, ciphertext randomness);
//! * [`detect`]: what a message is (encrypted, signed, plain), judged on
//!   the reader's events as the bytes arrive;
//! * [`html`]: the text of an HTML alternative that is only markup around
//!   a repeated armor;
//! * [`policy`]: who is checked, what passes, what the refusal says;
//! * [`config`]: the TOML file, checked at start-up;
//! * [`milter`]: the [`minimilter::Milter`] tying them to the SMTP steps.

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
pub mod securejoin;
pub mod sender_match;

pub use config::{Config, ConfigError, DEFAULT_LISTEN};
pub use detect::{Detection, Form, NotPgp, detect};
pub use keyring::{Keyring, KeyringError, SharedKeyring};
pub use milter::PgpMilter;
pub use policy::{Decision, HiddenRecipients, Policy, Require, UnknownRecipient};
