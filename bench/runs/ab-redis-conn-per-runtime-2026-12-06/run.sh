#!/bin/bash
V=sessionkit-actix-redis,sessionkit-actix-redis-per-worker,sessionkit-redis,sessionkit-actix-cluster
i=0
for b in 19cb5b1 4b37010 4b37010 19cb5b1; do
  i=$((i+1))
  echo "pass $i $b $(date -u +%H:%M:%S)" >> progress
  /work/bin/bench-$b all --rounds 3 --variants $V > table-$i-$b.md 2> samples-$i-$b.log
done
echo "done $(date -u +%H:%M:%S)" >> progress
