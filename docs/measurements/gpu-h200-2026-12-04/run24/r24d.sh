# run 24, call D: the defaults of this run (fa2 FA_MT 2, fd FD_LPK 2, RoPE fused with the
# cache write): fa2's and fd's sweeps at bf16 and f16, the sanitizers on fa2's sweep, the
# suites, the Llama-3-8B-shape check (fa2 and fd: a 516-token prefill, and 512 + 4 decode
# steps), then every bench row with graphs.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
L=/tmp/r24d; mkdir -p $L
pack() { tar czf $OUT/r24d.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
cd $B
el "sweeps, suites"
for v in fa2 fd; do for d in bf16 f16; do timeout 90 ./llama-diff ops --op attention --variant $v --dtype $d > $L/ops-$v-$d.txt 2>&1; echo "sweep $v $d exit $?" >> $L/suites.txt; done; done
timeout 200 ./tests/test_gpu_forward > $L/test_gpu_forward.log 2>&1; echo "test_gpu_forward exit $?" >> $L/suites.txt
cat $L/suites.txt; grep -hE "^[0-9]+%|:[EF]:" $L/test_gpu_*.log | head -12; grep -h "planned" $L/ops-*.txt | head; pack
for t in memcheck racecheck synccheck; do
  el "sanitizer $t: ops fa2 bf16"; timeout 90 compute-sanitizer --tool $t --error-exitcode 9 ./llama-diff ops --op attention --variant fa2 --dtype bf16 > $L/san-$t-fa2.txt 2>&1; echo "exit $?"; tail -n 1 $L/san-$t-fa2.txt; pack
done
cd $SRC; wait
el "shape check"
( OUT=$L/shape timeout 200 bash tools/gpu-shape-check.sh --variants fa2,fd --kernels linear=auto --precisions bf16 --tokens 516 --no-faults > $L/shape.txt 2>&1; echo "exit $?" >> $L/shape.txt )
( OUT=$L/shape timeout 150 bash tools/gpu-shape-check.sh --variants fd --kernels linear=auto --precisions bf16 --tokens 516 --decode 4 --no-faults > $L/shape-decode.txt 2>&1; echo "exit $?" >> $L/shape-decode.txt; rm -f $L/shape/*.safetensors )
grep -E "^attention=|^exit" $L/shape.txt $L/shape-decode.txt | cut -c1-260; pack
cd $B
el "gpu_bench, every row"; timeout 150 ./bench/gpu_bench --model /tmp/llama3-8b-random --graphs --steps 32 --json $L/bench.json > $L/bench.txt 2>&1; echo "exit $?"; grep -E "ceilings|prefill|decode" $L/bench.txt | grep -v "^|" | cut -c1-110; pack
el done
