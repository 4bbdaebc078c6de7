#!/bin/bash
# Two actix-web workers (SESSIONKIT_BENCH_ACTIX_WORKERS=2), both on the server's core.
export SESSIONKIT_BENCH_ACTIX_WORKERS=2
V=sessionkit-actix-redis,sessionkit-actix-redis-per-worker
i=0
for b in 19cb5b1-workers head-workers head-workers 19cb5b1-workers; do
  i=$((i+1))
  echo "pass $i $b $(date -u +%H:%M:%S)" >> progress
  /work/bin/bench-$b all --rounds 2 --variants $V > table-$i-$b.md 2> samples-$i-$b.log
done
echo "done $(date -u +%H:%M:%S)" >> progress
