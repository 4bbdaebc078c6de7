#!/bin/bash
# Run from the repository root. usage: redis-probe.sh <bench-binary> <variant> <workload> -- Redis's own accounting during 5 s of load
BIN=$1; V=$2; W=$3; P=6395; SP=18080
taskset -c 1 redis-server --port $P --save "" --appendonly no --daemonize yes >/dev/null; sleep 0.3
taskset -c 0 $BIN serve $V $SP redis://127.0.0.1:$P > /tmp/probe-server.log 2>&1 & S=$!
for i in $(seq 50); do grep -q ready /tmp/probe-server.log && break; sleep 0.1; done
for i in $(seq 300); do curl -s -D - -o /dev/null http://127.0.0.1:$SP/new | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p'; done > /tmp/probe-cookies.txt
redis-cli -p $P config resetstat >/dev/null
c0=$(redis-cli -p $P info cpu | awk -F: '/used_cpu_(user|sys):/ {s+=$2} END {print s}')
req=$(taskset -c 1 wrk -t1 -c32 -d5s -s bench/lua/rotate.lua http://127.0.0.1:$SP/ -- /$W /tmp/probe-cookies.txt | sed -n 's/^BENCH_RESULT requests=\([0-9]*\).*/\1/p')
c1=$(redis-cli -p $P info cpu | awk -F: '/used_cpu_(user|sys):/ {s+=$2} END {print s}')
echo "$V $W: $req requests, Redis CPU $(python3 -c "print(round(($c1-$c0)*1e6/$req,2))") us/req"
redis-cli -p $P info commandstats | grep -v "^#" | grep -v "cmdstat_info\|cmdstat_config" | sed 's/cmdstat_//; s/,rejected.*//'
kill $S; wait $S 2>/dev/null; redis-cli -p $P shutdown nosave >/dev/null
