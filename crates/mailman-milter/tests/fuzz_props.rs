//! Property tests (the stable-toolchain stand-in for fuzzing, issue 6) of
//! mailman-milter's address handling, recipient classification and posting
//! decision, fed arbitrary strings and generated addresses.
//!
//! Invariants: nothing panics on any input; normalisation is idempotent on the
//! addresses an MTA hands over; `list+anything@domain` is always the list,
//! `list-<service>@domain` (with or without an extension) always a service
//! address, in any letter case, with or without angle brackets; a recipient is
//! only ever classified as a list it really names; and the posting decision
//! only refuses when the list refuses non-members and no sender may post.
//!
//! Each property runs `CASES` cases (a few seconds in all); `PROPTEST_CASES=N`
//! runs N instead (20,000 took 149 s here).

use mailman_milter::address::{envelope, envelope_mailbox, header_addresses, normalize, split};
use mailman_milter::backend::SenderStatus;
use mailman_milter::list::{ListPolicy, NonmemberAction, Pattern};
use mailman_milter::policy::{Decision, PassReason, Post, RefuseReason, decide};
use mailman_milter::recipient::{AddressRules, Recipient, SERVICE_SUFFIXES};
use minimilter::envelope_address::EnvelopeAddress;
use proptest::prelude::*;
use std::collections::HashMap;

const CASES: u32 = 512;

fn config() -> ProptestConfig {
    ProptestConfig {
        // `PROPTEST_CASES=100000 cargo test ...` for a longer run.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(CASES),
        failure_persistence: None,
        // The same cases on every run (`PROPTEST_RNG_SEED` is ignored).
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x006d_6169_6c6d_616e),
        ..ProptestConfig::default()
    }
}

/// Arbitrary text biased towards the characters address parsing cares about.
fn messy() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just('<'),
                Just('>'),
                Just('@'),
                Just(':'),
                Just(','),
                Just(';'),
                Just('"'),
                Just('('),
                Just(')'),
                Just('\\'),
                Just(' '),
                Just('\t'),
                Just('\r'),
                Just('\n'),
                Just('+'),
                Just('-'),
                Just('.'),
                Just('A'),
                Just('z'),
                Just('\u{130}'),  // İ: lowercases to two chars
                Just('\u{212A}'), // Kelvin sign: lowercases to ASCII k
                any::<char>(),
            ],
            0..40,
        )
        .prop_map(|v| v.into_iter().collect()),
    ]
}

/// A Mailman list name: lowercase ASCII, digits, `.`, `_`, `-`, no delimiter,
/// not itself ending in a service suffix.
fn list_local() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9._-]{0,15}".prop_filter("ends like a service address", |l| {
        !SERVICE_SUFFIXES
            .iter()
            .any(|s| l.ends_with(&format!("-{s}")))
    })
}

fn domain() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z]{2,6}){1,2}"
}

/// Randomly upper-cases ASCII letters (`mask` picks which).
fn recase(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// How an MTA may hand the address over: bare, in brackets, padded.
fn wrap(addr: &str, style: u8) -> String {
    match style % 4 {
        0 => addr.to_owned(),
        1 => format!("<{addr}>"),
        2 => format!("  <{addr}>\t"),
        _ => format!(" {addr} "),
    }
}

proptest! {
    #![proptest_config(config())]

    /// An encoded display name that decodes to plain text (letters, digits,
    /// spaces, non-ASCII) never hides the addresses after it. (What Mailman
    /// makes of encoded words holding specials is judged against Python in
    /// crates/fuzz-checks/tests/mailman_reader.rs.)
    #[test]
    fn plain_encoded_display_names_keep_their_address(
        text in "[A-Za-z0-9 \u{e4}\u{f6}\u{fc}\u{e9}\u{4e2d}]{0,20}",
        base64 in any::<bool>(),
    ) {
        use base64::Engine;
        let word = if base64 {
            format!("=?utf-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(&text))
        } else {
            let q: String = text
                .bytes()
                .map(|b| match b {
                    b' ' => "_".to_owned(),
                    b if b.is_ascii_alphanumeric() => (b as char).to_string(),
                    b => format!("={b:02X}"),
                })
                .collect();
            format!("=?utf-8?q?{q}?=")
        };
        let value = format!("{word} <Real@Example.org>, second@example.org");
        prop_assert_eq!(
            header_addresses(&value),
            vec!["real@example.org".to_owned(), "second@example.org".to_owned()],
            "{}", value
        );
    }

    /// No input makes any address function panic.
    #[test]
    fn address_functions_never_panic(s in messy()) {
        if let Some(n) = normalize(&s) {
            let (local, domain) = split(&n);
            prop_assert_eq!(format!("{local}{}{domain}", if n.contains('@') { "@" } else { "" }), n.clone());
        }
        for a in header_addresses(&s) {
            prop_assert!(a.contains('@'), "{a:?} from {s:?}");
            prop_assert!(!a.is_empty());
        }
        let rules = AddressRules::default();
        let _ = rules.classify(&s, |a| a == "list@example.org");
        let _ = rules.classify(&s, |_| true);
        let _ = Pattern::parse(&s).matches("someone@example.org");
    }

    /// Normalising a normalised address changes nothing, for every address
    /// an MTA hands over (one pair of angle brackets at most, any case, any
    /// padding, a source route or not).
    #[test]
    fn normalize_is_idempotent_on_envelope_addresses(
        local in "[!-~&&[^<>@\"]]{1,20}",
        dom in domain(),
        route in proptest::option::of(domain()),
        mask in any::<u64>(),
        style in any::<u8>(),
    ) {
        let addr = match route {
            Some(r) => format!("@{r}:{local}@{dom}"),
            None => format!("{local}@{dom}"),
        };
        let raw = wrap(&recase(&addr, mask), style);
        let once = normalize(&raw).expect("a non-empty address");
        prop_assert_eq!(normalize(&once), Some(once.clone()), "raw {:?}", raw);
        prop_assert_eq!(once, format!("{}@{}", local.to_lowercase(), dom));
    }

    /// Idempotence on arbitrary text.
    #[test]
    fn normalize_is_idempotent_on_arbitrary_text(s in messy()) {
        if let Some(once) = normalize(&s) {
            prop_assert_eq!(normalize(&once), Some(once.clone()), "input {:?}", s);
            // Lowercasing is stable: a second pass never changes the letter case.
            let twice = normalize(&once);
            if let Some(t) = twice {
                prop_assert_eq!(t.to_lowercase(), t);
            }
        }
    }

    /// Header addresses are already normalised.
    #[test]
    fn header_addresses_are_fixed_points(s in messy()) {
        for a in header_addresses(&s) {
            let again = normalize(&a);
            prop_assert_eq!(again.as_deref(), Some(a.as_str()), "from {:?}", s);
        }
    }

    /// An item of bare words (`alice`, which Postfix completes into an
    /// address Mailman may find a member in) leaves nothing found in the
    /// value, whatever else it holds (encoded words aside: a decoded one
    /// may hold such words, which no MTA completes).
    #[test]
    fn a_bare_word_item_finds_nothing(s in messy(), folded in any::<bool>()) {
        prop_assume!(!s.contains("=?"));
        let value = if folded { format!("{s},\r\n alice") } else { format!("{s}, alice") };
        prop_assert!(header_addresses(&value).is_empty(), "{:?}", value);
    }

    /// `list+anything@domain` is the list, whatever `anything` is and however
    /// the address is cased or wrapped.
    #[test]
    fn extension_addresses_are_the_list(
        list in list_local(),
        dom in domain(),
        ext in any::<String>(),
        mask in any::<u64>(),
        style in any::<u8>(),
    ) {
        let list_addr = format!("{list}@{dom}");
        let rules = AddressRules::default();
        let raw = wrap(&format!("{}+{ext}@{}", recase(&list, mask), recase(&dom, !mask)), style);
        // `ext` may itself hold brackets or whitespace at the very ends, which
        // the MTA would never hand over; keep the cases that stay one address.
        prop_assume!(envelope_mailbox(&raw).is_some_and(|m| m.domain().is_some_and(|d| d.as_str() == dom)
            && m.local_part().to_lowercase().starts_with(&format!("{list}+"))));
        prop_assert_eq!(
            rules.classify(&raw, |a| a == list_addr),
            Recipient::Post(list_addr.clone()),
            "raw {:?}", raw
        );
    }

    /// The posting address itself, in any case and wrapping, is the list.
    #[test]
    fn list_address_is_case_insensitive(
        list in list_local(),
        dom in domain(),
        mask in any::<u64>(),
        style in any::<u8>(),
    ) {
        let list_addr = format!("{list}@{dom}");
        let raw = wrap(&recase(&list_addr, mask), style);
        let rules = AddressRules::default();
        prop_assert_eq!(
            rules.classify(&raw, |a| a == list_addr),
            Recipient::Post(list_addr.clone())
        );
        // The same through an alias domain.
        let alias = format!("alias.{dom}");
        let rules = AddressRules {
            alias_domains: HashMap::from([(alias.clone(), dom.clone())]),
            ..AddressRules::default()
        };
        let raw = wrap(&recase(&format!("{list}@{alias}"), mask), style);
        prop_assert_eq!(
            rules.classify(&raw, |a| a == list_addr),
            Recipient::Post(list_addr.clone())
        );
    }

    /// `list-<service>@domain` and `list-<service>+ext@domain` are always the
    /// list's service address (which passes), in any case.
    #[test]
    fn service_suffixes_always_pass(
        list in list_local(),
        dom in domain(),
        which in 0..SERVICE_SUFFIXES.len(),
        ext in proptest::option::of("[a-zA-Z0-9=._+-]{0,20}"),
        mask in any::<u64>(),
        style in any::<u8>(),
    ) {
        let suffix = SERVICE_SUFFIXES[which];
        let list_addr = format!("{list}@{dom}");
        let local = match &ext {
            Some(e) => format!("{list}-{suffix}+{e}"),
            None => format!("{list}-{suffix}"),
        };
        let raw = wrap(&recase(&format!("{local}@{dom}"), mask), style);
        let got = AddressRules::default().classify(&raw, |a| a == list_addr);
        prop_assert_eq!(
            got,
            Recipient::Service { list: list_addr.clone(), suffix: suffix.to_owned() },
            "raw {:?}", raw
        );
    }

    /// A recipient is classified as a list only if it names that list: its
    /// normalised form is the list address, or the list's local part followed
    /// by the delimiter or a service suffix, at the list's domain.
    #[test]
    fn only_real_list_addresses_are_lists(
        list in list_local(),
        dom in domain(),
        rcpt in prop_oneof![
            messy(),
            // Near misses: one character off, another domain, a prefix or suffix.
            (list_local(), domain(), "[a-z+.-]{0,3}", "[a-z+.-]{0,3}")
                .prop_map(|(l, d, p, s)| format!("{p}{l}{s}@{d}")),
        ],
    ) {
        let list_addr = format!("{list}@{dom}");
        let got = AddressRules::default().classify(&rcpt, |a| a == list_addr);
        let m = envelope_mailbox(&rcpt);
        let local = m.as_ref().map(|m| m.local_part().to_lowercase()).unwrap_or_default();
        let d = m.as_ref().and_then(|m| m.domain()).map(|d| d.as_str().to_lowercase()).unwrap_or_default();
        let local = local.as_str();
        let names_list = d == dom
            && (local == list
                || local.starts_with(&format!("{list}+"))
                || SERVICE_SUFFIXES.iter().any(|s| {
                    local == format!("{list}-{s}") || local.starts_with(&format!("{list}-{s}+"))
                }));
        match &got {
            Recipient::Post(a) | Recipient::Service { list: a, .. } => {
                prop_assert_eq!(a, &list_addr);
                prop_assert!(names_list, "{rcpt:?} classified {got:?}");
            }
            Recipient::Other => prop_assert!(!names_list, "{rcpt:?} not classified as the list"),
        }
    }

    /// The decision: approval passes; a ban refuses; a member passes; a
    /// refusal for non-members only on a list that refuses them; never a
    /// panic, whatever the senders and statuses (lengths may differ).
    #[test]
    fn decision_follows_mailman_order(
        senders in proptest::collection::vec(messy(), 0..4),
        flags in proptest::collection::vec((any::<bool>(), any::<bool>(), any::<bool>(), 0u8..5), 0..5),
        approved in any::<bool>(),
        action in 0u8..4,
        refuse_hold in any::<bool>(),
        patterns in proptest::collection::vec(messy(), 0..3),
    ) {
        let list = ListPolicy {
            address: "list@example.org".into(),
            nonmember_action: [
                NonmemberAction::Accept,
                NonmemberAction::Hold,
                NonmemberAction::Reject,
                NonmemberAction::Discard,
            ][action as usize],
            refuse_hold: Some(refuse_hold),
            accept_nonmembers: patterns.iter().map(|p| Pattern::parse(p)).collect(),
            has_bans: true,
            ..ListPolicy::default()
        };
        let actions = [
            None,
            Some(NonmemberAction::Accept),
            Some(NonmemberAction::Hold),
            Some(NonmemberAction::Reject),
            Some(NonmemberAction::Discard),
        ];
        let senders: Vec<String> = senders.iter().filter_map(|s| normalize(s)).collect();
        let status: Vec<SenderStatus> = flags
            .iter()
            .map(|&(member, banned, via, moderation)| SenderStatus {
                member,
                banned,
                accepted_via: via.then(|| "other@example.org".to_owned()),
                // Non-member records are left out here: members only.
                moderation: if member { actions[moderation as usize] } else { None },
            })
            .collect();
        let n = senders.len().min(status.len());
        let d = decide(&Post { list: &list, senders: &senders, status: &status, approved });
        let any_banned = status[..n].iter().any(|s| s.banned);
        let any_member = status[..n].iter().any(|s| s.member);
        if approved {
            prop_assert_eq!(d, Decision::Pass(PassReason::Approved));
        } else if any_banned {
            prop_assert!(matches!(d, Decision::Refuse(RefuseReason::Banned(_))), "{d:?}");
        } else if any_member {
            // The first member decides, by its own action.
            let first = status[..n].iter().find(|s| s.member).unwrap();
            match first.moderation.unwrap_or(NonmemberAction::Accept) {
                NonmemberAction::Accept => {
                    prop_assert!(matches!(d, Decision::Pass(PassReason::Member(_))), "{d:?}")
                }
                NonmemberAction::Hold if !refuse_hold => {
                    prop_assert!(matches!(d, Decision::Pass(PassReason::Held { .. })), "{d:?}")
                }
                a => prop_assert!(
                    matches!(&d, Decision::Refuse(RefuseReason::ModeratedMember { action, .. }) if *action == a),
                    "{d:?}"
                ),
            }
        } else if let Decision::Refuse(r) = &d {
            prop_assert!(list.refuses_nonmembers(), "{d:?} on a list that does not refuse");
            prop_assert!(!status[..n].iter().any(|s| s.accepted_via.is_some()), "{d:?}");
            match r {
                RefuseReason::NoSenders => prop_assert!(senders.is_empty()),
                RefuseReason::Nonmember(a) => prop_assert_eq!(*a, list.nonmember_action),
                RefuseReason::Banned(_) => prop_assert!(false, "ban without a banned sender"),
                other => prop_assert!(false, "{other:?} without a member or a record"),
            }
        }
    }
}

/// Nested forms SMTP itself would refuse (found by the properties above)
/// normalise fully in one pass, and a bare at sign is not an address.
#[test]
fn nested_forms_normalise_in_one_pass() {
    assert_eq!(normalize("<<a@b>>").as_deref(), Some("a@b"));
    assert_eq!(normalize("@r:@s:a@b").as_deref(), Some("a@b"));
    assert_eq!(normalize("@r: a@b").as_deref(), Some("a@b"));
    assert!(header_addresses("@\":@").is_empty());
    assert_eq!(normalize("@"), None);
}

proptest! {
    #![proptest_config(config())]

    /// The shared envelope canonicalisation never panics, and its canonical
    /// text is a fixed point: canonicalising twice changes nothing.
    #[test]
    fn envelope_canonicalisation_is_idempotent(s in messy()) {
        let once = EnvelopeAddress::parse(&s);
        let text = once.to_string();
        let twice = EnvelopeAddress::parse(&text);
        prop_assert_eq!(&twice, &once, "input {:?} gave {:?}", s, text);
        prop_assert_eq!(twice.to_string(), text.clone());
        if let Some(e) = envelope(&s) {
            prop_assert_eq!(envelope(&e), Some(e.clone()), "input {:?}", s);
        }
    }

    /// Every spelling Postfix routes to the list's posting address (quoted
    /// local part, whole or in pieces, a trailing dot on the domain, any
    /// case, an extension, even a quoted one that needs its quotes) is
    /// classified as the list.
    #[test]
    fn spellings_the_mta_routes_to_the_list_are_the_list(
        list in list_local(),
        dom in domain(),
        ext in proptest::option::of("[a-z0-9 @()<>,.]{0,8}"),
        quote in 0u8..3,
        dot in any::<bool>(),
        mask in any::<u64>(),
        style in any::<u8>(),
    ) {
        let list_addr = format!("{list}@{dom}");
        let local = match &ext {
            Some(e) => format!("{list}+{e}"),
            None => list.clone(),
        };
        let escaped: String = local.chars().flat_map(|c| {
            (c == '"' || c == '\\').then_some('\\').into_iter().chain([c])
        }).collect();
        // Unquoted text must be a dot-atom; otherwise quote it whole.
        let plain_ok = ext.as_deref().is_none_or(|e| {
            !e.contains([' ', '@', '(', ')', '<', '>', ','])
                && !e.contains("..")
                && !e.ends_with('.')
        });
        let local = match quote {
            0 if plain_ok => local,
            // The first character quoted on its own: `"t"eam`.
            2 if plain_ok => format!("\"{}\"{}", &local[..1], &local[1..]),
            _ => format!("\"{escaped}\""),
        };
        let dom_text = if dot { format!("{dom}.") } else { dom.clone() };
        let raw = wrap(&format!("{}@{}", recase(&local, mask), recase(&dom_text, !mask)), style);
        let m = envelope_mailbox(&raw);
        prop_assume!(m.as_ref().is_some_and(|m| {
            let l = m.local_part().to_lowercase();
            l == list || l.starts_with(&format!("{list}+"))
        }));
        prop_assert_eq!(
            AddressRules::default().classify(&raw, |a| a == list_addr),
            Recipient::Post(list_addr.clone()),
            "raw {:?}", raw
        );
    }
}
