//! The milter served in-process on a duplex pipe, with `minimilter`'s
//! MTA-side client negotiated against it: the protocol-level harness the
//! REST and file-backend tests share (no socket, no daemon). Also
//! included by `examples/warm_rcpt.rs` with `#[path]`.

#![allow(dead_code)] // Each test file uses a different part.

use std::sync::Arc;

use mailman_milter::{ListBackend, MailmanMilter, SenderMode, Settings};
use minimilter::{
    ClientConfig, Milter, MilterClient, Requirements, Server, ServerConfig, Shutdown, Steps,
};

/// A client negotiated (as `ClientConfig::default()` offers) with a
/// `MailmanMilter` on `backend` under `settings`, served in-process.
pub async fn client<B: ListBackend>(backend: Arc<B>, settings: Settings) -> MilterClient {
    served(MailmanMilter::new(backend, settings)).await
}

/// A client negotiated (as `ClientConfig::default()` offers) with
/// `milter`, served in-process.
pub async fn served<M: Milter>(milter: M) -> MilterClient {
    let (a, z) = tokio::io::duplex(1 << 20);
    let server = Server::new(milter, ServerConfig::default());
    tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    MilterClient::negotiate(Box::new(a), ClientConfig::default())
        .await
        .expect("negotiated")
}

/// The default settings, judging the envelope sender only.
pub fn envelope_senders() -> Settings {
    Settings {
        senders: SenderMode::Envelope,
        ..Settings::default()
    }
}

/// A milter that decides nothing (every step continues), asking for the
/// steps mailman-milter asks for when it judges envelope senders: the
/// control that shows what the protocol, the runtime and the machine cost
/// without any policy.
pub struct Null;

impl Milter for Null {
    type Connection = ();
    type Message = ();

    fn requirements(&self) -> Requirements {
        Requirements {
            steps: Steps::MAIL | Steps::RCPT,
            ..Requirements::default()
        }
    }
}

/// A client of the [`Null`] milter, served in-process.
pub async fn null_client() -> MilterClient {
    served(Null).await
}
