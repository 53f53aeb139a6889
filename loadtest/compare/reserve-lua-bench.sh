#!/bin/bash
# reserve.lua alone, the scripts of OLD_REV against the working tree's, in alternating rounds: redis-benchmark of
# EVALSHA (one client, a fresh order per call, one item without pool or limit) on database 9 of the local Redis
# (flushed), Redis's own time per call from INFO commandstats (reset before each round).
# usage: loadtest/compare/reserve-lua-bench.sh OLD_REV [CALLS=40000] [ROUNDS=3]   (from the repository's top)
set -euo pipefail
OLD_REV=$1; N=${2:-40000}; ROUNDS=${3:-3}
PORT=${INVENTORY_REDIS_PORT:-6390}
R="redis-cli -p $PORT -n 9"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
git archive "$OLD_REV" lua | tar -x -C "$work"
python3 loadtest/compare/assemble-lua.py "$work/lua" reserve > "$work/old.lua"
python3 loadtest/compare/assemble-lua.py lua reserve > "$work/new.lua"
OLD=$($R SCRIPT LOAD "$(cat "$work/old.lua")"); NEW=$($R SCRIPT LOAD "$(cat "$work/new.lua")")
setup() {
  $R FLUSHDB >/dev/null
  $R HSET b:item stock_num 1000000000 used_stock_num 0 epoch e1 mysql_version 1 has_users 0 >/dev/null
  $R PEXPIRE b:item 604800000 >/dev/null
  $R SET b:gen 0 >/dev/null
}
# KEYS: order, outbox, expiry index, item, reserve key, rollback key, usage hash, code set, generation marker;
# ARGV as reserve.lua documents them (empty ones quoted so that eval keeps them)
call() {
  echo EVALSHA "$1" 9 b:order:__rand_int__ b:outbox b:expiry b:item b:res:__rand_int__ b:rb:__rand_int__ b:users b:codes b:gen \
    o__rand_int__ fp biz '""' reject '""' 600 86400 '""' 604800 '""' '""' 1 1 '""'
}
for round in $(seq 1 "$ROUNDS"); do
  for side in old new; do
    sha=$OLD; [ "$side" = new ] && sha=$NEW
    setup
    redis-cli -p "$PORT" CONFIG RESETSTAT >/dev/null
    rps=$(eval redis-benchmark -p "$PORT" --dbnum 9 -n "$N" -c 1 -r 100000000 -q $(call "$sha") | grep -o "[0-9.]* requests per second" | head -1)
    usec=$(redis-cli -p "$PORT" INFO commandstats | grep "cmdstat_evalsha" | grep -o "usec_per_call=[0-9.]*")
    echo "round $round $side: $rps, $usec"
  done
done
$R FLUSHDB >/dev/null
