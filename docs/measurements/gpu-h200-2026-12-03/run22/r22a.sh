# run 22, call A: linear `mma` (written in session 13, first GPU run), now launched with PDL
# (its first stages' weights asked for before the wait): its sweep, the suites, the
# sanitizers, per-op timings (gpu_ops_bench), the decode bench with it and without.
cp gpurun/orig/gpu/* gpu/  # the HEAD attention files (a helper edits them meanwhile)
source gpurun/env.sh
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r22a; mkdir -p $L
pack() { tar czf $OUT/r22a.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
for d in bf16 f16; do el "sweep mma $d"; timeout 60 ./llama-diff ops --op linear --variant mma --dtype $d > $L/ops-mma-$d.txt 2>&1; echo "exit $?"; grep -E "FAIL|error" $L/ops-mma-$d.txt | head -8; tail -3 $L/ops-mma-$d.txt; done; pack
el "test_gpu_linear, test_gpu_forward"
( timeout 200 ./tests/test_gpu_forward > $L/test_gpu_forward.log 2>&1; echo "test_gpu_forward exit $?" >> $L/suites.txt ) &
timeout 100 ./tests/test_gpu_linear > $L/test_gpu_linear.log 2>&1; echo "test_gpu_linear exit $?" >> $L/suites.txt
wait; cat $L/suites.txt; grep -hE "^[0-9]+%|FAIL|:E:" $L/test_gpu_*.log | head -12; pack
el gpu_ops_bench; timeout 110 ./bench/gpu_ops_bench > $L/gpu-ops.txt 2>&1; echo "exit $?"; grep -E "^card|^linear +(mma|gemv |cublas)" $L/gpu-ops.txt | grep -v "T 2048"; pack
wait
el "gpu_bench linear=mma"; timeout 90 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 --kernels linear=mma --json $L/bench-mma.json > $L/bench-mma.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/bench-mma.txt | grep -v "^|" | cut -c1-130; pack
el "gpu_bench defaults"; timeout 90 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 --json $L/bench-def.json > $L/bench-def.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/bench-def.txt | grep -v "^|" | cut -c1-130; pack
for t in memcheck racecheck synccheck; do
  [ $(left) -gt 50 ] || break
  el "sanitizer $t mma bf16"; timeout 45 compute-sanitizer --tool $t --error-exitcode 9 ./llama-diff ops --op linear --variant mma --dtype bf16 > $L/san-$t-mma.txt 2>&1; echo "exit $?"; tail -2 $L/san-$t-mma.txt; grep -o "nvjet[a-z0-9_]*\|linear_mma[a-z0-9_]*" $L/san-$t-mma.txt | sort | uniq -c | head -4; pack
done
el done
