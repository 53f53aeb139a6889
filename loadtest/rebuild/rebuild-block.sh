#!/usr/bin/env bash
# How long an item's rebuild stops Redis: for each build directory (an `inventoryd` with its lua/, migrations/ and
# openapi/ beside it), a service of its own gets an item with N records to rebuild, waits for the write-back, then
# the item's hash is deleted and one GET rebuilds it. Prints the rebuild's time (curl) and its scripts that ran 1 ms or
# more (Redis SLOWLOG: how many, the longest, together), per round, and writes them to
# loadtest/results/rebuild-block-<UTC timestamp>.txt.
#
#   loadtest/rebuild/rebuild-block.sh N ROUNDS DIR...        (e.g. 20000 2 /tmp/old /tmp/new)
#
# REBUILD_CASE chooses the records: `holds` (default: N reserves of one hot item, loadgen), `codes` (a one-time code
# pool loaded with N codes, uploads of 100,000), `users` (an item with a per-user limit, N reserves of one unit each
# by its own user: N entries in its usage hash).
#
# Its own servers: a private redis-server (port 6395) and the service on port 8085 with database
# inventory_rebuild. Needs the servers of scripts/setup.sh and the release loadgen (swift build -c release).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
. "$HERE/../../scripts/env.sh"
cd "$INVENTORY_ROOT"
N="$1"
ROUNDS="$2"
shift 2
PORT=6395
HTTP=8085
DB=inventory_rebuild
. "$HERE/../lib/private.sh"
private_begin rebuild-block
swift build -c release --product loadgen >/dev/null
export INVENTORY_REDIS_PORT=$PORT INVENTORY_HTTP_PORT=$HTTP INVENTORY_MYSQL_DATABASE=$DB
export INVENTORY_LOG_LEVEL="${INVENTORY_LOG_LEVEL:-warning}"
CASE="${REBUILD_CASE:-holds}"
redis() { redis-cli -p "$PORT" "$@"; }
# The item (business rb, sku 1) with N records of the case.
fill_item() {
  case "$CASE" in
    holds)
      .build/release/loadgen --scenario hot -c 32 -n "$N" --biz rb --target "http://127.0.0.1:$HTTP" --no-files -q \
        --drain 0s >"$WORK/loadgen.log" 2>&1
      ;;
    codes)
      curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/json' -d '{"kind":"one-time"}' "localhost:$HTTP/v1/stock/rb/1/pool"
      for first in $(seq 1 100000 "$N"); do
        last=$((first + 99999 < N ? first + 99999 : N))
        seq -f 'CODE-%09.0f' "$first" "$last" >"$WORK/codes.txt"
        curl -fsS -o /dev/null -H 'Content-Type: text/plain' --data-binary "@$WORK/codes.txt" "localhost:$HTTP/v1/stock/rb/1/codes"
      done
      ;;
    users)
      curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/json' -d "{\"stock\":$N,\"perUserLimit\":1}" \
        "localhost:$HTTP/v1/stock/rb/1"
      python3 - "$HTTP" "$N" <<'PY'
import http.client, sys, threading
port, n, threads = int(sys.argv[1]), int(sys.argv[2]), 16
failed = []
def run(t):
    connection = http.client.HTTPConnection("127.0.0.1", port)
    for k in range(t, n, threads):
        body = '{"orderId":"u-%d","bizId":"rb","userId":"user-%d","items":[{"skuId":1,"quantity":1}]}' % (k, k)
        connection.request("POST", "/v1/reservations", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        if response.status != 201:
            failed.append(f"reserve u-{k}: {response.status}")
            return
workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
if failed: sys.exit("; ".join(failed))
PY
      ;;
    *) echo "REBUILD_CASE is holds, codes or users, not $CASE" >&2; exit 64 ;;
  esac
}
# What Redis has of the item's records.
records() {
  case "$CASE" in
    holds) redis hget "$item" used_stock_num ;;
    codes) redis scard "${item%:item}:codes" ;;
    users) redis hlen "${item%:item}:users" ;;
  esac
}
{
  echo "rebuild-block run $(date -u +%Y-%m-%dT%H:%M:%SZ): an item with $N $CASE deleted, then rebuilt by one GET"
  for round in $(seq 1 "$ROUNDS"); do
    for dir in "$@"; do
      private_database "$DB"
      private_redis "$PORT" "$WORK"
      INVENTORY_LUA_DIR="$dir/lua" INVENTORY_MIGRATIONS_DIR="$dir/migrations" INVENTORY_OPENAPI_DIR="$dir/openapi" \
        private_serve "$dir/inventoryd" "$HTTP" "$WORK/serve.log"
      fill_item
      # the write-back has emptied every outbox
      for _ in $(seq 1 200); do
        total=0
        for stream in $(redis --scan --pattern '*:outbox'); do total=$((total + $(redis xlen "$stream"))); done
        [ "$total" -eq 0 ] && break
        sleep 0.5
      done
      item=$(redis --scan --pattern '*rb*:item' | head -1)
      held=$(records)
      sku=$(echo "$item" | grep -o ':[0-9]*}' | tr -d ':}')
      redis config set slowlog-log-slower-than 1000 >/dev/null
      redis config set slowlog-max-len 1000 >/dev/null
      redis slowlog reset >/dev/null
      redis del "$item" >/dev/null
      took=$(curl -fsS -o /dev/null -w '%{time_total}' "localhost:$HTTP/v1/stock/rb/$sku")
      read -r count longest together < <(redis --json slowlog get 1000 | python3 -c '
import json, sys
entries = [e for e in json.load(sys.stdin) if e[3][0].lower() in ("evalsha", "eval")]
print(len(entries), max([e[2] for e in entries] or [0]), sum(e[2] for e in entries))')
      after=$(records)
      echo "round $round $(basename "$dir"): $held $CASE ($after after); rebuild ${took} s; scripts of 1 ms or more: $count, longest $longest us, together $together us"
      private_stop
    done
  done
} | tee "$OUT"
