#!/bin/sh
# Runs every test of the project on a fresh Debian machine: installs what the
# tests need (ffmpeg, Chromium, iproute2, OpenSSL headers) from apt, then the
# lint gate and the whole test suite (unit, protocol vectors, robustness, and
# the end-to-end tests that publish with ffmpeg and play in headless Chromium
# inside private network namespaces; those need root), then a short fuzzing
# pass over every parser.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-test-deps.sh
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# A short fuzzing pass over every parser target (DESIGN.md §5): 5 s each,
# one shared build dir, unoptimised (FUZZ_DEV) and against the system
# OpenSSL (OPENSSL_NO_VENDOR): building the targets optimised with the
# vendored OpenSSL took ~10 of CI's 35 minutes. The longer runs by hand
# (docs/fuzzing.md) use the optimised build and the shipped OpenSSL.
FUZZ_DEV=1 OPENSSL_NO_VENDOR=1 FUZZ_TARGET_DIR="$PWD/target/fuzz" sh scripts/fuzz.sh 5
