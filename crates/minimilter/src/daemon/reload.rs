//! SIGHUP and the configuration file: the file is read again with the
//! same checks as at start-up; a file that no longer loads is reported and
//! the running configuration stays; settings that differ are named, since
//! they take effect only after a restart (what can be swapped while
//! running, a keyring or a lists file, is the milter's reload hook).

use std::collections::BTreeMap;

/// `key = value` lines as `(key, value)` in order.
fn pairs(lines: &[String]) -> Vec<(&str, &str)> {
    lines.iter().filter_map(|l| l.split_once(" = ")).collect()
}

/// What differs between the settings in force and those the file gives
/// now, one `key: old -> new` each; empty when nothing does.
pub(crate) fn changes(running: &[String], now: &[String]) -> Vec<String> {
    let old: BTreeMap<&str, &str> = pairs(running).into_iter().collect();
    let new: BTreeMap<&str, &str> = pairs(now).into_iter().collect();
    let mut out = Vec::new();
    for (key, value) in pairs(now) {
        match old.get(key) {
            Some(was) if *was == value => {}
            Some(was) => out.push(format!("{key}: {was} -> {value}")),
            None => out.push(format!("{key}: (default) -> {value}")),
        }
    }
    for (key, was) in pairs(running) {
        if !new.contains_key(key) {
            out.push(format!("{key}: {was} -> (default)"));
        }
    }
    out
}

/// The sentence logged for a re-read file.
pub(crate) fn sentence(file: &str, changes: &[String]) -> String {
    if changes.is_empty() {
        format!("{file}: no setting changed")
    } else {
        format!(
            "{file}: changed, applying after a restart: {}",
            changes.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_each_changed_added_and_removed_key() {
        let running = lines(&[
            "require = \"encrypted\"",
            "server.max_connections = 1024",
            "x = 1",
        ]);
        let now = lines(&[
            "require = \"encrypted-or-signed\"",
            "server.max_connections = 1024",
            "y = 2",
        ]);
        assert_eq!(
            changes(&running, &now),
            [
                "require: \"encrypted\" -> \"encrypted-or-signed\"",
                "y: (default) -> 2",
                "x: 1 -> (default)"
            ]
        );
        assert!(changes(&running, &running).is_empty());
        assert_eq!(
            sentence("/etc/m.toml", &[]),
            "/etc/m.toml: no setting changed"
        );
    }
}
