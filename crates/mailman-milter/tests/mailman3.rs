//! The REST backend against a real Mailman 3 core (Debian's `mailman3`),
//! started here with its own configuration and var dir, REST on a free
//! 127.0.0.1 port. Lists, members, the non-member action, an accept pattern
//! and a ban are set over REST; the milter is then driven in process by
//! minimilter's `MilterClient`. Mailman's REST is stopped at the end: the
//! next decision must be 451, never 5xx.
//!
//! Needs root (Mailman runs as user `list`) and the `mailman3` package:
//! without them it fails, naming scripts/install-test-deps.sh.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mailman_milter::{MailmanMilter, RestBackend, RestConfig, Settings};
use minimilter::proto::Step;
use minimilter::transaction::Outcome;
use minimilter::{
    ClientConfig, MessageSpec, MilterClient, Server, ServerConfig, Shutdown, Transcript,
    run_message,
};
use support::{Mailman, create_user, http, rest, set_moderation};

const REFUSAL: &str =
    "550 5.7.1 <team@lists.example.org>: you are not allowed to post to this list";
const UNAVAILABLE: &str = "451 4.3.0 Mailing list data temporarily unavailable; try again later";

async fn post(backend: &Arc<RestBackend>, from: &str, rcpt: &str) -> Transcript {
    let (a, z) = tokio::io::duplex(1 << 20);
    let server = Server::new(
        MailmanMilter::new(backend.clone(), Settings::default()),
        ServerConfig::default(),
    );
    tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    let mut c = MilterClient::negotiate(Box::new(a), ClientConfig::default())
        .await
        .unwrap();
    let spec = MessageSpec {
        from: from.into(),
        rcpts: vec![rcpt.into()],
        message: Bytes::from(format!(
            "From: {from}\r\nTo: {rcpt}\r\nSubject: hello\r\n\r\nBody.\r\n"
        )),
        ..MessageSpec::default()
    };
    tokio::time::timeout(Duration::from_secs(20), run_message(&mut c, &spec))
        .await
        .expect("the milter answers in time")
        .unwrap()
}

fn refused_with(t: &Transcript) -> String {
    match &t.outcome {
        // These lists have no moderator password (Mailman's default), so an
        // approval line in the body could not count: refused at once.
        Outcome::Rejected {
            at: Step::EndOfHeaders,
            reply,
        } => reply.clone().unwrap_or_default(),
        other => panic!("expected a refusal after the headers, got {other:?}"),
    }
}

fn tempfailed_at(t: &Transcript) -> Step {
    match &t.outcome {
        Outcome::Tempfailed { at, reply } => {
            assert_eq!(reply.as_deref(), Some(UNAVAILABLE));
            *at
        }
        other => panic!("expected 451 4.3.0, got {other:?}"),
    }
}

#[ignore = "needs mailman"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_from_a_real_mailman_3_core_and_451_once_it_is_stopped() {
    let started = Instant::now();
    let mut mailman = tokio::task::spawn_blocking(|| Mailman::start(None))
        .await
        .unwrap();
    let port = mailman.rest_port;
    eprintln!("Mailman started in {:?}", started.elapsed());
    tokio::task::spawn_blocking(move || {
        let list = "team.lists.example.org";
        rest(
            port,
            "POST",
            "/domains",
            &[("mail_host", "lists.example.org")],
        );
        rest(
            port,
            "POST",
            "/lists",
            &[("fqdn_listname", "team@lists.example.org")],
        );
        rest(
            port,
            "POST",
            "/members",
            &[
                ("list_id", list),
                ("subscriber", "Alice@Example.org"),
                ("pre_verified", "true"),
                ("pre_confirmed", "true"),
                ("pre_approved", "true"),
            ],
        );
        rest(
            port,
            "PATCH",
            &format!("/lists/{list}/config"),
            &[
                ("default_nonmember_action", "reject"),
                ("accept_these_nonmembers", "^.*@partner\\.example$"),
            ],
        );
        rest(
            port,
            "POST",
            &format!("/lists/{list}/bans"),
            &[("email", "spam@evil.example")],
        );
        // Mailman 3's own moderation: a member whose posts are discarded, a
        // non-member whose posts are accepted, one the legacy hold list holds.
        for (email, role, action) in [
            ("troll@example.org", "member", "discard"),
            ("vip@outside.example", "nonmember", "accept"),
        ] {
            set_moderation(port, list, email, role, action);
        }
        rest(
            port,
            "PATCH",
            &format!("/lists/{list}/config"),
            &[("hold_these_nonmembers", "held@example.com")],
        );
        // A user with two addresses, one of them subscribed.
        create_user(port, &["dana@example.org", "dana.alt@example.net"]);
        rest(
            port,
            "POST",
            "/members",
            &[
                ("list_id", list),
                ("subscriber", "dana@example.org"),
                ("pre_verified", "true"),
                ("pre_confirmed", "true"),
                ("pre_approved", "true"),
            ],
        );
        // A list open to everyone but one member whose posts Mailman
        // rejects: guarded for that member alone.
        rest(
            port,
            "POST",
            "/lists",
            &[("fqdn_listname", "open@lists.example.org")],
        );
        rest(
            port,
            "PATCH",
            "/lists/open.lists.example.org/config",
            &[("default_nonmember_action", "accept")],
        );
        set_moderation(
            port,
            "open.lists.example.org",
            "grump@example.org",
            "member",
            "reject",
        );
    })
    .await
    .unwrap();

    let config = |ttl| RestConfig {
        url: format!("http://127.0.0.1:{port}/3.1"),
        timeout: Duration::from_secs(3),
        cache_ttl: ttl,
        ..RestConfig::default()
    };
    let backend = Arc::new(RestBackend::new(&config(Duration::from_secs(60))).unwrap());
    let uncached = Arc::new(RestBackend::new(&config(Duration::ZERO)).unwrap());
    let team = "team@lists.example.org";

    for b in [&backend, &uncached] {
        assert_eq!(
            post(b, "alice@example.org", team).await.outcome,
            Outcome::Accepted
        );
        assert_eq!(
            refused_with(&post(b, "stranger@example.com", team).await),
            REFUSAL
        );
        assert_eq!(
            post(b, "x@partner.example", team).await.outcome,
            Outcome::Accepted
        );
        assert_eq!(
            refused_with(&post(b, "spam@evil.example", team).await),
            REFUSAL
        );
        // Mailman would answer a lookup of this one with alice (LIKE search).
        assert_eq!(refused_with(&post(b, "*@example.org", team).await), REFUSAL);
        assert_eq!(
            post(b, "stranger@example.com", "team-request@lists.example.org")
                .await
                .outcome,
            Outcome::Accepted
        );
        assert_eq!(
            refused_with(&post(b, "troll@example.org", team).await),
            REFUSAL
        );
        for ok in ["vip@outside.example", "held@example.com"] {
            assert_eq!(post(b, ok, team).await.outcome, Outcome::Accepted, "{ok}");
        }
        // Posting from another address of a member's user: a member.
        assert_eq!(
            post(b, "dana.alt@example.net", team).await.outcome,
            Outcome::Accepted
        );
        let open = "open@lists.example.org";
        assert_eq!(
            post(b, "stranger@example.com", open).await.outcome,
            Outcome::Accepted
        );
        assert_eq!(
            refused_with(&post(b, "grump@example.org", open).await),
            "550 5.7.1 <open@lists.example.org>: you are not allowed to post to this list"
        );
    }

    eprintln!("decisions done at {:?}", started.elapsed());
    tokio::task::spawn_blocking(move || {
        mailman.stop();
        mailman
    })
    .await
    .unwrap();
    eprintln!("Mailman stopped at {:?}", started.elapsed());
    assert!(
        http(port, "GET", "/system/versions", &[]).is_err(),
        "Mailman's REST still answers after stop"
    );
    // Lists cached: the member lookup fails after the headers.
    assert_eq!(
        tempfailed_at(&post(&backend, "late@example.com", team).await),
        Step::EndOfHeaders
    );
    // Nothing cached: the list lookup fails at RCPT.
    assert_eq!(
        tempfailed_at(&post(&uncached, "alice@example.org", team).await),
        Step::Rcpt
    );
    let took = started.elapsed();
    // Bounded, with room for a machine shared with other test runs (Mailman
    // alone took 15 to 25 s to start here).
    assert!(took < Duration::from_secs(120), "took {took:?}");
    eprintln!("real Mailman 3 test took {took:?}");
}
