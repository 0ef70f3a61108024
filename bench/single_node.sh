#!/usr/bin/env bash
# Single-node figures: apply -> all Ready for a 10-replica Deployment (p50/p99
# over RUNS runs), node RSS idle and with 50 pods, node CPU over a minute idle.
# Usage: bench/single_node.sh [RUNS] [IDLE_SECONDS]   (builds --release first)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20}
IDLE=${2:-60}
cargo build --release -q
S=$PWD/target/release/shoal
DIR=$(mktemp -d)
IP=127.0.77.1
export SHOAL_SERVER=http://$IP:7420 SHOAL_DATA_DIR=$DIR/data
$S up --data-dir "$DIR/data" --node-ip $IP --name bench >"$DIR/node.log" 2>&1 &
NODE=$!
trap 'kill -TERM $NODE 2>/dev/null; wait $NODE 2>/dev/null; rm -rf "$DIR"' EXIT
until $S version >/dev/null 2>&1; do sleep 0.05; done

rss_kib() { awk '/VmRSS/ {print $2}' /proc/$NODE/status; }
cpu_ticks() { awk '{print $14 + $15}' /proc/$NODE/stat; }

deploy() { # name replicas command
  cat <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1}
spec:
  replicas: $2
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: c
          command: $3
          ports: [{name: http, containerPort: 8080}]
          readinessProbe: {tcpSocket: {port: http}, periodSeconds: 1}
YAML
}

echo "# apply -> 10/10 Ready, $RUNS runs (python3 http.server replicas, readiness tcpSocket, period 1s)"
times=()
for i in $(seq 1 "$RUNS"); do
  t0=$(date +%s%N)
  deploy "w$i" 10 '["python3", "-m", "http.server", "$(PORT)", "--bind", "$(SHOAL_NODE_IP)"]' | $S apply -f - >/dev/null
  until [ "$($S get deployments "w$i" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["readyReplicas"])')" = 10 ]; do sleep 0.02; done
  t1=$(date +%s%N)
  times+=($(( (t1 - t0) / 1000000 )))
  $S delete deployment "w$i" >/dev/null
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {p50=a[int((NR+1)/2)]; p99=a[int(NR*0.99+0.999)]; printf "apply->ready ms: p50=%d p99=%d min=%d max=%d (n=%d)\n", p50, p99, a[1], a[NR], NR}'
until [ -z "$($S get pods -o json | python3 -c 'import json,sys; print("x" if json.load(sys.stdin)["items"] else "")')" ]; do sleep 0.2; done

sleep 5
echo "# node RSS idle (no pods): $(rss_kib) KiB"
c0=$(cpu_ticks); sleep "$IDLE"; c1=$(cpu_ticks)
hz=$(getconf CLK_TCK)
awk -v d=$((c1 - c0)) -v hz="$hz" -v s="$IDLE" 'BEGIN {printf "# node CPU idle over %ds: %.2f%% of one core (%d ticks)\n", s, 100*d/hz/s, d}'

deploy sleepers 50 '["sh", "-c", "exec sleep 100000"]' | sed 's/readinessProbe.*//' | $S apply -f - >/dev/null
until [ "$($S get deployments sleepers -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["readyReplicas"])')" = 50 ]; do sleep 0.2; done
sleep 5
echo "# node RSS with 50 running pods: $(rss_kib) KiB"
$S delete deployment sleepers >/dev/null
