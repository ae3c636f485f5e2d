# run 24, call B: the new defaults (RoPE fused with the cache write; fd with two threads a
# key, FD_LPK 2): the suites, fd's sweeps at bf16 and f16, the sanitizers on fd's sweep,
# the Llama-3-8B-shape check of a 516-token prefill and 4 decode steps (fd, the fused RoPE
# at head_dim 128), then the decode bench.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
L=/tmp/r24b; mkdir -p $L
pack() { tar czf $OUT/r24b.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
cd $SRC
( OUT=$L/shape timeout 420 bash tools/gpu-shape-check.sh --variants fd --kernels linear=auto --precisions bf16 --tokens 516 --decode 4 --no-faults > $L/shape.txt 2>&1; echo "exit $?" >> $L/shape.txt; rm -f $L/shape/*.safetensors ) &
SHAPE=$!
cd $B
el "suites"
timeout 200 ./tests/test_gpu_forward > $L/test_gpu_forward.log 2>&1; echo "test_gpu_forward exit $?" >> $L/suites.txt
for d in bf16 f16; do timeout 90 ./llama-diff ops --op attention --variant fd --dtype $d > $L/ops-fd-$d.txt 2>&1; echo "sweep fd $d exit $?" >> $L/suites.txt; done
for d in bf16 f16; do timeout 60 ./llama-diff ops --op rotary --dtype $d > $L/ops-rotary-$d.txt 2>&1; echo "sweep rotary $d exit $?" >> $L/suites.txt; done
cat $L/suites.txt; grep -hE "^[0-9]+%|:[EF]:" $L/test_gpu_*.log | head -12; grep -h "^PASS\|^FAIL\|planned" $L/ops-*.txt | head; pack
for t in memcheck racecheck synccheck; do
  el "sanitizer $t: ops fd bf16"; timeout 90 compute-sanitizer --tool $t --error-exitcode 9 ./llama-diff ops --op attention --variant fd --dtype bf16 > $L/san-$t-fd.txt 2>&1; echo "exit $?"; tail -n 1 $L/san-$t-fd.txt; pack
done
el "waiting for the shape check"; wait $SHAPE; tail -n 4 $L/shape.txt; pack
el "gpu_bench defaults"; timeout 90 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 --json $L/bench-def.json > $L/bench-def.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/bench-def.txt | grep -v "^|" | cut -c1-110; pack
el done
