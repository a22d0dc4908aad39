#!/bin/sh
# Builds the GPU-runtime stand-ins and the multi-rank workload:
#   OUTDIR/libamdhip64.so.5   HIP runtime stand-in   (soname libamdhip64.so.5, symbols @hip_4.2)
#   OUTDIR/librccl.so.1       RCCL stand-in          (soname librccl.so.1, needs the HIP one)
#   OUTDIR/rccl_ranks         tests/workloads/rccl_ranks.c linked against both (rpath OUTDIR)
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
if stale "$out/libamdhip64.so.5" "$here/hip_standin.c" "$here/hip_standin.map" "$hdr" "$0"; then
    $CC $CFLAGS -Wl,-soname,libamdhip64.so.5 -Wl,--version-script="$here/hip_standin.map" \
        -o "$out/libamdhip64.so.5.tmp" "$here/hip_standin.c" -lpthread
    mv -f "$out/libamdhip64.so.5.tmp" "$out/libamdhip64.so.5"
fi

if stale "$out/librccl.so.1" "$here/rccl_standin.c" "$hdr" "$out/libamdhip64.so.5" "$0"; then
    $CC $CFLAGS -fwrapv -Wl,-soname,librccl.so.1 -o "$out/librccl.so.1.tmp" "$here/rccl_standin.c" \
        -L"$out" -l:libamdhip64.so.5 -Wl,-rpath,'$ORIGIN' -lpthread -lrt
    mv -f "$out/librccl.so.1.tmp" "$out/librccl.so.1"
fi

src="$root/tests/workloads/rccl_ranks.c"
if stale "$out/rccl_ranks" "$src" "$hdr" "$out/librccl.so.1" "$out/libamdhip64.so.5" "$0"; then
    $CC -O1 -g -Wall -Wextra -o "$out/rccl_ranks.tmp" "$src" \
        -L"$out" -l:librccl.so.1 -l:libamdhip64.so.5 -Wl,-rpath,"$out"
    mv -f "$out/rccl_ranks.tmp" "$out/rccl_ranks"
fi

echo "$out"
