//! Whether this process may give its unix sockets the configured owner and
//! group. chown(2) lets a process without CAP_CHOWN (root has it) keep only
//! its own user, and choose only among its own groups; anything else
//! failed once the socket was bound, as `changing owner of PATH: Operation
//! not permitted`, naming neither key, after `--check-config` had passed.
//! Checked with the names instead, so the error names the key.

/// Who this process is, as far as chown(2) is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// Effective user id.
    pub euid: u32,
    /// Effective and supplementary group ids.
    pub groups: Vec<u32>,
    /// Holds CAP_CHOWN (root does, as a rule).
    pub cap_chown: bool,
}

impl Credentials {
    /// This process's. Where the capability set cannot be read (not
    /// Linux), CAP_CHOWN is assumed for root only.
    pub(crate) fn current() -> Credentials {
        use nix::unistd::{getegid, geteuid, getgroups};
        let euid = geteuid().as_raw();
        let mut groups = vec![getegid().as_raw()];
        groups.extend(getgroups().unwrap_or_default().iter().map(|g| g.as_raw()));
        let cap_chown = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| cap_chown_in_status(&s))
            .unwrap_or(euid == 0);
        Credentials {
            euid,
            groups,
            cap_chown,
        }
    }

    /// Why a socket cannot be given to user `name` (`uid`), if it cannot.
    pub(crate) fn may_own(&self, uid: u32, name: &str) -> Result<(), String> {
        if self.cap_chown || uid == self.euid {
            return Ok(());
        }
        Err(format!(
            "only root (or CAP_CHOWN) can give a socket to another user than its own; this \
             process runs as uid {}, not as {name:?} (uid {uid})",
            self.euid
        ))
    }

    /// Why a socket cannot be given group `name` (`gid`), if it cannot.
    pub(crate) fn may_group(&self, gid: u32, name: &str) -> Result<(), String> {
        if self.cap_chown || self.groups.contains(&gid) {
            return Ok(());
        }
        Err(format!(
            "this process (uid {}) is not in group {name:?} (gid {gid}) and lacks CAP_CHOWN, \
             so it cannot give a socket that group (run it with that group, e.g. systemd's \
             Group=)",
            self.euid
        ))
    }
}

/// Bit 0 (CAP_CHOWN) of the `CapEff:` line of /proc/self/status.
fn cap_chown_in_status(status: &str) -> Option<bool> {
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    let bits = u64::from_str_radix(line.trim(), 16).ok()?;
    Some(bits & 1 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_cap_chown_only_the_own_user_and_own_groups() {
        let nobody = Credentials {
            euid: 65534,
            groups: vec![65534, 115],
            cap_chown: false,
        };
        assert_eq!(nobody.may_own(65534, "nobody"), Ok(()));
        let e = nobody.may_own(0, "root").unwrap_err();
        assert!(
            e.ends_with("this process runs as uid 65534, not as \"root\" (uid 0)"),
            "{e}"
        );
        assert_eq!(nobody.may_group(115, "postfix"), Ok(()));
        let e = nobody.may_group(7, "lp").unwrap_err();
        assert!(e.contains("not in group \"lp\" (gid 7)"), "{e}");
        let root = Credentials {
            euid: 0,
            groups: vec![0],
            cap_chown: true,
        };
        assert_eq!(root.may_own(1000, "u"), Ok(()));
        assert_eq!(root.may_group(7, "lp"), Ok(()));
    }

    #[test]
    fn cap_chown_is_read_from_the_status_file() {
        let status = |cap: &str| format!("Name:\tx\nCapInh:\t0\nCapEff:\t{cap}\nCapBnd:\t1\n");
        assert_eq!(cap_chown_in_status(&status("000001ffffffffff")), Some(true));
        assert_eq!(
            cap_chown_in_status(&status("0000000000000000")),
            Some(false)
        );
        assert_eq!(
            cap_chown_in_status(&status("0000000000000002")),
            Some(false)
        );
        assert_eq!(cap_chown_in_status("Name:\tx\n"), None);
    }
}
