//! The bit words exchanged during option negotiation.
//!
//! Values are those of Sendmail's `mfapi.h` / `mfdef.h` (libmilter 8.18), which
//! Postfix's `milter8.c` mirrors. They are wire facts, so they live in one place.

use bitflags::bitflags;

bitflags! {
    /// Modification actions a milter may perform at end of message (`SMFIF_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Actions: u32 {
        /// Add headers (`h`) and insert headers (`i`).
        const ADD_HEADERS = 0x0000_0001;
        /// Replace the body (`b`).
        const CHANGE_BODY = 0x0000_0002;
        /// Add recipients (`+`).
        const ADD_RCPT = 0x0000_0004;
        /// Delete recipients (`-`).
        const DELETE_RCPT = 0x0000_0008;
        /// Change or delete headers (`m`).
        const CHANGE_HEADERS = 0x0000_0010;
        /// Quarantine the message (`q`).
        const QUARANTINE = 0x0000_0020;
        /// Change the envelope sender (`e`).
        const CHANGE_FROM = 0x0000_0040;
        /// Add recipients with ESMTP arguments (`2`).
        const ADD_RCPT_PAR = 0x0000_0080;
        /// Request macro lists per stage in the negotiation reply.
        const SET_SYMLIST = 0x0000_0100;
    }
}

impl Actions {
    /// What a protocol version 1 MTA implies when it sends a zero action word.
    pub const V1_DEFAULT: Actions = Actions::from_bits_retain(0x0F);
    /// The actions of protocol version 2 (`SMFI_V2_ACTS`).
    pub const V2: Actions = Actions::from_bits_retain(0x3F);
}

bitflags! {
    /// Protocol flags (`SMFIP_*`): steps the MTA should not send (`NO_*`), steps the
    /// milter will not answer (`NR_*`), and behaviour switches.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Protocol: u32 {
        /// Do not send connect.
        const NO_CONNECT = 0x0000_0001;
        /// Do not send HELO.
        const NO_HELO = 0x0000_0002;
        /// Do not send MAIL FROM.
        const NO_MAIL = 0x0000_0004;
        /// Do not send RCPT TO.
        const NO_RCPT = 0x0000_0008;
        /// Do not send body chunks.
        const NO_BODY = 0x0000_0010;
        /// Do not send headers.
        const NO_HEADERS = 0x0000_0020;
        /// Do not send end of headers.
        const NO_EOH = 0x0000_0040;
        /// No reply to each header (older name `SMFIP_NOHREPL`).
        const NR_HEADER = 0x0000_0080;
        /// Do not send unknown commands.
        const NO_UNKNOWN = 0x0000_0100;
        /// Do not send DATA.
        const NO_DATA = 0x0000_0200;
        /// The MTA understands `SMFIR_SKIP`.
        const SKIP = 0x0000_0400;
        /// Also send recipients the MTA already rejected.
        const RCPT_REJ = 0x0000_0800;
        /// No reply to connect.
        const NR_CONNECT = 0x0000_1000;
        /// No reply to HELO.
        const NR_HELO = 0x0000_2000;
        /// No reply to MAIL FROM.
        const NR_MAIL = 0x0000_4000;
        /// No reply to RCPT TO.
        const NR_RCPT = 0x0000_8000;
        /// No reply to DATA.
        const NR_DATA = 0x0001_0000;
        /// No reply to unknown commands.
        const NR_UNKNOWN = 0x0002_0000;
        /// No reply to end of headers.
        const NR_EOH = 0x0004_0000;
        /// No reply to body chunks.
        const NR_BODY = 0x0008_0000;
        /// Header values are passed and taken byte-exact, leading space included.
        const HEADER_LEADING_SPACE = 0x0010_0000;
        /// Packets of up to 256 KiB - 1 (`SMFIP_MDS_256K`).
        const MDS_256K = 0x1000_0000;
        /// Packets of up to 1 MiB - 1 (`SMFIP_MDS_1M`).
        const MDS_1M = 0x2000_0000;
    }
}

impl Protocol {
    /// What a protocol version 1 MTA implies when it sends a zero protocol word.
    pub const V1_DEFAULT: Protocol = Protocol::from_bits_retain(0x3F);
    /// Every `NR_*` bit.
    pub const ALL_NO_REPLY: Protocol = Protocol::NR_HEADER
        .union(Protocol::NR_CONNECT)
        .union(Protocol::NR_HELO)
        .union(Protocol::NR_MAIL)
        .union(Protocol::NR_RCPT)
        .union(Protocol::NR_DATA)
        .union(Protocol::NR_UNKNOWN)
        .union(Protocol::NR_EOH)
        .union(Protocol::NR_BODY);
    /// Every `NO_*` bit.
    pub const ALL_NO_STEP: Protocol = Protocol::NO_CONNECT
        .union(Protocol::NO_HELO)
        .union(Protocol::NO_MAIL)
        .union(Protocol::NO_RCPT)
        .union(Protocol::NO_BODY)
        .union(Protocol::NO_HEADERS)
        .union(Protocol::NO_EOH)
        .union(Protocol::NO_UNKNOWN)
        .union(Protocol::NO_DATA);
    /// The packet-size bits, which libmilter treats as internal.
    pub const MDS_MASK: Protocol = Protocol::MDS_256K.union(Protocol::MDS_1M);
}

/// The largest payload of a packet when no bigger size was negotiated
/// (`MILTER_MAX_DATA_SIZE`), and the size of body chunks (`MILTER_CHUNK_SIZE`).
pub const CHUNK_SIZE: usize = 65_535;

/// Packet payload sizes that libmilter can negotiate with the `MDS_*` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DataSize {
    /// 64 KiB - 1, the historical limit every MTA understands.
    #[default]
    K64,
    /// 256 KiB - 1, needs `SMFIP_MDS_256K` offered by the MTA.
    K256,
    /// 1 MiB - 1, needs `SMFIP_MDS_1M` offered by the MTA.
    M1,
}

impl DataSize {
    /// The largest payload in bytes.
    pub const fn max_payload(self) -> usize {
        match self {
            DataSize::K64 => 65_535,
            DataSize::K256 => 262_143,
            DataSize::M1 => 1_048_575,
        }
    }

    /// The protocol bit that asks for this size (none for 64 KiB: there is no bit for it).
    pub const fn protocol_bit(self) -> Protocol {
        match self {
            DataSize::K64 => Protocol::empty(),
            DataSize::K256 => Protocol::MDS_256K,
            DataSize::M1 => Protocol::MDS_1M,
        }
    }

    /// The size a negotiated protocol word stands for.
    pub fn from_protocol(p: Protocol) -> DataSize {
        if p.contains(Protocol::MDS_1M) {
            DataSize::M1
        } else if p.contains(Protocol::MDS_256K) {
            DataSize::K256
        } else {
            DataSize::K64
        }
    }
}
