//! A small blocking SMTP client for tests (loopback only, no TLS, no AUTH, no pipelining).
//!
//! Commands return the server's [`Reply`] whatever its code: a 4xx or 5xx is an
//! outcome a test wants to assert on, not an error. Only I/O failures, timeouts and
//! protocol violations (a malformed reply, the server hanging up) are `Err`.

use std::fmt;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::Error;

/// Default connect, read and write timeout of [`SmtpClient`].
///
/// Note that Postfix waits up to `milter_command_timeout` (30 s) and
/// `milter_content_timeout` (300 s) for a milter; a test that deliberately stalls a
/// milter should raise the client's timeout with [`SmtpClient::set_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most lines accepted in one multi-line reply, so a broken server cannot make a
/// test loop forever.
const MAX_REPLY_LINES: usize = 1000;

/// Which step of the SMTP dialogue a [`Reply`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The server's greeting (`220 ...`) after connecting.
    Greeting,
    /// `EHLO`.
    Ehlo,
    /// `HELO`.
    Helo,
    /// `XCLIENT` (on success the server answers with a fresh greeting).
    Xclient,
    /// `MAIL FROM`.
    MailFrom,
    /// `RCPT TO`.
    RcptTo,
    /// The `DATA` command itself (a positive answer is `354`).
    Data,
    /// The end of the message (the `.` line): the final verdict on the message.
    EndOfData,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// Any other command sent with [`SmtpClient::command`].
    Command,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::Helo => "HELO",
            Stage::Xclient => "XCLIENT",
            Stage::MailFrom => "MAIL FROM",
            Stage::RcptTo => "RCPT TO",
            Stage::Data => "DATA",
            Stage::EndOfData => "end of data",
            Stage::Rset => "RSET",
            Stage::Noop => "NOOP",
            Stage::Quit => "QUIT",
            Stage::Command => "command",
        })
    }
}

/// One (possibly multi-line) SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code, e.g. 250.
    pub code: u16,
    /// The text of each line, without the code and the `-`/space separator.
    pub lines: Vec<String>,
    /// The step of the dialogue this reply answers.
    pub stage: Stage,
}

impl Reply {
    /// The lines joined with `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// 2xx or 3xx: positive completion or positive intermediate (RFC 5321 4.2.1).
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 2xx: the command was accepted.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx: temporary failure (e.g. a milter tempfail or a dead milter).
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: permanent failure (e.g. a milter reject or an unknown user).
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The RFC 3463 enhanced status code at the start of the first line, e.g. `"5.7.1"`.
    pub fn enhanced_status(&self) -> Option<&str> {
        let first = self.lines.first()?;
        let token = first.split_whitespace().next()?;
        let parts: Vec<&str> = token.split('.').collect();
        let valid = parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        valid.then_some(token)
    }

    /// Parses one complete reply from its raw lines (CRLF already removed).
    fn parse(raw: &[String], stage: Stage) -> Result<Reply, Error> {
        let mut code = None;
        let mut lines = Vec::with_capacity(raw.len());
        for (i, line) in raw.iter().enumerate() {
            let (this_code, last, text) = parse_line(line).ok_or_else(|| {
                Error::new(format!("malformed SMTP reply line at {stage}: {line:?}"))
            })?;
            if *code.get_or_insert(this_code) != this_code {
                return Err(Error::new(format!(
                    "SMTP reply at {stage} mixes codes: {raw:?}"
                )));
            }
            if last != (i + 1 == raw.len()) {
                return Err(Error::new(format!(
                    "SMTP reply at {stage} has a misplaced final line: {raw:?}"
                )));
            }
            lines.push(text.to_owned());
        }
        let code = code.ok_or_else(|| Error::new(format!("empty SMTP reply at {stage}")))?;
        Ok(Reply { code, lines, stage })
    }
}

impl fmt::Display for Reply {
    /// `451 4.7.1 Service unavailable - try again later (at MAIL FROM)`; the lines of a
    /// multi-line reply are joined with ` / `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (at {})",
            self.code,
            self.lines.join(" / "),
            self.stage
        )
    }
}

/// Splits `250-text` / `250 text` / `250` into (code, is_last_line, text).
fn parse_line(line: &str) -> Option<(u16, bool, &str)> {
    let bytes = line.as_bytes();
    if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code: u16 = line[..3].parse().ok()?;
    if !(200..600).contains(&code) {
        return None;
    }
    match bytes.get(3) {
        None => Some((code, true, "")),
        Some(b' ') => Some((code, true, &line[4..])),
        Some(b'-') => Some((code, false, &line[4..])),
        Some(_) => None,
    }
}

/// Encodes an XCLIENT attribute value as xtext (RFC 3461 4): `+`, `=`, controls,
/// space and non-ASCII become `+HH`.
fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Converts a message to SMTP DATA wire format: every line ending (`\n` or `\r\n`)
/// becomes CRLF, lines starting with `.` get an extra `.` (RFC 5321 4.5.2), and the
/// terminating `.` line is appended. A missing final line break is supplied.
fn encode_data(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 20 + 8);
    if !message.is_empty() {
        let body = message.strip_suffix(b"\n").unwrap_or(message);
        for line in body.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A blocking SMTP client connected to a port on 127.0.0.1.
#[derive(Debug)]
pub struct SmtpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    greeting: Reply,
    timeout: Duration,
}

impl SmtpClient {
    /// Connects to `127.0.0.1:port` with [`DEFAULT_TIMEOUT`] and reads the greeting.
    ///
    /// A negative greeting (e.g. `554`) is not an error: see [`SmtpClient::greeting`].
    pub fn connect(port: u16) -> Result<SmtpClient, Error> {
        Self::connect_with_timeout(port, DEFAULT_TIMEOUT)
    }

    /// Like [`SmtpClient::connect`] with a custom connect/read/write timeout.
    pub fn connect_with_timeout(port: u16, timeout: Duration) -> Result<SmtpClient, Error> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| Error::io(format!("SMTP connect to {addr}"), e))?;
        let writer = stream
            .try_clone()
            .map_err(|e| Error::io("cloning SMTP stream", e))?;
        let mut client = SmtpClient {
            reader: BufReader::new(stream),
            writer,
            greeting: Reply {
                code: 0,
                lines: Vec::new(),
                stage: Stage::Greeting,
            },
            timeout,
        };
        client.set_timeout(timeout)?;
        client.greeting = client.read_reply(Stage::Greeting)?;
        Ok(client)
    }

    /// The greeting the server sent on connect.
    pub fn greeting(&self) -> &Reply {
        &self.greeting
    }

    /// Sets the read and write timeout for all later commands.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        self.timeout = timeout;
        self.writer
            .set_read_timeout(Some(timeout))
            .and_then(|()| self.writer.set_write_timeout(Some(timeout)))
            .map_err(|e| Error::io("setting SMTP socket timeout", e))
    }

    /// `EHLO name`.
    pub fn ehlo(&mut self, name: &str) -> Result<Reply, Error> {
        self.command_at(&format!("EHLO {name}"), Stage::Ehlo)
    }

    /// `HELO name`.
    pub fn helo(&mut self, name: &str) -> Result<Reply, Error> {
        self.command_at(&format!("HELO {name}"), Stage::Helo)
    }

    /// `XCLIENT NAME=value ...`: makes Postfix (and so the milter) see another client
    /// address, name, HELO name etc. (`ADDR`, `NAME`, `PORT`, `HELO`, `PROTO`, `LOGIN`,
    /// `DESTADDR`, `DESTPORT`). Values are xtext-encoded here. The instance started by
    /// [`crate::Postfix`] allows XCLIENT from 127.0.0.0/8.
    ///
    /// On success the server answers with a fresh `220` greeting, and the client must
    /// send `EHLO` again.
    pub fn xclient(&mut self, attributes: &[(&str, &str)]) -> Result<Reply, Error> {
        let mut line = String::from("XCLIENT");
        for (name, value) in attributes {
            line.push(' ');
            line.push_str(name);
            line.push('=');
            line.push_str(&xtext(value));
        }
        self.command_at(&line, Stage::Xclient)
    }

    /// `MAIL FROM:<from>`. An empty `from` sends the null sender `<>`. If `from` starts
    /// with `<` it is sent as is, so ESMTP parameters can follow (`"<a@b> SIZE=100"`).
    pub fn mail(&mut self, from: &str) -> Result<Reply, Error> {
        self.command_at(&format!("MAIL FROM:{}", bracket(from)), Stage::MailFrom)
    }

    /// `RCPT TO:<to>` (same bracketing rule as [`SmtpClient::mail`]).
    pub fn rcpt(&mut self, to: &str) -> Result<Reply, Error> {
        self.command_at(&format!("RCPT TO:{}", bracket(to)), Stage::RcptTo)
    }

    /// Sends `DATA`; if the server answers `354`, sends `message` (line endings
    /// normalised to CRLF, dot-stuffed, terminated with `.`) and returns the final reply
    /// ([`Stage::EndOfData`]). Any other answer to `DATA` is returned as is
    /// ([`Stage::Data`]) without sending the message.
    pub fn data(&mut self, message: impl AsRef<[u8]>) -> Result<Reply, Error> {
        let reply = self.command_at("DATA", Stage::Data)?;
        if reply.code != 354 {
            return Ok(reply);
        }
        let wire = encode_data(message.as_ref());
        self.writer
            .write_all(&wire)
            .and_then(|()| self.writer.flush())
            .map_err(|e| Error::io("sending message data", e))?;
        self.read_reply(Stage::EndOfData)
    }

    /// One transaction on the open session: `MAIL FROM`, then `RCPT TO` for
    /// every recipient (all of them, whatever each answer, so a test sees how
    /// a mixed transaction was split), then `DATA` with `message` if at least
    /// one recipient was accepted, else `RSET`. Stops after `MAIL FROM` if
    /// that is refused.
    pub fn transaction(
        &mut self,
        from: &str,
        to: &[&str],
        message: impl AsRef<[u8]>,
    ) -> Result<Transaction, Error> {
        let mail = self.mail(from)?;
        if !mail.is_positive() {
            return Ok(Transaction {
                mail,
                rcpts: Vec::new(),
                data: None,
            });
        }
        let rcpts = to
            .iter()
            .map(|t| self.rcpt(t))
            .collect::<Result<Vec<_>, _>>()?;
        let data = if rcpts.iter().any(Reply::is_positive) {
            Some(self.data(message)?)
        } else {
            self.rset()?;
            None
        };
        Ok(Transaction { mail, rcpts, data })
    }

    /// `RSET`.
    pub fn rset(&mut self) -> Result<Reply, Error> {
        self.command_at("RSET", Stage::Rset)
    }

    /// `NOOP`.
    pub fn noop(&mut self) -> Result<Reply, Error> {
        self.command_at("NOOP", Stage::Noop)
    }

    /// `QUIT`; consumes the client (the server closes the connection).
    pub fn quit(mut self) -> Result<Reply, Error> {
        self.command_at("QUIT", Stage::Quit)
    }

    /// Sends any single command line (without CRLF) and reads the reply.
    pub fn command(&mut self, line: &str) -> Result<Reply, Error> {
        self.command_at(line, Stage::Command)
    }

    fn command_at(&mut self, line: &str, stage: Stage) -> Result<Reply, Error> {
        if line.contains(['\r', '\n']) {
            return Err(Error::new(format!(
                "SMTP command for {stage} contains a line break: {line:?}"
            )));
        }
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .and_then(|()| self.writer.flush())
            .map_err(|e| Error::io(format!("sending SMTP {stage} command"), e))?;
        self.read_reply(stage)
    }

    fn read_reply(&mut self, stage: Stage) -> Result<Reply, Error> {
        let mut raw = Vec::new();
        loop {
            let mut buf = Vec::new();
            let n = self
                .reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| match e.kind() {
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => Error::new(format!(
                        "no complete SMTP reply at {stage} within {:?} (read so far: {raw:?})",
                        self.timeout
                    )),
                    _ => Error::io(format!("reading SMTP reply at {stage}"), e),
                })?;
            if n == 0 {
                return Err(Error::new(format!(
                    "server closed the connection while a reply at {stage} was expected{}",
                    if raw.is_empty() {
                        String::new()
                    } else {
                        format!(" (partial reply: {raw:?})")
                    }
                )));
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            let last = parse_line(&line).is_none_or(|(_, last, _)| last);
            raw.push(line);
            if last {
                break;
            }
            if raw.len() >= MAX_REPLY_LINES {
                return Err(Error::new(format!(
                    "SMTP reply at {stage} exceeds {MAX_REPLY_LINES} lines"
                )));
            }
        }
        Reply::parse(&raw, stage)
    }
}

/// The replies of one [`SmtpClient::transaction`].
#[derive(Debug, Clone)]
pub struct Transaction {
    /// The answer to `MAIL FROM`.
    pub mail: Reply,
    /// The answer to each `RCPT TO`, in order (empty if `MAIL FROM` was refused).
    pub rcpts: Vec<Reply>,
    /// The final answer to `DATA`, `None` when no recipient was accepted.
    pub data: Option<Reply>,
}

fn bracket(address: &str) -> String {
    if address.starts_with('<') {
        address.to_owned()
    } else {
        format!("<{address}>")
    }
}

/// Runs one whole SMTP session against `127.0.0.1:port`: greeting, `EHLO`, `MAIL FROM`,
/// one `RCPT TO` per recipient, `DATA`, `QUIT`.
///
/// Stops at the first reply that is not a success (2xx; `354` for `DATA`) and returns
/// it; otherwise returns the reply to the end of data. Check [`Reply::stage`] to see
/// where a rejection happened. `Err` only for I/O or protocol failures.
pub fn send_message(
    port: u16,
    from: &str,
    to: &[&str],
    message: impl AsRef<[u8]>,
) -> Result<Reply, Error> {
    let mut client = SmtpClient::connect(port)?;
    if !client.greeting().is_success() {
        return Ok(client.greeting().clone());
    }
    let outcome = session(&mut client, from, to, message.as_ref())?;
    // Best effort: the verdict is already known.
    let _ = client.quit();
    Ok(outcome)
}

fn session(
    client: &mut SmtpClient,
    from: &str,
    to: &[&str],
    message: &[u8],
) -> Result<Reply, Error> {
    let reply = client.ehlo("testkit.localhost")?;
    if !reply.is_success() {
        return Ok(reply);
    }
    let reply = client.mail(from)?;
    if !reply.is_success() {
        return Ok(reply);
    }
    for rcpt in to {
        let reply = client.rcpt(rcpt)?;
        if !reply.is_success() {
            return Ok(reply);
        }
    }
    client.data(message)
}

/// Builds a minimal RFC 5322 message with `From`, `To`, `Subject`, `Date` and
/// `Message-ID` headers, and `body` (LF line endings are fine; [`SmtpClient::data`]
/// converts them).
pub fn simple_message(from: &str, to: &str, subject: &str, body: &str) -> String {
    let id = crate::unique_id("testkit");
    let mut msg = format!(
        "From: <{from}>\nTo: <{to}>\nSubject: {subject}\nDate: Thu, 1 Jan 2026 00:00:00 +0000\nMessage-ID: <{id}@testkit.invalid>\n\n{body}"
    );
    if !msg.ends_with('\n') {
        msg.push('\n');
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn parses_single_and_multi_line_replies() {
        let r = Reply::parse(&["250 ok".into()], Stage::Rset).unwrap();
        assert_eq!((r.code, r.text()), (250, "ok".to_owned()));
        let r = Reply::parse(
            &[
                "250-mx.example".into(),
                "250-PIPELINING".into(),
                "250 8BITMIME".into(),
            ],
            Stage::Ehlo,
        )
        .unwrap();
        assert_eq!(r.lines, ["mx.example", "PIPELINING", "8BITMIME"]);
        assert_eq!(r.text(), "mx.example\nPIPELINING\n8BITMIME");
        let r = Reply::parse(&["354".into()], Stage::Data).unwrap();
        assert_eq!((r.code, r.lines.len()), (354, 1));
        assert!(r.is_positive() && !r.is_success());
    }

    #[test]
    fn rejects_malformed_replies() {
        assert!(Reply::parse(&["25 ok".into()], Stage::Rset).is_err());
        assert!(Reply::parse(&["250-a".into(), "251 b".into()], Stage::Rset).is_err());
        assert!(Reply::parse(&["250x".into()], Stage::Rset).is_err());
        assert!(Reply::parse(&["hello".into()], Stage::Rset).is_err());
    }

    #[test]
    fn classifies_and_extracts_enhanced_status() {
        let r = Reply::parse(
            &["451 4.7.1 Service unavailable - try again later".into()],
            Stage::MailFrom,
        )
        .unwrap();
        assert!(r.is_transient() && !r.is_positive());
        assert_eq!(r.enhanced_status(), Some("4.7.1"));
        assert_eq!(
            r.to_string(),
            "451 4.7.1 Service unavailable - try again later (at MAIL FROM)"
        );
        let r = Reply::parse(&["550 no such user".into()], Stage::RcptTo).unwrap();
        assert!(r.is_permanent());
        assert_eq!(r.enhanced_status(), None);
    }

    #[test]
    fn data_encoding_normalises_and_dot_stuffs() {
        assert_eq!(encode_data(b""), b".\r\n");
        assert_eq!(encode_data(b"a\nb"), b"a\r\nb\r\n.\r\n");
        assert_eq!(
            encode_data(b"a\r\n.b\n..\n.\n"),
            b"a\r\n..b\r\n...\r\n..\r\n.\r\n"
        );
        assert_eq!(encode_data(b"x\n\n"), b"x\r\n\r\n.\r\n");
    }

    #[test]
    fn xtext_encodes_specials() {
        assert_eq!(xtext("mail.example.com"), "mail.example.com");
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
    }

    /// A scripted fake server: checks the client's wire format and reply handling.
    #[test]
    fn send_message_against_fake_server() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            fn expect(
                reader: &mut BufReader<TcpStream>,
                stream: &mut TcpStream,
                want: &str,
                answer: &str,
            ) {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                assert_eq!(line, format!("{want}\r\n"));
                stream.write_all(answer.as_bytes()).unwrap();
            }
            stream.write_all(b"220-fake\r\n220 ready\r\n").unwrap();
            expect(
                &mut reader,
                &mut stream,
                "EHLO testkit.localhost",
                "250-fake\r\n250 8BITMIME\r\n",
            );
            expect(
                &mut reader,
                &mut stream,
                "MAIL FROM:<a@example.org>",
                "250 ok\r\n",
            );
            expect(
                &mut reader,
                &mut stream,
                "RCPT TO:<b@example.org>",
                "250 ok\r\n",
            );
            expect(&mut reader, &mut stream, "DATA", "354 go\r\n");
            let mut data = Vec::new();
            while !data.ends_with(b"\r\n.\r\n") {
                let mut byte = [0u8];
                reader.read_exact(&mut byte).unwrap();
                data.push(byte[0]);
            }
            assert_eq!(data, b"Subject: x\r\n\r\n..dot\r\n.\r\n");
            stream.write_all(b"550 5.7.1 no thanks\r\n").unwrap();
            expect(&mut reader, &mut stream, "QUIT", "221 bye\r\n");
        });
        let reply = send_message(
            port,
            "a@example.org",
            &["b@example.org"],
            "Subject: x\n\n.dot\n",
        )
        .unwrap();
        assert_eq!(reply.code, 550);
        assert_eq!(reply.stage, Stage::EndOfData);
        assert_eq!(reply.enhanced_status(), Some("5.7.1"));
        server.join().unwrap();
    }

    #[test]
    fn closed_connection_is_an_error() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || drop(listener.accept().unwrap()));
        let err = SmtpClient::connect(port).unwrap_err();
        assert!(err.message().contains("closed"), "{err}");
        server.join().unwrap();
    }
}
