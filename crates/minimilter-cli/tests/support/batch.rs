//! The mixed batch the MTA tests send over SMTP, and what they compare.

use std::process::Command as Process;

use testkit::{Reply, SmtpClient};

use super::minimilter;

/// (sender, recipients, subject).
pub const BATCH: [(&str, &[&str], &str); 7] = [
    ("a@client.example", &["ok@example.org"], "hello"),
    ("tempfail@client.example", &["ok@example.org"], "later"),
    (
        "b@client.example",
        &["refused@example.org", "ok@example.org"],
        "partly",
    ),
    ("c@client.example", &["ok@example.org"], "[reject] spam"),
    ("d@client.example", &["ok@example.org"], "[modify] me"),
    (
        "e@client.example",
        &["ok@example.org"],
        "[strict] borderline",
    ),
    ("f@client.example", &["ok@example.org"], "[discard] it"),
];

/// Looks like a queue id: Postfix's (hex digits, which may all be
/// decimal ones, e.g. `90988990578`) or Sendmail's (14 letters and digits,
/// e.g. `5B6HfA0q012345`).
fn queue_id(token: &str) -> bool {
    (10..=20).contains(&token.len())
        && token.chars().all(|c| c.is_ascii_alphanumeric())
        && token.chars().any(|c| c.is_ascii_digit())
}

/// A reply without what differs between two deliveries (the queue id).
pub fn normal(r: &Reply) -> String {
    let full = r.text();
    let text: Vec<&str> = full
        .split_whitespace()
        .map(|t| if queue_id(t) { "QUEUE-ID" } else { t })
        .collect::<Vec<_>>();
    format!("{} {}", r.code, text.join(" "))
}

/// Every SMTP answer the MTA gives to the batch on one session of `port`.
pub fn answers(port: u16) -> Vec<String> {
    let mut c = SmtpClient::connect(port).unwrap();
    assert!(c.ehlo("client.example").unwrap().is_positive());
    let mut out = Vec::new();
    for (from, rcpts, subject) in BATCH {
        let message = testkit::simple_message(from, rcpts[0], subject, "a test body\r\n");
        let t = c
            .transaction(
                &format!("<{from}>"),
                &rcpts
                    .iter()
                    .map(|r| format!("<{r}>"))
                    .collect::<Vec<_>>()
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                message,
            )
            .unwrap();
        let mut line = format!("{subject}: MAIL {}", normal(&t.mail));
        for r in &t.rcpts {
            line.push_str(&format!(" | RCPT {}", normal(r)));
        }
        if let Some(d) = &t.data {
            line.push_str(&format!(" | DATA {}", normal(d)));
        }
        out.push(line);
    }
    c.quit().unwrap();
    out
}

/// `minimilter replay ARGS...`: exit status and output.
pub fn replay(args: &[&str]) -> (i32, String) {
    let out = Process::new(minimilter())
        .arg("replay")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}
