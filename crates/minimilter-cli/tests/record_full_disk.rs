//! `record` on a file system that fills up before `--max-bytes` is
//! reached: the oldest transcripts make room for the newest, as the limit
//! promises, and a failed write leaves no half-written temporary file.
//!
//! Mounts a small tmpfs, so it needs root (and mount(8)).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Proxy, minimilter, scratch, serve_policy, transcripts};

struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(leftovers(&p));
            } else if p.to_string_lossy().ends_with(".tmp") {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[ignore = "needs root (mounts a tmpfs)"]
#[test]
fn a_full_disk_drops_the_oldest_transcripts_and_leaves_no_temporary_files() {
    let base = scratch("full-disk");
    let mnt = base.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("mount(8)");
    assert!(st.success(), "mounting a tmpfs needs root");
    let _mounted = Mounted(mnt.clone());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let milter_sock = base.join("policy.sock");
    rt.block_on(serve_policy(&milter_sock, false));
    let listen = base.join("record.sock");
    let dir = mnt.join("transcripts");
    let proxy = Proxy::start(
        &listen,
        &format!("unix:{}", milter_sock.display()),
        &dir,
        &[],
    );
    // A transcript takes a 4 KiB page of tmpfs: 400 fill 1 MiB one and a half times.
    let n = 400;
    let o = Command::new(minimilter())
        .args([
            "bench",
            "--conns",
            "1",
            "--messages",
            &n.to_string(),
            "--quiet",
        ])
        .arg(format!("unix:{}", listen.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    // The writer runs in the idle scheduling class and may lag on a busy
    // machine; at SIGTERM it writes what it has, then the process ends.
    let mut proxy = proxy;
    let st = Command::new("kill")
        .args(["-TERM", &proxy.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.alive() {
        assert!(Instant::now() < deadline, "record did not stop at SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let last = format!("-c1-t{n}.jsonl");
    assert!(
        transcripts(&dir)
            .iter()
            .any(|f| f.to_string_lossy().ends_with(&last)),
        "the newest transcript was written:\n{}",
        proxy
            .log_text()
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let files = transcripts(&dir);
    assert!(files.len() > 50, "{} files kept", files.len());
    assert!(
        !files
            .iter()
            .any(|f| f.to_string_lossy().ends_with("-c1-t1.jsonl")),
        "the oldest made room"
    );
    assert_eq!(
        leftovers(&dir),
        Vec::<String>::new(),
        "no temporary files left"
    );
    drop(proxy);
}

#[ignore = "needs root (mounts a tmpfs)"]
#[test]
fn a_transcript_directory_that_cannot_be_written_stops_record_at_start() {
    let base = scratch("read-only");
    let mnt = base.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,ro", "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("mount(8)");
    assert!(st.success(), "mounting a tmpfs needs root");
    let _mounted = Mounted(mnt.clone());
    let listen = base.join("record.sock");
    let mut child = Command::new(minimilter())
        .arg("record")
        .arg("--listen")
        .arg(format!("unix:{}", listen.display()))
        .arg("--to")
        .arg(format!("unix:{}", base.join("none.sock").display()))
        .arg("--dir")
        .arg(&mnt)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("record started on a directory it cannot write to");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write to the transcript directory"),
        "{err}"
    );
    assert!(err.contains(&mnt.display().to_string()), "{err}");
}
