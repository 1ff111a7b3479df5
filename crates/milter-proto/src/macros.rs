//! Macros received from the MTA, kept per stage.
//!
//! The MTA sends a `D` packet before a command, tagged with that command's
//! code. Values are kept until a command of the same or an earlier stage
//! arrives, which clears the later stages (libmilter's `mi_clr_macros`): the
//! `{rcpt_addr}` of the previous recipient must not be seen at MAIL of the next
//! message, but the connect-stage `j` stays for the whole connection.

use std::sync::OnceLock;

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
///
/// Each stage keeps its pairs in one buffer of its own, as length-prefixed
/// names and values back to back, and keeps that buffer from packet to
/// packet: a connection receives several macro packets per message, and
/// storing one costs a copy, not allocations. The `Bytes` that
/// [`MacroStore::get`] and [`MacroStore::iter`] hand out are made only when
/// asked for, once per stored packet, since most filters look at few macros
/// or none. The cache of those is allocated on first use, so an idle
/// connection pays for ten empty buffers and one pointer.
#[derive(Debug, Default, Clone)]
pub struct MacroStore {
    /// Per stage: for each pair, name length and value length (`u32`, native
    /// order), then the name and the value.
    slots: [Vec<u8>; ORDER.len()],
    /// Per stage, its pairs as `Bytes` (slices of one copy of the stage).
    cache: OnceLock<Box<[OnceLock<Pairs>; ORDER.len()]>>,
}

/// A stage's pairs as `Bytes`.
type Pairs = Box<[(Bytes, Bytes)]>;

/// A stage buffer above this is given back when the stage is cleared, so a
/// connection does not keep the largest macro packet it ever got.
const KEEP_CAPACITY: usize = 1024;

/// Bytes in front of each pair in a stage buffer.
const PAIR_HEADER: usize = 8;

fn push_pair(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.extend_from_slice(&(name.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&(value.len() as u32).to_ne_bytes());
    buf.extend_from_slice(name);
    buf.extend_from_slice(value);
}

/// The pairs of a stage buffer, each with the offsets of its name and value.
fn pairs_of(buf: &[u8]) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let header = buf.get(at..at + PAIR_HEADER)?;
        let n = u32::from_ne_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let v = u32::from_ne_bytes(header[4..].try_into().expect("4 bytes")) as usize;
        let name_at = at + PAIR_HEADER;
        at = name_at + n + v;
        Some((name_at, n, name_at + n, v))
    })
}

impl PartialEq for MacroStore {
    /// Same macros by stage (the cache is not compared).
    fn eq(&self, other: &Self) -> bool {
        self.slots == other.slots
    }
}

impl MacroStore {
    /// An empty store.
    pub fn new() -> Self {
        MacroStore::default()
    }

    /// Empties stage `i` for new pairs, and forgets its cached `Bytes`.
    fn reset(&mut self, i: usize) -> &mut Vec<u8> {
        if let Some(cache) = self.cache.get_mut() {
            cache[i].take();
        }
        let buf = &mut self.slots[i];
        if buf.capacity() > KEEP_CAPACITY {
            *buf = Vec::new();
        } else {
            buf.clear();
        }
        buf
    }

    /// Stores the macros of a `D` packet, replacing earlier ones of that stage.
    /// Packets for stages that do not exist are dropped, as libmilter does.
    ///
    /// Names and values are copied out of the packet: a stored macro must not
    /// keep a whole read buffer (up to the packet limit) alive for the rest of
    /// the connection. At most [`MAX_STAGE_BYTES`] of names and values are
    /// kept per stage (the pairs up to the first that does not fit).
    pub fn set(&mut self, stage: u8, pairs: Vec<(Bytes, Bytes)>) {
        let Some(i) = slot(stage) else {
            return;
        };
        let buf = self.reset(i);
        let mut bytes = 0;
        for (name, value) in &pairs {
            bytes += name.len() + value.len();
            if bytes > MAX_STAGE_BYTES {
                break;
            }
            push_pair(buf, name, value);
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
        let buf = self.reset(i);
        // The parser's rules (pairs up to the first incomplete one, empty
        // names dropped, at most MAX_MACRO_PAIRS), then `set`'s.
        let (mut pairs, mut bytes) = (0, 0);
        while !rest.is_empty() && pairs < MAX_MACRO_PAIRS {
            let Some(n) = memchr_nul(rest) else { break };
            let after_name = &rest[n + 1..];
            if after_name.is_empty() {
                break;
            }
            let Some(v) = memchr_nul(after_name) else {
                break;
            };
            let (name, value) = (&rest[..n], &after_name[..v]);
            rest = &after_name[v + 1..];
            if n == 0 {
                continue;
            }
            pairs += 1;
            bytes += n + v;
            if bytes > MAX_STAGE_BYTES {
                break;
            }
            push_pair(buf, name, value);
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
            self.clear_from(i + 1);
        }
    }

    /// Forgets the message macros (MAIL onwards), for an aborted message.
    pub fn clear_message(&mut self) {
        self.clear_from(slot(code::MAIL).expect("MAIL is a stage"));
    }

    /// Forgets everything (a new connection on the same socket).
    pub fn clear_all(&mut self) {
        self.clear_from(0);
    }

    fn clear_from(&mut self, first: usize) {
        for i in first..ORDER.len() {
            if !self.slots[i].is_empty() {
                self.reset(i);
            }
        }
    }

    /// Stage `i`'s pairs as `Bytes`, made on first use.
    fn cached(&self, i: usize) -> &[(Bytes, Bytes)] {
        let cache = self.cache.get_or_init(Default::default);
        cache[i].get_or_init(|| {
            let buf = &self.slots[i];
            let copy = Bytes::copy_from_slice(buf);
            pairs_of(buf)
                .map(|(na, n, va, v)| (copy.slice(na..na + n), copy.slice(va..va + v)))
                .collect()
        })
    }

    /// Looks a macro up by name, with or without braces (`{auth_authen}` and
    /// `auth_authen` find the same value; so do `i` and `{i}`). The latest
    /// stage wins.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        let wanted = bare_name(name.as_bytes());
        (0..ORDER.len()).rev().find_map(|i| {
            let buf = &self.slots[i];
            let k =
                pairs_of(buf).position(|(na, n, _, _)| bare_name(&buf[na..na + n]) == wanted)?;
            Some(&self.cached(i)[k].1)
        })
    }

    /// Like [`get`](Self::get), as text (lossy for non-UTF-8 values).
    pub fn get_str(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.get(name).map(|v| String::from_utf8_lossy(v))
    }

    /// Every macro currently known, latest stage first.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        (0..ORDER.len())
            .rev()
            .filter(|&i| !self.slots[i].is_empty())
            .flat_map(|i| self.cached(i))
            .map(|(n, v)| (n, v))
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
    fn a_new_packet_replaces_what_was_looked_up() {
        // Look-ups are cached per stage; storing or clearing a stage must
        // never leave the old values visible.
        let mut m = MacroStore::new();
        m.set_packet(b"Mi\0first\0{mail_addr}\0a@b\0");
        assert_eq!(&m.get("i").unwrap()[..], b"first");
        assert_eq!(m.iter().count(), 2);
        m.set_packet(b"Mi\0second\0");
        assert_eq!(&m.get("i").unwrap()[..], b"second");
        assert!(m.get("mail_addr").is_none());
        assert_eq!(m.iter().count(), 1);
        m.set_packet(b"Cj\0mx\0");
        m.clear_after(b'C');
        assert!(m.get("i").is_none());
        assert_eq!(&m.get("j").unwrap()[..], b"mx");
        let copy = m.clone();
        m.clear_all();
        assert!(m.get("j").is_none());
        assert_eq!(&copy.get("j").unwrap()[..], b"mx");
    }

    #[test]
    fn a_large_packet_is_not_kept_after_its_stage_ends() {
        let mut m = MacroStore::new();
        let mut big = b"R{rcpt_addr}\0".to_vec();
        big.extend(std::iter::repeat_n(b'x', 50_000));
        big.push(0);
        m.set_packet(&big);
        assert_eq!(m.get("rcpt_addr").unwrap().len(), 50_000);
        let r = slot(code::RCPT).unwrap();
        assert!(m.slots[r].capacity() >= 50_000);
        m.clear_message();
        assert!(m.slots[r].capacity() <= KEEP_CAPACITY);
        // A small one keeps its buffer for the next packet.
        m.set_packet(b"R{rcpt_addr}\0c@d\0");
        let before = m.slots[r].as_ptr();
        m.clear_message();
        m.set_packet(b"R{rcpt_addr}\0e@f\0");
        assert_eq!(m.slots[r].as_ptr(), before);
        assert_eq!(&m.get("rcpt_addr").unwrap()[..], b"e@f");
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
            assert_eq!(a, b, "round {round}");
            assert!(a.iter().eq(b.iter()), "round {round}");
        }
    }
}
