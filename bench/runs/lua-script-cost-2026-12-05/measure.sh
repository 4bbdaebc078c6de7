#!/bin/bash
# usage: measure.sh port [rounds]  -- µs per EVALSHA inside Redis (INFO commandstats)
# of the update script before and after 2026-12-05: `old` = old-index.lua +
# old-update.lua (the prelude, the value built in Lua from ARGV[5] = payload),
# `new` = sessionkit/src/store/redis/update.lua as it is now (no prelude, the
# whole value in ARGV[5]). Both take the successful write path (the stored
# version stays 5), without and with an owner (the owner index kept in step).
# Start the server on core 1 first:
#   taskset -c 1 redis-server --port <port> --save "" --appendonly no
HERE=$(cd "$(dirname "$0")" && pwd); SRC="$HERE/../../../sessionkit/src/store/redis"
P=$1; ROUNDS=${2:-2}; R="redis-cli -p $P"; PAY=$(python3 -c "print('x'*60)")
OWNER=$(python3 -c "print('a'*64)")
for round in $(seq 1 "$ROUNDS"); do
  for f in old new; do
    case $f in
      old) body=$(cat "$HERE/old-index.lua" "$HERE/old-update.lua") ;;
      new) body=$(cat "$SRC/update.lua") ;;
    esac
    sha=$($R script load "$body")
    for owner in "" "$OWNER"; do
      $R set k1 "sk1:5:$owner:$PAY" >/dev/null
      if [ $f = new ]; then val="sk1:5:$owner:$PAY"; else val="$PAY"; fi
      $R config resetstat >/dev/null
      taskset -c 0 redis-benchmark -p $P -n 300000 -c 16 -q \
        evalsha "$sha" 1 k1 "sk:" "$owner" 1800000 member "$val" 5 5 >/dev/null 2>&1
      echo "round $round $f owner=$([ -n "$owner" ] && echo yes || echo no) $($R info commandstats | grep evalsha | sed 's/.*usec_per_call=\([0-9.]*\).*/\1/') us/call"
    done
  done
done
