#!/bin/sh
# Builds the stand-ins into OUTDIR (default: a temporary folder) and runs their self-test
# (tests/standins/selftest.c): exits non-zero if a check failed.
# Usage: tests/standins/selftest.sh [OUTDIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$(mktemp -d)}
STANDIN_SELFTEST=1 sh "$here/build.sh" "$out" >/dev/null
