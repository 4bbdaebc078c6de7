#!/usr/bin/env bash
# rss.sh <bin>: VmRSS of the memory variant before and after a 4 s /new flood (store full: 100 000 sessions)
bin=$1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
w=$(mktemp -d)
taskset -c 0 $bin serve sessionkit-memory $port > $w/log 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q ready $w/log && break; sleep 0.1; done
r0=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
taskset -c 1 wrk -t1 -c32 -d4s -s /work/main/bench/lua/rotate.lua http://127.0.0.1:$port/ -- /new - >/dev/null
r1=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
kill $pid
echo "$(basename $bin): RSS before ${r0} kB, after flood ${r1} kB, per session $(( (r1-r0)*1024/100000 )) B"
