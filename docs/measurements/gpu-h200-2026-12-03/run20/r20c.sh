# run 20, call C: the new defaults (attention fd, linear auto): the GPU suites, the decode
# bench with them (no --kernels), and Nsight Compute on the decode step's kernels.
source gpurun/env.sh  # = ../../gpu-h200-2026-12-02/run18/env.sh
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r20c; mkdir -p $L
pack() { tar czf $OUT/r20c.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el "test_gpu_ops, test_gpu_forward (together), then test_gpu_linear"
( timeout 330 ./tests/test_gpu_ops > $L/test_gpu_ops.log 2>&1; echo "test_gpu_ops exit $?" >> $L/suites.txt ) &
( timeout 200 ./tests/test_gpu_forward > $L/test_gpu_forward.log 2>&1; echo "test_gpu_forward exit $?" >> $L/suites.txt ) &
./tests/test_gpu_linear > $L/test_gpu_linear.log 2>&1; echo "test_gpu_linear exit $?" >> $L/suites.txt
wait; cat $L/suites.txt; grep -hE "^[0-9]+%|FAIL" $L/test_gpu_*.log | head -8; pack
el "gpu_bench, defaults"; timeout 90 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 > $L/gpu-bench-defaults.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/gpu-bench-defaults.txt | head -5; pack
NCU="ncu --clock-control none --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis"
el "ncu batch 32: fd + merge"; timeout $(left) $NCU -k regex:"attention_fd_kernel|attention_merge" --launch-count 4 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 3 --steps 1 --reps 1 --no-profile > $L/ncu-b32.txt 2>&1; echo "exit $?"; grep -E "attention_.*\(|Duration|DRAM Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per" $L/ncu-b32.txt | head -30; pack
[ $(left) -gt 60 ] && { el "ncu batch 1: gemv, fd, merge"; timeout $(left) $NCU -k regex:"gemv|attention_fd_kernel|attention_merge" --launch-count 6 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2 --steps 1 --reps 1 --no-profile > $L/ncu-b1.txt 2>&1; echo "exit $?"; grep -E "(gemv|attention_).*\(|Duration|DRAM Throughput" $L/ncu-b1.txt | head -30; pack; }
el done
