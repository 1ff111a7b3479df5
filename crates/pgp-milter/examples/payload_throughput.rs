//! CPU per MB of armor: the streaming payload reader against `base64 -d` on
//! the same armor's base64 lines, measured in the same run.
//!
//! ```text
//! cargo run --release -p pgp-milter --example payload_throughput -- message.asc
//! ```
//!
//! The armored file is read into memory first (no I/O in the timing) and
//! fed in 64 KiB chunks, as the MIME reader hands over decoded data.
//! `base64 -d` gets the data lines only (what it can decode), from a
//! temporary file to /dev/null. Both sides run as often as it takes to
//! process 500 MB (at least three times) and are charged
//! CPU time (user + system, from `/proc/self/stat`: this process's own,
//! and its waited-for children's for `base64`), so a busy shared machine
//! slows the wall clock but not the comparison.

use std::process::{Command, Stdio};
use std::time::Duration;

use pgp_milter::payload::{Encoding, PayloadLimits, PayloadReader};

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: payload_throughput FILE.asc");
    let armor = std::fs::read(&path).expect("readable file");
    let mb = armor.len() as f64 / 1e6;
    // Enough runs for 500 MB in total: CPU time comes in 10 ms ticks.
    // PAYLOAD_RUNS overrides (1 under callgrind, to count instructions).
    let runs = std::env::var("PAYLOAD_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or((500_000_000 / armor.len().max(1)).clamp(3, 20_000) as u32);

    let mut mark = 0;
    let start = cpu();
    for _ in 0..runs {
        let mut r = PayloadReader::new(Encoding::Armored, &PayloadLimits::default());
        for chunk in armor.chunks(64 << 10) {
            r.feed(chunk).expect("the reader accepts the message");
        }
        let p = r.finish().expect("the reader accepts the message");
        mark = p.buffer_high_water;
    }
    let ours = (cpu().0 - start.0) / runs;

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
    // base64 -d costs a process start each time: fewer runs for small files.
    let their_runs = runs.min(200);
    let start = cpu();
    for _ in 0..their_runs {
        let input = std::fs::File::open(&tmp).expect("temporary file");
        let status = Command::new("base64")
            .arg("-d")
            .stdin(input)
            .stdout(Stdio::null())
            .status()
            .expect("base64 (coreutils) installed");
        assert!(status.success());
    }
    let theirs = (cpu().1 - start.1) / their_runs;
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
    println!(
        "per message: payload reader {:.1} µs, base64 -d {:.1} µs (with its process start)",
        ours.as_secs_f64() * 1e6,
        theirs.as_secs_f64() * 1e6
    );
    println!("ratio: {:.2}", ours.as_secs_f64() / theirs.as_secs_f64());
}

/// CPU time (user + system) of this process and of its waited-for
/// children, from `/proc/self/stat` (clock ticks of 10 ms).
fn cpu() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("Linux /proc");
    // Fields after the parenthesized command name; utime is field 14.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let tick = |t: u64| Duration::from_millis(t * 10);
    // rest[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17.
    (tick(f[11] + f[12]), tick(f[13] + f[14]))
}
