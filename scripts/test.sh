#!/usr/bin/env bash
# Build and run the tests against the project's own Redis and MariaDB.
# Extra arguments go to `swift test`, e.g. `scripts/test.sh --filter RedisClientTests`.
set -euo pipefail

# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

bash "$INVENTORY_ROOT/scripts/setup.sh"

cd "$INVENTORY_ROOT"

echo "==> swift build --build-tests"
swift build --build-tests
echo "==> swift test $*"
exec swift test "$@"
