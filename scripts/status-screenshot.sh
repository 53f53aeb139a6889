#!/usr/bin/env bash
# Screenshot of the status page with live numbers, taken by headless Chromium: docs/status-page.png.
#
# Installs Chromium (Debian package `chromium`) when missing, runs setup.sh, builds inventoryd (debug; set
# INVENTORY_SCREENSHOT_BUILD=release for a release build) and serves it on a free port with its own key prefix
# and business (`status-demo`), sets up a few items, reserves some so that one is low and one sold out, keeps
# some reserve/cancel traffic going (so the worker has a rate and a journal lag), records a reconciliation, waits
# for a couple of refreshes and takes the screenshot. The service it started is stopped on the way out, however
# the script ends. Idempotent: holds left by an earlier run are counted, not added to.
set -Eeuo pipefail

# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck source=scripts/lib.sh
. "$INVENTORY_ROOT/scripts/lib.sh"

trap 'printf "%s: failed at line %s\n" "${0##*/}" "$LINENO" >&2' ERR

BUILD="${INVENTORY_SCREENSHOT_BUILD:-debug}"
OUTPUT="$INVENTORY_ROOT/docs/status-page.png"
LOG="$INVENTORY_LOCAL_DIR/status-screenshot.log"
BIZ=status-demo
JSON='content-type: application/json'

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

install_chromium() {
    if command -v chromium >/dev/null 2>&1; then
        step "chromium: present"
        return
    fi
    local apt_log="$INVENTORY_LOCAL_DIR/apt.log"
    step "chromium: installing (log: $apt_log)"
    as_root apt-get update >>"$apt_log" 2>&1 || die "apt-get update failed" "$apt_log"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >>"$apt_log" 2>&1 ||
        die "apt-get install chromium failed" "$apt_log"
}

# free_port: the first port from 18080 on that nothing listens on.
free_port() {
    local port
    for ((port = 18080; port < 18180; port++)); do
        port_in_use "$port" || { printf '%s\n' "$port"; return; }
    done
    die "no free port in 18080-18179"
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

SERVE_PID=""
TRAFFIC_PID=""
stop_traffic() {
    if [ -n "$TRAFFIC_PID" ]; then
        kill "$TRAFFIC_PID" 2>/dev/null || true
        wait "$TRAFFIC_PID" 2>/dev/null || true
        TRAFFIC_PID=""
    fi
}
stop_service() {
    stop_traffic
    if [ -n "$SERVE_PID" ] && alive "$SERVE_PID"; then
        step "inventoryd: stopping (pid $SERVE_PID)"
        kill -TERM "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
    fi
}
trap stop_service EXIT

# wait_drained: until the worker has written every outbox entry back (10 s at most), so that the next run
# does not start with this one's backlog.
wait_drained() {
    for ((i = 0; i < 50; i++)); do
        api GET /v1/status | grep -q '"outboxEntries":0,' && return
        sleep 0.2
    done
}

# api METHOD PATH [BODY]: one request to the service; prints the body, fails on a status >= 400.
api() {
    curl -sS --fail-with-body -X "$1" "$BASE$2" -H "$JSON" ${3:+-d "$3"}
}

# available SKU: what the item has available now.
available() {
    api GET "/v1/stock/$BIZ/$1" | sed -n 's/.*"available":\(-\{0,1\}[0-9]*\).*/\1/p'
}

# reserve_down_to SKU TARGET: reserve (in one order) what it takes for the item to have TARGET available.
reserve_down_to() {
    local have
    have="$(available "$1")"
    if [ "$have" -gt "$2" ]; then
        api POST /v1/reservations \
            "{\"orderId\": \"shot-$RUN-$1\", \"bizId\": \"$BIZ\", \"items\": [{\"skuId\": $1, \"quantity\": $((have - $2))}]}" >/dev/null
    fi
}

# traffic: reserve and cancel one unit of the busy item, over and over, so the worker has work to show.
traffic() {
    local i=0
    while true; do
        i=$((i + 1))
        api POST /v1/reservations \
            "{\"orderId\": \"busy-$RUN-$i\", \"bizId\": \"$BIZ\", \"items\": [{\"skuId\": 1001, \"quantity\": 1}]}" >/dev/null || true
        if ((i % 2 == 0)); then api POST "/v1/businesses/$BIZ/reservations/busy-$RUN-$i/cancel" >/dev/null || true; fi
        sleep 0.02
    done
}

install_chromium
bash "$INVENTORY_ROOT/scripts/setup.sh"
cd "$INVENTORY_ROOT"

if [ "$BUILD" = release ]; then
    step "swift build -c release --product inventoryd"
    swift build -c release --product inventoryd
else
    step "swift build --product inventoryd"
    swift build --product inventoryd
fi
BINARY="$INVENTORY_ROOT/.build/$BUILD/inventoryd"

export INVENTORY_HTTP_HOST=127.0.0.1
INVENTORY_HTTP_PORT="$(free_port)"
export INVENTORY_HTTP_PORT
export INVENTORY_KEY_PREFIX=statusdemo INVENTORY_WORKER_CONSUMER=status-screenshot
export INVENTORY_RECONCILE_INTERVAL_SECONDS=0 INVENTORY_LOG_FORMAT=text INVENTORY_LOG_LEVEL=notice
BASE="http://127.0.0.1:$INVENTORY_HTTP_PORT"
RUN="$(date +%s)"

"$BINARY" migrate
step "inventoryd: serving on $BASE (log: $LOG)"
"$BINARY" serve >"$LOG" 2>&1 &
SERVE_PID=$!
for ((i = 0; i < 100; i++)); do
    curl -sf "$BASE/readyz" >/dev/null 2>&1 && break
    alive "$SERVE_PID" || die "inventoryd exited during start-up" "$LOG"
    sleep 0.2
done
curl -sf "$BASE/readyz" >/dev/null || die "inventoryd not ready within 20 s" "$LOG"

step "items: 1001 busy, 1002 low, 1003 sold out, 1004 fine"
api PUT "/v1/stock/$BIZ/1001" '{"stock": 5000, "dangerNum": 20}' >/dev/null
api PUT "/v1/stock/$BIZ/1002" '{"stock": 40, "dangerNum": 10}' >/dev/null
api PUT "/v1/stock/$BIZ/1003" '{"stock": 12, "dangerNum": 5}' >/dev/null
api PUT "/v1/stock/$BIZ/1004" '{"stock": 200, "dangerNum": 10}' >/dev/null
reserve_down_to 1002 3
reserve_down_to 1003 0
reserve_down_to 1004 150
# A stock read is where the service sees an item low (as its low-stock metrics do).
for sku in 1001 1002 1003 1004; do api GET "/v1/stock/$BIZ/$sku" >/dev/null; done

step "reconcile: business $BIZ"
"$BINARY" reconcile --biz "$BIZ" || true

step "traffic: reserve/cancel on $BIZ:1001 while the page refreshes"
traffic &
TRAFFIC_PID=$!
sleep 5

mkdir -p "$(dirname "$OUTPUT")"
step "chromium: screenshot of $BASE/ to ${OUTPUT#"$INVENTORY_ROOT"/}"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --screenshot="$OUTPUT" --window-size=1200,900 \
    --virtual-time-budget=5000 "$BASE/" >>"$LOG" 2>&1 || die "chromium failed" "$LOG"
[ -s "$OUTPUT" ] || die "no screenshot was written" "$LOG"
curl -sS "$BASE/v1/status"
echo
stop_traffic
wait_drained
step "done: $OUTPUT"
