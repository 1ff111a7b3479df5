//! Socket activation end to end: a unix socket bound and listened on by
//! the test (as a systemd `.socket` unit does), handed to the example
//! milter through LISTEN_FDS, and a real Postfix (Debian's package, its
//! own instance on 127.0.0.1) filtering through it.

mod daemon_contract;

use std::time::Duration;

use daemon_contract::{Binary, spawn_with_passed_socket};
use testkit::{Postfix, SmtpClient, SmtpService, simple_message};

fn keyword_milter() -> Binary {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/keyword_milter");
    assert!(
        path.exists(),
        "{} missing: `cargo test` builds the examples",
        path.display()
    );
    Binary {
        name: "keyword_milter",
        path,
        base: Vec::new(),
    }
}

#[test]
#[ignore = "needs postfix"]
fn postfix_filters_through_a_socket_passed_by_listen_fds() {
    let builder = Postfix::prepare().unwrap();
    let sock = builder.socket_path("activated.sock");
    let spec = format!("unix:{}", sock.display());
    let logs = builder.path().to_owned();
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    // Postfix's smtpd runs as postfix: let it connect, as SocketMode= would.
    std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let pf = builder
        .service(SmtpService::new("smtp").with_milters(&spec))
        .start()
        .unwrap();
    let mut milter =
        spawn_with_passed_socket(&keyword_milter(), listener, &logs.join("milter.log"));
    milter.wait_log(&format!("listening on {spec}"));

    let mut c = SmtpClient::connect(pf.port("smtp")).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    let mut send = |subject: &str| {
        assert!(c.mail("<alice@client.example>").unwrap().is_positive());
        assert!(c.rcpt("<dave@example.org>").unwrap().is_positive());
        c.data(simple_message(
            "alice@client.example",
            "dave@example.org",
            subject,
            "Through a socket systemd would pass.\r\n",
        ))
        .unwrap()
    };
    let r = send("passed socket");
    assert_eq!(r.code, 250, "{r:?}\n{}", milter.log_text());
    let r = send("[reject] passed socket");
    assert_eq!(r.code, 550, "{r:?}\n{}", milter.log_text());
    assert!(r.text().contains("5.7.1 Message refused"), "{r:?}");
    c.quit().unwrap();
    let mail = pf
        .wait_for_delivery("dave", 1, Duration::from_secs(30))
        .unwrap();
    assert!(
        mail[0].contains("X-Keyword-Milter: passed (queue id "),
        "{}",
        mail[0]
    );
    milter.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(milter.wait_exit().code(), Some(0), "{}", milter.log_text());
    // The socket belongs to whoever made it (systemd): left in place.
    assert!(sock.exists());
}
