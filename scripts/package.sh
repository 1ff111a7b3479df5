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
#
#   scripts/package.sh           the release build in target/release, kept for
#                                the next run
#   scripts/package.sh --clean   the release build in a directory of its own
#                                (target/package-build), removed once the
#                                packages are written: scripts/test.sh does
#                                this, since only the .debs are tested and
#                                the build would add about 550 MB to the
#                                disk a clone takes after the test command
set -euo pipefail
cd "$(dirname "$0")/.."

clean=0
case "${1:-}" in
    --clean) clean=1 ;;
    "") ;;
    *) echo "package.sh: unknown argument $1 (--clean or nothing)" >&2; exit 2 ;;
esac

command -v cargo-deb >/dev/null 2>&1 || {
    echo "package.sh: cargo-deb is missing: cargo install cargo-deb --locked" >&2
    exit 1
}

target_dir=$(cargo metadata --format-version 1 --no-deps | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
out="$target_dir/debian"
build_dir=$target_dir
if [ "$clean" = 1 ]; then
    build_dir=$target_dir/package-build
    rm -rf "$build_dir"
    trap 'rm -rf "$build_dir"' EXIT
fi

echo "== package.sh: cargo build --release (pgp-milter, mailman-milter, minimilter, gen-docs) in $build_dir"
CARGO_TARGET_DIR=$build_dir cargo build --release --locked \
    -p pgp-milter -p mailman-milter -p minimilter-cli -p packaging

generated=crates/packaging/generated
rm -rf "$generated"
"$build_dir/release/gen-docs" "$generated"
# The transcript format that minimilter-record(1) and replay refer to, as
# Debian keeps documentation: compressed, in /usr/share/doc/minimilter/.
gzip -9n -c docs/transcript.md >"$generated/transcript.md.gz"

mkdir -p "$out"
rm -f "$out"/*.deb
for crate in pgp-milter mailman-milter minimilter-cli; do
    echo "== package.sh: cargo deb -p $crate"
    # cargo-deb takes the binaries from the target directory cargo names.
    CARGO_TARGET_DIR=$build_dir cargo deb --no-build --locked -p "$crate" -o "$out/"
done
ls -l "$out"/*.deb
if [ "$clean" = 1 ]; then
    echo "== package.sh: removing the release build ($(du -sh "$build_dir" | cut -f1)) in $build_dir"
fi

if [ "${LINTIAN:-0}" = 1 ]; then
    echo "== package.sh: lintian"
    lintian --fail-on error,warning --info "$out"/*.deb
fi
