//! `minimilter record`'s bounds on its relay threads: the connection limit,
//! the idle timeout (of the connection as a whole: one direction silent is
//! not idle), the write timeout, and the shutdown at SIGTERM (connections in
//! progress go on for a while, then are closed, and the process ends); and
//! its `--spin-us` option.
//! The milter is a scripted one on plain threads, so each test controls
//! exactly which side speaks when.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use support::{Proxy, packet, read_packet, scratch, wait_for_transcripts};

/// What Postfix offers: version 6, all actions and protocol flags.
fn offer() -> Vec<u8> {
    let mut payload = 6u32.to_be_bytes().to_vec();
    payload.extend(0x1FFu32.to_be_bytes());
    payload.extend(0x1F_FFFFu32.to_be_bytes());
    packet(b'O', &payload)
}

/// The scripted milter's answer to the offer: version 6, no actions, all
/// steps wanted.
fn negotiated() -> Vec<u8> {
    packet(b'O', &[0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0])
}

/// A milter that answers the offer and HELO (with continue) and nothing
/// else, until the proxy closes the connection.
fn scripted_milter(path: &Path) {
    let l = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                while let Some((code, _)) = read_packet(&mut s) {
                    let answer = match code {
                        b'O' => negotiated(),
                        b'H' => packet(b'c', b""),
                        _ => continue,
                    };
                    if s.write_all(&answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// Connects to the proxy and negotiates; the answer must come through.
fn negotiate(listen: &Path) -> UnixStream {
    let mut s = UnixStream::connect(listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&offer()).unwrap();
    let (code, _) = read_packet(&mut s).expect("the milter's negotiation comes through");
    assert_eq!(code, b'O');
    s
}

/// HELO through `s`: the milter's continue must come back.
fn helo(s: &mut UnixStream) {
    s.write_all(&packet(b'H', b"client.example\0")).unwrap();
    assert_eq!(
        read_packet(s).map(|p| p.0),
        Some(b'c'),
        "HELO answered through the proxy"
    );
}

/// What the peer reads until the proxy closes (at most 30 s).
fn rest(s: &mut UnixStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("the proxy closes the connection");
    got
}

/// As [`rest`], for a peer that was still writing when the proxy closed:
/// Linux then reports the close to one of the peer's calls as
/// `ECONNRESET` (the proxy's socket held unread bytes), and whether the
/// writing thread or the reading one gets it is a race. Either way the
/// proxy closed the connection.
fn rest_or_reset(s: &mut UnixStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("the proxy closes the connection, not {e}"),
        }
    }
}

#[test]
fn a_connection_beyond_the_limit_is_closed_unanswered_and_a_freed_place_is_reused() {
    let tmp = scratch("limit");
    let milter = tmp.join("milter.sock");
    scripted_milter(&milter);
    let listen = tmp.join("proxy.sock");
    let to = format!("unix:{}", milter.display());
    let proxy = Proxy::start(&listen, &to, &tmp.join("t"), &["--max-connections", "2"]);
    let first = negotiate(&listen);
    let mut second = negotiate(&listen);
    // A third is closed before anything is said, as with the milter down.
    let mut third = UnixStream::connect(&listen).unwrap();
    assert_eq!(rest(&mut third), b"", "closed with nothing said");
    assert!(
        proxy.log_text().contains("--max-connections"),
        "{}",
        proxy.log_text()
    );
    // Once the first ends, its place is free again (its threads end when
    // the milter has closed too, so allow a few tries).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut fourth = loop {
        let mut s = UnixStream::connect(&listen).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&offer());
        if let Some((b'O', _)) = read_packet(&mut s) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no place freed:\n{}",
            proxy.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    helo(&mut second);
    helo(&mut fourth);
    drop(proxy);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn the_idle_timeout_is_the_connections_not_one_directions() {
    let tmp = scratch("idle");
    let milter = tmp.join("milter.sock");
    scripted_milter(&milter);
    let listen = tmp.join("proxy.sock");
    let to = format!("unix:{}", milter.display());
    let mut proxy = Proxy::start(&listen, &to, &tmp.join("t"), &["--idle-timeout", "1"]);
    let mut s = negotiate(&listen);
    // The MTA keeps sending packets the milter does not answer, for more
    // than twice the idle timeout: the milter's direction is silent all
    // that time, yet the connection is not idle.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(300));
        s.write_all(&packet(b'D', b"Cj\0mx\0")).unwrap();
    }
    helo(&mut s);
    // Then nobody says anything: both sides are closed.
    assert_eq!(rest(&mut s), b"", "closed once idle");
    assert!(proxy.alive());
    drop(proxy);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn at_sigterm_connections_in_progress_go_on_then_are_closed_and_the_proxy_ends() {
    let tmp = scratch("term");
    let milter = tmp.join("milter.sock");
    scripted_milter(&milter);
    let listen = tmp.join("proxy.sock");
    let to = format!("unix:{}", milter.display());
    let mut proxy = Proxy::start(&listen, &to, &tmp.join("t"), &[]);
    let mut s = negotiate(&listen);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &proxy.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // No new connections are taken, ...
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&listen).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ... the one in progress is still relayed, ...
    helo(&mut s);
    // ... then closed, and the process ends by itself.
    assert_eq!(rest(&mut s), b"");
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(status) = proxy.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running:\n{}",
            proxy.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit}\n{}", proxy.log_text());
    assert!(
        !proxy.log_text().contains("panicked"),
        "{}",
        proxy.log_text()
    );
    drop(proxy);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn a_milter_that_stops_reading_ends_the_connection_at_the_write_timeout() {
    let tmp = scratch("stall");
    let milter = tmp.join("milter.sock");
    // Answers the offer and HELO, then reads nothing more for a minute.
    let l = UnixListener::bind(&milter).unwrap();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        for _ in 0..2 {
            let Some((code, _)) = read_packet(&mut s) else {
                return;
            };
            let answer = if code == b'O' {
                negotiated()
            } else {
                packet(b'c', b"")
            };
            let _ = s.write_all(&answer);
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    let listen = tmp.join("proxy.sock");
    let to = format!("unix:{}", milter.display());
    let dir = tmp.join("t");
    let mut proxy = Proxy::start(&listen, &to, &dir, &["--write-timeout", "1"]);
    let mut s = negotiate(&listen);
    helo(&mut s);
    // A transaction whose body is far more than the socket buffers hold:
    // the proxy's write to the milter waits, then gives up.
    let mut w = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        w.write_all(&packet(b'M', b"<a@example.com>\0")).unwrap();
        let chunk = packet(b'B', &[b'x'; 65_535]);
        for _ in 0..256 {
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    assert_eq!(rest_or_reset(&mut s), b"", "the MTA's connection ends");
    sender.join().unwrap();
    let t = wait_for_transcripts(&dir, 1);
    assert_eq!(t.len(), 1, "{}", proxy.log_text());
    let text = std::fs::read_to_string(&t[0]).unwrap();
    assert!(text.contains("write timeout"), "{text}");
    assert!(proxy.alive());
    drop(proxy);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn a_bad_spin_us_is_a_clear_error_and_the_option_is_in_the_help() {
    let tmp = scratch("spin");
    for bad in ["abc", "-1", "10001", "1.5"] {
        let out = std::process::Command::new(support::minimilter())
            .args(["record", "--listen", "unix:/nonexistent/p.sock"])
            .args(["--to", "unix:/nonexistent/m.sock", "--dir"])
            .arg(tmp.join("t"))
            .arg(format!("--spin-us={bad}"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--spin-us {bad}: {err}");
        assert!(err.contains("--spin-us"), "names the option: {err}");
    }
    assert!(!tmp.join("t").exists(), "nothing done for a bad option");
    let help = std::process::Command::new(support::minimilter())
        .args(["record", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--spin-us <US>"), "{help}");
    assert!(help.contains("[default: 0]"), "{help}");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn with_spinning_on_a_conversation_passes_as_without() {
    // A long spin: if the relay's wait ever held a packet back until the
    // spin ended, or lost one, the answers below would not match.
    let tmp = scratch("spinon");
    let milter = tmp.join("milter.sock");
    scripted_milter(&milter);
    let listen = tmp.join("proxy.sock");
    let to = format!("unix:{}", milter.display());
    let proxy = Proxy::start(&listen, &to, &tmp.join("t"), &["--spin-us", "10000"]);
    let mut s = negotiate(&listen);
    for _ in 0..50 {
        // Macros (no answer, the command follows), then HELO (answered).
        s.write_all(&packet(b'D', b"Hj\0mx\0")).unwrap();
        helo(&mut s);
    }
    drop(proxy);
    let _ = std::fs::remove_dir_all(&tmp);
}
