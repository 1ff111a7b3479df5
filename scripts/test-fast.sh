#!/usr/bin/env bash
# The fast inner loop: every test that needs no external program (no Postfix,
# Sendmail, Mailman, GnuPG, miltertest, libmilter, Python, opendkim,
# promtool, ...), in under a minute once the workspace is built.
#
# The tests run under cargo-nextest (installed from crates.io when missing):
# every test binary at once, four tests at a time on two cores (CPU-bound
# ones count double), slowest first (.config/nextest.toml); then the
# doctests with `cargo test --doc`. Plain
# `cargo test --workspace` runs the same tests, one binary after another.
#
# Tests that need a program are marked `#[ignore = "needs <program>"]`;
# both skip them, and this script counts them by reason at the end.
# scripts/test.sh runs them all (`cargo test -- --ignored`), where a missing
# program fails the test.
#
#   scripts/test-fast.sh              the fast set, plus the summary
#   scripts/test-fast.sh --hermetic   the same with the external programs
#                                     hidden (bind-mounted over, in a private
#                                     mount namespace; root only): a test that
#                                     needs one but is not marked fails, which
#                                     is how scripts/test.sh keeps the fast set
#                                     honest
#   scripts/test-fast.sh -- ARGS      test name filters (and libtest's
#                                     --exact, --skip, --include-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."

# Programs and directories the marked tests use. Hidden with --hermetic.
# (cc cannot be hidden: rustc links with it. The C tests need libmilter's
# headers, which are hidden instead.)
EXTERNAL_FILES=(
    /usr/sbin/postfix /usr/sbin/postconf /usr/sbin/postmap /usr/sbin/postdrop
    /usr/sbin/sendmail /usr/bin/swaks /usr/bin/miltertest
    /usr/bin/gpg /usr/bin/gpg-agent /usr/bin/gpgconf /usr/bin/gpgsm /usr/bin/sq
    /usr/bin/mailman /usr/lib/mailman3/bin/master
    /usr/bin/python3 /usr/local/bin/python3
    /usr/sbin/opendkim /usr/sbin/opendkim-genkey /usr/bin/opendkim-genkey
    /usr/bin/opendkim-testmsg /usr/bin/promtool /usr/bin/prometheus
    /usr/bin/neomutt /usr/bin/mu /usr/bin/systemd-analyze /usr/bin/node /usr/bin/nodejs /usr/bin/npm
    /usr/sbin/dovecot /usr/bin/doveadm /usr/bin/lintian /usr/bin/dpkg-deb /usr/bin/setpriv
)
EXTERNAL_DIRS=(/usr/include/libmilter /opt/minimilter-test)

hermetic=0
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --hermetic) hermetic=1 ;;
        --inside-namespace) hermetic=2 ;;
        --) shift; args=("$@"); break ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "test-fast.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# cargo-nextest: the machine's own, else from crates.io (before the
# external programs are hidden: cargo needs nothing hidden, but this is the
# step that reaches the network).
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "== cargo install cargo-nextest --locked"
    cargo install cargo-nextest --locked
fi

if [ "$hermetic" = 1 ]; then
    if [ "$(id -u)" -eq 0 ] && unshare -m true 2>/dev/null; then
        exec unshare -m "$0" --inside-namespace -- "${args[@]}"
    fi
    echo "test-fast.sh: cannot make a private mount namespace (needs root and unshare);" \
         "running without hiding the external programs" >&2
fi
if [ "$hermetic" = 2 ]; then
    # Private mounts: nothing here is seen outside this process tree.
    mount --make-rprivate / 2>/dev/null || true
    hidden=()
    for f in "${EXTERNAL_FILES[@]}"; do
        if [ -f "$f" ]; then mount --bind /dev/null "$f" && hidden+=("$f"); fi
    done
    # pyenv's shims (python3 on some machines) live under $PYENV_ROOT.
    for f in "${PYENV_ROOT:-$HOME/.pyenv}"/shims/python3*; do
        if [ -f "$f" ]; then mount --bind /dev/null "$f" && hidden+=("$f"); fi
    done
    for d in "${EXTERNAL_DIRS[@]}"; do
        if [ -d "$d" ]; then mount -t tmpfs none "$d" && hidden+=("$d"); fi
    done
    echo "== hidden for the fast set: ${hidden[*]}"
fi

log=$(mktemp /tmp/minimilter-test-fast.XXXXXX)
trap 'rm -f "$log" "$log.ignored"' EXIT
start=$(date +%s)
status=0
extra=()
if [ ${#args[@]} -gt 0 ]; then extra=(-- "${args[@]}"); fi
cargo nextest run --workspace --locked --no-fail-fast "${extra[@]}" 2>&1 | tee "$log" || status=$?
# nextest runs no doctests.
cargo test --workspace --locked --doc "${extra[@]}" 2>&1 | tee -a "$log" || status=$?
elapsed=$(( $(date +%s) - start ))

# Why each skipped test was skipped: nextest does not say, but each test
# binary does when asked for exactly its ignored tests (which it then lists
# as "ignored, <reason>" without running anything).
bin=""
names=()
flush() {
    if [ -n "$bin" ] && [ ${#names[@]} -gt 0 ]; then
        "$bin" --exact "${names[@]}" 2>&1 | grep ' \.\.\. ignored' || true
    fi
    names=()
}
{
    while IFS= read -r line; do
        case "$line" in *"(skipped)"*) continue ;; esac
        b=${line#*\[bin: }; b=${b%%\]*}
        [ "$b" = "$bin" ] || flush
        bin=$b
        rest=${line#* }
        names+=("${rest%% \[bin: *}")
    done < <(cargo nextest list --workspace --locked --run-ignored only -v 2>/dev/null)
    flush
} >"$log.ignored"

# nextest's summary ("N tests run: N passed, N failed, N skipped"), the
# doctests' "test result:" lines, and the reasons.
awk -v secs="$elapsed" '
    FILENAME ~ /ignored$/ { sub(/.* \.\.\. ignored, /, ""); why[$0]++; next }
    /^ *Summary \[/ {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed/) p += $i
            if ($(i+1) ~ /^failed/) f += $i
            if ($(i+1) ~ /^skipped/) ig += $i
        }
    }
    /^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed/) p += $i
            if ($(i+1) ~ /^failed/) f += $i
            if ($(i+1) ~ /^ignored/) ig += $i
        }
    }
    END {
        printf "\n== fast set: %d passed, %d failed, %d ignored (need an external program; scripts/test.sh runs them) in %d s\n", p, f, ig, secs
        for (w in why) printf "   %4d  %s\n", why[w], w
    }' "$log" "$log.ignored"
exit "$status"
