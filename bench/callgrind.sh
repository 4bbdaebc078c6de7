#!/usr/bin/env bash
# Instructions per request of one variant and workload, under callgrind: a
# count that does not move when other processes share the machine (unlike
# req/s or CPU time). Also leaves the callgrind profile for
# `callgrind_annotate --inclusive=yes <file>`.
#
#   bench/callgrind.sh <variant> <read|write|new> [seconds] [redis-url]
#
# Needs a release build (cargo build --release -p sessionkit-bench), valgrind,
# wrk and curl. Redis variants need a redis-server you started yourself
# (e.g. redis-server --port 6390 --save "" --appendonly no) and its URL.
#
# Environment:
#   CACHE_LL_BYTES=N  simulate the caches (an N-byte, 8-way last-level cache;
#                     e.g. 1048576 for one core's 1 MiB L2) and also print
#                     cache misses per request: a measure of memory traffic
#                     that, unlike load figures, does not move with the host
#   FILL_SECS=S       run the workload for S seconds before counting (e.g. a
#                     /new flood that fills the memory store, so that every
#                     counted request evicts; under callgrind the server runs
#                     about 30 times slower, so the default 100 000-session
#                     store takes about a minute to fill)
set -euo pipefail

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh" "$@"
out="$work/callgrind.$variant.$workload.out"

cache_sim=()
if [ -n "${CACHE_LL_BYTES:-}" ]; then
    cache_sim=(--cache-sim=yes "--LL=$CACHE_LL_BYTES,8,64")
fi
taskset -c 0 valgrind --tool=callgrind "${cache_sim[@]}" --callgrind-out-file="$out" \
    "$bin" serve "$variant" "$port" $redis_url >"$work/server.log" 2>&1 &
vg=$!
trap 'kill $vg 2>/dev/null || true' EXIT
wait_ready "$work/server.log"
cookies=$(make_cookies)

if [ -n "${FILL_SECS:-}" ]; then
    taskset -c 1 wrk -t1 -c32 -d"${FILL_SECS}s" -s "$here/lua/rotate.lua" \
        "http://127.0.0.1:$port/" -- "/$workload" "$cookies" >/dev/null
fi
callgrind_control -z "$vg" >/dev/null
requests=$(taskset -c 1 wrk -t1 -c32 -d"${secs}s" -s "$here/lua/rotate.lua" \
    "http://127.0.0.1:$port/" -- "/$workload" "$cookies" |
    sed -n 's/^BENCH_RESULT requests=\([0-9]*\).*/\1/p')
callgrind_control -d "$vg" >/dev/null
sleep 1
file=$(ls -t "$out".* | head -1)
total=$(sed -n 's/^summary: \([0-9]*\).*/\1/p' "$file")
echo "$variant $workload: $((total / requests)) instructions/request (user space, $requests requests)"
if [ ${#cache_sim[@]} -gt 0 ]; then
    # Every event per request: Ir, data reads/writes, then the misses
    # (I1/D1 first level, IL/DL last level; r = read, w = write).
    paste <(sed -n 's/^events: //p' "$file" | tr ' ' '\n') \
        <(sed -n 's/^summary: //p' "$file" | tr ' ' '\n') |
        awk -v r="$requests" '{ printf "%s %.1f  ", $1, $2 / r } END { print "(per request)" }'
fi
echo "profile: $file"
