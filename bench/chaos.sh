#!/usr/bin/env bash
# The chaos suite's long form: tests/chaos.rs (five real nodes, each in a
# network namespace of its own on a test bridge) with every fault repeated
# CHAOS_ROUNDS times (default 8): 24 kills of `shoal`, 16 machines gone, 4
# minutes of 20 % loss, 32 pauses of 2 s every 10 s (5.3 minutes), plus an
# isolation, a 2|3 split with writes on both sides and clocks an hour off.
# Prints the summary table (the README's). About 13 minutes; needs root,
# iproute2, iptables and libfaketime (Debian: faketime), as `.ci/run` installs.
#   CHAOS_PHASES=kill,pause bench/chaos.sh   # only some faults
set -euo pipefail
cd "$(dirname "$0")/.."
export CHAOS_ROUNDS=${CHAOS_ROUNDS:-8}
# Missing tools (root, iproute2, iptables, libfaketime) fail the run, as
# under CI: a skipped suite prints no table and proves nothing.
export CI=true
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if cargo test --test chaos -- --nocapture >"$out" 2>&1; then status=0; else status=$?; fi
grep -E '^\|' "$out" || true
if [ "$status" -ne 0 ]; then
  grep -E 'panicked|timed out|false deaths:|fenced replica runs' "$out" | head -20
  exit "$status"
fi
