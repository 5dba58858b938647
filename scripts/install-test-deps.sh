#!/bin/sh
# Installs what the integration tests need (ffmpeg, headless Chromium, iproute2 for
# network namespaces, redis-server for the cluster tests, OpenSSL headers for the build, libopus and FFmpeg/libx264
# headers plus clang for rts-transcode's bindings) from the distribution's apt
# repositories. Idempotent: when everything is installed it touches nothing, not even
# `apt-get update`. Debian/Ubuntu only; needs root (or sudo). Also pip-installs aiortc
# (tests/loadgen_interop.rs: an independent WebRTC stack) unless python3 already has it.
set -eu

# rts-transcode: libopus-dev (Opus encoder), libav*-dev (h264 decoder, libx264 encoder;
# Debian's libavcodec links libx264), clang + libclang-dev (bindgen in ffmpeg-sys-next).
TRANSCODE_PACKAGES="libopus-dev libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev clang libclang-dev"
PACKAGES="ffmpeg chromium iproute2 nftables redis-server systemd binutils libssl-dev pkg-config ca-certificates $TRANSCODE_PACKAGES"
# --build-only: just what compiling rts needs (OpenSSL headers for DTLS, transcoding libraries).
BUILD_ONLY=0
if [ "${1:-}" = "--build-only" ]; then
    PACKAGES="libssl-dev pkg-config ca-certificates $TRANSCODE_PACKAGES"
    BUILD_ONLY=1
fi

# aiortc (Python WebRTC, with PyAV and its bundled H.264 encoder) for the interop test.
install_aiortc() {
    if [ "$BUILD_ONLY" = 1 ]; then
        return 0
    fi
    if python3 -c "import aiortc" >/dev/null 2>&1; then
        echo "install-test-deps: aiortc already installed"
        return 0
    fi
    echo "install-test-deps: installing aiortc (pip)"
    # The interop tests (tests/loadgen_interop.rs, tests/whep_aiortc_client.rs)
    # fail without it, so a failed install stops here. Debian marks its Python
    # externally managed (PEP 668): then install beside it.
    if python3 -m pip install --quiet aiortc || python3 -m pip install --quiet --break-system-packages aiortc; then
        echo "install-test-deps: installed aiortc"
    else
        echo "install-test-deps: pip install aiortc failed; the aiortc interop tests need it" >&2
        exit 1
    fi
}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: apt/dpkg not found; install by hand: $PACKAGES" >&2
    exit 1
fi

missing=""
for pkg in $PACKAGES; do
    if installed "$pkg"; then
        echo "install-test-deps: $pkg already installed"
    else
        missing="$missing $pkg"
    fi
done

if [ -z "$missing" ]; then
    install_aiortc
    echo "install-test-deps: nothing to do"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-test-deps: missing:$missing; run as root" >&2
    exit 1
fi

echo "install-test-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
# shellcheck disable=SC2086 # word splitting of the package list is intended
$SUDO apt-get install -y --no-install-recommends $missing
echo "install-test-deps: installed:$missing"
install_aiortc
