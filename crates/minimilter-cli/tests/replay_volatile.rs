//! `replay` against a milter whose header values change from run to run
//! by design (a DKIM signer's `t=` timestamp and signature, a counter, a
//! date): `--ignore-value NAME` compares those headers by name and
//! position only, so replaying to the same milter finds no difference,
//! while every other difference is still reported.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use minimilter::{
    Actions, Ctx, Listener, Milter, Modifications, Requirements, Server, ServerConfig, SocketSpec,
    StepResult, Steps, Verdict,
};
use serde_json::Value;

/// Adds `X-Stamp: <a number that grows with every message>` and
/// `X-Fixed: <the value it was made with>`, like a signer that puts the
/// time into its signature.
struct Stamper {
    next: AtomicU64,
    fixed: &'static str,
}

impl Milter for Stamper {
    type Connection = ();
    type Message = ();

    fn requirements(&self) -> Requirements {
        Requirements {
            steps: Steps::HEADER,
            actions: Actions::ADD_HEADERS,
            ..Requirements::default()
        }
    }

    async fn end_of_message(&self, _cx: Ctx<'_, Self>, mods: &mut Modifications) -> StepResult {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        mods.add_header("X-Stamp", &format!("t={n}"))?;
        mods.add_header("X-Fixed", self.fixed)?;
        Ok(Verdict::Continue)
    }
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn serve(rt: &tokio::runtime::Runtime, path: &std::path::Path, fixed: &'static str) -> String {
    let spec = SocketSpec::Unix(path.to_owned());
    let listener = rt
        .block_on(Listener::bind(&spec, &Default::default()))
        .unwrap();
    let milter = Stamper {
        next: AtomicU64::new(1000),
        fixed,
    };
    rt.spawn(
        Server::new(milter, ServerConfig::default()).serve(vec![listener], std::future::pending()),
    );
    format!("unix:{}", path.display())
}

/// Two messages recorded through `record` in front of the stamper.
fn recorded(dir: &std::path::Path, milter: &str) -> PathBuf {
    let listen = dir.join("record.sock");
    let transcripts = dir.join("transcripts");
    let proxy = Command::new(env!("CARGO_BIN_EXE_minimilter"))
        .arg("record")
        .arg("--listen")
        .arg(format!("unix:{}", listen.display()))
        .args(["--to", milter, "--dir"])
        .arg(&transcripts)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed on drop, also when an assertion fails.
    let proxy = Killed(proxy);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !listen.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "record did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    for _ in 0..2 {
        let o = Command::new(env!("CARGO_BIN_EXE_minimilter"))
            .arg("check")
            .arg(format!("unix:{}", listen.display()))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{o:?}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let n = walk(&transcripts);
        if n == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{n} transcripts");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(proxy);
    transcripts
}

fn walk(p: &std::path::Path) -> usize {
    std::fs::read_dir(p).map_or(0, |rd| {
        rd.flatten()
            .map(|e| {
                let p = e.path();
                if p.is_dir() {
                    walk(&p)
                } else {
                    usize::from(p.extension().is_some_and(|x| x == "jsonl"))
                }
            })
            .sum()
    })
}

fn replay(args: &[&str]) -> (i32, Value) {
    let o = Command::new(env!("CARGO_BIN_EXE_minimilter"))
        .arg("replay")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    (o.status.code().unwrap(), v)
}

#[test]
fn ignored_header_values_do_not_count_as_differences_and_others_still_do() {
    let dir = Dir(std::env::temp_dir().join(format!("mm-volatile-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let same = serve(&rt, &dir.0.join("same.sock"), "a");
    let other = serve(&rt, &dir.0.join("other.sock"), "b");
    let transcripts = recorded(&dir.0, &same);
    let t = transcripts.to_str().unwrap();

    // The stamp moved on: without the option, every message differs.
    let (code, v) = replay(&[t, &same]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["different"], 2, "{v:#}");

    // Compared by name and position only: the same milter, no difference.
    let (code, v) = replay(&["--ignore-value", "x-stamp", t, &same]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["different"], 0, "{v:#}");

    // Another header's value still counts.
    let (code, v) = replay(&["--ignore-value", "X-Stamp", t, &other]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["different"], 2, "{v:#}");
    let diff = v["messages"][0]["differences"][0].as_str().unwrap();
    assert!(diff.contains("X-Fixed"), "{diff}");
}

/// Kills the child on drop, so a failing assertion leaves no process.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
