#!/usr/bin/env bash
# Where one variant's server spends its CPU under load, on the real
# processor: `perf record` (cpu-clock sampling, call graphs) of the server
# while wrk drives one workload, then the top of `perf report`. The
# counterpart of callgrind.sh: callgrind counts instructions exactly but
# runs on valgrind's simulated CPU, which hides SHA-NI (so every SHA-256
# looks ten times dearer than it is), knows nothing of the kernel, and
# charges a cache miss nothing unless asked to simulate caches; this shows
# the time as it is spent, kernel included, with a sampling error.
#
#   bench/perf.sh <variant> <read|write|new> [seconds] [redis-url]
#
# Needs a release build (cargo build --release -p sessionkit-bench), perf
# (Debian: linux-perf), wrk and curl. Redis variants need a redis-server you
# started yourself and its URL (see callgrind.sh). Works without hardware
# performance counters (virtual machines): it samples the cpu-clock event.
#
# Environment:
#   TOP=N         lines of the report to print (default 40)
#   PERF_FLAGS    extra `perf report` flags (e.g. "--children" for
#                 inclusive figures, "--sort symbol" to merge across objects)
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
data="$work/perf.$variant.$workload.data"

taskset -c 0 "$bin" serve "$variant" "$port" $redis_url >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    grep -q ready "$work/server.log" 2>/dev/null && break
    sleep 0.1
done

# 300 sessions, as callgrind.sh makes them (the ceilings set no cookie).
for _ in $(seq 1 300); do
    curl -s -D - -o /dev/null "http://127.0.0.1:$port/new" |
        sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p'
done >"$work/cookies.txt"
if [ ! -s "$work/cookies.txt" ]; then
    for i in $(seq 1 300); do printf 'id=%043d\n' "$i"; done >"$work/cookies.txt"
fi
cookies="$work/cookies.txt"
[ "$workload" = new ] && cookies=-

# Load for a second longer than the sampling on both sides, so that perf
# sees the server only in its steady state.
taskset -c 1 wrk -t1 -c32 -d"$((secs + 2))s" -s "$here/lua/rotate.lua" \
    "http://127.0.0.1:$port/" -- "/$workload" "$cookies" >"$work/wrk.out" 2>&1 &
load=$!
sleep 1
perf record -q -e cpu-clock -F 4999 -g -p "$server" -o "$data" -- sleep "$secs" \
    >"$work/perf-record.log" 2>&1
wait $load || true
requests=$(sed -n 's/^BENCH_RESULT requests=\([0-9]*\).*/\1/p' "$work/wrk.out")
echo "$variant $workload: $requests requests in $((secs + 2)) s of load; $secs s sampled"
# shellcheck disable=SC2086 # PERF_FLAGS is a list of flags
perf report -i "$data" --no-children --sort dso,symbol -g none ${PERF_FLAGS:-} 2>/dev/null |
    grep -v '^#' | grep '%' | sed -E 's/[[:space:]]+(-[[:space:]]+)*$//' | head -"${TOP:-40}"
echo "profile: $data (perf report -i $data)"
