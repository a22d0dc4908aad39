#!/bin/sh
# Fetches Debian 13 (trixie)'s real RCCL (package librccl1) WITHOUT installing it: the host is
# Debian 12, so apt is pointed at a temporary trixie sources list with its own lists/cache
# directories (the host's apt state, sources and dpkg database are never written), the .deb is
# downloaded with `apt-get download` and unpacked with `dpkg-deb -x`.
# Usage: tests/standins/fetch-real-rccl.sh      (prints the path of librccl.so.1)
#   BTHOST_REAL_RCCL_DIR  where to unpack (default /var/cache/bthost/librccl)
#   BTHOST_TRIXIE_MIRROR  archive mirror (default: the host's Debian mirror, else deb.debian.org)
#   BTHOST_TRIXIE_ROOT    fallback: a trixie debootstrap root whose apt cache may hold the .deb
# Idempotent: when the library is already unpacked it only prints the path.
set -eu

DEST=${BTHOST_REAL_RCCL_DIR:-/var/cache/bthost/librccl}
TRIPLET=x86_64-linux-gnu
LIB="$DEST/usr/lib/$TRIPLET/librccl.so.1"

if [ -e "$LIB" ]; then
    echo "$LIB"
    exit 0
fi

# The host's Debian mirror (first non-security "URIs:" / "deb" line), or deb.debian.org.
mirror=${BTHOST_TRIXIE_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        sed -n -e 's/^URIs:[[:space:]]*\(http[^[:space:]]*\/debian\)\/*[[:space:]]*$/\1/p' \
               -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\(http[^[:space:]]*\/debian\)\/*[[:space:]].*/\2/p' |
        head -n 1)
    mirror=${mirror:-http://deb.debian.org/debian}
fi

work=$(mktemp -d /tmp/bthost-fetch-rccl.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/parts" "$work/prefs" "$work/dl"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb [signed-by=$keyring] $mirror trixie main" > "$work/sources.list"

apt_opts="-o Dir::Etc::SourceList=$work/sources.list -o Dir::Etc::SourceParts=$work/parts
 -o Dir::Etc::Preferences=$work/prefs/none -o Dir::Etc::PreferencesParts=$work/prefs
 -o Dir::State::Lists=$work/lists -o Dir::Cache=$work/cache
 -o Dir::State::status=/dev/null -o APT::Architecture=amd64 -o APT::Architectures=amd64
 -o APT::Sandbox::User=root -o Acquire::Languages=none -o Debug::NoLocking=1"

deb=
# shellcheck disable=SC2086
if apt-get -qq $apt_opts update >"$work/update.log" 2>&1; then
    # shellcheck disable=SC2086
    (cd "$work/dl" && apt-get -qq $apt_opts download librccl1 >"$work/download.log" 2>&1) || true
    deb=$(ls "$work"/dl/librccl1_*.deb 2>/dev/null | head -n 1 || true)
fi

if [ -z "$deb" ]; then
    # Fallback: a trixie debootstrap root (tests/bpftrace/setup-trixie.sh) may have the .deb cached.
    root=${BTHOST_TRIXIE_ROOT:-/var/cache/bthost/trixie}
    deb=$(ls "$root"/var/cache/apt/archives/librccl1_*.deb 2>/dev/null | head -n 1 || true)
fi

if [ -z "$deb" ]; then
    echo "fetch-real-rccl: could not download librccl1 from $mirror trixie" >&2
    cat "$work/update.log" "$work/download.log" 2>/dev/null | tail -n 20 >&2
    exit 1
fi

mkdir -p "$DEST"
dpkg-deb -x "$deb" "$DEST"
dpkg-deb -f "$deb" Package Version > "$DEST/PACKAGE"   # record which package version was unpacked
if [ ! -e "$LIB" ]; then
    echo "fetch-real-rccl: $deb did not contain usr/lib/$TRIPLET/librccl.so.1" >&2
    exit 1
fi
echo "$LIB"
