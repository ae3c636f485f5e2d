# run 28, call D (session 23): the H200's standing figures with the defaults of run 28 (fdt,
# the fused decode GEMVs) and the Nsight Compute profiles that issue 19 owes for every row
# still above target. Machine: no Nsight Systems, so the kernels' own times come from ncu
# (each kernel serialised and replayed, --clock-control none) and the gaps from the graph's
# step time less their sum.
#  1. gpu_bench, the four rows (decode with graphs), the default kernels, JSON + profile;
#  2. ncu: a batch-1 decode step's kernels (eager; the 1024-token prefill's 65 norms and
#     its LM head skipped): duration, DRAM throughput, occupancy of each;
#  3. ncu: batch 32's fdt and merge;
#  4. ncu: cuBLAS at the four projections' T = 2048 shapes (op level, one launch each);
#     (--dtype bf16 since run 35: without it, call 1's one profiled launch was an F32 one)
#  5. ncu: fa3 and the small kernels of the first prefill layer at 1 x 2048.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r28d; mkdir -p $L
pack() { tar czf $OUT/r28d.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && { make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }; }
wait
el "the four rows, the defaults"
timeout 200 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 0145 --graphs --json $L/bench.json > $L/bench.txt 2>&1; echo "exit $?"; grep -E "^  (prefill|decode)|ceilings|sustained" $L/bench.txt | cut -c1-200; pack
NCU="ncu --clock-control none --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis"
KEEP="^  [a-zA-Z_].*\(|Duration|SM Frequency|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Grid Size"
el "ncu: a batch-1 decode step"
timeout 150 $NCU -k regex:"linear_gemv|attention_fdt|attention_merge|rmsnorm_vec|argmax|embedding" --launch-skip 67 --launch-count 24 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2 --steps 1 --reps 1 --no-profile > $L/ncu-b1.txt 2>&1; echo "exit $?"; grep -E "$KEEP" $L/ncu-b1.txt | grep -E "^  [a-zA-Z_]|Duration|DRAM Th" | cut -c1-120 | head -72; pack
el "ncu: batch 32, fdt + merge"
timeout 120 $NCU -k regex:"attention_fdt|attention_merge" --launch-count 2 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 3 --steps 1 --reps 1 --no-profile > $L/ncu-b32.txt 2>&1; echo "exit $?"; grep -E "$KEEP" $L/ncu-b32.txt | cut -c1-150 | head -24; pack
el "ncu: cuBLAS at the projections' T = 2048 shapes"
for sh in T=2048,N=6144,K=4096 T=2048,N=4096,K=4096 T=2048,N=28672,K=4096 T=2048,N=4096,K=14336; do
  [ $(left) -gt 60 ] || break
  timeout 45 $NCU -k regex:"nvjet|xmma|gemm|cutlass|sm90" --launch-count 1 ./llama-diff ops --op linear --variant cublas --dtype bf16 --shape $sh --perf > $L/ncu-gemm-$sh.txt 2>&1; echo "$sh exit $?"; grep -E "$KEEP" $L/ncu-gemm-$sh.txt | cut -c1-150 | head -9
done; pack
el "ncu: prefill 1 x 2048, the first layer's kernels other than cuBLAS"
[ $(left) -gt 40 ] && { timeout $(( $(left) - 10 )) $NCU -k regex:"rmsnorm_vec|rotary_cache|attention_fa3|activation_vec" --launch-count 5 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 0 --reps 1 --no-profile --sustain 0 > $L/ncu-prefill.txt 2>&1; echo "exit $?"; grep -E "$KEEP" $L/ncu-prefill.txt | cut -c1-150 | head -45; }; pack
el done
