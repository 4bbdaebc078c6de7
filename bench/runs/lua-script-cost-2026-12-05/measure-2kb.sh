# usage: bash measure-2kb.sh (a redis-server on port 6397, core 1) -- the update script before and after with a 2000-byte payload, 6 interleaved rounds, usec_per_call
P=6397; R="redis-cli -p $P"; PAY=$(python3 -c "print('x'*2000)")
D=/work/main/bench/runs/lua-script-cost-2026-12-05
OLD=$(cat $D/old-index.lua $D/old-update.lua); NEW=$(cat /work/main/sessionkit/src/store/redis/update.lua)
so=$($R script load "$OLD"); sn=$($R script load "$NEW")
for round in 1 2 3 4 5 6; do
 for f in old new; do
  $R set k1 "sk1:5::$PAY" >/dev/null; $R config resetstat >/dev/null
  if [ $f = old ]; then taskset -c 0 redis-benchmark -p $P -n 100000 -c 16 -q evalsha $so 1 k1 "sk:" "" 1800000 member "$PAY" 5 5 >/dev/null 2>&1
  else taskset -c 0 redis-benchmark -p $P -n 100000 -c 16 -q evalsha $sn 1 k1 "sk:" "" 1800000 member "sk1:5::$PAY" 5 5 >/dev/null 2>&1; fi
  echo "$f $($R info commandstats | grep evalsha | sed 's/.*usec_per_call=\([0-9.]*\).*/\1/')"
 done
done
