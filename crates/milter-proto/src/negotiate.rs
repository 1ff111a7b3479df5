//! Option negotiation, milter side: from what the MTA offers and what the
//! filter needs, the reply to send and the rules for the rest of the session.
//!
//! The one principle: never ask for what was not offered. Postfix does not
//! check the milter's protocol bits and Sendmail aborts on any surplus, so an
//! over-eager request either silently misbehaves or kills the session.
//! - Actions are the intersection of wanted and offered.
//! - A step the filter does not want is declined with its `NO_*` bit only if
//!   the MTA offered that bit; otherwise the MTA sends it and the session
//!   answers `continue` itself.
//! - A step the filter never answers is marked `NR_*` only if offered;
//!   otherwise the session "fakes" the reply, as libmilter does.
//! - Macro lists go into the reply only for version 6 and only if the MTA
//!   offered `SETSYMLIST`.

use bytes::Bytes;

use crate::flags::{Actions, DataSize, Protocol};
use crate::optneg::{MacroRequest, MacroStage, OptNeg};
use crate::step::{Step, Steps};

/// The highest protocol version this crate speaks.
pub const MAX_VERSION: u32 = 6;
/// The lowest protocol version this crate speaks (`SMFI_PROT_VERSION_MIN`).
pub const MIN_VERSION: u32 = 2;

/// What a filter needs from the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirements {
    /// Steps the filter wants to be told about. End of message is always sent.
    pub steps: Steps,
    /// Steps at which the filter always answers `continue`, so the MTA need
    /// not wait (`NR_*`). Only meaningful for steps also in `steps`.
    pub no_reply: Steps,
    /// Modifications the filter may request at end of message.
    pub actions: Actions,
    /// Macro lists to ask for, per stage: names separated by spaces,
    /// multi-letter names in braces as the MTAs spell them
    /// (`"{auth_authen} {client_addr}"`; Postfix also takes them bare). A
    /// list replaces the MTA's default list for its stage, and needs
    /// protocol 6 and an MTA offering `SETSYMLIST` (Postfix and Sendmail
    /// 8.14+ do); otherwise the defaults apply and the shortfall is noted.
    /// Postfix sends a stage's macros even when the step itself was
    /// declined, so `{client_addr}` at connect does not need
    /// [`Steps::CONNECT`].
    pub macros: Vec<(MacroStage, String)>,
    /// Receive and send header values byte-exact, leading space included.
    pub header_leading_space: bool,
    /// Also be told about recipients the MTA already rejected.
    pub rejected_recipients: bool,
    /// Largest packet size to ask for (honoured only if the MTA offers it).
    pub data_size: DataSize,
}

impl Default for Requirements {
    /// Every step, no modifications, no macro lists, 64 KiB packets.
    fn default() -> Self {
        Requirements {
            steps: Steps::all(),
            no_reply: Steps::empty(),
            actions: Actions::empty(),
            macros: Vec::new(),
            header_leading_space: false,
            rejected_recipients: false,
            data_size: DataSize::K64,
        }
    }
}

/// Why negotiation failed; the connection is closed after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// The MTA speaks a version below 2.
    #[error("MTA offers milter protocol version {0}; versions 2 to 6 are supported")]
    UnsupportedVersion(u32),
}

/// The outcome of negotiation: what holds for the rest of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The version both sides speak.
    pub version: u32,
    /// What the MTA offered (zero words already replaced by their v1 meaning).
    pub offered: OptNeg,
    /// Actions granted: the filter may request these modifications.
    pub actions: Actions,
    /// Protocol flags in force (as sent in the reply).
    pub protocol: Protocol,
    /// Steps the filter is called for (the MTA may still send others).
    pub steps: Steps,
    /// Steps the MTA will not wait for a reply to (`NR_*` granted).
    pub no_reply: Steps,
    /// Steps whose reply the session sends itself ("faked" no-reply).
    pub fake_reply: Steps,
    /// Packet payload limit agreed for packets in both directions.
    pub data_size: DataSize,
    /// Macro lists requested.
    pub macros: Vec<MacroRequest>,
    /// Things the filter wanted but the MTA did not offer, for the log.
    pub shortfalls: Vec<String>,
}

impl Negotiated {
    /// True if the MTA will not wait for a reply to `step`.
    pub fn no_reply(&self, step: Step) -> bool {
        self.no_reply.contains(step.as_set())
    }

    /// True if the filter is called for `step`.
    pub fn delivers(&self, step: Step) -> bool {
        step == Step::EndOfMessage || self.steps.contains(step.as_set())
    }
}

/// Computes the milter's reply to the MTA's `offer`.
pub fn negotiate(
    offer: &OptNeg,
    req: &Requirements,
) -> Result<(OptNeg, Negotiated), NegotiationError> {
    if offer.version < MIN_VERSION {
        return Err(NegotiationError::UnsupportedVersion(offer.version));
    }
    let version = offer.version.min(MAX_VERSION);
    let offered_actions = if offer.actions.is_empty() {
        Actions::V1_DEFAULT
    } else {
        offer.actions
    };
    let offered_protocol = if offer.protocol.is_empty() {
        Protocol::V1_DEFAULT
    } else {
        offer.protocol
    };
    let mut shortfalls = Vec::new();

    let wanted_actions = req.actions - Actions::SET_SYMLIST;
    let mut actions = wanted_actions & offered_actions;
    let missing = wanted_actions - actions;
    if !missing.is_empty() {
        shortfalls.push(format!(
            "MTA does not offer actions {missing:?}; those modifications will be refused"
        ));
    }

    let mut protocol = Protocol::empty();
    let mut no_reply = Steps::empty();
    let mut fake_reply = Steps::empty();
    for step in Step::ALL {
        if step == Step::EndOfMessage {
            continue;
        }
        let wanted = req.steps.contains(step.as_set());
        if !wanted && offered_protocol.contains(step.no_send_bit()) {
            // Declined; should the MTA send it anyway, answer `continue`.
            protocol |= step.no_send_bit();
            fake_reply |= step.as_set();
        } else if !wanted || req.no_reply.contains(step.as_set()) {
            if offered_protocol.contains(step.no_reply_bit()) {
                protocol |= step.no_reply_bit();
                no_reply |= step.as_set();
            } else {
                fake_reply |= step.as_set();
            }
        }
    }
    if req.steps.contains(Steps::BODY) && offered_protocol.contains(Protocol::SKIP) {
        protocol |= Protocol::SKIP;
    }
    if req.header_leading_space {
        if offered_protocol.contains(Protocol::HEADER_LEADING_SPACE) {
            protocol |= Protocol::HEADER_LEADING_SPACE;
        } else {
            shortfalls.push("MTA does not offer HDR_LEADSPC".into());
        }
    }
    if req.rejected_recipients {
        if offered_protocol.contains(Protocol::RCPT_REJ) {
            protocol |= Protocol::RCPT_REJ;
        } else {
            shortfalls.push("MTA does not offer RCPT_REJ".into());
        }
    }
    let data_size = if offered_protocol.contains(req.data_size.protocol_bit()) {
        protocol |= req.data_size.protocol_bit();
        req.data_size
    } else {
        shortfalls.push(format!(
            "MTA does not offer packet size {:?}; using 64 KiB",
            req.data_size
        ));
        DataSize::K64
    };

    let mut macros = Vec::new();
    if !req.macros.is_empty() {
        if version >= 6 && offered_actions.contains(Actions::SET_SYMLIST) {
            actions |= Actions::SET_SYMLIST;
            macros = req
                .macros
                .iter()
                .map(|(stage, names)| MacroRequest {
                    stage: *stage as u32,
                    names: Bytes::from(names.replace('\0', "")),
                })
                .collect();
        } else {
            shortfalls.push(
                "MTA does not offer SETSYMLIST (or speaks version < 6); its default macros apply"
                    .into(),
            );
        }
    }

    let reply = OptNeg {
        version,
        actions,
        protocol,
        macros: macros.clone(),
    };
    let negotiated = Negotiated {
        version,
        offered: OptNeg {
            version: offer.version,
            actions: offered_actions,
            protocol: offered_protocol,
            macros: Vec::new(),
        },
        actions,
        protocol,
        steps: req.steps | Steps::END_OF_MESSAGE,
        no_reply,
        fake_reply,
        data_size,
        macros,
        shortfalls,
    };
    Ok((reply, negotiated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn postfix_offer() -> OptNeg {
        OptNeg {
            version: 6,
            actions: Actions::from_bits_retain(0x1FF),
            protocol: Protocol::from_bits_retain(0x1F_FFFF),
            macros: vec![],
        }
    }

    #[test]
    fn asks_for_exactly_what_the_filter_needs() {
        let req = Requirements {
            steps: Steps::RCPT | Steps::HEADER | Steps::BODY,
            no_reply: Steps::HEADER,
            actions: Actions::ADD_HEADERS,
            macros: vec![(MacroStage::Mail, "{auth_authen}".into())],
            ..Requirements::default()
        };
        let (reply, neg) = negotiate(&postfix_offer(), &req).unwrap();
        assert_eq!(reply.version, 6);
        assert_eq!(reply.actions, Actions::ADD_HEADERS | Actions::SET_SYMLIST);
        let expect = Protocol::NO_CONNECT
            | Protocol::NO_HELO
            | Protocol::NO_MAIL
            | Protocol::NO_DATA
            | Protocol::NO_EOH
            | Protocol::NO_UNKNOWN
            | Protocol::NR_HEADER
            | Protocol::SKIP;
        assert_eq!(reply.protocol, expect);
        assert_eq!(reply.macros.len(), 1);
        assert_eq!(reply.macros[0].stage, 2);
        assert!(neg.no_reply(Step::Header));
        assert!(!neg.no_reply(Step::Rcpt));
        assert!(neg.fake_reply.contains(Steps::CONNECT));
        assert!(!neg.fake_reply.contains(Steps::RCPT));
        assert!(neg.shortfalls.is_empty());
    }

    #[test]
    fn downgrades_to_the_mta_version_and_never_exceeds_its_offer() {
        // Postfix with milter_protocol = 2: version 2, v2 actions, v2 steps.
        let offer = OptNeg {
            version: 2,
            actions: Actions::V2,
            protocol: Protocol::from_bits_retain(0x3F),
            macros: vec![],
        };
        let req = Requirements {
            steps: Steps::MAIL,
            no_reply: Steps::MAIL,
            actions: Actions::ADD_HEADERS | Actions::CHANGE_FROM,
            macros: vec![(MacroStage::Mail, "i".into())],
            header_leading_space: true,
            data_size: DataSize::M1,
            ..Requirements::default()
        };
        let (reply, neg) = negotiate(&offer, &req).unwrap();
        assert_eq!(reply.version, 2);
        assert!(offer.actions.contains(reply.actions));
        assert!(offer.protocol.contains(reply.protocol));
        assert_eq!(reply.actions, Actions::ADD_HEADERS);
        assert!(reply.macros.is_empty());
        assert!(neg.fake_reply.contains(Steps::MAIL));
        assert_eq!(neg.data_size, DataSize::K64);
        assert!(neg.shortfalls.len() >= 3);
    }

    #[test]
    fn higher_versions_get_six_and_lower_than_two_are_refused() {
        let mut offer = postfix_offer();
        offer.version = 8;
        assert_eq!(
            negotiate(&offer, &Requirements::default())
                .unwrap()
                .0
                .version,
            6
        );
        offer.version = 1;
        assert_eq!(
            negotiate(&offer, &Requirements::default()),
            Err(NegotiationError::UnsupportedVersion(1))
        );
    }

    #[test]
    fn zero_words_mean_version_one_defaults() {
        let offer = OptNeg {
            version: 2,
            actions: Actions::empty(),
            protocol: Protocol::empty(),
            macros: vec![],
        };
        let req = Requirements {
            actions: Actions::all(),
            ..Requirements::default()
        };
        let (reply, _) = negotiate(&offer, &req).unwrap();
        assert_eq!(reply.actions, Actions::V1_DEFAULT);
    }

    #[test]
    fn packet_size_is_negotiated_when_offered() {
        let mut offer = postfix_offer();
        offer.protocol |= Protocol::MDS_256K | Protocol::MDS_1M;
        for size in [DataSize::K64, DataSize::K256, DataSize::M1] {
            let req = Requirements {
                data_size: size,
                ..Requirements::default()
            };
            let (reply, neg) = negotiate(&offer, &req).unwrap();
            assert_eq!(neg.data_size, size);
            assert_eq!(reply.protocol & Protocol::MDS_MASK, size.protocol_bit());
        }
    }
}
