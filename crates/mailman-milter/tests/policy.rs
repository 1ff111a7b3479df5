//! The policy without a socket: recipient classification, the posting
//! decision rule by rule, the lists file and the configuration file.

use std::collections::HashMap;
use std::path::Path;

use mailman_milter::config::Config;
use mailman_milter::list::{NonmemberAction, Pattern, PatternMatch};
use mailman_milter::lists_file::Reloaded;
use mailman_milter::policy::{Decision, PassReason, Post, RefuseReason, decide};
use mailman_milter::recipient::{AddressRules, Recipient};
use mailman_milter::{FileBackend, ListsData, SenderMode};

const LISTS: &str = r#"
[[list]]
address = "Team@Lists.Example.org"
nonmember_action = "reject"
members = ["Alice@Example.org", "bob@example.org"]
accept_nonmembers = ["boss@example.com", "Shouty@Example.com", "^[a-z]+@partner\\.example$"]
banned = ["spam@example.net", "^.*@evil\\.example$"]

[[list]]
address = "quiet@lists.example.org"
nonmember_action = "discard"
members = ["alice@example.org"]

[[list]]
address = "held@lists.example.org"
members = ["alice@example.org"]

[[list]]
address = "strict-held@lists.example.org"
nonmember_action = "hold"
refuse_hold = true

[[list]]
address = "open@lists.example.org"
nonmember_action = "accept"

[[list]]
address = "fancy@lists.example.org"
nonmember_action = "reject"
accept_nonmembers = ["^[[:alpha:]]+@python\\.example$", "^(?!boss@)[a-z]+@partner\\.example$"]
banned = ["^.*@SPAMMER\\.example\\.org$"]

[[list]]
address = "team-request@lists.example.org"
nonmember_action = "reject"

[[list]]
address = "announce@lists.example.org"
nonmember_action = "reject"
accept_nonmembers = ["@Team@Lists.Example.org", "@quiet@lists.example.org"]
"#;

fn data() -> ListsData {
    ListsData::parse(LISTS, "lists.toml").unwrap()
}

fn classify(rules: &AddressRules, data: &ListsData, rcpt: &str) -> Recipient {
    rules.classify(rcpt, |a| data.index().contains_key(a))
}

fn post(list: &str) -> Recipient {
    Recipient::Post(list.into())
}

fn service(list: &str, suffix: &str) -> Recipient {
    Recipient::Service {
        list: list.into(),
        suffix: suffix.into(),
    }
}

/// Decides a post to `list` by `senders` with the lists file's data.
fn judge(list: &str, senders: &[&str], approved: bool) -> Decision {
    let d = data();
    let policy = d.index().get(list).unwrap().clone();
    let senders: Vec<String> = senders.iter().map(|s| s.to_string()).collect();
    let status: Vec<_> = senders.iter().map(|s| d.status(list, s)).collect();
    decide(&Post {
        list: &policy,
        senders: &senders,
        status: &status,
        approved,
    })
}

const TEAM: &str = "team@lists.example.org";

#[test]
fn the_posting_address_in_any_case_is_the_list() {
    let (r, d) = (AddressRules::default(), data());
    assert_eq!(classify(&r, &d, "team@lists.example.org"), post(TEAM));
    assert_eq!(classify(&r, &d, "<TEAM@Lists.Example.ORG>"), post(TEAM));
}

#[test]
fn an_address_extension_is_still_the_list() {
    let (r, d) = (AddressRules::default(), data());
    assert_eq!(
        classify(&r, &d, "team+anything@lists.example.org"),
        post(TEAM)
    );
    assert_eq!(classify(&r, &d, "team+a+b@lists.example.org"), post(TEAM));
    // Several delimiter characters, as Postfix 2.11+ allows.
    let multi = AddressRules {
        recipient_delimiters: "+-".into(),
        ..AddressRules::default()
    };
    assert_eq!(
        classify(&multi, &d, "quiet-x@lists.example.org"),
        post("quiet@lists.example.org")
    );
    // Without a delimiter, `team+x` is just an unknown address.
    let none = AddressRules {
        recipient_delimiters: String::new(),
        ..AddressRules::default()
    };
    assert_eq!(
        classify(&none, &d, "team+x@lists.example.org"),
        Recipient::Other
    );
}

#[test]
fn service_addresses_always_pass() {
    let (r, d) = (AddressRules::default(), data());
    for suffix in [
        "bounces",
        "confirm",
        "join",
        "leave",
        "owner",
        "subscribe",
        "unsubscribe",
        "admin",
    ] {
        assert_eq!(
            classify(&r, &d, &format!("team-{suffix}@lists.example.org")),
            service(TEAM, suffix),
            "{suffix}"
        );
    }
    // VERP bounces and confirmation cookies carry an extension.
    assert_eq!(
        classify(&r, &d, "team-bounces+alice=example.org@lists.example.org"),
        service(TEAM, "bounces")
    );
    assert_eq!(
        classify(&r, &d, "quiet-confirm+0123abcd@lists.example.org"),
        service("quiet@lists.example.org", "confirm")
    );
}

#[test]
fn a_list_whose_name_ends_like_a_suffix_is_matched_first() {
    // Mailman's LMTP runner checks the full name before splitting a suffix.
    let (r, d) = (AddressRules::default(), data());
    assert_eq!(
        classify(&r, &d, "team-request@lists.example.org"),
        post("team-request@lists.example.org")
    );
}

#[test]
fn other_addresses_are_not_lists() {
    let (r, d) = (AddressRules::default(), data());
    for rcpt in [
        "bob@example.org",
        "team@example.org",
        "team-unknown@lists.example.org",
        "postmaster@lists.example.org",
        "postmaster",
        "",
    ] {
        assert_eq!(classify(&r, &d, rcpt), Recipient::Other, "{rcpt}");
    }
}

/// Spellings Postfix routes to a list address (trailing dot, quotes,
/// comments, source route) are that address for every kind of match: the
/// posting address, an extension, a service address, an alias domain.
#[test]
fn every_routed_spelling_is_classified_like_the_plain_address() {
    let (r, d) = (AddressRules::default(), data());
    for rcpt in [
        "<team@lists.example.org.>",
        "<\"team\"@lists.example.org>",
        "<\"TEAM\"@Lists.Example.Org.>",
        "<team (list) @lists.example.org>",
        "<@relay.example:team@lists.example.org.>",
        "<\"team+x y\"@lists.example.org.>",
        "<team+\"x\"@lists.example.org>",
    ] {
        assert_eq!(classify(&r, &d, rcpt), post(TEAM), "{rcpt}");
    }
    assert_eq!(
        classify(&r, &d, "<\"team-owner\"@lists.example.org.>"),
        service(TEAM, "owner")
    );
    assert_eq!(
        classify(&r, &d, "<\"team-bounces+a=b.example\"@lists.example.org.>"),
        service(TEAM, "bounces")
    );
    let aliased = AddressRules {
        alias_domains: HashMap::from([("example.net".into(), "lists.example.org".into())]),
        ..AddressRules::default()
    };
    assert_eq!(
        classify(&aliased, &d, "<\"team\"@Example.NET.>"),
        post(TEAM)
    );
    // Quotes that are needed make another mailbox; two trailing dots are
    // not Postfix's canonical form either.
    assert_eq!(
        classify(&r, &d, "<\"team x\"@lists.example.org>"),
        Recipient::Other
    );
    assert_eq!(
        classify(&r, &d, "<team@lists.example.org..>"),
        Recipient::Other
    );
}

#[test]
fn alias_domains_map_to_the_list_domain() {
    let d = data();
    let r = AddressRules {
        alias_domains: HashMap::from([("example.net".into(), "lists.example.org".into())]),
        ..AddressRules::default()
    };
    assert_eq!(classify(&r, &d, "Team@Example.NET"), post(TEAM));
    assert_eq!(classify(&r, &d, "team+x@example.net"), post(TEAM));
    assert_eq!(
        classify(&r, &d, "team-owner@example.net"),
        service(TEAM, "owner")
    );
}

#[test]
fn a_member_may_post_whatever_the_case() {
    assert_eq!(
        judge(TEAM, &["alice@example.org"], false),
        Decision::Pass(PassReason::Member("alice@example.org".into()))
    );
    // Stored as Alice@Example.org; senders arrive lowercased (address::normalize).
    let d = data();
    assert!(d.status(TEAM, "alice@example.org").member);
}

#[test]
fn any_candidate_sender_being_a_member_is_enough() {
    // From: a stranger, envelope a member (or the other way round).
    assert_eq!(
        judge(TEAM, &["stranger@example.com", "bob@example.org"], false),
        Decision::Pass(PassReason::Member("bob@example.org".into()))
    );
}

#[test]
fn a_non_member_is_refused_on_reject_and_discard_lists() {
    assert_eq!(
        judge(TEAM, &["stranger@example.com"], false),
        Decision::Refuse(RefuseReason::Nonmember(NonmemberAction::Reject))
    );
    assert_eq!(
        judge("quiet@lists.example.org", &["stranger@example.com"], false),
        Decision::Refuse(RefuseReason::Nonmember(NonmemberAction::Discard))
    );
}

#[test]
fn hold_and_accept_lists_are_left_to_mailman_unless_holds_are_refused() {
    let d = data();
    assert!(!d.index()["held@lists.example.org"].is_guarded());
    assert!(!d.index()["open@lists.example.org"].is_guarded());
    assert!(d.index()["strict-held@lists.example.org"].is_guarded());
    assert_eq!(
        judge("held@lists.example.org", &["stranger@example.com"], false),
        Decision::Pass(PassReason::NotRefused(NonmemberAction::Hold))
    );
    assert_eq!(
        judge("open@lists.example.org", &["stranger@example.com"], false),
        Decision::Pass(PassReason::NotRefused(NonmemberAction::Accept))
    );
    assert_eq!(
        judge(
            "strict-held@lists.example.org",
            &["stranger@example.com"],
            false
        ),
        Decision::Refuse(RefuseReason::Nonmember(NonmemberAction::Hold))
    );
}

#[test]
fn a_plain_accept_entry_lets_a_non_member_post() {
    assert_eq!(
        judge(TEAM, &["boss@example.com"], false),
        Decision::Pass(PassReason::AcceptPattern {
            sender: "boss@example.com".into(),
            pattern: "boss@example.com".into(),
        })
    );
    // Compared as Mailman compares it: exactly, with the lowercased
    // sender, so an entry with capitals lets nobody through.
    assert_eq!(
        judge(TEAM, &["shouty@example.com"], false),
        Decision::Refuse(RefuseReason::Nonmember(NonmemberAction::Reject))
    );
}

#[test]
fn a_regex_accept_entry_matches_at_the_start_like_re_match() {
    assert!(matches!(
        judge(TEAM, &["carol@partner.example"], false),
        Decision::Pass(PassReason::AcceptPattern { .. })
    ));
    // Not end-anchored beyond the pattern's own `$`, start-anchored by `^`.
    let p = Pattern::parse("^[a-z]+@partner\\.example");
    assert_eq!(p.matches("carol@partner.example.net"), PatternMatch::Yes);
    assert_eq!(p.matches("x-carol@partner.example"), PatternMatch::No);
    // Mailman 3 matches the pattern case-sensitively against the lowercased
    // sender: an upper-case pattern never matches.
    assert_eq!(
        Pattern::parse("^Carol@").matches("carol@x.example"),
        PatternMatch::No
    );
    assert_eq!(
        judge(TEAM, &["carol-2@partner.example"], false),
        Decision::Refuse(RefuseReason::Nonmember(NonmemberAction::Reject))
    );
}

#[test]
fn an_at_list_accept_entry_lets_members_of_that_list_post() {
    const ANNOUNCE: &str = "announce@lists.example.org";
    assert_eq!(
        judge(
            ANNOUNCE,
            &["stranger@example.com", "bob@example.org"],
            false
        ),
        Decision::Pass(PassReason::AcceptPattern {
            sender: "bob@example.org".into(),
            pattern: "@team@lists.example.org".into(),
        })
    );
    assert_eq!(
        judge(ANNOUNCE, &["stranger@example.com"], false),
        Decision::Refuse(RefuseReason::Nonmember(NonmemberAction::Reject))
    );
    // Not in ban lists.
    let e = ListsData::parse(
        "[[list]]\naddress = \"a@y.example\"\nbanned = [\"@b@y.example\"]\n",
        "l.toml",
    )
    .unwrap_err();
    assert!(e.to_string().contains("list[0].banned[0]"), "{e}");
}

#[test]
fn an_accept_pattern_that_cannot_be_evaluated_never_leads_to_a_refusal() {
    let d = data();
    assert_eq!(
        d.unevaluable()
            .iter()
            .map(|u| (u.list.as_str(), u.key.as_str(), u.entry.as_str()))
            .collect::<Vec<_>>(),
        [(
            "fancy@lists.example.org",
            "accept_these_nonmembers",
            "^[[:alpha:]]+@python\\.example$"
        )]
    );
    assert!(matches!(
        judge("fancy@lists.example.org", &["anyone@example.com"], false),
        Decision::Pass(PassReason::UnsupportedPattern(_))
    ));
    // Without such a pattern the same sender is refused.
    assert!(matches!(
        judge("quiet@lists.example.org", &["anyone@example.com"], false),
        Decision::Refuse(_)
    ));
}

#[test]
fn look_around_is_evaluated_as_python_would() {
    // `^(?!boss@)[a-z]+@partner\.example$`: anyone at the partner but the boss.
    let d = data();
    let list = d.index()["fancy@lists.example.org"].clone();
    let hit = |s: &str| {
        list.accept_nonmembers
            .iter()
            .map(|p| p.matches(s))
            .collect::<Vec<_>>()
    };
    assert_eq!(hit("ann@partner.example")[1], PatternMatch::Yes);
    assert_eq!(hit("boss@partner.example")[1], PatternMatch::No);
}

#[test]
fn ban_patterns_ignore_case_as_mailmans_ban_manager() {
    // Banned as `^.*@SPAMMER\.example\.org$`; Mailman matches with
    // re.IGNORECASE against the lowercased sender.
    let d = data();
    assert!(
        d.status("fancy@lists.example.org", "x@spammer.example.org")
            .banned
    );
    assert!(
        !d.status("fancy@lists.example.org", "x@spammer.example.net")
            .banned
    );
    // Accept and the other non-member patterns stay case-sensitive
    // (`re.match` without flags in rules/moderation.py).
    assert_eq!(
        Pattern::parse("^.*@PARTNER\\.example$").matches("a@partner.example"),
        PatternMatch::No
    );
}

#[test]
fn banned_senders_are_refused_even_when_members() {
    let lists = r#"
[[list]]
address = "b@lists.example.org"
nonmember_action = "hold"
members = ["spam@example.net"]
banned = ["spam@example.net", "^.*@evil\\.example$"]
"#;
    let d = ListsData::parse(lists, "b.toml").unwrap();
    let policy = d.index()["b@lists.example.org"].clone();
    assert!(policy.is_guarded(), "a hold list with bans is guarded");
    for sender in ["spam@example.net", "x@evil.example"] {
        let senders = vec![sender.to_string()];
        let status: Vec<_> = senders
            .iter()
            .map(|s| d.status("b@lists.example.org", s))
            .collect();
        assert_eq!(
            decide(&Post {
                list: &policy,
                senders: &senders,
                status: &status,
                approved: false
            }),
            Decision::Refuse(RefuseReason::Banned(sender.into()))
        );
    }
    assert_eq!(
        judge(TEAM, &["alice@example.org", "x@evil.example"], false),
        Decision::Refuse(RefuseReason::Banned("x@evil.example".into()))
    );
}

#[test]
fn an_approved_header_passes_to_mailman() {
    assert_eq!(
        judge(TEAM, &["stranger@example.com"], true),
        Decision::Pass(PassReason::Approved)
    );
    for h in ["Approved", "approve", "X-Approved", "X-APPROVE"] {
        assert!(mailman_milter::policy::is_approval_header(h), "{h}");
    }
    assert!(!mailman_milter::policy::is_approval_header("Approved-By"));
}

#[test]
fn no_sender_at_all_is_refused_on_a_guarded_list() {
    assert_eq!(
        judge(TEAM, &[], false),
        Decision::Refuse(RefuseReason::NoSenders)
    );
}

#[test]
fn lists_file_errors_name_the_file_and_the_key() {
    let bad = [
        (
            "[[list]]\naddress = \"x@y.example\"\nmembres = []\n",
            "unknown field `membres`",
        ),
        (
            "[[list]]\naddress = \"x@y.example\"\nnonmember_action = \"bounce\"\n",
            "nonmember_action",
        ),
        ("[[list]]\naddress = \"nodomain\"\n", "list[0].address"),
        (
            "[[list]]\naddress = \"a@y.example\"\n[[list]]\naddress = \"A@Y.example\"\n",
            "list[1].address: a@y.example is listed twice",
        ),
        (
            "[[list]]\naddress = \"a@y.example\"\nmembers = [\"ok@x.example\", \"bad\"]\n",
            "list[0].members[1]",
        ),
        (
            "[[list]]\naddress = \"a@y.example\"\naccept_nonmembers = [\"nope\"]\n",
            "list[0].accept_nonmembers[0]",
        ),
        (
            "[[list]]\naddress = \"a@y.example\"\nreject_text = \"two\\nlines\"\n",
            "list[0].reject_text",
        ),
    ];
    for (text, want) in bad {
        let e = ListsData::parse(text, "/etc/lists.toml").unwrap_err();
        let shown = e.to_string();
        assert!(shown.starts_with("/etc/lists.toml: "), "{shown}");
        assert!(shown.contains(want), "{shown} lacks {want}");
    }
}

#[test]
fn a_reload_keeps_the_old_data_when_the_new_file_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lists.toml");
    std::fs::write(&path, LISTS).unwrap();
    let (backend, err) = FileBackend::open(&path);
    assert!(err.is_none());
    assert_eq!(backend.reload_if_changed().unwrap(), Reloaded::Unchanged);
    std::fs::write(&path, "[[list]]\naddress = 5\n").unwrap();
    let e = backend.reload().unwrap_err();
    assert!(e.to_string().contains("lists.toml"), "{e}");
    assert_eq!(backend.data().unwrap().index().len(), 8, "old data kept");
    std::fs::write(&path, "[[list]]\naddress = \"new@lists.example.org\"\n").unwrap();
    // Noticed without a signal: the size (and time) changed.
    assert_eq!(backend.reload_if_changed().unwrap(), Reloaded::Loaded(1));
    assert_eq!(backend.reload_if_changed().unwrap(), Reloaded::Unchanged);
    assert!(
        backend
            .data()
            .unwrap()
            .index()
            .contains_key("new@lists.example.org")
    );
}

#[test]
fn an_unreadable_lists_file_makes_the_backend_unavailable_not_empty() {
    let (backend, err) = FileBackend::open("/nonexistent/lists.toml");
    let err = err.expect("an error");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/lists.toml: cannot read"),
        "{err}"
    );
    assert!(backend.data().is_err());
}

#[test]
fn the_configuration_has_defaults_and_rejects_unknown_keys() {
    let c = Config::parse("", Path::new("/etc/mm.toml")).unwrap();
    assert_eq!(c.listen, ["inet:127.0.0.1:8893"]);
    assert_eq!(c.senders, SenderMode::Mailman);
    let c = Config::parse(
        "senders = \"envelope\"\nlists = \"lists.toml\"\n[alias_domains]\n\"Example.NET\" = \"lists.example.org\"\n",
        Path::new("/etc/mm/config.toml"),
    )
    .unwrap();
    assert_eq!(c.senders, SenderMode::Envelope);
    assert_eq!(c.lists.as_deref(), Some(Path::new("/etc/mm/lists.toml")));
    assert_eq!(
        c.settings().rules.alias_domains["example.net"],
        "lists.example.org"
    );
    for (text, want) in [
        ("lissten = \"x\"\n", "unknown field `lissten`"),
        ("senders = \"from\"\n", "senders"),
        ("listen = \"tcp:1\"\n", "listen:"),
        ("socket_mode = \"999\"\n", "socket_mode:"),
        ("reject_text = \"a\\u0007b\"\n", "reject_text:"),
        ("[alias_domains]\n\"a@b\" = \"c\"\n", "alias_domains:"),
    ] {
        let e = Config::parse(text, Path::new("/etc/mm.toml")).unwrap_err();
        let shown = e.to_string();
        assert!(shown.starts_with("/etc/mm.toml: "), "{shown}");
        assert!(shown.contains(want), "{shown} lacks {want}");
    }
}

/// Lists with Mailman 3's per-address moderation, legacy non-member lists,
/// a moderated-members default and emergency moderation.
const MODERATED: &str = r#"
[[list]]
address = "mod@lists.example.org"
nonmember_action = "reject"
members = ["alice@example.org", "slow@example.org", "troll@example.org", "gone@example.org"]
accept_nonmembers = ["^.*@partner\\.example$"]
hold_nonmembers = ["waiting@example.com"]
reject_nonmembers = ["^.*@rival\\.example$"]
discard_nonmembers = ["dropped@example.com", "Loud@Example.com"]

[list.moderation]
"Troll@Example.org" = "discard"
"gone@example.org" = "reject"
"slow@example.org" = "hold"
"vip@outside.example" = "accept"
"pest@partner.example" = "reject"

[[list]]
address = "members-held@lists.example.org"
nonmember_action = "accept"
default_member_action = "hold"
refuse_hold = true
members = ["alice@example.org", "free@example.org"]

[list.moderation]
"free@example.org" = "accept"

[[list]]
address = "open@lists.example.org"
nonmember_action = "accept"
members = ["grump@example.org"]
moderation = { "grump@example.org" = "reject" }

[[list]]
address = "relaxed@lists.example.org"
nonmember_action = "accept"
moderation = { "slow@example.org" = "hold" }

[[list]]
address = "emergency@lists.example.org"
nonmember_action = "reject"
emergency = true
members = ["alice@example.org"]
"#;

fn judge_in(text: &str, list: &str, senders: &[&str]) -> Decision {
    let d = ListsData::parse(text, "lists.toml").unwrap();
    let policy = d.index().get(list).unwrap().clone();
    let senders: Vec<String> = senders.iter().map(|s| s.to_string()).collect();
    let status: Vec<_> = senders.iter().map(|s| d.status(list, s)).collect();
    decide(&Post {
        list: &policy,
        senders: &senders,
        status: &status,
        approved: false,
    })
}

const MOD: &str = "mod@lists.example.org";

#[test]
fn a_member_whose_own_action_is_reject_or_discard_is_refused() {
    assert_eq!(
        judge_in(MODERATED, MOD, &["troll@example.org"]),
        Decision::Refuse(RefuseReason::ModeratedMember {
            sender: "troll@example.org".into(),
            action: NonmemberAction::Discard,
        })
    );
    assert_eq!(
        judge_in(MODERATED, MOD, &["gone@example.org"]),
        Decision::Refuse(RefuseReason::ModeratedMember {
            sender: "gone@example.org".into(),
            action: NonmemberAction::Reject,
        })
    );
    // Mailman takes the first sender that is a member, and its action.
    assert!(matches!(
        judge_in(MODERATED, MOD, &["alice@example.org", "troll@example.org"]),
        Decision::Pass(PassReason::Member(_))
    ));
    assert!(matches!(
        judge_in(MODERATED, MOD, &["troll@example.org", "alice@example.org"]),
        Decision::Refuse(RefuseReason::ModeratedMember { .. })
    ));
}

#[test]
fn a_held_member_is_left_to_mailman_unless_holds_are_refused() {
    assert_eq!(
        judge_in(MODERATED, MOD, &["slow@example.org"]),
        Decision::Pass(PassReason::Held {
            sender: "slow@example.org".into(),
            by: "member moderation".into(),
        })
    );
    // default_member_action = hold with refuse_hold: members without an
    // own action are refused, a member whose own action is accept passes.
    let list = "members-held@lists.example.org";
    assert_eq!(
        judge_in(MODERATED, list, &["alice@example.org"]),
        Decision::Refuse(RefuseReason::ModeratedMember {
            sender: "alice@example.org".into(),
            action: NonmemberAction::Hold,
        })
    );
    assert!(matches!(
        judge_in(MODERATED, list, &["free@example.org"]),
        Decision::Pass(PassReason::Member(_))
    ));
    // Non-members pass there: the list accepts them.
    assert!(matches!(
        judge_in(MODERATED, list, &["stranger@example.com"]),
        Decision::Pass(PassReason::NotRefused(NonmemberAction::Accept))
    ));
}

#[test]
fn a_non_member_record_overrides_the_list_default() {
    assert_eq!(
        judge_in(MODERATED, MOD, &["vip@outside.example"]),
        Decision::Pass(PassReason::NonmemberRecord("vip@outside.example".into()))
    );
    // Its own reject wins over a matching accept pattern.
    assert!(matches!(
        judge_in(MODERATED, MOD, &["pest@partner.example"]),
        Decision::Refuse(RefuseReason::NonmemberRule {
            action: NonmemberAction::Reject,
            ..
        })
    ));
    assert!(matches!(
        judge_in(MODERATED, MOD, &["other@partner.example"]),
        Decision::Pass(PassReason::AcceptPattern { .. })
    ));
}

#[test]
fn the_legacy_hold_reject_and_discard_lists_apply_in_mailmans_order() {
    assert_eq!(
        judge_in(MODERATED, MOD, &["waiting@example.com"]),
        Decision::Pass(PassReason::Held {
            sender: "waiting@example.com".into(),
            by: "hold_these_nonmembers entry waiting@example.com".into(),
        })
    );
    assert_eq!(
        judge_in(MODERATED, MOD, &["boss@rival.example"]),
        Decision::Refuse(RefuseReason::NonmemberRule {
            sender: "boss@rival.example".into(),
            action: NonmemberAction::Reject,
            by: "reject_these_nonmembers entry ^.*@rival\\.example$".into(),
        })
    );
    assert!(matches!(
        judge_in(MODERATED, MOD, &["dropped@example.com"]),
        Decision::Refuse(RefuseReason::NonmemberRule {
            action: NonmemberAction::Discard,
            ..
        })
    ));
    // A plain entry with capitals never matches in Mailman (`==` against
    // the lowercased sender): the list's default decides, as there.
    assert!(!matches!(
        judge_in(MODERATED, MOD, &["loud@example.com"]),
        Decision::Refuse(RefuseReason::NonmemberRule { .. })
    ));
    // Per sender, in order: the first sender's hit decides, as in Mailman 3.
    assert!(matches!(
        judge_in(MODERATED, MOD, &["boss@rival.example", "x@partner.example"]),
        Decision::Refuse(RefuseReason::NonmemberRule { .. })
    ));
    assert!(matches!(
        judge_in(MODERATED, MOD, &["x@partner.example", "boss@rival.example"]),
        Decision::Pass(PassReason::AcceptPattern { .. })
    ));
}

#[test]
fn moderation_guards_lists_whose_defaults_refuse_nothing() {
    let d = ListsData::parse(MODERATED, "lists.toml").unwrap();
    let open = &d.index()["open@lists.example.org"];
    assert!(open.is_guarded());
    assert!(matches!(
        judge_in(MODERATED, "open@lists.example.org", &["grump@example.org"]),
        Decision::Refuse(RefuseReason::ModeratedMember { .. })
    ));
    assert!(matches!(
        judge_in(MODERATED, "open@lists.example.org", &["anyone@example.com"]),
        Decision::Pass(PassReason::NotRefused(NonmemberAction::Accept))
    ));
    // A hold alone guards nothing unless holds are refused.
    let relaxed = &d.index()["relaxed@lists.example.org"];
    assert!(!relaxed.is_guarded());
    let mut strict = (**relaxed).clone();
    strict.refuse_hold = Some(true);
    assert!(strict.is_guarded());
}

#[test]
fn emergency_moderation_leaves_the_list_to_mailman() {
    let d = ListsData::parse(MODERATED, "lists.toml").unwrap();
    assert!(!d.index()["emergency@lists.example.org"].is_guarded());
    assert_eq!(
        judge_in(
            MODERATED,
            "emergency@lists.example.org",
            &["stranger@example.com"]
        ),
        Decision::Pass(PassReason::Emergency)
    );
    // Mailman 3.3.8's chain holds before it looks at bans.
    let d = ListsData::parse(
        "[[list]]\naddress = \"e@lists.example.org\"\nemergency = true\nbanned = [\"troll@example.org\"]\n",
        "lists.toml",
    )
    .unwrap();
    assert!(!d.index()["e@lists.example.org"].is_guarded());
    assert_eq!(
        judge_in(
            "[[list]]\naddress = \"e@lists.example.org\"\nemergency = true\nbanned = [\"troll@example.org\"]\n",
            "e@lists.example.org",
            &["troll@example.org"]
        ),
        Decision::Pass(PassReason::Emergency)
    );
}

#[test]
fn moderation_keys_in_the_lists_file_are_checked() {
    for (text, want) in [
        (
            "[[list]]\naddress = \"a@y.example\"\nmoderation = { \"nope\" = \"reject\" }\n",
            "list[0].moderation: \"nope\" is not an address",
        ),
        (
            "[[list]]\naddress = \"a@y.example\"\nmoderation = { \"x@y.example\" = \"bounce\" }\n",
            "bounce",
        ),
        (
            "[[list]]\naddress = \"a@y.example\"\nreject_nonmembers = [\"@b@y.example\"]\n",
            "list[0].reject_nonmembers[0]",
        ),
        (
            "[[list]]\naddress = \"a@y.example\"\nhold_nonmembers = [\"nope\"]\n",
            "list[0].hold_nonmembers[0]",
        ),
        (
            "[[list]]\naddress = \"a@y.example\"\ndefault_member_action = \"maybe\"\n",
            "default_member_action",
        ),
    ] {
        let e = ListsData::parse(text, "/etc/lists.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/lists.toml: "), "{e}");
        assert!(e.contains(want), "{e} lacks {want}");
    }
}

#[test]
fn refuse_hold_and_reject_text_per_list_from_the_file_and_the_config() {
    let lists = r#"
[[list]]
address = "a@lists.example.org"
nonmember_action = "hold"

[[list]]
address = "b@lists.example.org"
nonmember_action = "hold"
refuse_hold = false
reject_text = "<{list}>: from the lists file"

[[list]]
address = "c@lists.example.org"
nonmember_action = "hold"
"#;
    let data = ListsData::parse(lists, "lists.toml").unwrap();
    let config = Config::parse(
        "lists = \"l.toml\"\nrefuse_hold = true\n\
         [list_overrides.\"B@Lists.Example.org\"]\nrefuse_hold = true\nreject_text = \"<{list}>: from the config\"\n\
         [list_overrides.\"c@lists.example.org\"]\nrefuse_hold = false\nreject_text = \"<{list}>: owners only\"\n",
        Path::new("/etc/mm.toml"),
    )
    .unwrap();
    let applied = config.settings().overrides.apply(data.index());
    // a: the global refuse_hold.
    assert!(applied["a@lists.example.org"].is_guarded());
    assert_eq!(applied["a@lists.example.org"].reject_text, None);
    // b: the lists file's own values win over the config's per-list ones.
    assert!(!applied["b@lists.example.org"].is_guarded());
    assert_eq!(
        applied["b@lists.example.org"].reject_text.as_deref(),
        Some("<{list}>: from the lists file")
    );
    // c: the config's per-list values win over the global one.
    assert!(!applied["c@lists.example.org"].is_guarded());
    assert_eq!(
        applied["c@lists.example.org"].reject_text.as_deref(),
        Some("<{list}>: owners only")
    );
    // Without overrides, an unset refuse_hold is no.
    assert!(!data.index()["a@lists.example.org"].is_guarded());

    for (text, want) in [
        (
            "[list_overrides.\"nodomain\"]\nrefuse_hold = true\n",
            "list_overrides.\"nodomain\": \"nodomain\" is not a list address",
        ),
        (
            "[list_overrides.\"a@b.example\"]\nreject_text = \"x\\ny\"\n",
            "list_overrides.\"a@b.example\".reject_text",
        ),
        (
            "[list_overrides.\"a@b.example\"]\nrefuse_holds = true\n",
            "refuse_holds",
        ),
        ("refuse_hold = \"yes\"\n", "refuse_hold"),
        (
            "backend = \"mailman\"\n[mailman]\nmax_stale = -1\n",
            "mailman.max_stale",
        ),
    ] {
        let e = Config::parse(text, Path::new("/etc/mm.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/mm.toml: "), "{e}");
        assert!(e.contains(want), "{e} lacks {want}");
    }
}

#[test]
fn address_headers_are_read_as_mailman_decodes_them() {
    // What Mailman 3 finds in each value (Python's decode_header, then
    // getaddresses, legacy and strict), or less: never more.
    use mailman_milter::address::header_addresses;
    let cases: [(&str, &[&str]); 9] = [
        (
            "=?utf-8?q?Doe=2C_John?= <john@example.org>",
            &["john@example.org"],
        ),
        (
            "=?utf-8?q?a, b@evil.example, ?= <real@example.org>",
            &["b@evil.example", "real@example.org"],
        ),
        ("=?utf-8?q?<fake@evil.example>?= <real@example.org>", &[]),
        ("=?utf-8?q?x@evil.example?=", &["x@evil.example"]),
        (
            "=?utf-8?b?ZXZpbEBldmlsLmV4YW1wbGU=?= <real@example.org>, bob@example.org",
            &[],
        ),
        ("=?utf-8?q?\"?= <real@example.org>, other@example.org", &[]),
        (
            "\"=?utf-8?q?a,b?=\" <real@example.org>",
            &["real@example.org"],
        ),
        // Not an encoded word (never closed): read as plain text, as Mailman does.
        (
            "=?utf-8?q?Doe, John <john@example.org>",
            &["john@example.org"],
        ),
        // Folded between two encoded words.
        (
            "=?utf-8?q?Doe=2C?=\r\n =?utf-8?q?_John?= <john@example.org>",
            &["john@example.org"],
        ),
    ];
    for (value, want) in cases {
        assert_eq!(header_addresses(value), want, "{value}");
    }
}

#[test]
fn listen_is_one_string_or_an_array_of_them() {
    let p = |text: &str| Config::parse(text, Path::new("/etc/mm.toml"));
    assert_eq!(
        p("listen = \"unix:/run/mm.sock\"\n").unwrap().listen,
        ["unix:/run/mm.sock"]
    );
    let c =
        p("listen = [\"unix:/run/mm.sock\", \"inet6:[::1]:8893\", \"inet6:8893@::1\"]\n").unwrap();
    assert_eq!(c.listen_specs().unwrap().len(), 3);
    for (text, want) in [
        (
            "listen = [\"unix:/a\", \"inet6:::1:8893\"]\n",
            "/etc/mm.toml: listen[1]: ",
        ),
        ("listen = []\n", "/etc/mm.toml: listen: no socket given"),
        ("listen = 8893\n", "expected a socket like"),
        (
            "listen = [1]\n",
            "/etc/mm.toml: line 1, column 11 (`listen = [1]`): invalid type: integer",
        ),
    ] {
        let e = p(text).unwrap_err().to_string();
        assert!(e.contains(want), "{text}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

/// Every configuration example in the README parses (the `listen` forms in
/// it included): a README that shows a form the parser refuses is a trap.
#[test]
fn the_readmes_configuration_examples_parse() {
    let readme = include_str!("../README.md");
    let mut blocks = 0;
    for block in readme.split("```toml\n").skip(1) {
        let block = block.split("```").next().unwrap();
        if block.contains("[[list]]") {
            continue; // the lists file, not the configuration
        }
        let c = Config::parse(block, Path::new("/etc/mailman-milter/config.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{block}"));
        c.listen_specs().unwrap();
        blocks += 1;
    }
    assert!(blocks >= 1);
    // The table's IPv6 forms, with a port in place of PORT.
    for form in ["inet:[::1]:8893", "inet6:[::1]:8893", "inet6:8893@::1"] {
        assert!(readme.contains(&form.replace("8893", "PORT")), "{form}");
        let c = Config::parse(&format!("listen = \"{form}\"\n"), Path::new("c.toml")).unwrap();
        c.listen_specs().unwrap();
    }
}

/// `--check-config` and the start-up log show the settings spelt as in the
/// file: pasted back, they give the same configuration.
#[test]
fn the_settings_summary_is_toml_that_reads_back_the_same() {
    let text = r#"
listen = ["unix:/run/mm.sock", "inet:127.0.0.1:8893"]
lists = "/etc/mm/lists.toml"
senders = "envelope"
on_backend_error = "accept"
recipient_delimiter = "+-"
reject_text = "<{list}>: \"members\" only"
refuse_hold = true
pass_approved = false
reload_interval = 0
socket_mode = "660"
socket_group = "postfix"
[alias_domains]
"Alias.Example" = "lists.example.org"
[list_overrides."team@lists.example.org"]
refuse_hold = false
reject_text = "no"
"#;
    let c = Config::parse(text, Path::new("/etc/mm/config.toml")).unwrap();
    let summary = c.summary();
    assert!(
        summary.contains(&"senders = \"envelope\"".to_owned()),
        "{summary:?}"
    );
    assert!(
        summary.contains(&"on_backend_error = \"accept\"".to_owned()),
        "{summary:?}"
    );
    assert!(
        summary.contains(&"backend = \"file\"".to_owned()),
        "{summary:?}"
    );
    assert!(
        summary
            .iter()
            .all(|l| !l.contains("Envelope") && !l.contains("Accept"))
    );
    let back = Config::parse(&summary.join("\n"), Path::new("/etc/mm/config.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{}", summary.join("\n")));
    assert_eq!(format!("{back:?}"), format!("{c:?}"));

    let rest = "backend = \"mailman\"\n[mailman]\npassword = \"sekrit\"\ntimeout = 2.5\n";
    let c = Config::parse(rest, Path::new("/etc/mm/config.toml")).unwrap();
    let summary = c.summary().join("\n");
    assert!(!summary.contains("sekrit"), "{summary}");
    assert!(summary.contains("backend = \"mailman\""), "{summary}");
    assert!(summary.contains("timeout = 2.5"), "{summary}");
    let back = Config::parse(&summary, Path::new("/etc/mm/config.toml")).unwrap();
    assert_eq!(back.mailman_section().timeout, 2.5);
}

#[test]
fn overrides_naming_no_list_are_found() {
    let data = ListsData::parse(LISTS, "lists.toml").unwrap();
    let c = Config::parse(
        "[list_overrides.\"Team@Lists.Example.org\"]\nrefuse_hold = true\n[list_overrides.\"tema@lists.example.org\"]\nrefuse_hold = true\n",
        Path::new("c.toml"),
    )
    .unwrap();
    assert_eq!(
        c.settings().overrides.missing(data.index()),
        ["tema@lists.example.org"]
    );
}

/// Mailman 3's `approved` rule ignores `Approved:` on a list without a
/// moderator password; the claim then decides nothing.
#[test]
fn approval_counts_only_where_the_list_has_a_moderator_password() {
    let text = |pw: &str| {
        format!("[[list]]\naddress = \"a@l.example\"\nnonmember_action = \"reject\"\n{pw}")
    };
    let decide_in = |pw: &str| {
        let d = ListsData::parse(&text(pw), "lists.toml").unwrap();
        let policy = d.index()["a@l.example"].clone();
        let senders = vec!["stranger@example.com".to_owned()];
        let status = vec![d.status("a@l.example", &senders[0])];
        decide(&Post {
            list: &policy,
            senders: &senders,
            status: &status,
            approved: true,
        })
    };
    assert_eq!(
        decide_in("moderator_password = true\n"),
        Decision::Pass(PassReason::Approved)
    );
    // Not said: Mailman may have one, so Mailman checks.
    assert_eq!(decide_in(""), Decision::Pass(PassReason::Approved));
    assert_eq!(
        decide_in("moderator_password = false\n"),
        Decision::Refuse(RefuseReason::Nonmember(NonmemberAction::Reject))
    );
}

/// The lists file's `[[list.header_matches]]`, decided with the post's
/// headers: a member (defer) is refused by a discard rule; a hold rule
/// refuses only where holds are refused; a rule with no action is left to
/// Mailman's jump chain.
#[test]
fn header_match_rules_from_the_lists_file() {
    use mailman_milter::header_match::SeenHeaders;
    use mailman_milter::policy::decide_with_headers;
    let text = r#"
[[list]]
address = "a@l.example"
nonmember_action = "hold"
members = ["m@example.org"]

[[list.header_matches]]
header = "X-Spam"
pattern = "^yes"
action = "discard"

[[list.header_matches]]
header = "subject"
pattern = "sale"
action = "hold"

[[list.header_matches]]
header = "x-site"
pattern = "."
"#;
    let d = ListsData::parse(text, "lists.toml").unwrap();
    let run = |refuse_hold: bool, from: &str, headers: &[(&str, &str)]| {
        let mut policy = (*d.index()["a@l.example"]).clone();
        policy.refuse_hold = Some(refuse_hold);
        let mut seen = SeenHeaders::default();
        for (n, v) in headers {
            seen.add(&policy.header_matches, n, v);
        }
        let senders = vec![from.to_owned()];
        let status = vec![d.status("a@l.example", from)];
        let post = Post {
            list: &policy,
            senders: &senders,
            status: &status,
            approved: false,
        };
        decide_with_headers(&post, Some(&seen))
    };
    assert!(d.index()["a@l.example"].is_guarded());
    assert!(matches!(
        run(false, "m@example.org", &[("X-SPAM", "Yes, 9.1")]),
        Decision::Refuse(RefuseReason::HeaderRule {
            action: NonmemberAction::Discard,
            ..
        })
    ));
    assert_eq!(
        run(false, "m@example.org", &[("X-Spam", "no")]),
        Decision::Pass(PassReason::Member("m@example.org".into()))
    );
    assert!(matches!(
        run(false, "x@example.com", &[("Subject", "Big SALE")]),
        Decision::Pass(PassReason::Held { .. })
    ));
    assert!(matches!(
        run(true, "x@example.com", &[("Subject", "Big SALE")]),
        Decision::Refuse(RefuseReason::HeaderRule {
            action: NonmemberAction::Hold,
            ..
        })
    ));
    assert!(matches!(
        run(true, "x@example.com", &[("X-Site", "1")]),
        Decision::Pass(PassReason::HeaderRule { .. })
    ));
    // An unknown action is an error naming the key.
    let e = ListsData::parse(
        "[[list]]\naddress = \"a@l.example\"\n[[list.header_matches]]\nheader = \"x\"\npattern = \"y\"\naction = \"bounce\"\n",
        "l.toml",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("list[0].header_matches[0].action"),
        "{e}"
    );
}

/// `[[user]]`: as in Mailman 3, a sender that is not subscribed itself is
/// a member through another address of the same user, with that member's
/// own moderation action.
#[test]
fn a_users_other_address_is_a_member_in_the_lists_file() {
    let text = r#"
[[list]]
address = "a@l.example"
nonmember_action = "reject"
members = ["alice@example.org", "troll@example.org"]

[list.moderation]
"troll@example.org" = "discard"

[[user]]
addresses = ["Alice@Home.example", "alice@example.org"]

[[user]]
addresses = ["troll@example.org", "troll@elsewhere.example"]
"#;
    let d = ListsData::parse(text, "lists.toml").unwrap();
    let alt = d.status("a@l.example", "alice@home.example");
    assert!(alt.member, "{alt:?}");
    assert_eq!(alt.moderation, None);
    let troll = d.status("a@l.example", "troll@elsewhere.example");
    assert!(troll.member);
    assert_eq!(troll.moderation, Some(NonmemberAction::Discard));
    assert!(!d.status("a@l.example", "nobody@example.org").member);
    let e = ListsData::parse(
        "[[user]]\naddresses = [\"x@y.example\"]\n[[user]]\naddresses = [\"X@y.example\"]\n",
        "l.toml",
    )
    .unwrap_err();
    assert!(e.to_string().contains("user[1].addresses[0]"), "{e}");
}
