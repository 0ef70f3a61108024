#!/usr/bin/env bash
# Fuzzes every decoder of untrusted input (shoal::fuzz, targets in fuzz/)
# for SECONDS each (default 600), JOBS at a time (default: the cores), then
# minimizes each corpus into fuzz/corpus/<target> (kept in the repository,
# replayed by `cargo test`: tests/fuzz_corpus.rs). A crash is copied to
# fuzz/regressions/<target>/ and fails the script, as does a target that
# ran no input.
#
# Needs the nightly toolchain (libFuzzer's sanitizer flags) and cargo-fuzz
# (installed here from crates.io if missing). Prints one line per target:
# executions, executions per second, coverage (edges) and corpus size.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=${SECONDS_EACH:-600}
JOBS=${JOBS:-$(nproc)}
TARGETS=${TARGETS:-"sync_message join_message gossip liveness_hello manifest api_body join_token protobuf_body"}
rustup toolchain list | grep -q nightly || { echo "bench/fuzz.sh needs the nightly toolchain (rustup toolchain install nightly)"; exit 2; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo +nightly fuzz build -O   # every target (it takes one name or none)
mkdir -p logs
run() {
  local t=$1
  mkdir -p corpus/$t regressions/$t
  # A fresh working corpus seeded with the kept one; artifacts per target.
  rm -rf work/$t work/found-$t && mkdir -p work/$t work/found-$t
  cargo +nightly fuzz run -O "$t" "work/$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" \
    -artifact_prefix="work/found-$t/" -print_final_stats=1 >"logs/$t.log" 2>&1 || true
}
pids=()
for t in $TARGETS; do
  run "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$JOBS" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
wait
failed=0
printf '| target | executions | exec/s | coverage (edges) | corpus kept | crashes |\n|---|---|---|---|---|---|\n'
for t in $TARGETS; do
  # Keep a minimized corpus: the union of the kept one and what this run found.
  cargo +nightly fuzz cmin -O "$t" "work/$t" >/dev/null 2>&1 || true
  cp -n work/$t/* "corpus/$t/" 2>/dev/null || true
  cargo +nightly fuzz cmin -O "$t" "corpus/$t" >/dev/null 2>&1 || true
  log="logs/$t.log"
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  eps=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  # What this run found (crash-, oom-, timeout-, leak-) is kept as a
  # regression input, replayed by `cargo test` once fixed.
  crashes=$(find "work/found-$t" -type f | wc -l)
  cp work/found-$t/* "regressions/$t/" 2>/dev/null || true
  kept=$(ls "corpus/$t" | wc -l)
  printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "$runs" "$eps" "$cov" "$kept" "$crashes"
  [ "$crashes" -eq 0 ] || failed=1
  # A target that did not run (no build, a broken corpus) is no pass.
  [ "${runs:-0}" -gt 0 ] || { echo "fuzz target $t ran no input: see fuzz/logs/$t.log" >&2; failed=1; }
done
rm -rf work
exit $failed
