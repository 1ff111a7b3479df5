//! A milter that answers the negotiation with something it may not ask
//! for (a protocol flag the MTA did not offer): `record` relays it (the
//! MTA judges), and the transcript still holds the MTA's offer and the
//! milter's answer, so `check --transcript` can show the administrator
//! what went wrong instead of refusing the file.

mod support;

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Proxy, minimilter, packet, read_packet, scratch, transcripts};

fn words(w: [u32; 3]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_be_bytes()).collect()
}

#[test]
fn a_milter_that_breaks_the_negotiation_leaves_a_transcript_that_shows_it() {
    let base = scratch("bad-negotiation");
    let milter_sock = base.join("milter.sock");
    let listener = UnixListener::bind(&milter_sock).unwrap();
    // The milter: asks for NO_CONNECT (0x1), which the MTA will not offer,
    // then continues to everything until the MTA quits.
    let milter = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        while let Some((code, _)) = read_packet(&mut s) {
            match code {
                b'O' => s.write_all(&packet(b'O', &words([6, 1, 1]))).unwrap(),
                b'C' | b'H' => s.write_all(&packet(b'c', b"")).unwrap(),
                b'Q' => break,
                _ => {}
            }
        }
    });
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
    s.write_all(&packet(b'O', &words([6, 0x1ff, 0]))).unwrap();
    let (code, answer) = read_packet(&mut s).unwrap();
    assert_eq!(
        (code, answer),
        (b'O', words([6, 1, 1])),
        "relayed unchanged"
    );
    s.write_all(&packet(b'C', b"client.example\x004\x00\x19127.0.0.1\x00"))
        .unwrap();
    assert_eq!(read_packet(&mut s).unwrap().0, b'c');
    s.write_all(&packet(b'Q', b"")).unwrap();
    drop(s);
    milter.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while transcripts(&dir).is_empty() {
        assert!(Instant::now() < deadline, "{}", proxy.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let file = &transcripts(&dir)[0];
    let o = Command::new(minimilter())
        .args(["check", "--transcript"])
        .arg(file)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.is_empty(),
        "the file is readable: {err}\n{}",
        std::fs::read_to_string(file).unwrap()
    );
    assert!(out.contains("MTA offered protocol version 6"), "{out}");
    assert!(
        out.contains("milter (recorded): protocol version 6"),
        "{out}"
    );
    assert!(out.contains("NO_CONNECT"), "the milter's answer: {out}");
    assert!(
        out.contains("note (recorded): milter broke the protocol: milter asked for protocol flags"),
        "{out}"
    );
    drop(proxy);
    let _ = std::fs::remove_dir_all(&base);
}
