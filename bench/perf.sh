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

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh" "$@"
data="$work/perf.$variant.$workload.data"

taskset -c 0 "$bin" serve "$variant" "$port" $redis_url >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
wait_ready "$work/server.log"
cookies=$(make_cookies)

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
    grep -v '^#' | grep '%' | sed -E 's/[[:space:]]+(-[[:space:]]+)*$//' | head -"${TOP:-40}" || true
echo "profile: $data (perf report -i $data)"
