# run 20, call A: are fd (attention) and auto (linear) fit to be the default? test_gpu_ops (its
# decode-long batch: chunks of more than one 128-key tile, query groups 1, 3, 4, 8), the
# sanitizers on fd's and auto's op sweeps, and the real-shape check with both, decoded
# (in the background, on the host's cores, while the GPU suites run).
source gpurun/env.sh  # = ../../gpu-h200-2026-12-02/run18/env.sh
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
L=/tmp/r20a; mkdir -p $L
pack() { tar czf $OUT/r20a.tgz -C $L . 2>/dev/null; }
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
( OUT=$L/shape timeout 400 bash tools/gpu-shape-check.sh --variants fd --kernels linear=auto --precisions bf16 --tokens 516 --decode 4 --no-faults > $L/shape.txt 2>&1; echo "exit $?" >> $L/shape.txt; rm -f $L/shape/*.safetensors ) &
cd $B
el test_gpu_ops; timeout 200 ./tests/test_gpu_ops > $L/test_gpu_ops.log 2>&1; echo "exit $?"; grep -E "^[0-9]+%|FAIL|decode-long" $L/test_gpu_ops.log | head -8; pack
el "ops fd (with decode-long)"; timeout 60 ./llama-diff ops --op attention --variant fd > $L/ops-fd.txt 2>&1; echo "exit $?"; tail -2 $L/ops-fd.txt; grep -c "^PASS" $L/ops-fd.txt; grep -m5 "^FAIL" $L/ops-fd.txt | cut -c1-200; grep -c "decode-long" $L/ops-fd.txt
for t in memcheck racecheck synccheck; do
  el "sanitizer $t: ops linear auto"; timeout 45 compute-sanitizer --tool $t --error-exitcode 9 ./llama-diff ops --op linear --variant auto > $L/san-$t-auto.txt 2>&1; echo "exit $?"; tail -2 $L/san-$t-auto.txt
  el "sanitizer $t: ops fd bf16"; timeout 70 compute-sanitizer --tool $t --error-exitcode 9 ./llama-diff ops --op attention --variant fd --dtype bf16 > $L/san-$t-fd.txt 2>&1; echo "exit $?"; tail -2 $L/san-$t-fd.txt
  pack
done
el "waiting for the shape check"; wait; cut -c1-600 $L/shape.txt; pack; el done
