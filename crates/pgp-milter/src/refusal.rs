//! The class of a decision, a small fixed set of words for metrics
//! (`milter_messages_total{reason="..."}`): an administrator sees at a
//! glance whether refusals are plaintext mail, broken OpenPGP, size or
//! recipient-key problems, without reading log lines.

use crate::policy::Decision;

/// The class of `d`, from its reason (the texts of
/// [`crate::detect::NotPgp`] and the policy's refusals).
pub fn class(d: &Decision) -> &'static str {
    let why = d.reason();
    match d {
        Decision::Tempfail(..) => "tempfail",
        Decision::Accept(_) => {
            if why.starts_with("encrypted") {
                "encrypted"
            } else if why.starts_with("signed") {
                "signed"
            } else if why.starts_with("delivery status report") {
                "bounce"
            } else {
                "exempt"
            }
        }
        Decision::Reject(..) => {
            const CLASSES: [(&str, &str); 12] = [
                ("unencrypted content", "plaintext"),
                ("no OpenPGP data", "no_openpgp"),
                ("invalid OpenPGP data", "invalid_openpgp"),
                ("unreadable MIME structure", "mime"),
                ("only an OpenPGP key", "key_only"),
                ("S/MIME", "smime"),
                ("signed (", "signed_only"),
                ("not proven encrypted within", "too_large"),
                ("message size exceeds", "size_limit"),
                ("null sender", "bounce"),
                ("delivery status report", "bounce"),
                ("encrypted with a passphrase only", "recipient_key"),
            ];
            CLASSES
                .iter()
                .find(|(prefix, _)| why.starts_with(prefix))
                .map_or_else(
                    || {
                        if why.contains("key") {
                            "recipient_key"
                        } else {
                            "other"
                        }
                    },
                    |(_, c)| c,
                )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Form, NotPgp};
    use crate::policy::Policy;

    #[test]
    fn each_refusal_of_the_detector_has_its_class() {
        let p = Policy::default();
        let reject = |n: NotPgp| class(&p.reject(&n.to_string()));
        assert_eq!(reject(NotPgp::NoOpenPgp), "no_openpgp");
        assert_eq!(reject(NotPgp::Invalid("x".into())), "invalid_openpgp");
        assert_eq!(reject(NotPgp::Mime("x".into())), "mime");
        assert_eq!(reject(NotPgp::PlaintextPart("x".into())), "plaintext");
        assert_eq!(reject(NotPgp::KeyOnly), "key_only");
        assert_eq!(reject(NotPgp::Smime), "smime");
        assert_eq!(reject(NotPgp::SignedOnly(Form::PgpMime)), "signed_only");
        assert_eq!(reject(NotPgp::TooLarge(10)), "too_large");
        assert_eq!(class(&p.tempfail("x")), "tempfail");
        assert_eq!(
            class(&Decision::Accept("encrypted (PGP/MIME)".into())),
            "encrypted"
        );
        assert_eq!(class(&Decision::Accept("sender exempt".into())), "exempt");
    }
}
