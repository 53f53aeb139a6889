#!/usr/bin/env bash
# schemathesis (PyPI) against the service's own OpenAPI document: generated valid and invalid requests for every
# operation, each answer checked for 5xx and against the documented statuses, content types, headers and schemas.
#
#   scripts/schemathesis.sh [MAX_EXAMPLES]      # default 300 per operation and phase: about two minutes on 2 cores
#
# Starts `inventoryd serve` on a free port with its own Redis key prefix and a fresh database
# (inventory_schemathesis, dropped and made again on every run: the fuzzer's orders must not meet the journal rows of
# an earlier run), seeds two items and an order, runs schemathesis, stops the service and deletes its keys. The report
# is saved as loadtest/results/schemathesis-<timestamp>.txt; the exit status is schemathesis's (non-zero on any
# failure).
set -Eeuo pipefail

# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck source=scripts/lib.sh
. "$INVENTORY_ROOT/scripts/lib.sh"

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES="${1:-300}"
VENV="$INVENTORY_LOCAL_DIR/venv-schemathesis"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
REPORT="$INVENTORY_ROOT/loadtest/results/schemathesis-$STAMP.txt"
SERVICE_LOG="$INVENTORY_LOCAL_DIR/schemathesis-inventoryd.log"

if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
    step "schemathesis $SCHEMATHESIS_VERSION: installing into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

bash "$INVENTORY_ROOT/scripts/setup.sh"
step "building inventoryd"
(cd "$INVENTORY_ROOT" && swift build --product inventoryd 2>&1 | tail -n 1)

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
PREFIX="sch$STAMP"
BASE="http://127.0.0.1:$PORT"
DATABASE=inventory_schemathesis
step "mariadb: fresh database $DATABASE"
sql="DROP DATABASE IF EXISTS \`$DATABASE\`; CREATE DATABASE \`$DATABASE\` CHARACTER SET utf8mb4;"
for host in 127.0.0.1 localhost %; do
    sql+=" GRANT ALL PRIVILEGES ON \`$DATABASE\`.* TO '$INVENTORY_MYSQL_USER'@'$host';"
done
"$(find_tool mariadb mysql)" --no-defaults --socket="$MYSQL_SOCK" -uroot --batch -e "$sql"
export INVENTORY_MYSQL_DATABASE="$DATABASE"
export INVENTORY_HTTP_PORT="$PORT" INVENTORY_KEY_PREFIX="$PREFIX" INVENTORY_LOG_LEVEL=error
export INVENTORY_RECONCILE_INTERVAL_SECONDS=0 INVENTORY_WORKER_CONSUMER="schemathesis-$STAMP"
# With an admin token configured, as a deployment has: schemathesis sends it, and its ignored_auth check sends
# requests without it (every secured operation must answer 401).
TOKEN_LINES="$("$INVENTORY_ROOT/.build/debug/inventoryd" token --role admin)"
TOKEN="$(sed -n 's/^token: //p' <<<"$TOKEN_LINES")"
export INVENTORY_TOKENS="$(sed -n 's/^entry: //p' <<<"$TOKEN_LINES")"
AUTH="Authorization: Bearer $TOKEN"
"$INVENTORY_ROOT/.build/debug/inventoryd" migrate >/dev/null

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [ -n "${SERVICE_PID:-}" ] && alive "$SERVICE_PID"; then
        kill "$SERVICE_PID" 2>/dev/null || true
        wait "$SERVICE_PID" 2>/dev/null || true
    fi
    redis-cli -h "$INVENTORY_REDIS_HOST" -p "$INVENTORY_REDIS_PORT" --scan --pattern "$PREFIX:*" |
        xargs -r -n 500 redis-cli -h "$INVENTORY_REDIS_HOST" -p "$INVENTORY_REDIS_PORT" DEL >/dev/null || true
}
trap cleanup EXIT

step "inventoryd serve on $BASE (key prefix $PREFIX, log $SERVICE_LOG)"
"$INVENTORY_ROOT/.build/debug/inventoryd" serve >"$SERVICE_LOG" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 1 100); do
    curl -fs "$BASE/healthz" >/dev/null 2>&1 && break
    alive "$SERVICE_PID" || die "inventoryd exited" "$SERVICE_LOG"
    sleep 0.1
done
curl -fs "$BASE/healthz" >/dev/null || die "inventoryd did not answer" "$SERVICE_LOG"

# The document's examples name bizId "default", skuId 1 and order "o-1": give them stock and a held order so that
# the examples get past 404.
for sku in 1 2; do
    curl -fs -X PUT "$BASE/v1/stock/default/$sku" -H "$AUTH" -H 'content-type: application/json' -d '{"stock": 1000000}' >/dev/null
done
curl -fs -X POST "$BASE/v1/reservations" -H "$AUTH" -H 'content-type: application/json' \
    -d '{"orderId": "o-1", "items": [{"skuId": 1, "quantity": 1}], "ttlSeconds": 86400}' >/dev/null

# Checks: all, ignored_auth included (a request without the token must get 401), except object_level_authorization
# (orders are not yet scoped by business: issue 22). positive_data_acceptance (a schema-valid request is not refused as invalid) also takes 422:
# a valid body is refused when its id was used before with another body (idempotency-conflict, by design), or when a
# skuId appears twice in items (a rule JSON Schema cannot state); a 400, 413 or 415 to a valid request still fails.
CONFIG="$INVENTORY_LOCAL_DIR/schemathesis.toml"
cat >"$CONFIG" <<'TOML'
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "404", "409", "422", "429", "5xx"]
TOML
step "schemathesis $SCHEMATHESIS_VERSION: $MAX_EXAMPLES examples per operation and phase (report $REPORT)"
mkdir -p "$(dirname "$REPORT")"
status=0
# From .local/, where schemathesis leaves its .schemathesis/ cache.
cd "$INVENTORY_LOCAL_DIR"
"$VENV/bin/schemathesis" --config-file "$CONFIG" run "$BASE/openapi.json" \
    --checks all \
    --exclude-checks object_level_authorization \
    --header "$AUTH" \
    --max-examples "$MAX_EXAMPLES" \
    --seed 20261122 \
    --workers 2 \
    --request-timeout 10 \
    --generation-database none \
    --no-color \
    >"$REPORT" 2>&1 || status=$?
tail -n 25 "$REPORT"
step "schemathesis exit status $status; report: ${REPORT#"$INVENTORY_ROOT"/}"
alive "$SERVICE_PID" || die "inventoryd died during the run" "$SERVICE_LOG"
exit "$status"
