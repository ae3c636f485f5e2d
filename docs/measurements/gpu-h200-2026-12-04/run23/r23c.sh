# run 23, call C: the new defaults (gemv staged, 8 vectors, 4 blocks an SM): the suites, the
# sweeps, the sanitizers, the decode record; then fd's SP_BLOCKS at batch 32 if time is left.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r23c; mkdir -p $L
pack() { tar czf $OUT/r23c.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el "suites"
( timeout 200 ./tests/test_gpu_forward > $L/test_gpu_forward.log 2>&1; echo "test_gpu_forward exit $?" >> $L/suites.txt ) &
timeout 100 ./tests/test_gpu_linear > $L/test_gpu_linear.log 2>&1; echo "test_gpu_linear exit $?" >> $L/suites.txt
for d in bf16 f16; do timeout 60 ./llama-diff ops --op linear --variant gemv --dtype $d > $L/ops-gemv-$d.txt 2>&1; echo "sweep gemv $d exit $?" >> $L/suites.txt; done
wait; cat $L/suites.txt; grep -hE "^[0-9]+%|:[EF]:" $L/test_gpu_*.log | head -12; pack
for t in memcheck racecheck synccheck; do
  el "sanitizer $t gemv bf16"; timeout 35 compute-sanitizer --tool $t --error-exitcode 9 ./llama-diff ops --op linear --variant gemv --dtype bf16 > $L/san-$t-gemv.txt 2>&1; echo "exit $?"; tail -1 $L/san-$t-gemv.txt; grep -o "nvjet[a-z0-9_]*\|linear_gemv[a-zA-Z0-9_]*" $L/san-$t-gemv.txt | sort | uniq -c | head -3; pack
done
wait; el "gpu_bench defaults"; timeout 100 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 --json $L/bench-def.json > $L/bench-def.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/bench-def.txt | grep -v "^|" | cut -c1-110; pack
cd $SRC
if [ $(left) -gt 230 ]; then
el "trial fd SP_BLOCKS"; timeout $(( $(left) - 5 )) bash tools/gpu-trial.sh --build $B --out $L/trial-fd --op attention --variant fd \
  --step "--model /tmp/llama3-8b-random --only 5 --graphs --steps 32" -- -DSP_BLOCKS=660 -DSP_BLOCKS=1320 2>&1 | tee $L/trial-fd-console.txt | tail -6; pack
fi
el done
