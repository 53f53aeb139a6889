#!/usr/bin/env bash
# Two builds of the service side by side in one run: each serves from its own folder (its binary `inventoryd` and
# the `lua/`, `migrations/`, `openapi/` it was built with) on a private redis-server and database of its own, and
# loadgen measures them alternately (A B A B ...), so both see the same machine at the same time.
#
#   loadtest/compare/binaries.sh OLD_DIR NEW_DIR [loadgen flags]     (default flags: --scenario hot --healthz -c 64 -d 15s --rounds 2)
#
# A folder is made by copying a release build and its data, e.g. for the current checkout:
#   mkdir -p /tmp/new && cp .build/release/inventoryd /tmp/new/ && cp -r lua migrations openapi /tmp/new/
# COMPARE_OLD_ENV / COMPARE_NEW_ENV (VAR=value ..., default none) are added to that side's `serve`: one build against
# itself with different settings, e.g. the database-only design:
#   COMPARE_NEW_ENV="INVENTORY_ENGINE=db INVENTORY_MYSQL_POOL_SIZE=16" loadtest/compare/binaries.sh /tmp/new /tmp/new
# Needs the MariaDB of scripts/setup.sh and a release loadgen.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
. "$HERE/../../scripts/env.sh"
cd "$INVENTORY_ROOT"
[ $# -ge 2 ] || { sed -n '2,10p' "$0"; exit 64; }
OLD="$(cd "$1" && pwd -P)"
NEW="$(cd "$2" && pwd -P)"
shift 2
FLAGS=("$@")
[ ${#FLAGS[@]} -gt 0 ] || FLAGS=(--scenario hot --healthz -c 64 -d 15s --rounds 2)
swift build -c release --product loadgen >/dev/null
WORK="$(mktemp -d)"
PIDS=()
trap 'for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
for port in 6398 6399; do
  if redis-cli -p "$port" ping >/dev/null 2>&1; then echo "port $port is taken (an earlier run's redis-server?)" >&2; exit 2; fi
done

start() { # name folder redis-port http-port
  local name=$1 dir=$2 redis=$3 http=$4 db="inventory_compare_$1"
  "$(command -v mariadb || command -v mysql)" --no-defaults --socket="$INVENTORY_ROOT/.local/mariadb/mysqld.sock" -uroot -e "
    DROP DATABASE IF EXISTS $db; CREATE DATABASE $db CHARACTER SET utf8mb4;
    GRANT ALL PRIVILEGES ON $db.* TO '$INVENTORY_MYSQL_USER'@'127.0.0.1';
    GRANT ALL PRIVILEGES ON $db.* TO '$INVENTORY_MYSQL_USER'@'localhost';"
  redis-server --port "$redis" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" --daemonize no \
    --logfile "$WORK/redis-$name.log" &
  PIDS+=($!)
  for _ in $(seq 1 50); do redis-cli -p "$redis" ping >/dev/null 2>&1 && break; sleep 0.1; done
  local env=(INVENTORY_REDIS_PORT="$redis" INVENTORY_HTTP_PORT="$http" INVENTORY_MYSQL_DATABASE="$db"
    INVENTORY_LUA_DIR="$dir/lua" INVENTORY_MIGRATIONS_DIR="$dir/migrations" INVENTORY_OPENAPI_DIR="$dir/openapi"
    INVENTORY_LOG_LEVEL=warning)
  env "${env[@]}" "$dir/inventoryd" migrate >/dev/null
  local extra=()
  if [ "$name" = old ]; then read -r -a extra <<<"${COMPARE_OLD_ENV:-}"; else read -r -a extra <<<"${COMPARE_NEW_ENV:-}"; fi
  env "${env[@]}" "${extra[@]}" "$dir/inventoryd" serve >"$WORK/serve-$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do curl -fs "localhost:$http/readyz" >/dev/null && return 0; sleep 0.2; done
  echo "$name did not become ready:" >&2
  cat "$WORK/serve-$name.log" >&2
  exit 2
}
echo "==> old: $OLD (redis 6398, http 8098)"
start old "$OLD" 6398 8098
echo "==> new: $NEW (redis 6399, http 8099)"
start new "$NEW" 6399 8099
.build/release/loadgen "${FLAGS[@]}" --target old=http://127.0.0.1:8098 --target new=http://127.0.0.1:8099
