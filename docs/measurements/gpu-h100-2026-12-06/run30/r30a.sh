# run 30, call A (session 24): fdtc with a plan of at most 16 chunks. Run 29 (H100) timed
# fdtc with fdt's plan slower than fdt at batch 1 (5.931 against 5.541 ms with graphs): 1025
# keys are 17 chunks, so one block of each 16-block cluster takes two in turn. Here,
# through gpu-trial.sh, the tree (fdt's plan) against -DFDTC_MAX_SPLIT=16 (16 chunks of 65
# keys, one a block; not fdt's bits): each build's fdtc sweep, fdtc at 1 and 8 sequences
# of 1024 cached keys with fdt as the peer, and the batch-1 decode row with graphs under
# fdtc per build; then the same row under fdt (the default) in the same call; then, if time
# is left, test_gpu_ops' fdtc case on the tree's build (fdtc's bits against fdt's, which
# run 29 could not finish inside the helpers case). Fits a warm machine (REUSE=1) or a
# fresh one.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r30a; mkdir -p $L
pack() { tar czf $OUT/r30a.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
( cd $B && make -j16 bench-gpu tests/test_gpu_ops > $L/build-more.log 2>&1 ) || { tail -20 $L/build-more.log; pack; exit 1; }
wait
ROW="--model /tmp/llama3-8b-random --only 4 --graphs --sustain 0"
el "trial fdtc: fdt's plan, at most 16 chunks"
timeout $(( $(left) - 150 )) bash tools/gpu-trial.sh --build $B --out $L/trial-fdtc --op attention --variant fdtc \
  --shape heads=32,kv=8,hd=128,past=1024 --shape heads=32,kv=8,hd=128,past=1024,seqs=8 --peer fdt \
  --step "$ROW --kernels attention=fdtc" -- "" -DFDTC_MAX_SPLIT=16 2>&1 | tee $L/trial-console.txt | tail -12; pack
el "the row under fdt"
cd $B && timeout 100 ./bench/gpu_bench $ROW --json $L/bench-fdt.json > $L/bench-fdt.txt 2>&1; grep -E "^  decode" $L/bench-fdt.txt | sed -E 's/ +/ /g' | cut -c1-120; pack
el "fdtc's bits against fdt's (test_gpu_ops, case fdtc)"
[ $(left) -gt 40 ] && { CK_RUN_SUITE=gpu_ops CK_RUN_CASE=fdtc timeout $(( $(left) - 10 )) ./tests/test_gpu_ops > $L/test_gpu_ops-fdtc.log 2>&1; echo "exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_ops-fdtc.log | cut -c1-260 | head -6; }; pack
el done
