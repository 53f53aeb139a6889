#!/usr/bin/env bash
# Where the two cores go when the service is saturated (issue 21's "reserve ≥ 0.5 × /healthz"): one build, one private
# redis-server and database, loadgen closed loop at 64 connections, rounds alternating GET /healthz and reserves of one
# hot item. Per round: requests/s and the CPU each process spent per request (from /proc: the service with its
# in-process worker, redis-server, mariadbd, loadgen). With every process on the same two cores, requests/s is about
# 2 cores ÷ CPU per request, so the ratio of the two rates is the ratio of their CPU per request; the summary prints
# both, and the part of a reserve's CPU that is not the service's own reserve work (an HTTP request's cost as
# /healthz measures it, Redis and MariaDB) against the budget a reserve at half the /healthz rate would have.
#
#   loadtest/compare/cpu-at-saturation.sh DIR [ROUNDS] [DURATION]      (defaults: 2 rounds, 15s)
#
# DIR as for binaries.sh (a release `inventoryd` beside its lua/, migrations/, openapi/). SATURATION_ENV (VAR=value
# ...) adds settings to the service. Writes loadtest/results/saturation-<UTC timestamp>.txt. Needs the MariaDB of
# scripts/setup.sh and a release loadgen; run nothing else meanwhile.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
. "$HERE/../../scripts/env.sh"
cd "$INVENTORY_ROOT"
[ $# -ge 1 ] || { sed -n '2,14p' "$0"; exit 64; }
DIR="$(cd "$1" && pwd -P)"
ROUNDS=${2:-2}
DURATION=${3:-15s}
swift build -c release --product loadgen >/dev/null
. "$INVENTORY_ROOT/loadtest/lib/private.sh"
private_begin saturation
MYSQLD_PID="$(cat "$INVENTORY_ROOT/.local/mariadb/mysqld.pid" 2>/dev/null || pgrep -x mariadbd | head -1)"
TICK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
exec > >(tee "$OUT") 2>&1

read -r -a EXTRA <<<"${SATURATION_ENV:-}"
[ ${#EXTRA[@]} -eq 0 ] || export "${EXTRA[@]}"
private_stack "$DIR" saturation
REDIS_PID=$(cat "$WORK/redis-6397.pid")
echo "build: $DIR/inventoryd; settings: ${SATURATION_ENV:-defaults}; loadgen -c 64 closed loop, $DURATION per round"

declare -A SUM
for scenario in healthz hot; do for what in service redis mariadb loadgen n seconds; do SUM[$scenario-$what]=0; done; done
per() { echo "scale=1; $1 * 1000000 / $TICK / $2" | bc; }
printf '%-12s %10s %12s %12s %12s %12s %12s\n' round "req/s" "service µs" "redis µs" "mariadb µs" "loadgen µs" "total µs"
for round in $(seq 1 "$ROUNDS"); do
  for scenario in healthz hot; do
    s0=$(cpu "$SERVICE"); r0=$(cpu "$REDIS_PID"); m0=$(cpu "$MYSQLD_PID")
    start=$(date +%s%N)
    .build/release/loadgen --scenario "$scenario" -c 64 -d "$DURATION" --no-files -q \
      --target "http://127.0.0.1:8097" >"$WORK/loadgen.log" 2>&1 &
    pid=$!
    # loadgen's own CPU, read just before it exits (it is the parent's child: its /proc entry stays until waited for).
    l=0
    while kill -0 "$pid" 2>/dev/null; do
      l=$(cpu "$pid" 2>/dev/null || echo "$l")
      [ -e "/proc/$pid/stat" ] && [ "$(awk '{print $3}' "/proc/$pid/stat")" = Z ] && break
      sleep 0.2
    done
    wait "$pid" || { cat "$WORK/loadgen.log"; exit 1; }
    end=$(date +%s%N)
    s1=$(cpu "$SERVICE"); r1=$(cpu "$REDIS_PID"); m1=$(cpu "$MYSQLD_PID")
    n=$(grep -E "^$scenario " "$WORK/loadgen.log" | awk '{gsub(",", "", $2); print $2}' | head -1)
    s=$((s1 - s0)); r=$((r1 - r0)); m=$((m1 - m0))
    printf '%-12s %10s %12s %12s %12s %12s %12s\n' "$scenario r$round" "$(echo "scale=0; $n * 1000000000 / ($end - $start)" | bc)" \
      "$(per "$s" "$n")" "$(per "$r" "$n")" "$(per "$m" "$n")" "$(per "$l" "$n")" "$(per $((s + r + m + l)) "$n")"
    SUM[$scenario-service]=$((SUM[$scenario-service] + s)); SUM[$scenario-redis]=$((SUM[$scenario-redis] + r))
    SUM[$scenario-mariadb]=$((SUM[$scenario-mariadb] + m)); SUM[$scenario-loadgen]=$((SUM[$scenario-loadgen] + l))
    SUM[$scenario-n]=$((SUM[$scenario-n] + n)); SUM[$scenario-seconds]=$((SUM[$scenario-seconds] + (end - start) / 1000000))
  done
done
echo "means over all rounds:"
for scenario in healthz hot; do
  total=$((SUM[$scenario-service] + SUM[$scenario-redis] + SUM[$scenario-mariadb] + SUM[$scenario-loadgen]))
  printf '%-12s %10s %12s %12s %12s %12s %12s\n' "$scenario" \
    "$(echo "scale=0; ${SUM[$scenario-n]} * 1000 / ${SUM[$scenario-seconds]}" | bc)" \
    "$(per "${SUM[$scenario-service]}" "${SUM[$scenario-n]}")" "$(per "${SUM[$scenario-redis]}" "${SUM[$scenario-n]}")" \
    "$(per "${SUM[$scenario-mariadb]}" "${SUM[$scenario-n]}")" "$(per "${SUM[$scenario-loadgen]}" "${SUM[$scenario-n]}")" \
    "$(per "$total" "${SUM[$scenario-n]}")"
done
h=$(echo "scale=1; (${SUM[healthz-service]} + ${SUM[healthz-loadgen]}) * 1000000 / $TICK / ${SUM[healthz-n]}" | bc)
ratio=$(echo "scale=3; (${SUM[hot-n]} * ${SUM[healthz-seconds]}) / (${SUM[healthz-n]} * ${SUM[hot-seconds]})" | bc)
stores=$(echo "scale=1; (${SUM[hot-redis]} + ${SUM[hot-mariadb]}) * 1000000 / $TICK / ${SUM[hot-n]}" | bc)
echo "reserve/healthz requests/s: $ratio"
echo "a reserve at half the /healthz rate has 2 × $h = $(echo "scale=1; 2 * $h" | bc) µs of CPU; an HTTP request as /healthz costs $h µs and"
echo "Redis + MariaDB take $stores µs per reserve (today's store traffic): $(echo "scale=1; $h + $stores" | bc) µs before the service's own reserve work"
