#!/usr/bin/env bash
# What the bulk gate's share costs an administrator: per share, a service of its own (release build of the tree)
# takes two uploads of 100,000 codes to a reusable pool back to back, then two exports of its 200,000 codes; prints
# each request's time (curl) and the total, and writes them to loadtest/results/bulk-admin-<UTC timestamp>.txt.
#
#   loadtest/hostile/bulk-admin.sh [SHARE ...]        (default: 100 25 5)
#
# Its own servers: a private redis-server (port 6396) and `inventoryd serve` on port 8086 with database
# inventory_bulkadmin. Needs the servers of scripts/setup.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
. "$HERE/../../scripts/env.sh"
cd "$INVENTORY_ROOT"
SHARES=("$@")
[ ${#SHARES[@]} -gt 0 ] || SHARES=(100 25 5)
PORT=6396
HTTP=8086
DB=inventory_bulkadmin
. "$HERE/../lib/private.sh"
private_begin bulk-admin
swift build -c release --product inventoryd >/dev/null
for part in 0 1; do
  python3 -c "[print(f'R$part-{i:07d}') for i in range(100000)]" > "$WORK/codes$part.txt"
done
export INVENTORY_REDIS_PORT=$PORT INVENTORY_HTTP_PORT=$HTTP INVENTORY_MYSQL_DATABASE=$DB
export INVENTORY_LOG_LEVEL="${INVENTORY_LOG_LEVEL:-warning}"
{
  echo "bulk-admin run $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources || echo ' (Sources changed)'): per share, 2 uploads of 100,000 codes back to back, then 2 exports of 200,000"
  for share in "${SHARES[@]}"; do
    private_database "$DB"
    private_redis "$PORT" "$WORK"
    INVENTORY_BULK_SHARE=$share private_serve .build/release/inventoryd "$HTTP" "$WORK/serve.log"
    curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/json' --data '{"stock": 1000000000}' "localhost:$HTTP/v1/stock/default/3"
    curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/json' --data '{"kind": "reusable"}' "localhost:$HTTP/v1/stock/default/3/pool"
    start=$(date +%s%N)
    times=()
    for part in 0 1; do
      times+=("$(curl -fsS -o /dev/null -w '%{time_total}' -X POST -H 'Content-Type: text/plain' \
        --data-binary "@$WORK/codes$part.txt" "localhost:$HTTP/v1/stock/default/3/codes")")
    done
    for _ in 1 2; do
      times+=("$(curl -fsS -o "$WORK/export.txt" -w '%{time_total}' "localhost:$HTTP/v1/stock/default/3/codes")")
    done
    [ "$(wc -l < "$WORK/export.txt")" -eq 200000 ] || { echo "the export did not give 200,000 codes" >&2; exit 1; }
    echo "share $share %: uploads ${times[0]} s, ${times[1]} s; exports ${times[2]} s, ${times[3]} s; all $(( ($(date +%s%N) - start) / 1000000 )) ms"
    private_stop
  done
} | tee "$OUT"
