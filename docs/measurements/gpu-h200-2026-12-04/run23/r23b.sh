# run 23, call B (warm machine, call A's build in /tmp/llamaref-build): gemv's staging,
# more configurations, each swept and a batch-1 decode step with CUDA graphs timed.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r23b; mkdir -p $L
pack() { tar czf $OUT/r23b.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
if [ ! -x $B/bench/gpu_bench ]; then
  el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
  export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
  (cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1) || { tail -20 $L/build-bench.log; pack; exit 1; }
fi
wait
el trial; timeout $(( $(left) - 10 )) bash tools/gpu-trial.sh --build $B --out $L/trial --op linear --variant gemv \
  --step "--model /tmp/llama3-8b-random --only 4 --graphs --steps 32" \
  -- "-DGEMV_STAGED=0" "-DGEMV_STAGED=12 -DGEMV_STAGED_BLOCKS=4" "-DGEMV_STAGED=8 -DGEMV_STAGED_BLOCKS=4" "-DGEMV_STAGED=13 -DGEMV_STAGED_BLOCKS=4" 2>&1 | tee $L/trial-console.txt | tail -12
echo "trial exit ${PIPESTATUS[0]}"; pack
el done
