# run 23, call A: gemv staged through shared memory before its PDL wait (GEMV_STAGED).
# Its bits against the simulated order (test_gpu_linear), its sweeps, then gpu-trial.sh over
# GEMV_STAGED 0 (the old kernel), 8 (the tree), 9, 12 with 4 blocks an SM: each swept, the
# four projections at T 1 timed, and a batch-1 decode step with CUDA graphs. Sanitizers last.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r23a; mkdir -p $L
pack() { tar czf $OUT/r23a.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el test_gpu_linear; timeout 120 ./tests/test_gpu_linear > $L/test_gpu_linear.log 2>&1; echo "exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_linear.log | head -8
for d in bf16 f16; do el "sweep gemv $d"; timeout 60 ./llama-diff ops --op linear --variant gemv --dtype $d > $L/ops-gemv-$d.txt 2>&1; echo "exit $?"; grep -E "^FAIL|error" $L/ops-gemv-$d.txt | head -4; tail -1 $L/ops-gemv-$d.txt; done; pack
wait; el "model ready"; ls /tmp/llama3-8b-random | head -3
cd $SRC
el trial; timeout $(( $(left) - 90 )) bash tools/gpu-trial.sh --build $B --out $L/trial --op linear --variant gemv \
  --shape T=1,N=6144,K=4096 --shape T=1,N=4096,K=4096 --shape T=1,N=4096,K=14336 --shape T=1,N=28672,K=4096 \
  --peer cublas --step "--model /tmp/llama3-8b-random --only 4 --graphs --steps 32" \
  -- "-DGEMV_STAGED=0" "" "-DGEMV_STAGED=9" "-DGEMV_STAGED=12 -DGEMV_STAGED_BLOCKS=4" 2>&1 | tee $L/trial-console.txt | tail -30
echo "trial exit ${PIPESTATUS[0]}"; pack
cd $B
for t in memcheck racecheck synccheck; do
  [ $(left) -gt 40 ] || break
  el "sanitizer $t gemv bf16"; timeout 35 compute-sanitizer --tool $t --error-exitcode 9 ./llama-diff ops --op linear --variant gemv --dtype bf16 > $L/san-$t-gemv.txt 2>&1; echo "exit $?"; tail -2 $L/san-$t-gemv.txt; pack
done
el done
