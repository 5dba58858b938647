#!/bin/sh
# Loss repair in headless Chromium under many conditions (docs/performance.md,
# "No stalls on lossy networks"): tests/loss_repair.rs's 5 % test, re-run with
# other impairments and with repair switched off, RUNS times each. Prints one
# RESULT line per run (frames decoded, freezes, audio concealed, NACKs, RTX).
#
#   scripts/loss-matrix.sh            # 5/10/20 % random loss and 80-datagram
#                                     # outages, repair on and off, 2 runs each
#   RUNS=3 CASES="loss=10" scripts/loss-matrix.sh
#   RTS_LOSS_NORTX=1 scripts/loss-matrix.sh   # the browser without RTX
#
# Needs root (network namespaces), ffmpeg and Chromium (scripts/install-test-deps.sh).
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-2}
CASES=${CASES:-"loss=5 loss=10 loss=20 drop-run=80,6000"}
cargo test --no-run --test loss_repair >/dev/null 2>&1
for case in $CASES; do
    for repair in on off; do
        toml=""
        [ "$repair" = off ] && toml="nack = false
red = false"
        i=0
        while [ "$i" -lt "$RUNS" ]; do
            i=$((i + 1))
            out=$(RTS_LOSS_DOWN="$case delay-ms=20" RTS_LOSS_UP="loss=1 delay-ms=20" RTS_LOSS_TOML="$toml" RTS_LOSS_ASSERT=0 \
                cargo test -q --test loss_repair five_percent -- --nocapture 2>&1 || true)
            # A run whose playback never started (the test waits 30 s for 15
            # decoded frames) has no RESULT line: say so.
            echo "$out" | grep '^RESULT' || echo "RESULT $case repair=$repair: $(echo "$out" | grep -o 'no [0-9]* frames decoded' | head -1 || true) (run failed)"
        done
    done
done
