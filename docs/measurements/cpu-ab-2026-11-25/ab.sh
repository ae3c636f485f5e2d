#!/bin/sh
# ab.sh ROUND: every stage once, in order, against the same checkpoint.
for s in s0-base s1-gemv s2-attnblk s3-logits s4-release s5-attngemm; do
  echo "=== $s round $1 $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  ./$s --model /tmp/cpubench-smol --repeat 3 --steps 16 --json ab-$s-r$1.json > ab-$s-r$1.txt 2>&1
  grep -E "^(prefill|decode|peak)" ab-$s-r$1.txt
done
