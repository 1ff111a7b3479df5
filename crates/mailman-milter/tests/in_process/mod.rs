//! The milter served in-process on a duplex pipe, with `minimilter`'s
//! MTA-side client negotiated against it: the protocol-level harness the
//! REST and file-backend tests share (no socket, no daemon).

#![allow(dead_code)] // Each test file uses a different part.

use std::sync::Arc;

use mailman_milter::{ListBackend, MailmanMilter, SenderMode, Settings};
use minimilter::{ClientConfig, MilterClient, Server, ServerConfig, Shutdown};

/// A client negotiated (as `ClientConfig::default()` offers) with a
/// `MailmanMilter` on `backend` under `settings`, served in-process.
pub async fn client<B: ListBackend>(backend: Arc<B>, settings: Settings) -> MilterClient {
    let (a, z) = tokio::io::duplex(1 << 20);
    let server = Server::new(
        MailmanMilter::new(backend, settings),
        ServerConfig::default(),
    );
    tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    MilterClient::negotiate(Box::new(a), ClientConfig::default())
        .await
        .unwrap()
}

/// The default settings, judging the envelope sender only.
pub fn envelope_senders() -> Settings {
    Settings {
        senders: SenderMode::Envelope,
        ..Settings::default()
    }
}
