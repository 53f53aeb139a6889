#!/usr/bin/env bash
# Write-back worker throughput: N reservations are written to the outbox by an instance whose worker is off,
# then `inventoryd worker` drains them; prints events/s and the CPU seconds the worker, MariaDB and Redis spent.
# With several binaries it alternates them, round after round (A B A B), so that they meet the same machine.
#
#   loadtest/worker/drain.sh [-n N] [-r ROUNDS] [BINARY ...]
#   defaults:                 100000    2        .build/release/inventoryd
#
# Needs the servers of scripts/setup.sh and `swift build -c release --product inventoryd --product loadgen`.
# The writer runs on port INVENTORY_DRAIN_PORT (8093) with a key prefix of its own (INVENTORY_DRAIN_PREFIX, by default
# `drain` and the time), whose Redis keys go at the end; nothing else is touched.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cd "$ROOT"
# shellcheck source=../../scripts/env.sh
. scripts/env.sh

N=100000
ROUNDS=2
while getopts "n:r:" option; do
    case $option in
        n) N=$OPTARG ;;
        r) ROUNDS=$OPTARG ;;
        *) echo "usage: $0 [-n N] [-r ROUNDS] [BINARY ...]" >&2; exit 64 ;;
    esac
done
shift $((OPTIND - 1))
BINARIES=("$@")
[ ${#BINARIES[@]} -gt 0 ] || BINARIES=(.build/release/inventoryd)
PORT="${INVENTORY_DRAIN_PORT:-8093}"
# A key prefix of this run's own: Redis keeps its keys until the run ends, and MySQL keeps its drain marks; a prefix
# used before would meet Redis behind MySQL (its keys gone, or Redis restarted from an older snapshot) and spend the
# run in the day after a Redis data loss, where every reserve asks the journal first.
PREFIX="${INVENTORY_DRAIN_PREFIX:-drain$(date +%s)}"
SHARDS=16
LOADGEN=.build/release/loadgen
for binary in "${BINARIES[@]}" "$LOADGEN"; do
    [ -x "$binary" ] || { echo "drain.sh: $binary is missing (swift build -c release ...)" >&2; exit 2; }
done

redis() { redis-cli -h "$INVENTORY_REDIS_HOST" -p "$INVENTORY_REDIS_PORT" "$@"; }
outbox() {
    for ((shard = 0; shard < SHARDS; shard++)); do echo "XLEN $PREFIX:{s$shard}:outbox"; done | redis | paste -sd+ | bc
}
# CPU seconds (user + system) a process has used so far.
cpu() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }
mariadb_pid=$(cat "$INVENTORY_LOCAL_DIR/mariadb/mysqld.pid")
redis_pid=$(redis INFO server | awk -F: '/^process_id/ { print $2 }' | tr -d '\r')

INVENTORY_HTTP_PORT=$PORT INVENTORY_KEY_PREFIX=$PREFIX INVENTORY_SHARDS=$SHARDS INVENTORY_WORKER=off \
    INVENTORY_SWEEP_INTERVAL_MS=0 INVENTORY_RECONCILE_INTERVAL_SECONDS=0 INVENTORY_LOG_LEVEL=warning \
    "${BINARIES[0]}" serve >"$INVENTORY_LOCAL_DIR/drain-writer.log" 2>&1 &
writer=$!
cleanup() {
    kill $writer 2>/dev/null || true
    redis --scan --pattern "$PREFIX:*" | xargs -r -n 1000 redis-cli -h "$INVENTORY_REDIS_HOST" -p "$INVENTORY_REDIS_PORT" DEL >/dev/null
}
trap cleanup EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

printf '%-40s %5s %9s %8s %9s %8s %8s %8s\n' binary round events seconds events/s worker mariadb redis
for ((round = 1; round <= ROUNDS; round++)); do
    for binary in "${BINARIES[@]}"; do
        "$LOADGEN" --scenario hot -c 64 -n "$N" --target "drain=http://127.0.0.1:$PORT" --out "$INVENTORY_LOCAL_DIR/drain-results" >/dev/null 2>&1
        events=$(outbox)
        mariadb0=$(cpu "$mariadb_pid")
        redis0=$(cpu "$redis_pid")
        start=$(date +%s.%N)
        INVENTORY_KEY_PREFIX=$PREFIX INVENTORY_SHARDS=$SHARDS INVENTORY_LOG_LEVEL=warning INVENTORY_WORKER_CONSUMER=drain \
            "$binary" worker >>"$INVENTORY_LOCAL_DIR/drain-worker.log" 2>&1 &
        worker=$!
        sleep 0.2
        while [ "$(outbox)" != "0" ]; do sleep 0.05; done
        end=$(date +%s.%N)
        worker_cpu=$(cpu $worker)
        kill $worker
        wait $worker 2>/dev/null || true
        seconds=$(echo "$end - $start" | bc)
        printf '%-40s %5d %9d %8.2f %9.0f %8s %8.2f %8.2f\n' "$binary" "$round" "$events" "$seconds" \
            "$(echo "$events / $seconds" | bc -l)" "$worker_cpu" \
            "$(echo "$(cpu "$mariadb_pid") - $mariadb0" | bc)" "$(echo "$(cpu "$redis_pid") - $redis0" | bc)"
    done
done
