#!/bin/sh
# Short fuzzing pass over every cargo-fuzz target in the tree (DESIGN.md: "a short
# run in CI, longer runs by hand").
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]        default 10
#   FUZZ_TARGETS="stun:parse common:ipc_decode" scripts/fuzz.sh 60
#   FUZZ_SANITIZER=address scripts/fuzz.sh 300  (ASan; default none)
#   FUZZ_TARGET_DIR=/abs/dir scripts/fuzz.sh     (one build dir for all fuzz crates)
#   FUZZ_DEV=1 scripts/fuzz.sh 5                  (unoptimised, no debuginfo: builds in a
#                                                  fraction of the time, runs slower; CI's smoke pass)
#
# Works on the stable toolchain: cargo-fuzz's nightly-only flags are unlocked with
# RUSTC_BOOTSTRAP=1. Each fuzz crate is its own workspace with its own Cargo.lock and
# builds into its own fuzz/target. cargo-fuzz builds with debug assertions (overflow checks)
# on. New corpus entries go to <crate>/fuzz/corpus/<target> (git-ignored); the
# committed seeds in <crate>/fuzz/seeds/<target> are read, never written. Stops at
# the first crash, timeout or OOM, prints the reproducer and exits non-zero.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SECS=${1:-10}
SANITIZER=${FUZZ_SANITIZER:-none}
# Default: each crate's own fuzz/target. A shared dir builds libfuzzer and aws-lc once.
TDIR=""
[ -n "${FUZZ_TARGET_DIR:-}" ] && TDIR="--target-dir=$FUZZ_TARGET_DIR"
if [ -n "${FUZZ_DEV:-}" ]; then
    TDIR="$TDIR --dev"
    export CARGO_PROFILE_DEV_DEBUG=0
fi
CARGO_FUZZ_VERSION=0.13.1
# Fuzz crates, as directories holding fuzz/Cargo.toml; a target is named
# <last path component>:<target>, e.g. stun:parse.
CRATES="proto/stun proto/rtp proto/sdp proto/rtmp proto/srtp proto/dtls common dataplane"

case $SECS in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac

if ! cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi

export RUSTC_BOOTSTRAP=1
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

# All crate:target pairs, or the FUZZ_TARGETS subset (checked against that list).
ALL=""
for c in $CRATES; do
    for t in $(cd "$c/fuzz" && cargo fuzz list); do
        ALL="$ALL ${c##*/}:$t"
    done
done
if [ -n "${FUZZ_TARGETS:-}" ]; then
    for want in $FUZZ_TARGETS; do
        case " $ALL " in
            *" $want "*) ;;
            *) echo "fuzz: unknown target '$want'; known:$ALL" >&2; exit 2 ;;
        esac
    done
    SELECTED=$FUZZ_TARGETS
else
    SELECTED=$ALL
fi

start=$(date +%s)
passed=0
for pair in $SELECTED; do
    name=${pair%%:*}
    target=${pair#*:}
    for c in $CRATES; do [ "${c##*/}" = "$name" ] && dir=$ROOT/$c/fuzz; done
    cd "$dir"
    corpus=corpus/$target
    mkdir -p "$corpus" "artifacts/$target"
    seeds=""
    [ -d "seeds/$target" ] && seeds="seeds/$target"

    t0=$(date +%s)
    if ! cargo fuzz build -s "$SANITIZER" $TDIR "$target" >"$LOG" 2>&1; then
        cat "$LOG" >&2
        echo "fuzz: $pair: build failed" >&2
        exit 1
    fi
    t1=$(date +%s)
    # shellcheck disable=SC2086 # $TDIR, $seeds: empty or one word
    if cargo fuzz run -s "$SANITIZER" $TDIR "$target" "$corpus" $seeds -- \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$LOG" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOG" | tail -n 1)
        echo "fuzz: $pair ok: ${runs:-?} runs in ${SECS}s (build $((t1 - t0))s)"
        passed=$((passed + 1))
    else
        tail -n 60 "$LOG" >&2
        repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$LOG" | tail -n 1)
        echo >&2
        echo "fuzz: $pair FAILED" >&2
        if [ -n "$repro" ]; then
            echo "fuzz: reproducer: $repro" >&2
            echo "fuzz: rerun: (cd $dir && RUSTC_BOOTSTRAP=1 cargo fuzz run -s $SANITIZER $TDIR $target $repro)" >&2
            echo "fuzz: minimize: (cd $dir && RUSTC_BOOTSTRAP=1 cargo fuzz tmin -s $SANITIZER $TDIR $target $repro)" >&2
        fi
        exit 1
    fi
done
echo "fuzz: all targets passed ($(($(date +%s) - start))s total)"
echo "fuzz: $passed passed, 0 failed"
