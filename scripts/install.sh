#!/usr/bin/env bash
# Installs inventoryd outside the checkout: PREFIX/bin/inventoryd and its data files in PREFIX/share/inventoryd
# (lua/, migrations/, openapi/), where the binary finds them by itself (no source tree needed).
#
#   scripts/install.sh PREFIX [debug|release]     # default release; e.g. scripts/install.sh /opt/inventoryd
#
# Then see deploy/ for a systemd unit and an example environment file, and README "Operations".
set -Eeuo pipefail

# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck source=scripts/lib.sh
. "$INVENTORY_ROOT/scripts/lib.sh"

PREFIX="${1:?usage: scripts/install.sh PREFIX [debug|release]}"
CONFIGURATION="${2:-release}"
case "$CONFIGURATION" in debug | release) ;; *) die "the configuration is debug or release, not $CONFIGURATION" ;; esac

step "building inventoryd ($CONFIGURATION)"
(cd "$INVENTORY_ROOT" && swift build -c "$CONFIGURATION" --product inventoryd 2>&1 | tail -n 1)
BINARY="$(cd "$INVENTORY_ROOT" && swift build -c "$CONFIGURATION" --show-bin-path)/inventoryd"

step "installing into $PREFIX"
mkdir -p "$PREFIX/bin" "$PREFIX/share/inventoryd"
install -m 0755 "$BINARY" "$PREFIX/bin/inventoryd"
for folder in lua migrations openapi; do
    rm -rf "${PREFIX:?}/share/inventoryd/$folder"
    cp -R "$INVENTORY_ROOT/$folder" "$PREFIX/share/inventoryd/$folder"
done
step "installed: $PREFIX/bin/inventoryd (data in $PREFIX/share/inventoryd)"
