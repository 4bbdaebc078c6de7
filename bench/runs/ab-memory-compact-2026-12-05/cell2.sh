#!/usr/bin/env bash
# cell.sh <variant> <read|write|new> [secs] [redis-url]  -> req/s, server CPU us/req, syscalls/req
# BIN=path to override binary; PERF=1 to add perf record (cpu-clock) of the server
set -euo pipefail
v=$1; wl=$2; secs=${3:-8}; url=${4:-}
bin=${BIN:-/work/target/release/sessionkit-bench}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
w=$(mktemp -d)
taskset -c 0 $bin serve $v $port $url > $w/log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q ready $w/log && break; sleep 0.1; done
for _ in $(seq 1000); do curl -s -D - -o /dev/null "http://127.0.0.1:$port/new" | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p'; done > $w/c.txt
[ -s $w/c.txt ] || for i in $(seq 1000); do printf 'id=%043d\n' $i; done > $w/c.txt
ck=$w/c.txt; [ $wl = new ] && ck=-
taskset -c 1 wrk -t1 -c32 -d2s -s /work/main/bench/lua/rotate.lua http://127.0.0.1:$port/ -- /$wl $ck >/dev/null
read u0 s0 < <(awk "{print \$14, \$15}" /proc/$pid/stat)
if [ -n "${SYSC:-}" ]; then
  perf stat -e raw_syscalls:sys_enter -p $pid -o $w/ps.txt -- sleep $secs &
  ps=$!
fi
if [ -n "${PERF:-}" ]; then perf record -e cpu-clock -F 4999 -g -p $pid -o ${PERF} -- sleep $secs >/dev/null 2>&1 & pr=$!; fi
out=$(taskset -c 1 wrk -t1 -c32 -d${secs}s -s /work/main/bench/lua/rotate.lua http://127.0.0.1:$port/ -- /$wl $ck | grep BENCH_RESULT)
read u1 s1 < <(awk "{print \$14, \$15}" /proc/$pid/stat)
[ -n "${SYSC:-}" ] && wait $ps
[ -n "${PERF:-}" ] && wait $pr
req=$(echo $out | sed 's/.*requests=\([0-9]*\).*/\1/')
dur=$(echo $out | sed 's/.*duration_us=\([0-9]*\).*/\1/')
tck=$(getconf CLK_TCK)
sc=""
[ -n "${SYSC:-}" ] && sc=$(awk -v r=$req '/raw_syscalls/ {gsub(",","",$1); printf "syscalls/req %.2f", $1/r}' $w/ps.txt)
echo "$v $wl: $(( req * 1000000 / dur )) req/s, user $(python3 -c "print(round(($u1-$u0)/$tck*1e6/$req,2))") sys $(python3 -c "print(round(($s1-$s0)/$tck*1e6/$req,2))") us/req $sc"
