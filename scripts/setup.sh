#!/usr/bin/env bash
# Prepare the local environment: Debian packages, the project's own Redis and MariaDB on their own
# ports (data under .local/), the databases and the application user. Idempotent: a second run
# finds everything in place and reuses the running servers.
set -Eeuo pipefail

# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck source=scripts/lib.sh
. "$INVENTORY_ROOT/scripts/lib.sh"

trap 'printf "%s: failed at line %s\n" "${0##*/}" "$LINENO" >&2' ERR

mkdir -p "$INVENTORY_LOCAL_DIR"
RUN_USER="$(id -un)"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# --- Debian packages -------------------------------------------------------------------------------
# The system services these packages bring are not ours (they use the default ports); we never start
# them, and if apt's policy starts them they do not get in the way.
install_packages() {
    local packages=(redis-server mariadb-server mariadb-client libhiredis-dev libmariadb-dev pkg-config openssl)
    local missing=() p status apt_log="$INVENTORY_LOCAL_DIR/apt.log"
    if ! command -v dpkg >/dev/null 2>&1; then
        step "packages: no dpkg (not Debian); assuming redis, mariadb, hiredis and pkg-config are installed"
        return
    fi
    for p in "${packages[@]}"; do
        status="$(dpkg -s "$p" 2>/dev/null || true)"
        if ! grep -q '^Status: install ok installed' <<<"$status"; then
            missing+=("$p")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        step "packages: all present"
        return
    fi
    step "packages: installing ${missing[*]} (log: $apt_log)"
    as_root apt-get update >"$apt_log" 2>&1 || die "apt-get update failed" "$apt_log"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >>"$apt_log" 2>&1 ||
        die "apt-get install failed" "$apt_log"
}

# --- Redis -----------------------------------------------------------------------------------------
start_redis() {
    local i
    if redis_ping; then
        step "redis: reusing the server at $INVENTORY_REDIS_HOST:$INVENTORY_REDIS_PORT"
        return
    fi
    is_loopback "$INVENTORY_REDIS_HOST" ||
        die "no Redis answers at $INVENTORY_REDIS_HOST:$INVENTORY_REDIS_PORT, and that host is not this machine"
    command -v redis-server >/dev/null 2>&1 || die "redis-server is not installed"
    step "redis: starting on 127.0.0.1:$INVENTORY_REDIS_PORT (data: $REDIS_DIR)"
    mkdir -p "$REDIS_DIR"
    # Durability comes from the AOF alone (fsync once a second); no RDB snapshots.
    cat >"$REDIS_CONF" <<CONF
# Written by scripts/setup.sh; rewritten each time it starts this server.
bind 127.0.0.1
port $INVENTORY_REDIS_PORT
protected-mode no
daemonize yes
pidfile "$REDIS_PIDFILE"
logfile "$REDIS_LOG"
dir "$REDIS_DIR"
save ""
appendonly yes
appendfsync everysec
# Never drop keys when full: the service refuses to start on an evicting policy (INVENTORY_ALLOW_EVICTION).
maxmemory-policy noeviction
CONF
    redis-server "$REDIS_CONF" </dev/null >>"$REDIS_LOG" 2>&1 || die "redis-server did not start" "$REDIS_LOG"
    for ((i = 0; i < 40; i++)); do
        redis_ping && return
        # The daemon writes its pid file at once; gone or dead after a second means it gave up.
        if ((i >= 2)) && ! pid_alive "$REDIS_PIDFILE" redis-server; then
            die "redis-server exited during start-up" "$REDIS_LOG"
        fi
        sleep 0.5
    done
    die "redis did not answer PING on port $INVENTORY_REDIS_PORT within 20 s" "$REDIS_LOG"
}

# --- MariaDB ---------------------------------------------------------------------------------------
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_mariadb PID: wait (60 s at most) until the server answers on our socket. Another setup.sh started
# at the same moment may win the data directory's lock; then its server, named by the pid file, counts.
wait_mariadb() {
    local pid="$1" i
    for ((i = 0; i < 120; i++)); do
        mysql_ping && return
        if ! alive "$pid" && ! pid_alive "$MYSQL_PIDFILE" mariadbd mysqld; then
            die "mariadbd exited during start-up" "$MYSQL_LOG"
        fi
        sleep 0.5
    done
    die "mariadb did not answer on $MYSQL_SOCK within 60 s (pid $pid is still running)" "$MYSQL_LOG"
}

start_mariadb() {
    local mariadbd install_db
    [ -n "$MARIADB_ADMIN" ] || die "mariadb-admin is not installed"
    if mysql_ping; then
        step "mariadb: reusing the server on $MYSQL_SOCK (port $INVENTORY_MYSQL_PORT)"
        return
    fi
    if pid_alive "$MYSQL_PIDFILE" mariadbd mysqld; then
        step "mariadb: waiting for the server that is already starting (pid $(cat "$MYSQL_PIDFILE"))"
        wait_mariadb "$(cat "$MYSQL_PIDFILE")"
        return
    fi
    mariadbd="$(find_tool mariadbd mysqld)" || die "mariadbd is not installed"
    mkdir -p "$MYSQL_DIR"
    if [ ! -d "$MYSQL_DATA/mysql" ]; then
        install_db="$(find_tool mariadb-install-db mysql_install_db)" || die "mariadb-install-db is not installed"
        step "mariadb: initialising $MYSQL_DATA"
        mkdir -p "$MYSQL_DATA"
        "$install_db" --no-defaults --datadir="$MYSQL_DATA" --user="$RUN_USER" \
            --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
            >"$MYSQL_DIR/install.log" 2>&1 || die "mariadb-install-db failed" "$MYSQL_DIR/install.log"
    fi
    if port_in_use "$INVENTORY_MYSQL_PORT"; then
        die "port $INVENTORY_MYSQL_PORT is taken by a process that is not this checkout's MariaDB (no answer on $MYSQL_SOCK); stop it or set INVENTORY_MYSQL_PORT"
    fi
    step "mariadb: starting on 127.0.0.1:$INVENTORY_MYSQL_PORT (data: $MYSQL_DATA)"
    # --no-defaults: /etc/mysql/*.cnf belongs to the system service, not to us.
    # setsid + nohup: the server outlives this script and the terminal that ran it.
    setsid nohup "$mariadbd" --no-defaults --user="$RUN_USER" \
        --datadir="$MYSQL_DATA" --port="$INVENTORY_MYSQL_PORT" --bind-address=127.0.0.1 \
        --socket="$MYSQL_SOCK" --pid-file="$MYSQL_PIDFILE" --log-error="$MYSQL_LOG" \
        --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=2 \
        --max-connections=500 --skip-name-resolve \
        </dev/null >>"$MYSQL_DIR/mariadbd.out" 2>&1 &
    wait_mariadb $!
}

# SQL string literal / identifier quoting, so odd passwords or names cannot break the statements.
sql_string() {
    local s="${1//\\/\\\\}"
    printf "'%s'" "${s//\'/\\\'}"
}
sql_ident() {
    # shellcheck disable=SC2016 # the backticks are MariaDB identifier quotes, not a shell expansion
    printf '`%s`' "${1//\`/\`\`}"
}

create_databases() {
    local db host user pass sql="" out
    user="$(sql_string "$INVENTORY_MYSQL_USER")"
    pass="$(sql_string "$INVENTORY_MYSQL_PASSWORD")"
    for db in "$INVENTORY_MYSQL_DATABASE" "$INVENTORY_MYSQL_TEST_DATABASE"; do
        sql+="CREATE DATABASE IF NOT EXISTS $(sql_ident "$db") CHARACTER SET utf8mb4;"$'\n'
    done
    for host in 127.0.0.1 localhost %; do
        # ALTER as well as CREATE: a changed INVENTORY_MYSQL_PASSWORD takes effect on the next run.
        sql+="CREATE USER IF NOT EXISTS $user@'$host' IDENTIFIED BY $pass;"$'\n'
        sql+="ALTER USER $user@'$host' IDENTIFIED BY $pass;"$'\n'
        for db in "$INVENTORY_MYSQL_DATABASE" "$INVENTORY_MYSQL_TEST_DATABASE"; do
            sql+="GRANT ALL PRIVILEGES ON $(sql_ident "$db").* TO $user@'$host';"$'\n'
        done
    done
    local client
    client="$(find_tool mariadb mysql)" || die "the mariadb client is not installed"
    out="$("$client" --no-defaults --socket="$MYSQL_SOCK" -uroot --batch <<<"$sql" 2>&1)" ||
        die "creating databases and user failed: $out" "$MYSQL_LOG"
    # Prove the application's own path works: TCP, its user, its password, both databases.
    for db in "$INVENTORY_MYSQL_DATABASE" "$INVENTORY_MYSQL_TEST_DATABASE"; do
        out="$(MYSQL_PWD="$INVENTORY_MYSQL_PASSWORD" "$client" --no-defaults --protocol=TCP \
            -h "$INVENTORY_MYSQL_HOST" -P "$INVENTORY_MYSQL_PORT" -u "$INVENTORY_MYSQL_USER" \
            --batch --skip-column-names -e 'SELECT 1' "$db" 2>&1)" ||
            die "user $INVENTORY_MYSQL_USER cannot use database $db over TCP: $out" "$MYSQL_LOG"
    done
    step "mariadb: databases $INVENTORY_MYSQL_DATABASE, $INVENTORY_MYSQL_TEST_DATABASE and user $INVENTORY_MYSQL_USER ready"
}

install_packages
find_mariadb_admin
start_redis
if is_loopback "$INVENTORY_MYSQL_HOST"; then
    start_mariadb
    create_databases
else
    step "mariadb: using the external server at $INVENTORY_MYSQL_HOST:$INVENTORY_MYSQL_PORT (not managed here)"
fi
step "ready: redis $INVENTORY_REDIS_HOST:$INVENTORY_REDIS_PORT," \
    "mariadb $INVENTORY_MYSQL_HOST:$INVENTORY_MYSQL_PORT (socket $MYSQL_SOCK)," \
    "databases $INVENTORY_MYSQL_DATABASE/$INVENTORY_MYSQL_TEST_DATABASE as $INVENTORY_MYSQL_USER"
