# run 36, call B (session 30; an H200 only, where batch 1 is above target): fewer kernels a
# decode step. Run 35 on the H200: decode batch 1 with graphs 4.314 ms, 1.21 of its floor
# (target 1.15), 24 us a layer over the floor, 21 of them in kernels that read next to
# nothing (two norms 3.9 us each, fdt 7.6, its merge 5.7; ncu, serialised). Two ways to
# leave kernels out are written and correct, neither timed on an H200 with today's defaults:
# the norms inside the fused GEMVs (--norm-fuse, LLAMAREF_NORM_FUSE; bitwise equal, test_gpu_
# forward's norm_fuse_changes_no_bit, run 34) and the merge inside fdt's cluster (attention
# fdtc; 70/70 in run 34; slower on the H100 in run 29). Here both decode rows with graphs,
# four configurations in turn, twice: the defaults, fdtc, the norms fused, both. Fits a
# fresh machine or a warm one (REUSE=1).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r36b; mkdir -p $L
pack() { tar czf $OUT/r36b.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && { make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }; }
wait
el "decode rows with graphs: defaults, fdtc, the norms fused, both; twice"
for rep in 1 2; do for n in tree fdtc norm both; do [ $(left) -gt 60 ] || break 2
  f=; case $n in fdtc) f="--kernels attention=fdtc" ;; norm) f=--norm-fuse ;; both) f="--kernels attention=fdtc --norm-fuse" ;; esac
  timeout 90 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 45 --graphs $f --json $L/bench-$n-$rep.json > $L/bench-$n-$rep.txt 2>&1; rc=$?
  echo "$n ($rep) exit $rc: $(grep -E "^  decode" $L/bench-$n-$rep.txt | sed -E 's/ +/ /g' | cut -c1-90 | tr '\n' '|')"
done; done; pack
el done
