//! Input the milter protocol cannot carry (a NUL byte inside one of its
//! NUL-terminated strings) is refused with a typed error naming what is
//! wrong, before anything is written, except in header lines, which are cut
//! at the NUL as Postfix does; odd but carriable input goes through.
//! Nothing here may panic.

use bytes::Bytes;
use milter_proto::Offer;
use minimilter::interop::ActionMilter;
use minimilter::{
    ClientConfig, ClientError, MessageSpec, MilterClient, Outcome, Server, ServerConfig, Shutdown,
    Transcript, run_message,
};

/// A client connected over a pipe to an in-process server.
async fn client() -> MilterClient {
    let (a, z) = tokio::io::duplex(1 << 20);
    let server = Server::new(ActionMilter, ServerConfig::default());
    tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    let cfg = ClientConfig {
        offer: Offer::postfix(),
        ..ClientConfig::default()
    };
    MilterClient::negotiate(Box::new(a), cfg).await.unwrap()
}

async fn play(spec: MessageSpec) -> Result<Transcript, ClientError> {
    let mut c = client().await;
    run_message(&mut c, &spec).await.map_err(|i| i.error)
}

fn with_message(m: &[u8]) -> MessageSpec {
    MessageSpec {
        message: Bytes::copy_from_slice(m),
        ..MessageSpec::default()
    }
}

/// The problem text of an `Unsendable` error, or a panic naming what came.
fn unsendable<T>(r: Result<T, ClientError>) -> String {
    match r {
        Err(e @ ClientError::Unsendable { .. }) => {
            assert!(e.is_input_error());
            assert!(!e.is_protocol_error());
            e.to_string()
        }
        Err(e) => panic!("expected Unsendable, got {e:?}"),
        Ok(_) => panic!("expected Unsendable, got a result"),
    }
}

#[tokio::test]
async fn a_nul_cuts_a_header_line_short_as_postfix_does() {
    // What Postfix 3.7 does (checked by hand against a recording milter):
    // each header line is cut at its NUL, folded lines each on their own,
    // for the milter and in delivery alike.
    let m = b"Subject: a\0b\n\tcont\nX-Action: add-header X-Added one\0two\n\nbo\0dy\n";
    let t = play(with_message(m)).await.unwrap();
    assert_eq!(t.outcome, Outcome::Accepted);
    let delivered = t.delivered.as_ref().unwrap();
    let value = |name: &str| {
        delivered
            .headers
            .iter()
            .find(|h| h.field_name() == name)
            .map(|h| h.value.clone())
    };
    assert_eq!(value("Subject").as_deref(), Some(" a\r\n\tcont"));
    // The milter saw the cut value: it added the header with "one" only.
    assert_eq!(value("X-Added").as_deref(), Some(" one"));
    assert_eq!(t.warnings.len(), 2, "{:?}", t.warnings);
    assert!(t.warnings[0].contains("\"Subject\""), "{:?}", t.warnings);
    assert!(t.warnings[1].contains("\"X-Action\""), "{:?}", t.warnings);
    // The body keeps its NUL byte.
    assert_eq!(delivered.body, b"bo\0dy\n");
}

#[tokio::test]
async fn a_nul_in_a_header_value_given_to_step_names_the_header() {
    let mut c = client().await;
    let header = milter_proto::Command::Header {
        name: Bytes::from_static(b"Subject"),
        value: Bytes::from_static(b"\0nul"),
    };
    let e = unsendable(c.step(&[], header).await);
    assert!(e.contains("\"Subject\""), "{e}");
    assert!(e.contains("NUL"), "{e}");
}

#[tokio::test]
async fn a_nul_in_a_header_name_is_refused_by_step() {
    // The message parser never makes such a name (the line is not a header
    // field), but the step API takes any command.
    let mut c = client().await;
    let header = milter_proto::Command::Header {
        name: Bytes::from_static(b"Sub\0ject"),
        value: Bytes::from_static(b"x"),
    };
    let e = unsendable(c.step(&[], header).await);
    assert!(e.contains("header name"), "{e}");
}

#[tokio::test]
async fn a_nul_in_the_session_description_is_refused() {
    let base = MessageSpec::default;
    let cases: Vec<(MessageSpec, &str)> = vec![
        (
            MessageSpec {
                client_name: "a\0b".into(),
                ..base()
            },
            "client host name",
        ),
        (
            MessageSpec {
                helo: "h\0".into(),
                ..base()
            },
            "HELO name",
        ),
        (
            MessageSpec {
                from: "a\0@example.com".into(),
                ..base()
            },
            "address",
        ),
        (
            MessageSpec {
                rcpts: vec!["r\0@example.org".into()],
                ..base()
            },
            "address",
        ),
        (
            MessageSpec {
                macros: vec![("{auth_authen}".into(), "al\0ice".into())],
                ..base()
            },
            "macro \"{auth_authen}\"",
        ),
        (
            MessageSpec {
                queue_id: "Q\0".into(),
                ..base()
            },
            "macro \"i\"",
        ),
    ];
    for (spec, want) in cases {
        let e = unsendable(play(spec).await);
        assert!(e.contains(want), "{e} should mention {want}");
    }
}

#[tokio::test]
async fn odd_but_carriable_headers_go_through() {
    let messages: &[&[u8]] = &[
        b": empty name\n\nbody\n",
        b"Bad Name: space in the name\n\nbody\n",
        b"Na:me: colon in the value\n\nbody\n",
        b"NoColonAtAll\n\nbody\n",
        b" leading continuation\nSubject: x\n\nbody\n",
        b"X-\xff\xfe: not UTF-8 \xc3\x28\n\nbody\n",
        b"Subject: bare\rCR\n\nbody\n",
        b"Subject: only headers, no blank line\n",
        b"",
        b"\r\n\r\n",
        b"\n",
        b"Subject: body has a NUL\n\nbo\0dy\n",
        b"Subject: folded\n\tover\n  lines\n\nbody\n",
        b"Sub\0ject: NUL in what would be the name\n\nbody\n",
    ];
    for m in messages {
        match play(with_message(m)).await {
            Ok(t) => assert_eq!(t.outcome, Outcome::Accepted, "{m:?}"),
            Err(e) => panic!("{m:?}: {e:?}"),
        }
    }
}

#[tokio::test]
async fn a_non_step_command_is_an_error_not_a_panic() {
    let mut c = client().await;
    match c.step(&[], milter_proto::Command::Abort).await {
        Err(e @ ClientError::Unusable(_)) => assert!(e.is_input_error()),
        other => panic!("expected Unusable, got {other:?}"),
    }
}
