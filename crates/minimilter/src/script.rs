//! One message encoded once and replayed many times: the fast path of a load
//! generator (`minimilter bench`).
//!
//! [`run_message`](crate::run_message) builds a full transcript (every
//! step's record, the message as it would be delivered, the modifications
//! applied): right for `check`, but tens of microseconds of work per message
//! that a benchmark client spends instead of loading the milter. A
//! [`MessageScript`] holds every packet of one SMTP session and message,
//! encoded once for the options a milter negotiated, and
//! [`MilterClient::play_script`](crate::MilterClient::play_script) replays
//! it with one write per awaited answer and no allocation per message.
//!
//! It is still checked, and it still plays the message the way
//! `run_message` does:
//! - the packets come from the same step builders (macros, commands, header
//!   and body form) and the same encoders as `run_message`'s, so the bytes on
//!   the wire are the same;
//! - every step goes through
//!   [`MtaSession::send_encoded_step`](milter_proto::MtaSession::send_encoded_step),
//!   which decides as
//!   [`MtaSession::send_step`](milter_proto::MtaSession::send_step) does
//!   whether the step is sent (`NO_*`, skip) and whether its answer is
//!   awaited (`NR_*`);
//! - every response goes through
//!   [`MtaSession::receive`](milter_proto::MtaSession::receive), the same
//!   protocol checks as [`MilterClient::step`](crate::MilterClient::step),
//!   within the
//!   same per-step deadlines, and a reply nobody asked for is reported the
//!   same way;
//! - the decisions are `run_message`'s: a decisive answer ends the message
//!   (ABORT), a refusal at RCPT refuses that recipient only, a message with
//!   every recipient refused ends there, an answer at connect or HELO or a
//!   shutdown ends the session.
//!
//! What it leaves out is the bookkeeping: no transcript, and modifications
//! are handed to a callback, not applied to a message model. The ABORT that
//! follows end of message is queued and written in front of the next write
//! (the next message's first packets, or QUIT) rather than on its own: it has
//! no reply, so the milter sees the same byte stream.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use milter_proto::{CHUNK_SIZE, MilterOptions, Protocol, Step, encode_macros};

use crate::client::{ClientError, unsendable};
use crate::transaction::{
    MessageSpec, Outcome, PlannedStep, body_step, connect_step, data_step, end_of_headers_step,
    end_of_message_step, header_step, helo_step, mail_step, mta_model, rcpt_step, with_requested,
};

/// One step of a script: where its macro packet and its command lie in the
/// encoded bytes.
#[derive(Debug, Clone)]
pub(crate) struct ScriptStep {
    pub(crate) step: Step,
    pub(crate) macros: Range<usize>,
    pub(crate) command: Range<usize>,
    /// The entries of `qid_at` that lie in `macros`.
    qids: Range<usize>,
}

/// Every packet of one SMTP session with one message, encoded for one set
/// of negotiated options. See the module documentation.
#[derive(Debug, Clone)]
pub struct MessageScript {
    options: MilterOptions,
    /// The encoded packets, shared by every copy of the script: a copy
    /// per connection (each with its own queue id) costs no copy of a
    /// large message's body. The queue id is written into the outgoing
    /// bytes instead ([`MessageScript::append_macros`]).
    wire: Arc<[u8]>,
    pub(crate) steps: Vec<ScriptStep>,
    /// Index of MAIL: a later message on the same connection starts here.
    pub(crate) message_start: usize,
    /// Index of the first step after the recipients.
    pub(crate) rcpts_end: usize,
    /// Where the queue id (macro `i`) lies in `wire`, in order.
    qid_at: Vec<usize>,
    /// The queue id this copy sends ([`MessageScript::set_queue_id`]).
    qid: Vec<u8>,
}

/// How a replayed message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptResult {
    /// The verdict, as [`Transcript::outcome`](crate::Transcript).
    pub outcome: Outcome,
    /// The milter decided for the whole SMTP session (see
    /// [`Transcript::session_ended`](crate::Transcript)): close without QUIT.
    pub session_ended: bool,
    /// Recipients refused at RCPT.
    pub refused_rcpts: u32,
}

impl MessageScript {
    /// Encodes `spec` for a milter that negotiated `options`. Data the
    /// protocol cannot carry (a NUL byte in a string) is refused here with
    /// [`ClientError::Unsendable`], as `run_message` refuses it at its step.
    pub fn new(options: &MilterOptions, spec: &MessageSpec) -> Result<MessageScript, ClientError> {
        let mut script = MessageScript {
            options: options.clone(),
            wire: Arc::from(&[][..]),
            steps: Vec::new(),
            message_start: 0,
            rcpts_end: 0,
            qid_at: Vec::new(),
            qid: spec.queue_id.as_bytes().to_vec(),
        };
        let mut out = BytesMut::new();
        let qid = spec.queue_id.as_str();
        script.add(&mut out, spec, connect_step(spec), qid)?;
        script.add(&mut out, spec, helo_step(spec), qid)?;
        script.message_start = script.steps.len();
        script.add(&mut out, spec, mail_step(spec, qid), qid)?;
        for rcpt in &spec.rcpts {
            script.add(&mut out, spec, rcpt_step(spec, rcpt, qid), qid)?;
        }
        script.rcpts_end = script.steps.len();
        script.add(&mut out, spec, data_step(spec, qid), qid)?;
        let (model, _) = mta_model(spec);
        let leading_space = options.protocol.contains(Protocol::HEADER_LEADING_SPACE);
        for h in &model.headers {
            script.add(&mut out, spec, header_step(h, leading_space), qid)?;
        }
        script.add(&mut out, spec, end_of_headers_step(spec, qid), qid)?;
        let body = Bytes::from(model.milter_body());
        let mut offset = 0;
        while offset < body.len() {
            let end = (offset + CHUNK_SIZE).min(body.len());
            script.add(&mut out, spec, body_step(body.slice(offset..end)), qid)?;
            offset = end;
        }
        script.add(&mut out, spec, end_of_message_step(spec, qid), qid)?;
        script.wire = Arc::from(&out[..]);
        Ok(script)
    }

    fn add(
        &mut self,
        out: &mut BytesMut,
        spec: &MessageSpec,
        p: PlannedStep,
        qid: &str,
    ) -> Result<(), ClientError> {
        let p = with_requested(&self.options, spec, qid, p);
        let step = Step::from_command_code(p.command.code()).expect("a step command");
        if let Some(problem) = unsendable(&p.command, &p.macros) {
            return Err(ClientError::Unsendable {
                what: step.to_string(),
                problem,
            });
        }
        let start = out.len();
        encode_macros(&self.options, step, &p.macros, out);
        let macros = start..out.len();
        let first_qid = self.qid_at.len();
        self.find_queue_id(&out[macros.clone()], start, qid);
        p.command.encode(out);
        let command = macros.end..out.len();
        self.steps.push(ScriptStep {
            step,
            macros,
            command,
            qids: first_qid..self.qid_at.len(),
        });
        Ok(())
    }

    /// Records where macro `i` (or `{i}`) carries `qid` in one encoded
    /// macro packet (length, `D`, stage, then NUL-ended names and values),
    /// `base` being the packet's offset in the script.
    fn find_queue_id(&mut self, packet: &[u8], base: usize, qid: &str) {
        if qid.is_empty() || packet.len() < 6 {
            return;
        }
        let mut fields = packet[6..].split(|&b| b == 0);
        let mut at = base + 6;
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            let value_at = at + name.len() + 1;
            if matches!(name, b"i" | b"{i}") && value == qid.as_bytes() {
                self.qid_at.push(value_at);
            }
            at = value_at + value.len() + 1;
        }
    }

    /// The options this script was encoded for.
    pub fn options(&self) -> &MilterOptions {
        &self.options
    }

    /// Changes the queue id (macro `i`) in place for the next message.
    /// Only an id as long as the one the script was built with fits, and it
    /// must be printable ASCII; returns false (and changes nothing) otherwise.
    pub fn set_queue_id(&mut self, qid: &str) -> bool {
        if qid.len() != self.qid.len() || !qid.bytes().all(|b| b.is_ascii_graphic()) {
            return false;
        }
        self.qid.clear();
        self.qid.extend_from_slice(qid.as_bytes());
        true
    }

    /// Appends `s`'s macro packet to `out`, with this copy's queue id.
    pub(crate) fn append_macros(&self, s: &ScriptStep, out: &mut Vec<u8>) {
        let base = out.len();
        out.extend_from_slice(&self.wire[s.macros.clone()]);
        for &at in &self.qid_at[s.qids.clone()] {
            let from = base + (at - s.macros.start);
            out[from..from + self.qid.len()].copy_from_slice(&self.qid);
        }
    }

    /// Appends `s`'s command packet to `out`.
    pub(crate) fn append_command(&self, s: &ScriptStep, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.wire[s.command.clone()]);
    }
}
