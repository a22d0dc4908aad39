#!/usr/bin/env bash
# Make a newer Debian's bpftrace (and, for sid, today's ROCm) usable on this Debian 12 host.
#
#   setup-root.sh trixie   Debian 13: bpftrace 0.23.x
#   setup-root.sh sid      Debian sid: bpftrace 0.27.x and HIP 6.4 (libamdhip64.so.6); from
#                          experimental HIP 7.2 (.so.7), HSA 7.2 and RCCL 7.2.4
#
# Builds a minimal root with debootstrap, installs bpftrace (and the suite's libraries) in it,
# and writes "$ROOT/bpftrace-host": a wrapper that runs the root's bpftrace on the HOST
# filesystem (no chroot) through the root's own dynamic loader, so uprobe paths and `-c ./prog`
# mean host files. The sid root is also a whole Debian sid machine: programs linked against its
# HIP 6/7 run in it (chroot), and bthost itself runs there as a user of sid would run it. See
# README.md next to this script.
#
# Idempotent: when the wrapper already reports the suite's bpftrace and its libraries are
# there, it does nothing. Needs root (debootstrap, chroot). Last line of stdout: the wrapper's
# path. All progress messages go to stderr; the noisy tools log to "$ROOT.log".
#
# Environment:
#   BTHOST_TRIXIE_ROOT / BTHOST_SID_ROOT   where the root lives (default /var/cache/bthost/SUITE)
#   BTHOST_DEBIAN_MIRROR  Debian mirror (default: the host's apt mirror for
#                         its main suite, else http://deb.debian.org/debian)
set -euo pipefail

SUITE="${1:-}"
log() { echo "setup-root${SUITE:+ $SUITE}: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Per suite: the root, the bpftrace it must report, the packages of the suite, those of
# experimental (installed with -t experimental), and a file whose presence says they are in.
case "$SUITE" in
    trixie)
        ROOT="${BTHOST_TRIXIE_ROOT:-/var/cache/bthost/trixie}"
        WANT_VERSION_RE='^bpftrace v0\.23\.'
        PACKAGES=(bpftrace)
        EXPERIMENTAL=()
        LAST_FILE=usr/bin/bpftrace
        ;;
    sid)
        ROOT="${BTHOST_SID_ROOT:-/var/cache/bthost/sid}"
        WANT_VERSION_RE='^bpftrace v0\.27\.'
        # Two HIPs side by side, as a ROCm machine often has them (each its own soname). sid's
        # libamdhip64-5 (5.7.1) is not installable there (its libamd-comgr2 is gone).
        PACKAGES=(bpftrace libamdhip64-6)
        EXPERIMENTAL=(libamdhip64-7 libhsa-runtime64-1 librccl1)
        LAST_FILE=usr/lib/x86_64-linux-gnu/librccl.so.1
        ;;
    *) die "usage: setup-root.sh trixie|sid" ;;
esac
ROOT="${ROOT%/}"
WRAPPER="$ROOT/bpftrace-host"
LOG="$ROOT.log"

wrapper_ok() {
    [[ -x "$WRAPPER" && -e "$ROOT/$LAST_FILE" ]] &&
        "$WRAPPER" --version 2>/dev/null | grep -Eq "$WANT_VERSION_RE"
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
    log "debootstrap $SUITE (minbase) from $MIRROR into $WORK (log: $LOG)"
    t0=$SECONDS
    run_logged debootstrap --variant=minbase "$SUITE" "$WORK" "$MIRROR"
    log "debootstrap done in $((SECONDS - t0))s"
    mv "$WORK" "$ROOT"
fi

# --- 4. bpftrace (and the suite's libraries) inside the root ---------------
if [[ ! -e "$ROOT/$LAST_FILE" || ! -x "$ROOT/usr/bin/bpftrace" ]]; then
    log "installing ${PACKAGES[*]} ${EXPERIMENTAL[*]} in the $SUITE root"
    t0=$SECONDS
    in_root() {
        chroot "$ROOT" /usr/bin/env -i \
            PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
            DEBIAN_FRONTEND=noninteractive "$@"
    }
    # The archive's Release files read as expired from here (a clock ahead of the mirror's
    # snapshot): without this, apt-get update refuses sid.
    echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99bthost-no-valid-until"
    if [[ ${#EXPERIMENTAL[@]} -gt 0 ]]; then
        echo "deb $MIRROR experimental main" >"$ROOT/etc/apt/sources.list.d/experimental.list"
    fi
    run_logged in_root apt-get update
    run_logged in_root apt-get install -y --no-install-recommends "${PACKAGES[@]}"
    if [[ ${#EXPERIMENTAL[@]} -gt 0 ]]; then
        run_logged in_root apt-get install -y --no-install-recommends -t experimental "${EXPERIMENTAL[@]}"
    fi
    run_logged in_root apt-get clean
    log "installed in $((SECONDS - t0))s"
fi

# --- 5. the wrapper -------------------------------------------------------
# Runs the root's loader with --library-path (NOT LD_LIBRARY_PATH), so only the
# bpftrace process uses the root's libs; children started with -c / system()
# are ordinary host processes with host libraries.
cat >"$WRAPPER.tmp" <<EOF
#!/bin/sh
# Generated by tests/bpftrace/setup-root.sh: runs Debian $SUITE's bpftrace
# from this root on the HOST filesystem (no chroot): all paths in
# probes, -c, -o, -I and #include refer to host files.
root=\$(dirname "\$(readlink -f "\$0")")
lib="\$root/usr/lib/$TRIPLET"
exec "\$lib/$LDSO" --library-path "\$lib:\$root/usr/lib" "\$root/usr/bin/bpftrace" "\$@"
EOF
chmod 755 "$WRAPPER.tmp"
mv "$WRAPPER.tmp" "$WRAPPER"

if ! wrapper_ok; then
    "$WRAPPER" --version >&2 || true
    die "$WRAPPER does not report the bpftrace $SUITE has ($WANT_VERSION_RE)"
fi
log "ready: $("$WRAPPER" --version 2>/dev/null)"
echo "$WRAPPER"
