#!/usr/bin/env bash
# Issue 8: the same load on Redis Cluster and on a single Redis, two service instances each, side by side in one run.
#
# Starts two inventoryd instances over the local 3-master cluster (scripts/cluster.sh) and two over the project's
# single Redis (scripts/setup.sh), each with its write-back worker and expiry sweeper, the same MariaDB behind all
# four; then loadgen runs each scenario on both pairs alternately (--rounds, A B A B ...), its connections spread
# over the pair's two instances, and checks every phase (no oversell, stock conserved, reconciler clean after it).
#
#   loadtest/cluster/compare.sh                      # zipf and multi over 1000 items, 64 connections, 3 x 10 s
#   SCENARIOS="mixed" ROUNDS=2 DURATION=15s loadtest/cluster/compare.sh
#   BASELINE=/tmp/inventoryd-before SCENARIOS=multi loadtest/cluster/compare.sh
#
# With BASELINE (an inventoryd built from an earlier commit), the second pair is that binary over the same cluster
# (its own key prefix) instead of the single Redis: a change to the cluster path measured against the version before it.
#
# Results: loadtest/results/ (JSON and HTML per scenario); instance logs under .local/compare/<time>/. The cluster is
# its own (ports from 7690, data under .local/cluster-compare), not the tests' one: its keys would slow their scans.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export INVENTORY_CLUSTER_PORT_BASE="${COMPARE_CLUSTER_PORT_BASE:-7690}"
# shellcheck source=scripts/env.sh
. "$ROOT/scripts/env.sh"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

SCENARIOS="${SCENARIOS:-zipf multi}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
ITEMS="${ITEMS:-1000}"
PORTS_CLUSTER=(18080 18082)
PORTS_SINGLE=(18084 18086)
BASELINE="${BASELINE:-}"
OTHER=single
if [ -n "$BASELINE" ]; then
    [ -x "$BASELINE" ] || die "BASELINE=$BASELINE is not an executable inventoryd"
    OTHER=baseline
fi
LOGS="$INVENTORY_LOCAL_DIR/compare/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$LOGS"
PIDS=()

export INVENTORY_CLUSTER_DIR="$INVENTORY_LOCAL_DIR/cluster-compare"
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    bash "$ROOT/scripts/cluster.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

cd "$ROOT"
bash scripts/setup.sh >"$LOGS/setup.log" 2>&1 || die "scripts/setup.sh failed" "$LOGS/setup.log"
bash scripts/cluster.sh start
step "release build of inventoryd and loadgen"
swift build -c release --product inventoryd >"$LOGS/build.log" 2>&1 || die "build failed" "$LOGS/build.log"
swift build -c release --product loadgen >>"$LOGS/build.log" 2>&1 || die "build failed" "$LOGS/build.log"
.build/release/inventoryd migrate >"$LOGS/migrate.log" 2>&1 || die "migrations failed" "$LOGS/migrate.log"

SEEDS="127.0.0.1:$INVENTORY_CLUSTER_PORT_BASE,127.0.0.1:$((INVENTORY_CLUSTER_PORT_BASE + 1)),127.0.0.1:$((INVENTORY_CLUSTER_PORT_BASE + 2))"
export INVENTORY_LOG_FORMAT=text INVENTORY_LOG_LEVEL=notice INVENTORY_RECONCILE_INTERVAL_SECONDS=0
# A pair's key prefix and cluster seeds ('' for the single Redis).
prefix() { case "$1" in cluster) echo cmpc ;; baseline) echo cmpb ;; *) echo cmp ;; esac; }
seeds() { [ "$1" = single ] || echo "$SEEDS"; }
start() { # pair name port binary
    INVENTORY_HTTP_PORT="$3" INVENTORY_WORKER_CONSUMER="cmp-$2" INVENTORY_KEY_PREFIX="$(prefix "$1")" \
        INVENTORY_REDIS_CLUSTER="$(seeds "$1")" "$4" serve >"$LOGS/inventoryd-$2.log" 2>&1 &
    PIDS+=("$!")
}
start cluster cluster-a "${PORTS_CLUSTER[0]}" .build/release/inventoryd
start cluster cluster-b "${PORTS_CLUSTER[1]}" .build/release/inventoryd
start "$OTHER" "$OTHER-a" "${PORTS_SINGLE[0]}" "${BASELINE:-.build/release/inventoryd}"
start "$OTHER" "$OTHER-b" "${PORTS_SINGLE[1]}" "${BASELINE:-.build/release/inventoryd}"
wait_ready "${PORTS_CLUSTER[0]}" "$LOGS/inventoryd-cluster-a.log"
wait_ready "${PORTS_CLUSTER[1]}" "$LOGS/inventoryd-cluster-b.log"
wait_ready "${PORTS_SINGLE[0]}" "$LOGS/inventoryd-$OTHER-a.log"
wait_ready "${PORTS_SINGLE[1]}" "$LOGS/inventoryd-$OTHER-b.log"
step "cluster pair on :${PORTS_CLUSTER[*]}, $OTHER pair on :${PORTS_SINGLE[*]}${BASELINE:+ ($BASELINE, on the cluster)}"

reconcile() { # pair bizId
    INVENTORY_KEY_PREFIX="$(prefix "$1")" INVENTORY_REDIS_CLUSTER="$(seeds "$1")" .build/release/inventoryd reconcile --biz "$2" \
        >>"$LOGS/reconcile-$1.log" 2>&1 || die "reconciler: differences for $2 on the $1 pair" "$LOGS/reconcile-$1.log"
    grep '^reconcile:.*s$' "$LOGS/reconcile-$1.log" | tail -1
}

for scenario in $SCENARIOS; do
    .build/release/loadgen --scenario "$scenario" --items "$ITEMS" -c "$CONNECTIONS" -d "$DURATION" --rounds "$ROUNDS" \
        --target "cluster=http://127.0.0.1:${PORTS_CLUSTER[0]},http://127.0.0.1:${PORTS_CLUSTER[1]}" \
        --target "$OTHER=http://127.0.0.1:${PORTS_SINGLE[0]},http://127.0.0.1:${PORTS_SINGLE[1]}" \
        --out loadtest/results 2>&1 | tee "$LOGS/loadgen-$scenario.log" | grep -v '^\[' || die "loadgen $scenario failed" "$LOGS/loadgen-$scenario.log"
    # loadgen's checks judged every phase (no oversell, stock conserved, reserved settles); the reconciler then checks
    # each phase's business line on the pair that served it (phases alternate: cluster 1, 3, ...; the other 2, 4, ...).
    base="$(sed -n 's/.* bizId \(lt[0-9a-f]*\)$/\1/p' "$LOGS/loadgen-$scenario.log" | head -1)"
    [ -n "$base" ] || die "no bizId in loadgen's output" "$LOGS/loadgen-$scenario.log"
    sleep 2
    for ((phase = 1; phase <= 2 * ROUNDS; phase++)); do
        pair=cluster
        ((phase % 2 == 0)) && pair=$OTHER
        step "reconciler, $scenario phase $phase ($pair): $(reconcile "$pair" "$base-$phase")"
    done
done
step "logs: $LOGS"
