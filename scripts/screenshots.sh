#!/bin/sh
# Screenshots of the web player and the swipe feed for the README, taken with
# Chromium's Page.captureScreenshot by the ignored `screenshots` test in
# tests/player.rs: it starts rts in a fresh network namespace, publishes a few
# test-pattern rooms (one with the wall-clock SEI of tools/publish), opens
# /play/live/shop (1280x720, overlay on) and /feed (phone-sized, after two
# swipes), and writes docs/screenshots/player.png and feed.png.
#
# Run by hand when the pages change (needs root for the namespace, ffmpeg and
# chromium: scripts/install-test-deps.sh); not part of CI.
set -eu
cd "$(dirname "$0")/.."
OUT="${1:-docs/screenshots}"
mkdir -p "$OUT"
SCREENSHOT_DIR="$(cd "$OUT" && pwd)" cargo test --test player screenshots -- --ignored --exact --nocapture
ls -l "$OUT"/*.png
