#!/usr/bin/env bash
# Build and run the tests against the project's own Redis and MariaDB.
# Extra arguments go to `swift test`, e.g. `scripts/test.sh --filter RedisClientTests`.
set -euo pipefail

# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

bash "$INVENTORY_ROOT/scripts/setup.sh"
# The Redis Cluster client's tests use a local 3-master cluster (issue 8).
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
echo "==> swift test --filter FaultSuiteTests (the quick fault run)"
swift test --filter FaultSuiteTests
