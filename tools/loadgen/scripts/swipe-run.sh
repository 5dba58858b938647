#!/bin/sh
# Swipe run (issue 18): `rts serve` with one shard pinned to one core, three rooms
# (live/room1..3) published by rts-publish, and rts-loadgen's viewers switching their
# sessions among the rooms every few seconds (`--switch-every`), all in a fresh
# network namespace on loopback. Prints the loadgen summary table (switch counts and
# switch times), the server CPU, and writes the JSON report.
#
#   tools/loadgen/scripts/swipe-run.sh                   # 500 viewers, every 5 s, 60 s
#   VIEWERS=100 EVERY=2 DURATION=20 tools/loadgen/scripts/swipe-run.sh
#
# Environment (defaults): VIEWERS=500 RAMP=100 DURATION=60 EVERY=5 (seconds between a
# viewer's switches) VERIFY_SHARE=0.1 (verified viewers time each switch to the new
# room's first frame; all viewers switch) BITRATE=2M (per room) SHARDS=1 SERVER_CORE=0
# (the shards' first core) LOADGEN_CORE=1 PUBLISH_CORE=$SERVER_CORE THREADS=1 (loadgen
# worker threads) OUT=target/swipe-run SKIP_BUILD=0 (1: use existing binaries)
# LOADGEN_ARGS="" (extra loadgen flags).
# Needs root (ip netns), ffmpeg, taskset, curl.
set -eu
cd "$(dirname "$0")/../../.."

VIEWERS=${VIEWERS:-500}
RAMP=${RAMP:-100}
DURATION=${DURATION:-60}
EVERY=${EVERY:-5}
VERIFY_SHARE=${VERIFY_SHARE:-0.1}
BITRATE=${BITRATE:-2M}
SHARDS=${SHARDS:-1}
SERVER_CORE=${SERVER_CORE:-0}
LOADGEN_CORE=${LOADGEN_CORE:-1}
THREADS=${THREADS:-1}
PUBLISH_CORE=${PUBLISH_CORE:-$SERVER_CORE}
OUT=${OUT:-target/swipe-run}
SKIP_BUILD=${SKIP_BUILD:-0}
ROOMS="room1 room2 room3"

if [ "$SKIP_BUILD" != 1 ]; then
    cargo build --release -p rts -p rts-loadgen -p rts-publish
fi
BIN=$(pwd)/target/release
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

NS="rts-swipe-$$"
IP=10.200.0.1
SHM="/dev/shm/rts-swipe-$$"
CONF="$OUT/rts.toml"
CORES=$(awk -v c="$SERVER_CORE" -v n="$SHARDS" 'BEGIN { for (i = 0; i < n; i++) printf "%s%d", (i ? "," : ""), c + i }')
cat >"$CONF" <<EOF
[webrtc]
candidate_ip = "$IP"

[dataplane]
shards = $SHARDS
cores = [$CORES]
shm_path = "$SHM"
EOF

# Background processes run in their own process group (setsid; `ip netns exec` and
# taskset exec in place, so $! is the program and its group id): cleanup ends the
# server with its control child and each publisher with its ffmpeg.
SERVER_PID=""
PUB_PIDS=""
cleanup() {
    for g in $PUB_PIDS $SERVER_PID; do kill -TERM "-$g" 2>/dev/null || true; done
    sleep 0.5
    for g in $PUB_PIDS $SERVER_PID; do kill -KILL "-$g" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -f "$SHM"
}
trap cleanup EXIT INT TERM

ip netns add "$NS"
nsx() { ip netns exec "$NS" "$@"; }
nsx ip link set lo up
nsx ip addr add "$IP/32" dev lo

# utime + stime (clock ticks) of a pid, 0 when gone.
ticks() {
    if [ -r "/proc/$1/stat" ]; then
        sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
    else
        echo 0
    fi
}
# The serve process and its direct children (the supervised control process).
server_ticks() {
    t=$(ticks "$SERVER_PID")
    for c in $(cat "/proc/$SERVER_PID/task/"*/children 2>/dev/null); do
        t=$((t + $(ticks "$c")))
    done
    echo "$t"
}

RUST_LOG=warn setsid ip netns exec "$NS" taskset -c "$CORES" "$BIN/rts" --config "$CONF" serve >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
i=0
until nsx curl -s -o /dev/null "http://$IP:8080/api/v1/streams"; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then echo "swipe-run: server did not start" >&2; cat "$OUT/server.log" >&2; exit 1; fi
    sleep 0.1
done

# One publisher per room (x264 ultrafast, ~8 % of a core each), on the server's core
# by default so that the loadgen core stays clean; server CPU below is the server's own.
for r in $ROOMS; do
    setsid ip netns exec "$NS" taskset -c "$PUBLISH_CORE" "$BIN/rts-publish" --url "rtmp://$IP:1935/live/$r" \
        --bitrate "$BITRATE" --sei-every 15 >"$OUT/publish-$r.log" 2>&1 &
    PUB_PIDS="$PUB_PIDS $!"
done
i=0
until [ "$(nsx curl -s "http://$IP:8080/api/v1/streams" | grep -o '"publishing":true' | wc -l)" -ge 3 ]; do
    i=$((i + 1))
    if [ $i -gt 200 ]; then echo "swipe-run: rooms not live" >&2; cat "$OUT"/publish-*.log >&2; exit 1; fi
    sleep 0.1
done
sleep 2 # a couple of GOPs in the caches

HZ=$(getconf CLK_TCK)
# Steady state: from 5 s after the ramp ends to 5 s before the hold ends.
STEADY_FROM=$(awk -v n="$VIEWERS" -v r="$RAMP" 'BEGIN { printf "%d", n / r + 5 }')
STEADY_LEN=$(awk -v n="$VIEWERS" -v r="$RAMP" -v d="$DURATION" 'BEGIN { l = d - n / r - 10; if (l < 1) l = 1; printf "%d", l }')
S0=$(server_ticks)
T0=$(date +%s.%N)
ip netns exec "$NS" taskset -c "$LOADGEN_CORE" "$BIN/rts-loadgen" --url "http://$IP:8080/whep/live/room1" \
    --viewers "$VIEWERS" --ramp "$RAMP" --duration "$DURATION" --verify-share "$VERIFY_SHARE" \
    --switch-every "$EVERY" --switch-streams "$(echo $ROOMS | tr ' ' ',')" \
    --threads "$THREADS" --quiet --json "$OUT/report.json" ${LOADGEN_ARGS:-} &
LOADGEN_PID=$!
(
    sleep "$STEADY_FROM"; a=$(server_ticks); la=$(ticks "$LOADGEN_PID"); ta=$(date +%s.%N)
    sleep "$STEADY_LEN"; b=$(server_ticks); lb=$(ticks "$LOADGEN_PID"); tb=$(date +%s.%N)
    awk -v a="$a" -v b="$b" -v la="$la" -v lb="$lb" -v ta="$ta" -v tb="$tb" -v hz="$HZ" -v n="$VIEWERS" -v e="$EVERY" 'BEGIN {
        t = tb - ta
        printf "steady hold (%.0f s, %d viewers switching every %s s = %.0f switches/s): server %.1f%% of one core, loadgen %.1f%%\n",
            t, n, e, n / e, 100 * (b - a) / hz / t, 100 * (lb - la) / hz / t }' >"$OUT/steady.txt"
) &
SAMPLER=$!
set +e
wait "$LOADGEN_PID"
RC=$?
set -e
S1=$(server_ticks)
T1=$(date +%s.%N)
awk -v s0="$S0" -v s1="$S1" -v t0="$T0" -v t1="$T1" -v hz="$HZ" 'BEGIN {
    cpu = (s1 - s0) / hz; wall = t1 - t0;
    printf "server cpu: %.1f s over %.1f s wall = %.1f%% of one core (serve + control, incl. ramp/teardown)\n", cpu, wall, 100 * cpu / wall
}' | tee "$OUT/server-cpu.txt"
wait "$SAMPLER" 2>/dev/null || true
tee -a "$OUT/server-cpu.txt" <"$OUT/steady.txt" || true
echo "report: $OUT/report.json (loadgen exit $RC)"
exit $RC
