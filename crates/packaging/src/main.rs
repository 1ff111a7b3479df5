//! `gen-docs OUT_DIR`: writes the man pages (section 8 for the daemons and
//! their subcommands, 1 for the `minimilter` tool and each of its subcommands) and the bash, zsh
//! and fish completions of the three programs, from the clap definitions
//! the programs themselves parse (`pgp_milter::cli::command()`, ...), so
//! they cannot disagree with `--help`. Layout, as the Debian packages take
//! it (`scripts/package.sh`):
//!
//! ```text
//! OUT_DIR/man/pgp-milter.8  mailman-milter.8  mailman-milter-export.8  minimilter.1  minimilter-check.1 ...
//! OUT_DIR/completions/bash/NAME  zsh/_NAME  fish/NAME.fish
//! ```
//!
//! The section-5 pages of the configuration files are written by hand
//! (`crates/*/dist/man/*.5`); a test checks they name every key.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap_complete::{Shell, generate_to};
use clap_mangen::Man;

/// One program: its command line and what its page adds below the options.
struct Program {
    command: clap::Command,
    section: &'static str,
    /// Raw roff appended to the generated page (FILES, SEE ALSO, ...).
    extra: &'static str,
}

const PGP_EXTRA: &str = r#".SH FILES
.TP
.I /etc/pgp-milter/config.toml
The configuration; see \fBpgp-milter.toml\fR(5). Without \fB\-\-config\fR the
milter runs on its built-in defaults.
.TP
.I /var/spool/postfix/pgp-milter/pgp-milter.sock
The packaged socket, inside Postfix's chroot. In \fI/etc/postfix/main.cf\fR:
.RS
.nf
smtpd_milters = unix:pgp-milter/pgp-milter.sock
.fi
.RE
.SH SIGNALS
SIGTERM and SIGINT drain (messages in progress finish) and stop; SIGHUP
checks the configuration file again and puts its policy keys in force for
new connections, and reloads \fBkeyring_dir\fR; the \fB[server]\fR keys
apply after a restart. One log line says what changed, or why the reload
was refused (the old state stays).
.SH EXIT STATUS
0 after a clean shutdown or a clean \fB\-\-check\-config\fR; 1 for a
configuration, socket or start-up error; 2 for a usage error.
.SH SEE ALSO
\fBpgp-milter.toml\fR(5), \fBminimilter\fR(1), \fBpostconf\fR(5)
"#;

const MAILMAN_EXTRA: &str = r#".SH COMMANDS
.TP
\fBmailman\-milter export\fR [\fB\-\-config\fR \fIFILE\fR] [\fB\-o\fR \fIFILE\fR]
Writes a lists file from a running Mailman 3's REST API; see
\fBmailman\-milter\-export\fR(8).
.SH FILES
.TP
.I /etc/mailman-milter/config.toml
The configuration; see \fBmailman-milter.toml\fR(5).
.TP
.I /etc/mailman-milter/lists.toml
The lists file the packaged configuration reads; see
\fBmailman-milter-lists.toml\fR(5).
.TP
.I /var/spool/postfix/mailman-milter/mailman-milter.sock
The packaged socket, inside Postfix's chroot. In \fI/etc/postfix/main.cf\fR:
.RS
.nf
smtpd_milters = unix:mailman-milter/mailman-milter.sock
.fi
.RE
.TP
.I /var/lib/mailman-milter
\fBstate_dir\fR for the Mailman REST backend.
.SH SIGNALS
SIGTERM and SIGINT drain (messages in progress finish) and stop; SIGHUP
(and a change of the lists file) reloads the lists, and puts a changed
policy in force for new connections; \fBbackend\fR, \fBlists\fR,
\fBsenders\fR, \fBreload_interval\fR, \fB[mailman]\fR and the \fB[server]\fR
keys apply after a restart. One log line says what changed, or why the
reload was refused (the old state stays).
.SH EXIT STATUS
0 after a clean shutdown or a clean \fB\-\-check\-config\fR; 1 for a
configuration, socket or start-up error; 2 for a usage error.
.SH SEE ALSO
\fBmailman-milter.toml\fR(5), \fBmailman-milter-lists.toml\fR(5),
\fBminimilter\fR(1), \fBmailman\fR(1)
"#;

const MINIMILTER_EXTRA: &str = r#".SH SEE ALSO
\fBminimilter\-check\fR(1), \fBminimilter\-bench\fR(1),
\fBminimilter\-record\fR(1), \fBminimilter\-replay\fR(1),
\fBpgp\-milter\fR(8), \fBmailman\-milter\fR(8)
"#;

fn programs() -> Vec<Program> {
    vec![
        Program {
            command: pgp_milter::cli::command(),
            section: "8",
            extra: PGP_EXTRA,
        },
        Program {
            command: mailman_milter::cli::command(),
            section: "8",
            extra: MAILMAN_EXTRA,
        },
        Program {
            command: minimilter_cli::command(),
            section: "1",
            extra: MINIMILTER_EXTRA,
        },
    ]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out] = args.as_slice() else {
        bail!("usage: gen-docs OUT_DIR");
    };
    let out = PathBuf::from(out);
    let man = out.join("man");
    fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    for p in programs() {
        let mut command = p.command;
        command.build();
        let name = command.get_name().to_owned();
        // clap's `help` subcommand gets no page of its own (below), so the
        // main page must not list a `NAME-help` page either; `--help` is
        // described with the options.
        let listed = match command.find_subcommand("help") {
            Some(_) => command.clone().mut_subcommand("help", |h| h.hide(true)),
            None => command.clone(),
        };
        write_page(&man, &listed, &name, p.section, p.extra)?;
        // One page per subcommand (minimilter check, ...): the main page
        // only lists them.
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let page = format!("{name}-{}", sub.get_name());
            // (build() named it NAME-SUB for display, which the page's title takes.)
            write_page(&man, sub, &page, p.section, "")?;
        }
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let dir = out.join("completions").join(shell.to_string());
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            generate_to(shell, &mut command.clone(), &name, &dir)
                .with_context(|| format!("writing the {shell} completion of {name}"))?;
        }
    }
    Ok(())
}

fn write_page(
    dir: &Path,
    command: &clap::Command,
    name: &str,
    section: &str,
    extra: &str,
) -> Result<()> {
    let path = dir.join(format!("{name}.{section}"));
    let mut page = Vec::new();
    Man::new(command.clone())
        .section(section)
        .manual("minimilter")
        .source(format!("minimilter {}", env!("CARGO_PKG_VERSION")))
        .render(&mut page)
        .with_context(|| format!("rendering {name}({section})"))?;
    page.write_all(extra.as_bytes())?;
    fs::write(&path, page).with_context(|| format!("writing {}", path.display()))
}
