//! CPU per MB of armor: the streaming payload reader against `base64 -d` on
//! the same armor's base64 lines, measured in the same run.
//!
//! ```text
//! cargo run --release -p pgp-milter --example payload_throughput -- message.asc
//! ```
//!
//! The armored file is read into memory first (no I/O in the timing) and
//! fed in 64 KiB chunks, as the MIME reader hands over decoded data. Each
//! side runs five times; the fastest run counts (the machine is shared).
//! `base64 -d` gets the data lines only (what it can decode), from a
//! temporary file to /dev/null, and its time includes starting the process
//! (about a millisecond).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgp_milter::payload::{Encoding, PayloadLimits, PayloadReader};

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: payload_throughput FILE.asc");
    let armor = std::fs::read(&path).expect("readable file");
    let mb = armor.len() as f64 / 1e6;
    let runs = 5;

    let mut ours = Duration::MAX;
    let mut mark = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let mut r = PayloadReader::new(Encoding::Armored, &PayloadLimits::default());
        for chunk in armor.chunks(64 << 10) {
            r.feed(chunk).expect("the reader accepts the message");
        }
        let p = r.finish().expect("the reader accepts the message");
        ours = ours.min(start.elapsed());
        mark = p.buffer_high_water;
    }

    // The data lines only: what base64 -d can decode.
    let text = String::from_utf8_lossy(&armor);
    let body: String = text
        .lines()
        .skip_while(|l| !l.trim().is_empty())
        .filter(|l| !l.starts_with('-') && !l.starts_with('='))
        .flat_map(|l| [l.trim(), "\n"])
        .collect();
    let tmp = std::env::temp_dir().join(format!("payload-throughput-{}.b64", std::process::id()));
    std::fs::write(&tmp, body).expect("temporary file");
    let mut theirs = Duration::MAX;
    for _ in 0..runs {
        let input = std::fs::File::open(&tmp).expect("temporary file");
        let start = Instant::now();
        let status = Command::new("base64")
            .arg("-d")
            .stdin(input)
            .stdout(Stdio::null())
            .status()
            .expect("base64 (coreutils) installed");
        theirs = theirs.min(start.elapsed());
        assert!(status.success());
    }
    let _ = std::fs::remove_file(&tmp);

    let per_mb = |d: Duration| d.as_secs_f64() * 1e3 / mb;
    println!("armor: {mb:.1} MB ({path})");
    println!(
        "payload reader: {:.2} ms/MB ({:.0} MB/s), buffers {mark} octets",
        per_mb(ours),
        mb / ours.as_secs_f64()
    );
    println!(
        "base64 -d:      {:.2} ms/MB ({:.0} MB/s)",
        per_mb(theirs),
        mb / theirs.as_secs_f64()
    );
    println!("ratio: {:.2}", ours.as_secs_f64() / theirs.as_secs_f64());
}
