//! Small messages are judged inline on the async worker; a step that
//! decompresses more than the inline allowance is thrown away and the
//! message judged again from its start on a blocking thread. Proved here
//! without gpg, on Compressed Data packets built in the test:
//! * the milter's verdict (the reply) is the one the whole-message
//!   detector gives, whichever path the message took;
//! * a small bomb's budget refusal is logged from a thread other than the
//!   runtime's only one (a current-thread runtime), so its decompressing
//!   did not run on the async worker.

mod support;

use std::io::Write;

use minimilter::proto::Offer;
use minimilter::run_message;
use minimilter::transaction::Outcome;
use minimilter::{ClientConfig, MessageSpec, MilterClient, Server, ServerConfig, Shutdown};
use pgp_milter::{Decision, PgpMilter, Policy, detect};
use support::threads::{self, ThreadRecorder};
use tracing_subscriber::util::SubscriberInitExt;

/// A new-format packet with a five-octet length.
fn packet(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0xC0 | tag, 0xFF];
    p.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    p.extend_from_slice(body);
    p
}

/// Compressed Data (ZIP, raw deflate) holding a Literal Data packet of
/// `n` zero octets.
fn compressed_literal(n: usize) -> Vec<u8> {
    let mut literal = vec![b'b', 0, 0, 0, 0, 0];
    literal.resize(literal.len() + n, 0);
    let literal = packet(11, &literal);
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&literal).unwrap();
    let mut body = vec![1u8];
    body.extend(z.finish().unwrap());
    packet(8, &body)
}

fn armored(data: &[u8]) -> String {
    format!(
        "-----BEGIN PGP MESSAGE-----\r\n\r\n{}-----END PGP MESSAGE-----\r\n",
        support::base64_lines(data)
    )
}

fn text_message(body: &str) -> Vec<u8> {
    format!(
        "From: alice@client.example\r\nTo: bob@example.org\r\nSubject: s\r\n\
         Content-Type: text/plain\r\n\r\n{body}"
    )
    .into_bytes()
}

async fn client() -> MilterClient {
    let (a, z) = tokio::io::duplex(1 << 20);
    let server = Server::new(PgpMilter::new(Policy::default()), ServerConfig::default());
    tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    let cfg = ClientConfig {
        offer: Offer::postfix(),
        ..ClientConfig::default()
    };
    MilterClient::negotiate(Box::new(a), cfg).await.unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn inline_and_replayed_messages_get_the_detectors_verdict() {
    ThreadRecorder
        .try_init()
        .expect("one subscriber per binary");
    let small = armored(&compressed_literal(1000));
    let over_allowance = armored(&compressed_literal(1 << 20));
    let bomb = armored(&compressed_literal(33 << 20));
    let messages: Vec<(&str, Vec<u8>)> = vec![
        ("plain text", text_message("Hello.\r\n")),
        ("small compressed literal", text_message(&small)),
        ("1 MiB compressed literal", text_message(&over_allowance)),
        ("33 MiB bomb", text_message(&bomb)),
        (
            "bomb after an empty part",
            support::mixed(
                "two",
                &[
                    "Content-Type: text/plain\r\n\r\n\r\n".to_owned(),
                    format!("Content-Type: text/plain\r\n\r\n{bomb}"),
                ],
            ),
        ),
    ];
    let policy = Policy::default();
    let mut c = client().await;
    for (name, m) in &messages {
        assert!(m.len() < 64 * 1024, "{name}: {} bytes", m.len());
        let expected = match policy.judge(&detect(m)) {
            Decision::Reject(reply, _) => reply.to_string(),
            other => panic!("{name}: the detector should refuse it: {other:?}"),
        };
        let spec = MessageSpec {
            from: "alice@client.example".into(),
            rcpts: vec!["bob@example.org".into()],
            message: bytes::Bytes::from(m.clone()),
            ..MessageSpec::default()
        };
        threads::clear();
        let t = run_message(&mut c, &spec).await.unwrap();
        let Outcome::Rejected { reply, .. } = &t.outcome else {
            panic!("{name}: expected a rejection, got {:?}", t.outcome)
        };
        assert_eq!(reply.as_deref(), Some(expected.as_str()), "{name}");
        if name.contains("bomb") {
            assert!(expected.contains("per-message limit"), "{name}: {expected}");
            let runtime_thread = std::thread::current().id();
            let threads: Vec<std::thread::ThreadId> = threads::events()
                .into_iter()
                .filter(|(target, _)| target.starts_with("pgp_milter::detect"))
                .map(|(_, t)| t)
                .collect();
            assert!(
                !threads.is_empty(),
                "{name}: the budget event was not logged"
            );
            assert!(
                threads.iter().all(|&t| t != runtime_thread),
                "{name}: the bomb was decompressed on the async worker"
            );
        }
    }
    c.quit().await.unwrap();
}
