#!/usr/bin/env bash
# Quick HTTP benchmark of a running service with wrk: GET /healthz (the server's ceiling), then
# reservations of one hot item (reserve_hot.lua). Prints both wrk reports and writes a JSON summary to
# loadtest/results/wrk-<UTC timestamp>.json.
#
#   loadtest/wrk/bench.sh [BASE_URL] [DURATION] [CONNECTIONS] [THREADS]
#   defaults:              http://127.0.0.1:8080  15s  64  2
#
# WRK_BIZ / WRK_SKU choose the hot item (default loadtest / 1); its stock is set to 1,000,000,000 first.
# Needs only curl, wrk and python3 (wrk is installed with apt when missing).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$HERE/../.." && pwd -P)"

BASE_URL="${1:-http://127.0.0.1:8080}"
BASE_URL="${BASE_URL%/}"
DURATION="${2:-15s}"
CONNECTIONS="${3:-64}"
THREADS="${4:-2}"
export WRK_BIZ="${WRK_BIZ:-loadtest}"
export WRK_SKU="${WRK_SKU:-1}"

die() {
    printf 'bench.sh: error: %s\n' "$*" >&2
    exit 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# need COMMAND PACKAGE: install the Debian package when the command is missing.
need() {
    command -v "$1" >/dev/null 2>&1 && return
    command -v apt-get >/dev/null 2>&1 || die "$1 is missing and there is no apt-get to install it"
    echo "==> installing $2"
    as_root apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    command -v "$1" >/dev/null 2>&1 || die "installing $2 did not provide $1"
}
[[ "$WRK_BIZ" =~ ^[a-z0-9_-]{1,32}$ ]] || die "WRK_BIZ must be 1-32 of a-z 0-9 _ -, got: $WRK_BIZ"
[[ "$WRK_SKU" =~ ^[1-9][0-9]*$ ]] || die "WRK_SKU must be a positive integer, got: $WRK_SKU"

need curl curl
need wrk wrk
need python3 python3

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RESULTS_DIR="$ROOT/loadtest/results"
OUT="$RESULTS_DIR/wrk-$STAMP.json"
mkdir -p "$RESULTS_DIR"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

curl -fsS --max-time 5 -o /dev/null "$BASE_URL/healthz" ||
    die "the service does not answer at $BASE_URL/healthz (start it with scripts/run.sh)"

STOCK_URL="$BASE_URL/v1/stock/$WRK_BIZ/$WRK_SKU"
echo "==> PUT $STOCK_URL {\"stock\": 1000000000}"
code="$(curl -sS --max-time 10 -o "$TMP/put.json" -w '%{http_code}' -X PUT \
    -H 'Content-Type: application/json' --data '{"stock": 1000000000}' "$STOCK_URL")" ||
    die "PUT $STOCK_URL failed"
case "$code" in
    2??) ;;
    *) die "PUT $STOCK_URL answered $code: $(cat "$TMP/put.json")" ;;
esac

WRK=(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency)

echo "==> wrk GET /healthz (${THREADS} threads, ${CONNECTIONS} connections, $DURATION)"
if ! "${WRK[@]}" "$BASE_URL/healthz" | tee "$TMP/healthz.txt"; then
    die "wrk on /healthz failed"
fi

echo "==> wrk POST /v1/reservations, hot item $WRK_BIZ/$WRK_SKU (${THREADS} threads, ${CONNECTIONS} connections, $DURATION)"
if ! "${WRK[@]}" -s "$HERE/reserve_hot.lua" "$BASE_URL/v1/reservations" | tee "$TMP/reserve.txt"; then
    die "wrk on /v1/reservations failed"
fi

# Best effort: the stock item after the run (reserved should equal the 201s of this and earlier runs).
curl -sS --max-time 10 -o "$TMP/stock.json" "$STOCK_URL" 2>/dev/null || true

GIT_COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)"

python3 - "$TMP" "$OUT" "$STAMP" "$BASE_URL" "$DURATION" "$CONNECTIONS" "$THREADS" "$GIT_COMMIT" <<'PY'
import json, os, re, sys

tmp, out, stamp, base_url, duration, connections, threads, commit = sys.argv[1:9]

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}

def ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    return round(float(m.group(1)) * UNITS_MS[m.group(2)], 3) if m else None

def parse(path):
    text = open(path).read()
    result = {"requestsPerSec": None, "requests": None, "latencyAvgMs": None, "latencyMs": {},
              "non2xx3xx": 0, "socketErrors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}}
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    if m:
        result["requestsPerSec"] = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in ", text, re.M)
    if m:
        result["requests"] = int(m.group(1))
    m = re.search(r"^\s+Latency\s+(\S+)", text, re.M)
    if m:
        result["latencyAvgMs"] = ms(m.group(1))
    for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M):
        result["latencyMs"]["p" + pct] = ms(value)
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        result["non2xx3xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        result["socketErrors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"^wrk-status-counts (\{.*\})$", text, re.M)
    if m:
        result["statusCounts"] = json.loads(m.group(1))
    return result

healthz = parse(os.path.join(tmp, "healthz.txt"))
reserve = parse(os.path.join(tmp, "reserve.txt"))
reserve["bizId"] = os.environ.get("WRK_BIZ")
reserve["skuId"] = int(os.environ.get("WRK_SKU", "1"))

stock_after = None
try:
    with open(os.path.join(tmp, "stock.json")) as f:
        stock_after = json.load(f)
except (OSError, ValueError):
    pass

ratio = None
if healthz["requestsPerSec"] and reserve["requestsPerSec"] is not None:
    ratio = round(reserve["requestsPerSec"] / healthz["requestsPerSec"], 3)

summary = {
    "tool": "wrk",
    "timestamp": stamp,
    "gitCommit": commit or None,
    "baseUrl": base_url,
    "duration": duration,
    "connections": int(connections),
    "threads": int(threads),
    "healthz": healthz,
    "reserve": reserve,
    "reserveToHealthzRatio": ratio,
    "stockAfter": stock_after,
}
with open(out, "w") as f:
    json.dump(summary, f, indent=2)
    f.write("\n")

def line(name, r):
    p99 = r["latencyMs"].get("p99")
    return f"{name}: {r['requestsPerSec']} req/s, p99 {p99} ms, non-2xx/3xx {r['non2xx3xx']}"

print("==> summary")
print("  " + line("healthz", healthz))
print("  " + line("reserve", reserve) + (f", statuses {json.dumps(reserve['statusCounts'])}" if "statusCounts" in reserve else ""))
print(f"  reserve/healthz ratio: {ratio}")
print(f"  written to {out}")
PY
