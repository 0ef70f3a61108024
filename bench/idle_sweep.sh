#!/usr/bin/env bash
# Traffic at rest per node, chitchat against SWIM, from netsim's idle
# scenario, for each cluster size given (default 5 20 50 100). Writes
# docs/membership-at-rest.csv and draws docs/membership-at-rest.svg.
#   bench/idle_sweep.sh 5 20 50 100 300
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p netsim
sizes=("${@:-5 20 50 100}")
out=docs/membership-at-rest.csv
mkdir -p docs
echo "nodes,engine,bytes_per_node_sec_at_rest,wall_secs" > "$out"
for n in ${sizes[@]}; do
  for m in swim chitchat; do
    r=$(target/release/netsim --scenario configs/netsim/idle.toml --nodes "$n" --seed 7 --membership "$m" --out /tmp/netsim-idle)
    rest=$(echo "$r" | grep "^| bytes sent per node per second at rest" | awk -F'|' '{gsub(/ /,"",$3); print $3}')
    wall=$(echo "$r" | grep "^| wall time" | awk -F'|' '{gsub(/ /,"",$3); print $3}')
    echo "$n,$m,$rest,$wall" | tee -a "$out"
  done
done
python3 bench/membership_chart.py "$out" docs/membership-at-rest.svg
