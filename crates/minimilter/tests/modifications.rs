//! Modification requests are checked when made, with a typed error, and a
//! refused one is never queued: the checks of `Modifications` (no socket
//! needed, `Modifications::with_actions`), and what the runtime does when a
//! filter returns such an error.

use minimilter::proto::{ModifyError, Response};
use minimilter::{
    Actions, ClientConfig, Ctx, MessageSpec, Milter, MilterClient, Modifications, Outcome,
    Requirements, Server, ServerConfig, Shutdown, Step, StepResult, Verdict, run_message,
};

fn all() -> Modifications {
    Modifications::with_actions(Actions::V2 | Actions::CHANGE_FROM | Actions::ADD_RCPT_PAR)
}

#[test]
fn header_names_must_be_field_names() {
    let mut m = all();
    for bad in ["", "X Bad", "X:Bad", "X-Tab\t", "X-Nl\n"] {
        assert_eq!(
            m.add_header(bad, "v"),
            Err(ModifyError::BadHeaderName),
            "{bad:?}"
        );
        assert_eq!(
            m.change_header(bad, 1, "v"),
            Err(ModifyError::BadHeaderName)
        );
        assert_eq!(m.delete_header(bad, 1), Err(ModifyError::BadHeaderName));
    }
    assert!(m.requests().is_empty());
}

#[test]
fn header_values_break_lines_with_lf_alone() {
    let mut m = all();
    assert!(matches!(
        m.add_header("X-A", "a\r\n b"),
        Err(ModifyError::BadHeaderValue(_))
    ));
    assert!(matches!(
        m.change_header("X-A", 1, "bare\rcr"),
        Err(ModifyError::BadHeaderValue(_))
    ));
    assert_eq!(m.add_header("X-A", "nul\0"), Err(ModifyError::Nul));
    assert!(m.requests().is_empty());
    // Folds (a line without leading whitespace is indented by the MTA),
    // an empty value, UTF-8: fine.
    m.add_header("X-Folded", "one\n two\n\tthree\nfour")
        .unwrap();
    m.add_header("X-Empty", "").unwrap();
    m.add_header("X-Utf8", "grüße").unwrap();
    assert_eq!(m.requests().len(), 3);
    let e = m.add_header("X-A", "a\r\n b").unwrap_err().to_string();
    assert!(e.contains("\\n alone"), "{e}");
}

#[test]
fn addresses_must_not_be_empty() {
    let mut m = all();
    assert_eq!(m.change_sender("", None), Err(ModifyError::EmptyAddress));
    assert_eq!(m.add_recipient(" "), Err(ModifyError::EmptyAddress));
    assert_eq!(
        m.add_recipient_with_args("", "NOTIFY=NEVER"),
        Err(ModifyError::EmptyAddress)
    );
    assert_eq!(m.delete_recipient(""), Err(ModifyError::EmptyAddress));
    m.change_sender("<>", None).unwrap();
    assert_eq!(m.requests().len(), 1);
}

#[test]
fn a_request_over_the_packet_size_is_refused_when_made() {
    let mut m = all();
    let e = m.add_header("X-Big", &"a".repeat(70_000)).unwrap_err();
    assert!(
        matches!(e, ModifyError::TooLarge { max: 65535, .. }),
        "{e:?}"
    );
    assert!(m.requests().is_empty());
    // A replacement body is chunked: no limit.
    m.replace_body(vec![b'a'; 200_000].into()).unwrap();
}

#[test]
fn actions_not_granted_are_refused_and_the_error_says_where_to_declare_them() {
    let mut m = Modifications::with_actions(Actions::ADD_HEADERS);
    let e = m.change_sender("<a@example.org>", None).unwrap_err();
    assert_eq!(e, ModifyError::NotNegotiated(Actions::CHANGE_FROM));
    assert!(e.to_string().contains("Requirements::actions"), "{e}");
    assert!(m.quarantine("why").is_err());
    assert!(m.requests().is_empty());
}

/// Asks for a good header, then a bad one; either propagates the error or
/// ignores it.
struct Partial {
    propagate: bool,
}

impl Milter for Partial {
    type Connection = ();
    type Message = ();

    fn requirements(&self) -> Requirements {
        Requirements {
            actions: Actions::ADD_HEADERS,
            ..Requirements::default()
        }
    }

    async fn end_of_message(&self, _cx: Ctx<'_, Self>, mods: &mut Modifications) -> StepResult {
        mods.add_header("X-Good", "yes")?;
        let bad = mods.add_header("X-Bad", "a\r\nb");
        if self.propagate {
            bad?;
        }
        Ok(Verdict::Continue)
    }
}

async fn play(milter: Partial) -> minimilter::Transcript {
    let server = Server::new(milter, ServerConfig::default());
    let (mta, milter_end) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move { server.serve_stream(milter_end, Shutdown::new()).await });
    let mut client = MilterClient::negotiate(Box::new(mta), ClientConfig::default())
        .await
        .unwrap();
    run_message(&mut client, &MessageSpec::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_propagated_error_sends_no_modification_and_the_fail_safe_reply() {
    let t = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        play(Partial { propagate: true }),
    )
    .await
    .unwrap();
    assert!(
        matches!(
            t.outcome,
            Outcome::Tempfailed {
                at: Step::EndOfMessage,
                ..
            }
        ),
        "{:?}",
        t.outcome
    );
    assert!(t.modifications.is_empty(), "{:?}", t.modifications);
}

#[tokio::test]
async fn an_ignored_error_keeps_the_good_requests() {
    let t = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        play(Partial { propagate: false }),
    )
    .await
    .unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    assert_eq!(t.modifications.len(), 1);
    assert!(
        matches!(&t.modifications[0], Response::AddHeader { name, .. } if &name[..] == b"X-Good")
    );
}
