//! Messages through the milter as Postfix plays them (the in-process
//! server, `minimilter`'s MTA-side client), and what the MTA delivers of
//! each one it accepts (header lines as Postfix passes them on: a readers'
//! differential must read those bytes, not the ones sent).

#![allow(dead_code)]

use bytes::Bytes;
use minimilter::proto::Offer;
use minimilter::transaction::{Outcome, run_next_message};
use minimilter::{
    ClientConfig, MessageSpec, MilterClient, Server, ServerConfig, Shutdown, run_message,
};
use pgp_milter::{PgpMilter, Policy};

/// Each message from `sender` (empty: the null sender) to
/// bob@example.org, on one connection: the outcome, and the delivered
/// message when accepted.
pub async fn judged(
    policy: Policy,
    sender: &str,
    messages: &[&[u8]],
) -> Vec<(Outcome, Option<Vec<u8>>)> {
    let (a, z) = tokio::io::duplex(1 << 20);
    let server = Server::new(PgpMilter::new(policy), ServerConfig::default());
    tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    let cfg = ClientConfig {
        offer: Offer::postfix(),
        ..ClientConfig::default()
    };
    let mut c = MilterClient::negotiate(Box::new(a), cfg).await.unwrap();
    let mut out = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let spec = MessageSpec {
            from: sender.into(),
            rcpts: vec!["bob@example.org".into()],
            message: Bytes::copy_from_slice(m),
            ..MessageSpec::default()
        };
        let t = if i == 0 {
            run_message(&mut c, &spec).await
        } else {
            run_next_message(&mut c, &spec).await
        }
        .unwrap();
        out.push((t.outcome, t.delivered.map(|d| d.render())));
    }
    c.quit().await.unwrap();
    out
}

/// Only the outcome of each message (see [`judged`]).
pub async fn outcomes<M: AsRef<[u8]>>(
    policy: Policy,
    sender: &str,
    messages: &[M],
) -> Vec<Outcome> {
    let refs: Vec<&[u8]> = messages.iter().map(AsRef::as_ref).collect();
    judged(policy, sender, &refs)
        .await
        .into_iter()
        .map(|(o, _)| o)
        .collect()
}

/// A refusal's reply text, or the outcome itself when it is not a refusal.
pub fn reply(o: &Outcome) -> String {
    match o {
        Outcome::Rejected { reply, .. } => reply.clone().unwrap_or_default(),
        other => format!("{other:?}"),
    }
}
