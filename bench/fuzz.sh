#!/usr/bin/env bash
# Fuzzes every decoder of untrusted input (shoal::fuzz, targets in fuzz/)
# for SECONDS each (default 600), JOBS at a time (default: the cores), then
# minimizes each corpus into fuzz/corpus/<target> (kept in the repository,
# replayed by `cargo test`: tests/fuzz_corpus.rs). A crash is copied to
# fuzz/regressions/<target>/ and fails the script.
#
# Needs the nightly toolchain (libFuzzer's sanitizer flags) and cargo-fuzz
# (installed here from crates.io if missing). Prints one line per target:
# executions, executions per second, coverage (edges) and corpus size.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=${SECONDS_EACH:-600}
JOBS=${JOBS:-$(nproc)}
TARGETS=${TARGETS:-"sync_message join_message gossip liveness_hello manifest api_body join_token"}
rustup toolchain list | grep -q nightly || { echo "bench/fuzz.sh needs the nightly toolchain (rustup toolchain install nightly)"; exit 2; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo +nightly fuzz build -O $TARGETS
mkdir -p logs
run() {
  local t=$1
  mkdir -p corpus/$t regressions/$t
  # A fresh working corpus seeded with the kept one; artifacts per target.
  rm -rf work/$t && mkdir -p work/$t
  cargo +nightly fuzz run -O "$t" "work/$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" \
    -artifact_prefix="regressions/$t/" -print_final_stats=1 >"logs/$t.log" 2>&1 || true
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
  rm -rf "min/$t" && mkdir -p "min/$t"
  cargo +nightly fuzz cmin -O "$t" "work/$t" >/dev/null 2>&1 || true
  cp -n work/$t/* "corpus/$t/" 2>/dev/null || true
  cargo +nightly fuzz cmin -O "$t" "corpus/$t" >/dev/null 2>&1 || true
  log="logs/$t.log"
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  eps=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  crashes=$(find "regressions/$t" -type f -name 'crash-*' 2>/dev/null | wc -l)
  kept=$(ls "corpus/$t" | wc -l)
  printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "$runs" "$eps" "$cov" "$kept" "$crashes"
  [ "$crashes" -eq 0 ] || failed=1
done
rm -rf work min
exit $failed
