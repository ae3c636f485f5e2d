# run 25, call D (prepared in session 18, which was lent no GPU): fd's decode at batch 32,
# the row furthest from its target (1.51 against 1.40; fd moved the step's 135 MB a layer
# at about 35-40% of copy bandwidth in run 20). Four knobs that change no bit of
# the output, and one that changes the split: FD_HEAD_MINOR (the kv heads of a sequence's chunk dispatched together, so
# that a key's 2 KB cache slot is read at once, not 256 bytes of it per wave), FD_PIPE (the next tile's K and V loads issued before this tile's
# softmax and P V; 5 blocks an SM), FD_FUSE_MERGE (the last block of a sequence's kv head to
# finish merges its chunks: one kernel a layer less; FD_MINB is ptxas's blocks an SM), and
# SP_FIT (the split sized to one wave of the kernel's resident blocks: 1024 blocks at batch
# 32, not 1280 = a wave and 92). Each build's fd sweep first (gpu-trial.sh), then fd at op level (8 sequences and 1, 1024 cached keys, 32/8 heads, hd 128) and both decode rows
# with graphs, against the tree in the same call.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r25d; mkdir -p $L
pack() { tar czf $OUT/r25d.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
wait; cd $SRC
el "trial fd"; timeout $(( $(left) - 5 )) bash tools/gpu-trial.sh --build $B --out $L/trial-fd --op attention --variant fd \
  --shape heads=32,kv=8,hd=128,past=1024,seqs=8 --shape heads=32,kv=8,hd=128,past=1024 \
  --step "--model /tmp/llama3-8b-random --only 45 --graphs --steps 32" -- "" -DFD_HEAD_MINOR=1 \
  "-DFD_HEAD_MINOR=1 -DFD_FUSE_MERGE=1" "-DFD_HEAD_MINOR=1 -DFD_PIPE=1 -DFD_MINB=5" "-DFD_HEAD_MINOR=1 -DSP_FIT=1" \
  2>&1 | tee $L/trial-fd-console.txt | tail -18; pack
el done
