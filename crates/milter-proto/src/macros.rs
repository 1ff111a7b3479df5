//! Macros received from the MTA, kept per stage.
//!
//! The MTA sends a `D` packet before a command, tagged with that command's
//! code. Values are kept until a command of the same or an earlier stage
//! arrives, which clears the later stages (libmilter's `mi_clr_macros`): the
//! `{rcpt_addr}` of the previous recipient must not be seen at MAIL of the next
//! message, but the connect-stage `j` stays for the whole connection.

use bytes::Bytes;

use crate::command::{MAX_MACRO_PAIRS, code};
use crate::payload::memchr_nul;

/// The command codes that carry macros, in protocol order. `L` (each header)
/// and `B` (each body chunk) are Postfix's per-event lists; `U` is unknown commands.
const ORDER: [u8; 10] = [
    code::CONNECT,
    code::HELO,
    code::MAIL,
    code::RCPT,
    code::DATA,
    code::HEADER,
    code::EOH,
    code::BODY,
    code::BODYEOB,
    code::UNKNOWN,
];

/// Most bytes of names and values kept for one stage. Real macro values are
/// short (a certificate subject is the longest, well under 1 KiB).
pub const MAX_STAGE_BYTES: usize = 64 * 1024;

fn slot(stage: u8) -> Option<usize> {
    ORDER.iter().position(|&c| c == stage)
}

/// A macro name without its braces: `{auth_authen}` and `auth_authen` (and
/// `{i}` and `i`) name the same macro, and MTAs and milters write both.
pub fn bare_name(name: &[u8]) -> &[u8] {
    name.strip_prefix(b"{")
        .and_then(|n| n.strip_suffix(b"}"))
        .unwrap_or(name)
}

/// Macro values by stage, copied out of the packets (see [`MacroStore::set`]).
#[derive(Debug, Default, Clone)]
pub struct MacroStore {
    slots: [Vec<(Bytes, Bytes)>; ORDER.len()],
}

impl MacroStore {
    /// An empty store.
    pub fn new() -> Self {
        MacroStore::default()
    }

    /// Stores the macros of a `D` packet, replacing earlier ones of that stage.
    /// Packets for stages that do not exist are dropped, as libmilter does.
    ///
    /// Names and values are copied out of the packet: a stored macro must not
    /// keep a whole read buffer (up to the packet limit) alive for the rest of
    /// the connection. They are copied into one buffer per stage (the pairs
    /// are slices of it), so a packet costs one allocation, not two per
    /// macro. At most [`MAX_STAGE_BYTES`] are kept per stage.
    pub fn set(&mut self, stage: u8, pairs: Vec<(Bytes, Bytes)>) {
        let Some(i) = slot(stage) else {
            return;
        };
        let slot = &mut self.slots[i];
        slot.clear();
        let mut kept = 0;
        let mut bytes = 0;
        for (name, value) in &pairs {
            if bytes + name.len() + value.len() > MAX_STAGE_BYTES {
                break;
            }
            bytes += name.len() + value.len();
            kept += 1;
        }
        let mut copy = Vec::with_capacity(bytes);
        for (name, value) in &pairs[..kept] {
            copy.extend_from_slice(name);
            copy.extend_from_slice(value);
        }
        let copy = Bytes::from(copy);
        let mut at = 0;
        for (name, value) in &pairs[..kept] {
            let (n, v) = (name.len(), value.len());
            slot.push((copy.slice(at..at + n), copy.slice(at + n..at + n + v)));
            at += n + v;
        }
    }

    /// Stores the macros of a `D` packet straight from its payload (stage
    /// byte, then NUL-terminated names and values), and returns the stage
    /// (0 for an empty payload). The same as [`Command::parse`] followed by
    /// [`MacroStore::set`], with the same leniency, without building the
    /// list of pairs in between: the runtime's path for every macro packet.
    ///
    /// [`Command::parse`]: crate::Command::parse
    pub fn set_packet(&mut self, payload: &[u8]) -> u8 {
        let Some((&stage, mut rest)) = payload.split_first() else {
            return 0;
        };
        let Some(i) = slot(stage) else {
            return stage;
        };
        // Pass 1: the pairs kept (offsets into `rest` of names and values),
        // by the rules of the parser and of `set`.
        let mut spans: [(u32, u32, u32, u32); 16] = [(0, 0, 0, 0); 16];
        let mut more: Vec<(u32, u32, u32, u32)> = Vec::new();
        let (mut pairs, mut kept, mut bytes, mut at) = (0usize, 0usize, 0usize, 0usize);
        let mut stop_keeping = false;
        while !rest.is_empty() && pairs < MAX_MACRO_PAIRS {
            let Some(n) = memchr_nul(rest) else { break };
            let after_name = &rest[n + 1..];
            if after_name.is_empty() {
                break;
            }
            let Some(v) = memchr_nul(after_name) else {
                break;
            };
            let (name_at, value_at) = (at, at + n + 1);
            at += n + 1 + v + 1;
            rest = &after_name[v + 1..];
            if n == 0 {
                continue;
            }
            pairs += 1;
            if stop_keeping || bytes + n + v > MAX_STAGE_BYTES {
                stop_keeping = true;
                continue;
            }
            bytes += n + v;
            let span = (name_at as u32, n as u32, value_at as u32, v as u32);
            if kept < spans.len() {
                spans[kept] = span;
            } else {
                more.push(span);
            }
            kept += 1;
        }
        // Pass 2: one copy of the kept bytes, the pairs slices of it.
        let data = &payload[1..];
        let all = || spans[..kept.min(spans.len())].iter().chain(more.iter());
        let mut copy = Vec::with_capacity(bytes);
        for &(na, nl, va, vl) in all() {
            copy.extend_from_slice(&data[na as usize..(na + nl) as usize]);
            copy.extend_from_slice(&data[va as usize..(va + vl) as usize]);
        }
        let copy = Bytes::from(copy);
        let slot = &mut self.slots[i];
        slot.clear();
        let mut off = 0;
        for &(_, nl, _, vl) in all() {
            let (n, v) = (nl as usize, vl as usize);
            slot.push((copy.slice(off..off + n), copy.slice(off + n..off + n + v)));
            off += n + v;
        }
        stage
    }

    /// Forgets the macros of every stage after `stage` (a command of `stage`
    /// is starting). `U` clears nothing: an unknown command may come anywhere.
    pub fn clear_after(&mut self, stage: u8) {
        if stage == code::UNKNOWN {
            return;
        }
        if let Some(i) = slot(stage) {
            for s in &mut self.slots[i + 1..] {
                s.clear();
            }
        }
    }

    /// Forgets the message macros (MAIL onwards), for an aborted message.
    pub fn clear_message(&mut self) {
        let i = slot(code::MAIL).expect("MAIL is a stage");
        for s in &mut self.slots[i..] {
            s.clear();
        }
    }

    /// Forgets everything (a new connection on the same socket).
    pub fn clear_all(&mut self) {
        for s in &mut self.slots {
            s.clear();
        }
    }

    /// Looks a macro up by name, with or without braces (`{auth_authen}` and
    /// `auth_authen` find the same value; so do `i` and `{i}`). The latest
    /// stage wins.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        let wanted = bare_name(name.as_bytes());
        self.slots
            .iter()
            .rev()
            .flatten()
            .find_map(|(n, v)| (bare_name(n) == wanted).then_some(v))
    }

    /// Like [`get`](Self::get), as text (lossy for non-UTF-8 values).
    pub fn get_str(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.get(name).map(|v| String::from_utf8_lossy(v))
    }

    /// Every macro currently known, latest stage first.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.slots.iter().rev().flatten().map(|(n, v)| (n, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&'static str, &'static str)]) -> Vec<(Bytes, Bytes)> {
        p.iter()
            .map(|(n, v)| {
                (
                    Bytes::from_static(n.as_bytes()),
                    Bytes::from_static(v.as_bytes()),
                )
            })
            .collect()
    }

    #[test]
    fn lookup_with_and_without_braces() {
        let mut m = MacroStore::new();
        m.set(
            b'C',
            pairs(&[("j", "mx.example.org"), ("{daemon_name}", "smtpd")]),
        );
        assert_eq!(&m.get("j").unwrap()[..], b"mx.example.org");
        assert_eq!(&m.get("{j}").unwrap()[..], b"mx.example.org");
        assert_eq!(&m.get("daemon_name").unwrap()[..], b"smtpd");
        assert_eq!(&m.get("{daemon_name}").unwrap()[..], b"smtpd");
        assert!(m.get("i").is_none());
    }

    #[test]
    fn earlier_stage_clears_later_ones() {
        let mut m = MacroStore::new();
        m.set(b'C', pairs(&[("j", "mx")]));
        m.set(b'M', pairs(&[("{mail_addr}", "a@b")]));
        m.set(b'R', pairs(&[("{rcpt_addr}", "c@d")]));
        m.set(b'E', pairs(&[("i", "ABC")]));
        m.clear_after(b'M');
        assert!(m.get("rcpt_addr").is_none());
        assert!(m.get("i").is_none());
        assert!(m.get("mail_addr").is_some());
        m.clear_message();
        assert!(m.get("mail_addr").is_none());
        assert!(m.get("j").is_some());
        m.clear_all();
        assert!(m.get("j").is_none());
    }

    #[test]
    fn latest_stage_wins_and_unknown_stages_are_dropped() {
        let mut m = MacroStore::new();
        m.set(b'M', pairs(&[("i", "early")]));
        m.set(b'E', pairs(&[("i", "late")]));
        assert_eq!(&m.get("i").unwrap()[..], b"late");
        m.set(b'Z', pairs(&[("x", "y")]));
        assert!(m.get("x").is_none());
    }

    #[test]
    fn set_packet_keeps_what_parse_and_set_keep() {
        use crate::{Command, Frame};
        // Deterministic pseudo-random packets: stages, NULs, empty names,
        // dangling names, long values, many pairs.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let stages = b"CHMRTLNBEUZ\0";
        for round in 0..3000 {
            let mut payload = Vec::new();
            if round % 97 != 0 {
                payload.push(stages[(next() % stages.len() as u64) as usize]);
                let parts = next() % if round % 50 == 0 { 600 } else { 12 };
                for _ in 0..parts {
                    let len = match next() % 10 {
                        0 => 0,
                        1 => (next() % 40_000) as usize,
                        _ => (next() % 12) as usize,
                    };
                    payload.extend((0..len).map(|_| b'a' + (next() % 26) as u8));
                    if next() % 20 != 0 {
                        payload.push(0);
                    }
                }
            }
            let mut a = MacroStore::new();
            let mut b = MacroStore::new();
            let stage_a = a.set_packet(&payload);
            let Ok(Command::Macro { stage, pairs }) = Command::parse(Frame {
                code: b'D',
                payload: Bytes::from(payload.clone()),
            }) else {
                panic!("macro packets always parse");
            };
            b.set(stage, pairs);
            assert_eq!(stage_a, stage, "round {round}");
            assert_eq!(a.slots, b.slots, "round {round}");
        }
    }
}
