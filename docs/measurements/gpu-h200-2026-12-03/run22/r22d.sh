# run 22, call D: the defaults' decode rows and the compiled transformers peer in the same
# run (bench-peer.py --compile: StaticCache + torch.compile); then, if time is left, fd's smallest chunk (SP_MIN_CHUNK 32, the default, against 64 and 128:
# at batch 1 a 32-key chunk leaves 96 of a block's 128 threads idle while scoring), the
# batch-1 rows of the decode bench per build (each build's fd sweep first); then Nsight
# Compute on linear mma and cublas at o_proj's shape, T 32.
source gpurun/env.sh
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 470 - ($(date +%s) - T0) )); }
L=/tmp/r22d; mkdir -p $L
pack() { tar czf $OUT/r22d.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
wait
el "gpu_bench defaults"; timeout 90 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 --json $L/bench-def.json > $L/bench-def.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/bench-def.txt | grep -v "^|" | cut -c1-110; pack
el "peer: transformers, StaticCache + torch.compile"; ( cd $SRC && timeout $(( $(left) - 20 )) python3 tools/bench-peer.py --model /tmp/llama3-8b-random --only none --compile --json $L/peer-compile.json > $L/peer-compile.txt 2>&1; echo "exit $?" ); grep -v -e Warning -e "Loading weights" $L/peer-compile.txt | tail -8; pack
for C in 128; do
  [ $(left) -gt 70 ] || break
  if [ $C != 32 ]; then el "SP_MIN_CHUNK=$C build"; rm -f gpu/attention*.o; make -j16 CPPFLAGS=-DSP_MIN_CHUNK=$C bench-gpu llama-diff > $L/build-c$C.log 2>&1 || { tail -5 $L/build-c$C.log; continue; }; fi
  el "fd sweep bf16, chunk $C"; timeout 40 ./llama-diff ops --op attention --variant fd --dtype bf16 > $L/ops-fd-c$C.txt 2>&1; echo "exit $?"; tail -1 $L/ops-fd-c$C.txt
  el "batch 1, chunk $C"; timeout 75 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 24 --graphs --steps 32 --json $L/bench-c$C.json > $L/bench-c$C.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/bench-c$C.txt | grep -v "^|" | cut -c1-100; pack
done
NCU="ncu --clock-control none --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis"
for v in mma cublas; do
  [ $(left) -gt 25 ] || break
  el "ncu linear $v T 32 o_proj"; timeout $(( $(left) - 5 )) $NCU -k regex:"linear_mma|nvjet|gemm|gemv" --launch-skip 3 --launch-count 1 ./llama-diff ops --op linear --variant $v --dtype bf16 --shape T=32,N=4096,K=4096 --perf > $L/ncu-$v.txt 2>&1; echo "exit $?"; grep -E "linear|nvjet|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Block Limit Shared" $L/ncu-$v.txt | head -12; pack
done
el done
