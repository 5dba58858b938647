#!/bin/sh
# Applies (and reverts) the sysctls recommended for an rts edge host.
#   kernel-tuning/tune.sh show     current values
#   kernel-tuning/tune.sh apply    save current values, then apply ours
#   kernel-tuning/tune.sh revert   restore the saved values
# Needs root. The saved values live in $RTS_TUNE_STATE (default
# /var/lib/rts/sysctl.saved) so `revert` works after a reboot of rts, not of
# the host (sysctls reset on host reboot anyway).
set -eu

STATE="${RTS_TUNE_STATE:-/var/lib/rts/sysctl.saved}"

# key value  -- why
SETTINGS='
net.core.wmem_max 16777216
net.core.rmem_max 16777216
net.core.wmem_default 1048576
net.core.netdev_max_backlog 16384
net.core.netdev_budget 600
net.core.busy_poll 0
net.core.busy_read 0
net.ipv4.ip_local_port_range 10000 65000
'
# Why:
# - wmem_max/rmem_max: each shard asks for an 8 MiB SO_SNDBUF and 4 MiB
#   SO_RCVBUF; the kernel silently caps them at these maxima (default 208 KiB),
#   and a keyframe to thousands of viewers is several MiB in one tick.
# - netdev_max_backlog / netdev_budget: more packets per softirq round on
#   receive (STUN, RTCP and DTLS from many viewers).
# - udp_mem is left alone: the kernel sizes it from RAM (larger than any
#   fixed value we would pick on big hosts).
# - busy_poll/busy_read stay 0: the shard blocks in io_uring; busy polling
#   would burn the core the shard needs.
# - ip_local_port_range: the load generator opens one UDP socket per viewer.

show() {
    echo "$SETTINGS" | while read -r key _rest; do
        [ -n "$key" ] || continue
        printf '%s = %s\n' "$key" "$(sysctl -n "$key" 2>/dev/null | tr '\t' ' ' || echo '?')"
    done
}

apply() {
    mkdir -p "$(dirname "$STATE")"
    if [ ! -f "$STATE" ]; then
        show > "$STATE"
        echo "saved current values to $STATE"
    fi
    echo "$SETTINGS" | while read -r key rest; do
        [ -n "$key" ] || continue
        sysctl -q -w "$key=$rest" || echo "could not set $key (kernel without it?)" >&2
    done
    show
    cat <<'ADVICE'

Not changed by this script (host-specific):
- IRQ affinity: keep the NIC's receive-queue interrupts off the cores in
  [dataplane] cores (write masks to /proc/irq/<n>/smp_affinity, or stop
  irqbalance and pin them), so softirq work does not steal shard time.
- RPS/XPS: on a NIC with fewer queues than cores, spread receive processing
  with /sys/class/net/<dev>/queues/rx-*/rps_cpus.
- Offloads: keep TX checksum offload and GSO/TSO on (ethtool -k <dev>); rts
  sends UDP_SEGMENT batches and falls back (counted) only if the device
  refuses them.
ADVICE
}

revert() {
    [ -f "$STATE" ] || { echo "nothing saved at $STATE" >&2; exit 1; }
    while IFS= read -r line; do
        key=${line%% = *}
        value=${line#* = }
        [ "$value" = "?" ] && continue
        sysctl -q -w "$key=$value" || echo "could not restore $key" >&2
    done < "$STATE"
    rm -f "$STATE"
    echo "restored"
    show
}

case "${1:-show}" in
    show) show ;;
    apply) apply ;;
    revert) revert ;;
    *) echo "usage: $0 show|apply|revert" >&2; exit 2 ;;
esac
