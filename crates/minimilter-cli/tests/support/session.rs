//! One SMTP session of every kind an MTA test sends through `record`:
//! several transactions, RSET, a refused recipient then an accepted one,
//! 8BITMIME, BDAT, and a second session cut off in the middle of DATA.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A raw SMTP session: what the tests send byte for byte (BDAT chunks, a
/// DATA cut short), and the reply codes with their first line.
pub struct Smtp {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
    /// Every line of the last reply.
    pub full: String,
}

impl Smtp {
    pub fn connect(port: u16) -> Smtp {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut c = Smtp {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
            full: String::new(),
        };
        let greeting = c.reply();
        assert!(greeting.starts_with("220"), "{greeting}");
        c
    }

    /// One reply: its code and the text of its last line, queue ids blanked.
    pub fn reply(&mut self) -> String {
        self.full.clear();
        let last;
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap() == 0 {
                return "closed".into();
            }
            self.full.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                last = line.trim_end().to_owned();
                break;
            }
        }
        last.split_whitespace()
            .map(|t| if queue_id(t) { "QUEUE-ID" } else { t })
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }
}

/// Looks like a queue id: Postfix's (hex digits, which may all be decimal
/// ones) or Sendmail's (14 letters and digits, e.g. `6B79BkYt023647`).
fn queue_id(t: &str) -> bool {
    (8..=20).contains(&t.len())
        && t.chars().all(|c| c.is_ascii_alphanumeric())
        && t.chars().any(|c| c.is_ascii_digit())
        && (t.chars().all(|c| c.is_ascii_hexdigit()) || t.len() == 14)
}

/// A message with `subject` and `body` (CRLF line ends, no dot at a line
/// start).
pub fn message(subject: &str, body: &str) -> String {
    format!(
        "From: <s@client.example>\r\nTo: <ok@example.org>\r\nSubject: {subject}\r\n\
         Date: Thu, 1 Jan 2026 00:00:00 +0000\r\nMessage-ID: <{}@client.example>\r\n\r\n{body}",
        subject.replace(|c: char| !c.is_ascii_alphanumeric(), "")
    )
}

/// The session every protocol version gets: every SMTP answer, in order.
pub fn session(port: u16) -> Vec<String> {
    let mut c = Smtp::connect(port);
    let mut out = vec![c.cmd("EHLO client.example")];
    assert!(out[0].starts_with("250"), "{out:?}");
    let chunking = c.full.contains("CHUNKING");
    out.push(format!("CHUNKING offered: {chunking}"));
    // 1: plain, accepted.
    out.push(c.cmd("MAIL FROM:<a@client.example>"));
    out.push(c.cmd("RCPT TO:<ok@example.org>"));
    out.push(c.cmd("DATA"));
    c.send(format!("{}.\r\n", message("plain", "a body\r\n")).as_bytes());
    out.push(c.reply());
    // 2: RSET before DATA.
    out.push(c.cmd("MAIL FROM:<b@client.example>"));
    out.push(c.cmd("RCPT TO:<ok@example.org>"));
    out.push(c.cmd("RSET"));
    // 3: a refused recipient, then an accepted one; rejected at end of message.
    out.push(c.cmd("MAIL FROM:<c@client.example>"));
    out.push(c.cmd("RCPT TO:<refused@example.org>"));
    out.push(c.cmd("RCPT TO:<ok@example.org>"));
    out.push(c.cmd("DATA"));
    c.send(format!("{}.\r\n", message("[reject] spam", "spam\r\n")).as_bytes());
    out.push(c.reply());
    // 4: 8BITMIME with 8-bit text, modified.
    out.push(c.cmd("MAIL FROM:<d@client.example> BODY=8BITMIME"));
    out.push(c.cmd("RCPT TO:<ok@example.org>"));
    out.push(c.cmd("DATA"));
    c.send(
        format!(
            "{}.\r\n",
            message("[modify] 8bit", "gr\u{fc}\u{df}e, \u{e9}t\u{e9}\r\n")
        )
        .as_bytes(),
    );
    out.push(c.reply());
    // 5: BDAT in two chunks, if the MTA offers CHUNKING (Postfix does,
    // Sendmail 8.17 does not).
    if chunking {
        out.push(c.cmd("MAIL FROM:<e@client.example>"));
        out.push(c.cmd("RCPT TO:<ok@example.org>"));
        let m = message(
            "chunked",
            "first line\r\n.second line starts with a dot\r\n",
        );
        let (a, b) = m.as_bytes().split_at(m.len() / 2);
        c.send(format!("BDAT {}\r\n", a.len()).as_bytes());
        c.send(a);
        out.push(c.reply());
        c.send(format!("BDAT {} LAST\r\n", b.len()).as_bytes());
        c.send(b);
        out.push(c.reply());
    }
    out.push(c.cmd("QUIT"));
    // A second session: the client goes away in the middle of DATA.
    let mut c = Smtp::connect(port);
    out.push(c.cmd("EHLO client.example"));
    out.push(c.cmd("MAIL FROM:<f@client.example>"));
    out.push(c.cmd("RCPT TO:<ok@example.org>"));
    out.push(c.cmd("DATA"));
    c.send(message("cut", "the first half of the body\r\n").as_bytes());
    c.w.shutdown(std::net::Shutdown::Both).unwrap();
    out
}
