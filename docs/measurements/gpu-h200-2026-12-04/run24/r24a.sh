# run 24, call A: RoPE fused with the cache write (LLAMAREF_ROPE_CACHE=1), first run on a GPU:
# the suites (test_gpu_forward's rope_cache_changes_no_bit), the sanitizers on a decode with
# it, gpu_bench with and without it in the same call; then fd's FD_LPK trial if time is left.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r24a; mkdir -p $L
pack() { tar czf $OUT/r24a.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el "suites"
( timeout 200 ./tests/test_gpu_forward > $L/test_gpu_forward.log 2>&1; echo "test_gpu_forward exit $?" >> $L/suites.txt ) &
timeout 100 ./tests/test_gpu_linear > $L/test_gpu_linear.log 2>&1; echo "test_gpu_linear exit $?" >> $L/suites.txt
wait; cat $L/suites.txt; grep -hE "^[0-9]+%|:[EF]:" $L/test_gpu_*.log | head -12; pack
F=$SRC/fixtures
for t in memcheck racecheck synccheck; do
  el "sanitizer $t, decode with LLAMAREF_ROPE_CACHE=1 (eager, then graphs)"
  for g in "" --cuda-graphs; do
    LLAMAREF_ROPE_CACHE=1 timeout 60 compute-sanitizer --tool $t --error-exitcode 9 ./llama-diff check -b cuda -m $F/models/gqa-f32 -f $F/golden/gqa-f32-batch.safetensors --decode 3 $g > $L/san-$t$g.txt 2>&1; echo "$t $g exit $?"; grep -E "ERROR SUMMARY|stages:" $L/san-$t$g.txt | head -2
  done; pack
done
el "gpu_bench defaults"; timeout 90 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 --json $L/bench-def.json > $L/bench-def.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/bench-def.txt | grep -v "^|" | cut -c1-110; pack
el "gpu_bench --rope-cache"; timeout 90 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 --rope-cache --json $L/bench-rc.json > $L/bench-rc.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/bench-rc.txt | grep -v "^|" | cut -c1-110; pack
cd $SRC
if [ $(left) -gt 200 ]; then
el "trial fd FD_LPK"; timeout $(( $(left) - 5 )) bash tools/gpu-trial.sh --build $B --out $L/trial-fd --op attention --variant fd \
  --step "--model /tmp/llama3-8b-random --only 5 --graphs --steps 32" -- -DFD_LPK=2 "-DFD_LPK=2 -DSP_BLOCKS=1188" 2>&1 | tee $L/trial-fd-console.txt | tail -6; pack
fi
el done
