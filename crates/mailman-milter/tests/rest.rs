//! The Mailman 3 REST backend against a small HTTP server written here (on
//! 127.0.0.1) that answers like Mailman's API, or refuses, stalls, answers
//! garbage or HTTP 500. Decisions are driven over the milter protocol by
//! minimilter's `MilterClient`.

#[path = "../../minimilter/tests/daemon_contract/mod.rs"]
mod daemon_contract;
mod in_process;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mailman_milter::config::{BackendKind, Config};
use mailman_milter::rest::{RestMetrics, request_kind};
use mailman_milter::{
    ListBackend, MailmanMilter, OnBackendError, RestBackend, RestConfig, SenderStatus, Settings,
};
use minimilter::daemon::CounterFamily;
use minimilter::proto::Step;
use minimilter::transaction::Outcome;
use minimilter::{ClientConfig, MessageSpec, MilterClient, Transcript, run_message};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const REFUSAL: &str =
    "550 5.7.1 <team@lists.example.org>: you are not allowed to post to this list";
const UNAVAILABLE: &str = "451 4.3.0 Mailing list data temporarily unavailable; try again later";
/// Basic auth for restadmin:restpass.
const AUTH: &str = "Basic cmVzdGFkbWluOnJlc3RwYXNz";
/// The backend's `timeout` against the fake: generous, so a loaded machine
/// never turns a healthy answer into a 451. Tests of the timeout itself set
/// their own.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Mail that must not wait for the API is answered within this: half the
/// timeout (waiting for the API would take all of it).
const QUICK: Duration = Duration::from_millis(1500);
/// The fake serves at most this many entries per page, whatever `count` says,
/// so the client's paging is exercised.
const FAKE_PAGE: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Answer like Mailman.
    Serve,
    /// Read the request, never answer (for 30 s).
    Stall,
    /// 200 with a body that is not JSON.
    Garbage,
    /// HTTP 500.
    Error500,
    /// HTTP 500 for lookups of one address; the rest as Mailman.
    FailMembers,
    /// Like Mailman, 1.5 s late.
    Slow,
    /// Close the connection without an answer.
    Close,
}

struct Fake {
    url: String,
    mode: Arc<Mutex<Mode>>,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    async fn start(mode: Mode) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/3.1", listener.local_addr().unwrap());
        let mode = Arc::new(Mutex::new(mode));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (m, r) = (mode.clone(), requests.clone());
        let task = tokio::spawn(async move {
            // Bounded: the test aborts the task on drop, and each connection
            // is bounded in time.
            for _ in 0..10_000 {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (m, r) = (m.clone(), r.clone());
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(30), serve(stream, m, r)).await;
                });
            }
        });
        Fake {
            url,
            mode,
            requests,
            task,
        }
    }

    /// A fake answering in `mode` and a backend on it, configured by
    /// `config` from the fake's own [`Fake::config`].
    async fn with_backend(
        mode: Mode,
        config: impl FnOnce(RestConfig) -> RestConfig,
    ) -> (Fake, Arc<RestBackend>) {
        let fake = Fake::start(mode).await;
        let backend = Arc::new(RestBackend::new(&config(fake.config())).unwrap());
        (fake, backend)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn config(&self) -> RestConfig {
        RestConfig {
            url: self.url.clone(),
            timeout: TIMEOUT,
            ..RestConfig::default()
        }
    }
}

/// Reads one request head; returns (target, authorization).
async fn read_head(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines.next()?.split(' ').nth(1)?.to_owned();
    let auth = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    Some((target, auth))
}

async fn serve(mut stream: TcpStream, mode: Arc<Mutex<Mode>>, requests: Arc<Mutex<Vec<String>>>) {
    let Some((target, auth)) = read_head(&mut stream).await else {
        return;
    };
    requests.lock().unwrap().push(target.clone());
    let mut mode = *mode.lock().unwrap();
    if mode == Mode::Slow {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        mode = Mode::Serve;
    }
    let (status, body) = match mode {
        Mode::Close | Mode::Slow => return,
        Mode::Stall => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
        Mode::Garbage => (
            200,
            "<html>Service temporarily unavailable</html>".to_owned(),
        ),
        Mode::Error500 => (500, "{\"title\": \"500 Internal Server Error\"}".to_owned()),
        Mode::FailMembers if target.contains("subscriber=") => {
            (500, "{\"title\": \"500 Internal Server Error\"}".to_owned())
        }
        Mode::Serve | Mode::FailMembers if auth != AUTH => {
            (401, "{\"title\": \"401 Unauthorized\"}".to_owned())
        }
        Mode::Serve | Mode::FailMembers => match route(&target) {
            Some(v) => (200, v.to_string()),
            None => (404, "{\"title\": \"404 Not Found\"}".to_owned()),
        },
    };
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Mailman's paging: the slice [(page-1)*count, page*count), `entries`
/// left out when empty; this fake also never gives more than FAKE_PAGE.
fn page(all: Vec<Value>, query: &[(String, String)]) -> Value {
    let get = |k: &str| {
        query
            .iter()
            .find(|(q, _)| q == k)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let total = all.len();
    let entries: Vec<Value> = match (get("count"), get("page")) {
        (Some(count), Some(page)) => {
            let count = count.min(FAKE_PAGE);
            all.into_iter()
                .skip((page - 1) * count)
                .take(count)
                .collect()
        }
        _ => all,
    };
    if entries.is_empty() {
        json!({"start": 0, "total_size": total})
    } else {
        json!({"start": 0, "total_size": total, "entries": entries})
    }
}

const LISTS: &[(&str, &str, &str)] = &[
    // (list_id, fqdn, default_nonmember_action)
    ("team.lists.example.org", "team@lists.example.org", "reject"),
    (
        "friends.lists.example.org",
        "friends@lists.example.org",
        "hold",
    ),
    (
        "quiet.lists.example.org",
        "quiet@lists.example.org",
        "discard",
    ),
    ("open.lists.example.org", "open@lists.example.org", "accept"),
];

/// A list's member resources: (email, role, own moderation_action).
fn records(list_id: &str) -> Vec<(&'static str, &'static str, Option<&'static str>)> {
    match list_id {
        "team.lists.example.org" => vec![
            ("alice@example.org", "member", None),
            ("carol@example.org", "member", None),
            ("dave@example.org", "member", None),
            ("erin@example.org", "member", None),
            ("odd*name@example.org", "member", None),
            ("troll@example.org", "member", Some("discard")),
            ("slow@example.org", "member", Some("hold")),
            ("fan@example.org", "member", Some("defer")),
            ("boss@example.org", "member", Some("accept")),
            ("vip@outside.example", "nonmember", Some("accept")),
            ("pest@partner.example", "nonmember", Some("reject")),
            ("seen@outside.example", "nonmember", None),
        ],
        "friends.lists.example.org" => vec![("bob@friends.example", "member", None)],
        "open.lists.example.org" => vec![("grump@example.org", "member", Some("reject"))],
        _ => vec![],
    }
}

/// Users and their addresses: (user id, addresses).
const USERS: &[(&str, &[&str])] = &[
    ("1f2e3d", &["alice@example.org", "alice.alt@example.org"]),
    ("9a8b7c", &["troll@example.org", "troll.alt@example.org"]),
    ("5d5d5d", &["nobody.alt@example.org", "nobody@example.org"]),
    // The member's own address holds a `*` (no lookup can name it).
    ("7e7e7e", &["oddpal@example.org", "odd*name@example.org"]),
    // 22 addresses, the member's last.
    (
        "6f6f6f",
        &[
            "many00@example.org",
            "many01@example.org",
            "many02@example.org",
            "many03@example.org",
            "many04@example.org",
            "many05@example.org",
            "many06@example.org",
            "many07@example.org",
            "many08@example.org",
            "many09@example.org",
            "many10@example.org",
            "many11@example.org",
            "many12@example.org",
            "many13@example.org",
            "many14@example.org",
            "many15@example.org",
            "many16@example.org",
            "many17@example.org",
            "many18@example.org",
            "many19@example.org",
            "many20@example.org",
            "erin@example.org",
        ],
    ),
];

fn member(list_id: &str, (email, role, action): (&str, &str, Option<&str>)) -> Value {
    let mut m =
        json!({"email": email, "list_id": list_id, "role": role, "delivery_mode": "regular"});
    // Mailman leaves fields whose value is None out.
    if let Some(a) = action {
        m["moderation_action"] = json!(a);
    }
    m
}

fn route(target: &str) -> Option<Value> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let path = path.strip_prefix("/3.1")?;
    let segs: Vec<String> = path.split('/').skip(1).map(decode).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["bans"] => Some(page(vec![], &query)),
        ["domains"] => Some(page(
            vec![
                json!({"mail_host": "lists.example.org", "alias_domain": "Alias.Example"}),
                json!({"mail_host": "other.example", "alias_domain": null}),
            ],
            &query,
        )),
        ["addresses"] => Some(page(
            USERS
                .iter()
                .flat_map(|(id, addresses)| {
                    addresses.iter().map(move |a| {
                        json!({"email": a, "user": format!("http://localhost:8001/3.1/users/{id}")})
                    })
                })
                .chain([json!({"email": "loner@example.com"})])
                .collect(),
            &query,
        )),
        ["addresses", email] => {
            let user = USERS.iter().find(|(_, a)| a.contains(email));
            match user {
                Some((id, _)) => Some(json!({
                    "email": email,
                    "user": format!("http://localhost:8001/3.1/users/{id}"),
                })),
                // Known to Mailman without a user (a past non-member post).
                None if *email == "loner@example.com" => Some(json!({"email": email})),
                None => None,
            }
        }
        // Mailman's user search: a substring of an address, any case.
        ["users", "find"] => {
            let needle = q("q")?.to_lowercase();
            Some(page(
                USERS
                    .iter()
                    .filter(|(_, a)| a.iter().any(|a| a.to_lowercase().contains(&needle)))
                    .map(|(id, _)| {
                        json!({"user_id": id, "self_link": format!("http://localhost:8001/3.1/users/{id}")})
                    })
                    .collect(),
                &query,
            ))
        }
        ["users", id, "addresses"] => {
            let (_, addresses) = USERS.iter().find(|(i, _)| i == id)?;
            Some(page(
                addresses.iter().map(|a| json!({"email": a})).collect(),
                &query,
            ))
        }
        ["lists"] => Some(page(
            LISTS
                .iter()
                .map(|(id, fqdn, _)| json!({"list_id": id, "fqdn_listname": fqdn}))
                .collect(),
            &query,
        )),
        // Mailman finds a list by its list_id or its posting address.
        ["lists", id] => {
            let (list_id, fqdn, _) = LISTS.iter().find(|(i, f, _)| i == id || f == id)?;
            Some(
                json!({"list_id": list_id, "fqdn_listname": fqdn, "mail_host": "lists.example.org"}),
            )
        }
        ["lists", id, "config"] => {
            let (_, _, action) = LISTS.iter().find(|(i, _, _)| i == id)?;
            let mut config = json!({
                "default_nonmember_action": action,
                "default_member_action": "defer",
                "emergency": false,
                "accept_these_nonmembers": [],
                "hold_these_nonmembers": [],
                "reject_these_nonmembers": [],
                "discard_these_nonmembers": [],
            });
            // Mailman shows a password's hash, or null.
            config["moderator_password"] = if *id == "quiet.lists.example.org" {
                json!("$6$rounds=656000$hash")
            } else {
                Value::Null
            };
            if *id == "team.lists.example.org" {
                config["accept_these_nonmembers"] =
                    json!(["^.*@partner\\.example$", "@friends@lists.example.org"]);
                config["hold_these_nonmembers"] = json!(["held@example.com"]);
                config["reject_these_nonmembers"] = json!(["^.*@rival\\.example$"]);
                config["discard_these_nonmembers"] = json!(["dropped@example.com"]);
            }
            if *id == "open.lists.example.org" {
                // Mailman compares plain entries as stored with the
                // lowercased sender: the first two never match there.
                config["reject_these_nonmembers"] = json!([
                    "Loud@Example.com",
                    "<angle@example.com>",
                    "blocked@example.com"
                ]);
            }
            Some(config)
        }
        ["lists", id, "bans"] => {
            LISTS.iter().find(|(i, _, _)| i == id)?;
            let bans = if *id == "team.lists.example.org" {
                vec![json!({"email": "^.*@evil\\.example$", "list_id": id})]
            } else if *id == "open.lists.example.org" {
                // Mailman bans by SQL equality, as stored: only the second
                // can match a (lowercased) sender.
                vec![
                    json!({"email": "Shouty@Example.com", "list_id": id}),
                    json!({"email": "banned@example.com", "list_id": id}),
                ]
            } else {
                vec![]
            };
            Some(page(bans, &query))
        }
        ["lists", id, "header-matches"] => {
            LISTS.iter().find(|(i, _, _)| i == id)?;
            let rules = if *id == "team.lists.example.org" {
                // Out of order on purpose: Mailman's order is `position`.
                vec![
                    json!({"position": 1, "header": "subject", "pattern": "(?<!un)subscribe me", "action": "reject"}),
                    json!({"position": 0, "header": "x-spam-flag", "pattern": "^yes", "action": "discard"}),
                    json!({"position": 2, "header": "x-partner", "pattern": "^trusted$", "action": "accept"}),
                ]
            } else {
                vec![]
            };
            Some(page(rules, &query))
        }
        ["lists", id, "roster", role] => Some(page(
            records(id)
                .into_iter()
                .filter(|r| r.1 == *role)
                .map(|r| member(id, r))
                .collect(),
            &query,
        )),
        ["members", "find"] => {
            // Without list_id: every list.
            let ids: Vec<&str> = match q("list_id") {
                Some(id) => vec![LISTS.iter().find(|(i, _, _)| *i == id)?.0],
                None => LISTS.iter().map(|(i, _, _)| *i).collect(),
            };
            let subscriber = q("subscriber").map(|s| s.to_lowercase());
            // Mailman's trap, reproduced: `*` makes the lookup a LIKE search.
            let hit = |m: &str| match subscriber.as_deref().map(|s| (s, s.split_once('*'))) {
                None => true,
                Some((_, Some((pre, post)))) => m.starts_with(pre) && m.ends_with(post),
                Some((s, None)) => m == s,
            };
            let role = q("role");
            let action = q("moderation_action");
            Some(page(
                ids.into_iter()
                    .flat_map(|id| records(id).into_iter().map(move |r| (id, r)))
                    .filter(|(_, r)| hit(r.0))
                    .filter(|(_, r)| role.as_deref().is_none_or(|x| x == r.1))
                    .filter(|(_, r)| action.as_deref().is_none_or(|a| r.2 == Some(a)))
                    .map(|(id, r)| member(id, r))
                    .collect(),
                &query,
            ))
        }
        _ => None,
    }
}

fn spec(from: &str, rcpt: &str) -> MessageSpec {
    MessageSpec {
        from: from.into(),
        rcpts: vec![rcpt.into()],
        message: Bytes::from(format!(
            "From: {from}\r\nTo: {rcpt}\r\nSubject: hello\r\n\r\nBody.\r\n"
        )),
        ..MessageSpec::default()
    }
}

async fn post(
    backend: &Arc<RestBackend>,
    settings: Settings,
    from: &str,
    rcpt: &str,
) -> Transcript {
    let mut c = in_process::client(backend.clone(), settings).await;
    tokio::time::timeout(
        Duration::from_secs(20),
        run_message(&mut c, &spec(from, rcpt)),
    )
    .await
    .expect("the milter answers in time")
    .unwrap()
}

/// A post from a sender nobody knows to the guarded list.
async fn post_stranger(backend: &Arc<RestBackend>) -> Transcript {
    post(
        backend,
        Settings::default(),
        "stranger@example.com",
        "team@lists.example.org",
    )
    .await
}

fn reply_of(t: &Transcript) -> String {
    match &t.outcome {
        Outcome::Rejected { reply, .. } | Outcome::Tempfailed { reply, .. } => {
            reply.clone().unwrap_or_default()
        }
        other => format!("{other:?}"),
    }
}

fn assert_tempfail(t: &Transcript, step: Step) {
    match &t.outcome {
        Outcome::Tempfailed { at, reply } => {
            assert_eq!(*at, step, "{t:?}");
            assert_eq!(reply.as_deref(), Some(UNAVAILABLE));
        }
        other => panic!("expected 451 at {step}, got {other:?}"),
    }
}

#[tokio::test]
async fn members_accept_patterns_and_bans_decide_as_mailman_would() {
    let (fake, backend) = Fake::with_backend(Mode::Serve, |c| c).await;
    let team = "team@lists.example.org";
    let s = Settings::default;
    assert_eq!(
        post(&backend, s(), "Alice@Example.ORG", team).await.outcome,
        Outcome::Accepted
    );
    let t = post(&backend, s(), "stranger@example.com", team).await;
    assert_eq!(reply_of(&t), REFUSAL);
    assert!(
        matches!(
            t.outcome,
            Outcome::Rejected {
                at: Step::EndOfHeaders,
                ..
            }
        ),
        "{t:?}"
    );
    // ^regex accept entry; @list entry (a member of friends@).
    for ok in ["x@partner.example", "bob@friends.example"] {
        assert_eq!(
            post(&backend, s(), ok, team).await.outcome,
            Outcome::Accepted,
            "{ok}"
        );
    }
    // Banned by a ^regex ban.
    let t = post(&backend, s(), "spammer@evil.example", team).await;
    assert_eq!(reply_of(&t), REFUSAL);
    // Service addresses and a hold list are left to Mailman.
    for rcpt in [
        "team-request@lists.example.org",
        "friends@lists.example.org",
    ] {
        assert_eq!(
            post(&backend, s(), "stranger@example.com", rcpt)
                .await
                .outcome,
            Outcome::Accepted,
            "{rcpt}"
        );
    }
    let t = post(
        &backend,
        s(),
        "stranger@example.com",
        "quiet@lists.example.org",
    )
    .await;
    assert!(
        reply_of(&t).starts_with("550 5.7.1 <quiet@lists.example.org>"),
        "{t:?}"
    );
    // Collections were read page by page (the fake gives 2 entries a page).
    let reqs = fake.requests();
    assert!(
        reqs.iter()
            .any(|r| r.contains("/header-matches?") && r.contains("page=2")),
        "{reqs:?}"
    );
}

#[tokio::test]
async fn a_sender_with_a_wildcard_is_never_sent_to_a_lookup() {
    let (fake, backend) = Fake::with_backend(Mode::Serve, |c| c).await;
    let team = "team@lists.example.org";
    // A lookup of "*@example.org" would find alice (Mailman's LIKE search).
    let t = post(&backend, Settings::default(), "*@example.org", team).await;
    assert_eq!(reply_of(&t), REFUSAL);
    // A real member whose address holds a `*` is found in the roster.
    let t = post(&backend, Settings::default(), "odd*name@example.org", team).await;
    assert_eq!(t.outcome, Outcome::Accepted);
    let reqs = fake.requests();
    for r in &reqs {
        if r.contains("/members/find") {
            assert!(!r.contains('*') && !r.to_uppercase().contains("%2A"), "{r}");
        }
    }
    let roster: Vec<_> = reqs
        .iter()
        .filter(|r| r.contains("/roster/member"))
        .collect();
    // Eight members, two a page: four pages, read for each wildcard sender
    // once (then cached).
    assert!(roster.iter().any(|r| r.contains("page=3")), "{roster:?}");
}

#[tokio::test]
async fn answers_are_cached_for_the_ttl_and_the_cache_stays_bounded() {
    let fake = Fake::start(Mode::Serve).await;
    let config = RestConfig {
        cache_size: 3,
        ..fake.config()
    };
    let backend = RestBackend::new(&config).unwrap();
    let lists = backend.lists().await.unwrap();
    let team = lists["team@lists.example.org"].clone();
    assert!(team.is_guarded());
    assert!(!lists["friends@lists.example.org"].is_guarded());
    let alice = vec!["alice@example.org".to_owned()];
    let first = backend.senders(&team, &alice).await.unwrap();
    assert_eq!(
        first,
        vec![SenderStatus {
            member: true,
            ..SenderStatus::default()
        }]
    );
    let n = fake.requests().len();
    // From the cache now: no request, even with the API gone.
    fake.set(Mode::Error500);
    assert_eq!(backend.senders(&team, &alice).await.unwrap(), first);
    backend.lists().await.unwrap();
    assert_eq!(fake.requests().len(), n);
    fake.set(Mode::Serve);
    for i in 0..10 {
        let s = vec![format!("user{i}@example.com")];
        backend.senders(&team, &s).await.unwrap();
        assert!(
            backend.cached_answers() <= 3,
            "{}",
            backend.cached_answers()
        );
    }
    // Without a TTL nothing is kept.
    let uncached = RestBackend::new(&RestConfig {
        cache_ttl: Duration::ZERO,
        ..fake.config()
    })
    .unwrap();
    uncached.senders(&team, &alice).await.unwrap();
    assert_eq!(uncached.cached_answers(), 0);
}

#[tokio::test]
async fn a_refused_connection_tempfails_or_passes_never_rejects() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let backend = Arc::new(
        RestBackend::new(&RestConfig {
            url: format!("http://127.0.0.1:{port}/3.1"),
            timeout: Duration::from_millis(800),
            ..RestConfig::default()
        })
        .unwrap(),
    );
    let team = "team@lists.example.org";
    let t = post(&backend, Settings::default(), "stranger@example.com", team).await;
    assert_tempfail(&t, Step::Rcpt);
    let accept = Settings {
        on_backend_error: OnBackendError::Accept,
        ..Settings::default()
    };
    let t = post(&backend, accept, "stranger@example.com", team).await;
    assert_eq!(t.outcome, Outcome::Accepted);
}

#[tokio::test]
async fn a_stalled_api_tempfails_within_the_timeout() {
    let (_fake, backend) = Fake::with_backend(Mode::Stall, |c| RestConfig {
        timeout: Duration::from_secs(1),
        ..c
    })
    .await;
    let started = Instant::now();
    let t = post_stranger(&backend).await;
    assert_tempfail(&t, Step::Rcpt);
    let took = started.elapsed();
    // Waited for the timeout (1 s), then gave up: never the stall's 30 s.
    assert!(
        took < Duration::from_secs(15),
        "took {took:?} (timeout 1 s)"
    );
    assert!(took >= Duration::from_millis(900), "took {took:?}");
}

#[tokio::test]
async fn garbage_and_http_500_tempfail() {
    for mode in [Mode::Garbage, Mode::Error500] {
        let (_fake, backend) = Fake::with_backend(mode, |c| c).await;
        let t = post_stranger(&backend).await;
        assert_tempfail(&t, Step::Rcpt);
        let err = backend.lists().await.unwrap_err().to_string();
        let want = if mode == Mode::Garbage {
            "not JSON"
        } else {
            "HTTP 500"
        };
        assert!(err.contains(want), "{mode:?}: {err}");
    }
}

#[tokio::test]
async fn wrong_credentials_tempfail() {
    let (_fake, backend) = Fake::with_backend(Mode::Serve, |c| RestConfig {
        password: "wrong".into(),
        ..c
    })
    .await;
    let t = post_stranger(&backend).await;
    assert_tempfail(&t, Step::Rcpt);
    assert!(
        backend
            .lists()
            .await
            .unwrap_err()
            .to_string()
            .contains("HTTP 401")
    );
}

#[tokio::test]
async fn a_failure_at_the_member_lookup_tempfails_after_the_headers() {
    let (fake, backend) = Fake::with_backend(Mode::Serve, |c| c).await;
    // The lists are read (and cached); then the API stalls, answers
    // garbage or fails for the member lookup.
    backend.lists().await.unwrap();
    for (i, mode) in [Mode::Stall, Mode::Garbage, Mode::Error500]
        .into_iter()
        .enumerate()
    {
        fake.set(mode);
        let from = format!("new{i}@example.com");
        let t = post(
            &backend,
            Settings::default(),
            &from,
            "team@lists.example.org",
        )
        .await;
        assert_tempfail(&t, Step::EndOfHeaders);
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn the_mailman_backend_is_configured_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rest.pass", "s3cret\n");
    let file = write(
        dir.path(),
        "c.toml",
        "backend = \"mailman\"\n[mailman]\nurl = \"http://127.0.0.1:8001/3.1/\"\nuser = \"admin\"\npassword_file = \"rest.pass\"\ntimeout = 0.5\ncache_ttl = 0\n",
    );
    let c = Config::load(&file).unwrap();
    assert_eq!(c.backend, BackendKind::Mailman);
    let rest = c.mailman_section().rest_config().unwrap();
    assert_eq!(rest.password, "s3cret");
    assert_eq!(rest.user, "admin");
    assert_eq!(rest.timeout, Duration::from_millis(500));
    assert_eq!(rest.cache_ttl, Duration::ZERO);
    // Defaults: Mailman's own.
    let c = Config::parse("backend = \"mailman\"\n", &dir.path().join("d.toml")).unwrap();
    assert_eq!(
        c.mailman_section().rest_config().unwrap(),
        RestConfig::default()
    );
    // The file backend stays the default.
    assert_eq!(Config::default().backend, BackendKind::File);

    let bad = [
        (
            "backend = \"mailman\"\n[mailman]\nurl = \"ftp://127.0.0.1:8001/3.1\"\n",
            "mailman.url",
        ),
        (
            "backend = \"mailman\"\n[mailman]\nurl = \"localhost:8001\"\n",
            "mailman.url",
        ),
        (
            "backend = \"mailman\"\n[mailman]\ntimeout = 0\n",
            "mailman.timeout",
        ),
        (
            "backend = \"mailman\"\n[mailman]\ncache_ttl = -1\n",
            "mailman.cache_ttl",
        ),
        (
            "backend = \"mailman\"\n[mailman]\npassword = \"a\"\npassword_file = \"b\"\n",
            "mailman.password_file",
        ),
        (
            "backend = \"mailman\"\n[mailman]\nuser = \"a:b\"\n",
            "mailman.user",
        ),
        (
            "backend = \"mailman\"\n[mailman]\npasword = \"x\"\n",
            "pasword",
        ),
        ("backend = \"mailman\"\nlists = \"lists.toml\"\n", "lists"),
        (
            "[mailman]\nurl = \"http://127.0.0.1:8001/3.1\"\n",
            "mailman",
        ),
        ("backend = \"rest\"\n", "backend"),
    ];
    for (text, key) in bad {
        let path = dir.path().join("bad.toml");
        let e = Config::parse(text, &path).unwrap_err().to_string();
        assert!(e.starts_with(&path.display().to_string()), "{e}");
        assert!(e.contains(key), "{text}: {e}");
    }
    let missing = Config::parse(
        "backend = \"mailman\"\n[mailman]\npassword_file = \"nope\"\n",
        &dir.path().join("m.toml"),
    )
    .unwrap();
    let e = missing.mailman_section().rest_config().unwrap_err();
    assert!(e.starts_with("mailman.password_file: cannot read"), "{e}");
}

#[tokio::test]
async fn check_config_reads_the_lists_from_the_api() {
    let fake = Fake::start(Mode::Serve).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "c.toml",
        &format!(
            "backend = \"mailman\"\n[mailman]\nurl = \"{}\"\ntimeout = 2\n[list_overrides.\"gone@lists.example.org\"]\nrefuse_hold = true\n",
            fake.url
        ),
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailman-milter"))
        .args(["--config", file.to_str().unwrap(), "--check-config"])
        .env("RUST_LOG", "off")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("4 lists"), "{text}");
    // Guarded for its moderated member alone.
    assert!(
        text.contains("open@lists.example.org: non-members accept; guarded"),
        "{text}"
    );
    assert!(
        text.contains("team@lists.example.org: non-members reject; guarded"),
        "{text}"
    );
    assert!(
        text.contains("friends@lists.example.org: non-members hold; left to Mailman"),
        "{text}"
    );
    // Settings in TOML spelling, the password never; an override for a list
    // Mailman does not have is a warning.
    assert!(text.lines().any(|l| l == "backend = \"mailman\""), "{text}");
    assert!(!text.contains("restpass"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "mailman-milter: warning: list_overrides.\"gone@lists.example.org\": no such list"
        ),
        "{err}"
    );
    // And with the API gone, a clear error and exit 1.
    fake.set(Mode::Error500);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailman-milter"))
        .args(["--config", file.to_str().unwrap(), "--check-config"])
        .env("RUST_LOG", "off")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .unwrap()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("HTTP 500"), "{err}");
}

#[tokio::test]
async fn the_daemon_decides_from_the_api() {
    let fake = Fake::start(Mode::Serve).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("milter.sock");
    let file = write(
        dir.path(),
        "c.toml",
        &format!(
            "listen = \"unix:{}\"\nbackend = \"mailman\"\n[mailman]\nurl = \"{}\"\ntimeout = 5\n[list_overrides.\"gone@lists.example.org\"]\nrefuse_hold = true\n",
            socket.display(),
            fake.url
        ),
    );
    let log = dir.path().join("daemon.log");
    let mut daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailman-milter"))
        .args(["--config", file.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "the daemon does not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spec_of: minimilter::SocketSpec = format!("unix:{}", socket.display()).parse().unwrap();
    let run = |from: &'static str| {
        let spec_of = spec_of.clone();
        async move {
            let mut c = MilterClient::connect(&spec_of, ClientConfig::default())
                .await
                .unwrap();
            tokio::time::timeout(
                Duration::from_secs(20),
                run_message(&mut c, &spec(from, "team@lists.example.org")),
            )
            .await
            .unwrap()
            .unwrap()
        }
    };
    assert_eq!(run("alice@example.org").await.outcome, Outcome::Accepted);
    assert_eq!(reply_of(&run("stranger@example.com").await), REFUSAL);
    fake.set(Mode::Error500);
    assert_tempfail(&run("newcomer@example.com").await, Step::EndOfHeaders);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Mailman REST API answered"), "{text}");
    // The settings line leaves the sockets to the shell's own line.
    assert!(text.contains("settings: backend = \"mailman\""), "{text}");
    assert!(text.contains("listening on unix:"), "{text}");
    // Warned once when the lists were first read, not again per message.
    assert_eq!(
        text.matches("list_overrides.\"gone@lists.example.org\": no such list")
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains("verdict=reject"), "{text}");
    assert!(text.contains("HTTP 500"), "{text}");
    daemon.kill().await.unwrap();
}

#[tokio::test]
async fn stale_lists_are_served_while_refreshed_in_the_background_then_expire() {
    let fake = Fake::start(Mode::Serve).await;
    let backend = RestBackend::new(&RestConfig {
        cache_ttl: Duration::from_secs(1),
        max_stale: Duration::from_secs(4),
        ..fake.config()
    })
    .unwrap();
    let list_reads = || {
        fake.requests()
            .iter()
            .filter(|r| r.starts_with("/3.1/lists?"))
            .count()
    };
    backend.lists().await.unwrap();
    let reads = list_reads();
    // Stale: answered from the cache at once, refreshed in the background.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    backend.lists().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while list_reads() == reads {
        assert!(Instant::now() < deadline, "no background refresh");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Stale again, and the API now stalls: still answered at once.
    fake.set(Mode::Stall);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t = Instant::now();
    assert!(
        backend
            .lists()
            .await
            .unwrap()
            .contains_key("team@lists.example.org")
    );
    assert!(t.elapsed() < QUICK, "{:?}", t.elapsed());
    // Older than max_stale: no longer used; the API must answer, and does
    // not (within the timeout, or at once while backing off after the
    // stalled refresh).
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let t = Instant::now();
    let e = backend.lists().await.unwrap_err().to_string();
    assert!(e.contains("within") || e.contains("next try"), "{e}");
    assert!(t.elapsed() < TIMEOUT + QUICK, "{:?}", t.elapsed());
    fake.set(Mode::Serve);
    let deadline = Instant::now() + Duration::from_secs(20);
    while backend.lists().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "never read again after the back-off"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Without a TTL nothing is cached, so nothing is served stale either.
    let uncached = RestBackend::new(&RestConfig {
        cache_ttl: Duration::ZERO,
        ..fake.config()
    })
    .unwrap();
    uncached.lists().await.unwrap();
    fake.set(Mode::Error500);
    assert!(uncached.lists().await.is_err());
}

#[tokio::test]
async fn moderation_actions_and_legacy_nonmember_lists_decide_as_mailman_3() {
    let (_fake, backend) = Fake::with_backend(Mode::Serve, |c| c).await;
    let team = "team@lists.example.org";
    let s = Settings::default;
    let refused = |t: &Transcript| reply_of(t) == REFUSAL;
    // A member whose own action is discard: refused like a non-member.
    assert!(refused(
        &post(&backend, s(), "troll@example.org", team).await
    ));
    // A member whose own action is hold (or defer): left to Mailman.
    for ok in ["slow@example.org", "fan@example.org"] {
        assert_eq!(
            post(&backend, s(), ok, team).await.outcome,
            Outcome::Accepted,
            "{ok}"
        );
    }
    // Non-member records: accept passes on a reject list; reject refuses
    // although an accept pattern matches; none: the legacy lists, then the
    // default.
    assert_eq!(
        post(&backend, s(), "vip@outside.example", team)
            .await
            .outcome,
        Outcome::Accepted
    );
    assert!(refused(
        &post(&backend, s(), "pest@partner.example", team).await
    ));
    assert!(refused(
        &post(&backend, s(), "seen@outside.example", team).await
    ));
    // hold_these_nonmembers: held by Mailman, so left alone; reject_ and
    // discard_these_nonmembers: refused.
    assert_eq!(
        post(&backend, s(), "held@example.com", team).await.outcome,
        Outcome::Accepted
    );
    for bad in ["boss@rival.example", "dropped@example.com"] {
        assert!(refused(&post(&backend, s(), bad, team).await), "{bad}");
    }
    // The hold entries are refused where holds are refused.
    let mut overrides = mailman_milter::overrides::ListOverrides::default();
    overrides.lists.insert(
        team.into(),
        mailman_milter::overrides::ListOverride {
            refuse_hold: Some(true),
            reject_text: Some("<{list}>: moderated; ask the owners".into()),
        },
    );
    let strict = || Settings {
        overrides: overrides.clone(),
        ..Settings::default()
    };
    for held in ["held@example.com", "slow@example.org"] {
        let t = post(&backend, strict(), held, team).await;
        assert_eq!(
            reply_of(&t),
            "550 5.7.1 <team@lists.example.org>: moderated; ask the owners",
            "{held}"
        );
    }
    // A list that accepts non-members is guarded for its moderated member
    // only: everyone else passes, the member is refused.
    let open = "open@lists.example.org";
    assert_eq!(
        post(&backend, s(), "stranger@example.com", open)
            .await
            .outcome,
        Outcome::Accepted
    );
    assert!(
        reply_of(&post(&backend, s(), "grump@example.org", open).await)
            .starts_with("550 5.7.1 <open@lists.example.org>")
    );
    // reject_these_nonmembers as Mailman 3 matches it: exactly.
    assert!(
        reply_of(&post(&backend, s(), "Blocked@example.com", open).await)
            .starts_with("550 5.7.1 <open@lists.example.org>")
    );
    assert!(
        reply_of(&post(&backend, s(), "Banned@Example.com", open).await)
            .starts_with("550 5.7.1 <open@lists.example.org>")
    );
    for ok in [
        "loud@example.com",
        "angle@example.com",
        "shouty@example.com",
    ] {
        assert_eq!(
            post(&backend, s(), ok, open).await.outcome,
            Outcome::Accepted,
            "{ok}"
        );
    }
}

#[tokio::test]
async fn per_list_overrides_refuse_holds_with_their_own_text() {
    let (_fake, backend) = Fake::with_backend(Mode::Serve, |c| c).await;
    let friends = "friends@lists.example.org";
    // Mailman holds non-member posts to friends@: left alone by default.
    assert_eq!(
        post(
            &backend,
            Settings::default(),
            "stranger@example.com",
            friends
        )
        .await
        .outcome,
        Outcome::Accepted
    );
    // refuse_hold for all lists, the default text.
    let all = Settings {
        overrides: mailman_milter::overrides::ListOverrides {
            refuse_hold: true,
            ..Default::default()
        },
        ..Settings::default()
    };
    assert_eq!(
        reply_of(&post(&backend, all, "stranger@example.com", friends).await),
        "550 5.7.1 <friends@lists.example.org>: you are not allowed to post to this list"
    );
    // Per list: refuse_hold off for friends@ although on for all.
    let mut overrides = mailman_milter::overrides::ListOverrides {
        refuse_hold: true,
        ..Default::default()
    };
    overrides.lists.insert(
        friends.into(),
        mailman_milter::overrides::ListOverride {
            refuse_hold: Some(false),
            reject_text: None,
        },
    );
    let per_list = Settings {
        overrides,
        ..Settings::default()
    };
    assert_eq!(
        post(&backend, per_list, "stranger@example.com", friends)
            .await
            .outcome,
        Outcome::Accepted
    );
    // A member of friends@ still passes when holds are refused.
    let all = Settings {
        overrides: mailman_milter::overrides::ListOverrides {
            refuse_hold: true,
            ..Default::default()
        },
        ..Settings::default()
    };
    assert_eq!(
        post(&backend, all, "bob@friends.example", friends)
            .await
            .outcome,
        Outcome::Accepted
    );
}

#[tokio::test]
async fn stale_membership_answers_are_served_while_refreshed_then_expire() {
    let (fake, backend) = Fake::with_backend(Mode::Serve, |c| RestConfig {
        cache_ttl: Duration::from_secs(1),
        max_stale: Duration::from_secs(4),
        ..c
    })
    .await;
    let team = "team@lists.example.org";
    let s = Settings::default;
    let lookups = || {
        fake.requests()
            .iter()
            .filter(|r| r.contains("subscriber=alice"))
            .count()
    };
    assert_eq!(
        post(&backend, s(), "alice@example.org", team).await.outcome,
        Outcome::Accepted
    );
    assert_eq!(
        refused_reply(&post(&backend, s(), "troll@example.org", team).await),
        REFUSAL
    );
    assert_eq!(lookups(), 1);
    // The API fails; the answers are stale (older than the TTL) but within
    // max_stale: asked again (or not, while backing off after the
    // failure), and still used, both ways.
    fake.set(Mode::Error500);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        post(&backend, s(), "alice@example.org", team).await.outcome,
        Outcome::Accepted
    );
    assert_eq!(
        refused_reply(&post(&backend, s(), "troll@example.org", team).await),
        REFUSAL
    );
    // A sender never looked up has nothing cached: the fail-safe.
    assert_tempfail(
        &post(&backend, s(), "newcomer@example.com", team).await,
        Step::EndOfHeaders,
    );
    // The API answers again: once the back-off delay has passed, a post
    // with a stale answer asks again before deciding.
    fake.set(Mode::Serve);
    let before = lookups();
    let deadline = Instant::now() + Duration::from_secs(5);
    while lookups() == before {
        assert_eq!(
            post(&backend, s(), "alice@example.org", team).await.outcome,
            Outcome::Accepted
        );
        assert!(Instant::now() < deadline, "stale answer never asked again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past max_stale, with member lookups failing (the lists still read,
    // so this is the membership answer expiring): the fail-safe, after the
    // headers, never a 5xx.
    fake.set(Mode::FailMembers);
    for _ in 0..3 {
        // Asking for the lists now and then keeps them refreshed.
        tokio::time::sleep(Duration::from_millis(1400)).await;
        backend.lists().await.unwrap();
    }
    assert_tempfail(
        &post(&backend, s(), "alice@example.org", team).await,
        Step::EndOfHeaders,
    );
}

fn refused_reply(t: &Transcript) -> String {
    match &t.outcome {
        Outcome::Rejected {
            at: Step::EndOfHeaders,
            reply,
        } => reply.clone().unwrap_or_default(),
        other => panic!("expected a refusal after the headers, got {other:?}"),
    }
}

#[tokio::test]
async fn a_member_through_another_address_of_the_same_user_is_a_member() {
    let (fake, backend) = Fake::with_backend(Mode::Serve, |c| c).await;
    let team = "team@lists.example.org";
    let s = Settings::default;
    assert_eq!(
        post(&backend, s(), "alice@example.org", team).await.outcome,
        Outcome::Accepted
    );
    // alice.alt@ belongs to alice's user: a member, as Mailman 3 sees it.
    assert_eq!(
        post(&backend, s(), "Alice.Alt@Example.org", team)
            .await
            .outcome,
        Outcome::Accepted
    );
    // With the linked member's own moderation action.
    assert_eq!(
        refused_reply(&post(&backend, s(), "troll.alt@example.org", team).await),
        REFUSAL
    );
    // A user none of whose addresses is subscribed, an address without a
    // user, and one Mailman does not know: non-members.
    for stranger in [
        "nobody.alt@example.org",
        "loner@example.com",
        "unknown@example.com",
    ] {
        assert_eq!(
            refused_reply(&post(&backend, s(), stranger, team).await),
            REFUSAL,
            "{stranger}"
        );
    }
    let reqs = fake.requests();
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("/3.1/users/1f2e3d/addresses")),
        "{reqs:?}"
    );
    // A direct member needs no detour.
    assert!(
        !reqs
            .iter()
            .any(|r| r == "/3.1/addresses/alice%40example.org"),
        "{reqs:?}"
    );
}

/// Mailman looks at every address of the sender's user: one holding `*`
/// (checked against the roster) and one past the twentieth count too.
#[tokio::test]
async fn every_other_address_of_the_senders_user_is_looked_at() {
    let (fake, backend) = Fake::with_backend(Mode::Serve, |c| c).await;
    let team = "team@lists.example.org";
    for sender in ["oddpal@example.org", "many00@example.org"] {
        assert_eq!(
            post(&backend, Settings::default(), sender, team)
                .await
                .outcome,
            Outcome::Accepted,
            "{sender}"
        );
    }
    // No lookup named the wildcard; the roster answered for it.
    let reqs = fake.requests();
    assert!(!reqs.iter().any(|r| r.contains("odd%2Aname")), "{reqs:?}");
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("/3.1/lists/team.lists.example.org/roster/member")),
        "{reqs:?}"
    );
}

/// `Approved:` counts only on a list with a moderator password (REST
/// `moderator_password` not null): team@ has none, so the claim is ignored
/// and the refusal comes at once; quiet@ has one, so Mailman checks it.
#[tokio::test]
async fn approval_claims_pass_only_where_mailman_has_a_moderator_password() {
    let (_fake, backend) = Fake::with_backend(Mode::Serve, |c| c).await;
    let approved = |rcpt: &str| MessageSpec {
        message: Bytes::from(format!(
            "From: stranger@example.com\r\nTo: {rcpt}\r\nApproved: guess\r\nSubject: hi\r\n\r\nBody.\r\n"
        )),
        ..spec("stranger@example.com", rcpt)
    };
    for (rcpt, passes) in [
        ("team@lists.example.org", false),
        ("quiet@lists.example.org", true),
    ] {
        let mut c = in_process::client(backend.clone(), Settings::default()).await;
        let t = run_message(&mut c, &approved(rcpt)).await.unwrap();
        if passes {
            assert_eq!(t.outcome, Outcome::Accepted, "{rcpt}");
        } else {
            assert!(
                matches!(
                    t.outcome,
                    Outcome::Rejected {
                        at: Step::EndOfHeaders,
                        ..
                    }
                ),
                "{rcpt}: {t:?}"
            );
        }
    }
}

/// Header-match rules from `lists/{id}/header-matches`, in Mailman's chain
/// order: after member moderation (a member whose action is accept skips
/// them; one whose action is defer does not), before the non-member rules.
#[tokio::test]
async fn header_match_rules_decide_in_mailmans_chain_order() {
    let (_fake, backend) = Fake::with_backend(Mode::Serve, |c| c).await;
    let team = "team@lists.example.org";
    let with = |from: &str, extra: &str| MessageSpec {
        message: Bytes::from(format!(
            "From: {from}\r\nTo: {team}\r\n{extra}Subject: hello\r\n\r\nBody.\r\n"
        )),
        ..spec(from, team)
    };
    let outcome = |from: &'static str, extra: &'static str| {
        let backend = backend.clone();
        async move {
            let mut c = in_process::client(backend, Settings::default()).await;
            run_message(&mut c, &with(from, extra))
                .await
                .unwrap()
                .outcome
        }
    };
    let refused = |o: &Outcome| {
        matches!(
            o,
            Outcome::Rejected {
                at: Step::EndOfHeaders,
                ..
            }
        )
    };
    // A member (default action defer): the discard rule refuses, case
    // ignored as Mailman's re.IGNORECASE.
    assert!(refused(
        &outcome("alice@example.org", "X-Spam-Flag: YES\r\n").await
    ));
    assert_eq!(
        outcome("alice@example.org", "X-Spam-Flag: no\r\n").await,
        Outcome::Accepted
    );
    // A member with action accept never reaches the header rules.
    assert_eq!(
        outcome("boss@example.org", "X-Spam-Flag: YES\r\n").await,
        Outcome::Accepted
    );
    // Look-behind, on the backtracking engine.
    assert!(refused(
        &outcome("alice@example.org", "Subject: please subscribe me\r\n").await
    ));
    // The accept rule lets a non-member through before the non-member rules.
    assert_eq!(
        outcome("stranger@example.com", "X-Partner: trusted\r\n").await,
        Outcome::Accepted
    );
    assert!(refused(
        &outcome("stranger@example.com", "X-Partner: other\r\n").await
    ));
    // An encoded word Mailman would decode first: the accept rule cannot
    // tell, so the non-member is not refused.
    assert_eq!(
        outcome("stranger@example.com", "X-Partner: =?utf-8?q?trusted?=\r\n").await,
        Outcome::Accepted
    );
}

/// Mailman's own alias domains (`alias_domain` in `/domains`): its LMTP
/// runner reads `list@alias_domain` as the list, so the milter does too,
/// without repeating them in `alias_domains`.
#[tokio::test]
async fn mailmans_alias_domains_are_the_lists_domain() {
    let (fake, backend) = Fake::with_backend(Mode::Serve, |c| c).await;
    let s = Settings::default;
    let t = post(&backend, s(), "stranger@example.com", "team@alias.example").await;
    assert_eq!(reply_of(&t), REFUSAL, "{t:?}");
    assert_eq!(
        post(&backend, s(), "alice@example.org", "Team+x@ALIAS.example")
            .await
            .outcome,
        Outcome::Accepted
    );
    // Another domain's lists are not reachable through it.
    assert_eq!(
        post(&backend, s(), "stranger@example.com", "team@other.example")
            .await
            .outcome,
        Outcome::Accepted
    );
    // The same after a whole read, which knows every list by its mail
    // host's address only.
    let read_whole = Arc::new(RestBackend::new(&fake.config()).unwrap());
    read_whole.lists().await.unwrap();
    let t = post(
        &read_whole,
        s(),
        "stranger@example.com",
        "team@alias.example",
    )
    .await;
    assert_eq!(reply_of(&t), REFUSAL, "{t:?}");
    // Priming reads the lists the overrides name (in either domain), not
    // every list.
    let mut settings = Settings::default();
    for name in [
        "team@alias.example",
        "quiet@lists.example.org",
        "nosuch@lists.example.org",
    ] {
        settings
            .overrides
            .lists
            .insert(name.into(), Default::default());
    }
    let milter = MailmanMilter::new(backend.clone(), settings);
    assert_eq!(milter.prime().await.unwrap(), 2);
}

/// Mail outside the list domains never waits for Mailman: with the domains
/// configured, a stalled API delays and refuses nothing there, while list
/// mail gets the fail-safe (4xx), never a 5xx.
#[tokio::test]
async fn mail_outside_the_list_domains_never_waits_for_a_stalled_api() {
    let (fake, backend) = Fake::with_backend(Mode::Stall, |c| RestConfig {
        list_domains: Some(vec!["lists.example.org".into()]),
        ..c
    })
    .await;
    for rcpt in ["bob@example.org", "team@lists.example.org.evil", "<>"] {
        let t = Instant::now();
        let o = post(&backend, Settings::default(), "stranger@example.com", rcpt).await;
        assert_eq!(o.outcome, Outcome::Accepted, "{rcpt}");
        assert!(t.elapsed() < QUICK, "{rcpt}: {:?}", t.elapsed());
    }
    // Not a single request for them.
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
    let o = post_stranger(&backend).await;
    assert_tempfail(&o, Step::Rcpt);
    assert!(!fake.requests().is_empty());
}

/// A restart while Mailman is down: the list data kept in `state_dir`
/// still tells list domains from others and which lists are guarded, and
/// a banned sender is refused without asking Mailman; what needs Mailman
/// (a sender's membership) gets the fail-safe.
#[tokio::test]
async fn a_restart_during_an_outage_serves_the_kept_list_data() {
    let fake = Fake::start(Mode::Serve).await;
    let dir = tempfile::tempdir().unwrap();
    let config = RestConfig {
        state_dir: Some(dir.path().join("state")),
        ..fake.config()
    };
    let first = Arc::new(RestBackend::new(&config).unwrap());
    assert!(first.known_list_domains().is_none());
    first.lists().await.unwrap();
    // Membership answers the milter has: kept too.
    let team = "team@lists.example.org";
    assert_eq!(
        post(&first, Settings::default(), "alice@example.org", team)
            .await
            .outcome,
        Outcome::Accepted
    );
    assert_eq!(
        reply_of(&post(&first, Settings::default(), "troll@example.org", team).await),
        REFUSAL
    );
    first.keep_state().await;
    let file = mailman_milter::rest::state::path(&dir.path().join("state"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !file.exists() {
        assert!(Instant::now() < deadline, "list data never kept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(first);
    // Mailman goes down; the milter restarts.
    fake.set(Mode::Stall);
    let backend = Arc::new(RestBackend::new(&config).unwrap());
    let domains = backend.known_list_domains().unwrap();
    assert!(domains.contains("lists.example.org") && domains.contains("alias.example"));
    let s = Settings::default;
    let quick = |t: Instant| assert!(t.elapsed() < QUICK, "{:?}", t.elapsed());
    let t = Instant::now();
    assert_eq!(
        post(&backend, s(), "x@example.com", "bob@example.org")
            .await
            .outcome,
        Outcome::Accepted
    );
    quick(t);
    // An unguarded list, and a service address: no sender lookup needed.
    let t = Instant::now();
    assert_eq!(
        post(
            &backend,
            s(),
            "x@example.com",
            "open-request@lists.example.org"
        )
        .await
        .outcome,
        Outcome::Accepted
    );
    quick(t);
    // A banned sender is known to be refused.
    let o = post(
        &backend,
        s(),
        "spammer@evil.example",
        "team@lists.example.org",
    )
    .await;
    assert_eq!(reply_of(&o), REFUSAL, "{o:?}");
    // A sender whose membership is not known: 4xx.
    let o = post(
        &backend,
        s(),
        "stranger@example.com",
        "team@lists.example.org",
    )
    .await;
    assert_tempfail(&o, Step::EndOfHeaders);
    // Kept membership answers (within max_stale): the member passes, the
    // member whose posts Mailman discards is refused.
    assert_eq!(
        post(&backend, s(), "alice@example.org", team).await.outcome,
        Outcome::Accepted
    );
    assert_eq!(
        reply_of(&post(&backend, s(), "troll@example.org", team).await),
        REFUSAL
    );
    // Kept data older than max_stale is not served, but its domains count.
    let old = Arc::new(
        RestBackend::new(&RestConfig {
            cache_ttl: Duration::from_millis(1),
            max_stale: Duration::from_millis(1),
            ..config.clone()
        })
        .unwrap(),
    );
    assert!(old.known_list_domains().is_some());
    let t = Instant::now();
    assert_eq!(
        post(&old, s(), "x@example.com", "bob@example.org")
            .await
            .outcome,
        Outcome::Accepted
    );
    quick(t);
    assert_tempfail(
        &post(&old, s(), "x@example.com", "open@lists.example.org").await,
        Step::Rcpt,
    );
}

/// Lists read one by one (on their first RCPT, never whole) are kept in
/// `state_dir` too, without any explicit save: after a restart during an
/// outage they are served (within `max_stale`), and so are the addresses
/// known to name no list; what was never read gets the fail-safe, never a
/// 5xx, and mail outside the list domains passes without waiting.
#[tokio::test]
async fn a_restart_during_an_outage_serves_the_lists_read_one_by_one() {
    let fake = Fake::start(Mode::Serve).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = RestConfig {
        state_dir: Some(state.clone()),
        ..fake.config()
    };
    let first = Arc::new(RestBackend::new(&config).unwrap());
    let s = Settings::default;
    let team = "team@lists.example.org";
    assert_eq!(
        reply_of(&post(&first, s(), "spammer@evil.example", team).await),
        REFUSAL
    );
    assert_eq!(
        post(&first, s(), "x@example.com", "bob@lists.example.org")
            .await
            .outcome,
        Outcome::Accepted
    );
    assert!(
        !fake.requests().iter().any(|r| r.starts_with("/3.1/lists?")),
        "the lists were read whole: {:?}",
        fake.requests()
    );
    // Written soon after the reads, by itself.
    let file = mailman_milter::rest::state::path(&state);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.contains("team.lists.example.org") && text.contains("bob@lists.example.org") {
            break;
        }
        assert!(Instant::now() < deadline, "not kept: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(first);
    fake.set(Mode::Stall);
    let before = fake.requests().len();
    let backend = Arc::new(RestBackend::new(&config).unwrap());
    assert!(
        backend
            .known_list_domains()
            .unwrap()
            .contains("lists.example.org")
    );
    // Kept: the list (its ban decides without Mailman) and "no such list".
    assert_eq!(
        reply_of(&post(&backend, s(), "spammer@evil.example", team).await),
        REFUSAL
    );
    let t = Instant::now();
    for rcpt in ["bob@lists.example.org", "carol@example.org"] {
        assert_eq!(
            post(&backend, s(), "x@example.com", rcpt).await.outcome,
            Outcome::Accepted,
            "{rcpt}"
        );
    }
    assert!(t.elapsed() < QUICK, "{:?}", t.elapsed());
    assert_eq!(fake.requests().len(), before, "{:?}", fake.requests());
    // Never read before: Mailman must answer, and does not.
    assert_tempfail(
        &post(&backend, s(), "x@example.com", "quiet@lists.example.org").await,
        Step::Rcpt,
    );
}

/// 32 posts from the same new sender at once ask Mailman once.
#[tokio::test]
async fn identical_lookups_in_flight_are_one_request() {
    let (fake, backend) = Fake::with_backend(Mode::Serve, |c| c).await;
    let index = backend.lists().await.unwrap();
    let team = index["team@lists.example.org"].clone();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (b, team) = (backend.clone(), team.clone());
            tokio::spawn(async move { b.senders(&team, &["carol@example.org".to_owned()]).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap()[0].member);
    }
    let asked = fake
        .requests()
        .iter()
        .filter(|r| r.contains("subscriber=carol"))
        .count();
    assert_eq!(asked, 1);
}

/// After failures the API is left alone for a growing delay: a burst of
/// posts from new senders does not become a burst of requests.
#[tokio::test]
async fn a_failing_api_is_backed_off_not_hammered() {
    let (fake, backend) = Fake::with_backend(Mode::Serve, |c| c).await;
    let index = backend.lists().await.unwrap();
    let team = index["team@lists.example.org"].clone();
    fake.set(Mode::Error500);
    let before = fake.requests().len();
    for i in 0..40 {
        let r = backend
            .senders(&team, &[format!("new{i}@example.com")])
            .await;
        assert!(r.is_err());
    }
    let sent = fake.requests().len() - before;
    assert!(sent <= 3, "{sent} requests for 40 lookups");
}

/// When the API answers again after failures spaced past each back-off,
/// lookups succeed again, and a good answer leaves no back-off over.
#[tokio::test]
async fn after_an_outage_answers_come_back() {
    let (fake, backend) = Fake::with_backend(Mode::Serve, |c| c).await;
    let index = backend.lists().await.unwrap();
    let team = index["team@lists.example.org"].clone();
    fake.set(Mode::Error500);
    for i in 0..3 {
        assert!(
            backend
                .senders(&team, &[format!("down{i}@example.com")])
                .await
                .is_err()
        );
        tokio::time::sleep(std::time::Duration::from_millis(600 << i)).await;
    }
    fake.set(Mode::Serve);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(70);
    let mut tries = 0;
    let status = loop {
        tries += 1;
        match backend
            .senders(&team, &["alice@example.org".to_owned()])
            .await
        {
            Ok(s) => break s,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "no recovery: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    };
    assert!(status[0].member, "{status:?}");
    // Back to normal: the next new sender is asked at once.
    let s = backend
        .senders(&team, &["stranger@example.com".to_owned()])
        .await
        .expect("no back-off after a good answer");
    assert!(!s[0].member);
    eprintln!("answers came back after {tries} tries");
}

/// Faults of the API (stalled, slow, closing, garbage, HTTP 500, down),
/// at a cold start and after the lists were read: mail outside the list
/// domains is never delayed or refused; list mail gets 4xx, never 5xx,
/// unless the sender is already known to be refused (a ban).
#[tokio::test]
async fn api_faults_never_delay_other_mail_nor_give_list_mail_a_5xx() {
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}/3.1", l.local_addr().unwrap().port())
    };
    let faults = [
        Some(Mode::Stall),
        Some(Mode::Slow),
        Some(Mode::Close),
        Some(Mode::Garbage),
        Some(Mode::Error500),
        None,
    ];
    for fault in faults {
        for warm in [false, true] {
            let fake = Fake::start(Mode::Serve).await;
            // Shorter than the slow fault's 1.5 s, so that is a fault.
            let config = RestConfig {
                list_domains: Some(vec!["lists.example.org".into()]),
                timeout: Duration::from_secs(1),
                ..fake.config()
            };
            let backend = Arc::new(RestBackend::new(&config).unwrap());
            if warm {
                backend.lists().await.unwrap();
            }
            let backend = match fault {
                Some(m) => {
                    fake.set(m);
                    backend
                }
                // Mailman gone: a port nothing listens on.
                None if warm => {
                    drop(fake);
                    backend
                }
                None => Arc::new(
                    RestBackend::new(&RestConfig {
                        url: down.clone(),
                        ..config
                    })
                    .unwrap(),
                ),
            };
            let what = format!("{fault:?} warm={warm}");
            let s = Settings::default;
            // Answered without waiting for the API: before the timeout
            // could have passed.
            let t = Instant::now();
            let o = post(&backend, s(), "stranger@example.com", "bob@example.org").await;
            assert_eq!(o.outcome, Outcome::Accepted, "{what}");
            assert!(t.elapsed() < config.timeout, "{what}: {:?}", t.elapsed());
            for from in [
                "stranger@example.com",
                "alice@example.org",
                "spammer@evil.example",
            ] {
                let o = post(&backend, s(), from, "team@lists.example.org").await;
                match &o.outcome {
                    Outcome::Tempfailed { reply, .. } => {
                        assert_eq!(reply.as_deref(), Some(UNAVAILABLE), "{what} {from}")
                    }
                    // Known to be refused without Mailman: the ban, from
                    // list data read before the fault.
                    Outcome::Rejected { .. } => {
                        assert!(
                            warm && from.ends_with("@evil.example"),
                            "{what} {from}: {o:?}"
                        )
                    }
                    other => panic!("{what} {from}: {other:?}"),
                }
            }
        }
    }
}

/// `mailman-milter export` writes the API's data as a lists file; the file
/// backend then gives the REST backend's answer for every sender on every
/// list (members, linked addresses, own actions, bans as stored, header
/// rules, moderator password).
#[tokio::test]
async fn an_exported_lists_file_decides_as_the_api() {
    let fake = Fake::start(Mode::Serve).await;
    let config = fake.config();
    let text = mailman_milter::export::export(&config).await.unwrap();
    assert!(
        text.contains("\"alias.example\" = \"lists.example.org\""),
        "{text}"
    );
    let file = mailman_milter::ListsData::parse(&text, "exported.toml")
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let backend = RestBackend::new(&config).unwrap();
    let index = backend.lists().await.unwrap();
    let senders = [
        "alice@example.org",
        "alice.alt@example.org",
        "carol@example.org",
        "troll@example.org",
        "troll.alt@example.org",
        "slow@example.org",
        "fan@example.org",
        "boss@example.org",
        "vip@outside.example",
        "pest@partner.example",
        "seen@outside.example",
        "x@partner.example",
        "bob@friends.example",
        "held@example.com",
        "y@rival.example",
        "dropped@example.com",
        "stranger@example.com",
        "grump@example.org",
        "spammer@evil.example",
        "loud@example.com",
        "banned@example.com",
        "shouty@example.com",
        "nobody.alt@example.org",
    ];
    for (_, address, _) in LISTS {
        let rest = &index[*address];
        let from_file = &file.index()[*address];
        assert_eq!(rest.is_guarded(), from_file.is_guarded(), "{address}");
        assert_eq!(
            rest.approval_possible(),
            from_file.approval_possible(),
            "{address}"
        );
        assert_eq!(
            rest.header_matches.len(),
            from_file.header_matches.len(),
            "{address}"
        );
        let all: Vec<String> = senders.iter().map(|s| s.to_string()).collect();
        let statuses = backend.senders(rest, &all).await.unwrap();
        for (sender, rest_status) in all.iter().zip(&statuses) {
            assert_eq!(
                *rest_status,
                file.status(address, sender),
                "{address} {sender}"
            );
        }
    }
}

/// The `export` subcommand writes the file; `--check-config` accepts it.
#[tokio::test]
async fn the_export_subcommand_writes_a_lists_file_the_daemon_accepts() {
    let fake = Fake::start(Mode::Serve).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!("backend = \"mailman\"\n[mailman]\nurl = \"{}\"\n", fake.url),
    )
    .unwrap();
    let out = dir.path().join("lists.toml");
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailman-milter"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "export",
            "--output",
            out.to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailman-milter"))
        .args(["--lists", out.to_str().unwrap(), "--check-config"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains("team@lists.example.org: non-members reject; guarded"),
        "{text}"
    );
}

/// Every `kind` the client's requests can have.
const KINDS: [&str; 10] = [
    "domains",
    "bans",
    "lists",
    "list",
    "config",
    "header_matches",
    "roster",
    "members",
    "addresses",
    "other",
];
const CLASSES: [&str; 6] = ["timeout", "connect", "status", "body", "json", "request"];
const CACHES: [&str; 4] = ["site", "list", "member", "lists"];

fn count(f: &CounterFamily, label: &'static str, value: &'static str) -> u64 {
    f.get_or_create(&vec![(label, value)]).get()
}

fn total(f: &CounterFamily, label: &'static str, values: &[&'static str]) -> u64 {
    values.iter().map(|v| count(f, label, v)).sum()
}

/// The requests the fake saw, by kind (the path below the API's `/3.1`).
fn seen(fake: &Fake, kind: &str) -> u64 {
    fake.requests()
        .iter()
        .filter(|r| request_kind(r.strip_prefix("/3.1").unwrap_or(r)) == kind)
        .count() as u64
}

/// HTTP requests counted by kind are the requests the server received;
/// an answer from the cache sends none and counts as a hit.
#[tokio::test]
async fn rest_metrics_count_the_requests_the_server_saw_and_the_cache_hits() {
    let fake = Fake::start(Mode::Serve).await;
    let m = RestMetrics::default();
    let backend = Arc::new(RestBackend::counted(&fake.config(), m.clone()).unwrap());
    let team = "team@lists.example.org";
    let post_alice = || post(&backend, Settings::default(), "alice@example.org", team);
    assert_eq!(post_alice().await.outcome, Outcome::Accepted);
    let cold = fake.requests().len() as u64;
    assert!(cold > 0);
    assert_eq!(total(&m.requests, "kind", &KINDS), cold);
    for kind in KINDS {
        assert_eq!(
            count(&m.requests, "kind", kind),
            seen(&fake, kind),
            "{kind}"
        );
    }
    // The list resource and its config once; the sender asked once.
    assert_eq!(count(&m.requests, "kind", "list"), 1);
    assert_eq!(count(&m.requests, "kind", "config"), 1);
    assert_eq!(seen(&fake, "members"), 3 + 1, "{:?}", fake.requests());
    assert_eq!(total(&m.errors, "class", &CLASSES), 0);
    assert_eq!(total(&m.stale_answers, "cache", &CACHES), 0);
    // Nothing was answered from the cache but what this post itself read
    // (the list's data, read at RCPT and used again for the sender).
    assert_eq!(count(&m.cache_hits, "cache", "member"), 0);
    let hits = |c| count(&m.cache_hits, "cache", c);
    let (site, list) = (hits("site"), hits("list"));
    // The same post again: no request; the list data and the sender's
    // answer from the cache.
    assert_eq!(post_alice().await.outcome, Outcome::Accepted);
    assert_eq!(fake.requests().len() as u64, cold);
    assert_eq!(total(&m.requests, "kind", &KINDS), cold);
    assert_eq!(hits("member"), 1);
    // The recipient's list looked up at RCPT and for the sender's status:
    // the site data and the list each twice.
    assert_eq!((hits("site") - site, hits("list") - list), (2, 2));
    assert_eq!(total(&m.stale_answers, "cache", &CACHES), 0);
    assert_eq!(total(&m.errors, "class", &CLASSES), 0);
}

/// With the server gone and the answers past `cache_ttl` (within
/// `max_stale`), the post is still decided from them: counted as stale
/// answers, and the failed requests as errors.
#[tokio::test]
async fn rest_metrics_count_stale_answers_and_failed_requests() {
    let fake = Fake::start(Mode::Serve).await;
    let m = RestMetrics::default();
    let backend = Arc::new(
        RestBackend::counted(
            &RestConfig {
                cache_ttl: Duration::from_secs(1),
                max_stale: Duration::from_secs(60),
                ..fake.config()
            },
            m.clone(),
        )
        .unwrap(),
    );
    let team = "team@lists.example.org";
    let post_alice = || post(&backend, Settings::default(), "alice@example.org", team);
    assert_eq!(post_alice().await.outcome, Outcome::Accepted);
    let before = total(&m.requests, "kind", &KINDS);
    assert_eq!(before, fake.requests().len() as u64);
    let hits = total(&m.cache_hits, "cache", &CACHES);
    // The server stops: connections are refused.
    drop(fake);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(post_alice().await.outcome, Outcome::Accepted);
    let stale = |c| count(&m.stale_answers, "cache", c);
    // The sender's answer once; the site data and the list at RCPT and
    // for the sender's status (their refreshes fail in the background).
    assert_eq!((stale("member"), stale("site"), stale("list")), (1, 2, 2));
    assert_eq!(total(&m.cache_hits, "cache", &CACHES), hits);
    // Every request sent since failed to connect (more are not sent while
    // backing off); the background refreshes may still be ending.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sent = total(&m.requests, "kind", &KINDS) - before;
        let failed = count(&m.errors, "class", "connect");
        if sent >= 1 && failed == sent {
            break;
        }
        assert!(Instant::now() < deadline, "sent {sent}, failed {failed}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        total(&m.errors, "class", &CLASSES),
        count(&m.errors, "class", "connect")
    );
}

/// Each way a request fails is counted in its class.
#[tokio::test]
async fn rest_metrics_count_failures_by_class() {
    for (mode, class) in [
        (Mode::Error500, "status"),
        (Mode::Garbage, "json"),
        (Mode::Stall, "timeout"),
    ] {
        let fake = Fake::start(mode).await;
        let m = RestMetrics::default();
        let backend = Arc::new(
            RestBackend::counted(
                &RestConfig {
                    timeout: Duration::from_millis(500),
                    ..fake.config()
                },
                m.clone(),
            )
            .unwrap(),
        );
        let t = post(
            &backend,
            Settings::default(),
            "alice@example.org",
            "team@lists.example.org",
        )
        .await;
        assert_tempfail(&t, Step::Rcpt);
        // The requests sent (the fake saw each) all failed, in this class;
        // with back-off, maybe only the first ones.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sent = total(&m.requests, "kind", &KINDS);
            let failed = count(&m.errors, "class", class);
            if sent >= 1 && failed == sent && sent == fake.requests().len() as u64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{mode:?}: sent {sent}, failed {failed}, seen {:?}",
                fake.requests()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            total(&m.errors, "class", &CLASSES),
            count(&m.errors, "class", class)
        );
    }
}

/// The daemon on the fake API with `--metrics`, after the same post twice
/// (with `outage`, a third once the answers are past `cache_ttl` and the
/// API answers HTTP 500): its `/metrics` exposition.
async fn daemon_metrics(fake: &Fake, outage: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("milter.sock");
    let file = write(
        dir.path(),
        "c.toml",
        &format!(
            "listen = \"unix:{}\"\nbackend = \"mailman\"\n[mailman]\nurl = \"{}\"\ntimeout = 5\n{}",
            socket.display(),
            fake.url,
            if outage {
                "cache_ttl = 1\nmax_stale = 60\n"
            } else {
                ""
            }
        ),
    );
    let mport = daemon_contract::free_port();
    let log = dir.path().join("daemon.log");
    let mut daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailman-milter"))
        .args(["--config", file.to_str().unwrap()])
        .args(["--metrics", &format!("inet:127.0.0.1:{mport}")])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists()
        || !std::fs::read_to_string(&log)
            .unwrap()
            .contains("metrics at")
    {
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "the daemon does not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spec_of: minimilter::SocketSpec = format!("unix:{}", socket.display()).parse().unwrap();
    for i in 0..if outage { 3 } else { 2 } {
        if i == 2 {
            fake.set(Mode::Error500);
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        let mut c = MilterClient::connect(&spec_of, ClientConfig::default())
            .await
            .unwrap();
        let t = tokio::time::timeout(
            Duration::from_secs(20),
            run_message(&mut c, &spec("alice@example.org", "team@lists.example.org")),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(t.outcome, Outcome::Accepted);
    }
    let m = tokio::task::spawn_blocking(move || daemon_contract::scrape_settled(mport))
        .await
        .unwrap();
    daemon.kill().await.unwrap();
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_exposes_the_rest_counters() {
    let fake = Fake::start(Mode::Serve).await;
    let m = daemon_metrics(&fake, false).await;
    let sample = |s: &str| daemon_contract::sample(&m, s);
    let sent: f64 = KINDS
        .iter()
        .filter_map(|k| {
            sample(&format!(
                "mailman_milter_rest_requests_total{{kind=\"{k}\"}}"
            ))
        })
        .sum();
    assert_eq!(sent, fake.requests().len() as f64, "{m}");
    // The whole list data read at start (paged by two).
    assert!(
        sample("mailman_milter_rest_requests_total{kind=\"lists\"}").is_some_and(|n| n >= 1.0),
        "{m}"
    );
    // The second post's sender answer came from the cache.
    assert_eq!(
        sample("mailman_milter_cache_hits_total{cache=\"member\"}"),
        Some(1.0),
        "{m}"
    );
    for family in ["rest_errors", "stale_answers"] {
        assert!(
            !m.contains(&format!("mailman_milter_{family}_total{{")),
            "{m}"
        );
    }
    // The policy-level counters stay beside them.
    assert_eq!(
        sample("mailman_milter_backend_requests_total{call=\"senders\"}"),
        Some(2.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs promtool"]
async fn promtool_accepts_the_exposition_with_the_rest_counters() {
    let fake = Fake::start(Mode::Serve).await;
    let m = daemon_metrics(&fake, true).await;
    for family in [
        "rest_requests",
        "rest_errors",
        "cache_hits",
        "stale_answers",
    ] {
        assert!(
            m.contains(&format!("# TYPE mailman_milter_{family}_total counter")),
            "{m}"
        );
    }
    daemon_contract::promtool_accepts(&m);
}
