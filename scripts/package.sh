#!/usr/bin/env bash
# Builds the three Debian packages into target/debian/:
#   pgp-milter_VERSION_ARCH.deb      the daemon, /usr/sbin/pgp-milter
#   mailman-milter_VERSION_ARCH.deb  the daemon, /usr/sbin/mailman-milter
#   minimilter_VERSION_ARCH.deb      the tool, /usr/bin/minimilter
# One release build of the three programs and gen-docs (man pages and
# bash/zsh/fish completions from their clap definitions, written to
# crates/packaging/generated/), then `cargo deb --no-build` per crate; the
# metadata is [package.metadata.deb] in each crate's Cargo.toml, the
# packaging files are in crates/*/dist/. Needs cargo-deb
# (`cargo install cargo-deb --locked`; scripts/install-test-deps.sh does).
# LINTIAN=1 also runs lintian on the result (the package test always does).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null 2>&1 || {
    echo "package.sh: cargo-deb is missing: cargo install cargo-deb --locked" >&2
    exit 1
}

echo "== package.sh: cargo build --release (pgp-milter, mailman-milter, minimilter, gen-docs)"
cargo build --release --locked -p pgp-milter -p mailman-milter -p minimilter-cli -p packaging

generated=crates/packaging/generated
rm -rf "$generated"
target_dir=$(cargo metadata --format-version 1 --no-deps | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/release/gen-docs" "$generated"

out="$target_dir/debian"
rm -f "$out"/*.deb
for crate in pgp-milter mailman-milter minimilter-cli; do
    echo "== package.sh: cargo deb -p $crate"
    cargo deb --no-build --locked -p "$crate" -o "$out/"
done
ls -l "$out"/*.deb

if [ "${LINTIAN:-0}" = 1 ]; then
    echo "== package.sh: lintian"
    lintian --fail-on error,warning --info "$out"/*.deb
fi
