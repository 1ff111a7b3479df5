//! systemd integration without libsystemd: readiness notification
//! (`sd_notify(3)`: `KEY=VALUE` lines in one datagram to the unix socket
//! named by `NOTIFY_SOCKET`, `@` meaning the abstract namespace) and socket
//! activation (`sd_listen_fds(3)`: `LISTEN_FDS` descriptors from 3 on,
//! meant for us when `LISTEN_PID` is our process id).

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::{SocketAddr, UnixDatagram};

use crate::listener::Listener;

/// Sends state changes to the service manager; does nothing when the
/// daemon was not started by one (`NOTIFY_SOCKET` unset).
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// The socket `NOTIFY_SOCKET` names, if any. A name that cannot be
    /// used is logged once and ignored.
    pub fn from_env() -> Notifier {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier { target: None };
        };
        match open(&name.to_string_lossy()) {
            Ok(target) => Notifier {
                target: Some(target),
            },
            Err(e) => {
                tracing::warn!(
                    "NOTIFY_SOCKET {}: {e}; not notifying systemd",
                    name.to_string_lossy()
                );
                Notifier { target: None }
            }
        }
    }

    /// A notifier that never sends (tests, `--check-config`).
    pub fn none() -> Notifier {
        Notifier { target: None }
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines). Best effort:
    /// a manager that went away must not stop the milter.
    pub fn notify(&self, state: &str) {
        if let Some((socket, addr)) = &self.target
            && let Err(e) = socket.send_to_addr(state.as_bytes(), addr)
        {
            tracing::debug!("sd_notify {state:?}: {e}");
        }
    }

    /// Whether a manager listens.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }
}

fn open(name: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    let addr = if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(abstract_name.as_bytes())?
    } else if name.starts_with('/') {
        SocketAddr::from_pathname(name)?
    } else {
        return Err(std::io::Error::other(
            "not an absolute path or @abstract name",
        ));
    };
    Ok((UnixDatagram::unbound()?, addr))
}

/// First descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// How many listening sockets systemd passed to this process (0 when
/// `LISTEN_FDS` is unset or meant for another process).
pub fn passed_socket_count() -> usize {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if !for_us {
        return 0;
    }
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
}

/// Takes the sockets systemd passed as listeners. Must run inside the
/// tokio runtime, once.
pub fn passed_listeners() -> Result<Vec<Listener>, String> {
    let n = passed_socket_count();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let fd = LISTEN_FDS_START + i as i32;
        // SAFETY: sd_listen_fds(3): when LISTEN_PID is this process, the
        // descriptors LISTEN_FDS_START .. +LISTEN_FDS are open sockets the
        // service manager handed to it and nothing else in this process
        // owns them (the standard streams are 0-2, and the shell takes
        // them here once, before opening any file). Owning them is the
        // only way to serve on them; there is no safe constructor from a
        // descriptor number.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let socket = socket2::Socket::from(owned);
        let what = |e: std::io::Error| format!("socket {fd} passed by systemd (LISTEN_FDS): {e}");
        let local = socket.local_addr().map_err(what)?;
        socket.set_nonblocking(true).map_err(what)?;
        let listener = if local.is_unix() {
            let std = std::os::unix::net::UnixListener::from(OwnedFd::from(socket));
            Listener::from_std_unix(std).map_err(what)?
        } else if local.as_socket().is_some() {
            let std = std::net::TcpListener::from(OwnedFd::from(socket));
            Listener::from_std_tcp(std).map_err(what)?
        } else {
            return Err(format!(
                "socket {fd} passed by systemd (LISTEN_FDS): neither a unix nor an inet socket"
            ));
        };
        out.push(listener);
    }
    Ok(out)
}
