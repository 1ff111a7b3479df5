//! `mailman-milter`: refuse posts to Mailman lists from senders who may not
//! post, while the SMTP session is still open, so Mailman never sends its
//! rejection or "held for approval" notice to a (likely forged) sender.
//!
//! Layers: [`address`] and [`recipient`] read addresses; [`list`] and
//! [`policy`] decide like Mailman 3 (pure functions); [`backend`] is where
//! list data comes from ([`lists_file`] for a TOML file, [`rest`] for
//! Mailman 3's REST API, with its answer cache); [`overrides`] adds the
//! configuration's per-list `refuse_hold` and `reject_text`; [`milter`]
//! applies it all over the minimilter runtime; [`config`] is the daemon's
//! settings; [`cli`] is the daemon itself, with [`metered`] (backend
//! counters), [`reason_class`] (decision classes for metrics) and
//! [`backend_probe`] (`--check-backend`).

pub mod address;
pub mod approval;
pub mod backend;
pub mod backend_probe;
pub mod cli;
pub mod config;
pub mod export;
pub mod header_match;
pub mod list;
pub mod lists_file;
pub mod metered;
pub mod milter;
pub mod overrides;
pub mod policy;
pub mod pyregex;
pub mod reason_class;
pub mod recipient;
pub mod rest;

pub use backend::{BackendError, ListBackend, ListIndex, SenderStatus};
pub use lists_file::{FileBackend, ListsData, LoadError};
pub use milter::{MailmanMilter, OnBackendError, Settings};
pub use policy::{Decision, SenderMode};
pub use rest::{RestBackend, RestConfig, RestError};
