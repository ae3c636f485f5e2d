# run 26, call S (prepared in session 20, no machine lent): gate_up_proj with the activation
# in one kernel (lr_gpu_linear_silu, off unless LLAMAREF_SILU_FUSE=1). First its checks:
# test_gpu_linear (its linear_silu case: bits against auto then vec at every dtype, fused at
# T 1 and 2, the two kernels at T 3 and unaligned K), test_gpu_forward (silu_fuse_changes_no_bit:
# every fixture at bf16 and fp16, decode steps of 1 and 2 sequences, eager and in graphs,
# bit for bit; and the profiled step shows the activation's kernel gone), compute-sanitizer
# memcheck on the linear_silu case (the kernel has no shared memory and no barrier: racecheck
# and synccheck have nothing to see). Then the decode rows with graphs, without and with
# --silu-fuse, twice in turn (A B A B), with each row's profile. All pass and batch 1 is
# faster in both pairs: LLAMAREF_SILU_FUSE's default becomes on (batch 32 does not fuse).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r26s; mkdir -p $L
pack() { tar czf $OUT/r26s.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu tests/test_gpu_linear tests/test_gpu_forward > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el "test_gpu_linear, test_gpu_forward"
timeout 100 ./tests/test_gpu_linear > $L/test_gpu_linear.log 2>&1; echo "test_gpu_linear exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_linear.log | head -5
timeout 150 ./tests/test_gpu_forward > $L/test_gpu_forward.log 2>&1; echo "test_gpu_forward exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_forward.log | head -6; grep -c "fused with the activation at" $L/test_gpu_forward.log; pack
el memcheck
CK_RUN_CASE=linear_silu timeout 90 /usr/local/cuda/bin/compute-sanitizer --tool memcheck --error-exitcode 9 ./tests/test_gpu_linear > $L/san-memcheck.txt 2>&1; echo "memcheck exit $?"; grep -m1 "ERROR SUMMARY" $L/san-memcheck.txt; pack
el "decode rows, A B A B"; wait
for k in 1 2; do
  for f in "" --silu-fuse; do
    [ $(left) -gt 100 ] || break 2
    n=plain; [ -n "$f" ] && n=fused
    timeout 95 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 45 --graphs --steps 32 $f --json $L/bench-$n-$k.json > $L/bench-$n-$k.txt 2>&1; echo "$n $k exit $?"; grep -E "^  decode" $L/bench-$n-$k.txt | cut -c1-120
  done
done; pack
el done
