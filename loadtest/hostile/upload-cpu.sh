#!/usr/bin/env bash
# The service's CPU time per code upload of the hostile run's kind (8 MiB of text/plain, 150,000 lines: refused 422
# past 100,000 codes, after parsing that far), for two builds in alternating rounds, each on a Redis and database of
# its own. The before/after of a change to the upload's parse.
#
#   loadtest/hostile/upload-cpu.sh OLD_DIR NEW_DIR [ROUNDS] [UPLOADS]     (defaults: 3 rounds of 20 uploads)
#
# A DIR holds a release `inventoryd` and its lua/, migrations/ and openapi/ (as loadtest/compare/binaries.sh).
# Writes loadtest/results/upload-cpu-<UTC timestamp>.txt. Needs the servers of scripts/setup.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
. "$HERE/../../scripts/env.sh"
cd "$INVENTORY_ROOT"
OLD="$(cd "$1" && pwd -P)"
NEW="$(cd "$2" && pwd -P)"
ROUNDS="${3:-3}"
UPLOADS="${4:-20}"
PORT=6396
HTTP=8096
WORK="$(mktemp -d)"
. "$HERE/../lib/private.sh"
trap 'private_stop; rm -rf "$WORK"' EXIT
OUT="loadtest/results/upload-cpu-$(date -u +%Y%m%dT%H%M%SZ).txt"
export INVENTORY_REDIS_PORT=$PORT INVENTORY_HTTP_PORT=$HTTP INVENTORY_MYSQL_DATABASE=inventory_upload_cpu
export INVENTORY_LOG_LEVEL="${INVENTORY_LOG_LEVEL:-warning}"
# The body attackers.py sends.
python3 -c "
body = ''.join(f'CODE-{i:010d}-{\"x\" * 40}\n' for i in range(150_000)).encode()[: 8 * 1024 * 1024 - 1]
open('$WORK/body.txt', 'wb').write(body)"
TICK=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$SERVICE/stat"; }
{
  echo "service CPU per code upload (8 MiB, 150,000 lines), $UPLOADS uploads per round; old $OLD, new $NEW"
  for round in $(seq 1 "$ROUNDS"); do
    for side in old new; do
      dir=$OLD
      [ "$side" = new ] && dir=$NEW
      private_database inventory_upload_cpu
      private_redis "$PORT" "$WORK"
      INVENTORY_LUA_DIR="$dir/lua" INVENTORY_MIGRATIONS_DIR="$dir/migrations" INVENTORY_OPENAPI_DIR="$dir/openapi" \
        private_serve "$dir/inventoryd" "$HTTP" "$WORK/serve-$side.log"
      curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/json' --data '{"stock": 0}' "localhost:$HTTP/v1/stock/evil/2"
      curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/json' --data '{"kind": "one-time"}' \
        "localhost:$HTTP/v1/stock/evil/2/pool"
      before=$(cpu)
      answers=""
      for _ in $(seq 1 "$UPLOADS"); do
        answers+=" $(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: text/plain' \
          --data-binary "@$WORK/body.txt" "localhost:$HTTP/v1/stock/evil/2/codes")"
      done
      after=$(cpu)
      echo "round $round $side: $(( (after - before) * 1000 / TICK / UPLOADS )) ms per upload (answers:$(echo $answers | tr ' ' '\n' | sort | uniq -c | awk '{ printf " %s x %s", $1, $2 }'))"
      private_stop
    done
  done
} | tee "$OUT"
