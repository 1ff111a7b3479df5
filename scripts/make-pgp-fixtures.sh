#!/bin/sh
# Regenerates the committed OpenPGP fixtures of pgp-milter's tests
# (crates/pgp-milter/tests/fixtures/gpg/): real GnuPG output, made once, so
# the tests that only need *some* real encrypted message run without gpg.
# A throw-away key for bob@example.org is made in a temporary GNUPGHOME and
# forgotten; nothing needs to decrypt the fixtures.
#
#   scripts/make-pgp-fixtures.sh
#
# The tests' "fresh_gpg" variants (ignored: they need gpg) run the same
# checks on output made at test time.
set -eu
cd "$(dirname "$0")/.."
out=crates/pgp-milter/tests/fixtures/gpg
mkdir -p "$out"
home=$(mktemp -d /tmp/pgpm-fixtures-XXXXXX)
trap 'gpgconf --kill all >/dev/null 2>&1 || true; rm -rf "$home"' EXIT
export GNUPGHOME="$home"
gpg_() {
    gpg --batch --quiet --no-tty --pinentry-mode loopback --passphrase '' "$@"
}
gpg_ --quick-generate-key "Bob <bob@example.org>" future-default default never
secret="The eagle lands at midnight."
printf '%s\n' "$secret" | gpg_ --trust-model always --recipient bob@example.org \
    --armor --encrypt > "$out/encrypted.asc"
printf '%s\n' "$secret" | gpg_ --trust-model always --recipient bob@example.org \
    --encrypt > "$out/encrypted.gpg"
gpg --version | head -1 > "$out/MADE-BY"
echo "wrote $out"
