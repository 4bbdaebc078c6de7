#!/usr/bin/env bash
# Load A/B of glibc's thread cache size: the same binary, GLIBC_TUNABLES unset
# against glibc.malloc.tcache_count=1024, alternated; one round of each per pass.
set -u
bin=${BIN:-/work/target/release/sessionkit-bench}
for pass in 1 2 3; do
  for t in "" "glibc.malloc.tcache_count=1024"; do
    echo "=== pass $pass tunables [$t]"
    GLIBC_TUNABLES=$t $bin all --rounds 1 --variants sessionkit-redis,tower-sessions-redis,sessionkit-memory 2>&1 >/dev/null | grep "^round"
  done
done
