//! pgp-milter's daemon behind a real Postfix, as the Postfix tests start
//! it: the binary with a configuration file, on a unix socket that one
//! smtpd service consults.

use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::{MilterProcess, Postfix, PostfixBuilder, SmtpService};

/// Starts the pgp-milter binary with `config`, waiting for `socket`; its
/// log (at level info, so every decision is there) goes to `log`.
pub fn start_milter(config: &Path, socket: &Path, log: PathBuf) -> MilterProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgp-milter"));
    cmd.arg("--config").arg(config).env("RUST_LOG", "info");
    MilterProcess::start(cmd, socket, log).unwrap()
}

/// A Postfix whose smtpd service `pgp` consults one pgp-milter.
pub struct BehindPostfix {
    pub postfix: Postfix,
    pub daemon: MilterProcess,
    /// The daemon's configuration file and socket (to start it again).
    pub config: PathBuf,
    pub socket: PathBuf,
    /// The instance's directory.
    pub dir: PathBuf,
}

/// Adds the service `pgp` to `builder`, starts Postfix, and starts
/// pgp-milter on `pgp.sock` with `listen`, `socket_mode = "666"` and the
/// lines of `extra_config`.
pub fn behind_postfix(builder: PostfixBuilder, extra_config: &str) -> BehindPostfix {
    let socket = builder.socket_path("pgp.sock");
    let dir = builder.path().to_owned();
    let milter = format!("unix:{}", socket.display());
    let postfix = builder
        .service(SmtpService::new("pgp").with_milters(&milter))
        .start()
        .unwrap();
    let config = dir.join("pgp-milter.toml");
    std::fs::write(
        &config,
        format!("listen = [\"{milter}\"]\nsocket_mode = \"666\"\n{extra_config}"),
    )
    .unwrap();
    let daemon = start_milter(&config, &socket, dir.join("pgp-milter.log"));
    BehindPostfix {
        postfix,
        daemon,
        config,
        socket,
        dir,
    }
}
