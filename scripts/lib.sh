# shellcheck shell=bash
# Shared by the scripts (setup.sh, stop.sh, cluster.sh, the load-test scripts): where the project's servers keep their files, and small helpers.
# Sourced after env.sh; not meant to be run.
# shellcheck disable=SC2034 # the path variables are used by the scripts that source this file

REDIS_DIR="$INVENTORY_LOCAL_DIR/redis"
REDIS_CONF="$REDIS_DIR/redis.conf"
REDIS_PIDFILE="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"

MYSQL_DIR="$INVENTORY_LOCAL_DIR/mariadb"
MYSQL_DATA="$MYSQL_DIR/data"
MYSQL_SOCK="$MYSQL_DIR/mysqld.sock"
MYSQL_PIDFILE="$MYSQL_DIR/mysqld.pid"
MYSQL_LOG="$MYSQL_DIR/error.log"

step() { printf '==> %s\n' "$*"; }

# die MESSAGE [LOGFILE]: print the message, the tail of the log if there is one, and exit 1.
die() {
    printf '%s: error: %s\n' "${0##*/}" "$1" >&2
    if [ -n "${2:-}" ] && [ -s "$2" ]; then
        printf -- '--- last 40 lines of %s ---\n' "$2" >&2
        tail -n 40 "$2" >&2
    fi
    exit 1
}

# wait_ready PORT LOGFILE: wait up to 10 s for an inventoryd on 127.0.0.1:PORT to answer /readyz, else die.
wait_ready() {
    local i
    for ((i = 0; i < 100; i++)); do
        curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "inventoryd on $1 is not ready" "$2"
}

# find_tool NAME...: path of the first NAME found on PATH or in the sbin dirs (not on a normal user's PATH).
find_tool() {
    local name dir
    for name in "$@"; do
        if command -v "$name" 2>/dev/null; then return 0; fi
        for dir in /usr/sbin /sbin /usr/bin; do
            if [ -x "$dir/$name" ]; then printf '%s\n' "$dir/$name"; return 0; fi
        done
    done
    return 1
}

# alive PID: the process exists and is not a zombie (in containers whose pid 1 does not reap, a
# detached server that exited lingers as one, and kill -0 still succeeds on it).
alive() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    stat="${stat##*) }"
    [ "${stat%% *}" != Z ]
}

# pid_alive PIDFILE COMM...: true when PIDFILE names a live process whose command is one of COMM
# (so a recycled pid is never mistaken for our server).
pid_alive() {
    local pidfile="$1" pid comm c
    shift
    [ -s "$pidfile" ] || return 1
    pid="$(tr -dc '0-9' <"$pidfile")"
    if [ -z "$pid" ] || ! alive "$pid"; then return 1; fi
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    for c in "$@"; do
        [ "$comm" = "$c" ] && return 0
    done
    return 1
}

is_loopback() {
    case "$1" in
        127.* | localhost | ::1) return 0 ;;
        *) return 1 ;;
    esac
}

redis_ping() {
    [ "$(timeout 5 redis-cli -h "$INVENTORY_REDIS_HOST" -p "$INVENTORY_REDIS_PORT" ping 2>/dev/null)" = PONG ]
}

# Root talks to MariaDB over the unix socket (root@localhost); the application user over TCP.
mysql_admin() {
    "${MARIADB_ADMIN:?}" --no-defaults --socket="$MYSQL_SOCK" -uroot --connect-timeout=3 "$@"
}
mysql_ping() {
    [ -n "${MARIADB_ADMIN:-}" ] && [ -S "$MYSQL_SOCK" ] && mysql_admin ping >/dev/null 2>&1
}

# Found when this file is sourced; setup.sh looks again after it installed the packages (on a fresh machine
# mariadb-admin arrives only then).
find_mariadb_admin() {
    MARIADB_ADMIN="$(find_tool mariadb-admin mysqladmin || true)"
}
find_mariadb_admin
