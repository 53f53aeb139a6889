# loadtest/lib/private.sh: a service of its own for a measurement script, on the MariaDB of scripts/setup.sh.
# Sourced after scripts/env.sh; the script sets `trap private_stop EXIT`, which stops what these started (so that a
# run right after finds its ports free) and nothing else.
#
#   private_database NAME           a database made anew, for INVENTORY_MYSQL_USER
#   private_redis PORT DIR          a redis-server without persistence on PORT (refused when the port answers already)
#   private_serve BINARY HTTP LOG   `BINARY migrate` and `BINARY serve` in the background (settings from the
#                                   environment); sets SERVICE to its pid and returns once /readyz answers, else
#                                   prints the log and exits 2
#   private_stop                    every service and redis-server started here, stopped and waited for (and
#                                   forgotten: a script may start and stop a private stack per round)
#   private_begin NAME              a scratch folder ($WORK), private_stop and its removal on exit, and the run's
#                                   results file, $OUT = loadtest/results/NAME-<UTC timestamp>.txt
#   private_stack DIR NAME [LEVEL]  database inventory_NAME and a redis-server on 6397 of their own, served on 8097
#                                   by DIR's inventoryd (a release build beside its lua/, migrations/, openapi/; log
#                                   level LEVEL, warning by default; settings exported before apply too)

PRIVATE_PIDS=()
PRIVATE_REDIS_PORTS=()
SERVICE=

private_stop() {
  for pid in "${PRIVATE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  for port in "${PRIVATE_REDIS_PORTS[@]}"; do redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; done
  PRIVATE_PIDS=()
  PRIVATE_REDIS_PORTS=()
}

private_begin() {
  WORK="$(mktemp -d)"
  trap 'private_stop; rm -rf "$WORK"' EXIT
  OUT="loadtest/results/$1-$(date -u +%Y%m%dT%H%M%SZ).txt"
}

private_database() {
  "$(command -v mariadb || command -v mysql)" --no-defaults --socket="$INVENTORY_ROOT/.local/mariadb/mysqld.sock" -uroot -e "
    DROP DATABASE IF EXISTS $1; CREATE DATABASE $1 CHARACTER SET utf8mb4;
    GRANT ALL PRIVILEGES ON $1.* TO '$INVENTORY_MYSQL_USER'@'127.0.0.1';
    GRANT ALL PRIVILEGES ON $1.* TO '$INVENTORY_MYSQL_USER'@'localhost';"
}

private_redis() {
  if redis-cli -p "$1" ping >/dev/null 2>&1; then
    echo "port $1 is taken (an earlier run's redis-server?)" >&2
    exit 2
  fi
  redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --dir "$2" --daemonize yes \
    --pidfile "$2/redis-$1.pid" --logfile "$2/redis-$1.log"
  PRIVATE_REDIS_PORTS+=("$1")
  for _ in $(seq 1 50); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "redis-server on port $1 did not start" >&2
  exit 2
}

private_serve() {
  # (Its log lines, at the run's log level, kept out of the results file unless it fails.)
  "$1" migrate >/dev/null 2>"$3.migrate" || { cat "$3.migrate" >&2; exit 2; }
  "$1" serve >"$3" 2>&1 &
  SERVICE=$!
  PRIVATE_PIDS+=("$SERVICE")
  for _ in $(seq 1 100); do curl -fs "localhost:$2/readyz" >/dev/null && return 0; sleep 0.2; done
  echo "the service did not become ready:" >&2
  cat "$3" >&2
  exit 2
}

private_stack() {
  private_database "inventory_$2"
  private_redis 6397 "$WORK"
  export INVENTORY_REDIS_PORT=6397 INVENTORY_HTTP_PORT=8097 INVENTORY_MYSQL_DATABASE="inventory_$2" \
    INVENTORY_LUA_DIR="$1/lua" INVENTORY_MIGRATIONS_DIR="$1/migrations" INVENTORY_OPENAPI_DIR="$1/openapi" \
    INVENTORY_LOG_LEVEL="${3:-warning}"
  private_serve "$1/inventoryd" 8097 "$WORK/serve.log"
}
