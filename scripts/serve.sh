#!/bin/sh
# Builds rts in release mode and starts it on its embedded defaults
# (RTMP :1935, HTTP :8080, WebRTC UDP :8000+shard, one shard per core).
# Extra arguments go to `rts serve` (e.g. --config rts.toml).
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-test-deps.sh --build-only
exec cargo run --release --locked -- "$@" serve
