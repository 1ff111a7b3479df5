//! Mapping Mailman's JSON values to the milter's types, with Mailman 3's
//! matching semantics (which entries can match at all).

use std::collections::HashMap;

use serde_json::Value;

use super::RestError;
use crate::header_match::HeaderRule;
use crate::list::{ListPolicy, ModerationAction, NonmemberAction, Pattern};

/// The list's `default_nonmember_action`; `defer` reads as accept, and an
/// unknown name as hold (never refused unless holds are).
pub(super) fn nonmember_action(name: &str, list: &str) -> NonmemberAction {
    NonmemberAction::from_mailman(name).unwrap_or_else(|| {
        tracing::warn!(
            list,
            action = name,
            "unknown default_nonmember_action; treated as hold"
        );
        NonmemberAction::Hold
    })
}

/// The role of a member resource if it is `sender`'s.
pub(super) fn record_of<'a>(entry: &'a Value, sender: &str) -> Option<&'a str> {
    let email = entry.get("email").and_then(Value::as_str)?;
    if !email.eq_ignore_ascii_case(sender) {
        return None;
    }
    entry.get("role").and_then(Value::as_str)
}

/// A `moderation_action` value; unknown names are logged and ignored (the
/// list's defaults then apply, as for an address without one).
pub(super) fn moderation_action(
    name: &str,
    list_id: &str,
    sender: &str,
) -> Option<ModerationAction> {
    let action = NonmemberAction::from_mailman(name);
    if action.is_none() {
        tracing::warn!(
            list_id,
            sender,
            action = name,
            "unknown moderation_action; ignored"
        );
    }
    action
}

/// Bans as patterns. A plain ban is an SQL equality in Mailman (stored as
/// given), so one that differs from its lowercased form never matches
/// there and is left out here too.
pub(super) fn ban_patterns(entries: &[Value], base: &str) -> Result<Vec<Pattern>, RestError> {
    let mut out = Vec::new();
    for b in entries {
        let email = b
            .get("email")
            .and_then(Value::as_str)
            .ok_or_else(|| RestError::Garbage {
                url: format!("{base}/bans"),
                message: "a ban without email".into(),
            })?;
        // Plain bans are an SQL equality in Mailman, as stored.
        out.push(Pattern::parse_ban(email));
    }
    Ok(out)
}

/// A list's posting settings from its `/lists/{id}/config` resource (read
/// from `config_url`). What the config does not say (bans, addresses with
/// their own moderation action) is left at "none" for the caller to fill.
pub(super) fn list_policy(
    config: &Value,
    address: &str,
    list_id: &str,
    config_url: &str,
) -> Result<ListPolicy, RestError> {
    let action = match config
        .get("default_nonmember_action")
        .and_then(Value::as_str)
    {
        Some(a) => nonmember_action(a, address),
        None => {
            return Err(RestError::Garbage {
                url: config_url.to_owned(),
                message: "no default_nonmember_action".into(),
            });
        }
    };
    // Plain entries match as Mailman compares them: exactly as stored.
    let patterns = |name: &str| match config.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => Ok(a
            .iter()
            .filter_map(Value::as_str)
            .map(Pattern::parse)
            .collect()),
        Some(_) => Err(RestError::Garbage {
            url: config_url.to_owned(),
            message: format!("{name} is not an array"),
        }),
    };
    let accept = patterns("accept_these_nonmembers")?;
    let hold = patterns("hold_these_nonmembers")?;
    let reject = patterns("reject_these_nonmembers")?;
    let discard = patterns("discard_these_nonmembers")?;
    // Absent from older cores: Mailman 3's default, defer.
    let default_member_action = config
        .get("default_member_action")
        .and_then(Value::as_str)
        .map_or(NonmemberAction::Accept, |a| {
            moderation_action(a, list_id, "(default_member_action)")
                .unwrap_or(NonmemberAction::Accept)
        });
    let emergency = config
        .get("emergency")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // Mailman shows the password's hash, or null when there is none.
    let moderator_password = config.get("moderator_password").map(|v| !v.is_null());
    Ok(ListPolicy {
        address: address.to_owned(),
        moderator_password,
        nonmember_action: action,
        accept_nonmembers: accept,
        hold_nonmembers: hold,
        reject_nonmembers: reject,
        discard_nonmembers: discard,
        default_member_action,
        emergency,
        ..ListPolicy::default()
    })
}

/// A list's header-match rules from its `header-matches` collection (read
/// from `url`), in Mailman's order (`position`).
pub(super) fn header_rules(entries: &[Value], url: &str) -> Result<Vec<HeaderRule>, RestError> {
    let garbage = |message: &str| RestError::Garbage {
        url: url.to_owned(),
        message: message.to_owned(),
    };
    let mut rules = Vec::new();
    for e in entries {
        let text = |name: &str| e.get(name).and_then(Value::as_str);
        let (Some(header), Some(pattern)) = (text("header"), text("pattern")) else {
            return Err(garbage("a header match without header or pattern"));
        };
        let position = e
            .get("position")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        rules.push((position, HeaderRule::new(header, pattern, text("action"))));
    }
    // Stable: equal positions keep Mailman's order.
    rules.sort_by_key(|(p, _)| *p);
    Ok(rules.into_iter().map(|(_, r)| r).collect())
}

/// Mailman's alias domains from `/domains`: mail_host -> its
/// `alias_domain`s (lowercased; null or empty ones left out).
pub(super) fn alias_domains(domains: &[Value]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for d in domains {
        let field = |n: &str| {
            d.get(n)
                .and_then(Value::as_str)
                .map(|s| s.trim().trim_end_matches('.').to_lowercase())
                .filter(|s| !s.is_empty())
        };
        if let (Some(host), Some(alias)) = (field("mail_host"), field("alias_domain"))
            && host != alias
        {
            out.entry(host).or_default().push(alias);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::list::PatternMatch;

    #[test]
    fn ban_regexes_ignore_case_and_plain_bans_match_only_as_stored() {
        let bans = ban_patterns(
            &[
                json!({"email": "^.*@SPAMMER\\.example\\.org$"}),
                json!({"email": "Boss@Example.com"}),
                json!({"email": "troll@example.net"}),
            ],
            "http://x/3.1",
        )
        .unwrap();
        let hit = |a: &str| bans.iter().any(|p| p.matches(a) == PatternMatch::Yes);
        assert!(hit("x@spammer.example.org"));
        assert!(hit("troll@example.net"));
        // An SQL equality against the lowercased sender never matches this.
        assert!(!hit("boss@example.com"));
        assert!(!hit("x@spammer.example.net"));
    }
}
