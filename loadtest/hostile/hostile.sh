#!/usr/bin/env bash
# The hostile-client run: one business (`victim`) reserves at a steady open-loop rate, first alone, then while
# another business (`evil`) sends the requests that used to cost everyone (loadtest/hostile/attackers.py: batch holds
# of a million units, 8 MiB code uploads, exports of a 200,000-code pool, unknown items, cancels of unknown ids, ever
# new users). Prints the victim's p99 quiet and under attack, and the service's resident memory (start, peak under
# attack, after a quiet spell), and writes the same to loadtest/results/hostile-<UTC timestamp>.txt.
#
#   loadtest/hostile/hostile.sh [RATE] [SECONDS]          (defaults: 300 reserves/s, 20 s per phase)
#
# Its own servers: a private redis-server (port 6397, no persistence) and the release `inventoryd serve` on port
# 8087 with database inventory_hostile; settings of the service may be passed in the environment
# (INVENTORY_BIZ_RATE_LIMIT=200 loadtest/hostile/hostile.sh). Needs the servers of scripts/setup.sh.
#
# Controls (attacks not in the default set, see attackers.py): `spin` burns a core and `spin-duty` part of one in
# bursts, sending nothing; `upload-sink` sends the upload attack to loadtest/hostile/sink.py (port HOSTILE_SINK_PORT,
# 8088) instead of the service, which answers after HOSTILE_SINK_DELAY_MS (to hold it to the service's upload rate).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
. "$HERE/../../scripts/env.sh"
cd "$INVENTORY_ROOT"
RATE="${1:-300}"
SECONDS_PER_PHASE="${2:-20}"
PORT=6397
HTTP=8087
DB=inventory_hostile
. "$HERE/../lib/private.sh"
private_begin hostile
swift build -c release --product inventoryd >/dev/null
swift build -c release --product loadgen >/dev/null

private_database "$DB"
private_redis "$PORT" "$WORK"
export INVENTORY_REDIS_PORT=$PORT INVENTORY_HTTP_PORT=$HTTP INVENTORY_MYSQL_DATABASE=$DB
export INVENTORY_LOG_LEVEL="${INVENTORY_LOG_LEVEL:-warning}"
private_serve .build/release/inventoryd "$HTTP" "$WORK/serve.log"

rss() { awk '/^VmRSS/ { print int($2 / 1024) }' "/proc/$SERVICE/status"; }
api() { curl -fsS -o /dev/null -X "$1" -H "Content-Type: ${4:-application/json}" --data-binary "$3" "localhost:$HTTP$2"; }
echo "==> the attacker's items (business evil)"
api PUT /v1/stock/evil/1 '{"stock": 1000000000000}'
api PUT /v1/stock/evil/1/pool "{\"kind\": \"batch\", \"batchCode\": \"$(printf 'B%.0s' $(seq 1 64))\"}"
api PUT /v1/stock/evil/2/pool '{"kind": "one-time"}'
api PUT /v1/stock/evil/3 '{"stock": 1000000000}'
api PUT /v1/stock/evil/3/pool '{"kind": "reusable"}'
for part in 0 1; do
  python3 -c "import sys; [print(f'R{$part}-{i:07d}') for i in range(100000)]" > "$WORK/codes.txt"
  api POST /v1/stock/evil/3/codes "@$WORK/codes.txt" text/plain
done
api PUT /v1/stock/evil/4 '{"stock": 1000000000, "perUserLimit": 1, "perUserWindowSeconds": 60}'
START_RSS=$(rss)

victim() {
  .build/release/loadgen --scenario zipf --items 100 --rate "$RATE" -c 16 -d "${SECONDS_PER_PHASE}s" --biz "$1" \
    --target "http://127.0.0.1:$HTTP" --out "$WORK/$1" -q >"$WORK/$1.log" 2>&1 || true
  python3 - "$WORK/$1" <<'PY'
import glob, json, sys
result = json.load(open(sorted(glob.glob(sys.argv[1] + "/*.json"))[-1]))
phase = result["phases"][0]
print(phase["latencyMs"]["p99"], phase["requests"], sum(phase["errors"].values()))
PY
}

echo "==> the victim alone: $RATE reserves/s for ${SECONDS_PER_PHASE}s"
read -r QUIET_P99 QUIET_N QUIET_ERR < <(victim victim-quiet)
echo "==> the victim under attack"
( while kill -0 $SERVICE 2>/dev/null; do rss >> "$WORK/rss.txt"; sleep 0.5; done ) &
SAMPLER=$!
# The attackers' own CPU (a Python process) is niced (HOSTILE_NICE, 19): on a small machine it would otherwise take a
# core from the service and the victim's load generator whatever the service does (the `spin` control measures that).
# HOSTILE_SCHED=idle runs them under SCHED_IDLE instead (chrt --idle 0): they get only CPU time no other process
# wants, as attackers on another machine would take none of this one's, while everything they send still costs the
# service, Redis and MariaDB what it costs.
if [ "${HOSTILE_SCHED:-nice}" = idle ]; then
  ATTACK_PREFIX=(chrt --idle 0)
else
  ATTACK_PREFIX=(nice -n "${HOSTILE_NICE:-19}")
fi
case ",${HOSTILE_ATTACKS:-}," in
  *,upload-sink,*)
    # the control for the uploads' bytes: a sink at the service's priority that reads them and answers 422
    python3 "$HERE/sink.py" "${HOSTILE_SINK_PORT:-8088}" &
    PRIVATE_PIDS+=("$!")
    for _ in $(seq 1 50); do curl -s -o /dev/null "localhost:${HOSTILE_SINK_PORT:-8088}/" && break; sleep 0.1; done
    kill -0 "$!" 2>/dev/null || { echo "the sink did not start (port ${HOSTILE_SINK_PORT:-8088} taken?)" >&2; exit 2; } ;;
esac
"${ATTACK_PREFIX[@]}" python3 "$HERE/attackers.py" "$HTTP" $((SECONDS_PER_PHASE + 4)) > "$WORK/attack.txt" &
ATTACK=$!
sleep 2
read -r HOSTILE_P99 HOSTILE_N HOSTILE_ERR < <(victim victim-hostile)
wait $ATTACK
[ -s "$WORK/attack.txt" ] || [[ ",spin,spin-duty," == *",${HOSTILE_ATTACKS:-},"* ]] || { echo "the attackers sent nothing" >&2; exit 1; }
PEAK_RSS=$(sort -n "$WORK/rss.txt" | tail -1)
echo "==> a quiet spell of 15 s"
sleep 15
kill $SAMPLER 2>/dev/null || true
AFTER_RSS=$(rss)

{
  echo "hostile-client run $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD), victim $RATE reserves/s for ${SECONDS_PER_PHASE}s (loadgen zipf, 100 items, 16 connections)"
  echo "service settings: $(env | grep '^INVENTORY_BIZ\|^INVENTORY_HOT\|^INVENTORY_MALLOC\|^INVENTORY_BULK\|^MALLOC' | tr '\n' ' ')"
  echo "attacks: ${HOSTILE_ATTACKS:-all} ($([ "${HOSTILE_SCHED:-nice}" = idle ] && echo "SCHED_IDLE" || echo "nice ${HOSTILE_NICE:-19}"))$([[ ",${HOSTILE_ATTACKS:-}," == *,upload-sink,* ]] && echo ", sink answers after ${HOSTILE_SINK_DELAY_MS:-0} ms")$([[ ",${HOSTILE_ATTACKS:-}," == *,spin-duty,* ]] && echo ", duty ${HOSTILE_DUTY_PERCENT:-25} %")$([ "${HOSTILE_PACE:-0}" != 0 ] && echo ", floods paced to $HOSTILE_PACE requests/s per thread")"
  echo "victim p99 quiet:        $QUIET_P99 ms ($QUIET_N requests, $QUIET_ERR errors)"
  echo "victim p99 under attack: $HOSTILE_P99 ms ($HOSTILE_N requests, $HOSTILE_ERR errors)"
  echo "ratio:                   $(awk "BEGIN { printf \"%.2f\", $HOSTILE_P99 / $QUIET_P99 }")"
  echo "service RSS (MiB):       start $START_RSS, peak under attack $PEAK_RSS, after 15 s quiet $AFTER_RSS"
  cat "$WORK/attack.txt"
} | tee "$OUT"
