#!/usr/bin/env bash
# Issue 8: resharding and a master failover under load, on a local Redis Cluster of 3 masters with one replica each.
#
# Two service instances share the cluster (each with its own write-back worker on the outbox's consumer group, and
# its expiry sweeper). loadgen drives orders of 1-4 items over many items (scenario `mixed`: reserve, then confirm,
# cancel or let expire) across both instances, while this script
#   - at RESHARD_AT s moves every slot of one master to another (`redis-cli --cluster reshard`, keys included), and
#   - at FAILOVER_AT s fails a master over to its replica (`CLUSTER FAILOVER` on the replica).
# loadgen then checks, per item, that nothing was oversold, nothing created or lost (available + reserved +
# confirmed = stock set) and that reserved equals what its answers left held, and runs `inventoryd reconcile` after
# the drain (it must be clean). Results: loadtest/results/ (loadgen's JSON/HTML) and a log directory printed at the end.
#
#   loadtest/cluster/reshard-failover.sh            # 60 s of load, 32 connections
#   DURATION=30s CONNECTIONS=16 loadtest/cluster/reshard-failover.sh
#
# Needs scripts/setup.sh (MariaDB, Redis binaries) and release builds of inventoryd and loadgen (built if missing).
# Uses its own cluster (ports INVENTORY_CLUSTER_PORT_BASE, default 7590 here, six nodes, data under
# .local/cluster-rf, reset at every run) and its own HTTP ports (8180, 8182).
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export INVENTORY_CLUSTER_PORT_BASE="${RF_CLUSTER_PORT_BASE:-7590}"
# shellcheck source=scripts/env.sh
. "$ROOT/scripts/env.sh"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

DURATION="${DURATION:-60s}"
CONNECTIONS="${CONNECTIONS:-32}"
RESHARD_AT="${RESHARD_AT:-10}"
FAILOVER_AT="${FAILOVER_AT:-35}"
PORT_A="${RF_HTTP_PORT_A:-8180}"
PORT_B="${RF_HTTP_PORT_B:-8182}"
export INVENTORY_CLUSTER_REPLICAS=1
export INVENTORY_CLUSTER_DIR="$INVENTORY_LOCAL_DIR/cluster-rf"
BASE="$INVENTORY_CLUSTER_PORT_BASE"
LOGS="$INVENTORY_LOCAL_DIR/reshard-failover/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$LOGS"
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    bash "$ROOT/scripts/cluster.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

cd "$ROOT"
bash scripts/setup.sh >"$LOGS/setup.log" 2>&1 || die "scripts/setup.sh failed" "$LOGS/setup.log"
bash scripts/cluster.sh reset >/dev/null
bash scripts/cluster.sh start
if [ ! -x .build/release/inventoryd ] || [ ! -x .build/release/loadgen ]; then
    step "release build of inventoryd and loadgen"
    swift build -c release --product inventoryd
    swift build -c release --product loadgen
fi
.build/release/inventoryd migrate >"$LOGS/migrate.log" 2>&1 || die "migrations failed" "$LOGS/migrate.log"

SEEDS="127.0.0.1:$BASE,127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2))"
export INVENTORY_REDIS_CLUSTER="$SEEDS"
export INVENTORY_KEY_PREFIX="rf"
export INVENTORY_LOG_FORMAT=text
export INVENTORY_LOG_LEVEL=notice
for name in a b; do
    port="$PORT_A"
    [ "$name" = b ] && port="$PORT_B"
    INVENTORY_HTTP_PORT="$port" INVENTORY_WORKER_CONSUMER="rf-$name" INVENTORY_RECONCILE_INTERVAL_SECONDS=0 \
        .build/release/inventoryd serve >"$LOGS/inventoryd-$name.log" 2>&1 &
    PIDS+=("$!")
done
wait_ready "$PORT_A" "$LOGS/inventoryd-a.log"
wait_ready "$PORT_B" "$LOGS/inventoryd-b.log"
step "two instances on :$PORT_A and :$PORT_B over the cluster $SEEDS"

node_id() { redis-cli -p "$1" CLUSTER MYID | tr -d '\r'; }
# CLUSTER NODES from the first node that answers it (a replica loading a full sync answers LOADING for a while).
nodes() {
    local port out
    for ((port = BASE; port < BASE + 6; port++)); do
        out="$(redis-cli -p "$port" CLUSTER NODES 2>/dev/null)" || continue
        case "$out" in *LOADING* | "") continue ;; esac
        printf '%s\n' "$out"
        return
    done
    die "no cluster node answers CLUSTER NODES"
}
masters() { nodes | awk '$3 ~ /master/ && $3 !~ /fail/ {split($2, a, "@"); split(a[1], b, ":"); print b[2]}' | sort -n; }

disrupt() {
    sleep "$RESHARD_AT"
    local from to moved
    from="$(masters | sed -n 1p)"
    to="$(masters | sed -n 2p)"
    moved="$(nodes | awk -v id="$(node_id "$from")" '$1 == id {n = 0; for (i = 9; i <= NF; i++) { split($i, r, "-"); n += (r[2] == "" ? 1 : r[2] - r[1] + 1) } print n}')"
    step "reshard: moving all $moved slots of :$from to :$to, keys included"
    local started=$SECONDS
    redis-cli --cluster reshard "127.0.0.1:$BASE" --cluster-from "$(node_id "$from")" --cluster-to "$(node_id "$to")" \
        --cluster-slots "$moved" --cluster-yes >"$LOGS/reshard.log" 2>&1 || die "reshard failed" "$LOGS/reshard.log"
    step "reshard: done in $((SECONDS - started)) s"
    local wait=$((FAILOVER_AT - RESHARD_AT - (SECONDS - started)))
    [ "$wait" -gt 0 ] && sleep "$wait"
    local master replica
    master="$(masters | tail -1)"
    replica="$(nodes | awk -v id="$(node_id "$master")" '$4 == id {split($2, a, "@"); split(a[1], b, ":"); print b[2]}' | head -1)"
    [ -n "$replica" ] || die "no replica of :$master"
    step "failover: :$replica takes over from master :$master"
    redis-cli -p "$replica" CLUSTER FAILOVER >"$LOGS/failover.log" 2>&1
    for ((i = 0; i < 100; i++)); do
        redis-cli -p "$replica" ROLE 2>/dev/null | head -1 | grep -q master && break
        sleep 0.1
    done
    redis-cli -p "$replica" ROLE | head -1 | grep -q master || die "the replica :$replica did not become master" "$LOGS/failover.log"
    step "failover: :$replica is master, :$master its replica"
    nodes >"$LOGS/nodes-after.txt"
}
disrupt &
DISRUPT=$!
PIDS+=("$DISRUPT")

set +e
.build/release/loadgen --scenario mixed --items 500 --zipf-s 0.8 --stock 400 -c "$CONNECTIONS" -d "$DURATION" \
    --mix confirm=60,cancel=30,expire=10 --drain 30s --target "cluster=http://127.0.0.1:$PORT_A,http://127.0.0.1:$PORT_B" \
    --reconcile-with .build/release/inventoryd --out loadtest/results 2>&1 | tee "$LOGS/loadgen.log"
status=${PIPESTATUS[0]}
wait "$DISRUPT"
disrupted=$?
set -e
grep -hE "redirect|MOVED|slot map|error" "$LOGS"/inventoryd-*.log | head -20 >"$LOGS/inventoryd-notable.log" || true
step "logs: $LOGS"
[ "$disrupted" = 0 ] || die "the reshard or the failover did not complete" "$LOGS/reshard.log"
[ "$status" = 0 ] || die "loadgen's checks failed (exit $status)" "$LOGS/loadgen.log"
step "passed: no oversell, nothing lost, reserved as answered, reconciler clean after the drain"
