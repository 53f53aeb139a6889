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
WORK="$(mktemp -d)"
SERVE=""
REDIS=""
stop() {
  [ -n "$SERVE" ] && { kill "$SERVE" 2>/dev/null || true; wait "$SERVE" 2>/dev/null || true; }
  [ -n "$REDIS" ] && { kill "$REDIS" 2>/dev/null || true; wait "$REDIS" 2>/dev/null || true; }
  SERVE=""
  REDIS=""
}
trap 'stop; rm -rf "$WORK"' EXIT
if redis-cli -p 6397 ping >/dev/null 2>&1; then echo "port 6397 is taken (an earlier run's redis-server?)" >&2; exit 2; fi
MYSQLD_PID="$(cat "$INVENTORY_ROOT/.local/mariadb/mysqld.pid" 2>/dev/null || pgrep -x mariadbd | head -1)"
TICK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # name folder -> "service redis mariadb requests"
  local name=$1 dir=$2 db="inventory_cpu_$1"
  "$(command -v mariadb || command -v mysql)" --no-defaults --socket="$INVENTORY_ROOT/.local/mariadb/mysqld.sock" -uroot -e "
    DROP DATABASE IF EXISTS $db; CREATE DATABASE $db CHARACTER SET utf8mb4;
    GRANT ALL PRIVILEGES ON $db.* TO '$INVENTORY_MYSQL_USER'@'127.0.0.1';
    GRANT ALL PRIVILEGES ON $db.* TO '$INVENTORY_MYSQL_USER'@'localhost';"
  redis-server --port 6397 --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" --daemonize no \
    --logfile "$WORK/redis-$name.log" &
  REDIS=$!
  for _ in $(seq 1 50); do redis-cli -p 6397 ping >/dev/null 2>&1 && break; sleep 0.1; done
  local env=(INVENTORY_REDIS_PORT=6397 INVENTORY_HTTP_PORT=8097 INVENTORY_MYSQL_DATABASE="$db"
    INVENTORY_LUA_DIR="$dir/lua" INVENTORY_MIGRATIONS_DIR="$dir/migrations" INVENTORY_OPENAPI_DIR="$dir/openapi"
    INVENTORY_LOG_LEVEL=warning)
  env "${env[@]}" "$dir/inventoryd" migrate >/dev/null
  local extra=()
  if [ "$name" = old ]; then read -r -a extra <<<"${COMPARE_OLD_ENV:-}"; else read -r -a extra <<<"${COMPARE_NEW_ENV:-}"; fi
  env "${env[@]}" "${extra[@]}" "$dir/inventoryd" serve >"$WORK/serve-$name.log" 2>&1 &
  SERVE=$!
  for _ in $(seq 1 100); do curl -fs "localhost:8097/readyz" >/dev/null && break; sleep 0.2; done
  local s0 r0 m0 s1 r1 m1
  s0=$(cpu "$SERVE"); r0=$(cpu "$REDIS"); m0=$(cpu "$MYSQLD_PID")
  .build/release/loadgen --scenario "$SCENARIO" --rate "$RATE" -c 64 -d "$DURATION" --no-files -q \
    --target "http://127.0.0.1:8097" >"$WORK/loadgen-$name.log" 2>&1 || { cat "$WORK/loadgen-$name.log" >&2; exit 1; }
  s1=$(cpu "$SERVE"); r1=$(cpu "$REDIS"); m1=$(cpu "$MYSQLD_PID")
  local requests
  requests=$(grep -E "^$SCENARIO " "$WORK/loadgen-$name.log" | awk '{gsub(",", "", $2); print $2}' | head -1)
  stop
  echo "$(( (s1 - s0) )) $(( (r1 - r0) )) $(( (m1 - m0) )) $requests"
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
