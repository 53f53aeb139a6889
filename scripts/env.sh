# shellcheck shell=bash
# Defaults for the local environment. Sourced by the other scripts (and usable by hand:
# `. scripts/env.sh`). Every variable keeps a value the caller already set, so one
# override (say INVENTORY_REDIS_PORT=6391) flows to setup, the service and the tests alike.

if [ -z "${INVENTORY_ROOT:-}" ]; then
    INVENTORY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
fi
: "${INVENTORY_LOCAL_DIR:=$INVENTORY_ROOT/.local}"
: "${INVENTORY_REDIS_HOST:=127.0.0.1}"
: "${INVENTORY_REDIS_PORT:=6390}"
: "${INVENTORY_MYSQL_HOST:=127.0.0.1}"
: "${INVENTORY_MYSQL_PORT:=3390}"
: "${INVENTORY_MYSQL_USER:=inventory}"
: "${INVENTORY_MYSQL_PASSWORD:=inventory}"
: "${INVENTORY_MYSQL_DATABASE:=inventory}"
: "${INVENTORY_MYSQL_TEST_DATABASE:=inventory_test}"
: "${INVENTORY_HTTP_HOST:=127.0.0.1}"
: "${INVENTORY_HTTP_PORT:=8080}"
# First port of the local 3-master Redis Cluster (scripts/cluster.sh), used by the cluster client's tests.
: "${INVENTORY_CLUSTER_PORT_BASE:=7390}"

export INVENTORY_ROOT INVENTORY_LOCAL_DIR \
    INVENTORY_REDIS_HOST INVENTORY_REDIS_PORT \
    INVENTORY_MYSQL_HOST INVENTORY_MYSQL_PORT INVENTORY_MYSQL_USER INVENTORY_MYSQL_PASSWORD \
    INVENTORY_MYSQL_DATABASE INVENTORY_MYSQL_TEST_DATABASE \
    INVENTORY_HTTP_HOST INVENTORY_HTTP_PORT INVENTORY_CLUSTER_PORT_BASE

# Swift comes from /opt/swift on these machines; put it on PATH when a shell does not have it.
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi
