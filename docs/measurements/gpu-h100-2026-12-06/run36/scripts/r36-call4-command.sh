# run 36, call 4 (session 30), typed at the console on the warm H100: test_gpu_linear and
# test_gpu_forward once more from call 3's build (the new defaults), their logs tarred,
# since call 3's did not come back.
source gpurun/env.sh; export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu; mkdir -p $LR_TMPDIR /tmp/r36c; grep -n "define AUTO_GEMV_MID_[NKT]" gpu/linear.cu; cd $B; for t in test_gpu_linear test_gpu_forward; do timeout 110 ./tests/$t > /tmp/r36c/$t.log 2>&1; echo "$t exit $?: $(grep -E '^[0-9]+%' /tmp/r36c/$t.log | tr '\n' ' ')"; done; tar czf $OUT/r36c.tgz -C /tmp/r36c .
