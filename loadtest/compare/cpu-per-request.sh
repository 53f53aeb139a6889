#!/usr/bin/env bash
# CPU per request of two builds, one after the other in alternating rounds (A B A B ...), each on a fresh private
# redis-server and database: loadgen sends an open-loop rate both builds sustain, and the CPU time each process used
# over the run (from /proc) is divided by the requests answered. Unlike req/s on a saturated machine, this does not
# depend on how the 2 cores happen to be shared between loadgen, Redis, MariaDB and the service.
#
#   loadtest/compare/cpu-per-request.sh OLD_DIR NEW_DIR [ROUNDS] [RATE] [DURATION] [SCENARIO]
#       (defaults: 3 rounds, 2500 req/s, 15s, hot; SCENARIO healthz measures GET /healthz)
#
# Folders as for binaries.sh (a release `inventoryd` beside its lua/, migrations/, openapi/). Prints µs of CPU per
# request for the service (worker in-process), redis-server and mariadbd (shared with the rest of the machine: run
# nothing else), per round and as means. COMPARE_OLD_ENV / COMPARE_NEW_ENV add settings to one side, as for
# binaries.sh. Needs the MariaDB of scripts/setup.sh and a release loadgen.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
. "$HERE/../../scripts/env.sh"
cd "$INVENTORY_ROOT"
[ $# -ge 2 ] || { sed -n '2,12p' "$0"; exit 64; }
OLD="$(cd "$1" && pwd -P)"
NEW="$(cd "$2" && pwd -P)"
ROUNDS=${3:-3}
RATE=${4:-2500}
DURATION=${5:-15s}
SCENARIO=${6:-hot}
swift build -c release --product loadgen >/dev/null
. "$INVENTORY_ROOT/loadtest/lib/private.sh"
WORK="$(mktemp -d)"
trap 'private_stop; rm -rf "$WORK"' EXIT
MYSQLD_PID="$(cat "$INVENTORY_ROOT/.local/mariadb/mysqld.pid" 2>/dev/null || pgrep -x mariadbd | head -1)"
TICK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # name folder -> "service redis mariadb requests"
  local name=$1 dir=$2 extra=()
  private_database "inventory_cpu_$name"
  private_redis 6397 "$WORK"
  local redis_pid
  redis_pid=$(cat "$WORK/redis-6397.pid")
  if [ "$name" = old ]; then read -r -a extra <<<"${COMPARE_OLD_ENV:-}"; else read -r -a extra <<<"${COMPARE_NEW_ENV:-}"; fi
  (
    export INVENTORY_REDIS_PORT=6397 INVENTORY_HTTP_PORT=8097 INVENTORY_MYSQL_DATABASE="inventory_cpu_$name" \
      INVENTORY_LUA_DIR="$dir/lua" INVENTORY_MIGRATIONS_DIR="$dir/migrations" INVENTORY_OPENAPI_DIR="$dir/openapi" \
      INVENTORY_LOG_LEVEL=warning
    [ ${#extra[@]} -eq 0 ] || export "${extra[@]}"
    private_serve "$dir/inventoryd" 8097 "$WORK/serve-$name.log"
    local s0 r0 m0 s1 r1 m1 requests
    s0=$(cpu "$SERVICE"); r0=$(cpu "$redis_pid"); m0=$(cpu "$MYSQLD_PID")
    .build/release/loadgen --scenario "$SCENARIO" --rate "$RATE" -c 64 -d "$DURATION" --no-files -q \
      --target "http://127.0.0.1:8097" >"$WORK/loadgen-$name.log" 2>&1 || { cat "$WORK/loadgen-$name.log" >&2; exit 1; }
    s1=$(cpu "$SERVICE"); r1=$(cpu "$redis_pid"); m1=$(cpu "$MYSQLD_PID")
    requests=$(grep -E "^$SCENARIO " "$WORK/loadgen-$name.log" | awk '{gsub(",", "", $2); print $2}' | head -1)
    private_stop
    echo "$(( s1 - s0 )) $(( r1 - r0 )) $(( m1 - m0 )) $requests"
  )
  # The subshell stopped its service; its redis-server was started out here.
  private_stop
}

declare -A SUM
for name in old new; do for what in service redis mariadb; do SUM[$name-$what]=0; done; SUM[$name-n]=0; done
per() { echo "scale=1; $1 * 1000000 / $TICK / $2" | bc; }
printf '%-10s %12s %12s %12s %10s\n' round "service µs" "redis µs" "mariadb µs" requests
for round in $(seq 1 "$ROUNDS"); do
  for name in old new; do
    dir=$OLD; [ "$name" = new ] && dir=$NEW
    read -r s r m n <<<"$(run "$name" "$dir")"
    printf '%-10s %12s %12s %12s %10s\n' "$name r$round" "$(per "$s" "$n")" "$(per "$r" "$n")" "$(per "$m" "$n")" "$n"
    SUM[$name-service]=$((SUM[$name-service] + s)); SUM[$name-redis]=$((SUM[$name-redis] + r))
    SUM[$name-mariadb]=$((SUM[$name-mariadb] + m)); SUM[$name-n]=$((SUM[$name-n] + n))
  done
done
echo "means over all rounds ($SCENARIO, $RATE req/s open loop, $DURATION per round):"
for name in old new; do
  printf '%-10s %12s %12s %12s %10s\n' "$name" "$(per "${SUM[$name-service]}" "${SUM[$name-n]}")" \
    "$(per "${SUM[$name-redis]}" "${SUM[$name-n]}")" "$(per "${SUM[$name-mariadb]}" "${SUM[$name-n]}")" "${SUM[$name-n]}"
done
ratio() { echo "scale=3; ($1 * $2) / ($3 * $4)" | bc; }
echo "new/old CPU per request: service $(ratio "${SUM[new-service]}" "${SUM[old-n]}" "${SUM[old-service]}" "${SUM[new-n]}"), redis $(ratio "${SUM[new-redis]}" "${SUM[old-n]}" "${SUM[old-redis]}" "${SUM[new-n]}")"
