# run 25, call G (prepared in session 18, not yet run: no machine could be started after
# call B): the checks that would make fa3 with FA3_MINB=2 fd's prefill. First bring back
# c8d1cf1's change (git revert 976c1d9: fd hands prefill to fa3, FA3_MINB 2), then run this:
# fa3_native, the fa3 and fd sweeps at bf16 and f16, the three sanitizers on fa3's bf16
# sweep, the prefill rows, then the Llama-3-8B-shape check of fd (a 516-token prefill
# through fa3) at bf16 and fp16 with the time left. All pass: keep the change.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r25g; mkdir -p $L
pack() { tar czf $OUT/r25g.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el "fa3 native; sweeps"
CK_RUN_SUITE=gpu_ops CK_RUN_CASE=helpers timeout 60 ./tests/test_gpu_ops > $L/test_gpu_ops-helpers.log 2>&1; echo "helpers exit $?"; grep -E "^fa3:|^[0-9]+%" $L/test_gpu_ops-helpers.log | head -3
for v in fa3 fd; do for d in bf16 f16; do timeout 60 ./llama-diff ops --op attention --variant $v --dtype $d > $L/ops-$v-$d.txt 2>&1; echo "sweep $v $d exit $?"; grep -h "planned" $L/ops-$v-$d.txt; grep -m3 "^FAIL" $L/ops-$v-$d.txt | cut -c1-200; done; done; pack
for tool in memcheck racecheck synccheck; do timeout 60 /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fa3 --dtype bf16 > $L/san-$tool.txt 2>&1; echo "$tool exit $?"; grep -m1 -E "ERROR SUMMARY|RACECHECK SUMMARY" $L/san-$tool.txt; done; pack
el "prefill rows"; wait; timeout 80 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 01 --json $L/bench.json > $L/bench.txt 2>&1; echo "exit $?"; grep -E "^ceilings|^  prefill" $L/bench.txt | cut -c1-110; pack
el "shape check fd (fa3 prefill)"; cd $SRC
( OUT=$L/shape timeout $(( $(left) - 8 )) bash tools/gpu-shape-check.sh --variants fd --kernels linear=auto --precisions bf16,fp16 --tokens 516 --no-faults > $L/shape.txt 2>&1; echo "exit $?" >> $L/shape.txt; rm -f $L/shape/*.safetensors )
grep -E "^attention=|^exit|agree|stages" $L/shape.txt | cut -c1-240 | head -12; pack
el done
