# run 37, call 4 (session 31), typed at the console on the warm H100: gpu-check.sh's make-check
# step alone (make check on the GPU, the GPU suites among its tests), under 560 s. It was
# stopped by that limit inside test_gpu_ops, after 31 tests; then two short calls: the
# tracer's test alone, the tests' results (call4/trs.txt) and test_plugin's log.
source gpurun/env.sh; D=$OUT; L=/tmp/gpu-out; mkdir -p $L; OUT=$L timeout 560 bash tools/gpu-check.sh --reuse --skip test_gpu_ops,test_gpu_linear,test_gpu_forward,nccl,ops-sweep,diff,decode,plugin > $L/console.txt 2>&1; echo "exit $?"; grep -E "^(==|--)|^# (TOTAL|PASS|SKIP|FAIL|XFAIL|ERROR)|^(FAIL|ERROR):" $L/console.txt | tail -30; tar czf $D/r37b-makecheck.tgz -C $L .
# then:
cd /tmp/llamaref-build && export LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu; mkdir -p tests/tmp; LR_TMPDIR=$PWD/tests/tmp LR_BUILDDIR=$PWD timeout 60 sh tests/test_ktrace.sh; echo "test_ktrace exit $?"; for t in tests/*.trs; do printf '%s %s\n' "$(grep -h ':test-result:' $t | cut -d' ' -f2)" "$t"; done | sort | uniq -c | sort -rn > $OUT/trs.txt
cp tests/test_plugin.log $OUT/
