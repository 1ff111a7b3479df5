//! A differential matrix against a real Mailman 3 core (Debian's
//! `mailman3`): lists are configured over REST with every rule the milter
//! models (members, a user's other address, own moderation actions of
//! members and non-members, the four `*_these_nonmembers` lists with a
//! regex and a plain entry with capitals, bans as a case-insensitive regex,
//! a plain ban and one with capitals, header-match rules with every action
//! and a look-behind, `Approved:` on lists with and without a moderator
//! password, an alias domain, a site-wide ban, a list holding members by
//! default), and posts from senders in every shape Mailman reads (case,
//! plus-addressing, several `From:` addresses, `Sender:`, an encoded
//! display name, addresses its validator drops). Each post is decided by the milter (over
//! the milter protocol) and then delivered to Mailman over LMTP; Mailman's
//! own outcome is read from its `vette` log (ACCEPT, REJECT, DISCARD,
//! HOLD). The same posts also go over SMTP through a real private Postfix
//! (testkit) whose smtpd services each run the `mailman-milter` daemon
//! (REST backend, or the exported lists file; with and without
//! `refuse_hold`); that Postfix hands the list domains to its `discard`
//! transport, so Mailman sees each post once, without the milter.
//! Asserted, for the REST backend and for a lists file written by
//! `mailman-milter export`, each with and without `refuse_hold`, in
//! process and through Postfix: the milter refuses (5xx) exactly the posts
//! Mailman rejects or discards (and holds, with `refuse_hold`), which here
//! are all decided by the REST data; Postfix never answers 4xx.
//!
//! Needs root, Postfix and `mailman3` (scripts/install-test-deps.sh).

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mailman_milter::{FileBackend, ListBackend, MailmanMilter, RestBackend, RestConfig, Settings};
use minimilter::transaction::Outcome;
use minimilter::{
    ClientConfig, MessageSpec, MilterClient, Server, ServerConfig, Shutdown, run_message,
};
use support::{Mailman, create_user, rest, set_moderation};
use testkit::{MilterProcess, Postfix, SmtpClient, SmtpService};

const TEAM: &str = "team.lists.example.org";
const PW: &str = "pw.lists.example.org";
const MODERATED: &str = "moderated.lists.example.org";
const EMERGENCY: &str = "emergency.lists.example.org";

/// Mailman's outcome for a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accept,
    Hold,
    Reject,
    Discard,
}

struct Post {
    from: &'static str,
    rcpt: &'static str,
    headers: &'static str,
    id: String,
}

impl Post {
    fn message(&self) -> String {
        // To: the list's own address (Mailman holds a post that does not
        // name it: `implicit-dest`), whatever the envelope says.
        // A row's own From: replaces the envelope sender's.
        let from = if self.headers.starts_with("From:") {
            String::new()
        } else {
            format!("From: {}\r\n", self.from)
        };
        // A row's own body follows its headers and an empty line.
        let (headers, body) = self
            .headers
            .split_once("\r\n\r\n")
            .map(|(h, b)| (format!("{h}\r\n"), b))
            .unwrap_or((self.headers.to_owned(), "Hello list.\r\n"));
        format!(
            "{from}To: {}\r\nMessage-ID: <{}>\r\n{}{headers}\r\n{body}",
            self.rcpt.replace("@alias.example", "@lists.example.org"),
            self.id,
            if self.headers.contains("Subject:") {
                ""
            } else {
                "Subject: matrix\r\n"
            },
        )
    }
}

/// Patterns Mailman stores but Python 3.11's `re` refuses (`\\z`, inline
/// flags after `^`), as a list imported from Mailman 2 or configured under
/// an older Python has them; the REST API refuses to set them. Mailman
/// logs each and takes it as a miss, both in `*_these_nonmembers` and in
/// header rules.
const PYTHON_REFUSES: &str = r#"
from mailman.interfaces.mailinglist import IHeaderMatchList

def run(mlist):
    if mlist.list_name == 'team':
        rules = IHeaderMatchList(mlist)
        rules.append('x-checked', r'^spam\z', 'discard')
        rules.append('x-mood', r'^(?i)angry', 'reject')
    else:
        mlist.reject_these_nonmembers = [r'^.*@rival\.example\z', r'^(?i)LOUD@']
        mlist.discard_these_nonmembers = [r'^(?<u>.*)@junk\.example$']
"#;

fn configure(port: u16) {
    rest(
        port,
        "POST",
        "/domains",
        &[
            ("mail_host", "lists.example.org"),
            ("alias_domain", "alias.example"),
        ],
    );
    for list in [
        "team@lists.example.org",
        "pw@lists.example.org",
        "moderated@lists.example.org",
        "emergency@lists.example.org",
        "open@lists.example.org",
        "lax@lists.example.org",
    ] {
        rest(port, "POST", "/lists", &[("fqdn_listname", list)]);
    }
    let patch = |list: &str, key: &str, value: &str| {
        rest(
            port,
            "PATCH",
            &format!("/lists/{list}/config"),
            &[(key, value)],
        );
    };
    patch(TEAM, "default_nonmember_action", "reject");
    patch(TEAM, "accept_these_nonmembers", "^.*@partner\\.example$");
    patch(TEAM, "hold_these_nonmembers", "^held@");
    patch(TEAM, "reject_these_nonmembers", "Loud@Example.com");
    patch(TEAM, "discard_these_nonmembers", "dropped@example.com");
    patch(PW, "default_nonmember_action", "reject");
    patch(PW, "moderator_password", "secret");
    create_user(port, &["alice@example.org", "alice.alt@example.net"]);
    // A member subscribed as a user (through its preferred address, as
    // Postorius does for "primary address"), with an unverified other
    // address.
    let carol = create_user(port, &["carol@example.org", "carol.alt@example.net"]);
    rest(port, "POST", "/addresses/carol@example.org/verify", &[]);
    rest(
        port,
        "POST",
        &format!("/users/{carol}/preferred_address"),
        &[("email", "carol@example.org")],
    );
    rest(
        port,
        "POST",
        "/members",
        &[
            ("list_id", TEAM),
            ("subscriber", &carol),
            ("pre_verified", "true"),
            ("pre_confirmed", "true"),
            ("pre_approved", "true"),
        ],
    );
    // A member whose user has addresses with characters a URL path
    // escapes.
    create_user(
        port,
        &[
            "dave@example.org",
            "dave#x@example.net",
            "dave%y@example.net",
            "dave?z@example.net",
            "dave/w@example.net",
            "dave*v@example.net",
        ],
    );
    rest(
        port,
        "POST",
        "/members",
        &[
            ("list_id", TEAM),
            ("subscriber", "dave@example.org"),
            ("pre_verified", "true"),
            ("pre_confirmed", "true"),
            ("pre_approved", "true"),
        ],
    );
    // A member subscribed with an address holding `*` (a wildcard for
    // Mailman's member search), found by Mailman through another address
    // of its user.
    create_user(port, &["erin@example.org", "erin*x@example.net"]);
    rest(
        port,
        "POST",
        "/members",
        &[
            ("list_id", TEAM),
            ("subscriber", "erin*x@example.net"),
            ("pre_verified", "true"),
            ("pre_confirmed", "true"),
            ("pre_approved", "true"),
        ],
    );
    // A user with 22 addresses, subscribed with the one Mailman lists
    // last: Mailman looks at every address of the user.
    let fay: Vec<String> = (0..21)
        .map(|i| format!("fay{i:02}@example.net"))
        .chain(["fay@example.org".to_owned()])
        .collect();
    create_user(port, &fay.iter().map(String::as_str).collect::<Vec<_>>());
    rest(
        port,
        "POST",
        "/members",
        &[
            ("list_id", TEAM),
            ("subscriber", "fay@example.org"),
            ("pre_verified", "true"),
            ("pre_confirmed", "true"),
            ("pre_approved", "true"),
        ],
    );
    // A member subscribed in capitals.
    rest(
        port,
        "POST",
        "/members",
        &[
            ("list_id", TEAM),
            ("subscriber", "Carl.Caps@Example.ORG"),
            ("pre_verified", "true"),
            ("pre_confirmed", "true"),
            ("pre_approved", "true"),
        ],
    );
    // Members held by the list's default, non-members discarded.
    patch(MODERATED, "default_member_action", "hold");
    patch(MODERATED, "default_nonmember_action", "discard");
    rest(
        port,
        "POST",
        "/members",
        &[
            ("list_id", MODERATED),
            ("subscriber", "alice@example.org"),
            ("pre_verified", "true"),
            ("pre_confirmed", "true"),
            ("pre_approved", "true"),
        ],
    );
    set_moderation(port, MODERATED, "boss@example.org", "member", "accept");
    // Emergency moderation on a list that rejects non-members and bans.
    patch(EMERGENCY, "default_nonmember_action", "reject");
    patch(EMERGENCY, "emergency", "true");
    rest(
        port,
        "POST",
        &format!("/lists/{EMERGENCY}/bans"),
        &[("email", "banned@example.com")],
    );
    // Owners and moderators who are not members: Mailman 3 moderates
    // their posts as non-members'.
    for (email, role) in [
        ("owner@example.org", "owner"),
        ("mod@example.org", "moderator"),
    ] {
        rest(
            port,
            "POST",
            "/members",
            &[("list_id", TEAM), ("subscriber", email), ("role", role)],
        );
    }
    // Members rejected by the list's default, one deferring by its own
    // action; non-members held (the default).
    patch("open.lists.example.org", "default_member_action", "reject");
    set_moderation(
        port,
        "open.lists.example.org",
        "bob@example.org",
        "member",
        "defer",
    );
    rest(
        port,
        "POST",
        "/members",
        &[
            ("list_id", "open.lists.example.org"),
            ("subscriber", "cy@example.org"),
            ("pre_verified", "true"),
            ("pre_confirmed", "true"),
            ("pre_approved", "true"),
        ],
    );
    // Non-members deferred (regular processing: accepted), members
    // discarded by default, one accepted by its own action.
    patch("lax.lists.example.org", "default_nonmember_action", "defer");
    patch("lax.lists.example.org", "default_member_action", "discard");
    rest(
        port,
        "POST",
        "/members",
        &[
            ("list_id", "lax.lists.example.org"),
            ("subscriber", "alice@example.org"),
            ("pre_verified", "true"),
            ("pre_confirmed", "true"),
            ("pre_approved", "true"),
        ],
    );
    set_moderation(
        port,
        "lax.lists.example.org",
        "bob@example.org",
        "member",
        "accept",
    );
    set_moderation(
        port,
        "lax.lists.example.org",
        "cy@example.org",
        "member",
        "defer",
    );
    // A site-wide ban.
    rest(
        port,
        "POST",
        "/bans",
        &[("email", "^.*@site-banned\\.example$")],
    );
    for (list, email, role, action) in [
        (TEAM, "alice@example.org", "member", "defer"),
        (TEAM, "troll@example.org", "member", "discard"),
        (TEAM, "boss@example.org", "member", "accept"),
        (TEAM, "vip@outside.example", "nonmember", "accept"),
    ] {
        set_moderation(port, list, email, role, action);
    }
    for ban in [
        "^.*@SPAMMER\\.example$",
        "banned@example.com",
        "Shouty@Example.com",
        "^root@",
    ] {
        rest(
            port,
            "POST",
            &format!("/lists/{TEAM}/bans"),
            &[("email", ban)],
        );
    }
    for (header, pattern, action) in [
        ("x-spam-flag", "^yes", "discard"),
        ("subject", "(?<!un)subscribe me", "reject"),
        ("x-partner", "^trusted$", "accept"),
        ("subject", "sale", "hold"),
        // Mailman's LMTP runner adds `X-MailFrom:` (the envelope sender)
        // before its rules run.
        ("x-mailfrom", "^bot@ci\\.example$", "accept"),
        ("x-mailfrom", "@junkmail\\.example$", "discard"),
    ] {
        rest(
            port,
            "POST",
            &format!("/lists/{TEAM}/header-matches"),
            &[("header", header), ("pattern", pattern), ("action", action)],
        );
    }
}

/// Settings the REST API cannot make: through Mailman's own shell.
fn configure_by_shell(m: &Mailman) {
    m.shell("team@lists.example.org", PYTHON_REFUSES);
    m.shell("open@lists.example.org", PYTHON_REFUSES);
}

fn posts() -> Vec<Post> {
    let team = "team@lists.example.org";
    let rows: &[(&str, &str, &str)] = &[
        ("alice@example.org", team, ""),
        ("alice.alt@example.net", team, ""),
        ("alice@example.org", "team@alias.example", ""),
        ("stranger@example.com", "team@alias.example", ""),
        ("troll@example.org", team, ""),
        ("boss@example.org", team, "X-Spam-Flag: YES\r\n"),
        ("vip@outside.example", team, ""),
        ("x@partner.example", team, ""),
        ("held@example.com", team, ""),
        ("loud@example.com", team, ""),
        ("dropped@example.com", team, ""),
        ("stranger@example.com", team, ""),
        ("x@spammer.example", team, ""),
        ("banned@example.com", team, ""),
        ("shouty@example.com", team, ""),
        ("alice@example.org", team, "X-Spam-Flag: YES\r\n"),
        (
            "alice@example.org",
            team,
            "Subject: please subscribe me\r\n",
        ),
        (
            "alice@example.org",
            team,
            "Subject: please unsubscribe me\r\n",
        ),
        ("alice@example.org", team, "Subject: big SALE\r\n"),
        // Header rules and non-member entries Python refuses: Mailman
        // skips them (the open list holds non-members, Mailman's default).
        ("alice@example.org", team, "X-Checked: spam\r\n"),
        ("alice@example.org", team, "X-Mood: ANGRY\r\n"),
        ("x@rival.example", "open@lists.example.org", ""),
        ("loud@example.com", "open@lists.example.org", ""),
        ("x@junk.example", "open@lists.example.org", ""),
        ("stranger@example.com", "open@lists.example.org", ""),
        ("bot@ci.example", team, "From: CI <noreply@ci.example>\r\n"),
        (
            "promo@junkmail.example",
            team,
            "From: alice@example.org\r\n",
        ),
        ("owner@example.org", team, ""),
        ("mod@example.org", team, ""),
        ("bob@example.org", "open@lists.example.org", ""),
        ("cy@example.org", "open@lists.example.org", ""),
        ("stranger@example.com", "lax@lists.example.org", ""),
        ("alice@example.org", "lax@lists.example.org", ""),
        ("bob@example.org", "lax@lists.example.org", ""),
        ("cy@example.org", "lax@lists.example.org", ""),
        ("stranger@example.com", team, "X-Partner: trusted\r\n"),
        ("stranger@example.com", team, "X-Partner: untrusted\r\n"),
        ("stranger@example.com", team, "Approved: secret\r\n"),
        (
            "stranger@example.com",
            "pw@lists.example.org",
            "Approved: secret\r\n",
        ),
        ("stranger@example.com", "pw@lists.example.org", ""),
        // Addresses Mailman's validator drops from the senders (a `_` in
        // the domain): neither the ban `^root@` nor `^held@` applies, the
        // member or accepted sender decides.
        (
            "alice@example.org",
            team,
            "Reply-To: root@mail_relay.example.com\r\n",
        ),
        (
            "x@partner.example",
            team,
            "From: held@bad_host.example.com\r\n",
        ),
        // Case, plus-addressing, several From: addresses, Sender:, an
        // encoded display name, a user's other address in capitals.
        ("ALICE@Example.ORG", team, ""),
        ("alice+tag@example.org", team, ""),
        (
            "stranger@example.com",
            team,
            "From: stranger@example.com, alice@example.org\r\n",
        ),
        (
            "stranger@example.com",
            team,
            "Sender: alice@example.org\r\n",
        ),
        (
            "stranger@example.com",
            team,
            "From: =?utf-8?q?Alice_=C3=84lt?= <Alice.Alt@Example.NET>\r\n",
        ),
        // The moderator password in the first line of a base64 text/plain
        // body, alone and as the first part of a multipart/alternative.
        (
            "stranger@example.com",
            "pw@lists.example.org",
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n\
             QXBwcm92ZWQ6IHNlY3JldA0KSGVsbG8gbGlzdCwgcHJlLWFwcHJvdmVkLg0K\r\n",
        ),
        (
            "stranger@example.com",
            "pw@lists.example.org",
            "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
             --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n\
             QXBwcm92ZWQ6IHNlY3JldA0KSGVsbG8gbGlzdCwgcHJlLWFwcHJvdmVkLg0K\r\n\
             --b1\r\nContent-Type: text/html\r\n\r\n<p>Hello list.</p>\r\n--b1--\r\n",
        ),
        // A member subscribed as a user, from either address.
        ("carol@example.org", team, ""),
        ("Carol.Alt@example.net", team, ""),
        ("carl.caps@example.org", team, ""),
        ("dave#x@example.net", team, ""),
        ("dave%y@example.net", team, ""),
        ("dave?z@example.net", team, ""),
        ("dave/w@example.net", team, ""),
        ("dave*v@example.net", team, ""),
        // The member's address holds `*`; another address of its user
        // posts. A user with 22 addresses, from the first.
        ("erin@example.org", team, ""),
        ("fay00@example.net", team, ""),
        ("FAY20@example.net", team, ""),
        // Sender headers in other shapes: two From: fields, Reply-To:, a
        // group, a comment, the null envelope sender, a banned Sender:, the
        // list itself. (An encoded word that decodes to an address in the
        // display name is left to Mailman, which rejects it: the milter
        // passes what it cannot read as Mailman does.)
        (
            "stranger@example.com",
            team,
            "From: stranger@example.com\r\nFrom: alice@example.org\r\n",
        ),
        (
            "stranger@example.com",
            team,
            "Reply-To: Alice <alice@example.org>\r\n",
        ),
        (
            "stranger@example.com",
            team,
            "From: Team: alice@example.org;\r\n",
        ),
        (
            "stranger@example.com",
            team,
            "From: alice@example.org (Stranger)\r\n",
        ),
        ("", team, "From: alice@example.org\r\n"),
        ("", team, "From: stranger@example.com\r\n"),
        ("alice@example.org", team, "Sender: x@spammer.example\r\n"),
        (
            "stranger@example.com",
            team,
            "Reply-To: team@lists.example.org\r\n",
        ),
        // Emergency moderation: Mailman holds every post, a banned
        // sender's too.
        ("stranger@example.com", "emergency@lists.example.org", ""),
        ("banned@example.com", "emergency@lists.example.org", ""),
        // A site-wide ban; a list whose members are held by default.
        ("x@site-banned.example", team, ""),
        ("alice@example.org", "moderated@lists.example.org", ""),
        ("boss@example.org", "moderated@lists.example.org", ""),
        ("stranger@example.com", "moderated@lists.example.org", ""),
    ];
    rows.iter()
        .enumerate()
        .map(|(i, (from, rcpt, headers))| Post {
            from,
            rcpt,
            headers,
            id: format!("matrix-{i}-{}@test.example", std::process::id()),
        })
        .collect()
}

/// The milter's verdict: refused (5xx) or passed.
async fn milter_refuses<B: ListBackend>(backend: Arc<B>, settings: Settings, post: &Post) -> bool {
    let (a, z) = tokio::io::duplex(1 << 20);
    let server = Server::new(
        MailmanMilter::new(backend, settings),
        ServerConfig::default(),
    );
    tokio::spawn(async move { server.serve_stream(z, Shutdown::new()).await });
    let mut c = MilterClient::negotiate(Box::new(a), ClientConfig::default())
        .await
        .unwrap();
    let spec = MessageSpec {
        from: post.from.into(),
        rcpts: vec![post.rcpt.into()],
        message: Bytes::from(post.message()),
        ..MessageSpec::default()
    };
    let t = tokio::time::timeout(Duration::from_secs(30), run_message(&mut c, &spec))
        .await
        .expect("the milter answers in time")
        .unwrap();
    match t.outcome {
        Outcome::Rejected { .. } => true,
        Outcome::Accepted => false,
        other => panic!("{} -> {}: {other:?}", post.from, post.rcpt),
    }
}

fn read_reply(r: &mut BufReader<TcpStream>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "LMTP connection closed after {all:?}");
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

/// Delivers `post` to Mailman over LMTP (no milter).
fn lmtp(port: u16, post: &Post) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut step = |cmd: &str, want: &str| {
        if !cmd.is_empty() {
            w.write_all(cmd.as_bytes()).unwrap();
        }
        let reply = read_reply(&mut r);
        assert!(reply.starts_with(want), "{cmd:?}: {reply}");
    };
    step("", "220");
    step("LHLO matrix.test\r\n", "250");
    step(&format!("MAIL FROM:<{}>\r\n", post.from), "250");
    step(&format!("RCPT TO:<{}>\r\n", post.rcpt), "250");
    step("DATA\r\n", "354");
    let body = post.message().replace("\r\n.", "\r\n..");
    step(&format!("{body}.\r\n"), "250");
    step("QUIT\r\n", "221");
}

/// The four ways through Postfix: (service name, REST backend, refuse_hold),
/// in the order of the in-process verdicts.
const ROUTES: [(&str, bool, bool); 4] = [
    ("rest", true, false),
    ("file", false, false),
    ("rest_hold", true, true),
    ("file_hold", false, true),
];

/// Each post sent over SMTP through a private Postfix, once per route of
/// [`ROUTES`], each smtpd with its own `mailman-milter` daemon: whether it
/// was refused (5xx). A 4xx fails the test.
fn through_postfix(rest_port: u16, lists_file: &Path, posts: &[Post]) -> Vec<Vec<bool>> {
    let builder = Postfix::prepare().unwrap();
    let dir = builder.path().to_owned();
    let transport = dir.join("transport");
    // Accepted posts end here: Mailman gets each post once, over LMTP.
    std::fs::write(
        &transport,
        "lists.example.org discard:\nalias.example discard:\n",
    )
    .unwrap();
    let mut builder = builder
        .main_cf("relay_domains", "lists.example.org, alias.example")
        .main_cf(
            "transport_maps",
            format!("texthash:{}", transport.display()),
        )
        .main_cf("recipient_delimiter", "+");
    let mut daemons = Vec::new();
    for (name, rest_backend, refuse_hold) in ROUTES {
        let sock = builder.socket_path(&format!("{name}.sock"));
        let source = if rest_backend {
            "backend = \"mailman\"\n".to_owned()
        } else {
            format!(
                "lists = \"{}\"\nalias_domains = {{ \"alias.example\" = \"lists.example.org\" }}\n",
                lists_file.display()
            )
        };
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "{source}refuse_hold = {refuse_hold}\n\n[server]\nlisten = \"unix:{}\"\nsocket_mode = \"666\"\n\n\
                 [mailman]\nurl = \"http://127.0.0.1:{rest_port}/3.1\"\ntimeout = 10\n",
                sock.display()
            ),
        )
        .unwrap();
        // The [mailman] table is for the REST routes only.
        if !rest_backend {
            let text = std::fs::read_to_string(&config).unwrap();
            let cut = text.find("[mailman]").unwrap();
            std::fs::write(&config, &text[..cut]).unwrap();
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailman-milter"));
        command.arg("--config").arg(&config).env("RUST_LOG", "info");
        daemons
            .push(MilterProcess::start(command, &sock, dir.join(format!("{name}.log"))).unwrap());
        builder = builder
            .service(SmtpService::new(name).with_milters(format!("unix:{}", sock.display())));
    }
    let pf = builder.start().unwrap();
    let mut out = Vec::new();
    for post in posts {
        let mut refused = Vec::new();
        for ((name, ..), daemon) in ROUTES.iter().zip(&daemons) {
            let mut c = SmtpClient::connect(pf.port(name)).unwrap();
            assert!(c.ehlo("client.example").unwrap().is_success());
            let t = c
                .transaction(post.from, &[post.rcpt], post.message())
                .unwrap();
            let last = t.data.clone().unwrap_or_else(|| t.rcpts[0].clone());
            let context = || {
                format!(
                    "{} -> {} [{}] via {name}: {t:?}\n--- milter ---\n{}",
                    post.from,
                    post.rcpt,
                    post.headers.trim(),
                    daemon.log_text()
                )
            };
            assert!(t.mail.is_success(), "{}", context());
            assert!(!last.is_transient(), "{}", context());
            assert!(last.is_success() || last.is_permanent(), "{}", context());
            refused.push(last.is_permanent());
            let _ = c.quit();
        }
        out.push(refused);
    }
    drop(pf);
    out
}

/// Mailman's outcome for each message id, from its vette log.
fn outcomes(m: &Mailman, ids: &[String]) -> HashMap<String, Verdict> {
    // Mailman's `vette` logger writes to mailman.log unless configured.
    let logs = ["vette.log", "mailman.log"].map(|n| m.var_dir().join("logs").join(n));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text: String = logs
            .iter()
            .map(|l| std::fs::read_to_string(l).unwrap_or_default())
            .collect();
        let mut found = HashMap::new();
        for line in text.lines() {
            for id in ids {
                if !line.contains(id.as_str()) {
                    continue;
                }
                let v = if line.contains("ACCEPT:") {
                    Verdict::Accept
                } else if line.contains("REJECT:") {
                    Verdict::Reject
                } else if line.contains("DISCARD:") {
                    Verdict::Discard
                } else if line.contains("HOLD:") {
                    Verdict::Hold
                } else {
                    continue;
                };
                found.insert(id.clone(), v);
            }
        }
        if found.len() == ids.len() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "Mailman decided {} of {} posts ({found:?}); end of its log:\n{}",
            found.len(),
            ids.len(),
            text.lines().rev().take(60).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs postfix and mailman"]
async fn the_milter_refuses_exactly_what_mailman_rejects_or_discards() {
    let mailman = tokio::task::spawn_blocking(|| Mailman::start(None))
        .await
        .unwrap();
    let (port, lmtp_port) = (mailman.rest_port, mailman.lmtp_port);
    tokio::task::spawn_blocking(move || configure(port))
        .await
        .unwrap();
    let mut mailman = tokio::task::spawn_blocking(move || {
        configure_by_shell(&mailman);
        mailman
    })
    .await
    .unwrap();
    let rest_config = RestConfig {
        url: format!("http://127.0.0.1:{port}/3.1"),
        timeout: Duration::from_secs(10),
        ..RestConfig::default()
    };
    let posts = posts();
    // The milter's verdicts first: Mailman's own processing registers
    // non-members, which must not change what the milter was asked.
    let exported = mailman_milter::export::export(&rest_config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lists.toml");
    std::fs::write(&file, &exported).unwrap();
    let (file_backend, error) = FileBackend::open(&file);
    assert!(error.is_none(), "{error:?}\n{exported}");
    let file_backend = Arc::new(file_backend);
    let rest_backend = Arc::new(RestBackend::new(&rest_config).unwrap());
    let settings = |refuse_hold: bool, file: bool| {
        let mut s = Settings {
            overrides: mailman_milter::overrides::ListOverrides {
                refuse_hold,
                ..Default::default()
            },
            ..Settings::default()
        };
        if file {
            // The lists file has no alias domains; the configuration does.
            s.rules
                .alias_domains
                .insert("alias.example".into(), "lists.example.org".into());
        }
        s
    };
    let mut verdicts: Vec<(String, Vec<bool>)> = Vec::new();
    for post in &posts {
        let mut v = Vec::new();
        for refuse_hold in [false, true] {
            v.push(milter_refuses(rest_backend.clone(), settings(refuse_hold, false), post).await);
            v.push(milter_refuses(file_backend.clone(), settings(refuse_hold, true), post).await);
        }
        verdicts.push((post.id.clone(), v));
    }
    let posts = Arc::new(posts);
    let (p, f) = (posts.clone(), file.clone());
    let smtp = tokio::task::spawn_blocking(move || through_postfix(port, &f, &p))
        .await
        .unwrap();
    for ((_, v), s) in verdicts.iter_mut().zip(smtp) {
        v.extend(s);
    }
    let ids: Vec<String> = posts.iter().map(|p| p.id.clone()).collect();
    let p = posts.clone();
    tokio::task::spawn_blocking(move || {
        for post in p.iter() {
            lmtp(lmtp_port, post);
        }
    })
    .await
    .unwrap();
    let mm = tokio::task::spawn_blocking(move || {
        let o = outcomes(&mailman, &ids);
        mailman.stop();
        o
    })
    .await
    .unwrap();
    let mut failures = Vec::new();
    let mut seen = HashMap::new();
    for (post, (id, v)) in posts.iter().zip(&verdicts) {
        let mailman = mm[id];
        *seen.entry(format!("{mailman:?}")).or_insert(0) += 1;
        // In process (0..4), then through Postfix (4..8), both in the
        // order rest, file, rest with refuse_hold, file with refuse_hold.
        for (i, refused) in v.iter().enumerate() {
            let refuse_hold = i % 4 >= 2;
            let backend = match (i % 2 == 0, i >= 4) {
                (true, false) => "rest",
                (false, false) => "file",
                (true, true) => "rest via Postfix",
                (false, true) => "file via Postfix",
            };
            let want = match mailman {
                Verdict::Reject | Verdict::Discard => true,
                // Emergency holds are the moderators' to release: never
                // refused, whatever refuse_hold says.
                Verdict::Hold => refuse_hold && !post.rcpt.starts_with("emergency@"),
                Verdict::Accept => false,
            };
            if *refused != want {
                failures.push(format!(
                    "{} -> {} [{}]: Mailman {mailman:?}, milter ({backend}, refuse_hold={refuse_hold}) {}",
                    post.from,
                    post.rcpt,
                    post.headers.trim(),
                    if *refused { "refused" } else { "passed" }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every kind of outcome was exercised.
    for kind in ["Accept", "Hold", "Reject", "Discard"] {
        assert!(seen.contains_key(kind), "no {kind} among {seen:?}");
    }
}
