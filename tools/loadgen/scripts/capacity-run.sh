#!/bin/sh
# Capacity run (issue 5, "done when" 1): `rts serve` pinned to one core with one shard,
# a ~2 Mbit/s SEI-stamped publisher, and rts-loadgen pinned to another core, all in a
# fresh network namespace. Prints the loadgen summary table, server CPU and writes
# the JSON report.
#
#   tools/loadgen/scripts/capacity-run.sh            # 1000 viewers, ramp 200/s, 60 s
#   VIEWERS=500 DURATION=30 tools/loadgen/scripts/capacity-run.sh
#
# Environment (defaults): VIEWERS=1000 RAMP=200 DURATION=60 VERIFY_SHARE=0.01
# BITRATE=2M SERVER_CORE=0 LOADGEN_CORE=1 PUBLISH_CORE=\$SERVER_CORE THREADS=1 (loadgen worker threads)
# OUT=target/capacity-run (JSON report, logs) SKIP_BUILD=0 (1: use existing binaries)
# LOADGEN_BIN=target/release/rts-loadgen, SERVER_BIN=target/release/rts (other builds to compare).
# LOADGEN_ARGS="" (extra loadgen flags, e.g. "--drop-pct 5" for the server's repair cost
# at 5 % loss, or "--no-nack").
# PROTOCOL=webrtc (flv: HTTP-FLV viewers of :8088/live/cap.flv; rtmp: RTMP players of
# rtmp://.../live/cap; the loadgen's --protocol).
# DATAPLANE_CONF="" (extra lines of the server's [dataplane] section, e.g. "udp_multishot = false").
# WEBRTC_CONF="" (extra lines of its [webrtc] section, e.g. "resend_hold_ms = 0").
# Needs root (ip netns), ffmpeg, taskset.
set -eu
cd "$(dirname "$0")/../../.."

VIEWERS=${VIEWERS:-1000}
RAMP=${RAMP:-200}
DURATION=${DURATION:-60}
VERIFY_SHARE=${VERIFY_SHARE:-0.01}
BITRATE=${BITRATE:-2M}
SERVER_CORE=${SERVER_CORE:-0}
LOADGEN_CORE=${LOADGEN_CORE:-1}
THREADS=${THREADS:-1}
PUBLISH_CORE=${PUBLISH_CORE:-$SERVER_CORE}
SEI_EVERY=${SEI_EVERY:-1}
LINK=${LINK:-lo}
OUT=${OUT:-target/capacity-run}
SKIP_BUILD=${SKIP_BUILD:-0}
LOADGEN_BIN=${LOADGEN_BIN:-}

if [ "$SKIP_BUILD" != 1 ]; then
    cargo build --release -p rts -p rts-loadgen -p rts-publish
fi
BIN=$(pwd)/target/release
LOADGEN_BIN=${LOADGEN_BIN:-$BIN/rts-loadgen}
SERVER_BIN=${SERVER_BIN:-$BIN/rts}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

NS="rts-cap-$$"
IP=10.200.0.1
SHM="/dev/shm/rts-cap-$$"
CONF="$OUT/rts.toml"
cat >"$CONF" <<EOF
[webrtc]
candidate_ip = "$IP"
${WEBRTC_CONF:-}

[dataplane]
shards = 1
cores = [$SERVER_CORE]
shm_path = "$SHM"
${DATAPLANE_CONF:-}
EOF

# Background processes run in their own process group (setsid; `ip netns exec` and
# taskset exec in place, so $! is the program and its group id): cleanup ends the
# server with its control child and the publisher with its ffmpeg.
SERVER_PID=""
PUB_PID=""
cleanup() {
    for g in $PUB_PID $SERVER_PID; do kill -TERM "-$g" 2>/dev/null || true; done
    sleep 0.5
    for g in $PUB_PID $SERVER_PID; do kill -KILL "-$g" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    [ "$LINK" = veth ] && ip netns del "$NSC" 2>/dev/null || true
    rm -f "$SHM"
}
trap cleanup EXIT INT TERM

ip netns add "$NS"
nsx() { ip netns exec "$NS" "$@"; }
nsx ip link set lo up
# LINK=lo (default): everything in one namespace on loopback. LINK=veth: the
# loadgen in a second namespace behind a veth pair whose receiving end runs
# GRO in a NAPI kernel thread pinned to the loadgen core, so the viewers'
# receive processing happens there in batches (closer to a NIC than
# loopback's per-datagram softirq on the sending core). Needs ethtool.
NSC=$NS
if [ "$LINK" = veth ]; then
    NSC="rts-capc-$$"
    ip netns add "$NSC"
    ip link add rtscap0 netns "$NS" type veth peer name rtscap1 netns "$NSC"
    nsx ip addr add "$IP/24" dev rtscap0
    nsx ip link set rtscap0 up
    # A queue in front of veth's 256-entry ring: when the NAPI thread falls
    # behind, sends wait there (backpressure) instead of being dropped.
    nsx ip link set rtscap0 txqueuelen 10000
    nsx tc qdisc replace dev rtscap0 root pfifo limit 10000
    ip netns exec "$NSC" ip link set lo up
    ip netns exec "$NSC" ip addr add "${IP%.*}.2/24" dev rtscap1
    ip netns exec "$NSC" ip link set rtscap1 up
    # GRO_UDP_FWD: veth hands sockets' GSO sends to the NAPI path only then.
    ip netns exec "$NSC" ethtool -K rtscap1 gro on rx-udp-gro-forwarding on >/dev/null
    ip netns exec "$NSC" sh -c "echo 1 > /sys/class/net/rtscap1/threaded"
    for p in $(pgrep '^napi/rtscap1'); do taskset -pc "$LOADGEN_CORE" "$p" >/dev/null; done
    echo "capacity-run: loadgen behind veth, threaded NAPI on core $LOADGEN_CORE"
else
    nsx ip addr add "$IP/32" dev lo
fi
nscx() { ip netns exec "$NSC" "$@"; }
# RPS=1: the namespace's loopback receive processing (IP/UDP input, socket
# queueing) runs on the loadgen core instead of on the sending core, as it
# would on the receiving host behind a real NIC.
if [ "${RPS:-0}" = 1 ]; then
    mask=$(printf '%x' $((1 << LOADGEN_CORE)))
    nsx sh -c "echo $mask > /sys/class/net/lo/queues/rx-0/rps_cpus"
    echo "capacity-run: loopback RPS -> core $LOADGEN_CORE (mask $mask)"
fi

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

# Resident memory of the serve process (the dataplane's shards), kB. Socket
# buffers are kernel memory and not in it.
server_rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0; }

RUST_LOG=warn setsid ip netns exec "$NS" taskset -c "$SERVER_CORE" "$SERVER_BIN" --config "$CONF" serve >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
i=0
until nsx curl -s -o /dev/null "http://$IP:8080/api/v1/streams"; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then echo "capacity-run: server did not start" >&2; cat "$OUT/server.log" >&2; exit 1; fi
    sleep 0.1
done

# The publisher's ffmpeg (x264, ~25-35 % of a core) shares the server's core by default
# so that the loadgen core stays clean; server CPU below is the server's own.
setsid ip netns exec "$NS" taskset -c "$PUBLISH_CORE" "$BIN/rts-publish" --url "rtmp://$IP:1935/live/cap" --bitrate "$BITRATE" --sei-every "$SEI_EVERY" >"$OUT/publish.log" 2>&1 &
PUB_PID=$!
i=0
until nsx curl -s "http://$IP:8080/api/v1/streams" | grep -q '"publishing":true'; do
    i=$((i + 1))
    if [ $i -gt 200 ]; then echo "capacity-run: stream not live" >&2; cat "$OUT/publish.log" >&2; exit 1; fi
    sleep 0.1
done
sleep 2 # a couple of GOPs in the cache

# UDP counters of the namespace: RcvbufErrors = datagrams dropped at a full receive
# buffer (the loadgen not keeping up), SndbufErrors = the server's sends refused.
udp_counters() { nscx awk '/^Udp:/ { if (!h) { split($0, k); h = 1 } else { for (i = 2; i <= NF; i++) printf "%s=%s ", k[i], $i; print "" } }' /proc/net/snmp; }
udp_counters >"$OUT/udp-before.txt"
RSS0=$(server_rss_kb)
HZ=$(getconf CLK_TCK)
S0=$(server_ticks)
T0=$(date +%s.%N)
# Steady state: server CPU from 5 s after the ramp ends to 5 s before the hold ends.
STEADY_FROM=$(awk -v n="$VIEWERS" -v r="$RAMP" 'BEGIN { printf "%d", n / r + 5 }')
STEADY_LEN=$(awk -v n="$VIEWERS" -v r="$RAMP" -v d="$DURATION" 'BEGIN { l = d - n / r - 10; if (l < 1) l = 1; printf "%d", l }')
case "${PROTOCOL:-webrtc}" in
    webrtc) URL="http://$IP:8080/whep/live/cap" ;;
    flv) URL="http://$IP:8088/live/cap.flv" ;;
    rtmp) URL="rtmp://$IP:1935/live/cap" ;;
    *) echo "capacity-run: PROTOCOL must be webrtc, flv or rtmp" >&2; exit 2 ;;
esac
ip netns exec "$NSC" taskset -c "$LOADGEN_CORE" "$LOADGEN_BIN" --url "$URL" --protocol "${PROTOCOL:-webrtc}" \
    --viewers "$VIEWERS" --ramp "$RAMP" --duration "$DURATION" --verify-share "$VERIFY_SHARE" \
    --threads "$THREADS" --quiet --json "$OUT/report.json" ${LOADGEN_ARGS:-} &
LOADGEN_PID=$!
# Datagrams delivered in the namespace (nearly all of them to the loadgen's viewers).
in_datagrams() { nscx awk '/^Udp:/ { if (h) print $2; h = 1 }' /proc/net/snmp; }
# Busy and total jiffies of one core (everyone's work on it, not just ours).
core_jiffies() { awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
(
    sleep "$STEADY_FROM"; a=$(server_ticks); la=$(ticks "$LOADGEN_PID"); da=$(in_datagrams); ta=$(date +%s.%N)
    sa=$(core_jiffies "$SERVER_CORE"); ca=$(core_jiffies "$LOADGEN_CORE")
    sleep "$STEADY_LEN"; b=$(server_ticks); lb=$(ticks "$LOADGEN_PID"); db=$(in_datagrams); tb=$(date +%s.%N)
    sb=$(core_jiffies "$SERVER_CORE"); cb=$(core_jiffies "$LOADGEN_CORE"); rss=$(server_rss_kb)
    echo "$RSS0 $rss" | awk -v n="$VIEWERS" '{ printf "server RSS %.1f MB before the viewers, %.1f MB in the hold: %.1f kB per viewer\n", $1 / 1024, $2 / 1024, ($2 - $1) / n }' >"$OUT/memory.txt"
    echo "$sa $sb" | awk -v c="$SERVER_CORE" '{ printf "core %s (server) busy %.0f%% (all processes)\n", c, 100 * ($3 - $1) / ($4 - $2) }' >"$OUT/cores.txt"
    echo "$ca $cb" | awk -v c="$LOADGEN_CORE" '{ printf "core %s (loadgen) busy %.0f%% (all processes)\n", c, 100 * ($3 - $1) / ($4 - $2) }' >>"$OUT/cores.txt"
    awk -v a="$a" -v b="$b" -v la="$la" -v lb="$lb" -v da="$da" -v db="$db" -v ta="$ta" -v tb="$tb" -v hz="$HZ" -v n="$VIEWERS" 'BEGIN {
        t = tb - ta; lcpu = (lb - la) / hz
        printf "steady hold (%.0f s, %d viewers requested): server %.1f%% of one core, loadgen %.1f%% = %.0f us per viewer-second, %.2f us per datagram (%.0f datagrams/s per viewer)\n",
            t, n, 100 * (b - a) / hz / t, 100 * lcpu / t, 1e6 * lcpu / t / n, 1e6 * lcpu / (db - da), (db - da) / t / n }' >"$OUT/steady.txt"
) &
SAMPLER=$!
set +e
wait "$LOADGEN_PID"
RC=$?
set -e
S1=$(server_ticks)
T1=$(date +%s.%N)
udp_counters >"$OUT/udp-after.txt"
echo "udp before: $(cat "$OUT/udp-before.txt")"
echo "udp after:  $(cat "$OUT/udp-after.txt")"
awk -v s0="$S0" -v s1="$S1" -v t0="$T0" -v t1="$T1" -v hz="$HZ" -v n="$VIEWERS" 'BEGIN {
    cpu = (s1 - s0) / hz; wall = t1 - t0;
    printf "server cpu: %.1f s over %.1f s wall = %.1f%% of one core (serve + control, incl. ramp/teardown)\n", cpu, wall, 100 * cpu / wall
}' | tee "$OUT/server-cpu.txt"
wait "$SAMPLER" 2>/dev/null || true
cat "$OUT/steady.txt" "$OUT/cores.txt" "$OUT/memory.txt" 2>/dev/null | tee -a "$OUT/server-cpu.txt" || true
echo "report: $OUT/report.json (loadgen exit $RC)"
exit $RC
