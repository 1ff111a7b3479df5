//! The class of a decision, a small fixed set of words for metrics
//! (`milter_messages_total{reason="..."}`): why list mail was refused or
//! let through, without reading log lines.

/// The class of a decision logged with `verdict` (`pass`, `reject`,
/// `defer`, `tempfail`, ...) and `why` (the policy's reason text).
pub fn class(verdict: &str, why: &str) -> &'static str {
    match verdict {
        "pass" => "pass",
        "defer" => "split",
        "reject" => {
            if why.ends_with(" is banned") {
                "banned"
            } else if why.starts_with("member ") {
                "moderated"
            } else if why.starts_with("non-member ") || why.starts_with("no sender is a member") {
                "nonmember"
            } else if why.starts_with("no sender address") {
                "no_sender"
            } else if why.starts_with("header rule ") {
                "header_rule"
            } else {
                "policy"
            }
        }
        // The list data could not be read: on_backend_error decided.
        _ => "backend_error",
    }
}

#[cfg(test)]
mod tests {
    use super::class;
    use crate::list::NonmemberAction;
    use crate::policy::RefuseReason;

    #[test]
    fn each_refusal_of_the_policy_has_its_class() {
        let reject = |r: RefuseReason| class("reject", &r.to_string());
        assert_eq!(reject(RefuseReason::Banned("a@x".into())), "banned");
        assert_eq!(reject(RefuseReason::NoSenders), "no_sender");
        assert_eq!(
            reject(RefuseReason::Nonmember(NonmemberAction::Reject)),
            "nonmember"
        );
        assert_eq!(class("pass", "a@x is a member"), "pass");
        assert_eq!(
            class("tempfail", "list data unavailable: x"),
            "backend_error"
        );
    }
}
