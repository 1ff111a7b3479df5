//! The transcript directory: one file per transaction, grouped into one
//! subdirectory per rotation period (named by the period's start, UTC), with
//! the total size held under a limit by deleting the oldest files first.
//!
//! File names start with the connection's start time in milliseconds,
//! zero-padded, then the connection and transaction numbers, so their
//! numbers give the time order and no index file is needed:
//! the store rebuilds its list from the directory when it opens. A file is
//! written under a temporary name and renamed into place, so a reader
//! (`replay`) never sees half a transcript.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::transcript::recorder::Finished;

/// Most old transcripts deleted to make room for one new one on a full
/// file system.
const MAX_EVICTIONS_PER_WRITE: u32 = 64;

/// The suffix of transcript files.
pub const SUFFIX: &str = ".jsonl";

/// The directory and its bookkeeping.
pub struct Store {
    dir: PathBuf,
    max_bytes: u64,
    rotate_secs: u64,
    files: VecDeque<(PathBuf, u64)>,
    total: u64,
    /// The period directory last created, with its start (a `mkdir` and a
    /// date per file is wasted work).
    current_period: Option<(u64, PathBuf)>,
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time in seconds (proleptic Gregorian, UTC).
pub fn utc_stamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

impl Store {
    /// Opens (creating if needed) `dir`, and lists the transcripts already
    /// there so the size limit counts them.
    pub fn open(dir: &Path, max_bytes: u64, rotate_secs: u64) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating transcript directory {}", dir.display()))?;
        // A directory that exists but cannot be written to (read-only, a
        // full disk, permissions) would relay mail and record nothing:
        // say so at start instead.
        let probe = dir.join(".minimilter-write-test.tmp");
        let wrote = std::fs::write(&probe, b"x");
        let _ = std::fs::remove_file(&probe);
        match wrote {
            // Full: writing makes room by deleting the oldest transcripts.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) =>
            {
                tracing::warn!(dir = %dir.display(), "transcript directory full: {e}");
            }
            r => r.with_context(|| {
                format!("cannot write to the transcript directory {}", dir.display())
            })?,
        }
        let mut found = Vec::new();
        for period in read_dir_sorted(dir)? {
            if !period.is_dir() {
                continue;
            }
            for f in read_dir_sorted(&period)? {
                if f.to_string_lossy().ends_with(SUFFIX) {
                    let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
                    found.push((f, len));
                }
            }
        }
        let total = found.iter().map(|(_, l)| l).sum();
        let mut store = Store {
            dir: dir.to_owned(),
            max_bytes,
            rotate_secs: rotate_secs.max(1),
            files: found.into(),
            total,
            current_period: None,
        };
        store.evict();
        Ok(store)
    }

    /// Bytes of transcripts in the directory.
    #[cfg(test)]
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Writes one transcript; `now_unix_ms` picks the rotation period.
    pub fn write(&mut self, f: &Finished, now_unix_ms: u64) -> anyhow::Result<PathBuf> {
        let now = now_unix_ms / 1000;
        let period_start = now - now % self.rotate_secs;
        let period = match &self.current_period {
            Some((start, p)) if *start == period_start => p,
            _ => {
                let p = self.dir.join(utc_stamp(period_start));
                std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
                &self.current_period.insert((period_start, p)).1
            }
        };
        // A name already taken: a later SMTP session on the same milter
        // connection (after `K`) with no transaction either, whose
        // connection-only transcript is transaction 0 too. It gets `-2`,
        // `-3`, ... rather than replace the earlier one.
        let stem = format!(
            "{:013}-c{}-t{}",
            f.started_unix_ms, f.connection, f.transaction
        );
        let mut name = format!("{stem}{SUFFIX}");
        let mut n = 1u32;
        while period.join(&name).exists() {
            n += 1;
            name = format!("{stem}-{n}{SUFFIX}");
        }
        let path = period.join(&name);
        let period = period.clone();
        let tmp = period.join(format!(".{name}.tmp"));
        // A file system that fills up before `max_bytes` is reached: the
        // oldest transcripts make room, as the limit would have deleted
        // them (bounded: a disk filled by others may not be freed by us).
        let mut freed = 0;
        loop {
            match std::fs::write(&tmp, f.text.as_bytes()) {
                Ok(()) => break,
                Err(e) => {
                    // Never leave a half-written temporary file behind.
                    let _ = std::fs::remove_file(&tmp);
                    let full = matches!(
                        e.kind(),
                        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                    );
                    if !full || freed >= MAX_EVICTIONS_PER_WRITE || !self.evict_oldest() {
                        return Err(e).with_context(|| format!("writing {}", tmp.display()));
                    }
                    freed += 1;
                    // Making room may have removed the (then empty) period
                    // directory.
                    std::fs::create_dir_all(&period)
                        .with_context(|| format!("creating {}", period.display()))?;
                    if self.current_period.is_none() {
                        self.current_period = Some((period_start, period.clone()));
                    }
                }
            }
        }
        if freed > 0 {
            tracing::warn!(
                deleted = freed,
                "file system full before --max-bytes: deleted the oldest transcripts to make room"
            );
        }
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("renaming to {}", path.display()));
        }
        let len = f.text.len() as u64;
        self.files.push_back((path.clone(), len));
        self.total += len;
        self.evict();
        Ok(path)
    }

    /// Deletes the oldest transcripts until the total is within the limit.
    fn evict(&mut self) {
        while self.total > self.max_bytes {
            if !self.evict_oldest() {
                break;
            }
        }
    }

    /// Deletes the oldest transcript (false if there is none).
    fn evict_oldest(&mut self) -> bool {
        let Some((path, len)) = self.files.pop_front() else {
            return false;
        };
        self.total -= len;
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), "cannot delete old transcript: {e}");
        }
        if let Some(parent) = path.parent() {
            // Removes the period's directory once it is empty; fails
            // harmlessly while it is not.
            if std::fs::remove_dir(parent).is_ok()
                && self.current_period.as_ref().map(|(_, p)| p.as_path()) == Some(parent)
            {
                self.current_period = None;
            }
        }
        true
    }
}

/// The entries of `dir` in time order: period directories by name, and
/// transcripts by their numbers (start time, connection, transaction), so
/// that `-t10` comes after `-t9` although it sorts before it as text.
fn read_dir_sorted(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort_by_cached_key(|p| (order_key(p), p.clone()));
    Ok(v)
}

/// `(start ms, connection, transaction, repeat)` of a name
/// `MS-cN-tN[-R].jsonl`; names of another form (period directories) sort
/// by name, before them.
fn order_key(p: &Path) -> Option<(u64, u64, u64, u64)> {
    let name = p.file_name()?.to_str()?.strip_suffix(SUFFIX)?;
    let mut parts = name.split('-');
    let ms = parts.next()?.parse().ok()?;
    let c = parts.next()?.strip_prefix('c')?.parse().ok()?;
    let t = parts.next()?.strip_prefix('t')?.parse().ok()?;
    let repeat = match parts.next() {
        Some(r) => r.parse().ok()?,
        None => 1,
    };
    parts.next().is_none().then_some((ms, c, t, repeat))
}

/// Every transcript under `dir` (its period subdirectories, or `dir`
/// itself), oldest first.
pub fn list_transcripts(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in read_dir_sorted(dir)? {
        if p.is_dir() {
            out.extend(
                read_dir_sorted(&p)?
                    .into_iter()
                    .filter(|f| is_transcript(f)),
            );
        } else if is_transcript(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

fn is_transcript(p: &Path) -> bool {
    p.file_name()
        .map(|n| n.to_string_lossy())
        .is_some_and(|n| n.ends_with(SUFFIX) && !n.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::Verdict;

    fn finished(ms: u64, conn: u64, size: usize) -> Finished {
        Finished {
            connection: conn,
            transaction: 1,
            started_unix_ms: ms,
            text: "x".repeat(size),
            verdict: Verdict {
                name: "accept".into(),
                at: None,
                reply: None,
            },
        }
    }

    #[test]
    fn stamps_are_utc_dates() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_796_573_045), "20261206T160405Z");
    }

    #[test]
    fn oldest_go_first_and_periods_rotate() {
        let dir = std::env::temp_dir().join(format!("mm-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Store::open(&dir, 250, 60).unwrap();
        let a = s.write(&finished(1_000, 1, 100), 1_000).unwrap();
        let b = s.write(&finished(2_000, 2, 100), 2_000).unwrap();
        // A minute later: a new period directory.
        let c = s.write(&finished(61_000, 3, 100), 61_000).unwrap();
        assert_ne!(a.parent(), c.parent());
        assert!(!a.exists(), "oldest deleted to stay within 250 bytes");
        assert!(b.exists() && c.exists());
        assert_eq!(s.total_bytes(), 200);
        assert_eq!(list_transcripts(&dir).unwrap(), vec![b.clone(), c.clone()]);
        // Reopening counts what is there.
        let mut s = Store::open(&dir, 250, 60).unwrap();
        assert_eq!(s.total_bytes(), 200);
        s.write(&finished(62_000, 4, 100), 62_000).unwrap();
        assert!(!b.exists());
        assert!(!b.parent().unwrap().exists(), "empty period removed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
