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

variant=${1:?variant (see: sessionkit-bench list)}
workload=${2:?read, write or new}
secs=${3:-6}
redis_url=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
bin=${CARGO_TARGET_DIR:-$here/../target}/release/sessionkit-bench
if [ ! -x "$bin" ]; then
    echo "no $bin: build it first (cargo build --release -p sessionkit-bench; set CARGO_TARGET_DIR if you use one)" >&2
    exit 2
fi
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
out="$work/callgrind.$variant.$workload.out"

cache_sim=()
if [ -n "${CACHE_LL_BYTES:-}" ]; then
    cache_sim=(--cache-sim=yes "--LL=$CACHE_LL_BYTES,8,64")
fi
taskset -c 0 valgrind --tool=callgrind "${cache_sim[@]}" --callgrind-out-file="$out" \
    "$bin" serve "$variant" "$port" $redis_url >"$work/server.log" 2>&1 &
vg=$!
trap 'kill $vg 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    grep -q ready "$work/server.log" 2>/dev/null && break
    sleep 0.2
done

# 300 sessions (the ceilings set no cookie: send a same-size dummy one).
for _ in $(seq 1 300); do
    curl -s -D - -o /dev/null "http://127.0.0.1:$port/new" |
        sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p'
done >"$work/cookies.txt"
if [ ! -s "$work/cookies.txt" ]; then
    for i in $(seq 1 300); do printf 'id=%043d\n' "$i"; done >"$work/cookies.txt"
fi
cookies="$work/cookies.txt"
[ "$workload" = new ] && cookies=-

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
