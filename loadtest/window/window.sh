#!/usr/bin/env bash
# Reserves per second the day after a Redis data loss (every reserve of a new order asks the journal first, after
# applying what the outbox has of that order), with the write-back worker off so that the outbox grows as it would
# behind a lagging worker. Each binary in turn, round after round: a writer on a key prefix of its own, its shards'
# generation markers set a day ahead (as a loss leaves them), then loadgen's hot scenario, N reserves at 64
# connections.
#
#   loadtest/window/window.sh [-n N] [-r ROUNDS] BINARY ...     (defaults: 20000, 2)
#
# Needs the servers of scripts/setup.sh and a release loadgen; run nothing else meanwhile.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cd "$ROOT"
# shellcheck source=../../scripts/env.sh
. scripts/env.sh
N=20000
ROUNDS=2
while getopts "n:r:" option; do
    case $option in
        n) N=$OPTARG ;;
        r) ROUNDS=$OPTARG ;;
        *) echo "usage: $0 [-n N] [-r ROUNDS] BINARY ..." >&2; exit 64 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { sed -n '2,10p' "$0"; exit 64; }
PORT="${INVENTORY_WINDOW_PORT:-8094}"
SHARDS=16
LOADGEN=.build/release/loadgen
redis() { redis-cli -h "$INVENTORY_REDIS_HOST" -p "$INVENTORY_REDIS_PORT" "$@"; }
writer=""
prefix=""
cleanup() {
    [ -z "$writer" ] || kill "$writer" 2>/dev/null || true
    [ -z "$prefix" ] || redis --scan --pattern "$prefix:*" | xargs -r -n 1000 redis-cli -h "$INVENTORY_REDIS_HOST" -p "$INVENTORY_REDIS_PORT" DEL >/dev/null
}
trap cleanup EXIT
printf '%-40s %5s %9s %10s %10s %7s\n' binary round reserves reserves/s p99 errors
for ((round = 1; round <= ROUNDS; round++)); do
    for binary in "$@"; do
        prefix="window$(date +%s%N)"
        INVENTORY_HTTP_PORT=$PORT INVENTORY_KEY_PREFIX=$prefix INVENTORY_SHARDS=$SHARDS INVENTORY_WORKER=off \
            INVENTORY_SWEEP_INTERVAL_MS=0 INVENTORY_RECONCILE_INTERVAL_SECONDS=0 INVENTORY_LOG_LEVEL=warning \
            INVENTORY_LUA_DIR="$(dirname "$binary")/lua" "$binary" serve >"$INVENTORY_LOCAL_DIR/window-writer.log" 2>&1 &
        writer=$!
        for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
        # Made at the shards' first start (0: trust Redis); a day ahead, as after a loss.
        until=$(( $(date +%s%3N) + 86400000 ))
        for ((shard = 0; shard < SHARDS; shard++)); do redis SET "$prefix:{s$shard}:gen" "$until" >/dev/null; done
        out=$("$LOADGEN" --scenario hot -c 64 -n "$N" --no-files -q --target "http://127.0.0.1:$PORT")
        line=$(echo "$out" | awk '$1 == "hot" && $2 ~ /^[0-9,]+$/')
        printf '%-40s %5d %9s %10s %10s %7s\n' "$binary" "$round" "$(echo "$line" | awk '{print $2}')" \
            "$(echo "$line" | awk '{print $3}')" "$(echo "$line" | awk '{print $6}')" "$(echo "$line" | awk '{print $NF}')"
        kill "$writer"; wait "$writer" 2>/dev/null || true
        writer=""
        redis --scan --pattern "$prefix:*" | xargs -r -n 1000 redis-cli -h "$INVENTORY_REDIS_HOST" -p "$INVENTORY_REDIS_PORT" DEL >/dev/null
        prefix=""
    done
done
