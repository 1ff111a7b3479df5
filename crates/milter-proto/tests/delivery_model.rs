//! The message model applies modifications the way Postfix delivers them.

use bytes::Bytes;
use milter_proto::Response;
use milter_proto::message_model::{HeaderField, MessageModel};

const MSG: &[u8] = b"From: a@example.com\r\nTo: b@example.org\r\nX-A: one\r\nSubject: hi\r\n\tthere\r\nX-A: two\r\n\r\nBody line\r\n";

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn model() -> MessageModel {
    MessageModel::parse("a@example.com", &["b@example.org", "c@example.org"], MSG)
}

fn header_lines(m: &MessageModel) -> Vec<String> {
    m.headers
        .iter()
        .map(|h| format!("{}:{}", h.name, h.value))
        .collect()
}

#[test]
fn parses_and_renders_byte_exact() {
    let m = model();
    assert_eq!(m.headers.len(), 5);
    assert_eq!(m.headers[3].value, " hi\r\n\tthere");
    assert_eq!(m.body, b"Body line\r\n");
    assert_eq!(m.render(), MSG);
}

#[test]
fn lf_input_renders_as_crlf() {
    let m = MessageModel::parse("", &[], b"Subject: x\n\nline\nline2\n");
    assert_eq!(m.render(), b"Subject: x\r\n\r\nline\r\nline2\r\n");
    assert_eq!(m.milter_body(), b"line\r\nline2\r\n");
}

#[test]
fn a_line_that_is_not_a_header_starts_the_body() {
    let m = MessageModel::parse("", &[], b"Subject: x\r\nnot a header\r\nmore\r\n");
    assert_eq!(m.headers.len(), 1);
    assert_eq!(m.body, b"not a header\r\nmore\r\n");
    let m = MessageModel::parse("", &[], b"");
    assert!(m.headers.is_empty() && m.body.is_empty());
    let m = MessageModel::parse("", &[], b"Subject: no body");
    assert_eq!(m.headers.len(), 1);
    assert!(m.body.is_empty());
}

#[test]
fn garbage_never_panics() {
    for raw in [
        &b"\xff\xfe:\r\n\r\n\x00"[..],
        b"\r",
        b"\n\n\n",
        b": x\r\n",
        b" lead\r\n",
        b"A:\r\n \r\n",
    ] {
        let m = MessageModel::parse("", &[], raw);
        let _ = m.render();
    }
}

#[test]
fn milter_header_strips_one_space_unless_leading_space() {
    let h = HeaderField {
        name: "Subject".into(),
        value: "  two spaces\r\n\tfolded".into(),
    };
    assert_eq!(
        MessageModel::milter_header(&h, false),
        (b"Subject".to_vec(), b" two spaces\n\tfolded".to_vec())
    );
    assert_eq!(
        MessageModel::milter_header(&h, true).1,
        b"  two spaces\n\tfolded".to_vec()
    );
    let tab = HeaderField {
        name: "X".into(),
        value: "\tv".into(),
    };
    assert_eq!(MessageModel::milter_header(&tab, false).1, b"\tv".to_vec());
}

#[test]
fn change_and_delete_count_per_name_from_one() {
    let mut m = model();
    let w = m.apply(
        &[
            Response::ChangeHeader {
                index: 2,
                name: b("x-a"),
                value: b("second"),
            },
            Response::ChangeHeader {
                index: 0,
                name: b("X-A"),
                value: b("first"),
            },
            Response::ChangeHeader {
                index: 1,
                name: b("X-Missing"),
                value: b("appended"),
            },
            Response::ChangeHeader {
                index: 3,
                name: b("X-A"),
                value: b(""),
            },
        ],
        false,
    );
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        header_lines(&m),
        [
            "From: a@example.com",
            "To: b@example.org",
            "X-A: first",
            "Subject: hi\r\n\tthere",
            "x-a: second",
            "X-Missing: appended"
        ]
    );
    // Deleting shifts: index 1 twice removes both.
    let del = Response::ChangeHeader {
        index: 1,
        name: b("X-A"),
        value: b(""),
    };
    m.apply(&[del.clone(), del], false);
    assert!(!m.headers.iter().any(|h| h.name.eq_ignore_ascii_case("X-A")));
}

#[test]
fn insert_and_add_positions_and_leading_space() {
    let mut m = model();
    m.apply(
        &[
            Response::InsertHeader {
                index: 0,
                name: b("X-Top"),
                value: b("t"),
            },
            Response::InsertHeader {
                index: 99,
                name: b("X-End"),
                value: b("e"),
            },
            Response::InsertHeader {
                index: 2,
                name: b("X-Second"),
                value: b("after the first of the original headers"),
            },
            Response::AddHeader {
                name: b("X-Fold"),
                value: b("a\n\tb"),
            },
        ],
        false,
    );
    let lines = header_lines(&m);
    // Index 0 would go above Postfix's own Received (so: the top); an index
    // counts the headers as delivered at that moment, Received included:
    // 2 is after Received and X-Top.
    assert_eq!(lines[0], "X-Top: t");
    assert_eq!(
        lines[1],
        "X-Second: after the first of the original headers"
    );
    assert_eq!(lines[2], "From: a@example.com");
    assert_eq!(lines[lines.len() - 2], "X-End: e");
    assert_eq!(lines[lines.len() - 1], "X-Fold: a\r\n\tb");
    let mut exact = model();
    exact.apply(
        &[Response::AddHeader {
            name: b("X-Exact"),
            value: b(" x"),
        }],
        true,
    );
    assert_eq!(header_lines(&exact).last().unwrap(), "X-Exact: x");
}

#[test]
fn envelope_changes_keep_only_what_postfix_keeps() {
    let mut m = model();
    let w = m.apply(
        &[
            Response::AddRcptPar {
                rcpt: b("<d@example.org>"),
                args: Some(b("NOTIFY=NEVER SIZE=10 ORCPT=rfc822;d@example.org")),
            },
            Response::DelRcpt(b("<c@example.org>")),
            Response::DelRcpt(b("nobody@example.org")),
            Response::ChangeFrom {
                sender: b("<bounce@example.com>"),
                args: Some(b("RET=HDRS BODY=8BITMIME")),
            },
        ],
        false,
    );
    assert_eq!(m.recipients.len(), 2);
    assert_eq!(m.recipients[1].address, "<d@example.org>");
    assert_eq!(
        m.recipients[1].args,
        ["NOTIFY=NEVER", "ORCPT=rfc822;d@example.org"]
    );
    assert_eq!(m.sender, "<bounce@example.com>");
    assert_eq!(m.sender_args, ["RET=HDRS"]);
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w.iter().any(|x| x.contains("SIZE=10")));
    assert!(w.iter().any(|x| x.contains("nobody@example.org")));
    assert!(w.iter().any(|x| x.contains("BODY=8BITMIME")));
}

#[test]
fn body_chunks_concatenate_and_quarantine_is_truncated() {
    let mut m = model();
    m.apply(
        &[
            Response::ReplaceBody(b("new\n")),
            Response::ReplaceBody(b("body\r\n")),
            Response::Quarantine(Bytes::from(vec![b'q'; 150])),
        ],
        false,
    );
    assert_eq!(m.body, b"new\nbody\r\n");
    // A last line without an end gets one, as Postfix stores lines.
    let mut cut = model();
    cut.apply(&[Response::ReplaceBody(b("no end"))], false);
    assert!(cut.render().ends_with(b"\r\n\r\nno end\r\n"));
    assert!(m.render().ends_with(b"\r\n\r\nnew\r\nbody\r\n"));
    assert_eq!(m.quarantine.as_deref().map(str::len), Some(100));
}

proptest::proptest! {
    #[test]
    fn arbitrary_messages_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        let m = MessageModel::parse("s", &["r"], &raw);
        let rendered = m.render();
        // Rendering is stable: a rendered message parses back to itself.
        let again = MessageModel::parse("s", &["r"], &rendered);
        proptest::prop_assert_eq!(again.render(), rendered);
    }
}
