#!/usr/bin/env bash
# The Redis memory one order leaves behind while Redis keeps it (its hold's TTL + INVENTORY_RETENTION_SECONDS),
# per kind of order: a reserve left held, reserve then cancel, reserve then confirm, a cancel of an unknown id, a
# stock adjustment.
#
#   loadtest/memory/order-footprint.sh [N]
#   FOOTPRINT_KINDS="hold" loadtest/memory/order-footprint.sh 100000     (some kinds only)
#
# Starts a private redis-server (port 6396, no persistence) and a debug `inventoryd serve` on port 8086 against
# database inventory_footprint, sends N (default 2000) orders of each kind over one keep-alive connection, waits for
# the write-back worker to empty the outbox, and prints used_memory's growth divided by N, and the keys one order
# leaves with their MEMORY USAGE. Needs the servers of scripts/setup.sh and `swift build`.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
. "$HERE/../../scripts/env.sh"
cd "$INVENTORY_ROOT"
N="${1:-2000}"
PORT=6396
HTTP=8086
DB=inventory_footprint
WORK="$(mktemp -d)"
. "$HERE/../lib/private.sh"
trap 'private_stop; rm -rf "$WORK"' EXIT
swift build --product inventoryd >/dev/null

private_database "$DB"
private_redis "$PORT" "$WORK"
export INVENTORY_REDIS_PORT=$PORT INVENTORY_HTTP_PORT=$HTTP INVENTORY_MYSQL_DATABASE=$DB INVENTORY_LOG_LEVEL=warning
private_serve .build/debug/inventoryd "$HTTP" "$WORK/serve.log"

REDIS=(redis-cli -p "$PORT")
memory() { "${REDIS[@]}" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
drained() {
  for _ in $(seq 1 120); do
    local left=0
    for stream in $("${REDIS[@]}" --scan --pattern '*:outbox'); do left=$((left + $("${REDIS[@]}" xlen "$stream"))); done
    [ "$left" -eq 0 ] && return 0
    sleep 0.5
  done
  echo "the outbox did not empty" >&2
  return 1
}
curl -fs -X PUT -H 'Content-Type: application/json' -d '{"stock": 100000000}' "localhost:$HTTP/v1/stock/fp/1" >/dev/null

echo "kind             bytes/order  keys/order  (N=$N; keys of order #7: MEMORY USAGE, the key's own entry not included)"
for kind in ${FOOTPRINT_KINDS:-hold cancel confirm unknown adjust}; do
  drained
  before=$(memory)
  keys=$("${REDIS[@]}" dbsize)
  python3 - "$kind" "$N" "$HTTP" <<'PY'
import http.client, json, sys
kind, n, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
connection = http.client.HTTPConnection("127.0.0.1", port)
def send(method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    connection.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = connection.getresponse()
    response.read()
    if response.status >= 300:
        sys.exit(f"{method} {path}: {response.status}")
for i in range(n):
    order = f"{kind}-{i:07d}"
    if kind == "adjust":
        send("POST", "/v1/stock/fp/1/adjustments", {"adjustmentId": order, "delta": 1})
        continue
    if kind != "unknown":
        send("POST", "/v1/reservations", {"orderId": order, "bizId": "fp", "userId": f"u{i}", "items": [{"skuId": 1, "quantity": 1}]})
    if kind == "hold":
        continue
    send("POST", f"/v1/businesses/fp/reservations/{order}/{'confirm' if kind == 'confirm' else 'cancel'}")
PY
  drained
  after=$(memory)
  added=$(( $("${REDIS[@]}" dbsize) - keys ))
  printf '%-16s %11d  %10s  ' "$kind" $(( (after - before) / N )) "$(awk "BEGIN { printf \"%.1f\", $added / $N }")"
  for key in $("${REDIS[@]}" --scan --pattern "*$kind-0000007"); do
    printf '%s=%s ' "${key#*:}" "$("${REDIS[@]}" memory usage "$key")"
  done
  echo
done
