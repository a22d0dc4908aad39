#!/bin/sh
# Builds the GPU-runtime stand-ins and the multi-rank workload:
#   OUTDIR/libamdhip64.so.5   HIP runtime stand-in   (soname libamdhip64.so.5, symbols @hip_4.2)
#   OUTDIR/librccl.so.1       RCCL stand-in          (soname librccl.so.1, needs the HIP one)
#   OUTDIR/rccl_ranks         tests/workloads/rccl_ranks.c linked against both (rpath OUTDIR)
#   OUTDIR/torch_loop         tests/workloads/torch_loop.c, linked the same way
#   OUTDIR/selftest           with STANDIN_SELFTEST=1 only: tests/standins/selftest.c (the
#                             stand-ins' asynchronous model), built and run (output on stderr;
#                             a failure fails the build). tests/standins/selftest.sh does that.
# Usage: tests/standins/build.sh [OUTDIR]     (default tests/standins/out; prints OUTDIR)
# Idempotent: a target is rebuilt only when it is older than one of its sources.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
CC=${CC:-cc}
CFLAGS="-shared -fPIC -O1 -g -Wall -Wextra -Wno-unused-parameter -fvisibility=hidden"

# stale TARGET DEPS...: true if TARGET is missing or older than a dependency.
stale() {
    t=$1
    shift
    [ -e "$t" ] || return 0
    for d in "$@"; do
        [ "$d" -nt "$t" ] && return 0
    done
    return 1
}

hdr="$here/standin_api.h"
priv="$here/standin_private.h"
if stale "$out/libamdhip64.so.5" "$here/hip_standin.c" "$here/hip_standin.map" "$hdr" "$priv" "$0"; then
    $CC $CFLAGS -Wl,-soname,libamdhip64.so.5 -Wl,--version-script="$here/hip_standin.map" \
        -o "$out/libamdhip64.so.5.tmp" "$here/hip_standin.c" -lpthread
    mv -f "$out/libamdhip64.so.5.tmp" "$out/libamdhip64.so.5"
fi

if stale "$out/librccl.so.1" "$here/rccl_standin.c" "$hdr" "$priv" "$out/libamdhip64.so.5" "$0"; then
    $CC $CFLAGS -fwrapv -Wl,-soname,librccl.so.1 -o "$out/librccl.so.1.tmp" "$here/rccl_standin.c" \
        -L"$out" -l:libamdhip64.so.5 -Wl,-rpath,'$ORIGIN' -lpthread -lrt
    mv -f "$out/librccl.so.1.tmp" "$out/librccl.so.1"
fi

# link NAME SRC: a program linked against both stand-ins (found in OUTDIR at run time).
link() {
    if stale "$out/$1" "$2" "$hdr" "$out/librccl.so.1" "$out/libamdhip64.so.5" "$0"; then
        $CC -O1 -g -Wall -Wextra -o "$out/$1.tmp" "$2" \
            -L"$out" -l:librccl.so.1 -l:libamdhip64.so.5 -Wl,-rpath,"$out" -lpthread
        mv -f "$out/$1.tmp" "$out/$1"
    fi
}
link rccl_ranks "$root/tests/workloads/rccl_ranks.c"
link torch_loop "$root/tests/workloads/torch_loop.c"
if [ "${STANDIN_SELFTEST:-0}" = 1 ]; then
    link selftest "$here/selftest.c"
    "$out/selftest" >&2
fi

echo "$out"
