//! Proves the private Postfix instance end to end: real smtpd, real queue, real
//! virtual(8) delivery to Maildirs, and the milter failure mode tests rely on.
//!
//! Needs Postfix and root: run `scripts/install-test-deps.sh` first. The tests run in
//! parallel, each with its own instance, which also proves instances do not collide.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};
use std::{fs, thread};

use testkit::{Postfix, SmtpClient, SmtpService, Stage, send_message, simple_message, unique_id};

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

#[ignore = "needs postfix"]
#[test]
fn delivers_to_maildir_and_rejects_unknown_recipient() {
    let postfix = Postfix::start(&[SmtpService::new("plain")]).expect("start postfix");
    let port = postfix.port("plain");

    let subject = unique_id("smoke");
    let msg = simple_message(
        "alice@example.org",
        "bob@example.org",
        &subject,
        "Hello Bob.\n.leading dot\n",
    );
    let reply = send_message(port, "alice@example.org", &["bob@example.org"], &msg).unwrap();
    assert_eq!(reply.code, 250, "{reply}");
    assert_eq!(reply.stage, Stage::EndOfData);

    let mails = postfix
        .wait_for_delivery("bob", 1, DELIVERY_TIMEOUT)
        .unwrap();
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].contains(&format!("Subject: {subject}")),
        "{}",
        mails[0]
    );
    // Dot-stuffing was undone by the server: the body line is intact.
    assert!(mails[0].contains("\n.leading dot\n"), "{}", mails[0]);
    assert!(postfix.maildir_new("bob@example.org").is_dir());

    let msg = simple_message(
        "alice@example.org",
        "nobody-here@example.org",
        "nope",
        "x\n",
    );
    let reply = send_message(
        port,
        "alice@example.org",
        &["nobody-here@example.org"],
        &msg,
    )
    .unwrap();
    assert!(reply.is_permanent(), "{reply}");
    assert_eq!(reply.stage, Stage::RcptTo, "{reply}");
    assert!(postfix.delivered("nobody-here").is_empty());

    // XCLIENT changes the client the server (and a milter) sees.
    let mut client = SmtpClient::connect(port).unwrap();
    assert_eq!(client.ehlo("testkit.localhost").unwrap().code, 250);
    let reply = client
        .xclient(&[("ADDR", "192.0.2.7"), ("NAME", "mail.example.net")])
        .unwrap();
    assert_eq!(reply.code, 220, "{reply}");
    assert_eq!(client.ehlo("helo.example.net").unwrap().code, 250);
    assert!(client.mail("carol@example.org").unwrap().is_success());
    assert!(client.rcpt("dave@example.org").unwrap().is_success());
    let reply = client
        .data(simple_message(
            "carol@example.org",
            "dave@example.org",
            "via xclient",
            "x",
        ))
        .unwrap();
    assert_eq!(
        (reply.code, reply.stage),
        (250, Stage::EndOfData),
        "{reply}"
    );
    client.quit().unwrap();
    let mails = postfix
        .wait_for_delivery("dave", 1, DELIVERY_TIMEOUT)
        .unwrap();
    assert!(
        mails[0].contains("from helo.example.net (mail.example.net [192.0.2.7])"),
        "{}",
        mails[0]
    );
}

#[ignore = "needs postfix"]
#[test]
fn dead_milter_tempfails_while_plain_service_delivers() {
    let postfix = Postfix::start(&[
        SmtpService::new("plain"),
        SmtpService::new("dead").with_milters("unix:/nonexistent/dir/milter.sock"),
        // Values with spaces and braces reach smtpd intact (via main.cf, not -o).
        SmtpService::new("lenient")
            .with_milters("{ unix:/nonexistent/dir/milter.sock, default_action=accept }")
            .with_option("smtpd_banner", "$myhostname ESMTP lenient service"),
    ])
    .expect("start postfix");
    assert_ne!(postfix.port("plain"), postfix.port("dead"));

    let subject = unique_id("dead-milter");
    let msg = simple_message("alice@example.org", "carol@example.org", &subject, "x\n");
    let reply = send_message(
        postfix.port("dead"),
        "alice@example.org",
        &["carol@example.org"],
        &msg,
    )
    .unwrap();
    assert!((400..500).contains(&reply.code), "{reply}");
    let line = postfix
        .wait_for_log("unix:/nonexistent/dir/milter.sock", Duration::from_secs(10))
        .unwrap();
    assert!(line.contains("postfix/dead/smtpd"), "{line}");

    // The milter-free service of the same instance still delivers.
    let reply = send_message(
        postfix.port("plain"),
        "alice@example.org",
        &["carol@example.org"],
        &msg,
    )
    .unwrap();
    assert_eq!(reply.code, 250, "{reply}");
    let mails = postfix
        .wait_for_delivery("carol", 1, DELIVERY_TIMEOUT)
        .unwrap();
    assert_eq!(mails.len(), 1, "the tempfailed copy must not be delivered");

    // default_action=accept: the dead milter is ignored, the message delivered.
    let client = SmtpClient::connect(postfix.port("lenient")).unwrap();
    assert!(
        client.greeting().text().ends_with("ESMTP lenient service"),
        "{}",
        client.greeting()
    );
    client.quit().unwrap();
    let reply = send_message(
        postfix.port("lenient"),
        "alice@example.org",
        &["carol@example.org"],
        &msg,
    )
    .unwrap();
    assert_eq!(reply.code, 250, "{reply}");
    let mails = postfix
        .wait_for_delivery("carol", 2, DELIVERY_TIMEOUT)
        .unwrap();
    assert_eq!(mails.len(), 2);
}

/// smtpd runs as user `postfix`: a root-owned socket with mode 0666 in `socket_dir()`
/// must be reachable. A listener that accepts and hangs up proves the connection was
/// made; Postfix then tempfails the message.
#[ignore = "needs postfix"]
#[test]
fn milter_socket_in_socket_dir_is_reachable_by_smtpd() {
    let builder = Postfix::prepare().expect("prepare postfix");
    let socket = builder.socket_path("milter.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let postfix = builder
        .service(SmtpService::new("filtered").with_milters(format!("unix:{}", socket.display())))
        .user("erin")
        .main_cf("smtpd_banner", "$myhostname ESMTP from main_cf extra")
        .start()
        .expect("start postfix");

    let acceptor = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match listener.accept() {
                // Hang up at once: smtpd then gives up on the milter.
                Ok((conn, _)) => {
                    drop(conn);
                    return true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        false
    });

    // smtpd contacts the milter when the client connects, before the greeting.
    let mut client = SmtpClient::connect(postfix.port("filtered")).unwrap();
    assert!(
        client.greeting().text().ends_with("from main_cf extra"),
        "{}",
        client.greeting()
    );
    assert!(
        acceptor.join().unwrap(),
        "smtpd never connected to the milter socket\n{}",
        postfix.log()
    );

    let reply = client.ehlo("client.example").unwrap();
    assert_eq!(reply.code, 250, "{reply}");
    assert!(
        reply
            .lines
            .iter()
            .any(|l| l == "XCLIENT" || l.starts_with("XCLIENT ")),
        "{reply}"
    );
    let reply = client.mail("alice@example.org").unwrap();
    assert!(reply.is_transient(), "{reply}");
    client.quit().unwrap();
    assert!(
        !postfix.log().contains("Permission denied"),
        "{}",
        postfix.log()
    );
}

/// A configuration Postfix refuses makes `start` fail promptly, with the reason.
#[ignore = "needs postfix"]
#[test]
fn broken_configuration_is_reported() {
    let started = Instant::now();
    let err = Postfix::prepare()
        .unwrap()
        .service(SmtpService::new("plain"))
        .main_cf("inet_interfaces", "192.0.2.1")
        .start()
        .unwrap_err();
    assert!(err.message().contains("postfix start"), "{err}");
    assert!(err.message().contains("inet_interfaces"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "{err}");
}
