#!/bin/bash
# usage: measure.sh port  -- µs per EVALSHA inside Redis (INFO commandstats), per script
HERE=$(cd "$(dirname "$0")" && pwd); SRC="$HERE/../../../sessionkit/src/store/redis"
P=$1; R="redis-cli -p $P"; PAY=$(python3 -c "print('x'*60)")
for f in a b e f c d; do
  # a: the shipped scripts themselves; b: their shared prelude plus a variant
  # body; the others stand alone.
  case $f in
    a) body=$(cat "$SRC/index.lua" "$SRC/update.lua") ;;
    b) body=$(cat "$SRC/index.lua" "$HERE/b.lua") ;;
    *) body=$(cat "$HERE/$f.lua") ;;
  esac
  sha=$($R script load "$body")
  $R set k1 "sk1:5::$PAY" >/dev/null
  if [ $f = b ] || [ $f = e ]; then val="sk1:5::$PAY"; else val="$PAY"; fi
  $R config resetstat >/dev/null
  taskset -c 0 redis-benchmark -p $P -n 300000 -c 16 -q evalsha $sha 1 k1 "sk:" "" 1800000 member "$val" 5 5 >/dev/null 2>&1
  echo "$f $($R info commandstats | grep evalsha | sed 's/.*usec_per_call=\([0-9.]*\).*/\1/')"
done
