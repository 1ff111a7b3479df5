#!/usr/bin/env bash
# Installs what the integration tests need (Debian/Ubuntu, run as root):
#   postfix        a real MTA; crates/testkit starts private loopback-only instances of it
#   swaks          SMTP client for scripts and manual checks
#   miltertest     drives a milter without an MTA (Lua scripts)
#   libmilter-dev  Sendmail's libmilter headers, for interop checks against the C library
#   iproute2       `ss`, used to wait for listeners without connecting to them
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
[ -f /usr/include/libmilter/mfapi.h ] || missing+=(libmilter-dev)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)

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
    echo "install-test-deps.sh: postfix, swaks, miltertest, libmilter-dev and ss already present"
fi

# The default instance (config /etc/postfix, queue /var/spool/postfix) is not used by the
# tests; make sure it is not running. Private test instances are not affected: they have
# their own config directories.
if /usr/sbin/postfix status >/dev/null 2>&1; then
    echo "install-test-deps.sh: stopping Debian's default Postfix instance"
    /usr/sbin/postfix stop
fi
