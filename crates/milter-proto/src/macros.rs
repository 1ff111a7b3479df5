//! Macros received from the MTA, kept per stage.
//!
//! The MTA sends a `D` packet before a command, tagged with that command's
//! code. Values are kept until a command of the same or an earlier stage
//! arrives, which clears the later stages (libmilter's `mi_clr_macros`): the
//! `{rcpt_addr}` of the previous recipient must not be seen at MAIL of the next
//! message, but the connect-stage `j` stays for the whole connection.

use bytes::Bytes;

use crate::command::code;

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
    /// the connection. At most [`MAX_STAGE_BYTES`] are kept per stage.
    pub fn set(&mut self, stage: u8, pairs: Vec<(Bytes, Bytes)>) {
        let Some(i) = slot(stage) else {
            return;
        };
        let slot = &mut self.slots[i];
        slot.clear();
        let mut bytes = 0;
        for (name, value) in pairs {
            bytes += name.len() + value.len();
            if bytes > MAX_STAGE_BYTES {
                break;
            }
            slot.push((
                Bytes::copy_from_slice(&name),
                Bytes::copy_from_slice(&value),
            ));
        }
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
}
