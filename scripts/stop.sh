#!/usr/bin/env bash
# Stop the project's Redis and MariaDB (the ones setup.sh starts or reuses). Data stays in .local/.
set -euo pipefail

# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck source=scripts/lib.sh
. "$INVENTORY_ROOT/scripts/lib.sh"

# wait_gone PIDFILE SECONDS COMM...: wait until the process named by PIDFILE has exited.
wait_gone() {
    local pidfile="$1" seconds="$2" i
    shift 2
    for ((i = 0; i < seconds * 2; i++)); do
        pid_alive "$pidfile" "$@" || return 0
        sleep 0.5
    done
    return 1
}

stop_redis() {
    if redis_ping; then
        step "redis: shutting down the server on port $INVENTORY_REDIS_PORT"
        # SHUTDOWN fsyncs the AOF; with `save ""` no snapshot is written.
        timeout 30 redis-cli -h "$INVENTORY_REDIS_HOST" -p "$INVENTORY_REDIS_PORT" shutdown >/dev/null 2>&1 || true
    elif pid_alive "$REDIS_PIDFILE" redis-server; then
        step "redis: not answering; sending TERM to pid $(cat "$REDIS_PIDFILE")"
        kill -TERM "$(cat "$REDIS_PIDFILE")" 2>/dev/null || true
    else
        step "redis: not running"
        return
    fi
    wait_gone "$REDIS_PIDFILE" 20 redis-server || die "redis is still running after 20 s" "$REDIS_LOG"
    if redis_ping; then
        die "something still answers PING on port $INVENTORY_REDIS_PORT" "$REDIS_LOG"
    fi
    step "redis: stopped"
}

stop_mariadb() {
    if mysql_ping; then
        step "mariadb: shutting down the server on $MYSQL_SOCK"
        mysql_admin shutdown >/dev/null 2>&1 || true
    elif pid_alive "$MYSQL_PIDFILE" mariadbd mysqld; then
        step "mariadb: not answering; sending TERM to pid $(cat "$MYSQL_PIDFILE")"
        kill -TERM "$(cat "$MYSQL_PIDFILE")" 2>/dev/null || true
    else
        step "mariadb: not running"
        return
    fi
    wait_gone "$MYSQL_PIDFILE" 60 mariadbd mysqld || die "mariadb is still running after 60 s" "$MYSQL_LOG"
    step "mariadb: stopped"
}

stop_redis
stop_mariadb
bash "$INVENTORY_ROOT/scripts/cluster.sh" stop
