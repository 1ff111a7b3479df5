//! The README's `record` socket set-ups, checked with a real Postfix: a
//! listening socket with mode 660 and `--socket-group postfix`, or with mode
//! 660 in a directory that is setgid group `postfix` (it then belongs to
//! that group), lets Postfix's smtpd (user postfix) reach the milter. The
//! same mode in a directory of root's own group leaves Postfix outside (it
//! answers with milter_default_action, tempfail), which is why the README
//! says so.
//!
//! Needs Postfix and root.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use support::session::{Smtp, message};
use support::{Proxy, serve_policy};
use testkit::{Postfix, SmtpService};

fn reply_to_one_message(port: u16) -> String {
    let mut c = Smtp::connect(port);
    c.cmd("EHLO client.example");
    let mail = c.cmd("MAIL FROM:<a@client.example>");
    if !mail.starts_with("250") {
        return mail;
    }
    c.cmd("RCPT TO:<ok@example.org>");
    c.cmd("DATA");
    c.send(format!("{}.\r\n", message("[reject] me", "body\r\n")).as_bytes());
    c.reply()
}

#[ignore = "needs postfix"]
#[test]
fn a_660_socket_in_a_setgid_postfix_directory_lets_postfix_in() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let builder = Postfix::prepare().unwrap();
    let milter_sock = builder.socket_path("policy.sock");
    let shared = builder.path().join("shared");
    let private = builder.path().join("private");
    for (d, group) in [(&shared, "postfix"), (&private, "root")] {
        std::fs::create_dir_all(d).unwrap();
        let st = Command::new("chgrp").arg(group).arg(d).status().unwrap();
        assert!(st.success());
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o2750)).unwrap();
    }
    let (good, bad) = (shared.join("record.sock"), private.join("record.sock"));
    // Beside the milter's own socket, where Postfix may look: a 660 socket
    // there is Postfix's only with --socket-group.
    let grouped = builder.socket_path("grouped.sock");
    let pf = builder
        .user("ok")
        .service(SmtpService::new("good").with_milters(format!("unix:{}", good.display())))
        .service(SmtpService::new("bad").with_milters(format!("unix:{}", bad.display())))
        .service(SmtpService::new("grouped").with_milters(format!("unix:{}", grouped.display())))
        .start()
        .unwrap();
    rt.block_on(serve_policy(&milter_sock, false));
    let to = format!("unix:{}", milter_sock.display());
    let start = |listen: &std::path::Path, dir: &str, extra: &[&str]| {
        let mut args = vec!["--socket-mode", "660"];
        args.extend_from_slice(extra);
        Proxy::start(listen, &to, &pf.path().join(dir), &args)
    };
    let _good = start(&good, "t-good", &[]);
    let _bad = start(&bad, "t-bad", &[]);
    let _grouped = start(&grouped, "t-grouped", &["--socket-group", "postfix"]);
    let mode = std::fs::metadata(&good).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let r = reply_to_one_message(pf.port("grouped"));
    assert!(
        r.starts_with("550 5.7.1 message refused by policy"),
        "Postfix reached the milter through the --socket-group postfix socket: {r}\n{}",
        pf.log()
    );

    let r = reply_to_one_message(pf.port("good"));
    assert!(
        r.starts_with("550 5.7.1 message refused by policy"),
        "Postfix reached the milter: {r}\n{}",
        pf.log()
    );
    let r = reply_to_one_message(pf.port("bad"));
    assert!(r.starts_with("451"), "Postfix could not connect: {r}");
    assert!(pf.log().contains("Permission denied"), "{}", pf.log());
}
