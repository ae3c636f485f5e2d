# run 25, call F (prepared in session 18): the Nsight Compute profiles that the prefill rows'
# explanations owe (issue 19 asks an ncu-backed explanation for every row above target),
# and fd's at batch 32 with FD_LPK 2 (run 20's profile was of one thread a key). Sections as
# run 20's (SpeedOfLight, Occupancy, LaunchStats, WarpStateStats, MemoryWorkloadAnalysis),
# with unlocked clocks (--clock-control none, so SM Frequency says what the card ran at):
#  1. the first prefill layer's RMSNorm, fused RoPE + cache, fa2 and SiLU-and-mul at 1 x 2048;
#  2. cuBLAS on the four projections' shapes at T 2048 (op level: one launch each);
#  3. fd and its merge at batch 32, ctx 1024;
#  4. fd again with the stall reasons as metrics (names per the Nsight Compute metrics
#     reference; if the tool refuses one, only this step is lost).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r25f; mkdir -p $L
pack() { tar czf $OUT/r25f.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
NCU="ncu --clock-control none --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis"
KEEP="\(|Duration|SM Frequency|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued"
el "ncu: cuBLAS at the projections' T = 2048 shapes"
for sh in T=2048,N=6144,K=4096 T=2048,N=4096,K=4096 T=2048,N=28672,K=4096 T=2048,N=4096,K=14336; do
  timeout 60 $NCU -k regex:"nvjet|xmma|gemm|cutlass|sm90" --launch-count 1 ./llama-diff ops --op linear --variant cublas --shape $sh --perf > $L/ncu-gemm-$sh.txt 2>&1; echo "$sh exit $?"; grep -E "$KEEP" $L/ncu-gemm-$sh.txt | cut -c1-150 | head -9
done; pack
wait
el "ncu: prefill 1 x 2048, the first layer's own kernels"
timeout 200 $NCU -k regex:"rmsnorm_vec|rotary_cache|attention_fa2|activation_vec" --launch-count 6 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 0 --reps 1 --no-profile > $L/ncu-prefill.txt 2>&1; echo "exit $?"; grep -E "$KEEP" $L/ncu-prefill.txt | cut -c1-150 | head -40; pack
el "ncu: batch 32, fd + merge"
timeout 150 $NCU -k regex:"attention_fd_kernel|attention_merge" --launch-count 2 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 3 --steps 1 --reps 1 --no-profile > $L/ncu-b32.txt 2>&1; echo "exit $?"; grep -E "$KEEP" $L/ncu-b32.txt | cut -c1-150 | head -20; pack
if [ $(left) -gt 90 ]; then
el "ncu: batch 32, fd's stall reasons"
ST=""; for r in long_scoreboard short_scoreboard barrier mio_throttle lg_throttle wait not_selected selected math_pipe_throttle no_instruction membar drain dispatch_stall branch_resolving; do ST="$ST${ST:+,}smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio"; done
timeout $(( $(left) - 5 )) ncu --clock-control none --metrics "$ST" -k regex:"attention_fd_kernel" --launch-count 1 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 3 --steps 1 --reps 1 --no-profile > $L/ncu-b32-stalls.txt 2>&1; echo "exit $?"; grep -E "stalled|ERR" $L/ncu-b32-stalls.txt | cut -c1-150 | head -16; pack
fi
el done
