#!/usr/bin/env bash
# Make Debian 13 (trixie)'s bpftrace 0.23.x usable on this (older) Debian host.
#
# Builds a minimal trixie root with debootstrap, installs bpftrace in it, and
# writes "$ROOT/bpftrace-host": a wrapper that runs trixie's bpftrace on the
# HOST filesystem (no chroot) through trixie's own dynamic loader, so uprobe
# paths (/lib/x86_64-linux-gnu/libamdhip64.so.5, ...) and `-c ./prog` mean host
# files. See README.md next to this script.
#
# Idempotent: when the wrapper already reports bpftrace v0.23.x it does nothing.
# Needs root (debootstrap, chroot). Last line of stdout: the wrapper's path.
# All progress messages go to stderr; the noisy tools log to "$ROOT.log".
#
# Environment:
#   BTHOST_TRIXIE_ROOT    where the root lives (default /var/cache/bthost/trixie)
#   BTHOST_DEBIAN_MIRROR  Debian mirror (default: the host's apt mirror for
#                         its main suite, else http://deb.debian.org/debian)
set -euo pipefail

ROOT="${BTHOST_TRIXIE_ROOT:-/var/cache/bthost/trixie}"
ROOT="${ROOT%/}"
WRAPPER="$ROOT/bpftrace-host"
LOG="$ROOT.log"
WANT_VERSION_RE='^bpftrace v0\.23\.'

log() { echo "setup-trixie: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

wrapper_ok() {
    [[ -x "$WRAPPER" ]] && "$WRAPPER" --version 2>/dev/null | grep -Eq "$WANT_VERSION_RE"
}

# Fast path (no lock, no root needed): already set up.
if wrapper_ok; then
    echo "$WRAPPER"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap/chroot)"

case "$(uname -m)" in
    x86_64)  TRIPLET=x86_64-linux-gnu;  LDSO=ld-linux-x86-64.so.2 ;;
    aarch64) TRIPLET=aarch64-linux-gnu; LDSO=ld-linux-aarch64.so.1 ;;
    *) die "unsupported architecture $(uname -m)" ;;
esac

mkdir -p "$(dirname "$ROOT")"
# Serialize concurrent runs (e.g. parallel CI jobs on one machine).
exec 9>"$ROOT.lock"
flock 9
if wrapper_ok; then   # another run finished while we waited
    echo "$WRAPPER"
    exit 0
fi

: >"$LOG"
run_logged() {
    if ! "$@" >>"$LOG" 2>&1; then
        log "command failed: $*"
        log "last lines of $LOG:"
        tail -n 30 "$LOG" >&2
        exit 1
    fi
}

# --- 1. debootstrap on the host -------------------------------------------
export DEBIAN_FRONTEND=noninteractive
if ! command -v debootstrap >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "debootstrap missing and no apt-get"
    log "installing debootstrap"
    if ! apt-get install -y --no-install-recommends debootstrap >>"$LOG" 2>&1; then
        log "apt-get install failed; running apt-get update and retrying"
        run_logged apt-get update
        run_logged apt-get install -y --no-install-recommends debootstrap
    fi
fi

# --- 2. pick the mirror the host already uses (only registries are reachable)
detect_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] || continue
        # deb822 "URIs: x" lines and one-line "deb [opts] x suite" entries;
        # comments ignored; take the first .../debian (not -security) URI.
        sed -e 's/#.*//' "$f" \
            | grep -Eo '(URIs:[[:space:]]*|^deb([[:space:]]+\[[^]]*\])?[[:space:]]+)https?://[^[:space:]]+' \
            | grep -Eo 'https?://[^[:space:]]+' \
            | grep -E '/debian/?$' || true
    done >"$LOG.mirrors"
    head -n 1 "$LOG.mirrors"
    rm -f "$LOG.mirrors"
}
MIRROR="${BTHOST_DEBIAN_MIRROR:-$(detect_mirror)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
MIRROR="${MIRROR%/}"

# --- 3. build the root (atomically: work dir, renamed when complete) ------
# A root left by an interrupted run is rebuilt; a complete root that merely
# lacks bpftrace/the wrapper is reused.
if [[ -d "$ROOT" && ( -d "$ROOT/debootstrap" || ! -x "$ROOT/usr/bin/apt-get" ) ]]; then
    log "removing incomplete root $ROOT"
    rm -rf --one-file-system "$ROOT"
fi

if [[ ! -d "$ROOT" ]]; then
    WORK="$ROOT.work"
    rm -rf --one-file-system "$WORK"
    log "debootstrap trixie (minbase) from $MIRROR into $WORK (log: $LOG)"
    t0=$SECONDS
    run_logged debootstrap --variant=minbase trixie "$WORK" "$MIRROR"
    log "debootstrap done in $((SECONDS - t0))s"
    mv "$WORK" "$ROOT"
fi

# --- 4. bpftrace inside the root ------------------------------------------
if [[ ! -x "$ROOT/usr/bin/bpftrace" ]]; then
    log "installing bpftrace in the trixie root"
    t0=$SECONDS
    in_root() {
        chroot "$ROOT" /usr/bin/env -i \
            PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
            DEBIAN_FRONTEND=noninteractive "$@"
    }
    run_logged in_root apt-get update
    run_logged in_root apt-get install -y --no-install-recommends bpftrace
    run_logged in_root apt-get clean
    log "bpftrace installed in $((SECONDS - t0))s"
fi

# --- 5. the wrapper -------------------------------------------------------
# Runs trixie's loader with --library-path (NOT LD_LIBRARY_PATH), so only the
# bpftrace process uses trixie's libs; children started with -c / system()
# are ordinary host processes with host libraries.
cat >"$WRAPPER.tmp" <<EOF
#!/bin/sh
# Generated by tests/bpftrace/setup-trixie.sh: runs Debian trixie's bpftrace
# (0.23.x) from this root on the HOST filesystem (no chroot): all paths in
# probes, -c, -o, -I and #include refer to host files.
root=\$(dirname "\$(readlink -f "\$0")")
lib="\$root/usr/lib/$TRIPLET"
exec "\$lib/$LDSO" --library-path "\$lib:\$root/usr/lib" "\$root/usr/bin/bpftrace" "\$@"
EOF
chmod 755 "$WRAPPER.tmp"
mv "$WRAPPER.tmp" "$WRAPPER"

if ! wrapper_ok; then
    "$WRAPPER" --version >&2 || true
    die "$WRAPPER does not report bpftrace v0.23.x"
fi
log "ready: $("$WRAPPER" --version 2>/dev/null)"
echo "$WRAPPER"
