#!/bin/bash
V=sessionkit-actix-redis,sessionkit-redis
i=0
for b in 4b37010 slots slots 4b37010; do
  i=$((i+1))
  echo "pass $i $b $(date -u +%H:%M:%S)" >> progress
  /work/bin/bench-$b all --rounds 2 --variants $V > table-$i-$b.md 2> samples-$i-$b.log
done
echo "done $(date -u +%H:%M:%S)" >> progress
cd /work/main
taskset -c 1 redis-server --port 6393 --save "" --appendonly no --daemonize yes > /dev/null
sleep 1
for t in new slot new slot; do
  CARGO_TARGET_DIR=/work/${t}target bench/callgrind.sh sessionkit-redis read 6 redis://127.0.0.1:6393/ 2>&1 | grep instructions | sed "s/^/$t /" >> /work/runs/ab2/callgrind.txt
  CARGO_TARGET_DIR=/work/${t}target bench/callgrind.sh sessionkit-actix-redis read 6 redis://127.0.0.1:6393/ 2>&1 | grep instructions | sed "s/^/$t /" >> /work/runs/ab2/callgrind.txt
done
redis-cli -p 6393 shutdown nosave
echo "cg done $(date -u +%H:%M:%S)" >> /work/runs/ab2/progress
