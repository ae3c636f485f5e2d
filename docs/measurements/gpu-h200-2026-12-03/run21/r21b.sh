# run 21, call B: PDL with the GEMV's first weights preloaded into registers (no L2 prefetch):
# the suites, the decode bench with PDL on and off, then GEMV_PRELOAD trials (each checked
# bit for bit by test_gpu_linear before it is timed).
source gpurun/env.sh
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r21b; mkdir -p $L
pack() { tar czf $OUT/r21b.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el "test_gpu_forward and test_gpu_linear (together)"
( timeout 220 ./tests/test_gpu_forward > $L/test_gpu_forward.log 2>&1; echo "test_gpu_forward exit $?" >> $L/suites.txt ) &
timeout 100 ./tests/test_gpu_linear > $L/test_gpu_linear.log 2>&1; echo "test_gpu_linear exit $?" >> $L/suites.txt
wait; cat $L/suites.txt; grep -hE "^[0-9]+%|FAIL" $L/test_gpu_*.log | head -12; pack
wait
el "gpu_bench, PDL on"; timeout 90 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 --json $L/bench-pdl.json > $L/bench-pdl.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/bench-pdl.txt | grep -v "^|" | cut -c1-130; pack
el "gpu_bench, PDL off"; timeout 90 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 --no-pdl --json $L/bench-nopdl.json > $L/bench-nopdl.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/bench-nopdl.txt | grep -v "^|" | cut -c1-130; pack
for PRE in 0 4 8; do
  [ $(left) -gt 85 ] || break
  el "GEMV_PRELOAD=$PRE"; rm -f gpu/linear.o; make -j16 CPPFLAGS=-DGEMV_PRELOAD=$PRE bench-gpu tests/test_gpu_linear > $L/build-pre$PRE.log 2>&1 || { tail -5 $L/build-pre$PRE.log; continue; }
  timeout 60 ./tests/test_gpu_linear > $L/test_gpu_linear-pre$PRE.log 2>&1; echo "test_gpu_linear exit $?"; grep -hE "^[0-9]+%" $L/test_gpu_linear-pre$PRE.log
  timeout 60 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 24 --graphs --steps 32 > $L/bench-pre$PRE.txt 2>&1; echo "exit $?"; grep -E "decode" $L/bench-pre$PRE.txt | grep -v "^|" | cut -c1-110; pack
done
el done
