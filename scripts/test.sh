#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need (Postfix,
# swaks, miltertest, libmilter headers from Debian) when missing, then checks
# formatting and lints and runs every test, including the ones that start a
# real Postfix on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
    ./scripts/install-test-deps.sh
else
    echo "note: not root; assuming Postfix and friends are installed (run scripts/install-test-deps.sh as root)" >&2
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked 2>&1 | tee target/test-output.txt
