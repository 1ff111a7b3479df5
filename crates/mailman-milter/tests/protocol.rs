//! The milter driven over the real milter protocol by minimilter's MTA-side
//! client (in process, over a pipe), the way Postfix drives it.

mod in_process;
use std::sync::Arc;

use bytes::Bytes;
use mailman_milter::{FileBackend, OnBackendError, SenderMode, Settings};
use minimilter::proto::Step;
use minimilter::transaction::{Outcome, run_next_message};
use minimilter::{MessageSpec, Transcript, run_message};

const LISTS: &str = r#"
[[list]]
address = "team@lists.example.org"
nonmember_action = "reject"
members = ["alice@example.org"]
accept_nonmembers = ["^.*@partner\\.example$"]
banned = ["^.*@evil\\.example$"]

[[list]]
address = "quiet@lists.example.org"
nonmember_action = "discard"
reject_text = "<{list}>: members only; see https://lists.example.org/quiet (100% sure)"

[[list]]
address = "held@lists.example.org"
nonmember_action = "hold"
"#;

const REFUSAL: &str =
    "550 5.7.1 <team@lists.example.org>: you are not allowed to post to this list";

struct Harness {
    _dir: tempfile::TempDir,
    backend: Arc<FileBackend>,
}

fn harness(lists: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lists.toml");
    std::fs::write(&path, lists).unwrap();
    let (backend, err) = FileBackend::open(&path);
    assert!(err.is_none(), "{err:?}");
    Harness {
        _dir: dir,
        backend: Arc::new(backend),
    }
}

fn spec(from: &str, header_from: &str, rcpts: &[&str], extra_headers: &str) -> MessageSpec {
    MessageSpec {
        from: from.into(),
        rcpts: rcpts.iter().map(|r| r.to_string()).collect(),
        message: Bytes::from(format!(
            "From: {header_from}\r\nTo: team@lists.example.org\r\nSubject: hello\r\n{extra_headers}\r\nBody.\r\n"
        )),
        ..MessageSpec::default()
    }
}

async fn run(settings: Settings, s: &MessageSpec) -> Transcript {
    let h = harness(LISTS);
    let mut c = in_process::client(h.backend.clone(), settings).await;
    run_message(&mut c, s).await.unwrap()
}

fn rejected_at(t: &Transcript, step: Step) -> String {
    match &t.outcome {
        Outcome::Rejected { at, reply } if *at == step => reply.clone().unwrap_or_default(),
        other => panic!("expected a rejection at {step}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_members_post_passes() {
    let t = run(
        Settings::default(),
        &spec(
            "alice@example.org",
            "Alice <Alice@Example.ORG>",
            &["team@lists.example.org"],
            "",
        ),
    )
    .await;
    assert_eq!(t.outcome, Outcome::Accepted);
}

#[tokio::test]
async fn a_member_in_from_reply_to_or_sender_is_enough() {
    for (envelope, headers) in [
        ("bounce@forwarder.example", ""),
        ("", ""),
        ("x@example.com", "Reply-To: \"A\" <alice@example.org>\r\n"),
        ("x@example.com", "Sender: alice@EXAMPLE.org\r\n"),
    ] {
        let from = if headers.is_empty() {
            "alice@example.org"
        } else {
            "stranger@example.com"
        };
        let t = run(
            Settings::default(),
            &spec(envelope, from, &["team@lists.example.org"], headers),
        )
        .await;
        assert_eq!(t.outcome, Outcome::Accepted, "{envelope} {headers}");
    }
    // The envelope alone counts too (From: a stranger).
    let t = run(
        Settings::default(),
        &spec(
            "alice@example.org",
            "stranger@example.com",
            &["team@lists.example.org"],
            "",
        ),
    )
    .await;
    assert_eq!(t.outcome, Outcome::Accepted);
}

#[tokio::test]
async fn a_non_members_post_is_refused_at_end_of_data_with_a_clear_reply() {
    let t = run(
        Settings::default(),
        &spec(
            "stranger@example.com",
            "stranger@example.com",
            &["team@lists.example.org"],
            "",
        ),
    )
    .await;
    assert_eq!(rejected_at(&t, Step::EndOfMessage), REFUSAL);
    // The extension form is the same list.
    let t = run(
        Settings::default(),
        &spec(
            "stranger@example.com",
            "stranger@example.com",
            &["Team+x@Lists.Example.org"],
            "",
        ),
    )
    .await;
    assert_eq!(rejected_at(&t, Step::EndOfMessage), REFUSAL);
}

#[tokio::test]
async fn a_lists_own_reject_text_is_used_with_percent_intact() {
    let t = run(
        Settings::default(),
        &spec(
            "stranger@example.com",
            "stranger@example.com",
            &["quiet@lists.example.org"],
            "",
        ),
    )
    .await;
    assert_eq!(
        rejected_at(&t, Step::EndOfMessage),
        "550 5.7.1 <quiet@lists.example.org>: members only; see https://lists.example.org/quiet (100% sure)"
    );
}

#[tokio::test]
async fn accept_patterns_approved_posts_and_hold_lists_pass() {
    let cases = [
        (
            "p@partner.example",
            "p@partner.example",
            "team@lists.example.org",
            "",
        ),
        (
            "x@example.com",
            "x@example.com",
            "team@lists.example.org",
            "Approved: secret\r\n",
        ),
        (
            "x@example.com",
            "x@example.com",
            "held@lists.example.org",
            "",
        ),
    ];
    for (envelope, from, rcpt, headers) in cases {
        let t = run(Settings::default(), &spec(envelope, from, &[rcpt], headers)).await;
        assert_eq!(t.outcome, Outcome::Accepted, "{envelope} -> {rcpt}");
    }
}

#[tokio::test]
async fn list_service_addresses_pass_from_anyone() {
    for rcpt in [
        "team-request@lists.example.org",
        "team-owner@lists.example.org",
        "team-join@lists.example.org",
        "team-bounces+alice=example.org@lists.example.org",
        "team-admin@lists.example.org",
    ] {
        let t = run(
            Settings::default(),
            &spec("stranger@example.com", "stranger@example.com", &[rcpt], ""),
        )
        .await;
        assert_eq!(t.outcome, Outcome::Accepted, "{rcpt}");
    }
}

#[tokio::test]
async fn a_banned_sender_is_refused_even_if_a_member_is_in_another_header() {
    let t = run(
        Settings::default(),
        &spec(
            "alice@example.org",
            "mallory@evil.example",
            &["team@lists.example.org"],
            "",
        ),
    )
    .await;
    assert_eq!(rejected_at(&t, Step::EndOfMessage), REFUSAL);
}

#[tokio::test]
async fn recipients_after_a_guarded_list_are_deferred_to_their_own_transaction() {
    let t = run(
        Settings::default(),
        &spec(
            "stranger@example.com",
            "stranger@example.com",
            &[
                "team@lists.example.org",
                "bob@example.org",
                "team+again@lists.example.org",
                "team-request@lists.example.org",
            ],
            "",
        ),
    )
    .await;
    let refused: Vec<(&str, bool, &str)> = t
        .refused_rcpts
        .iter()
        .map(|r| {
            (
                r.rcpt.as_str(),
                r.temporary,
                r.reply.as_deref().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            (
                "bob@example.org",
                true,
                "452 4.5.3 <bob@example.org>: Too many recipients for this transaction; send to this recipient separately"
            ),
            (
                "team-request@lists.example.org",
                true,
                "452 4.5.3 <team-request@lists.example.org>: Too many recipients for this transaction; send to this recipient separately"
            ),
        ]
    );
    assert_eq!(rejected_at(&t, Step::EndOfMessage), REFUSAL);
}

#[tokio::test]
async fn a_guarded_list_after_other_recipients_is_deferred_and_they_get_the_mail() {
    let t = run(
        Settings::default(),
        &spec(
            "stranger@example.com",
            "stranger@example.com",
            &[
                "bob@example.org",
                "team@lists.example.org",
                "held@lists.example.org",
            ],
            "",
        ),
    )
    .await;
    assert_eq!(t.refused_rcpts.len(), 1);
    assert_eq!(t.refused_rcpts[0].rcpt, "team@lists.example.org");
    assert!(t.refused_rcpts[0].temporary);
    assert_eq!(t.outcome, Outcome::Accepted);
    let delivered: Vec<String> = t
        .delivered
        .unwrap()
        .recipients
        .iter()
        .map(|r| r.address.trim_matches(['<', '>']).to_owned())
        .collect();
    assert_eq!(delivered, ["bob@example.org", "held@lists.example.org"]);
}

#[tokio::test]
async fn two_guarded_lists_are_kept_apart() {
    let t = run(
        Settings::default(),
        &spec(
            "alice@example.org",
            "alice@example.org",
            &["team@lists.example.org", "quiet@lists.example.org"],
            "",
        ),
    )
    .await;
    assert_eq!(t.refused_rcpts.len(), 1);
    assert_eq!(t.refused_rcpts[0].rcpt, "quiet@lists.example.org");
    assert_eq!(t.outcome, Outcome::Accepted);
}

#[tokio::test]
async fn message_state_does_not_leak_into_the_next_message() {
    let h = harness(LISTS);
    let mut c = in_process::client(h.backend.clone(), Settings::default()).await;
    let first = spec(
        "stranger@example.com",
        "stranger@example.com",
        &["team@lists.example.org", "bob@example.org"],
        "",
    );
    let t = run_message(&mut c, &first).await.unwrap();
    assert_eq!(rejected_at(&t, Step::EndOfMessage), REFUSAL);
    // Then the deferred recipient on its own, on the same connection.
    let second = spec(
        "stranger@example.com",
        "stranger@example.com",
        &["bob@example.org"],
        "",
    );
    let t = run_next_message(&mut c, &second).await.unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    assert!(t.refused_rcpts.is_empty());
    // And a member's post after that.
    let third = spec(
        "alice@example.org",
        "alice@example.org",
        &["team@lists.example.org"],
        "",
    );
    let t = run_next_message(&mut c, &third).await.unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
}

fn envelope_mode() -> Settings {
    Settings {
        senders: SenderMode::Envelope,
        ..Settings::default()
    }
}

/// The reviewer's bypass: Postfix delivers `team@lists.example.org.` and
/// `"team"@lists.example.org` to the list, so the milter must refuse them
/// exactly as the plain address (issue: recipient-address bypass).
#[tokio::test]
async fn spellings_postfix_routes_to_the_list_are_refused_like_the_list() {
    for rcpt in [
        "<team@lists.example.org.>",
        "<\"team\"@lists.example.org>",
        "<\"team\"@LISTS.example.org.>",
        "<\"te\\am\"+x@lists.example.org>",
        "<\"team+a b\"@lists.example.org>",
        "<@relay.example:team@lists.example.org>",
    ] {
        let t = run(
            Settings::default(),
            &spec("stranger@example.com", "stranger@example.com", &[rcpt], ""),
        )
        .await;
        assert_eq!(rejected_at(&t, Step::EndOfMessage), REFUSAL, "{rcpt}");
        let t = run(
            envelope_mode(),
            &spec("stranger@example.com", "stranger@example.com", &[rcpt], ""),
        )
        .await;
        assert_eq!(t.refused_rcpts.len(), 1, "{rcpt}: {t:?}");
        assert_eq!(t.refused_rcpts[0].reply.as_deref(), Some(REFUSAL), "{rcpt}");
    }
    // Quotes that are needed keep the address apart from the list.
    let t = run(
        Settings::default(),
        &spec(
            "stranger@example.com",
            "stranger@example.com",
            &["<\"team x\"@lists.example.org>"],
            "",
        ),
    )
    .await;
    assert_eq!(t.outcome, Outcome::Accepted);
}

/// The envelope sender is canonicalised too: a member writing their own
/// address with quotes or a trailing dot (which Postfix hands Mailman
/// canonicalised) is still the member, in both sender modes.
#[tokio::test]
async fn a_members_envelope_sender_in_another_spelling_is_the_member() {
    for from in ["<\"alice\"@example.org>", "<alice@Example.ORG.>"] {
        let t = run(
            envelope_mode(),
            &spec(
                from,
                "stranger@example.com",
                &["team@lists.example.org"],
                "",
            ),
        )
        .await;
        assert_eq!(t.outcome, Outcome::Accepted, "{from}");
        assert!(t.refused_rcpts.is_empty(), "{from}: {t:?}");
        let t = run(
            Settings::default(),
            &spec(
                from,
                "stranger@example.com",
                &["team@lists.example.org"],
                "",
            ),
        )
        .await;
        assert_eq!(t.outcome, Outcome::Accepted, "{from}");
    }
}

#[tokio::test]
async fn envelope_mode_decides_at_rcpt_for_that_recipient_only() {
    // A non-member envelope: the list is refused at RCPT, bob still gets it.
    let t = run(
        envelope_mode(),
        &spec(
            "stranger@example.com",
            "alice@example.org",
            &["team@lists.example.org", "bob@example.org"],
            "",
        ),
    )
    .await;
    assert_eq!(t.refused_rcpts.len(), 1);
    assert_eq!(t.refused_rcpts[0].rcpt, "team@lists.example.org");
    assert!(!t.refused_rcpts[0].temporary);
    assert_eq!(t.refused_rcpts[0].reply.as_deref(), Some(REFUSAL));
    assert_eq!(t.outcome, Outcome::Accepted);
    // Headers are not looked at, so the milter does not even ask for them.
    assert!(t.steps.iter().all(|s| s.outcome.step != Step::Header
        || s.outcome.dispatch != minimilter::proto::Dispatch::AwaitAnswer));
    // A member envelope passes whatever From: says.
    let t = run(
        envelope_mode(),
        &spec(
            "ALICE@example.org",
            "stranger@example.com",
            &["team@lists.example.org"],
            "",
        ),
    )
    .await;
    assert_eq!(t.outcome, Outcome::Accepted);
    assert!(t.refused_rcpts.is_empty());
}

#[tokio::test]
async fn unavailable_list_data_tempfails_or_passes_never_rejects() {
    let (backend, err) = FileBackend::open("/nonexistent/lists.toml");
    assert!(err.is_some());
    let backend = Arc::new(backend);
    let s = spec(
        "stranger@example.com",
        "stranger@example.com",
        &["team@lists.example.org"],
        "",
    );
    let mut c = in_process::client(backend.clone(), Settings::default()).await;
    let t = run_message(&mut c, &s).await.unwrap();
    match &t.outcome {
        Outcome::Tempfailed {
            at: Step::Rcpt,
            reply,
        } => assert_eq!(
            reply.as_deref(),
            Some("451 4.3.0 Mailing list data temporarily unavailable; try again later")
        ),
        other => panic!("expected tempfail at RCPT, got {other:?}"),
    }
    let pass = Settings {
        on_backend_error: OnBackendError::Accept,
        ..Settings::default()
    };
    let mut c = in_process::client(backend, pass).await;
    let t = run_message(&mut c, &s).await.unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
}

#[tokio::test]
async fn an_approval_line_at_the_top_of_the_body_passes_to_mailman() {
    let mut s = spec(
        "x@example.com",
        "x@example.com",
        &["team@lists.example.org"],
        "",
    );
    s.message = Bytes::from_static(
        b"From: x@example.com\r\nSubject: hi\r\n\r\nApproved: secret\r\n\r\nThe post.\r\n",
    );
    let t = run(Settings::default(), &s).await;
    assert_eq!(t.outcome, Outcome::Accepted);
    // A body without one is refused at end of message.
    s.message = Bytes::from_static(b"From: x@example.com\r\nSubject: hi\r\n\r\nThe post.\r\n");
    let t = run(Settings::default(), &s).await;
    assert_eq!(rejected_at(&t, Step::EndOfMessage), REFUSAL);
    // In a base64 body (as mail clients send non-ASCII text), Mailman
    // decodes the line: "Approved: secret\r\nHello list, pre-approved.\r\n".
    s.message = Bytes::from_static(
        b"From: x@example.com\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
          Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
          QXBwcm92ZWQ6IHNlY3JldA0KSGVsbG8gbGlz\r\ndCwgcHJlLWFwcHJvdmVkLg0K\r\n",
    );
    let t = run(Settings::default(), &s).await;
    assert_eq!(t.outcome, Outcome::Accepted);
    // Base64 of text without one is refused.
    s.message = Bytes::from_static(
        b"From: x@example.com\r\nSubject: hi\r\nContent-Transfer-Encoding: base64\r\n\r\n\
          SGVsbG8gbGlzdC4NCg==\r\n",
    );
    let t = run(Settings::default(), &s).await;
    assert_eq!(rejected_at(&t, Step::EndOfMessage), REFUSAL);
}

#[tokio::test]
async fn approval_claims_can_be_ignored_and_then_the_refusal_comes_after_the_headers() {
    let strict = Settings {
        pass_approved: false,
        ..Settings::default()
    };
    let t = run(
        strict,
        &spec(
            "x@example.com",
            "x@example.com",
            &["team@lists.example.org"],
            "Approved: guess\r\n",
        ),
    )
    .await;
    assert_eq!(rejected_at(&t, Step::EndOfHeaders), REFUSAL);
}

/// RFC 2047 encoded words are read as Mailman reads them (decoded, then
/// `getaddresses`): an encoded display name leaves the address after it, an
/// address inside one counts, and a decoded quote, parenthesis or second
/// address that leaves Mailman without that sender leaves the milter
/// without it too (checked against Python in
/// crates/fuzz-checks/tests/mailman_reader.rs).
#[tokio::test]
async fn encoded_display_names_yield_exactly_the_real_address() {
    let team = ["team@lists.example.org"];
    // The envelope is a stranger: only the From: header can make it a member.
    for from in [
        "=?utf-8?q?Doe=2C_John?= <alice@example.org>",
        "=?utf-8?q?Doe, John?= <alice@example.org>",
        "=?UTF-8?B?RG9lLCBKb2hu?= <Alice@Example.org>",
        // Mailman finds the member inside the encoded words too.
        "=?utf-8?q?alice@example.org?=",
        "=?utf-8?q?x, alice@example.org, ?= <stranger@example.com>",
    ] {
        let t = run(
            Settings::default(),
            &spec("stranger@example.com", from, &team, ""),
        )
        .await;
        assert_eq!(t.outcome, Outcome::Accepted, "From: {from}");
    }
    // Python's strict getaddresses (what Debian's Mailman runs on) finds no
    // member in these (an unclosed quote or comment after decoding; two
    // addresses in one item), but a Mailman on an older Python's lenient
    // reader may: the milter cannot read them safely, so it refuses nothing
    // and Mailman decides. No wrong refusal, at the cost of Mailman's own
    // rejection notice for such a post.
    for from in [
        "=?utf-8?q?\"?= <alice@example.org>",
        "=?utf-8?q?(?= <alice@example.org>",
        "=?utf-8?q?<x@y.example>?= <alice@example.org>",
        "=?utf-8?q?alice@example.org?= <stranger@example.com>",
        "=?utf-8?q?<alice@example.org>?= <stranger@example.com>",
        "=?utf-8?q?\"?= stranger@example.com, =?utf-8?q?alice@example.org?=",
    ] {
        let t = run(
            Settings::default(),
            &spec("stranger@example.com", from, &team, ""),
        )
        .await;
        assert_eq!(t.outcome, Outcome::Accepted, "From: {from}");
    }
}

/// A sender header the milter cannot read as Mailman does may name a member
/// for Mailman (its reader decodes more charsets and forgives more shapes):
/// the milter then refuses nothing and Mailman decides. A header it reads
/// still refuses a non-member.
#[tokio::test]
async fn an_unreadable_sender_header_leaves_the_post_to_mailman() {
    for (header, value) in [
        ("From", "alice@example.org (Smith, John)"),
        ("From", "=?shift_jis?b?gqA=?= <alice@example.org>"),
        ("Reply-To", "alice@example.org,"),
        ("Sender", "alice@example.org <bob@example.org>"),
    ] {
        let extra = if header == "From" {
            String::new()
        } else {
            format!("{header}: {value}\r\n")
        };
        let from = if header == "From" {
            value
        } else {
            "stranger@example.com"
        };
        let t = run(
            Settings::default(),
            &spec(
                "stranger@example.com",
                from,
                &["team@lists.example.org"],
                &extra,
            ),
        )
        .await;
        assert_eq!(t.outcome, Outcome::Accepted, "{header}: {value}");
    }
    let t = run(
        Settings::default(),
        &spec(
            "stranger@example.com",
            "\"Doe, John\" <stranger@example.com>",
            &["team@lists.example.org"],
            "",
        ),
    )
    .await;
    assert_eq!(rejected_at(&t, Step::EndOfMessage), REFUSAL);
}

/// Mailman drops from a post's senders every address its validator refuses
/// (`mailman/email/validate.py`: here a `_` in the domain, a `|` in the
/// local part, a domain literal) before any rule sees it: such an address
/// is never banned nor a non-member there, so the member or accepted sender
/// decides. (`tests/mailman3_matrix.rs` checks this against a real
/// Mailman.)
#[tokio::test]
async fn addresses_mailman_drops_neither_ban_nor_refuse() {
    for (envelope, from, headers) in [
        (
            "alice@example.org",
            "alice@example.org",
            "Reply-To: x@mail_relay.evil.example\r\n",
        ),
        ("alice@example.org", "x@mail_relay.evil.example", ""),
        (
            "boss@partner.example",
            "a|b@evil.example",
            "Sender: c@[192.0.2.1]\r\n",
        ),
    ] {
        let t = run(
            Settings::default(),
            &spec(envelope, from, &["team@lists.example.org"], headers),
        )
        .await;
        assert_eq!(t.outcome, Outcome::Accepted, "{envelope} {from} {headers}");
    }
    // The same addresses, valid for Mailman, are banned.
    let t = run(
        Settings::default(),
        &spec(
            "alice@example.org",
            "alice@example.org",
            &["team@lists.example.org"],
            "Reply-To: a-b@evil.example\r\n",
        ),
    )
    .await;
    assert_eq!(rejected_at(&t, Step::EndOfMessage), REFUSAL);
    // Nothing but dropped addresses: Mailman's `no-senders` discards.
    let t = run(
        Settings::default(),
        &spec(
            "x@[192.0.2.1]",
            "x@mail_relay.example.com",
            &["team@lists.example.org"],
            "",
        ),
    )
    .await;
    assert_eq!(rejected_at(&t, Step::EndOfMessage), REFUSAL);
}

/// An envelope sender or a header address without a domain, or with a
/// one-label domain, is completed by Postfix (`@$myorigin`,
/// `append_dot_mydomain`) before Mailman reads it, and may then be a
/// member's: the milter refuses nothing for such a post.
#[tokio::test]
async fn incomplete_addresses_are_left_to_mailman() {
    for (envelope, from) in [
        ("alice", "stranger@example.com"),
        ("alice@host", "stranger@example.com"),
        ("stranger@example.com", "alice"),
        ("stranger@example.com", "Alice <alice@host>"),
        ("stranger@example.com", "Alice Smith"),
    ] {
        for mode in [SenderMode::Mailman, SenderMode::Envelope] {
            if mode == SenderMode::Envelope && envelope.starts_with("stranger") {
                continue;
            }
            let settings = Settings {
                senders: mode,
                ..Settings::default()
            };
            let t = run(
                settings,
                &spec(envelope, from, &["team@lists.example.org"], ""),
            )
            .await;
            assert_eq!(t.outcome, Outcome::Accepted, "{envelope} {from} {mode:?}");
        }
    }
    // A full address is still refused.
    let t = run(
        Settings::default(),
        &spec(
            "stranger@example.com",
            "stranger@example.com",
            &["team@lists.example.org"],
            "",
        ),
    )
    .await;
    assert_eq!(rejected_at(&t, Step::EndOfMessage), REFUSAL);
}
