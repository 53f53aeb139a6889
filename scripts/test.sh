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
echo "==> swift test --filter FaultSuiteTests (the quick fault run)"
swift test --filter FaultSuiteTests
