#!/bin/sh
# Builds the Debian package: target/debian/rts_<version>_<arch>.deb.
#
#   scripts/build-deb.sh                 release build, then the package
#   scripts/build-deb.sh --binary PATH   package an existing binary (tests)
#   scripts/build-deb.sh --out DIR       where the .deb goes (default target/debian)
#   RTS_DEB_FAST=1 scripts/build-deb.sh  gzip -1 instead of xz (tests)
#
# Contents: /usr/bin/rts, the systemd unit (packaging/rts.service),
# /etc/rts/rts.toml (the embedded defaults, every line commented: `rts
# defaults`; a conffile), the kernel-tuning script and its README, the
# README and license. Depends: the packages of the shared libraries the
# binary links (dpkg -S). The postinst creates the `rts` system user.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=""
OUT="$ROOT/target/debian"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) BIN="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--out DIR]" >&2; exit 2 ;;
    esac
done
if [ -z "$BIN" ]; then
    cargo build --release --locked -p rts
    BIN="$ROOT/target/release/rts"
fi
[ -x "$BIN" ] || { echo "build-deb: no binary at $BIN" >&2; exit 1; }

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ARCH=$(dpkg --print-architecture)
STAGE=$(mktemp -d)
chmod 0755 "$STAGE"
trap 'rm -rf "$STAGE"' EXIT

install -D -m 0755 "$BIN" "$STAGE/usr/bin/rts"
install -D -m 0644 packaging/rts.service "$STAGE/lib/systemd/system/rts.service"
mkdir -p "$STAGE/etc/rts"
"$BIN" defaults > "$STAGE/etc/rts/rts.toml"
chmod 0644 "$STAGE/etc/rts/rts.toml"
install -D -m 0755 kernel-tuning/tune.sh "$STAGE/usr/share/rts/kernel-tuning/tune.sh"
install -D -m 0644 kernel-tuning/README.md "$STAGE/usr/share/rts/kernel-tuning/README.md"
install -D -m 0644 README.md "$STAGE/usr/share/doc/rts/README.md"
printf 'rts\nLicense: Apache-2.0\nSee /usr/share/common-licenses/Apache-2.0\n' > "$STAGE/usr/share/doc/rts/copyright"

# The packages providing the libraries the binary needs (NEEDED entries).
DEPENDS=$(
    for lib in $(objdump -p "$BIN" | awk '/NEEDED/ {print $2}'); do
        path=$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')
        [ -n "$path" ] || continue
        dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1
    done | sort -u | paste -sd, - | sed 's/,/, /g'
)
SIZE=$(du -sk "$STAGE" | cut -f1)

mkdir -p "$STAGE/DEBIAN"
cat > "$STAGE/DEBIAN/control" <<CTRL
Package: rts
Version: $VERSION
Architecture: $ARCH
Maintainer: rts maintainers <maintainers@rts.invalid>
Installed-Size: $SIZE
Depends: adduser, $DEPENDS
Section: net
Priority: optional
Homepage: https://github.com/rts-streaming/rts
Description: real-time streaming edge server
 RTMP in (OBS, ffmpeg); WebRTC out to browsers and WHEP, SRS and Alibaba RTS
 clients with sub-second latency; HTTP-FLV, RTMP play and LL-HLS from the same
 stream; NACK/RTX, RED and keyframe recovery; traffic records; cluster mode.
CTRL
echo "/etc/rts/rts.toml" > "$STAGE/DEBIAN/conffiles"
cat > "$STAGE/DEBIAN/postinst" <<'POST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    mkdir -p /var/lib/rts
    if ! getent passwd rts >/dev/null; then
        adduser --system --group --home /var/lib/rts --no-create-home rts >/dev/null
    fi
    chown rts:rts /var/lib/rts
    # Enabled in any case (symlinks only), started where systemd runs.
    if command -v systemctl >/dev/null; then
        systemctl enable rts.service >/dev/null 2>&1 || true
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null || true
        systemctl restart rts.service >/dev/null || true
    fi
fi
POST
cat > "$STAGE/DEBIAN/prerm" <<'PRE'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    systemctl stop rts.service >/dev/null || true
    systemctl disable rts.service >/dev/null || true
fi
PRE
chmod 0755 "$STAGE/DEBIAN/postinst" "$STAGE/DEBIAN/prerm"

mkdir -p "$OUT"
DEB="$OUT/rts_${VERSION}_${ARCH}.deb"
COMPRESS=""
[ "${RTS_DEB_FAST:-0}" = 1 ] && COMPRESS="-Zgzip -z1"
# shellcheck disable=SC2086 # $COMPRESS: empty or two words
dpkg-deb --root-owner-group $COMPRESS --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
