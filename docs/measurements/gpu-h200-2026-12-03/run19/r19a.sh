# run 19, call 1: build, correctness of the changed kernels, linear and decode-attention perf under knobs
source gpurun/env.sh
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
el build; [ -x /tmp/llamaref-build/llama-diff ] || bash tools/gpu-check.sh --build-only > $OUT/build.log 2>&1 || { tail -30 $OUT/build.log; exit 1; }
cd $B && make -j16 bench-gpu > $OUT/build-bench.log 2>&1 || { tail -20 $OUT/build-bench.log; exit 1; }
el test_gpu_linear; ./tests/test_gpu_linear > $OUT/test_gpu_linear.log 2>&1; echo "exit $?"; tail -3 $OUT/test_gpu_linear.log
for v in cublas gemv auto gemv2; do ./llama-diff ops --shapes llama3-8b --op linear --variant $v --dtype bf16 --perf > $OUT/lin-$v.txt 2>&1; echo "lin $v exit $?"; done
el opsbench-default; ./bench/gpu_ops_bench > $OUT/ob-default.txt 2>&1; grep -E "attention .*decode|copy" $OUT/ob-default.txt | head -12
cfg() { # name flags
  rm -f gpu/linear.o gpu/attention_tc.o; make -j16 CPPFLAGS="$2" bench/gpu_ops_bench llama-diff > $OUT/build-$1.log 2>&1 || { tail -5 $OUT/build-$1.log; return; }
  ./bench/gpu_ops_bench > $OUT/ob-$1.txt 2>&1; el "$1"; grep -E "attention  (fa2|tc) .*decode" $OUT/ob-$1.txt
}
cfg u8 "-DGEMV_UNROLL=8 -DSP_UNROLL=8"; ./llama-diff ops --shapes llama3-8b --op linear --variant gemv --dtype bf16 --perf > $OUT/lin-gemv-u8.txt 2>&1
cfg w8u8 "-DSP_WARPS=8 -DSP_UNROLL=8"
cfg w8 "-DSP_WARPS=8"
cfg w8u8c32 "-DSP_WARPS=8 -DSP_UNROLL=8 -DSP_MIN_CHUNK=32"
cfg u8c32 "-DSP_UNROLL=8 -DSP_MIN_CHUNK=32"
rm -f gpu/linear.o gpu/attention_tc.o; make -j16 > /dev/null 2>&1
el "test_gpu_ops (default knobs)"; timeout 240 ./tests/test_gpu_ops > $OUT/test_gpu_ops.log 2>&1; echo "exit $?"; grep -E "^[0-9]+%|FAIL" $OUT/test_gpu_ops.log | head
cd $OUT && for f in lin-*.txt; do echo "== $f"; grep -E "T *=|copy|µs|us" $f | head -40; done > lin-summary.txt; el done
