//! Binding the listening socket, with the care a unix socket needs: a stale
//! file from a crashed run is removed, a live instance is never stolen from,
//! and mode and ownership are set so the MTA (Postfix runs as `postfix`) can
//! connect.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::spec::SocketSpec;

/// Options for unix-domain sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixSocketOptions {
    /// File mode, e.g. `0o660`. `None` leaves what the umask gives.
    pub mode: Option<u32>,
    /// Owner user name or numeric id.
    pub owner: Option<String>,
    /// Group name or numeric id (e.g. `postfix`).
    pub group: Option<String>,
}

/// Why a socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another process accepts connections on this unix socket.
    #[error("{path}: another milter is already listening on this socket")]
    InUse {
        /// Socket path.
        path: PathBuf,
    },
    /// The path exists and is not a socket; it is left alone.
    #[error("{path}: exists and is not a socket; refusing to remove it")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The directory the socket goes in does not exist.
    #[error("{path}: directory {dir} does not exist")]
    NoDirectory {
        /// Socket path.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// This process may not create files in the socket's directory.
    #[error("{path}: directory {dir} is not writable by this user")]
    NotWritable {
        /// Socket path.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// A user or group name that does not exist.
    #[error("unknown {kind} {name:?}")]
    UnknownId {
        /// "user" or "group".
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// The host name did not resolve.
    #[error("{spec}: host does not resolve to an address")]
    NoAddress {
        /// The socket spec.
        spec: String,
    },
    /// Any other I/O error, with what was being done. The I/O error is the
    /// [`source`](std::error::Error::source), not part of this text, so a
    /// chain report (`anyhow`'s `{:#}`) names it once.
    #[error("{what}")]
    Io {
        /// What failed.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ListenError {
    let what = what.into();
    move |source| ListenError::Io { what, source }
}

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix domain; the path is removed when the listener is dropped if
    /// this process made it (not for a socket systemd passed).
    Unix(UnixListener, Option<UnixSocketGuard>),
}

/// Removes the socket file on drop, if it is still the one we created.
#[derive(Debug)]
pub struct UnixSocketGuard {
    path: PathBuf,
    ino: u64,
}

impl Drop for UnixSocketGuard {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && meta.ino() == self.ino
            && meta.file_type().is_socket()
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// An accepted connection.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// One accepted connection and a description of the peer for logs.
pub enum Accepted {
    /// TCP.
    Tcp(TcpStream, std::net::SocketAddr),
    /// Unix domain.
    Unix(UnixStream),
}

impl Listener {
    /// Binds `spec`. For unix sockets, see [`UnixSocketOptions`].
    pub async fn bind(
        spec: &SocketSpec,
        unix: &UnixSocketOptions,
    ) -> Result<Listener, ListenError> {
        match spec {
            SocketSpec::Unix(path) => bind_unix(path, unix),
            SocketSpec::Inet { host, port, v6 } => {
                let host = match (host.as_str(), v6) {
                    ("" | "*", false) => "0.0.0.0",
                    ("" | "*", true) => "::",
                    (h, _) => h,
                };
                let addrs: Vec<_> = tokio::net::lookup_host((host, *port))
                    .await
                    .map_err(io_err(format!("resolving {spec}")))?
                    .filter(|a| a.is_ipv6() == *v6)
                    .collect();
                let addr = addrs.first().ok_or_else(|| ListenError::NoAddress {
                    spec: spec.to_string(),
                })?;
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(io_err(format!("binding {spec}")))?;
                Ok(Listener::Tcp(l))
            }
        }
    }

    /// The address, for logs (and the port chosen for `inet:...:0` in tests).
    pub fn local_description(&self) -> String {
        self.describe()
    }

    /// Where this listener is bound, as a spec an MTA can be pointed at: a
    /// TCP listener bound to port 0 reports the port the system chose (so a
    /// test can bind a `SocketSpec::Inet` with port 0 and hand the result to
    /// Postfix; the spec parser refuses port 0). An unnamed unix socket is an
    /// error.
    pub fn local_spec(&self) -> std::io::Result<SocketSpec> {
        match self {
            Listener::Tcp(l) => Ok(SocketSpec::from(l.local_addr()?)),
            Listener::Unix(_, Some(g)) => Ok(SocketSpec::Unix(g.path.clone())),
            Listener::Unix(l, None) => match l.local_addr()?.as_pathname() {
                Some(p) => Ok(SocketSpec::Unix(p.to_owned())),
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::AddrNotAvailable,
                    "unnamed unix socket",
                )),
            },
        }
    }

    fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| SocketSpec::from(a).to_string())
                .unwrap_or_else(|_| "inet:?".into()),
            Listener::Unix(_, Some(g)) => format!("unix:{}", g.path.display()),
            Listener::Unix(l, None) => match l.local_addr() {
                Ok(a) => match a.as_pathname() {
                    Some(p) => format!("unix:{}", p.display()),
                    None => "unix:(unnamed)".into(),
                },
                Err(_) => "unix:?".into(),
            },
        }
    }

    /// A TCP socket already bound and listening (socket activation). Must
    /// be called inside the tokio runtime; the socket must be non-blocking.
    pub fn from_std_tcp(l: std::net::TcpListener) -> io::Result<Listener> {
        Ok(Listener::Tcp(TcpListener::from_std(l)?))
    }

    /// A unix socket already bound and listening (socket activation); its
    /// file is left in place at exit, as it belongs to whoever made it.
    pub fn from_std_unix(l: std::os::unix::net::UnixListener) -> io::Result<Listener> {
        Ok(Listener::Unix(UnixListener::from_std(l)?, None))
    }

    /// The bound TCP address, if TCP.
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// Waits for one connection.
    pub async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Tcp(l) => {
                let (s, a) = l.accept().await?;
                let _ = s.set_nodelay(true);
                // A peer that vanished (crash, network cut) without closing is
                // found by keepalive, not by the long idle timeout.
                let keepalive = socket2::TcpKeepalive::new()
                    .with_time(std::time::Duration::from_secs(120))
                    .with_interval(std::time::Duration::from_secs(30))
                    .with_retries(4);
                let _ = socket2::SockRef::from(&s).set_tcp_keepalive(&keepalive);
                Ok(Accepted::Tcp(s, a))
            }
            Listener::Unix(l, _) => Ok(Accepted::Unix(l.accept().await?.0)),
        }
    }
}

/// What a unix socket path holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnixPathState {
    /// Nothing: the socket can be made.
    Free,
    /// A socket nobody answers on, left by a run that did not clean up;
    /// binding removes it.
    Stale,
}

/// Checks, without changing anything, that a unix socket can be made at
/// `path`: its directory exists and is writable, and the path is free or
/// holds a stale socket (not a live one, not another kind of file).
pub fn check_unix_path(path: &Path) -> Result<UnixPathState, ListenError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        _ => {
            return Err(ListenError::NoDirectory {
                path: path.to_owned(),
                dir: dir.to_owned(),
            });
        }
    }
    use nix::unistd::{AccessFlags, access};
    if access(dir, AccessFlags::W_OK | AccessFlags::X_OK).is_err() {
        return Err(ListenError::NotWritable {
            path: path.to_owned(),
            dir: dir.to_owned(),
        });
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => Err(ListenError::InUse {
                    path: path.to_owned(),
                }),
                Err(_) => Ok(UnixPathState::Stale),
            }
        }
        Ok(_) => Err(ListenError::NotASocket {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(UnixPathState::Free),
        Err(e) => Err(io_err(format!("inspecting {}", path.display()))(e)),
    }
}

fn bind_unix(path: &Path, opts: &UnixSocketOptions) -> Result<Listener, ListenError> {
    use std::os::unix::fs::MetadataExt;
    // Names first: a typo must not leave a half-configured socket behind.
    let uid = opts.owner.as_deref().map(lookup_user).transpose()?;
    let gid = opts.group.as_deref().map(lookup_group).transpose()?;
    if check_unix_path(path)? == UnixPathState::Stale {
        tracing::info!(path = %path.display(), "removing stale socket");
        std::fs::remove_file(path)
            .map_err(io_err(format!("removing stale socket {}", path.display())))?;
    }
    // The socket appears at `path` only once it listens, with its mode and
    // owner already set: it is bound and set up under a staging name beside
    // `path`, then hard-linked into place. So whoever sees the file (an MTA
    // started with us, a test, a systemd path unit) can connect at once,
    // never gets ECONNREFUSED from a socket bound but not yet listening, and
    // never finds it with the umask's mode. link(2) fails if `path` was taken
    // meanwhile (another milter starting at the same moment), where a rename
    // would silently replace that milter's socket.
    let staging = staging_name(path);
    let bound_at = staging.as_deref().unwrap_or(path);
    if staging.is_some() {
        // Left only by a daemon of this pid killed between bind and link.
        let _ = std::fs::remove_file(bound_at);
    }
    let listener =
        UnixListener::bind(bound_at).map_err(io_err(format!("binding unix:{}", path.display())))?;
    let staged = RemoveOnDrop(staging.clone());
    if let Some(mode) = opts.mode {
        std::fs::set_permissions(bound_at, std::fs::Permissions::from_mode(mode)).map_err(
            io_err(format!("setting mode {mode:o} on {}", path.display())),
        )?;
    }
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::chown(bound_at, uid, gid)
            .map_err(io_err(format!("changing owner of {}", path.display())))?;
    }
    if let Some(staging) = &staging {
        match std::fs::hard_link(staging, path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(check_unix_path(path).err().unwrap_or(ListenError::InUse {
                    path: path.to_owned(),
                }));
            }
            // A file system without hard links: checked free above.
            Err(_) => std::fs::rename(staging, path)
                .map_err(io_err(format!("binding unix:{}", path.display())))?,
        }
    }
    drop(staged);
    let ino = std::fs::symlink_metadata(path)
        .map_err(io_err(format!("inspecting {}", path.display())))?
        .ino();
    let guard = UnixSocketGuard {
        path: path.to_owned(),
        ino,
    };
    Ok(Listener::Unix(listener, Some(guard)))
}

/// The staging name a unix socket is bound at before it is linked to
/// `path` (`.NAME.PID` in the same directory, so on the same file system);
/// None when that name would not fit a socket address (107 bytes), and the
/// socket is bound at `path` itself.
fn staging_name(path: &Path) -> Option<std::path::PathBuf> {
    let name = path.file_name()?;
    let mut staging = std::ffi::OsString::from(".");
    staging.push(name);
    staging.push(format!(".{}", std::process::id()));
    let staging = path.with_file_name(staging);
    (staging.as_os_str().len() <= 107).then_some(staging)
}

/// Removes a path (if any) when dropped; a missing file is fine.
struct RemoveOnDrop(Option<std::path::PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A user name or numeric id.
pub fn lookup_user(name: &str) -> Result<u32, ListenError> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        _ => Err(ListenError::UnknownId {
            kind: "user",
            name: name.to_owned(),
        }),
    }
}

/// A group name or numeric id.
pub fn lookup_group(name: &str) -> Result<u32, ListenError> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(ListenError::UnknownId {
            kind: "group",
            name: name.to_owned(),
        }),
    }
}
