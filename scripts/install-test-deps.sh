#!/usr/bin/env bash
# Installs what the integration tests need (Debian/Ubuntu, run as root):
#   postfix        a real MTA; crates/testkit starts private loopback-only instances of it
#   swaks          SMTP client for scripts and manual checks
#   miltertest     drives a milter without an MTA (Lua scripts)
#   libmilter-dev  Sendmail's libmilter headers, for interop checks against the C library
#   iproute2       `ss`, used to wait for listeners without connecting to them
#   m4, libwrap0   build Sendmail's .cf / the one shared library Sendmail needs that is
#                  not already present
#   gnupg          pgp-milter's tests build their OpenPGP corpus with gpg
#   sq             Sequoia's CLI: a second OpenPGP implementation's messages for the
#                  payload reader's corpus test (tests/payload_sq.rs)
#   nodejs, npm    run OpenPGP.js 6 (v6 keys, SEIPD v2), installed with npm into
#                  $OPENPGPJS_DIR (/opt/minimilter-test/openpgpjs) for tests/payload_openpgpjs.rs
#   util-linux     `unshare`, which keeps the test Sendmail's name lookups on this machine
#   gcc            builds the libmilter reference milter
#   python3-gi, gir1.2-gmime-3.0
#                  pgp-milter's differential tests ask Python's email and GMime (in-process,
#                  from Debian's /usr/bin/python3) what a mail reader sees
#   neomutt        a third mail reader for pgp-milter's differential tests
#                  (tests/differential_neomutt.rs: run headless under util-linux `script`)
#   unzip          the oracle of pgp-milter's ZIP-inside-ciphertext test (tests/bypasses.rs:
#                  `unzip` extracts the letter such an attachment holds)
#   dovecot-imapd, dovecot-lmtpd, python3-venv
#                  pgp-milter's Delta Chat test (tests/deltachat.rs) runs a private Dovecot
#                  (own config, foreground, loopback ports; never the service) for LMTP,
#                  IMAP and SMTP AUTH, and the real Delta Chat core from PyPI
#                  (deltachat-rpc-server + deltachat-rpc-client, one pinned version) in
#                  a venv at $DELTACHAT_VENV (/opt/minimilter-test/deltachat-venv)
#   mailman3       a real Mailman 3 core; mailman-milter's tests start a private one (own
#                  config and var dir, REST on a free 127.0.0.1 port) and never the service
#   opendkim, opendkim-tools, python3-dkim
#                  `minimilter check` is tested against a real opendkim signing
#                  configuration (own config, foreground, private socket; never the
#                  service), its signatures verified with Python's dkim module
#   lintian, man-db
#                  the Debian packages (scripts/package.sh) are checked with lintian and
#                  their man pages looked up with man by crates/packaging's package test
#   cargo-deb      (crates.io, `cargo install cargo-deb --locked` when missing) builds them
#   cargo-nextest  (crates.io, `cargo install cargo-nextest --locked` when missing) runs
#                  the fast set (scripts/test-fast.sh, which also installs it itself)
#   sendmail       sendmail-bin, sendmail-base and sendmail-cf are *not installed* (they
#                  conflict with postfix): they are downloaded and unpacked with dpkg -x
#                  into $SENDMAIL_DIR (/opt/minimilter-test/sendmail), where
#                  crates/testkit (testkit::Sendmail) runs a private Sendmail from them
#
# Idempotent and fast: installs only what is missing and does not touch apt otherwise.
# Debian's default Postfix instance is configured as "No configuration" and never
# started: the tests run their own instances under /tmp.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps.sh: must run as root (e.g. sudo $0)" >&2
    exit 1
fi

missing=()
[ -x /usr/sbin/postfix ] || missing+=(postfix)
command -v swaks >/dev/null 2>&1 || missing+=(swaks)
command -v miltertest >/dev/null 2>&1 || missing+=(miltertest)
command -v dpkg-shlibdeps >/dev/null 2>&1 || missing+=(dpkg-dev)   # cargo-deb: $auto dependencies
[ -f /usr/include/libmilter/mfapi.h ] || missing+=(libmilter-dev)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
command -v m4 >/dev/null 2>&1 || missing+=(m4)
ls /lib/*/libwrap.so.0 /usr/lib/*/libwrap.so.0 >/dev/null 2>&1 || missing+=(libwrap0)
# pgp-milter's tests build their OpenPGP corpus with GnuPG; unshare (util-linux) isolates Sendmail.
command -v gpg >/dev/null 2>&1 || missing+=(gnupg)
command -v sq >/dev/null 2>&1 || missing+=(sq)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
# pgp-milter's differential tests: Python's email and GMime as independent MIME readers.
/usr/bin/python3 -c 'import gi' >/dev/null 2>&1 || missing+=(python3-gi)
ls /usr/lib/*/girepository-1.0/GMime-3.0.typelib >/dev/null 2>&1 || missing+=(gir1.2-gmime-3.0)
command -v neomutt >/dev/null 2>&1 || missing+=(neomutt)
command -v unzip >/dev/null 2>&1 || missing+=(unzip)
# mailman-milter's REST backend is tested against Debian's Mailman 3 core.
[ -x /usr/bin/mailman ] && [ -x /usr/lib/mailman3/bin/master ] || missing+=(mailman3)
# minimilter check's opendkim example; the verifier runs under Debian's python3.
[ -x /usr/sbin/opendkim ] || missing+=(opendkim)
[ -x /usr/sbin/opendkim-genkey ] || missing+=(opendkim-tools)
/usr/bin/python3 -c 'import dkim' >/dev/null 2>&1 || missing+=(python3-dkim)
# pgp-milter's Delta Chat test: a private Dovecot (IMAP, SASL for Postfix) and a venv.
[ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/imap ] || missing+=(dovecot-imapd)
[ -x /usr/lib/dovecot/lmtp ] || missing+=(dovecot-lmtpd)
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# The milters' systemd units are checked with systemd-analyze verify (it need not run as init).
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# The Debian packages: lintian judges them, man finds their pages.
command -v lintian >/dev/null 2>&1 || missing+=(lintian)
command -v man >/dev/null 2>&1 || missing+=(man-db)
# The /metrics exposition is checked with promtool and scraped by a real Prometheus.
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)

if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-test-deps.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive

    # Without this, postfix's postinst asks (or defaults to "Internet Site") and writes
    # an /etc/postfix/main.cf for a default instance the tests never want.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

    # Maintainer scripts start services through invoke-rc.d; exit code 101 from
    # policy-rc.d means "action forbidden", so nothing is started during the install.
    # Only a policy-rc.d created here is removed again.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
    fi

    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "install-test-deps.sh: every Debian package the tests need is already present"
fi

# Sendmail, unpacked (not installed) for testkit::Sendmail. The marker file is written
# last, so an interrupted run is redone; the tree is built beside the target and renamed
# into place, so a half-unpacked tree is never used.
SENDMAIL_DIR=/opt/minimilter-test/sendmail
SENDMAIL_PACKAGES=(sendmail-bin sendmail-base sendmail-cf)
if [ -f "$SENDMAIL_DIR/.unpacked" ] &&
    [ -x "$SENDMAIL_DIR/usr/libexec/sendmail/sendmail" ] &&
    [ -f "$SENDMAIL_DIR/usr/share/sendmail/cf/m4/cf.m4" ]; then
    echo "install-test-deps.sh: Sendmail already unpacked in $SENDMAIL_DIR"
else
    echo "install-test-deps.sh: unpacking ${SENDMAIL_PACKAGES[*]} into $SENDMAIL_DIR"
    mkdir -p "$(dirname "$SENDMAIL_DIR")"
    rm -rf "$(dirname "$SENDMAIL_DIR")"/.sendmail-*   # left by an interrupted run
    work=$(mktemp -d "$(dirname "$SENDMAIL_DIR")/.sendmail-XXXXXX")
    # apt-get download writes into the current directory; as root, because its
    # sandbox user _apt cannot write into this root-owned directory.
    if ! (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "${SENDMAIL_PACKAGES[@]}"); then
        apt-get update -qq
        (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "${SENDMAIL_PACKAGES[@]}")
    fi
    mkdir "$work/tree"
    for deb in "$work"/*.deb; do
        dpkg -x "$deb" "$work/tree"
    done
    (cd "$work" && ls ./*.deb) >"$work/tree/.unpacked"
    rm -rf "$SENDMAIL_DIR"
    mv "$work/tree" "$SENDMAIL_DIR"
    rm -rf "$work"
fi

# cargo-deb builds the Debian packages (scripts/package.sh); from crates.io, with its
# own lockfile.
if command -v cargo-deb >/dev/null 2>&1; then
    echo "install-test-deps.sh: cargo-deb already installed"
else
    echo "install-test-deps.sh: installing cargo-deb (cargo install cargo-deb --locked)"
    cargo install cargo-deb --locked
fi

# cargo-nextest runs the fast set (scripts/test-fast.sh); from crates.io, with its
# own lockfile (machines of the project's kind come with it).
if cargo nextest --version >/dev/null 2>&1; then
    echo "install-test-deps.sh: cargo-nextest already installed"
else
    echo "install-test-deps.sh: installing cargo-nextest (cargo install cargo-nextest --locked)"
    cargo install cargo-nextest --locked
fi

# OpenPGP.js, a pinned version, for pgp-milter's payload corpus test.
OPENPGPJS_DIR=/opt/minimilter-test/openpgpjs
OPENPGPJS_VERSION=6.3.2
if grep -qs "\"version\": \"$OPENPGPJS_VERSION\"" "$OPENPGPJS_DIR/node_modules/openpgp/package.json"; then
    echo "install-test-deps.sh: OpenPGP.js $OPENPGPJS_VERSION already in $OPENPGPJS_DIR"
else
    echo "install-test-deps.sh: installing OpenPGP.js $OPENPGPJS_VERSION into $OPENPGPJS_DIR"
    mkdir -p "$OPENPGPJS_DIR"
    (cd "$OPENPGPJS_DIR" && npm install --no-audit --no-fund --silent "openpgp@$OPENPGPJS_VERSION")
fi

# The real Delta Chat core and its Python client, one pinned version for both (config
# keys and contact fields change between releases), in a venv of Debian's python3.
DELTACHAT_VENV=/opt/minimilter-test/deltachat-venv
DELTACHAT_VERSION=2.65.0
if [ -x "$DELTACHAT_VENV/bin/deltachat-rpc-server" ] &&
    "$DELTACHAT_VENV/bin/pip" show deltachat-rpc-server deltachat-rpc-client 2>/dev/null |
    grep -c "^Version: $DELTACHAT_VERSION\$" | grep -qx 2; then
    echo "install-test-deps.sh: Delta Chat $DELTACHAT_VERSION already in $DELTACHAT_VENV"
else
    echo "install-test-deps.sh: installing Delta Chat $DELTACHAT_VERSION into $DELTACHAT_VENV"
    rm -rf "$DELTACHAT_VENV"
    /usr/bin/python3 -m venv "$DELTACHAT_VENV"
    "$DELTACHAT_VENV/bin/pip" install -q --disable-pip-version-check \
        "deltachat-rpc-server==$DELTACHAT_VERSION" "deltachat-rpc-client==$DELTACHAT_VERSION"
fi

# The default instance (config /etc/postfix, queue /var/spool/postfix) is not used by the
# tests; make sure it is not running. Private test instances are not affected: they have
# their own config directories.
if /usr/sbin/postfix status >/dev/null 2>&1; then
    echo "install-test-deps.sh: stopping Debian's default Postfix instance"
    /usr/sbin/postfix stop
fi
