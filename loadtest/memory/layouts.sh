#!/usr/bin/env bash
# What a held order costs Redis under other key layouts: writes N (default 100000) orders' keys of each layout
# straight into a private redis-server (port 6397, no persistence; no service involved) and prints used_memory's
# growth per order. The values are those of order-footprint.sh's "hold" (one line, short ids).
#
#   loadtest/memory/layouts.sh [N]
#
# Layouts: current (order hash of 10 fields + reserve key + expiry zset entry, as reserve.lua writes them), then
# each part alone, and the alternatives a smaller footprint would need (see loadtest/RESULTS.md, issue 21).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
. "$HERE/../../scripts/env.sh"
N="${1:-100000}"
PORT=6397
WORK="$(mktemp -d)"
. "$HERE/../lib/private.sh"
trap 'private_stop; rm -rf "$WORK"' EXIT
private_redis "$PORT" "$WORK"
cat > "$WORK/layouts.py" <<'PY'
import sys
layout, n = sys.argv[1], int(sys.argv[2])
out = sys.stdout
def cmd(*words):
    out.write('*%d\r\n' % len(words))
    for word in map(str, words):
        out.write('$%d\r\n%s\r\n' % (len(word.encode()), word))
keep = 1800 + 86400
for i in range(n):
    name, shard, expires = 'fp/hold-%07d' % i, i % 16, 1764900000000 + i
    created = expires - 1800000
    fields = ['status', 'reserved', 'fp', 'fp|u%d|reject|1800|1x1' % i, 'biz', 'fp', 'user', 'u%d' % i,
              'lines', '1:1:1', 'line_epochs', '1764899000123-4', 'expires_at', expires, 'created_at', created,
              'event', '%d-0' % created]
    order = 'inv:{s%d}:order:%s' % (shard, name)
    if layout in ('current', 'order-hash'):
        cmd('HSET', order, *fields)
        cmd('EXPIRE', order, keep)
    if layout in ('current', 'reserve-key'):
        cmd('SET', 'inv:{fp:1}:rsv:hold-%07d' % i, '1@1764899000123-4', 'EX', keep)
    if layout in ('current', 'expiry-zset'):
        cmd('ZADD', 'inv:{s%d}:expiry' % shard, expires, name)
    if layout == 'hash-with-hold-field':
        # the reserve key as a field of the order hash, the expiry index as lists of names per 10 s
        cmd('HSET', order, *fields, 'rsv:fp:1', '1@1764899000123-4')
        cmd('EXPIRE', order, keep)
        cmd('RPUSH', 'inv:{s%d}:exp:%d' % (shard, expires // 10000), name)
    if layout == 'one-packed-string':
        # the whole order in one string, the expiry index as lists of names per 10 s
        cmd('SET', 'inv:{s%d}:o:%s' % (shard, name), '|'.join(map(str, fields[1::2])) + '|1@1764899000123-4', 'EX', keep)
        cmd('RPUSH', 'inv:{s%d}:exp:%d' % (shard, expires // 10000), name)
PY
memory() { redis-cli -p "$PORT" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
echo "layout                  bytes/order  (N=$N, $(redis-server --version | awk '{print $3}'))"
for layout in current order-hash reserve-key expiry-zset hash-with-hold-field one-packed-string; do
  redis-cli -p "$PORT" flushall >/dev/null
  before=$(memory)
  python3 "$WORK/layouts.py" "$layout" "$N" | redis-cli -p "$PORT" --pipe >/dev/null
  printf '%-23s %12d\n' "$layout" $(( ($(memory) - before) / N ))
done
