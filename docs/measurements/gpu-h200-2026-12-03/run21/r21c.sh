# run 21, call C: correctness of the PDL launches with the kept defaults (GEMV_PRELOAD 2):
# Llama-3-8B shapes against the float64 reference (fd + auto, bf16, prefill and decode),
# test_gpu_ops, and compute-sanitizer on the op sweeps of the kernels launched with PDL.
source gpurun/env.sh
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 470 - ($(date +%s) - T0) )); }
L=/tmp/r21c; mkdir -p $L
pack() { tar czf $OUT/r21c.tgz -C $L . 2>/dev/null; }
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
el "shape check (background), test_gpu_ops (background)"
( OUT=$L/shape timeout 420 bash $SRC/tools/gpu-shape-check.sh --variants fd --kernels linear=auto --precisions bf16 --tokens 516 --decode 4 --no-faults > $L/shape.txt 2>&1; echo "exit $?" >> $L/shape.txt; rm -f $L/shape/*.safetensors ) &
cd $B
( timeout 420 ./tests/test_gpu_ops > $L/test_gpu_ops.log 2>&1; echo "test_gpu_ops exit $?" >> $L/suites.txt ) &
for op in "attention --variant fd" "linear --variant gemv" "rmsnorm --variant vec" "rotary --variant heads" "activation --variant vec" "cache"; do
  n=$(echo $op | tr ' ' '_' | tr -d -); 
  for t in memcheck synccheck racecheck; do
    [ $(left) -gt 40 ] || break
    timeout 60 compute-sanitizer --tool $t --error-exitcode 9 ./llama-diff ops --op $op --dtype bf16 > $L/san-$t-$n.txt 2>&1; echo "$t $op: exit $?; $(grep -hE '^ops:' $L/san-$t-$n.txt | cut -c1-60); $(tail -1 $L/san-$t-$n.txt)"
  done
done; pack
el "waiting"; wait; cat $L/suites.txt; grep -hE "^[0-9]+%|FAIL" $L/test_gpu_ops.log | head; grep -E "exit|agree|diverge" $L/shape.txt | cut -c1-260; pack
el done
