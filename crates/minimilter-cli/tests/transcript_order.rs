//! Transcript files are kept and replayed oldest first, also for a
//! connection with ten transactions or more (`t10` is newer than `t9`,
//! although it sorts before it as text), and when `record` starts on a
//! directory it wrote before.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A whole transcript of connection `c`, transaction `t`, padded to
/// `size` bytes with a note, so that sizes are exact.
fn transcript(c: u64, t: u32, size: usize) -> String {
    let head = format!(
        r#"{{"bodies":"keep","connection":{c},"recorder":"test","schema":"minimilter-transcript","started_unix_ms":1796579803792,"transaction":{t},"type":"transcript","version":1}}"#
    );
    let neg = r#"{"answer":{"actions":0,"protocol":2047,"version":6},"offer":{"actions":511,"protocol":2097151,"version":6},"type":"negotiate"}"#;
    let end_start = r#"{"reason":"abort","type":"end","verdict":"none","pad":""#;
    let fixed = head.len() + neg.len() + end_start.len() + 2 + 3;
    format!(
        "{head}\n{neg}\n{end_start}{}\"}}\n",
        "x".repeat(size - fixed)
    )
}

fn write_period(dir: &Path, names: &[(u64, u32)], size: usize) -> Vec<PathBuf> {
    let period = dir.join("20261206T170000Z");
    std::fs::create_dir_all(&period).unwrap();
    names
        .iter()
        .map(|&(c, t)| {
            let p = period.join(format!("1796579803792-c{c}-t{t}.jsonl"));
            let text = transcript(c, t, size);
            assert_eq!(text.len(), size);
            std::fs::write(&p, text).unwrap();
            p
        })
        .collect()
}

fn tmp(tag: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("mm-order-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

#[test]
fn replay_reports_in_transaction_order() {
    let d = tmp("replay");
    let tx = d.0.join("tx");
    write_period(&tx, &[(1, 10), (1, 9), (2, 1), (10, 1)], 600);
    let o = Command::new(env!("CARGO_BIN_EXE_minimilter"))
        .args(["replay", "--json"])
        .arg(&tx)
        .arg(format!("unix:{}", d.0.join("none.sock").display()))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let order: Vec<(u64, u64)> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["connection"].as_u64().unwrap(),
                m["transaction"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(order, [(1, 9), (1, 10), (2, 1), (10, 1)], "{v:#}");
}

#[test]
fn record_started_on_a_full_directory_deletes_the_oldest_transaction_first() {
    let d = tmp("evict");
    let tx = d.0.join("tx");
    let files = write_period(&tx, &[(1, 9), (1, 10), (1, 11)], 600);
    let listen = d.0.join("record.sock");
    // Room for two of the three: the oldest (t9) must go.
    let child = Command::new(env!("CARGO_BIN_EXE_minimilter"))
        .arg("record")
        .arg("--listen")
        .arg(format!("unix:{}", listen.display()))
        .arg("--to")
        .arg(format!("unix:{}", d.0.join("none.sock").display()))
        .arg("--dir")
        .arg(&tx)
        .args(["--max-bytes", "1300"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed on drop, also when an assertion fails.
    let child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !listen.exists() {
        assert!(Instant::now() < deadline, "record did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(child);
    let kept: Vec<bool> = files.iter().map(|f| f.exists()).collect();
    assert_eq!(kept, [false, true, true], "t9 deleted, t10 and t11 kept");
}

/// Kills the child on drop, so a failing assertion leaves no process.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
