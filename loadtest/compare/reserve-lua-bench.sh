#!/bin/bash
# reserve.lua alone, old (c05ac42) against new, alternating: redis-benchmark of EVALSHA on a private db of Redis 6390
R="redis-cli -p 6390 -n 9"
N=${1:-40000}; ROUNDS=${2:-3}
OLD=$($R SCRIPT LOAD "$(cat /tmp/bench/reserve-old.lua)"); NEW=$($R SCRIPT LOAD "$(cat /tmp/bench/reserve-new.lua)")
setup() {
  $R FLUSHDB >/dev/null
  $R HSET b:item stock_num 1000000000 used_stock_num 0 epoch e1 mysql_version 1 has_users 0 >/dev/null
  $R PEXPIRE b:item 604800000 >/dev/null
  $R SET b:gen 0 >/dev/null
}
call() { # sha
  echo EVALSHA $1 9 b:order:__rand_int__ b:outbox b:expiry b:item b:res:__rand_int__ b:rb:__rand_int__ b:users b:codes b:gen \
    o__rand_int__ fp biz '""' reject '""' 600 86400 '""' 604800 '""' '""' 1 1 '""'
}
setup; echo "probe old: $(eval redis-cli -p 6390 -n 9 $(call $OLD) | head -1)  new: $(eval redis-cli -p 6390 -n 9 $(call $NEW) | head -1)"
for round in $(seq 1 $ROUNDS); do
  for side in old new; do
    sha=$OLD; [ $side = new ] && sha=$NEW
    setup
    redis-cli -p 6390 CONFIG RESETSTAT >/dev/null
    rps=$(eval redis-benchmark -p 6390 --dbnum 9 -n $N -c 1 -r 100000000 -q $(call $sha) | grep -o "[0-9.]* requests per second" | head -1)
    usec=$(redis-cli -p 6390 INFO commandstats | grep "cmdstat_evalsha" | grep -o "usec_per_call=[0-9.]*")
    echo "round $round $side: $rps, $usec"
  done
done
$R FLUSHDB >/dev/null
