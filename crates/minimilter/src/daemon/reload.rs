//! SIGHUP and the configuration file: the file is read again with the
//! same checks as at start-up; a file that no longer loads is reported and
//! the running configuration stays. Settings the milter can swap while
//! running (its policy) are put in force and named; the others (sockets,
//! where data comes from) are named as taking effect after a restart.

use std::collections::BTreeMap;

/// `key = value` lines as `(key, value)` in order.
fn pairs(lines: &[String]) -> Vec<(&str, &str)> {
    lines.iter().filter_map(|l| l.split_once(" = ")).collect()
}

/// One setting that differs between the running state and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// The key, as in `--check-config` (`server.` for `[server]`'s).
    pub(crate) key: String,
    /// `key: old -> new`.
    pub(crate) text: String,
}

/// What differs between the settings in force and those the file gives
/// now; empty when nothing does.
pub(crate) fn changes(running: &[String], now: &[String]) -> Vec<Change> {
    let old: BTreeMap<&str, &str> = pairs(running).into_iter().collect();
    let new: BTreeMap<&str, &str> = pairs(now).into_iter().collect();
    let mut out = Vec::new();
    let mut push = |key: &str, text: String| {
        out.push(Change {
            key: key.to_owned(),
            text,
        })
    };
    for (key, value) in pairs(now) {
        match old.get(key) {
            Some(was) if *was == value => {}
            Some(was) => push(key, format!("{key}: {was} -> {value}")),
            None => push(key, format!("{key}: (default) -> {value}")),
        }
    }
    for (key, was) in pairs(running) {
        if !new.contains_key(key) {
            push(key, format!("{key}: {was} -> (default)"));
        }
    }
    out
}

/// The settings in force after `applied` were taken from `now`: `now`'s
/// line for an applied key, the running line for any other.
pub(crate) fn merge(running: &[String], now: &[String], applied: &[Change]) -> Vec<String> {
    let is_applied = |key: &str| applied.iter().any(|c| c.key == key);
    let key_of = |line: &String| line.split_once(" = ").map(|(k, _)| k.to_owned());
    let mut out: Vec<String> = running
        .iter()
        .filter(|l| key_of(l).is_none_or(|k| !is_applied(&k)))
        .cloned()
        .collect();
    out.extend(
        now.iter()
            .filter(|l| key_of(l).is_some_and(|k| is_applied(&k)))
            .cloned(),
    );
    out
}

/// Keys of the milter's part of the file whose values differ and that
/// [`changes`] did not already name (a setting the milter does not print,
/// such as a list of exemptions), as `key: old -> new` in TOML.
pub(crate) fn table_changes(old: &toml::Table, new: &toml::Table, known: &[Change]) -> Vec<Change> {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&toml::Value>| v.map_or_else(|| "(unset)".to_owned(), |v| v.to_string());
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k) && !known.iter().any(|c| c.key == **k))
        .map(|k| Change {
            key: k.clone(),
            text: format!("{k}: {} -> {}", show(old.get(k)), show(new.get(k))),
        })
        .collect()
}

/// `old` with the keys of `applied` taken from `new`.
pub(crate) fn merge_table(old: &toml::Table, new: &toml::Table, applied: &[Change]) -> toml::Table {
    let mut out = old.clone();
    for c in applied {
        match new.get(&c.key) {
            Some(v) => out.insert(c.key.clone(), v.clone()),
            None => out.remove(&c.key),
        };
    }
    out
}

/// The sentence logged for a re-read file.
pub(crate) fn sentence(file: &str, applied: &[Change], waiting: &[Change]) -> String {
    let join = |c: &[Change]| {
        c.iter()
            .map(|c| c.text.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    match (applied.is_empty(), waiting.is_empty()) {
        (true, true) => format!("{file}: no setting changed"),
        (false, true) => format!("{file}: applied: {}", join(applied)),
        (true, false) => format!(
            "{file}: changed, applying after a restart: {}",
            join(waiting)
        ),
        (false, false) => format!(
            "{file}: applied: {}; changed, applying after a restart: {}",
            join(applied),
            join(waiting)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn texts(c: &[Change]) -> Vec<&str> {
        c.iter().map(|c| c.text.as_str()).collect()
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
        let c = changes(&running, &now);
        assert_eq!(
            texts(&c),
            [
                "require: \"encrypted\" -> \"encrypted-or-signed\"",
                "y: (default) -> 2",
                "x: 1 -> (default)"
            ]
        );
        assert_eq!(c[2].key, "x");
        assert!(changes(&running, &running).is_empty());
        assert_eq!(
            sentence("/etc/m.toml", &[], &[]),
            "/etc/m.toml: no setting changed"
        );
        assert_eq!(
            sentence("/etc/m.toml", &c[..1], &c[1..2]),
            "/etc/m.toml: applied: require: \"encrypted\" -> \"encrypted-or-signed\"; \
             changed, applying after a restart: y: (default) -> 2"
        );
    }

    #[test]
    fn only_applied_keys_take_the_new_value() {
        let running = lines(&["a = 1", "b = 1", "c = 1"]);
        let now = lines(&["a = 2", "b = 2", "d = 2"]);
        let c = changes(&running, &now);
        let applied: Vec<Change> = c.iter().filter(|c| c.key != "b").cloned().collect();
        let merged = merge(&running, &now, &applied);
        // `c` was removed (applied), `d` added (applied), `b` still old.
        assert_eq!(merged, lines(&["b = 1", "a = 2", "d = 2"]));
        let again = changes(&merged, &now);
        assert_eq!(texts(&again), ["b: 1 -> 2"]);
    }

    #[test]
    fn file_keys_no_setting_names_are_compared_as_written() {
        let old: toml::Table = toml::from_str("a = [\"x\"]\nb = 1\n").unwrap();
        let new: toml::Table = toml::from_str("a = [\"x\", \"y\"]\nb = 2\nc = true\n").unwrap();
        let known = changes(&lines(&["b = 1"]), &lines(&["b = 2"]));
        let c = table_changes(&old, &new, &known);
        assert_eq!(
            texts(&c),
            ["a: [\"x\"] -> [\"x\", \"y\"]", "c: (unset) -> true"]
        );
        assert_eq!(merge_table(&old, &new, &c[..1]).get("a"), new.get("a"));
        assert_eq!(merge_table(&old, &new, &c[..1]).get("c"), None);
    }
}
