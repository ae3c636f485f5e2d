# run 24, call C: fa2 with 32 query rows a warp (FA_MT=2) against the tree, the prefill rows
# per configuration; then the decode rows with the new defaults and the compiled
# transformers peer in the same run.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r24c; mkdir -p $L
pack() { tar czf $OUT/r24c.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
cd $SRC; wait
el "trial fa2 FA_MT"; timeout 330 bash tools/gpu-trial.sh --build $B --out $L/trial-fa2 --op attention --variant fa2 \
  --shape heads=32,kv=8,hd=128,len=2048 --shape heads=32,kv=8,hd=128,len=512,seqs=8 \
  --step "--model /tmp/llama3-8b-random --only 01 --steps 8" -- "" -DFA_MT=2 2>&1 | tee $L/trial-fa2-console.txt | tail -12; pack
cd $B
if [ $(left) -gt 190 ]; then
el "gpu_bench decode, graphs"; timeout 80 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 45 --graphs --steps 32 --json $L/bench.json > $L/bench.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/bench.txt | grep -v "^|" | cut -c1-100; pack
el "peer: transformers, StaticCache + torch.compile"; ( cd $SRC && timeout $(( $(left) - 5 )) python3 tools/bench-peer.py --model /tmp/llama3-8b-random --only none --compile --json $L/peer-compile.json > $L/peer-compile.txt 2>&1; echo "exit $?" ); grep -v -e Warning -e "Loading weights" $L/peer-compile.txt | tail -8; pack
fi
el done
