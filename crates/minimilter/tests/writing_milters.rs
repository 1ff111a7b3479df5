//! The example milters of "Writing a milter" (crate docs), tested the way
//! the docs recommend: the runtime's `Server::serve_stream` on one end of an
//! in-memory pipe, the MTA-side `MilterClient` (Postfix's offer, Postfix's
//! way of playing a message) on the other. No socket, no MTA.

// The examples are daemons (the `daemon` feature, on by default).
#![cfg(feature = "daemon")]

#[path = "../examples/body_digest_milter.rs"]
#[allow(dead_code)]
mod body_digest_milter;
#[path = "../examples/header_rewrite_milter.rs"]
#[allow(dead_code)]
mod header_rewrite_milter;
#[path = "../examples/rcpt_limit_milter.rs"]
#[allow(dead_code)]
mod rcpt_limit_milter;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use minimilter::proto::Response;
use minimilter::{
    ClientConfig, MessageSpec, Milter, MilterClient, Outcome, Server, ServerConfig, Shutdown, Step,
    Transcript, run_message, run_next_message,
};

/// Plays `specs` as consecutive messages of one SMTP session.
async fn play<M: Milter>(milter: M, specs: &[MessageSpec]) -> Vec<Transcript> {
    let server = Server::new(milter, ServerConfig::default());
    let (mta_end, milter_end) = tokio::io::duplex(256 * 1024);
    let serving =
        tokio::spawn(async move { server.serve_stream(milter_end, Shutdown::new()).await });
    let mut client = MilterClient::negotiate(Box::new(mta_end), ClientConfig::default())
        .await
        .expect("negotiation");
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let t = if i == 0 {
            run_message(&mut client, spec).await
        } else {
            run_next_message(&mut client, spec).await
        };
        out.push(t.expect("the session completes"));
    }
    client.quit().await.expect("quit");
    serving.await.expect("the connection task ends");
    out
}

fn within<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), f)
            .await
            .expect("bounded")
    })
}

fn spec(from: &str, rcpts: &[&str], message: &str) -> MessageSpec {
    MessageSpec {
        client_addr: Some([192, 0, 2, 10].into()),
        client_name: "mail.client.example".into(),
        helo: "mail.client.example".into(),
        from: from.into(),
        rcpts: rcpts.iter().map(|r| r.to_string()).collect(),
        message: Bytes::from(message.to_owned()),
        ..MessageSpec::default()
    }
}

fn authenticated(mut s: MessageSpec, user: &str) -> MessageSpec {
    s.macros.push(("{auth_authen}".into(), user.into()));
    s
}

const MSG: &str = "From: a@example.com\r\nSubject: hello\r\n\r\nbody\r\n";

#[test]
fn unauthenticated_relay_is_refused_per_recipient_with_the_client_address() {
    let t = within(play(
        rcpt_limit_milter::example_policy(),
        &[spec(
            "a@client.example",
            &["bob@example.org", "eve@elsewhere.example"],
            MSG,
        )],
    ));
    let t = &t[0];
    assert_eq!(t.outcome, Outcome::Accepted, "{t:?}");
    assert_eq!(t.refused_rcpts.len(), 1, "{:?}", t.refused_rcpts);
    let r = &t.refused_rcpts[0];
    assert_eq!(r.rcpt, "eve@elsewhere.example");
    assert!(!r.temporary);
    assert_eq!(
        r.reply.as_deref(),
        Some("550 5.7.1 Relaying from 192.0.2.10 needs authentication")
    );
    let delivered = t.delivered.as_ref().unwrap();
    let to: Vec<_> = delivered.recipients.iter().map(|r| &r.address).collect();
    assert_eq!(to, ["bob@example.org"]);
}

#[test]
fn recipient_limit_comes_from_the_lookup_once_per_connection() {
    let policy = rcpt_limit_milter::example_policy();
    let directory = policy.directory.clone();
    let rcpts = ["r1@far.example", "r2@far.example", "r3@far.example"];
    let first = authenticated(spec("alice@example.org", &rcpts, MSG), "alice");
    let second = authenticated(spec("alice@example.org", &rcpts, MSG), "alice");
    let t = within(play(policy, &[first, second]));
    for t in &t {
        assert_eq!(t.outcome, Outcome::Accepted, "{t:?}");
        // alice may have 2 per message: the counter is per message.
        let refused: Vec<_> = t.refused_rcpts.iter().map(|r| r.rcpt.as_str()).collect();
        assert_eq!(refused, ["r3@far.example"]);
        assert!(t.refused_rcpts[0].temporary);
        assert_eq!(
            t.refused_rcpts[0].reply.as_deref(),
            Some("452 4.5.3 Too many recipients")
        );
    }
    assert_eq!(directory.lookups.load(Ordering::Relaxed), 1);
}

#[test]
fn a_slow_lookup_defers_at_mail_instead_of_hanging() {
    let mut policy = rcpt_limit_milter::example_policy();
    policy.directory = std::sync::Arc::new(rcpt_limit_milter::Directory {
        limits: Default::default(),
        default_limit: 50,
        delay: Duration::from_secs(5),
        lookups: Default::default(),
    });
    policy.lookup_timeout = Duration::from_millis(50);
    let t = within(play(
        policy,
        &[authenticated(
            spec("alice@example.org", &["bob@example.org"], MSG),
            "alice",
        )],
    ));
    assert_eq!(
        t[0].outcome,
        Outcome::Tempfailed {
            at: Step::Mail,
            reply: Some("451 4.3.0 User directory unavailable, try again later".into())
        }
    );
}

#[test]
fn an_oversized_body_is_refused_at_the_body_step() {
    let mut policy = rcpt_limit_milter::example_policy();
    policy.max_body = 100;
    let big = format!("Subject: big\r\n\r\n{}", "x".repeat(200));
    let t = within(play(
        policy,
        &[spec("a@example.org", &["bob@example.org"], &big)],
    ));
    assert_eq!(
        t[0].outcome,
        Outcome::Rejected {
            at: Step::Body,
            reply: Some("552 5.3.4 Message too big for this system".into())
        }
    );
}

#[test]
fn headers_are_deleted_changed_and_added_and_the_sender_masqueraded() {
    let message = "From: alice@example.org\r\n\
        X-Internal-Route: a\r\n\
        Subject: quarterly numbers\r\n\
        X-Internal-Route: b\r\n\
        x-internal-ticket: 42\r\n\
        X-Other: kept\r\n\
        \r\n\
        body\r\n";
    let t = within(play(
        header_rewrite_milter::example_policy(),
        &[spec(
            "alice@host.corp.example.org",
            &["bob@example.org"],
            message,
        )],
    ));
    let t = &t[0];
    assert_eq!(t.outcome, Outcome::Accepted);
    // Highest index first, per name.
    let deletes: Vec<_> = t
        .modifications
        .iter()
        .filter_map(|m| match m {
            Response::ChangeHeader { index, name, value } if value.is_empty() => {
                Some((String::from_utf8_lossy(name).into_owned(), *index))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        deletes,
        [
            ("X-Internal-Route".into(), 2),
            ("X-Internal-Route".into(), 1),
            ("x-internal-ticket".into(), 1)
        ]
    );
    let delivered = t.delivered.as_ref().unwrap();
    let names: Vec<_> = delivered.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["From", "Subject", "X-Other", "X-Rewritten"]);
    // Internal sender: no tag, but the envelope is masqueraded.
    assert_eq!(delivered.headers[1].value, " quarterly numbers");
    assert_eq!(delivered.sender, "alice@example.org");
    assert_eq!(
        delivered.headers[3].value,
        " by header_rewrite_milter (queue id 4ABCDEF0123)"
    );
}

#[test]
fn external_mail_gets_its_subject_tagged_or_one_added() {
    let with = "Subject: hi\r\n\r\nbody\r\n";
    let without = "From: x@far.example\r\n\r\nbody\r\n";
    let t = within(play(
        header_rewrite_milter::example_policy(),
        &[
            spec("x@far.example", &["bob@example.org"], with),
            spec("x@far.example", &["bob@example.org"], without),
        ],
    ));
    let first = t[0].delivered.as_ref().unwrap();
    assert_eq!(first.sender, "x@far.example");
    assert_eq!(first.headers[0].name, "Subject");
    assert_eq!(first.headers[0].value, " [external] hi");
    let second = t[1].delivered.as_ref().unwrap();
    let subject = second.headers.iter().find(|h| h.name == "Subject").unwrap();
    assert_eq!(subject.value, " [external]");
}

/// The X-Body-Digest value the milter added.
fn digest_header(t: &Transcript) -> String {
    let delivered = t.delivered.as_ref().expect("delivered");
    let h = delivered
        .headers
        .iter()
        .find(|h| h.name == "X-Body-Digest")
        .expect("tagged");
    h.value.trim().to_owned()
}

#[test]
fn the_body_digest_is_of_the_body_as_the_milter_sees_it() {
    let body = "line one\r\nline two\r\n";
    let t = within(play(
        body_digest_milter::example_policy(),
        &[spec(
            "a@far.example",
            &["bob@example.org"],
            &format!("Subject: d\r\n\r\n{body}"),
        )],
    ));
    assert_eq!(t[0].outcome, Outcome::Accepted);
    assert_eq!(
        digest_header(&t[0]),
        body_digest_milter::digest(body.as_bytes())
    );
}

#[test]
fn listed_digests_are_refused_or_held() {
    let blocked_body = "buy now\r\n";
    let held_body = "look at me\r\n";
    let mut policy = body_digest_milter::example_policy();
    let blocked = body_digest_milter::digest(blocked_body.as_bytes());
    policy.blocked = std::sync::Arc::new([blocked.clone()].into());
    policy.held = std::sync::Arc::new([body_digest_milter::digest(held_body.as_bytes())].into());
    let msg = |b: &str| {
        spec(
            "a@far.example",
            &["bob@example.org"],
            &format!("Subject: x\r\n\r\n{b}"),
        )
    };
    let t = within(play(
        policy,
        &[msg(blocked_body), msg(held_body), msg("fine\r\n")],
    ));
    assert_eq!(
        t[0].outcome,
        Outcome::Rejected {
            at: Step::EndOfMessage,
            reply: Some(format!("554 5.7.1 Message content blocked ({blocked})"))
        }
    );
    assert_eq!(t[1].outcome, Outcome::Accepted);
    let q = t[1].quarantine.as_deref().expect("held");
    assert!(q.contains("on the hold list"), "{q}");
    assert_eq!(t[2].outcome, Outcome::Accepted);
    assert_eq!(t[2].quarantine, None);
}

#[test]
fn a_long_body_is_hashed_in_part_and_the_rest_skipped() {
    let mut policy = body_digest_milter::example_policy();
    policy.scan_limit = 76; // two lines
    let line = "0123456789abcdefghijklmnopqrstuvwxyz\r\n";
    let long = line.repeat(5000); // 190 000 bytes: several chunks
    let exact = &long[..76];
    let t = within(play(
        policy,
        &[
            spec(
                "a@far.example",
                &["bob@example.org"],
                &format!("Subject: l\r\n\r\n{long}"),
            ),
            spec(
                "a@far.example",
                &["bob@example.org"],
                &format!("Subject: e\r\n\r\n{exact}"),
            ),
        ],
    ));
    // Postfix offers SKIP: after the first chunk no more were sent, and the
    // whole body is still delivered.
    let unsent = t[0].body_not_sent.as_ref().expect("rest skipped");
    assert!(unsent.skipped && unsent.chunks >= 1, "{unsent:?}");
    assert_eq!(t[0].delivered.as_ref().unwrap().body.len(), long.len());
    assert_eq!(
        digest_header(&t[0]),
        format!(
            "{} (partial, first 76 bytes)",
            body_digest_milter::digest(&long.as_bytes()[..76])
        )
    );
    // Exactly the limit: all of it was read, so not partial.
    assert_eq!(
        digest_header(&t[1]),
        body_digest_milter::digest(exact.as_bytes())
    );
}
