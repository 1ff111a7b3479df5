//! A list's header-match rules (Mailman 3's `header_matches`, REST
//! `lists/{id}/header-matches`) and the headers of a post they look at.
//!
//! Mailman applies them in its `header-match` chain, after
//! `member-moderation` and before `nonmember-moderation`: for each rule in
//! order, `re.search(pattern, value, re.IGNORECASE)` over every value of the
//! header, in every MIME part, after RFC 2047 decoding; the first rule that
//! hits jumps to its action's chain. The milter sees the top-level headers
//! only, undecoded, so where it cannot be sure it answers "cannot tell"
//! ([`PatternMatch::Unknown`]), which never leads to a refusal:
//! - a value holding an encoded word (`=?`);
//! - a folded value whose match depends on the line ending (Mailman keeps
//!   the folding; `\r\n` or `\n` depends on how the message reached it);
//! - a miss on a message with MIME parts (`multipart/*`, `message/*`),
//!   whose inner headers the milter does not read;
//! - headers past [`MAX_HEADER_BYTES`];
//! - headers Mailman's LMTP runner sets before its rules run, where the
//!   milter cannot know the value: `Message-ID-Hash` and
//!   `X-Message-ID-Hash` (replaced by a hash of the Message-ID),
//!   `Message-ID` when the post has none (Mailman makes one up), and
//!   `X-MailFrom` when the envelope sender is not a plain address.
//!   Otherwise `X-MailFrom: <envelope sender>` is added as Mailman adds it
//!   ([`SeenHeaders::add_mailman_headers`]).

use crate::list::{ModerationAction, NonmemberAction, Pattern, PatternMatch};
use crate::pyregex::{Mode, PyRegex};

/// Most bytes of header values kept for the rules of one post.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// One header-match rule.
#[derive(Debug, Clone)]
pub struct HeaderRule {
    /// The header name, lowercased.
    pub header: String,
    /// The pattern (a regex, or unsupported).
    pub pattern: Pattern,
    /// The chain a hit jumps to, if it is one the milter models (accept,
    /// hold, reject, discard). None: the site's `[antispam] jump_chain` (no
    /// action set), or a name the milter does not know: Mailman decides.
    pub action: Option<ModerationAction>,
    /// The action as Mailman gives it (`""` when none is set), for logs.
    pub action_name: String,
}

impl HeaderRule {
    /// A rule from Mailman's fields: header, pattern (Python syntax) and
    /// action (None: not set).
    pub fn new(header: &str, pattern: &str, action: Option<&str>) -> HeaderRule {
        let pattern = match PyRegex::new(pattern, Mode::Search, true) {
            Ok(re) => Pattern::Regex(re),
            Err(error) => Pattern::Unsupported {
                source: pattern.to_owned(),
                error,
            },
        };
        // `defer` is an action name but no chain.
        let modelled = action.and_then(|a| match a {
            "defer" => None,
            a => NonmemberAction::from_mailman(a),
        });
        HeaderRule {
            header: header.trim().to_lowercase(),
            pattern,
            action: modelled,
            action_name: action.unwrap_or_default().to_owned(),
        }
    }

    /// A hit refuses the post: reject or discard, or hold where holds are
    /// refused.
    pub fn refuses(&self, refuse_hold: bool) -> bool {
        self.action.is_some_and(|a| a.refused(refuse_hold))
    }

    /// Whether the rule hits the post with headers `seen` (None: the
    /// headers are not known, as when deciding at RCPT).
    pub fn check(&self, seen: Option<&SeenHeaders>) -> PatternMatch {
        let Some(seen) = seen else {
            return PatternMatch::Unknown;
        };
        if seen.unknown.contains(&self.header.as_str()) {
            return PatternMatch::Unknown;
        }
        let mut unsure = seen.overflow || seen.has_parts;
        for (name, value) in &seen.values {
            if *name != self.header {
                continue;
            }
            if value.contains("=?") {
                unsure = true;
                continue;
            }
            let hit = if value.contains('\n') {
                let crlf = value.replace("\r\n", "\n").replace('\n', "\r\n");
                let lf = value.replace("\r\n", "\n");
                match (self.pattern.matches(&crlf), self.pattern.matches(&lf)) {
                    (a, b) if a == b => a,
                    _ => PatternMatch::Unknown,
                }
            } else {
                // Compiled for `re.search`.
                self.pattern.matches(value)
            };
            match hit {
                PatternMatch::Yes => return PatternMatch::Yes,
                PatternMatch::Unknown => unsure = true,
                PatternMatch::No => {}
            }
        }
        if unsure {
            PatternMatch::Unknown
        } else {
            PatternMatch::No
        }
    }
}

/// The headers of one post that a list's rules look at.
#[derive(Debug, Clone, Default)]
pub struct SeenHeaders {
    /// (lowercased name, value) in order.
    values: Vec<(String, String)>,
    bytes: usize,
    /// Values were dropped past [`MAX_HEADER_BYTES`].
    overflow: bool,
    /// The message has MIME parts with headers of their own.
    has_parts: bool,
    /// The message has a `Message-ID:`.
    has_message_id: bool,
    /// Headers whose values Mailman sets in a way the milter cannot follow.
    unknown: Vec<&'static str>,
}

impl SeenHeaders {
    /// Notes a header; kept if a rule of `rules` looks at it.
    pub fn add(&mut self, rules: &[HeaderRule], name: &str, value: &str) {
        if name.eq_ignore_ascii_case("content-type") {
            let t = value.trim_start().to_ascii_lowercase();
            self.has_parts |= t.starts_with("multipart/") || t.starts_with("message/");
        }
        let lower = name.trim().to_lowercase();
        self.has_message_id |= lower == "message-id";
        if !rules.iter().any(|r| r.header == lower) {
            return;
        }
        if self.bytes + value.len() > MAX_HEADER_BYTES {
            self.overflow = true;
            return;
        }
        self.bytes += value.len();
        self.values.push((lower, value.to_owned()));
    }

    /// What Mailman's LMTP runner adds to a post before any rule looks at
    /// it, after the post's own headers: `X-MailFrom:` with the envelope
    /// sender as the MTA hands it over (`envelope_sender`: the address
    /// without angle brackets, `<>` for the null sender, or None if the
    /// milter cannot tell what the MTA will send, e.g. for a quoted local
    /// part), and a
    /// `Message-ID-Hash:` in place of any such header (`X-Message-ID-Hash:`
    /// deleted); a `Message-ID:` if there is none.
    pub fn add_mailman_headers(&mut self, rules: &[HeaderRule], envelope_sender: Option<&str>) {
        match envelope_sender {
            Some(sender) => self.add(rules, "x-mailfrom", sender),
            None => self.unknown.push("x-mailfrom"),
        }
        self.unknown
            .extend(["message-id-hash", "x-message-id-hash"]);
        if !self.has_message_id {
            self.unknown.push("message-id");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(rules: &[HeaderRule], headers: &[(&str, &str)]) -> SeenHeaders {
        let mut s = SeenHeaders::default();
        for (n, v) in headers {
            s.add(rules, n, v);
        }
        s
    }

    #[test]
    fn a_rule_searches_every_value_of_its_header_ignoring_case() {
        let r = [HeaderRule::new("X-Spam", "yes", Some("discard"))];
        let s = seen(&r, &[("x-spam", "no"), ("X-SPAM", "score 9: YES")]);
        assert_eq!(r[0].check(Some(&s)), PatternMatch::Yes);
        let s = seen(&r, &[("x-spam", "no"), ("subject", "yes")]);
        assert_eq!(r[0].check(Some(&s)), PatternMatch::No);
        assert_eq!(r[0].check(None), PatternMatch::Unknown);
    }

    #[test]
    fn what_the_milter_cannot_see_as_mailman_does_is_unknown() {
        let r = [HeaderRule::new("subject", "^hello$", Some("accept"))];
        // Encoded words: Mailman matches the decoded text.
        let s = seen(&r, &[("subject", "=?utf-8?q?hello?=")]);
        assert_eq!(r[0].check(Some(&s)), PatternMatch::Unknown);
        // A miss where MIME parts may carry the header too.
        let s = seen(
            &r,
            &[("content-type", "multipart/mixed; b=x"), ("subject", "bye")],
        );
        assert_eq!(r[0].check(Some(&s)), PatternMatch::Unknown);
        // ... but a hit is a hit.
        let s = seen(
            &r,
            &[
                ("content-type", "multipart/mixed; b=x"),
                ("subject", "hello"),
            ],
        );
        assert_eq!(r[0].check(Some(&s)), PatternMatch::Yes);
        // A folded value where the line ending decides.
        let r = [HeaderRule::new("subject", "a\\r", Some("reject"))];
        let s = seen(&r, &[("subject", "a\n b")]);
        assert_eq!(r[0].check(Some(&s)), PatternMatch::Unknown);
        let r = [HeaderRule::new("subject", "a\\s+b", Some("reject"))];
        assert_eq!(r[0].check(Some(&s)), PatternMatch::Yes);
    }

    #[test]
    fn mailmans_own_headers_are_seen_as_mailman_adds_them() {
        let r = [
            HeaderRule::new("x-mailfrom", "^bot@ci\\.example$", Some("accept")),
            HeaderRule::new("message-id-hash", "^A", Some("discard")),
            HeaderRule::new("message-id", "x", Some("discard")),
        ];
        let mut s = seen(&r, &[("Message-ID-Hash", "ABC")]);
        s.add_mailman_headers(&r, Some("Bot@CI.example"));
        assert_eq!(r[0].check(Some(&s)), PatternMatch::Yes);
        // Mailman replaces it; and makes up a Message-ID.
        assert_eq!(r[1].check(Some(&s)), PatternMatch::Unknown);
        assert_eq!(r[2].check(Some(&s)), PatternMatch::Unknown);
        let mut s = seen(&r, &[("message-id", "<1@y>")]);
        s.add_mailman_headers(&r, Some("other@example.org"));
        assert_eq!(r[0].check(Some(&s)), PatternMatch::No);
        assert_eq!(r[2].check(Some(&s)), PatternMatch::No);
        let mut s = seen(&r, &[]);
        s.add_mailman_headers(&r, None);
        assert_eq!(r[0].check(Some(&s)), PatternMatch::Unknown);
    }

    #[test]
    fn past_the_size_bound_a_miss_is_unknown() {
        let r = [HeaderRule::new("x-big", "needle", Some("reject"))];
        let big = "x".repeat(MAX_HEADER_BYTES);
        let s = seen(&r, &[("x-big", &big), ("x-big", "needle")]);
        assert_eq!(r[0].check(Some(&s)), PatternMatch::Unknown);
    }

    #[test]
    fn actions_mailman_has_no_chain_for_are_not_modelled() {
        assert_eq!(HeaderRule::new("a", "b", Some("defer")).action, None);
        assert_eq!(HeaderRule::new("a", "b", None).action, None);
        let r = HeaderRule::new("a", "b", Some("hold"));
        assert!(r.refuses(true) && !r.refuses(false));
    }
}
