//! The message model: parsing, what a milter is shown, and every modification
//! applied as Postfix applies it. Expected values marked "Postfix 3.7.11" were
//! observed with a real Postfix (a milter sending these exact modifications,
//! the delivered Maildir file compared; Postfix's own `Received:`,
//! `Message-Id:`, `Date:` and delivery headers left out).

use bytes::Bytes;
use milter_proto::Response;
use milter_proto::message_model::{HeaderField, MessageModel, Recipient};
use proptest::prelude::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn parse(raw: &[u8]) -> MessageModel {
    MessageModel::parse("sender@example.com", &["rcpt@example.org"], raw)
}

/// Each header as it is rendered, without its final CRLF.
fn header_lines(m: &MessageModel) -> Vec<String> {
    m.headers
        .iter()
        .map(|h| format!("{}:{}", h.name, h.value))
        .collect()
}

/// What a milter receives for every header, as text.
fn milter_view(m: &MessageModel, leading_space: bool) -> Vec<(String, String)> {
    m.headers
        .iter()
        .map(|h| {
            let (n, v) = MessageModel::milter_header(h, leading_space);
            (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap())
        })
        .collect()
}

fn field(name: &str, value: &str) -> HeaderField {
    HeaderField {
        name: name.into(),
        value: value.into(),
    }
}

fn add(name: &str, value: &str) -> Response {
    Response::AddHeader {
        name: b(name),
        value: b(value),
    }
}

fn insert(index: u32, name: &str, value: &str) -> Response {
    Response::InsertHeader {
        index,
        name: b(name),
        value: b(value),
    }
}

fn change(index: u32, name: &str, value: &str) -> Response {
    Response::ChangeHeader {
        index,
        name: b(name),
        value: b(value),
    }
}

const MSG: &[u8] = b"From: a@example.com\r\n\
To: b@example.org\r\n\
Subject: hello\r\n\
X-A: one\r\n\
X-A: two\r\n\
\r\n\
First line.\r\n\
\r\n\
Last line.\r\n";

// ---------------------------------------------------------------- parsing

#[test]
fn crlf_message_round_trips_byte_exact() {
    let m = parse(MSG);
    assert_eq!(m.sender, "sender@example.com");
    assert_eq!(
        m.recipients,
        [Recipient {
            address: "rcpt@example.org".into(),
            args: vec![]
        }]
    );
    assert!(m.sender_args.is_empty());
    assert_eq!(
        m.headers,
        [
            field("From", " a@example.com"),
            field("To", " b@example.org"),
            field("Subject", " hello"),
            field("X-A", " one"),
            field("X-A", " two"),
        ]
    );
    assert_eq!(m.body, b"First line.\r\n\r\nLast line.\r\n");
    assert_eq!(m.quarantine, None);
    assert_eq!(m.own_received_at, 0);
    assert_eq!(m.render(), MSG);
}

#[test]
fn lf_message_renders_with_crlf() {
    let lf = b"From: a@example.com\nSubject: hi\n\tthere\n\nline 1\nline 2\n";
    let m = parse(lf);
    assert_eq!(
        m.headers,
        [
            field("From", " a@example.com"),
            field("Subject", " hi\r\n\tthere"),
        ]
    );
    assert_eq!(m.body, b"line 1\nline 2\n");
    assert_eq!(
        m.render(),
        b"From: a@example.com\r\nSubject: hi\r\n\tthere\r\n\r\nline 1\r\nline 2\r\n"
    );
    // Mixed line ends: each line keeps its content, all end in CRLF.
    let mixed = parse(b"A: 1\r\nB: 2\n\r\nx\ny\r\n");
    assert_eq!(mixed.render(), b"A: 1\r\nB: 2\r\n\r\nx\r\ny\r\n");
}

#[test]
fn folded_headers_keep_their_breaks() {
    let raw = b"Subject: a long\r\n\tsubject\r\n  in three lines\r\nX-B: b\r\n\r\nbody\r\n";
    let m = parse(raw);
    assert_eq!(
        m.headers,
        [
            field("Subject", " a long\r\n\tsubject\r\n  in three lines"),
            field("X-B", " b"),
        ]
    );
    assert_eq!(m.render(), raw);
}

#[test]
fn header_without_space_after_colon() {
    let raw = b"X-B:nospace\r\nX-E:\r\nX-C:\ttab\r\n\r\n";
    let m = parse(raw);
    assert_eq!(
        m.headers,
        [
            field("X-B", "nospace"),
            field("X-E", ""),
            field("X-C", "\ttab")
        ]
    );
    assert!(m.body.is_empty());
    assert_eq!(m.render(), raw);
}

#[test]
fn whitespace_before_the_colon_still_makes_a_header() {
    // Postfix's is_header(): the name may be followed by spaces or tabs.
    let raw = b"Subject : s2\r\nX-Sp \t: v\r\n\r\nbody\r\n";
    let m = parse(raw);
    assert_eq!(
        m.headers,
        [field("Subject ", " s2"), field("X-Sp \t", " v")]
    );
    assert_eq!(m.headers[0].field_name(), "Subject");
    assert_eq!(m.headers[1].field_name(), "X-Sp");
    // Rendered as given, shown to the milter without the spaces (Postfix 3.7.11).
    assert_eq!(m.render(), raw);
    assert_eq!(
        milter_view(&m, false),
        [("Subject".into(), "s2".into()), ("X-Sp".into(), "v".into())]
    );
    // Change requests match the name without the spaces.
    let mut c = m.clone();
    // (Postfix 3.7.11: "Subject: changed s2", "X-Sp: changed sp".)
    assert!(
        c.apply(
            &[
                change(1, "Subject", "changed s2"),
                change(1, "X-Sp", "changed sp")
            ],
            false
        )
        .is_empty()
    );
    assert_eq!(
        header_lines(&c),
        ["Subject: changed s2", "X-Sp: changed sp"]
    );
}

#[test]
fn message_without_body() {
    for raw in [
        &b"From: a@example.com\r\nSubject: s4\r\n"[..],
        b"From: a@example.com\r\nSubject: s4",
        b"From: a@example.com\nSubject: s4\n",
        b"From: a@example.com\r\nSubject: s4\r\n\r\n",
    ] {
        let m = parse(raw);
        assert_eq!(
            m.headers,
            [field("From", " a@example.com"), field("Subject", " s4")],
            "{raw:?}"
        );
        assert!(m.body.is_empty(), "{raw:?}");
        assert!(m.milter_body().is_empty(), "{raw:?}");
        // Postfix 3.7.11 delivers the headers and a blank line.
        assert_eq!(
            m.render(),
            b"From: a@example.com\r\nSubject: s4\r\n\r\n",
            "{raw:?}"
        );
    }
}

#[test]
fn a_line_that_is_not_a_header_starts_the_body() {
    // Postfix 3.7.11: the milter gets both lines as body, and the delivered
    // message has a blank line before them.
    let m = parse(b"From: a@client.example\r\nSubject: s3\r\nnot a header line\r\nmore\r\n");
    assert_eq!(m.headers.len(), 2);
    assert_eq!(m.body, b"not a header line\r\nmore\r\n");
    assert_eq!(m.milter_body(), b"not a header line\r\nmore\r\n");
    assert_eq!(
        m.render(),
        b"From: a@client.example\r\nSubject: s3\r\n\r\nnot a header line\r\nmore\r\n"
    );
    // What else is not a header: a space inside the name, an empty name,
    // non-ASCII or control characters in the name, no colon at all.
    for (first, rest) in [
        ("A B: c", "\r\n"),
        (": x", "\r\n"),
        ("N\u{e9}: x", "\r\n"),
        ("N\u{1}: x", "\r\n"),
        ("no colon", "\r\n"),
        ("From someone@example.com Mon Jan  1", "\r\n"),
    ] {
        let raw = format!("Subject: s\r\n{first}{rest}tail\r\n");
        let m = parse(raw.as_bytes());
        assert_eq!(m.headers, [field("Subject", " s")], "{first:?}");
        assert_eq!(
            m.body,
            format!("{first}{rest}tail\r\n").as_bytes(),
            "{first:?}"
        );
    }
}

#[test]
fn a_message_starting_with_whitespace_or_a_blank_line_is_all_body() {
    let m = parse(b" folded?\r\nA: b\r\n");
    assert!(m.headers.is_empty());
    assert_eq!(m.body, b" folded?\r\nA: b\r\n");
    assert_eq!(m.render(), b"\r\n folded?\r\nA: b\r\n");

    let m = parse(b"\r\nA: b\r\n");
    assert!(m.headers.is_empty());
    assert_eq!(m.body, b"A: b\r\n");
    assert_eq!(m.render(), b"\r\nA: b\r\n");

    let m = parse(b"");
    assert!(m.headers.is_empty() && m.body.is_empty());
    assert_eq!(m.render(), b"\r\n");
}

#[test]
fn non_utf8_header_text_is_replaced_not_rejected() {
    let m = parse(b"X-Bin: \xff\xfe ok\r\n\r\n\xff body\r\n");
    assert_eq!(m.headers, [field("X-Bin", " \u{fffd}\u{fffd} ok")]);
    // The body stays bytes.
    assert_eq!(m.body, b"\xff body\r\n");
    assert_eq!(m.milter_body(), b"\xff body\r\n");
}

// ------------------------------------------------- what the milter is shown

#[test]
fn milter_header_strips_one_space_unless_leading_space() {
    let cases = [
        // (stored value, without HDR_LEADSPC, with HDR_LEADSPC)
        (" x", "x", " x"),
        ("  two", " two", "  two"),
        ("\ttab", "\ttab", "\ttab"),
        (" \ttab", "\ttab", " \ttab"),
        ("nospace", "nospace", "nospace"),
        ("", "", ""),
        (" ", "", " "),
        (" a\r\n\tb\r\n  c", "a\n\tb\n  c", " a\n\tb\n  c"),
    ];
    for (stored, plain, exact) in cases {
        let h = field("X-H", stored);
        assert_eq!(
            MessageModel::milter_header(&h, false),
            (b"X-H".to_vec(), plain.as_bytes().to_vec()),
            "{stored:?}"
        );
        assert_eq!(
            MessageModel::milter_header(&h, true),
            (b"X-H".to_vec(), exact.as_bytes().to_vec()),
            "{stored:?}"
        );
    }
}

#[test]
fn the_milter_sees_what_postfix_shows() {
    // Postfix 3.7.11, without and with HDR_LEADSPC.
    let raw = b"From: a@client.example\r\nSubject : s2\r\nX-B:nospace\r\nX-C:\ttab\r\n\
X-D:  two\r\nX-F: a\r\n\tb\r\n  c\r\nX-Sp \t: v\r\nX-E:\r\n\r\nbody\r\nlast line no end";
    let m = parse(raw);
    let plain: Vec<(String, String)> = [
        ("From", "a@client.example"),
        ("Subject", "s2"),
        ("X-B", "nospace"),
        ("X-C", "\ttab"),
        ("X-D", " two"),
        ("X-F", "a\n\tb\n  c"),
        ("X-Sp", "v"),
        ("X-E", ""),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    assert_eq!(milter_view(&m, false), plain);
    let exact: Vec<(String, String)> = [
        ("From", " a@client.example"),
        ("Subject", " s2"),
        ("X-B", "nospace"),
        ("X-C", "\ttab"),
        ("X-D", "  two"),
        ("X-F", " a\n\tb\n  c"),
        ("X-Sp", " v"),
        ("X-E", ""),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    assert_eq!(milter_view(&m, true), exact);
    // The last line gets its CRLF, as Postfix stores lines.
    assert_eq!(m.milter_body(), b"body\r\nlast line no end\r\n");
}

#[test]
fn milter_body_has_crlf_line_ends() {
    let body = |b: &[u8]| {
        let mut raw = b"A: b\r\n\r\n".to_vec();
        raw.extend_from_slice(b);
        parse(&raw).milter_body()
    };
    assert_eq!(body(b"x\r\ny\r\n"), b"x\r\ny\r\n");
    assert_eq!(body(b"x\ny\n"), b"x\r\ny\r\n");
    assert_eq!(body(b"x\ny"), b"x\r\ny\r\n");
    assert_eq!(body(b"\n\n"), b"\r\n\r\n");
    // A CR that does not end a line is data; one CR before LF is the line end.
    assert_eq!(body(b"a\rb\r\n"), b"a\rb\r\n");
    assert_eq!(body(b"a\r\r\n"), b"a\r\r\n");
    assert_eq!(body(b""), b"");
}

// --------------------------------------------------------------- headers

#[test]
fn add_header_appends_with_one_space_unless_leading_space() {
    let mut m = parse(MSG);
    assert!(
        m.apply(&[add("X-New", "v"), add("X-Empty", "")], false)
            .is_empty()
    );
    assert_eq!(
        header_lines(&m)[5..],
        ["X-New: v".to_string(), "X-Empty: ".to_string()]
    );

    // HDR_LEADSPC: the value is exact (Postfix 3.7.11: "X-Add: x", "X-Add2:y").
    let mut m = parse(MSG);
    assert!(
        m.apply(&[add("X-Add", " x"), add("X-Add2", "y")], true)
            .is_empty()
    );
    assert_eq!(
        header_lines(&m)[5..],
        ["X-Add: x".to_string(), "X-Add2:y".to_string()]
    );
    // Without it, the same " x" gets a second space.
    let mut m = parse(MSG);
    m.apply(&[add("X-Add", " x")], false);
    assert_eq!(header_lines(&m)[5], "X-Add:  x");
}

#[test]
fn values_with_line_breaks_stay_folded() {
    // Postfix 3.7.11: every line after a break starts with whitespace (a tab
    // is put where there is none), and a CR before the LF is kept.
    let mut m = parse(b"A: b\r\n\r\n");
    m.apply(
        &[
            add("X-Fold", "a\n\tb"),
            add("X-Multi", "a\nb\n\tc"),
            add("X-Crlf", "a\r\n\tb"),
            add("X-Trail", "v\n"),
        ],
        false,
    );
    assert_eq!(
        header_lines(&m),
        [
            "A: b",
            "X-Fold: a\r\n\tb",
            "X-Multi: a\r\n\tb\r\n\tc",
            "X-Crlf: a\r\r\n\tb",
            "X-Trail: v\r\n\t",
        ]
    );
    // The rendered message parses back to the same headers.
    let again = parse(&m.render());
    assert_eq!(again.headers, m.headers);
    // The milter after this one would see LF folds.
    assert_eq!(
        MessageModel::milter_header(&m.headers[2], false).1,
        b"a\n\tb\n\tc"
    );
}

#[test]
fn insert_at_zero_goes_on_top_and_past_the_end_appends() {
    let mut m = parse(MSG);
    assert!(
        m.apply(&[insert(0, "X-Top", "t"), insert(99, "X-End", "e")], false)
            .is_empty()
    );
    assert_eq!(
        header_lines(&m),
        [
            "X-Top: t",
            "From: a@example.com",
            "To: b@example.org",
            "Subject: hello",
            "X-A: one",
            "X-A: two",
            "X-End: e",
        ]
    );
    // X-Top went above Postfix's own Received.
    assert_eq!(m.own_received_at, 1);

    // Index 1 is right below Postfix's Received: the top of the message's
    // own headers; N goes before the message's N-th header.
    let mut m = parse(MSG);
    m.apply(&[insert(1, "X-One", "1")], false);
    assert_eq!(header_lines(&m)[0], "X-One: 1");
    assert_eq!(m.own_received_at, 0);
    let mut m = parse(MSG);
    m.apply(&[insert(3, "X-Three", "3")], false);
    assert_eq!(
        header_lines(&m)[..4],
        [
            "From: a@example.com",
            "To: b@example.org",
            "X-Three: 3",
            "Subject: hello"
        ]
    );
    // The last position of the delivered list is still an insert; one more
    // appends.
    let mut m = parse(MSG);
    m.apply(
        &[insert(5, "X-Five", "5"), insert(7, "X-Seven", "7")],
        false,
    );
    assert_eq!(
        header_lines(&m)[4..],
        ["X-Five: 5", "X-A: two", "X-Seven: 7"]
    );
    // Into a message without headers.
    let mut m = parse(b"\r\nbody\r\n");
    m.apply(&[insert(5, "X-Only", "o")], false);
    assert_eq!(header_lines(&m), ["X-Only: o"]);
}

#[test]
fn insert_indexes_count_postfix_own_received() {
    // Postfix 3.7.11 delivered: X-Top, X-One, Received (Postfix's), X-Three,
    // From, To, Subject, X-A: changed, X-A: two.
    let mut m = parse(
        b"From: a@client.example\r\nTo: s1@example.org\r\nSubject: s1\r\nX-A: one\r\nX-A: two\r\n\r\nbody\r\n",
    );
    let w = m.apply(
        &[
            change(1, "x-a", "changed"),
            insert(0, "X-Top", "t"),
            insert(1, "X-One", "o"),
            change(1, "X-Top", "ct"),
            insert(3, "X-Three", "3"),
        ],
        false,
    );
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        header_lines(&m),
        [
            "X-Top: ct",
            "X-One: o",
            "X-Three: 3",
            "From: a@client.example",
            "To: s1@example.org",
            "Subject: s1",
            "x-a: changed",
            "X-A: two",
        ]
    );
    assert_eq!(m.own_received_at, 2);

    // Deleting a header above it moves it back up (Postfix 3.7.11: X-One
    // lands below Received).
    let mut m = parse(b"From: a\r\nSubject: s14\r\n\r\n");
    m.apply(
        &[
            insert(0, "X-Top", "t"),
            change(1, "X-Top", ""),
            insert(1, "X-One", "o"),
        ],
        false,
    );
    assert_eq!(header_lines(&m), ["X-One: o", "From: a", "Subject: s14"]);
    assert_eq!(m.own_received_at, 0);
}

#[test]
fn insert_with_leading_space() {
    // Postfix 3.7.11 with HDR_LEADSPC: "X-Ins:  w" below its Received.
    let mut m = parse(MSG);
    m.apply(&[insert(1, "X-Ins", "  w")], true);
    assert_eq!(header_lines(&m)[0], "X-Ins:  w");
    let mut m = parse(MSG);
    m.apply(&[insert(1, "X-Ins", "w")], false);
    assert_eq!(header_lines(&m)[0], "X-Ins: w");
}

#[test]
fn change_index_counts_per_name_from_one() {
    let original = header_lines(&parse(MSG));
    let with = |mods: &[Response]| {
        let mut m = parse(MSG);
        let w = m.apply(mods, false);
        assert!(w.is_empty(), "{w:?}");
        header_lines(&m)
    };
    // Index 1 and index 0 (treated as 1) change the first X-A.
    for index in [0, 1] {
        let h = with(&[change(index, "X-A", "new")]);
        assert_eq!(h[3], "X-A: new", "index {index}");
        assert_eq!(h[4], "X-A: two", "index {index}");
    }
    // Index 2 is the second one; the name matches regardless of case.
    let h = with(&[change(2, "X-A", "second")]);
    assert_eq!(h[3..], ["X-A: one".to_string(), "X-A: second".to_string()]);
    // Postfix 3.7.11 writes the name as the milter sent it.
    let h = with(&[change(2, "x-a", "second")]);
    assert_eq!(h[4], "x-a: second");
    // No such header (or not that many): a change appends, under the name sent.
    let h = with(&[change(1, "X-Missing", "appended")]);
    assert_eq!(h[..5], original[..]);
    assert_eq!(h[5], "X-Missing: appended");
    let h = with(&[change(3, "X-A", "third")]);
    assert_eq!(h[..5], original[..]);
    assert_eq!(h[5], "X-A: third");
    // A delete of a missing header does nothing, quietly.
    assert_eq!(with(&[change(1, "X-Missing", "")]), original);
    assert_eq!(with(&[change(3, "X-A", "")]), original);
    // A delete of an existing one removes it.
    assert_eq!(
        with(&[change(2, "X-A", "")]),
        [
            "From: a@example.com",
            "To: b@example.org",
            "Subject: hello",
            "X-A: one"
        ]
    );
}

#[test]
fn deleting_shifts_later_indexes() {
    // Postfix 3.7.11: delete X-A 5 (nothing), then X-A 1 twice removes the
    // first two; index 0 Received changes the message's own Received.
    let mut m = parse(
        b"Received: from somewhere\r\nFrom: a@client.example\r\nTo: s11@example.org\r\n\
Subject: s11\r\nX-A: one\r\nX-A: two\r\nX-A: three\r\n\r\nbody\r\n",
    );
    let w = m.apply(
        &[
            change(0, "Received", "changed received"),
            change(5, "X-A", ""),
            change(1, "X-A", ""),
            change(1, "X-A", ""),
            insert(99, "X-End", "e"),
            change(1, "X-New", "folded\n\tline"),
        ],
        false,
    );
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        header_lines(&m),
        [
            "Received: changed received",
            "From: a@client.example",
            "To: s11@example.org",
            "Subject: s11",
            "X-A: three",
            "X-End: e",
            "X-New: folded\r\n\tline",
        ]
    );
    assert_eq!(
        m.render(),
        b"Received: changed received\r\nFrom: a@client.example\r\nTo: s11@example.org\r\n\
Subject: s11\r\nX-A: three\r\nX-End: e\r\nX-New: folded\r\n\tline\r\n\r\nbody\r\n"
    );
}

#[test]
fn change_value_with_and_without_leading_space() {
    // Postfix 3.7.11 with HDR_LEADSPC: "X-D:\tz".
    let raw = b"X-D:  two\r\n\r\n";
    let mut m = parse(raw);
    m.apply(&[change(1, "X-D", "\tz")], true);
    assert_eq!(header_lines(&m), ["X-D:\tz"]);
    let mut m = parse(raw);
    m.apply(&[change(1, "X-D", " x")], true);
    assert_eq!(header_lines(&m), ["X-D: x"]);
    let mut m = parse(raw);
    m.apply(&[change(1, "X-D", "x")], true);
    assert_eq!(header_lines(&m), ["X-D:x"]);
    let mut m = parse(raw);
    m.apply(&[change(1, "X-D", "x")], false);
    assert_eq!(header_lines(&m), ["X-D: x"]);
    // With HDR_LEADSPC a value of only whitespace is a change, not a delete.
    let mut m = parse(raw);
    m.apply(&[change(1, "X-D", " ")], true);
    assert_eq!(header_lines(&m), ["X-D: "]);
}

#[test]
fn header_edits_round_trip_through_a_second_milter() {
    // After a milter's edits, the next milter is shown the result the same way.
    let mut m = parse(MSG);
    m.apply(
        &[change(1, "Subject", "new subject"), add("X-F", "a\n b")],
        false,
    );
    let view = milter_view(&m, false);
    assert_eq!(view[2], ("Subject".to_string(), "new subject".to_string()));
    assert_eq!(view[5], ("X-F".to_string(), "a\n b".to_string()));
    let view = milter_view(&m, true);
    assert_eq!(view[2], ("Subject".to_string(), " new subject".to_string()));
}

// ------------------------------------------------------------- envelope

#[test]
fn add_rcpt_and_add_rcpt_par_keep_only_notify_and_orcpt() {
    let mut m = parse(MSG);
    let w = m.apply(
        &[
            Response::AddRcpt(b("plain@example.org")),
            Response::AddRcptPar {
                rcpt: b("<d@example.org>"),
                args: Some(b("NOTIFY=NEVER SIZE=10 ORCPT=rfc822;d@example.org")),
            },
            Response::AddRcptPar {
                rcpt: b("e@example.org"),
                args: Some(b("notify=SUCCESS,FAILURE")),
            },
            Response::AddRcptPar {
                rcpt: b("f@example.org"),
                args: None,
            },
        ],
        false,
    );
    let rcpt = |address: &str, args: &[&str]| Recipient {
        address: address.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
    };
    assert_eq!(
        m.recipients,
        [
            rcpt("rcpt@example.org", &[]),
            rcpt("plain@example.org", &[]),
            rcpt(
                "<d@example.org>",
                &["NOTIFY=NEVER", "ORCPT=rfc822;d@example.org"]
            ),
            rcpt("e@example.org", &["notify=SUCCESS,FAILURE"]),
            rcpt("f@example.org", &[]),
        ]
    );
    // Postfix 3.7.11 logs: ignoring ESMTP argument from Milter ...: "SIZE=10".
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("SIZE=10"), "{w:?}");
}

#[test]
fn change_from_keeps_only_ret_and_envid() {
    let mut m = parse(MSG);
    let w = m.apply(
        &[Response::ChangeFrom {
            sender: b("<bounce@example.com>"),
            args: Some(b("RET=HDRS ENVID=x BODY=8BITMIME")),
        }],
        false,
    );
    assert_eq!(m.sender, "<bounce@example.com>");
    assert_eq!(m.sender_args, ["RET=HDRS", "ENVID=x"]);
    // Postfix 3.7.11 logs: Ignoring bad ESMTP parameter "BODY=8BITMIME".
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("BODY=8BITMIME"), "{w:?}");
    // A later change without arguments clears them.
    let w = m.apply(
        &[Response::ChangeFrom {
            sender: b("other@example.com"),
            args: None,
        }],
        false,
    );
    assert!(w.is_empty());
    assert_eq!(m.sender, "other@example.com");
    assert!(m.sender_args.is_empty());
}

#[test]
fn del_rcpt_strips_brackets_and_spaces_and_removes_every_match() {
    let mut m = MessageModel::parse(
        "s@example.com",
        &[
            "a@example.org",
            "<b@example.org>",
            "c@example.org",
            "<a@example.org>",
        ],
        MSG,
    );
    // Postfix 3.7.11: " <s10@example.org> " deletes s10@example.org.
    let w = m.apply(
        &[
            Response::DelRcpt(b(" <a@example.org> ")),
            Response::DelRcpt(b("b@example.org")),
        ],
        false,
    );
    assert!(w.is_empty(), "{w:?}");
    let left: Vec<&str> = m.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(left, ["c@example.org"]);
    // Unknown: a warning, nothing removed.
    let w = m.apply(&[Response::DelRcpt(b("nobody@example.org"))], false);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("nobody@example.org"), "{w:?}");
    assert_eq!(m.recipients.len(), 1);
    // A recipient added in the same end of message can be deleted again.
    let w = m.apply(
        &[
            Response::AddRcpt(b("new@example.org")),
            Response::DelRcpt(b("<new@example.org>")),
        ],
        false,
    );
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(m.recipients.len(), 1);
}

#[test]
fn del_rcpt_compares_exactly() {
    // Postfix 3.7.11: neither <S7B@example.org> nor <s7b@EXAMPLE.ORG>
    // deleted s7b@example.org.
    let mut m = MessageModel::parse("s@example.com", &["c@example.org"], MSG);
    for other in ["<C@example.org>", "<c@EXAMPLE.ORG>"] {
        let w = m.apply(&[Response::DelRcpt(b(other))], false);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(m.recipients.len(), 1);
    }
}

// ----------------------------------------------------------------- body

#[test]
fn replace_body_chunks_concatenate_and_render_as_lines() {
    // Postfix 3.7.11 delivered: "a", "b<CR>c", "de", "last".
    let mut m = parse(MSG);
    let w = m.apply(
        &[
            Response::ReplaceBody(b("a\nb\rc\r\nd")),
            Response::ReplaceBody(b("e\r")),
            Response::ReplaceBody(b("\nlast")),
        ],
        false,
    );
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(m.body, b"a\nb\rc\r\nde\r\nlast");
    assert_eq!(m.milter_body(), b"a\r\nb\rc\r\nde\r\nlast\r\n");
    let rendered = m.render();
    assert!(
        rendered.ends_with(b"X-A: two\r\n\r\na\r\nb\rc\r\nde\r\nlast\r\n"),
        "{}",
        String::from_utf8_lossy(&rendered)
    );
    // Headers are untouched.
    assert_eq!(m.headers, parse(MSG).headers);
}

#[test]
fn each_end_of_message_replaces_the_body_anew() {
    let mut m = parse(MSG);
    m.apply(&[Response::ReplaceBody(b("first\r\n"))], false);
    m.apply(&[add("X-Other", "no body change")], false);
    assert_eq!(m.body, b"first\r\n");
    m.apply(&[Response::ReplaceBody(b("second\r\n"))], false);
    assert_eq!(m.body, b"second\r\n");
    // Chunks around other modifications still concatenate.
    let mut m = parse(MSG);
    m.apply(
        &[
            Response::ReplaceBody(b("one ")),
            add("X-Between", "x"),
            Response::ReplaceBody(b("two\r\n")),
        ],
        false,
    );
    assert_eq!(m.body, b"one two\r\n");
    // An empty replacement empties the body.
    let mut m = parse(MSG);
    m.apply(&[Response::ReplaceBody(Bytes::new())], false);
    assert!(m.body.is_empty());
    assert!(m.render().ends_with(b"X-A: two\r\n\r\n"));
}

// ---------------------------------------------------- quarantine, others

#[test]
fn quarantine_reason_is_kept_up_to_100_bytes() {
    let mut m = parse(MSG);
    m.apply(&[Response::Quarantine(b("held for review"))], false);
    assert_eq!(m.quarantine.as_deref(), Some("held for review"));
    let long: String = (0..150)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    m.apply(&[Response::Quarantine(b(&long))], false);
    assert_eq!(m.quarantine.as_deref(), Some(&long[..100]));
    let exact = "q".repeat(100);
    m.apply(&[Response::Quarantine(b(&exact))], false);
    assert_eq!(m.quarantine.as_deref(), Some(exact.as_str()));
    // Quarantine changes nothing else.
    let mut plain = parse(MSG);
    plain.quarantine = m.quarantine.clone();
    assert_eq!(m, plain);
}

#[test]
fn other_responses_are_not_modifications() {
    let mut m = parse(MSG);
    let before = m.clone();
    let w = m.apply(
        &[
            Response::Continue,
            Response::Accept,
            Response::Progress,
            Response::ReplyCode(b("550 5.7.1 no")),
            Response::SetSymList {
                stage: 1,
                names: b("j"),
            },
        ],
        false,
    );
    assert_eq!(w.len(), 5, "{w:?}");
    assert_eq!(m, before);
}

// ----------------------------------------------------------- properties

fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        // Mostly the bytes that matter to the parser.
        proptest::collection::vec(
            proptest::sample::select(vec![
                b'A', b'x', b'-', b':', b' ', b'\t', b'\r', b'\n', b'\n', 0xff, 0xc3, 0,
            ]),
            0..300,
        ),
    ]
}

fn modification() -> impl Strategy<Value = Response> {
    let name = proptest::sample::select(vec!["X-A", "x-a", "Subject", "Received", "X-New"]);
    let value = proptest::collection::vec(
        proptest::sample::select(vec![b'v', b' ', b'\t', b'\r', b'\n', 0xff]),
        0..8,
    )
    .prop_map(Bytes::from);
    let bytes = proptest::collection::vec(any::<u8>(), 0..120).prop_map(Bytes::from);
    prop_oneof![
        (name.clone(), value.clone())
            .prop_map(|(n, value)| Response::AddHeader { name: b(n), value }),
        (0u32..12, name.clone(), value.clone()).prop_map(|(index, n, value)| {
            Response::InsertHeader {
                index,
                name: b(n),
                value,
            }
        }),
        (0u32..5, name, value).prop_map(|(index, n, value)| Response::ChangeHeader {
            index,
            name: b(n),
            value
        }),
        bytes.clone().prop_map(Response::AddRcpt),
        (bytes.clone(), proptest::option::of(bytes.clone()))
            .prop_map(|(rcpt, args)| Response::AddRcptPar { rcpt, args }),
        bytes.clone().prop_map(Response::DelRcpt),
        (bytes.clone(), proptest::option::of(bytes.clone()))
            .prop_map(|(sender, args)| Response::ChangeFrom { sender, args }),
        bytes.clone().prop_map(Response::ReplaceBody),
        bytes.prop_map(Response::Quarantine),
        Just(Response::Continue),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_render_stably(raw in message_bytes()) {
        let m = MessageModel::parse("s", &["r"], &raw);
        for h in &m.headers {
            let _ = MessageModel::milter_header(h, false);
            let _ = MessageModel::milter_header(h, true);
        }
        let body = m.milter_body();
        prop_assert!(body.is_empty() || body.ends_with(b"\r\n"));
        let rendered = m.render();
        let again = MessageModel::parse("s", &["r"], &rendered);
        prop_assert_eq!(&again.headers, &m.headers);
        prop_assert_eq!(again.render(), rendered);
        // Parsing CRLF text again changes nothing.
        prop_assert_eq!(again.milter_body(), body);
    }

    #[test]
    fn arbitrary_modifications_never_panic_and_render_stably(
        raw in message_bytes(),
        mods in proptest::collection::vec(modification(), 0..12),
        leading_space in any::<bool>(),
    ) {
        let mut m = MessageModel::parse("s", &["r"], &raw);
        let _ = m.apply(&mods, leading_space);
        prop_assert!(m.own_received_at <= m.headers.len());
        prop_assert!(m.quarantine.as_ref().is_none_or(|q| q.len() <= 100 * 3));
        let rendered = m.render();
        let again = MessageModel::parse("s", &["r"], &rendered);
        prop_assert_eq!(&again.headers, &m.headers);
        prop_assert_eq!(again.render(), rendered);
    }
}
