#!/usr/bin/env bash
# A local Redis Cluster of 3 masters on loopback (issue 8), for the cluster client's tests and, later, for running
# the suites against a cluster. Data under .local/cluster/<port>/.
#
#   scripts/cluster.sh start    start the nodes (or reuse running ones) and form the cluster; idempotent
#   scripts/cluster.sh stop     stop the nodes (data kept; `start` brings the same cluster back)
#   scripts/cluster.sh reset    stop the nodes and delete their data
#   scripts/cluster.sh status   CLUSTER INFO and the slot map of the first node
#
# Ports: INVENTORY_CLUSTER_PORT_BASE (default 7390) and the next two; with INVENTORY_CLUSTER_REPLICAS=1 (default 0)
# three more, one replica per master (for failover runs). Data: INVENTORY_CLUSTER_DIR (default .local/cluster).
# INVENTORY_CLUSTER_CLOCK_SHIFTS (default none): milliseconds each node's wall clock is moved by, in port order
# ('0,600000,-600000'), for tests of nodes whose clocks differ (scripts/clock-shift.c, built here with cc).
# Needs redis-server and redis-cli (scripts/setup.sh installs them).
set -Eeuo pipefail

# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck source=scripts/lib.sh
. "$INVENTORY_ROOT/scripts/lib.sh"

trap 'printf "%s: failed at line %s\n" "${0##*/}" "$LINENO" >&2' ERR

CLUSTER_DIR="${INVENTORY_CLUSTER_DIR:-$INVENTORY_LOCAL_DIR/cluster}"
REPLICAS="${INVENTORY_CLUSTER_REPLICAS:-0}"
case "$REPLICAS" in 0 | 1) ;; *) die "INVENTORY_CLUSTER_REPLICAS must be 0 or 1" ;; esac
PORTS=()
for ((n = 0; n < 3 * (1 + REPLICAS); n++)); do PORTS+=("$((INVENTORY_CLUSTER_PORT_BASE + n))"); done

node_ping() { redis-cli -h 127.0.0.1 -p "$1" PING 2>/dev/null | grep -q PONG; }

cluster_ok() { redis-cli -h 127.0.0.1 -p "$1" CLUSTER INFO 2>/dev/null | grep -q '^cluster_state:ok'; }

start_node() {
    local port="$1" shift_ms="${2:-0}" dir="$CLUSTER_DIR/$1" i
    if node_ping "$port"; then
        step "cluster: node $port is running"
        return
    fi
    mkdir -p "$dir"
    cat >"$dir/redis.conf" <<CONF
# Written by scripts/cluster.sh; rewritten each time it starts this node.
bind 127.0.0.1
port $port
protected-mode no
daemonize yes
pidfile "$dir/redis.pid"
logfile "$dir/redis.log"
dir "$dir"
save ""
appendonly yes
appendfsync everysec
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 2000
# Never drop keys when full: the service refuses to start on an evicting policy (INVENTORY_ALLOW_EVICTION).
maxmemory-policy noeviction
CONF
    if [ "$shift_ms" != 0 ]; then
        INVENTORY_CLOCK_SHIFT_MS="$shift_ms" LD_PRELOAD="$CLUSTER_DIR/clock-shift.so" redis-server "$dir/redis.conf" \
            </dev/null >>"$dir/redis.log" 2>&1 || die "cluster node $port did not start" "$dir/redis.log"
    else
        redis-server "$dir/redis.conf" </dev/null >>"$dir/redis.log" 2>&1 || die "cluster node $port did not start" "$dir/redis.log"
    fi
    for ((i = 0; i < 40; i++)); do
        node_ping "$port" && break
        sleep 0.1
    done
    node_ping "$port" || die "cluster node $port does not answer" "$dir/redis.log"
    if [ "$shift_ms" != 0 ]; then step "cluster: node $port started, its clock moved by $shift_ms ms (data: $dir)"; else
        step "cluster: node $port started (data: $dir)"; fi
}

# The wall-clock shift per node (INVENTORY_CLUSTER_CLOCK_SHIFTS), and the library that makes it.
SHIFTS=()
if [ -n "${INVENTORY_CLUSTER_CLOCK_SHIFTS:-}" ]; then
    IFS=, read -r -a SHIFTS <<<"$INVENTORY_CLUSTER_CLOCK_SHIFTS"
    for shift_ms in "${SHIFTS[@]}"; do
        [[ "$shift_ms" =~ ^-?[0-9]+$ ]] || die "INVENTORY_CLUSTER_CLOCK_SHIFTS: '$shift_ms' is not a whole number of milliseconds"
    done
fi

build_clock_shift() {
    local compiler
    compiler="$(command -v cc || command -v gcc || command -v clang || true)"
    [ -n "$compiler" ] || die "INVENTORY_CLUSTER_CLOCK_SHIFTS needs a C compiler (cc, gcc or clang)"
    mkdir -p "$CLUSTER_DIR"
    "$compiler" -O2 -shared -fPIC -o "$CLUSTER_DIR/clock-shift.so" "$INVENTORY_ROOT/scripts/clock-shift.c" \
        >"$CLUSTER_DIR/clock-shift.log" 2>&1 || die "building scripts/clock-shift.c failed" "$CLUSTER_DIR/clock-shift.log"
}

start() {
    command -v redis-server >/dev/null 2>&1 || die "redis-server is not installed (run scripts/setup.sh)"
    local port i
    [ "${#SHIFTS[@]}" -eq 0 ] || build_clock_shift
    for ((i = 0; i < ${#PORTS[@]}; i++)); do start_node "${PORTS[$i]}" "${SHIFTS[$i]:-0}"; done
    if ! cluster_ok "${PORTS[0]}"; then
        # A node that knows other nodes already belongs to a cluster (restarted from its nodes.conf): wait for it
        # to converge instead of creating a new one.
        if [ "$(redis-cli -p "${PORTS[0]}" CLUSTER INFO | awk -F: '/^cluster_known_nodes/ {print $2}' | tr -d '\r')" = "1" ]; then
            step "cluster: creating it over ${PORTS[*]}"
            redis-cli --cluster create "${PORTS[@]/#/127.0.0.1:}" --cluster-replicas "$REPLICAS" --cluster-yes >"$CLUSTER_DIR/create.log" 2>&1 ||
                die "redis-cli --cluster create failed" "$CLUSTER_DIR/create.log"
        fi
    fi
    for ((i = 0; i < 100; i++)); do
        local all=1
        for port in "${PORTS[@]}"; do cluster_ok "$port" || all=0; done
        [ "$all" = 1 ] && break
        sleep 0.1
    done
    for port in "${PORTS[@]}"; do cluster_ok "$port" || die "cluster state is not ok on node $port" "$CLUSTER_DIR/$port/redis.log"; done
    step "cluster: ready on 127.0.0.1:${PORTS[0]}-${PORTS[${#PORTS[@]} - 1]} ($REPLICAS replica(s) per master)"
}

stop() {
    local port
    for port in "${PORTS[@]}"; do
        if node_ping "$port"; then
            redis-cli -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
            step "cluster: node $port stopped"
        fi
    done
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
reset)
    stop
    rm -rf "$CLUSTER_DIR"
    step "cluster: data removed"
    ;;
status)
    redis-cli -p "${PORTS[0]}" CLUSTER INFO | head -7
    redis-cli -p "${PORTS[0]}" CLUSTER SLOTS
    ;;
*) die "usage: ${0##*/} start|stop|reset|status" ;;
esac
