//! The last good list data on disk (`[mailman] state_dir`), so that a
//! restart while Mailman's API is down still knows the list domains, and
//! still serves the lists within `max_stale` of when they were read.
//!
//! One JSON file, Mailman's own answers ([`RawSnapshot`]: the domains and
//! site bans, every list read so far, each with its age, and the addresses
//! known to name no list), the time it was written and the API's URL;
//! written whole to a temporary file and renamed over the old one, so a
//! crash never leaves half a file. Files written before lists were read
//! one by one (no ages, no `partial`) read as one whole read.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::members::MemberInfo;
use super::snapshot::RawSnapshot;

/// The file's name in the state directory.
pub const FILE_NAME: &str = "mailman-rest-lists.json";
/// The membership answers' file in the state directory.
pub const MEMBERS_FILE_NAME: &str = "mailman-rest-members.json";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Saved<T> {
    version: u32,
    /// The API the data came from: another API's data is not used.
    url: String,
    /// Seconds since the Unix epoch when the data was read.
    read_at: u64,
    data: T,
}

/// The state file in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The data kept in `dir` for the API at `url`, and its age; None if there
/// is none or it cannot be used (logged).
pub(super) fn load(dir: &Path, url: &str) -> Option<(Duration, RawSnapshot)> {
    let file = path(dir);
    let text = match std::fs::read(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %file.display(), "cannot read the kept list data: {e}");
            return None;
        }
    };
    let saved: Saved<RawSnapshot> = match serde_json::from_slice(&text) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(file = %file.display(), "kept list data unreadable, ignored: {e}");
            return None;
        }
    };
    if saved.version != VERSION || saved.url != url {
        tracing::info!(file = %file.display(), "kept list data is for another API or version; ignored");
        return None;
    }
    let read_at = UNIX_EPOCH + Duration::from_secs(saved.read_at);
    // A clock set back makes the data look new: take it as read now.
    let age = SystemTime::now()
        .duration_since(read_at)
        .unwrap_or(Duration::ZERO);
    Some((age, saved.data))
}

/// Keeps `data`, read from `url` just now, in `dir`.
pub(super) fn save(dir: &Path, url: &str, data: &RawSnapshot) -> std::io::Result<()> {
    let read_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let saved = Saved {
        version: VERSION,
        url: url.to_owned(),
        read_at,
        data,
    };
    let bytes = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let file = path(dir);
    let tmp = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &file)
}

/// One kept membership answer: list_id, sender, its age in seconds when
/// kept, and the answer.
pub(super) type KeptAnswer = (String, String, u64, MemberInfo);

/// The membership answers kept in `dir` for `url`, each with its age now.
pub(super) fn load_members(dir: &Path, url: &str) -> Vec<(String, String, Duration, MemberInfo)> {
    let file = dir.join(MEMBERS_FILE_NAME);
    let Ok(text) = std::fs::read(&file) else {
        return Vec::new();
    };
    let saved: Saved<Vec<KeptAnswer>> = match serde_json::from_slice(&text) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(file = %file.display(), "kept membership answers unreadable, ignored: {e}");
            return Vec::new();
        }
    };
    if saved.version != VERSION || saved.url != url {
        return Vec::new();
    }
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH + Duration::from_secs(saved.read_at))
        .unwrap_or(Duration::ZERO);
    saved
        .data
        .into_iter()
        .map(|(l, s, age, info)| (l, s, since + Duration::from_secs(age), info))
        .collect()
}

/// Keeps the membership answers `data` (ages as of now) in `dir`.
pub(super) fn save_members(dir: &Path, url: &str, data: Vec<KeptAnswer>) -> std::io::Result<()> {
    let read_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let saved = Saved {
        version: VERSION,
        url: url.to_owned(),
        read_at,
        data,
    };
    let bytes = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{MEMBERS_FILE_NAME}.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(MEMBERS_FILE_NAME))
}
