#!/usr/bin/env bash
# Build and run the tests against the project's own Redis and MariaDB.
# Extra arguments go to `swift test`, e.g. `scripts/test.sh --filter RedisClientTests`.
set -euo pipefail

# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

bash "$INVENTORY_ROOT/scripts/setup.sh"
# A local 3-master Redis Cluster: the cluster client's and engine's own tests use it, and the suite runs a second
# time against it (issue 8).
bash "$INVENTORY_ROOT/scripts/cluster.sh" start

cd "$INVENTORY_ROOT"

echo "==> swift build --build-tests"
swift build --build-tests
if [ "$#" -gt 0 ]; then
    echo "==> swift test $*"
    exec swift test "$@"
fi
# The fault suite restarts servers of its own and loads the machine for about a minute: it runs after the other tests,
# not beside them, so their timeouts are not judged on a machine it keeps busy.
echo "==> swift test --skip FaultSuiteTests"
swift test --skip FaultSuiteTests
# The same suite with Redis Cluster as the store: keys laid out for it, orders held in parts (tests that put a fault
# proxy in front of the single Redis stay on it).
echo "==> INVENTORY_TEST_REDIS_CLUSTER=1 swift test --skip FaultSuiteTests (on the local Redis Cluster)"
INVENTORY_TEST_REDIS_CLUSTER=1 swift test --skip-build --skip FaultSuiteTests
# The cluster client's failover test kills a master with SIGKILL: it runs on a 3+3 cluster of its own, made anew
# (the killed master comes back as a replica), never on the shared one above.
FAILOVER_BASE="${INVENTORY_FAILOVER_CLUSTER_PORT_BASE:-7590}"
FAILOVER_DIR="$INVENTORY_LOCAL_DIR/cluster-failover"
failover_cluster() {
    INVENTORY_CLUSTER_PORT_BASE="$FAILOVER_BASE" INVENTORY_CLUSTER_REPLICAS=1 INVENTORY_CLUSTER_DIR="$FAILOVER_DIR" \
        bash "$INVENTORY_ROOT/scripts/cluster.sh" "$1"
}
echo "==> swift test --filter RedisClusterFailoverTests (a 3+3 cluster on $FAILOVER_BASE, a master killed)"
failover_cluster reset
failover_cluster start
INVENTORY_TEST_CLUSTER_FAILOVER_PORT_BASE="$FAILOVER_BASE" swift test --skip-build --filter RedisClusterFailoverTests
failover_cluster reset
# Nodes whose clocks differ: a 3-master cluster of its own, one node's wall clock ten minutes ahead, one's behind
# (scripts/clock-shift.c), made anew and removed around the tests that need it.
CLOCKS_BASE="${INVENTORY_CLOCKS_CLUSTER_PORT_BASE:-7790}"
clocks_cluster() {
    INVENTORY_CLUSTER_PORT_BASE="$CLOCKS_BASE" INVENTORY_CLUSTER_DIR="$INVENTORY_LOCAL_DIR/cluster-clocks" \
        INVENTORY_CLUSTER_CLOCK_SHIFTS=0,600000,-600000 bash "$INVENTORY_ROOT/scripts/cluster.sh" "$1"
}
echo "==> swift test --filter ClusterClockTests (a 3-master cluster on $CLOCKS_BASE whose clocks differ)"
clocks_cluster reset
clocks_cluster start
INVENTORY_TEST_CLUSTER_CLOCKS_PORT_BASE="$CLOCKS_BASE" swift test --skip-build --filter ClusterClockTests
clocks_cluster reset
echo "==> swift test --filter FaultSuiteTests (the quick fault run)"
swift test --filter FaultSuiteTests
