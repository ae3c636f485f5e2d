# run 28, call C (session 22): fdt's split at small batches. At batch 1 (1024 keys, 8 kv
# heads) fdt plans 16 chunks of 64 keys a head: 128 blocks whose 4 warps each take one group
# of 16 keys, and a second kernel to merge them; run 27 timed it at 12.8 us a launch on the
# H100 (fd 13.6) for 4 MB of keys and values, all latency. -DFDT_SPLIT_MIN raises the least
# chunk (256: 4 chunks a head and the merge; 1024: one chunk a head, no merge), and
# -DFDT_STAGES=4 keeps three groups in flight a warp instead of two (128 KB a block, one
# block an SM). gpu-trial.sh over the tree and those, each build's fdt sweep first, fdt at
# 1, 8 and 32 sequences (1024 cached keys; fd the peer), and the decode rows with graphs,
# fdt and both fused GEMVs, per build. Fits a warm machine (REUSE=1) or a fresh one.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r28c; mkdir -p $L
pack() { tar czf $OUT/r28c.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
( cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 ) || { tail -20 $L/build-bench.log; pack; exit 1; }
wait
el "trial fdt"
timeout $(( $(left) - 10 )) bash tools/gpu-trial.sh --build $B --out $L/trial-fdt --op attention --variant fdt \
  --shape heads=32,kv=8,hd=128,past=1024 --shape heads=32,kv=8,hd=128,past=1024,seqs=8 \
  --shape heads=32,kv=8,hd=128,past=1024,seqs=32 --peer fd \
  --step "--model /tmp/llama3-8b-random --only 45 --graphs --steps 32 --kernels attention=fdt --silu-fuse --qkv-fuse" \
  -- "" -DFDT_SPLIT_MIN=256 -DFDT_SPLIT_MIN=1024 -DFDT_STAGES=4 "-DFDT_SPLIT_MIN=256 -DFDT_STAGES=4" 2>&1 \
  | tee $L/trial-fdt-console.txt | tail -16; pack
el done
