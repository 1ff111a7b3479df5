//! The option negotiation packet (`O`), sent by the MTA and answered by the
//! milter in the same shape, plus the macro lists the milter may append.

use bytes::{Bytes, BytesMut};

use crate::flags::{Actions, Protocol};
use crate::frame::encode_frame;
use crate::payload::{Cursor, PayloadError, has_nul};

/// The stage a requested macro list applies to (`SMFIM_*`).
///
/// Note the wire numbers: end-of-message (5) comes before end-of-headers (6),
/// which is not protocol order. libmilter stored the two swapped until 8.17.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum MacroStage {
    /// With the connect step (`SMFIM_CONNECT`).
    Connect = 0,
    /// With HELO/EHLO (`SMFIM_HELO`).
    Helo = 1,
    /// With MAIL FROM (`SMFIM_ENVFROM`).
    Mail = 2,
    /// With each RCPT TO (`SMFIM_ENVRCPT`).
    Rcpt = 3,
    /// With DATA (`SMFIM_DATA`).
    Data = 4,
    /// With end of message (`SMFIM_EOM`); the queue id `i` is usually asked for here.
    EndOfMessage = 5,
    /// With end of headers (`SMFIM_EOH`).
    EndOfHeaders = 6,
}

impl MacroStage {
    /// Every stage, in wire-number order.
    pub const ALL: [MacroStage; 7] = [
        MacroStage::Connect,
        MacroStage::Helo,
        MacroStage::Mail,
        MacroStage::Rcpt,
        MacroStage::Data,
        MacroStage::EndOfMessage,
        MacroStage::EndOfHeaders,
    ];

    /// The stage with this wire number.
    pub fn from_u32(n: u32) -> Option<MacroStage> {
        MacroStage::ALL.get(n as usize).copied()
    }
}

/// One requested macro list: the names, space separated, for one stage.
/// An empty list asks for no macros at that stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroRequest {
    /// The stage number as sent (see [`MacroStage`]); kept raw so an MTA can
    /// report an unknown stage precisely.
    pub stage: u32,
    /// Macro names separated by spaces, e.g. `{auth_authen} i`.
    pub names: Bytes,
}

/// An option negotiation packet, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptNeg {
    /// Protocol version (2 to 6 in practice).
    pub version: u32,
    /// Offered (MTA) or requested (milter) actions.
    pub actions: Actions,
    /// Offered (MTA) or requested (milter) protocol flags.
    pub protocol: Protocol,
    /// Macro lists requested by the milter (only in its reply, version 6).
    pub macros: Vec<MacroRequest>,
}

impl OptNeg {
    pub(crate) fn parse(mut c: Cursor) -> Result<OptNeg, PayloadError> {
        let version = c.u32("version")?;
        let actions = Actions::from_bits_retain(c.u32("actions")?);
        let protocol = Protocol::from_bits_retain(c.u32("protocol flags")?);
        let mut macros = Vec::new();
        while !c.is_empty() {
            let stage = c.u32("macro stage")?;
            let names = c.cstr("macro list")?;
            macros.push(MacroRequest { stage, names });
        }
        c.finish()?;
        Ok(OptNeg {
            version,
            actions,
            protocol,
            macros,
        })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        let mut fixed = [0u8; 12];
        fixed[0..4].copy_from_slice(&self.version.to_be_bytes());
        fixed[4..8].copy_from_slice(&self.actions.bits().to_be_bytes());
        fixed[8..12].copy_from_slice(&self.protocol.bits().to_be_bytes());
        let stages: Vec<[u8; 4]> = self.macros.iter().map(|m| m.stage.to_be_bytes()).collect();
        let mut pieces: Vec<&[u8]> = vec![&fixed];
        for (m, stage) in self.macros.iter().zip(&stages) {
            pieces.push(stage);
            pieces.push(&m.names);
            pieces.push(b"\0");
        }
        encode_frame(b'O', &pieces, out);
    }

    pub(crate) fn is_encodable(&self) -> bool {
        self.macros.iter().all(|m| !has_nul(&m.names))
    }
}
