//! An MTA may start a new SMTP session on the same milter connection
//! (`K`, quit-new-connection). Each session that had no transaction gets a
//! connection-only transcript (transaction 0): both are kept, neither
//! overwrites the other.

mod support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use support::{Proxy, packet, read_packet, scratch, serve_policy, transcripts};

#[test]
fn two_sessions_without_a_transaction_on_one_connection_give_two_transcripts() {
    let base = scratch("new-session");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let milter_sock = base.join("policy.sock");
    rt.block_on(serve_policy(&milter_sock, false));
    let listen = base.join("record.sock");
    let dir = base.join("transcripts");
    let proxy = Proxy::start(
        &listen,
        &format!("unix:{}", milter_sock.display()),
        &dir,
        &[],
    );
    let mut s = UnixStream::connect(&listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut offer = Vec::new();
    for word in [6u32, 0x1ff, 0x1f_ffff] {
        offer.extend_from_slice(&word.to_be_bytes());
    }
    s.write_all(&packet(b'O', &offer)).unwrap();
    assert_eq!(read_packet(&mut s).unwrap().0, b'O');
    for (i, host) in ["first.example", "second.example"].iter().enumerate() {
        // The policy milter asks for neither connect nor HELO: the MTA
        // sends their macros only, and a connect-only transcript records
        // them.
        let pairs = format!("_\0{host} [192.0.2.{i}]\0j\0mx.example\0");
        let mut d = vec![b'C'];
        d.extend_from_slice(pairs.as_bytes());
        s.write_all(&packet(b'D', &d)).unwrap();
        s.write_all(&packet(b'D', b"Hclient_helo\0x\0")).unwrap();
        // Something the milter answers, so the session has a command.
        s.write_all(&packet(b'U', b"NOOP\0")).unwrap();
        let _ = read_packet(&mut s);
        if i == 0 {
            s.write_all(&packet(b'K', b"")).unwrap();
        }
    }
    s.write_all(&packet(b'Q', b"")).unwrap();
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(20);
    let texts = loop {
        let texts: Vec<String> = transcripts(&dir)
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        let both = texts.iter().any(|t| t.contains("first.example"))
            && texts.iter().any(|t| t.contains("second.example"));
        if both || Instant::now() > deadline {
            break texts;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        texts.iter().any(|t| t.contains("first.example")),
        "the first session's transcript was kept: {:?}\n{}",
        transcripts(&dir),
        proxy.log_text()
    );
    assert!(
        texts.iter().any(|t| t.contains("second.example")),
        "{texts:?}"
    );
    // Each is still a transcript replay reads.
    let (code, out) = support::batch::replay(&[
        dir.to_str().unwrap(),
        &format!("unix:{}", milter_sock.display()),
    ]);
    assert!(out.contains("2 transcripts replayed"), "{code} {out}");
    drop(proxy);
    let _ = std::fs::remove_dir_all(&base);
}
