#!/usr/bin/env bash
# Run the service locally: servers up, release build, migrations, then serve in the foreground.
set -euo pipefail

# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

bash "$INVENTORY_ROOT/scripts/setup.sh"

cd "$INVENTORY_ROOT"

echo "==> swift build -c release --product inventoryd"
swift build -c release --product inventoryd
echo "==> inventoryd migrate (database $INVENTORY_MYSQL_DATABASE)"
.build/release/inventoryd migrate
echo "==> inventoryd serve on http://$INVENTORY_HTTP_HOST:$INVENTORY_HTTP_PORT"
exec .build/release/inventoryd serve
