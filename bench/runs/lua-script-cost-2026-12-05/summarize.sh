#!/bin/bash
# usage: summarize.sh results.txt -- median and range of each script and case
awk '{ k=$3" "$4; v[k]=v[k]" "$5 } END { for (k in v) print k, v[k] }' "$1" | sort |
while read -r name owner rest; do
  python3 - "$name" "$owner" $rest <<'PY'
import sys, statistics
name, owner, *xs = sys.argv[1:]
xs = sorted(float(x) for x in xs)
print(f"{name:4} {owner:9} median {statistics.median(xs):.2f} us/call  range {xs[0]:.2f}-{xs[-1]:.2f}  n={len(xs)}")
PY
done
