//! `bench` describes the SMTP session with the options `check` has (a
//! milter that skips 127.0.0.1 must be measurable on its real path), and a
//! message that completes after `--duration` is not part of the run.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minimilter::{
    ConnectInfo, Ctx, Envelope, Listener, MacroStage, Milter, Modifications, Requirements, Server,
    ServerConfig, SocketSpec, StepResult, Verdict,
};

fn temp_dir(tag: &str) -> PathBuf {
    use std::hash::{BuildHasher, RandomState};
    let n = RandomState::new().hash_one(std::time::SystemTime::now());
    let d = std::env::temp_dir().join(format!("minimilter-cli-{tag}-{}-{n:x}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn minimilter(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_minimilter"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Writes down what it is told about the session, one line per fact.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    fn note(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn macro_text<C, M>(cx: &minimilter::Context<'_, C, M>, name: &str) -> String {
    cx.macro_value(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| "-".into())
}

impl Milter for Recorder {
    type Connection = ();
    type Message = ();

    fn requirements(&self) -> Requirements {
        Requirements {
            macros: vec![
                (MacroStage::Connect, "{client_ptr} j".into()),
                (MacroStage::Mail, "{auth_authen} i".into()),
            ],
            ..Requirements::default()
        }
    }

    async fn connect(&self, cx: Ctx<'_, Self>, info: &ConnectInfo) -> StepResult {
        self.note(format!(
            "connect {} {:?} ptr={}",
            info.hostname_str(),
            info.address,
            macro_text(&cx, "{client_ptr}")
        ));
        Ok(Verdict::Continue)
    }

    async fn helo(&self, _cx: Ctx<'_, Self>, name: &bytes::Bytes) -> StepResult {
        self.note(format!("helo {}", String::from_utf8_lossy(name)));
        Ok(Verdict::Continue)
    }

    async fn mail(&self, cx: Ctx<'_, Self>, from: &Envelope) -> StepResult {
        self.note(format!(
            "mail {} auth={}",
            from.address(),
            macro_text(&cx, "{auth_authen}")
        ));
        self.note(format!("queue id {}", macro_text(&cx, "i")));
        Ok(Verdict::Continue)
    }

    async fn rcpt(&self, _cx: Ctx<'_, Self>, to: &Envelope) -> StepResult {
        self.note(format!("rcpt {}", to.address()));
        Ok(Verdict::Continue)
    }

    async fn end_of_message(&self, _cx: Ctx<'_, Self>, _m: &mut Modifications) -> StepResult {
        Ok(Verdict::Continue)
    }
}

fn serve(dir: &Path, filter: Recorder) -> (String, tokio::runtime::Runtime) {
    let path = dir.join("m.sock");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(Listener::bind(
            &SocketSpec::Unix(path.clone()),
            &Default::default(),
        ))
        .unwrap();
    runtime.spawn(
        Server::new(filter, ServerConfig::default()).serve(vec![listener], std::future::pending()),
    );
    (format!("unix:{}", path.display()), runtime)
}

const SESSION: &[&str] = &[
    "--client-addr",
    "192.0.2.7",
    "--client-name",
    "mx.example.net",
    "--helo",
    "helo.example.net",
    "--macro",
    "{client_ptr}=ptr.example.net",
    "--macro",
    "{auth_authen}=alice",
    "--from",
    "alice@example.com",
    "--rcpt",
    "bob@example.org",
    "--rcpt",
    "carol@example.org",
];

#[test]
fn bench_takes_every_session_option_check_takes() {
    let dir = TempDir(temp_dir("bench-session"));
    let rec = Recorder::default();
    let (spec, _rt) = serve(&dir.0, rec.clone());
    let mut args = vec!["bench", &spec, "--conns", "1", "--messages", "2", "--quiet"];
    args.extend_from_slice(SESSION);
    let o = minimilter(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut bench = rec.take();
    // Each message has its own queue id, as on an MTA.
    let ids: Vec<String> = bench
        .iter()
        .filter_map(|l| l.strip_prefix("queue id ").map(str::to_owned))
        .collect();
    bench.retain(|l| !l.starts_with("queue id "));
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(ids[0], ids[1]);
    assert!(
        ids.iter()
            .all(|i| i.len() == 12 && i.chars().all(|c| c.is_ascii_hexdigit())),
        "{ids:?}"
    );
    let expected = [
        "connect mx.example.net Inet { port: 40000, addr: b\"192.0.2.7\" } ptr=ptr.example.net",
        "helo helo.example.net",
        "mail alice@example.com auth=alice",
        "rcpt bob@example.org",
        "rcpt carol@example.org",
        "mail alice@example.com auth=alice",
        "rcpt bob@example.org",
        "rcpt carol@example.org",
    ];
    assert_eq!(bench, expected);

    // check, given the same options, describes the same session.
    let mut args = vec!["check", &spec, "/dev/null"];
    args.extend_from_slice(SESSION);
    let o = minimilter(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut check = rec.take();
    check.retain(|l| !l.starts_with("queue id "));
    assert_eq!(check, expected[..5]);

    // A queue id given as macro i is the one every message carries.
    let o = minimilter(&[
        "bench",
        &spec,
        "--conns",
        "1",
        "--messages",
        "2",
        "--quiet",
        "--macro",
        "i=4ABC123",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let ids: Vec<String> = rec
        .take()
        .into_iter()
        .filter(|l| l.starts_with("queue id "))
        .collect();
    assert_eq!(ids, ["queue id 4ABC123", "queue id 4ABC123"]);

    // An unknown client address is the "unknown" family, as in check.
    let o = minimilter(&[
        "bench",
        &spec,
        "--conns",
        "1",
        "--messages",
        "1",
        "--quiet",
        "--client-addr",
        "unknown",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(rec.take()[0], "connect unknown Unknown ptr=-");

    // Bad values are refused before anything is sent.
    for bad in [
        ["--client-addr", "not-an-address"],
        ["--macro", "no-equals-sign"],
    ] {
        let mut args = vec!["bench", &spec, "--quiet"];
        args.extend_from_slice(&bad);
        let o = minimilter(&args);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(bad[0]), "{}", text(&o));
    }
    assert!(rec.take().is_empty());
}

/// A milter that takes every step away but end of message, and answers end
/// of message only `late` after it accepted the connection.
fn late_milter(dir: &Path, late: Duration, conns: usize) -> String {
    let path = dir.join("late.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for _ in 0..conns {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let accepted = Instant::now();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).is_err() {
                        return;
                    }
                    let n = u32::from_be_bytes(len) as usize;
                    if n > buf.len() || s.read_exact(&mut buf[..n]).is_err() {
                        return;
                    }
                    match buf[0] {
                        b'O' => {
                            let mut r = vec![0, 0, 0, 13, b'O'];
                            // Version 6, no actions, every NO_* step flag.
                            for w in [6u32, 0, 0x37F] {
                                r.extend_from_slice(&w.to_be_bytes());
                            }
                            let _ = s.write_all(&r);
                        }
                        b'E' => {
                            let due = accepted + late;
                            while Instant::now() < due {
                                std::thread::sleep(Duration::from_micros(50));
                            }
                            let _ = s.write_all(b"\0\0\0\x01c");
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    format!("unix:{}", path.display())
}

#[test]
fn a_message_completed_after_the_duration_is_not_counted() {
    // Each connection's answer comes a fraction of a millisecond after the
    // bench's deadline (the milter accepts after the bench started), inside
    // the tick in which a timer may not have fired yet.
    let dir = TempDir(temp_dir("bench-late"));
    let conns = 32;
    let duration = Duration::from_millis(300);
    let spec = late_milter(&dir.0, duration + Duration::from_micros(200), conns);
    let o = minimilter(&[
        "bench",
        &spec,
        "--conns",
        &conns.to_string(),
        "--messages",
        "1",
        "--duration",
        "0.3",
        "--json",
        "--quiet",
    ]);
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(v["messages"], 0, "{v}");
    assert_eq!(v["unfinished"], conns, "{v}");
    // Nothing completed: the run failed, but its report is whole.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}
