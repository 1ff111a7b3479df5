//! `minimilter record` over TCP on both sides (the other tests use unix
//! sockets): packets relayed both ways, and a half close from the MTA
//! passed on to the milter, whose own close then reaches the MTA.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{minimilter, packet, read_packet, scratch};

/// Answers the offer and HELO; closes once the proxy half-closes.
fn scripted_milter() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                while let Some((code, _)) = read_packet(&mut s) {
                    let answer = match code {
                        b'O' => packet(b'O', &[0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]),
                        b'H' => packet(b'c', b""),
                        _ => continue,
                    };
                    if s.write_all(&answer).is_err() {
                        return;
                    }
                }
                // The end of the MTA's stream reached us: close ours.
            });
        }
    });
    port
}

#[test]
fn over_tcp_packets_pass_both_ways_and_a_half_close_is_passed_on() {
    let tmp = scratch("tcp");
    let milter = scripted_milter();
    // A free port for the proxy (bound and let go; nothing else here
    // takes ports between).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = tmp.join("record.log");
    let mut child = Command::new(minimilter())
        .args(["record", "--listen", &format!("inet:127.0.0.1:{port}")])
        .args(["--to", &format!("inet:127.0.0.1:{milter}"), "--dir"])
        .arg(tmp.join("t"))
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !text().contains("minimilter record: ") {
        assert!(Instant::now() < deadline, "not listening:\n{}", text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut offer = 6u32.to_be_bytes().to_vec();
    offer.extend(0x1FFu32.to_be_bytes());
    offer.extend(0x1F_FFFFu32.to_be_bytes());
    s.write_all(&packet(b'O', &offer)).unwrap();
    assert_eq!(read_packet(&mut s).map(|p| p.0), Some(b'O'));
    s.write_all(&packet(b'H', b"client.example\0")).unwrap();
    assert_eq!(read_packet(&mut s).map(|p| p.0), Some(b'c'));
    // The MTA ends its side only; the milter sees that end and closes,
    // and that close comes back to the MTA.
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .expect("the milter's close passed on");
    assert_eq!(rest, b"");
    assert!(matches!(child.try_wait(), Ok(None)), "{}", text());
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&tmp);
}
