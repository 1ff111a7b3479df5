//! NeoMutt as an oracle: what it displays of each message.
//!
//! One NeoMutt run reads all the messages from an MMDF mailbox (no `From `
//! lines to escape), tags them all and pipes them, decoded as its pager
//! shows them (`pipe_decode`: transfer encodings and charsets undone,
//! multipart/alternative chosen, message/rfc822 opened), into one file,
//! one separator after each message. It runs under `script`, which gives
//! it the terminal it needs. Nothing is decrypted (no PGP command is set,
//! GPGME is off). Every attachment NeoMutt does not show itself is shown
//! through a mailcap `cat` (`implicit_autoview`), so what a user could
//! open is in the output too. Needs `neomutt` and `script` (util-linux).

#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Written by NeoMutt after each message (`pipe_sep`).
const SEPARATOR: &str = "=====NEOMUTT-ORACLE-END-OF-MESSAGE=====";

/// Every type NeoMutt has no viewer of its own for goes through `cat`; the
/// text types it reads itself (`text/plain`, `text/enriched`, with their
/// charsets) are left to it. NeoMutt quotes what `%t` expands to, so the
/// test compares it unquoted.
const MAILCAP: &str = "\
text/*; cat; copiousoutput; test=test %t != text/plain -a %t != text/enriched
application/*; cat; copiousoutput
image/*; cat; copiousoutput
audio/*; cat; copiousoutput
video/*; cat; copiousoutput
model/*; cat; copiousoutput
font/*; cat; copiousoutput
message/*; cat; copiousoutput
";

/// What NeoMutt displays of each message, after the header it writes:
/// the body text, decoded, one string per message, in order.
pub fn displayed(messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let dir = tempfile::Builder::new()
        .prefix("neomutt-oracle-")
        .tempdir_in("/tmp")
        .unwrap();
    let d = dir.path();
    let mut mailbox = Vec::new();
    for m in messages {
        mailbox.extend_from_slice(b"\x01\x01\x01\x01\n");
        mailbox.extend_from_slice(m);
        if !m.ends_with(b"\n") {
            mailbox.push(b'\n');
        }
        mailbox.extend_from_slice(b"\x01\x01\x01\x01\n");
    }
    std::fs::write(d.join("mailbox"), &mailbox).unwrap();
    std::fs::write(d.join("mailcap"), MAILCAP).unwrap();
    let out = d.join("out");
    let dirs = d.display();
    std::fs::write(
        d.join("rc"),
        format!(
            "set folder=\"{dirs}\"\n\
             set spoolfile=\"{dirs}/mailbox\"\n\
             set mbox=\"{dirs}/mailbox\"\n\
             set record=\"\"\nset postponed=\"\"\nset move=no\nset beep=no\n\
             set header_cache=\"\"\nset message_cachedir=\"\"\n\
             set charset=\"utf-8\"\n\
             set crypt_use_gpgme=no\nset pgp_decrypt_command=\"\"\n\
             set pgp_verify_command=\"\"\nset pgp_decode_command=\"\"\n\
             set smime_decrypt_command=\"\"\nset smime_verify_command=\"\"\n\
             set wait_key=no\nset quit=yes\nset sort=mailbox-order\nset weed=no\n\
             set implicit_autoview=yes\nset mailcap_path=\"{dirs}/mailcap\"\n\
             set pipe_decode=yes\nset pipe_split=no\nset pipe_sep=\"\\n{SEPARATOR}\\n\"\n"
        ),
    )
    .unwrap();
    let keys = format!(
        "push \"<tag-pattern>~A<enter><tag-prefix><pipe-message>cat > {}<enter><quit>\"",
        out.display()
    );
    let neomutt = format!("neomutt -n -F {dirs}/rc -R -f {dirs}/mailbox -e '{keys}'");
    let mut child = Command::new("script")
        .args(["-qec", &neomutt, "/dev/null"])
        .env("HOME", d)
        .env("TERM", "xterm")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("`script` (util-linux) to run neomutt in a terminal");
    // A bound, not a timed assertion: NeoMutt waiting for a key would
    // hang the test run.
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("neomutt did not finish within 300 s (waiting for a key?)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut screen = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut screen)
        .unwrap();
    let screen = String::from_utf8_lossy(&screen);
    assert!(
        status.success() && !screen.contains("not found"),
        "neomutt failed ({status}); install the Debian package neomutt: {screen}"
    );
    let text = std::fs::read(&out).unwrap_or_else(|e| {
        panic!(
            "neomutt wrote no output ({e}); is the Debian package neomutt installed? \
             screen: {}",
            screen.chars().rev().take(600).collect::<String>()
        )
    });
    let sep = format!("\n{SEPARATOR}\n");
    let mut views: Vec<Vec<u8>> = split(&text, sep.as_bytes())
        .into_iter()
        .map(|piece| match find(piece, b"\n\n") {
            Some(at) => piece[at + 2..].to_vec(),
            None => Vec::new(),
        })
        .collect();
    // The separator follows the last message too.
    assert_eq!(
        views.pop().as_deref(),
        Some(&b""[..]),
        "output ends with a separator"
    );
    assert_eq!(
        views.len(),
        messages.len(),
        "neomutt piped {} messages of {}",
        views.len(),
        messages.len()
    );
    views
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn split<'a>(mut hay: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    while let Some(at) = find(hay, sep) {
        pieces.push(&hay[..at]);
        hay = &hay[at + sep.len()..];
    }
    pieces.push(hay);
    pieces
}

/// Whether `shown` holds the planted word (any case).
pub fn has_marker(shown: &[u8]) -> bool {
    shown.windows(6).any(|w| w.eq_ignore_ascii_case(b"marker"))
}
