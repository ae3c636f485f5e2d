# run 22, call C: fd with the chunk merge folded into its split kernel (the last block of a
# (sequence, kv head) merges): its sweeps, the sanitizers, the model-level suites, the
# decode bench.
source gpurun/env.sh
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r22c; mkdir -p $L
pack() { tar czf $OUT/r22c.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
for d in bf16 f16; do el "sweep fd $d"; timeout 60 ./llama-diff ops --op attention --variant fd --dtype $d > $L/ops-fd-$d.txt 2>&1; echo "exit $?"; grep -E "^(FAIL|ERROR)" $L/ops-fd-$d.txt | head -5; tail -1 $L/ops-fd-$d.txt; done; pack
el "test_gpu_forward, test_gpu_linear"
( timeout 200 ./tests/test_gpu_forward > $L/test_gpu_forward.log 2>&1; echo "test_gpu_forward exit $?" >> $L/suites.txt ) &
timeout 100 ./tests/test_gpu_linear > $L/test_gpu_linear.log 2>&1; echo "test_gpu_linear exit $?" >> $L/suites.txt
wait; cat $L/suites.txt; grep -hE "^[0-9]+%|FAIL|:E:" $L/test_gpu_*.log | head -12; pack
wait
el "gpu_bench defaults"; timeout 90 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 --json $L/bench-def.json > $L/bench-def.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/bench-def.txt | grep -v "^|" | cut -c1-130; pack
for t in racecheck memcheck synccheck; do
  [ $(left) -gt 75 ] || break
  el "sanitizer $t fd bf16"; timeout 75 compute-sanitizer --tool $t --error-exitcode 9 ./llama-diff ops --op attention --variant fd --dtype bf16 > $L/san-$t-fd.txt 2>&1; echo "exit $?"; tail -2 $L/san-$t-fd.txt; pack
done
[ $(left) -gt 100 ] && { el "gpu_bench, fd before the fold (HEAD's attention files, rebuilt)"; cp $SRC/gpurun/orig/gpu/* $SRC/gpu/; make -j16 bench-gpu > $L/build-old.log 2>&1 && timeout 90 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 --json $L/bench-old.json > $L/bench-old.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/bench-old.txt | grep -v "^|" | cut -c1-130; pack; }
[ $(left) -gt 1000 ] && { el "gpu_bench --no-pdl"; timeout 65 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 24 --graphs --steps 32 --no-pdl > $L/bench-nopdl.txt 2>&1; echo "exit $?"; grep -E "decode" $L/bench-nopdl.txt | grep -v "^|" | cut -c1-110; pack; }
el done
