//! Cutting one milter connection into transaction transcripts, with no I/O:
//! the proxy hands over every packet it relays (already relayed: nothing
//! here can delay or alter the mail) and collects finished transcripts.
//!
//! The packets are understood with the protocol core's [`MtaSession`], fed
//! the MTA's offer and the milter's answer, so a response is attributed to
//! the step it answers exactly as the MTA attributes it. When the two sides
//! stop following the protocol (a command while an answer is still awaited,
//! a packet that does not parse), the recorder says so in the transcript and
//! records the remaining packets without interpreting them.
//!
//! A transaction starts at MAIL and ends at the answer to end of message, at
//! abort, at the next MAIL, at QUIT or when the connection closes. Each
//! transcript repeats the connection's negotiation and its connect and HELO
//! steps, so it can be replayed on its own. A connection that ends with no
//! transaction (refused at connect, say) still gives one transcript.

use bytes::Bytes;
use milter_proto::{Command, Dispatch, Frame, MtaEvent, MtaSession, Offer, OptNeg, Response, Step};
use serde_json::{Value, json};

use super::codec::{code_str, command_line, response_line};
use super::line::{Line, Val};
use super::{Answered, Bodies, SCHEMA, VERSION, Verdict};

/// Most bytes of events kept for one transaction (its connection's steps
/// outside transactions included) before the rest are left out (the
/// transcript then says it is truncated). Bounds memory against an MTA or
/// milter that streams without end.
pub const MAX_TRANSCRIPT_BYTES: usize = 64 * 1024 * 1024;

/// One finished transcript.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Connection number (as the proxy counts them).
    pub connection: u64,
    /// Transaction number within the connection (0: no transaction).
    pub transaction: u32,
    /// When the connection started (milliseconds since the Unix epoch).
    pub started_unix_ms: u64,
    /// The file's contents: JSON Lines.
    pub text: String,
    /// Its verdict, for logs.
    pub verdict: Verdict,
}

/// A `D` packet not yet matched with its command: when, stage, pairs.
type PendingMacros = (u64, u8, Vec<(Bytes, Bytes)>);

#[derive(Default)]
struct Txn {
    /// Events as JSON lines (each written once, as it happens).
    events: String,
    answers: Vec<Answered>,
    /// A message step was seen (a later MAIL starts the next transaction).
    has_step: bool,
}

/// Command codes of the message stages (MAIL to end of message).
const MESSAGE_STAGES: &[u8] = b"MRTLNBE";

/// The recorder of one connection.
pub struct Recorder {
    bodies: Bodies,
    connection: u64,
    started_unix_ms: u64,
    session: Option<MtaSession>,
    offer: Option<OptNeg>,
    offer_at: u64,
    refused: Option<Value>,
    /// The negotiation's line, written once per connection.
    negotiate: Option<String>,
    /// The connection's events outside transactions, as JSON lines.
    context: String,
    context_has_command: bool,
    context_answers: Vec<Answered>,
    txn: Option<Txn>,
    pending_macros: Option<PendingMacros>,
    awaiting: Option<(Step, u64)>,
    transactions: u32,
    written: u32,
    /// The number of the last transaction written (0: none yet), or
    /// accounted for as not recorded.
    last_written: u32,
    /// Transactions of this connection not recorded just before the next
    /// one (recording stopped and resumed), for its header line.
    not_recorded_before: u32,
    notes: Vec<String>,
    truncated: bool,
    finished: Vec<Finished>,
}

impl Recorder {
    /// A recorder for connection number `connection`, which started at
    /// `started_unix_ms` (milliseconds since the Unix epoch).
    pub fn new(connection: u64, started_unix_ms: u64, bodies: Bodies) -> Recorder {
        Recorder {
            bodies,
            connection,
            started_unix_ms,
            session: None,
            offer: None,
            offer_at: 0,
            refused: None,
            negotiate: None,
            context: String::new(),
            context_has_command: false,
            context_answers: Vec::new(),
            txn: None,
            pending_macros: None,
            awaiting: None,
            transactions: 0,
            written: 0,
            last_written: 0,
            not_recorded_before: 0,
            notes: Vec::new(),
            truncated: false,
            finished: Vec::new(),
        }
    }

    /// Notes that the proxy refused parts of the MTA's offer (bits it does
    /// not know how to relay), as `{"version": .., "actions": .., "protocol": ..}`.
    pub fn set_refused(&mut self, refused: Value) {
        self.refused = Some(refused);
    }

    /// The number of the last transaction written (0: none).
    pub fn last_written(&self) -> u32 {
        self.last_written
    }

    /// Recording starts again after a gap (a recorder fed only the
    /// connection's context): `transactions` were begun before this point,
    /// of which `not_recorded` right before it were not recorded; the next
    /// transcript says so, and numbers its transaction as the MTA counted.
    pub fn resume_after(&mut self, transactions: u32, not_recorded: u32) {
        self.transactions = transactions;
        // Those before are accounted for (written, or counted in the gap).
        self.last_written = transactions;
        self.not_recorded_before = not_recorded;
        self.finished.clear();
    }

    /// Transcripts finished so far, handed over once.
    pub fn take_finished(&mut self) -> Vec<Finished> {
        std::mem::take(&mut self.finished)
    }

    fn note(&mut self, text: String) {
        tracing::debug!(connection = self.connection, "{text}");
        if self.notes.len() < 32 {
            self.notes.push(text);
        }
    }

    /// Writes one event line to the transaction (or the connection's
    /// context), unless that would pass the size limit.
    fn push(&mut self, line: &mut Line<'_>, is_command: bool) {
        let used = self.context.len() + self.txn.as_ref().map_or(0, |t| t.events.len());
        let out = match &mut self.txn {
            Some(t) => &mut t.events,
            None => &mut self.context,
        };
        let before = out.len();
        line.write_line(out);
        if used + (out.len() - before) > MAX_TRANSCRIPT_BYTES {
            out.truncate(before);
            if !self.truncated {
                self.truncated = true;
                self.note("transcript truncated: size limit reached".into());
            }
            return;
        }
        if self.txn.is_none() {
            self.context_has_command |= is_command;
        }
    }

    /// A command line with no fields but its code.
    fn push_bare_command(&mut self, code: u8, at_us: u64) {
        let mut l = Line::new();
        l.set("type", Val::Str("command"))
            .set("at_us", Val::U64(at_us))
            .set("code", Val::Code(code));
        self.push(&mut l, true);
    }

    /// A response line: code, fields and the extras in `more`.
    fn push_response(&mut self, r: &Response, at_us: u64, more: &[(&'static str, Val<'_>)]) {
        let mut l = Line::new();
        response_line(r, self.bodies, &mut l);
        l.set("type", Val::Str("response"))
            .set("at_us", Val::U64(at_us));
        for (k, v) in more {
            l.set(k, *v);
        }
        self.push(&mut l, false);
    }

    fn answered(&mut self, a: Answered) {
        match &mut self.txn {
            Some(t) => t.answers.push(a),
            None => self.context_answers.push(a),
        }
    }

    /// A packet the MTA sent (and the proxy relayed), `at_us` microseconds
    /// into the connection.
    pub fn mta_sent(&mut self, frame: Frame, at_us: u64) {
        let code = frame.code;
        let command = match Command::parse(frame) {
            Ok(c) => c,
            Err(e) => {
                self.note(format!(
                    "MTA sent a '{}' packet that does not parse: {e}",
                    code_str(code)
                ));
                self.session = None;
                return;
            }
        };
        match command {
            Command::OptNeg(o) => {
                if self.offer.is_some() {
                    self.note("MTA repeated option negotiation".into());
                    self.session = None;
                    return;
                }
                let mut s = MtaSession::new(Offer {
                    version: o.version,
                    actions: o.actions,
                    protocol: o.protocol,
                });
                s.start();
                s.clear_output();
                self.session = Some(s);
                self.offer = Some(o);
                self.offer_at = at_us;
            }
            Command::Macro { stage, pairs } => {
                self.flush_orphan_macros();
                // The MTA sends MAIL's macros even when MAIL itself is
                // negotiated away: they mark the start of a message too.
                if stage == milter_proto::command::code::MAIL {
                    self.begin_message(at_us);
                } else if MESSAGE_STAGES.contains(&stage) {
                    self.ensure_txn();
                }
                self.pending_macros = Some((at_us, stage, pairs));
            }
            Command::Abort => {
                self.attach_macros_or_flush(code);
                if let Some(s) = &mut self.session {
                    s.send_abort();
                    s.clear_output();
                }
                self.awaiting = None;
                if self.txn.is_some() {
                    self.push_bare_command(code, at_us);
                    self.finish_txn("abort", at_us);
                }
            }
            Command::Quit | Command::QuitNewConnection => {
                self.flush_orphan_macros();
                if self.txn.is_some() {
                    self.push_bare_command(code, at_us);
                    self.finish_txn("quit", at_us);
                }
                self.finish_connection(at_us);
                if code == milter_proto::command::code::QUIT_NC {
                    // A new SMTP connection follows on the same milter
                    // connection: the negotiation stays, the rest starts over.
                    self.context.clear();
                    self.context_has_command = false;
                    self.context_answers.clear();
                    self.written = 0;
                    if let Some(s) = &mut self.session {
                        s.send_quit_new_connection();
                        s.clear_output();
                    }
                }
            }
            step_command => self.step(step_command, at_us),
        }
    }

    fn flush_orphan_macros(&mut self) {
        if let Some((at, stage, pairs)) = self.pending_macros.take() {
            let mut l = Line::new();
            l.set("type", Val::Str("macros"))
                .set("at_us", Val::U64(at))
                .set("stage", Val::Code(stage))
                .set("pairs", Val::Pairs(&pairs));
            self.push(&mut l, false);
        }
    }

    /// The pending macros, if they belong to command `code`.
    fn attach_macros_or_flush(&mut self, code: u8) -> Option<Vec<(Bytes, Bytes)>> {
        match &self.pending_macros {
            Some((_, stage, _)) if *stage == code => self.pending_macros.take().map(|(_, _, p)| p),
            Some(_) => {
                self.flush_orphan_macros();
                None
            }
            None => None,
        }
    }

    fn step(&mut self, command: Command, at_us: u64) {
        let code = command.code();
        let Some(step) = Step::from_command_code(code) else {
            self.note(format!("MTA sent '{}' after negotiation", code_str(code)));
            self.session = None;
            return;
        };
        let macros = self.attach_macros_or_flush(code);
        if step == Step::Mail {
            self.begin_message(at_us);
        }
        if step.is_message_step() {
            self.ensure_txn();
            if let Some(t) = &mut self.txn {
                t.has_step = true;
            }
        }
        let mut dispatch = None;
        if let Some(s) = &mut self.session {
            if s.is_awaiting() {
                self.note(format!(
                    "MTA sent {step} while an answer was still awaited; \
                     the rest is recorded without interpretation"
                ));
                self.session = None;
                self.awaiting = None;
            } else if s.options().is_some() {
                // The state change of sending it; the bytes went already.
                let d = s.send_encoded_step(step);
                dispatch = Some(d);
            }
        }
        let mut l = Line::new();
        command_line(&command, self.bodies, &mut l);
        l.set("type", Val::Str("command"))
            .set("at_us", Val::U64(at_us))
            .set("step", Val::Str(step.name()));
        if let Some(m) = &macros {
            l.set("macros", Val::Pairs(m));
        }
        match dispatch {
            Some(Dispatch::AwaitAnswer) => self.awaiting = Some((step, at_us)),
            Some(Dispatch::NotSent) => {
                l.set("unexpected", Val::Bool(true));
                self.note(format!(
                    "MTA sent {step}, which the milter negotiated away or skipped"
                ));
            }
            _ => {}
        }
        if let Some(d) = dispatch {
            let name = match d {
                Dispatch::AwaitAnswer => "answer",
                Dispatch::NoReply => "no-reply",
                Dispatch::NotSent => "not-negotiated",
            };
            l.set("reply", Val::Str(name));
        }
        self.push(&mut l, true);
    }

    /// A message starts: the previous transaction, if it saw a step and
    /// did not end, ends here.
    fn begin_message(&mut self, at_us: u64) {
        match &self.txn {
            Some(t) if !t.has_step => {}
            Some(_) => {
                self.finish_txn("next-mail", at_us);
                self.ensure_txn();
            }
            None => self.ensure_txn(),
        }
    }

    fn ensure_txn(&mut self) {
        if self.txn.is_none() {
            self.transactions += 1;
            self.txn = Some(Txn::default());
        }
    }

    /// A packet the milter sent (and the proxy relayed).
    pub fn milter_sent(&mut self, frame: Frame, at_us: u64) {
        let code = frame.code;
        let Some(session) = &mut self.session else {
            // Not understood: recorded as it parses, or noted.
            match Response::parse(frame) {
                Ok(r) => self.push_response(&r, at_us, &[]),
                Err(err) => self.note(format!(
                    "milter sent a '{}' packet that does not parse: {err}",
                    code_str(code)
                )),
            }
            return;
        };
        let parsed = Response::parse(frame.clone());
        match session.receive(frame) {
            Ok(MtaEvent::Negotiated(_)) => {
                let answer = match parsed {
                    Ok(Response::OptNeg(o)) => o,
                    _ => unreachable!("negotiated from an OptNeg packet"),
                };
                let offer = self
                    .offer
                    .as_ref()
                    .expect("a session exists only after the offer");
                let mut e = json!({
                    "type": "negotiate",
                    "at_us": self.offer_at,
                    "after_us": at_us.saturating_sub(self.offer_at),
                    "offer": optneg_json(offer),
                    "answer": optneg_json(&answer),
                });
                if let Some(r) = &self.refused {
                    e["refused"] = r.clone();
                }
                // A `Value` object writes its keys sorted, as lines do.
                self.negotiate = Some(e.to_string());
            }
            Ok(event) => {
                let Ok(response) = parsed else {
                    unreachable!("the session accepted it, so it parses")
                };
                let awaited = self.awaiting;
                let answer = match &event {
                    MtaEvent::Answer(a) => awaited.map(|(step, _)| Answered::new(step, a)),
                    _ => None,
                };
                let mut more = [("", Val::U64(0)); 3];
                let mut n = 0;
                if let Some((step, sent)) = awaited {
                    more[0] = ("step", Val::Str(step.name()));
                    more[1] = ("after_us", Val::U64(at_us.saturating_sub(sent)));
                    n = 2;
                }
                if let Some(a) = &answer {
                    more[n] = ("answer", Val::Str(&a.answer));
                    n += 1;
                }
                self.push_response(&response, at_us, &more[..n]);
                if let Some(a) = answer {
                    self.awaiting = None;
                    let step = a.step;
                    let decisive = a.answer != "continue" && a.answer != "skip";
                    self.answered(a);
                    if step == Step::EndOfMessage {
                        self.finish_txn("end-of-message", at_us);
                    } else if decisive && self.txn.is_none() && step != Step::Unknown {
                        // Connect or HELO decided for the whole session.
                        self.finish_connection(at_us);
                    }
                }
            }
            Err(violation) => {
                // An answer to the negotiation that breaks the rules is
                // still the negotiation this transcript is about: keep the
                // offer and the answer, with why, so the file can be read.
                if let (Ok(Response::OptNeg(answer)), Some(offer), None) =
                    (&parsed, &self.offer, &self.negotiate)
                {
                    let mut e = json!({
                        "type": "negotiate",
                        "at_us": self.offer_at,
                        "after_us": at_us.saturating_sub(self.offer_at),
                        "offer": optneg_json(offer),
                        "answer": optneg_json(answer),
                        "violation": violation.to_string(),
                    });
                    if let Some(r) = &self.refused {
                        e["refused"] = r.clone();
                    }
                    self.negotiate = Some(e.to_string());
                }
                if let Ok(r) = parsed {
                    let why = violation.to_string();
                    self.push_response(&r, at_us, &[("violation", Val::Str(&why))]);
                }
                self.note(format!("milter broke the protocol: {violation}"));
                self.session = None;
                self.awaiting = None;
            }
        }
    }

    /// The connection ended (`why`: `closed`, `idle`, an error).
    pub fn closed(&mut self, at_us: u64, why: &str) {
        self.flush_orphan_macros();
        if self.txn.is_some() {
            self.finish_txn(why, at_us);
        }
        self.finish_connection(at_us);
    }

    /// Writes a connection-only transcript if the connection had steps but
    /// no transaction was written for them.
    fn finish_connection(&mut self, at_us: u64) {
        if self.written == 0 && self.context_has_command {
            self.emit(0, None, "connection-end", at_us);
            self.written += 1;
        }
    }

    fn finish_txn(&mut self, reason: &str, at_us: u64) {
        self.flush_orphan_macros();
        let Some(txn) = self.txn.take() else {
            return;
        };
        self.emit(self.transactions, Some(txn), reason, at_us);
        self.written += 1;
        self.last_written = self.transactions;
    }

    fn emit(&mut self, transaction: u32, txn: Option<Txn>, reason: &str, at_us: u64) {
        let txn = txn.unwrap_or_default();
        let mut answers = self.context_answers.clone();
        answers.extend(txn.answers.iter().cloned());
        let verdict = Verdict::of(&answers);
        let mut text = String::with_capacity(
            self.context.len()
                + txn.events.len()
                + self.negotiate.as_ref().map_or(0, String::len)
                + 512,
        );
        let mut head = Line::new();
        head.set("type", Val::Str("transcript"))
            .set("schema", Val::Str(SCHEMA))
            .set("version", Val::U64(VERSION))
            .set(
                "recorder",
                Val::Str(concat!("minimilter record ", env!("CARGO_PKG_VERSION"))),
            )
            .set("started_unix_ms", Val::U64(self.started_unix_ms))
            .set("connection", Val::U64(self.connection))
            .set("transaction", Val::U64(transaction.into()))
            .set("bodies", Val::Str(self.bodies.name()));
        let gap = std::mem::take(&mut self.not_recorded_before);
        if gap > 0 {
            head.set("not_recorded_before", Val::U64(gap.into()));
        }
        head.write_line(&mut text);
        match &self.negotiate {
            Some(n) => {
                text.push_str(n);
                text.push('\n');
            }
            None => {
                if self.notes.len() < 32 {
                    self.notes.push("no option negotiation was seen".into());
                }
            }
        }
        text.push_str(&self.context);
        text.push_str(&txn.events);
        let mut end = Line::new();
        end.set("type", Val::Str("end"))
            .set("at_us", Val::U64(at_us))
            .set("reason", Val::Str(reason))
            .set("verdict", Val::Str(&verdict.name));
        if let Some(at) = verdict.at {
            end.set("at", Val::Str(at.name()));
        }
        if let Some(r) = &verdict.reply {
            end.set("reply", Val::Str(r));
        }
        if self.truncated {
            end.set("truncated", Val::Bool(true));
        }
        if !self.notes.is_empty() {
            end.set("notes", Val::Strs(&self.notes));
        }
        end.write_line(&mut text);
        // Notes and truncation belong to the transaction just written.
        self.notes.clear();
        self.truncated = false;
        self.finished.push(Finished {
            connection: self.connection,
            transaction,
            started_unix_ms: self.started_unix_ms,
            text,
            verdict,
        });
    }
}

/// An option negotiation packet as JSON.
pub fn optneg_json(o: &OptNeg) -> Value {
    let mut v = json!({
        "version": o.version,
        "actions": o.actions.bits(),
        "protocol": o.protocol.bits(),
    });
    if !o.macros.is_empty() {
        v["macros"] = Value::Array(
            o.macros
                .iter()
                .map(|m| json!({"stage": m.stage, "names": super::codec::bytes_to_json(&m.names)}))
                .collect(),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use milter_proto::{Actions, FrameDecoder, Protocol};

    fn frame_of(encode: impl FnOnce(&mut BytesMut)) -> Frame {
        let mut b = BytesMut::new();
        encode(&mut b);
        FrameDecoder::new(1 << 20).decode(&mut b).unwrap().unwrap()
    }

    fn cmd(c: Command) -> Frame {
        frame_of(|b| c.encode(b))
    }

    fn resp(r: Response) -> Frame {
        frame_of(|b| r.encode(b))
    }

    fn negotiated() -> Recorder {
        let mut r = Recorder::new(7, 1_000, Bodies::Keep);
        let offer = OptNeg {
            version: 6,
            actions: Actions::from_bits_retain(0x1FF),
            protocol: Protocol::from_bits_retain(0x1F_FFFF),
            macros: vec![],
        };
        r.mta_sent(cmd(Command::OptNeg(offer)), 1);
        let answer = OptNeg {
            version: 6,
            actions: Actions::ADD_HEADERS,
            protocol: Protocol::NO_HELO,
            macros: vec![],
        };
        r.milter_sent(resp(Response::OptNeg(answer)), 2);
        r
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn each_transaction_gets_the_connection_context_and_its_own_verdict() {
        let mut r = negotiated();
        r.mta_sent(
            cmd(Command::Connect {
                hostname: b("mx"),
                address: milter_proto::ConnectAddress::Unknown,
            }),
            3,
        );
        r.milter_sent(resp(Response::Continue), 4);
        for (i, verdict) in [Response::Continue, Response::Reject]
            .into_iter()
            .enumerate()
        {
            let t = 10 * (i as u64 + 1);
            r.mta_sent(
                cmd(Command::Macro {
                    stage: b'M',
                    pairs: vec![(b("i"), b("Q1"))],
                }),
                t,
            );
            r.mta_sent(cmd(Command::Mail(vec![b("<a@b>")])), t);
            r.milter_sent(resp(Response::Continue), t + 1);
            r.mta_sent(cmd(Command::EndOfMessage(Bytes::new())), t + 2);
            r.milter_sent(
                resp(Response::AddHeader {
                    name: b("X"),
                    value: b("y"),
                }),
                t + 3,
            );
            r.milter_sent(resp(verdict), t + 3);
        }
        r.closed(99, "closed");
        let f = r.take_finished();
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].verdict.name.as_str(), f[1].verdict.name.as_str()),
            ("accept", "reject")
        );
        for (n, t) in f.iter().enumerate() {
            assert_eq!(t.transaction, n as u32 + 1);
            let lines: Vec<Value> = t
                .text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(lines[0]["type"], "transcript");
            assert_eq!(lines[1]["type"], "negotiate");
            assert_eq!(lines[2]["code"], "C", "connect repeated in each");
            let mail = lines.iter().find(|l| l["code"] == "M").unwrap();
            assert_eq!(mail["macros"], json!([["i", "Q1"]]));
            assert_eq!(lines.iter().filter(|l| l["code"] == "M").count(), 1);
            assert_eq!(lines.last().unwrap()["reason"], "end-of-message");
        }
    }

    #[test]
    fn messages_are_cut_where_mail_is_negotiated_away() {
        // The milter takes only headers and end of message: the MTA sends
        // MAIL's macros but not MAIL itself, and those mark each message.
        let mut r = Recorder::new(1, 0, Bodies::Keep);
        r.mta_sent(
            cmd(Command::OptNeg(OptNeg {
                version: 6,
                actions: Actions::from_bits_retain(0x1FF),
                protocol: Protocol::from_bits_retain(0x1F_FFFF),
                macros: vec![],
            })),
            1,
        );
        r.milter_sent(
            resp(Response::OptNeg(OptNeg {
                version: 6,
                actions: Actions::ADD_HEADERS,
                protocol: Protocol::NO_CONNECT
                    | Protocol::NO_HELO
                    | Protocol::NO_MAIL
                    | Protocol::NO_RCPT
                    | Protocol::NO_BODY,
                macros: vec![],
            })),
            2,
        );
        r.mta_sent(
            cmd(Command::Macro {
                stage: b'C',
                pairs: vec![(b("j"), b("mx"))],
            }),
            3,
        );
        for (i, subject) in ["one", "two", "three"].into_iter().enumerate() {
            let t = 10 * (i as u64 + 1);
            for stage in [b'M', b'R'] {
                r.mta_sent(
                    cmd(Command::Macro {
                        stage,
                        pairs: vec![(b("i"), b(subject))],
                    }),
                    t,
                );
            }
            r.mta_sent(
                cmd(Command::Header {
                    name: b("Subject"),
                    value: b(subject),
                }),
                t,
            );
            r.milter_sent(resp(Response::Continue), t + 1);
            r.mta_sent(cmd(Command::EndOfMessage(Bytes::new())), t + 2);
            r.milter_sent(resp(Response::Continue), t + 3);
        }
        r.closed(99, "closed");
        let f = r.take_finished();
        assert_eq!(f.len(), 3, "one transcript per message");
        for (t, subject) in f.iter().zip(["one", "two", "three"]) {
            assert_eq!(t.verdict.name, "accept");
            assert_eq!(t.text.matches("\"Subject\"").count(), 1, "{}", t.text);
            assert!(t.text.contains(&format!("\"value\":\"{subject}\"")));
            assert!(t.text.contains("\"stage\":\"C\""), "connect macros in each");
        }
    }

    #[test]
    fn arbitrary_packets_from_both_sides_never_panic() {
        // A fixed-seed generator: packets of random codes and payloads,
        // valid ones mixed in, in any order from either side.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        const CODES: &[u8] = b"ABCDEHKLMNOQRTUacdefhimpqrsty+-24bl";
        for _ in 0..200 {
            let mut r = negotiated();
            for i in 0..200u64 {
                let code = CODES[(next() % CODES.len() as u64) as usize];
                let len = (next() % 24) as usize;
                let payload: Vec<u8> = (0..len).map(|_| (next() % 256) as u8).collect();
                let f = Frame {
                    code,
                    payload: Bytes::from(payload),
                };
                if next() % 2 == 0 {
                    r.mta_sent(f, i);
                } else {
                    r.milter_sent(f, i);
                }
            }
            r.closed(1_000, "closed");
            for t in r.take_finished() {
                for l in t.text.lines() {
                    let v: Value = serde_json::from_str(l).expect("every line is JSON");
                    // Written as serde_json writes a value: sorted keys,
                    // the same escapes (the format before lines were
                    // written by hand).
                    assert_eq!(l, v.to_string());
                }
            }
        }
    }
}
