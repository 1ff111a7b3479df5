//! `replay` of the directory `record` is writing: a transcript deleted by
//! `--max-bytes` between the listing and its turn is counted as gone, not
//! as unreadable (which would fail the replay for nothing).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use minimilter::{
    Ctx, Listener, Milter, Modifications, Requirements, Server, ServerConfig, SocketSpec,
    StepResult, Verdict,
};
use serde_json::Value;

/// Continues after a pause at end of message; says when one started.
struct Slow(Arc<AtomicBool>);

impl Milter for Slow {
    type Connection = ();
    type Message = ();

    fn requirements(&self) -> Requirements {
        Requirements::default()
    }

    async fn end_of_message(&self, _cx: Ctx<'_, Self>, _m: &mut Modifications) -> StepResult {
        self.0.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Ok(Verdict::Continue)
    }
}

const TRANSCRIPT: &str = concat!(
    r#"{"bodies":"keep","connection":1,"recorder":"test","schema":"minimilter-transcript","started_unix_ms":1796579803792,"transaction":TXN,"type":"transcript","version":1}"#,
    "\n",
    r#"{"answer":{"actions":0,"protocol":0,"version":6},"at_us":1,"offer":{"actions":511,"protocol":2097151,"version":6},"type":"negotiate"}"#,
    "\n",
    r#"{"at_us":2,"body":"","code":"E","reply":"answer","step":"eom","type":"command"}"#,
    "\n",
    r#"{"after_us":1,"answer":"continue","at_us":3,"code":"c","step":"eom","type":"response"}"#,
    "\n",
    r#"{"at":"eom","at_us":3,"reason":"end-of-message","type":"end","verdict":"accept"}"#,
    "\n",
);

#[test]
fn a_transcript_deleted_after_the_listing_is_gone_not_unreadable() {
    let base = std::env::temp_dir().join(format!("mm-live-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let period = base.join("tx").join("20261206T170000Z");
    std::fs::create_dir_all(&period).unwrap();
    let first = period.join("1796579803792-c1-t1.jsonl");
    let second = period.join("1796579803792-c1-t2.jsonl");
    std::fs::write(&first, TRANSCRIPT.replace("TXN", "1")).unwrap();
    std::fs::write(&second, TRANSCRIPT.replace("TXN", "2")).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let sock = base.join("slow.sock");
    let listener = rt
        .block_on(Listener::bind(
            &SocketSpec::Unix(sock.clone()),
            &Default::default(),
        ))
        .unwrap();
    rt.spawn(
        Server::new(Slow(started.clone()), ServerConfig::default())
            .serve(vec![listener], std::future::pending()),
    );

    let child = Command::new(env!("CARGO_BIN_EXE_minimilter"))
        .args(["replay", "--json", "--conns", "1"])
        .arg(base.join("tx"))
        .arg(format!("unix:{}", sock.display()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While the first is replayed (1.5 s at end of message: the directory
    // was listed), the second goes, as record's --max-bytes would delete it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the replay did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::remove_file(&second).unwrap();
    let o = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["transcripts"], 1, "{v:#}");
    assert_eq!(v["gone"], 1, "{v:#}");
    assert_eq!(v["unreadable"].as_array().unwrap().len(), 0, "{v:#}");
    assert_eq!(o.status.code(), Some(0), "{v:#}");
    let _ = std::fs::remove_dir_all(&base);
}
