# run 38, call A (session 32; written for an H200, where decode batch 1 misses its target:
# 4.314 ms, 1.21 in run 35; fits a fresh machine or a warm one with REUSE=1): the kernel
# tracer on the H200's decode rows. Run 37 traced them on an H100 (met there: 1.12-1.13):
# the three decode GEMVs at the copy rate inside the graph, the 19.5 us a layer over the
# floor in attention and its merge (11.4) and the norms (4.4), the LM head and argmax
# outside the graph, the host 0.03-0.08 ms a step. Here, the same on the H200, and the
# configurations next-r36b.sh was to time (fdtc, the norms fused, both): each untraced
# twice, then traced once, with tools/ktrace-summary.py's table. Supersedes next-r36b.sh.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r38a; mkdir -p $L
pack() { tar czf $OUT/r38a.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
(cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1) || { tail -20 $L/build-bench.log; pack; exit 1; }
KL=$B/bench/libllamaref_ktrace.so; [ -f $KL ] || { echo "no tracer library (configure found no CUPTI): $(grep -A1 'checking for CUPTI' $B/config.log | tail -1)"; pack; exit 1; }
wait
run() { # name, row, trace (0/1), gpu_bench flags...
  local n=$1 row=$2 tr=$3; shift 3; [ $(left) -gt 45 ] || return 1
  local KT=; [ $tr = 1 ] && KT="bash tools/ktrace.sh --lib $KL -o $L/$n.jsonl --"
  timeout 90 $KT $B/bench/gpu_bench --model /tmp/llama3-8b-random --only $row --graphs --no-profile "$@" --json $L/$n.json > $L/$n.txt 2>&1
  echo "$n exit $?: $(grep -E '^  decode' $L/$n.txt | sed -E 's/ +/ /g' | cut -c1-70); $(grep -o 'load [0-9.]* s' $L/$n.txt)"
  if [ $tr = 1 ]; then python3 tools/ktrace-summary.py --per 32 $L/$n.jsonl > $L/$n-summary.txt 2>&1; sed -n '1p;5,13p;/^between/p' $L/$n-summary.txt; gzip $L/$n.jsonl; fi
}
el "batch 1: the defaults, fdtc, the norms fused, both; untraced twice, traced once"
for c in tree fdtc norm both; do
  f=; case $c in fdtc) f="--kernels attention=fdtc" ;; norm) f=--norm-fuse ;; both) f="--kernels attention=fdtc --norm-fuse" ;; esac
  run b1-$c-1 4 0 $f; run b1-$c-2 4 0 $f; run b1-$c-t 4 1 $f || break; pack
done
el "batch 32, the defaults"; run b32-tree-1 5 0; run b32-tree-t 5 1; pack
el done
