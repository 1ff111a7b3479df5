//! `minimilter record` between a real Postfix and Debian's opendkim
//! signing mail, what administrators put a proxy in front of first: Postfix
//! answers alike with and without it, the signatures on the delivered mail
//! verify (Python's dkim module, with opendkim-genkey's public key), and
//! replay against the same opendkim finds no difference once the
//! signature's value (it holds the time) is left out of the comparison.
//! Also a 20 MB message through `record`, and `milter_default_action =
//! accept` with the milter down.
//!
//! Needs Postfix and root, opendkim, opendkim-tools and python3-dkim
//! (scripts/install-test-deps.sh).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::batch::replay;
use support::session::{Smtp, message};
use support::{Proxy, serve_policy, transcripts, wait_for_transcripts};
use testkit::{Postfix, SmtpService};

struct OpenDkim {
    child: Child,
}

impl Drop for OpenDkim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// opendkim signing example.com with selector `test`, on `dir/opendkim.sock`.
fn start_opendkim(dir: &Path) -> (OpenDkim, PathBuf) {
    for p in [
        "/usr/sbin/opendkim",
        "/usr/sbin/opendkim-genkey",
        "/usr/bin/python3",
    ] {
        assert!(
            Path::new(p).exists(),
            "needs {p} (scripts/install-test-deps.sh)"
        );
    }
    std::fs::create_dir_all(dir).unwrap();
    let o = Command::new("/usr/sbin/opendkim-genkey")
        .args(["-b", "2048", "-d", "example.com", "-s", "test", "-D"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let socket = dir.join("opendkim.sock");
    let conf = dir.join("opendkim.conf");
    std::fs::write(
        &conf,
        format!(
            "Syslog no\nMode s\nDomain example.com\nSelector test\nKeyFile {}\n\
             Canonicalization relaxed/simple\nSocket local:{}\nPidFile {}\nUMask 000\n\
             RequireSafeKeys false\n",
            dir.join("test.private").display(),
            socket.display(),
            dir.join("opendkim.pid").display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/sbin/opendkim")
        .args(["-f", "-x"])
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let d = OpenDkim { child };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "opendkim did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (d, socket)
}

/// `verified` or `failed`, by Python's dkim module with the key
/// opendkim-genkey wrote (no DNS).
fn verify(dir: &Path, message: &[u8]) -> String {
    let zone = std::fs::read_to_string(dir.join("test.txt")).unwrap();
    let (_, s) = zone.split_once('(').unwrap();
    let (s, _) = s.split_once(')').unwrap();
    let record: String = s.split('"').skip(1).step_by(2).collect();
    let script = r#"
import sys, dkim
record = sys.argv[1].encode()
def dnsfunc(name, timeout=5):
    return record
print('verified' if dkim.verify(sys.stdin.buffer.read(), dnsfunc=dnsfunc) else 'failed')
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script, &record])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message).unwrap();
    let o = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Sends `messages` (subject, body) from alice@example.com in one session.
fn send(port: u16, messages: &[(&str, String)]) -> Vec<String> {
    let mut c = Smtp::connect(port);
    let mut out = vec![c.cmd("EHLO client.example")];
    for (subject, body) in messages {
        out.push(c.cmd("MAIL FROM:<alice@example.com>"));
        out.push(c.cmd("RCPT TO:<ok@example.org>"));
        out.push(c.cmd("DATA"));
        let m =
            message(subject, body).replace("From: <s@client.example>", "From: <alice@example.com>");
        c.send(m.as_bytes());
        c.send(b".\r\n");
        out.push(c.reply());
    }
    out.push(c.cmd("QUIT"));
    out
}

#[ignore = "needs postfix and opendkim"]
#[test]
fn opendkim_behind_record_signs_what_postfix_delivers_and_replays_alike() {
    let builder = Postfix::prepare().unwrap();
    let (_dkim, dkim_sock) = start_opendkim(&builder.path().join("opendkim"));
    let dkim_dir = builder.path().join("opendkim");
    let proxy_sock = builder.socket_path("record.sock");
    let dir = builder.path().join("transcripts");
    let pf = builder
        .user("ok")
        .service(SmtpService::new("direct").with_milters(format!("unix:{}", dkim_sock.display())))
        .service(SmtpService::new("proxied").with_milters(format!("unix:{}", proxy_sock.display())))
        .start()
        .unwrap();
    let dkim = format!("unix:{}", dkim_sock.display());
    let proxy = Proxy::start(&proxy_sock, &dkim, &dir, &[]);
    let batch = [
        ("first", "Hello Bob,\r\n\r\nthe report.\r\n".to_owned()),
        ("second", "Two\r\nlines\r\n".to_owned()),
    ];
    let direct = send(pf.port("direct"), &batch);
    let proxied = send(pf.port("proxied"), &batch);
    assert_eq!(direct, proxied, "{}\n{}", proxy.log_text(), pf.log());
    let delivered = pf
        .wait_for_delivery("ok", 4, Duration::from_secs(30))
        .unwrap();
    for m in &delivered {
        assert!(m.contains("DKIM-Signature: v=1;"), "{m}");
        // Postfix delivers with LF line ends; the signature covers CRLF.
        let crlf = m.replace("\r\n", "\n").replace('\n', "\r\n");
        assert_eq!(verify(&dkim_dir, crlf.as_bytes()), "verified", "{m}");
    }
    let files = wait_for_transcripts(&dir, 2);
    assert_eq!(files.len(), 2, "{}", proxy.log_text());
    // The signature holds the time: once a second has passed, replaying it
    // differs unless its value is left out.
    std::thread::sleep(Duration::from_millis(1100));
    let d = dir.to_str().unwrap();
    let (code, out) = replay(&[d, &dkim]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DKIM-Signature"), "{out}");
    let (code, out) = replay(&["--ignore-value", "DKIM-Signature", d, &dkim]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("2 transcripts replayed, 2 the same, 0 different"),
        "{out}"
    );
}

#[ignore = "needs postfix"]
#[test]
fn a_20_mb_message_and_a_milter_down_with_default_action_accept() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let builder = Postfix::prepare().unwrap();
    let milter_sock = builder.socket_path("policy.sock");
    let milter = format!("unix:{}", milter_sock.display());
    let proxy_sock = builder.socket_path("record.sock");
    let nobody = builder.socket_path("nobody.sock");
    let down_proxy_sock = builder.socket_path("record-down.sock");
    let dir = builder.path().join("transcripts");
    let pf = builder
        .user("ok")
        .main_cf("message_size_limit", "40000000")
        .service(SmtpService::new("direct").with_milters(milter.clone()))
        .service(SmtpService::new("proxied").with_milters(format!("unix:{}", proxy_sock.display())))
        .service(
            SmtpService::new("down")
                .with_milters(format!("unix:{}", nobody.display()))
                .with_option("milter_default_action", "accept"),
        )
        .service(
            SmtpService::new("down-proxied")
                .with_milters(format!("unix:{}", down_proxy_sock.display()))
                .with_option("milter_default_action", "accept"),
        )
        .start()
        .unwrap();
    rt.block_on(serve_policy(&milter_sock, false));
    let proxy = Proxy::start(&proxy_sock, &milter, &dir, &[]);
    let _down_proxy = Proxy::start(
        &down_proxy_sock,
        &format!("unix:{}", nobody.display()),
        &dir.with_file_name("transcripts-down"),
        &[],
    );

    // 20 MB in lines of 100 bytes, then a [modify] marker the milter acts on.
    let line = format!("{}\r\n", "x".repeat(98));
    let body = line.repeat(200_000);
    let batch = [("[modify] big", body.clone())];
    let direct = send(pf.port("direct"), &batch);
    let proxied = send(pf.port("proxied"), &batch);
    assert_eq!(direct, proxied, "{}", proxy.log_text());
    assert!(direct[4].starts_with("250"), "{direct:?}");
    let files = wait_for_transcripts(&dir, 1);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let body_bytes: usize = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "command" && v["code"] == "B")
        .map(|v| v["body"].as_str().map_or(0, str::len))
        .sum();
    // Postfix sends the body with CRLF line ends, as written.
    assert_eq!(body_bytes, body.len(), "the body recorded whole");
    let (code, out) = replay(&[dir.to_str().unwrap(), &milter]);
    assert_eq!(code, 0, "{out}");
    let o = Command::new(support::minimilter())
        .args(["check", "--transcript"])
        .arg(&files[0])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("X-Policy: modified"));
    assert_eq!(transcripts(&dir).len(), 1);

    // The milter down, Postfix told to accept: the same with record in
    // front of it as without.
    let small = [("down", "a body\r\n".to_owned())];
    let down = send(pf.port("down"), &small);
    let down_proxied = send(pf.port("down-proxied"), &small);
    assert_eq!(down, down_proxied);
    assert!(
        down[4].starts_with("250"),
        "accepted without the milter: {down:?}"
    );
}
