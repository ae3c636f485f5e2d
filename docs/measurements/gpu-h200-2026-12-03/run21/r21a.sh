# run 21, call A: programmatic dependent launch (PDL) on the decode chain: the model-level
# suites with it on, then the decode bench with it on and off, then GEMV_PREFETCH trials.
source gpurun/env.sh
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r21a; mkdir -p $L
pack() { tar czf $OUT/r21a.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el "test_gpu_forward and test_gpu_linear (together)"
( timeout 220 ./tests/test_gpu_forward > $L/test_gpu_forward.log 2>&1; echo "test_gpu_forward exit $?" >> $L/suites.txt ) &
timeout 100 ./tests/test_gpu_linear > $L/test_gpu_linear.log 2>&1; echo "test_gpu_linear exit $?" >> $L/suites.txt
wait; cat $L/suites.txt; grep -hE "^[0-9]+%|FAIL|programmatic" $L/test_gpu_*.log | head -12; pack
wait
el "gpu_bench, PDL on"; timeout 90 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 > $L/bench-pdl.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/bench-pdl.txt | cut -c1-150; pack
el "gpu_bench, PDL off"; timeout 90 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 --no-pdl > $L/bench-nopdl.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/bench-nopdl.txt | cut -c1-150; pack
for PF in 0 8192; do
  [ $(left) -gt 80 ] || break
  el "GEMV_PREFETCH=$PF (batch 1 rows)"; rm -f gpu/linear.o; make -j16 CPPFLAGS=-DGEMV_PREFETCH=$PF bench-gpu > $L/build-pf$PF.log 2>&1 || { tail -5 $L/build-pf$PF.log; continue; }
  timeout 60 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 24 --graphs --steps 32 > $L/bench-pf$PF.txt 2>&1; echo "exit $?"; grep -E "decode" $L/bench-pf$PF.txt | cut -c1-110; pack
done
el done
