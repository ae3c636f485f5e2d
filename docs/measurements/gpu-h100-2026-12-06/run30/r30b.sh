# run 30, call B (session 24): the plain gemv's loads in flight (o_proj and down_proj at
# batch 1; qkv_proj and gate_up_proj have the pair kernels' own loops). Run 28's profile (H100)
# put o_proj at 63% and down_proj at 85% of copy bandwidth; nvcc unrolls the main loop 4
# steps (4 loads of w a lane before the first is used). gpu-trial.sh over the tree against
# -DGEMV_UNROLL=8 (ptxas: the staged T = 1 kernel stays at its 64 registers without spills,
# T = 2 spills 20 bytes, the unstaged ones 102 and 140 registers): each build's linear gemv
# sweep, gemv at T 1 and 2 on o_proj's and down_proj's shapes with cublas as the peer (both
# ceilings: the card's copy and a copy of the case's bytes), and the batch-1 decode row with
# graphs per build. Fits a warm machine (REUSE=1) or a fresh one.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r30b; mkdir -p $L
pack() { tar czf $OUT/r30b.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
( cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 ) || { tail -20 $L/build-bench.log; pack; exit 1; }
wait
el "trial gemv: the tree, GEMV_UNROLL=8"
timeout $(( $(left) - 10 )) bash tools/gpu-trial.sh --build $B --out $L/trial-gemv --op linear --variant gemv \
  --shape T=1,N=4096,K=4096 --shape T=1,N=4096,K=14336 --shape T=2,N=4096,K=4096 --shape T=2,N=4096,K=14336 \
  --peer cublas --step "--model /tmp/llama3-8b-random --only 4 --graphs --sustain 0" -- "" -DGEMV_UNROLL=8 2>&1 \
  | tee $L/trial-console.txt | tail -14; pack
el done
