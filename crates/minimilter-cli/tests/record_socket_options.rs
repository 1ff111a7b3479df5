//! `minimilter record`'s listening-socket options: `--socket-group` and
//! `--socket-owner` set the socket's group and owner (with `--socket-mode`,
//! who may connect), and a name that does not exist is a clear error before
//! anything is done. (Postfix reaching the proxy through such a socket is in
//! record_postfix_socket.rs.)

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use support::scratch;

#[test]
fn an_unknown_socket_group_or_owner_is_a_clear_error_naming_the_option() {
    let tmp = scratch("sockopt-bad");
    for (opt, name) in [
        ("--socket-group", "no-such-group-x"),
        ("--socket-owner", "no-such-user-x"),
    ] {
        let listen = tmp.join("proxy.sock");
        let out = Command::new(support::minimilter())
            .arg("record")
            .arg("--listen")
            .arg(format!("unix:{}", listen.display()))
            .args(["--to", "unix:/nonexistent/m.sock", "--dir"])
            .arg(tmp.join("t"))
            .args([opt, name])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{opt} {name}: {err}");
        assert!(
            err.contains(opt) && err.contains(name),
            "names the option and value: {err}"
        );
        assert!(!listen.exists(), "no socket left behind");
        assert!(!tmp.join("t").exists(), "no transcript directory made");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[ignore = "needs root (chown of the socket)"]
#[test]
fn the_socket_gets_the_group_owner_and_mode_asked_for() {
    // /proc/self belongs to the process's effective user.
    assert_eq!(
        std::fs::metadata("/proc/self").unwrap().uid(),
        0,
        "run as root: only root may give a socket to another owner"
    );
    let tmp = scratch("sockopt");
    let listen = tmp.join("proxy.sock");
    let proxy = support::Proxy::start(
        &listen,
        "unix:/nonexistent/m.sock",
        &tmp.join("t"),
        &[
            "--socket-mode",
            "640",
            "--socket-group",
            "4242",
            "--socket-owner",
            "4343",
        ],
    );
    let meta = std::fs::metadata(&listen).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(meta.gid(), 4242);
    assert_eq!(meta.uid(), 4343);
    drop(proxy);
    let _ = std::fs::remove_dir_all(&tmp);
}
