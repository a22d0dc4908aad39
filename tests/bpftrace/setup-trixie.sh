#!/usr/bin/env bash
# Debian 13's bpftrace 0.23 on this host: see setup-root.sh (kept for the paths the docs name).
exec "$(dirname "$0")/setup-root.sh" trixie "$@"
