//! `minimilter check` against a real opendkim signing configuration, the
//! README's example: Debian's opendkim runs in the foreground with its own
//! config and a key made by `opendkim-genkey`, and the DKIM-Signature it adds
//! to the message as `check --show-message` delivers it must verify. The
//! verifier is Python's `dkim` module (Debian's python3-dkim), an
//! implementation independent of opendkim, given the public key from
//! `opendkim-genkey`'s DNS record instead of a DNS lookup (offline).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const OPENDKIM: &str = "/usr/sbin/opendkim";
const GENKEY: &str = "/usr/sbin/opendkim-genkey";
/// Debian's interpreter, which python3-dkim installs into.
const PYTHON: &str = "/usr/bin/python3";

fn temp_dir(tag: &str) -> PathBuf {
    use std::hash::{BuildHasher, RandomState};
    let n = RandomState::new().hash_one(std::time::SystemTime::now());
    let d = std::env::temp_dir().join(format!("minimilter-{tag}-{}-{n:x}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn need(program: &str) {
    assert!(
        Path::new(program).exists(),
        "needs {program} (scripts/install-test-deps.sh installs opendkim, opendkim-tools and python3-dkim)"
    );
}

/// opendkim in the foreground, killed (by its process id) and its directory
/// removed on drop.
struct OpenDkim {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Drop for OpenDkim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What an administrator writes to sign mail of example.com with selector
/// `test`: the signing key from opendkim-genkey, a local socket.
fn start_opendkim() -> OpenDkim {
    need(OPENDKIM);
    need(GENKEY);
    let dir = temp_dir("opendkim");
    let o = Command::new(GENKEY)
        .args(["-b", "2048", "-d", "example.com", "-s", "test", "-D"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "opendkim-genkey: {o:?}");
    let socket = dir.join("opendkim.sock");
    let conf = dir.join("opendkim.conf");
    std::fs::write(
        &conf,
        format!(
            "Syslog no\n\
             Mode s\n\
             Domain example.com\n\
             Selector test\n\
             KeyFile {key}\n\
             Canonicalization relaxed/simple\n\
             Socket local:{socket}\n\
             PidFile {pid}\n\
             UMask 007\n\
             # The key lives under the world-writable temporary directory.\n\
             RequireSafeKeys false\n",
            key = dir.join("test.private").display(),
            socket = socket.display(),
            pid = dir.join("opendkim.pid").display(),
        ),
    )
    .unwrap();
    let child = Command::new(OPENDKIM)
        .arg("-f")
        .arg("-x")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut d = OpenDkim { child, dir, socket };
    let started = Instant::now();
    while !d.socket.exists() {
        if let Some(status) = d.child.try_wait().unwrap() {
            panic!("opendkim exited before listening: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "opendkim did not create its socket within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

/// The public key record opendkim-genkey wrote (`test.txt`), as the TXT
/// data a DNS lookup of `test._domainkey.example.com` would return.
fn dns_record(dir: &Path) -> String {
    let zone = std::fs::read_to_string(dir.join("test.txt")).unwrap();
    // `test._domainkey IN TXT ( "v=DKIM1; ..." "..." ) ; comment`
    let (_, strings) = zone.split_once('(').expect("a TXT record in test.txt");
    let (strings, _) = strings.split_once(')').expect("a TXT record in test.txt");
    strings.split('"').skip(1).step_by(2).collect()
}

/// Verifies `message` with Python's dkim module, the key served by a
/// `dnsfunc` for the one name it may ask for. Returns the verifier's output.
fn verify(message: &[u8], record: &str) -> Output {
    need(PYTHON);
    let script = r#"
import sys, dkim
record = sys.argv[1].encode()
def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    assert name.rstrip('.') == 'test._domainkey.example.com', name
    return record
message = sys.stdin.buffer.read()
print('verified' if dkim.verify(message, dnsfunc=dnsfunc) else 'failed')
"#;
    let mut child = Command::new(PYTHON)
        .args(["-c", script, record])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(message).unwrap();
    child.wait_with_output().unwrap()
}

const MESSAGE: &str = concat!(
    "From: Alice <alice@example.com>\r\n",
    "To: Bob <bob@example.org>\r\n",
    "Subject: Quarterly report, with a subject long enough\r\n",
    " to be folded over two lines\r\n",
    "Date: Sun, 06 Dec 2026 10:00:00 +0000\r\n",
    "Message-ID: <report-1@example.com>\r\n",
    "\r\n",
    "Hello Bob,\r\n",
    "\r\n",
    "the report is attached.\r\n",
);

#[test]
#[ignore = "needs opendkim"]
fn opendkim_signature_added_through_check_verifies() {
    let d = start_opendkim();
    let msg_file = d.dir.join("message.eml");
    std::fs::write(&msg_file, MESSAGE).unwrap();
    // The README's example, word for word but for the paths.
    let o = Command::new(env!("CARGO_BIN_EXE_minimilter"))
        .arg("check")
        .arg(format!("unix:{}", d.socket.display()))
        .arg(&msg_file)
        .args(["--from", "alice@example.com", "--rcpt", "bob@example.org"])
        .arg("--show-message")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("verdict: accept (delivered)"), "{out}");

    // opendkim negotiates leading-space handling and sends its value with
    // the space after the colon: shown once, not twice.
    assert!(out.contains("HEADER_LEADING_SPACE"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let sig = lines
        .iter()
        .position(|l| l.contains("+ insert header at 0: DKIM-Signature:"))
        .unwrap_or_else(|| panic!("no DKIM-Signature added:\n{out}"));
    let prefix = format!(
        "{}+ insert header at 0: DKIM-Signature: v=1; ",
        " ".repeat(46)
    );
    assert!(lines[sig].starts_with(&prefix), "{out}");
    // Its continuation lines start under the first line's text, each with
    // the tab opendkim folds with, up to the verdict.
    let continuation: Vec<&str> = lines[sig + 1..]
        .iter()
        .take_while(|l| !l.starts_with("verdict: "))
        .copied()
        .collect();
    assert!(continuation.len() >= 2, "{out}");
    let indent = format!("{}\t", " ".repeat(48));
    for l in &continuation {
        assert!(l.starts_with(&indent), "continuation {l:?} in\n{out}");
    }
    assert!(
        continuation.iter().any(|l| l.contains("b=")),
        "the signature's b= tag is on a continuation line:\n{out}"
    );

    // The message as delivered carries a signature that verifies.
    let delivered = out
        .split_once("--- message as delivered\n")
        .map(|(_, m)| m)
        .unwrap_or_else(|| panic!("no delivered message:\n{out}"));
    assert!(
        delivered.starts_with(
            "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=example.com; s=test;\r\n\t"
        ),
        "{delivered}"
    );
    let record = dns_record(&d.dir);
    let v = verify(delivered.as_bytes(), &record);
    assert_eq!(
        String::from_utf8_lossy(&v.stdout),
        "verified\n",
        "{v:?}\n{delivered}"
    );
    // The verifier does fail a changed body (so "verified" means something).
    let tampered = delivered.replace("the report is attached.", "the report is attacked.");
    let v = verify(tampered.as_bytes(), &record);
    assert_eq!(String::from_utf8_lossy(&v.stdout), "failed\n", "{v:?}");
}
