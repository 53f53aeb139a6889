#!/usr/bin/env bash
# Journal lag under an open-loop reserve rate (issue 21: p99 ≤ 50 ms at half the closed-loop rate, worker
# in-process): one release build on a private redis-server and database, loadgen sends RATE reserves/s of one hot item
# for DURATION, and the worker's progress lines (one per ~10 s, `INVENTORY_LOG_LEVEL=info`) give the lag from an
# event's XADD to its journal COMMIT, p50/p99/max per window. Writes loadtest/results/lag-<UTC timestamp>.txt.
#
#   loadtest/worker/lag.sh DIR [RATE] [DURATION]       (defaults: 3000 reserves/s, 40s)
#
# Each line's ms columns add up over the run (read overlaps the rest; lease and check are the chores between batches).
#
# RATE `half`: the target as stated: first a closed-loop run of the same scenario (64 connections, 20 s) on the same
# stack, then the open loop at half the reserves/s it answered.
#
# DIR as for loadtest/compare/binaries.sh (a release `inventoryd` beside its lua/, migrations/, openapi/). Needs the
# MariaDB of scripts/setup.sh and a release loadgen; run nothing else meanwhile.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
. "$HERE/../../scripts/env.sh"
cd "$INVENTORY_ROOT"
[ $# -ge 1 ] || { sed -n '2,10p' "$0"; exit 64; }
DIR="$(cd "$1" && pwd -P)"
RATE=${2:-3000}
DURATION=${3:-40s}
swift build -c release --product loadgen >/dev/null
. "$INVENTORY_ROOT/loadtest/lib/private.sh"
private_begin lag
exec > >(tee "$OUT") 2>&1
private_stack "$DIR" lag info
if [ "$RATE" = half ]; then
  echo "closed loop first: loadgen --scenario hot -c 64 -d 20s"
  CLOSED=$(.build/release/loadgen --scenario hot -c 64 -d 20s --no-files -q --target "http://127.0.0.1:8097" \
    | tee /dev/stderr | awk '$1 == "hot" && $2 ~ /^[0-9,]+$/ { gsub(",", "", $3); print $3 }')
  [ -n "$CLOSED" ] || { echo "no closed-loop rate read" >&2; exit 2; }
  RATE=$(( CLOSED / 2 ))
  echo "closed loop: $CLOSED reserves/s; open loop at half: $RATE/s"
  sleep 12  # a progress window of the closed loop's own, before the measured one
  grep -c '"write-back progress"' "$WORK/serve.log" > "$WORK/skip" || true
fi
echo "build: $DIR/inventoryd; loadgen --scenario hot -c 64 --rate $RATE -d $DURATION"
.build/release/loadgen --scenario hot -c 64 --rate "$RATE" -d "$DURATION" --no-files -q --target "http://127.0.0.1:8097" \
  | grep -E "^(phase|hot |  )"
sleep 12  # the worker's last progress line of the run (one per ~10 s)
echo "worker progress lines (lag from XADD to COMMIT, ms):"
grep '"write-back progress"' "$WORK/serve.log" | tail -n +$(( $(cat "$WORK/skip" 2>/dev/null || echo 0) + 1 )) | python3 -c "$(cat <<'PY'
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    print("%s  events %7s  events/s %6s  lag p50 %4s  p99 %4s  max %5s  batches %5s  ms read %5s apply %5s settle %5s ack %5s lease %4s check %4s" % (
        e["ts"], e["events"], e["eventsPerSecond"], e["lagP50Ms"], e["lagP99Ms"], e["lagMaxMs"], e["batches"],
        e["readMs"], e["applyMs"], e["settleMs"], e["ackMs"], e.get("leaseMs", "-"), e.get("checkMs", "-")))
PY
)"
