# run 31, call D (session 25): fa3 with one block barrier a key tile (-DFA3_ONE_BARRIER=1,
# written without a GPU; the same arithmetic, so the same bits): each tile waits for its own
# copies, meets the block's barrier, and only then sends the next tile's copies into the
# buffer the tile before used, so the barrier at the end of every tile goes. fa3 runs at
# 274 TFLOP/s at 1 x 2048 and 193 at 8 x 512 on the H100 (run 30; 350 and 250 asked).
# Through gpu-trial.sh over the tree and the knob: each build's fa3 sweep (bf16), fa3 at
# 1 x 2048 and 8 x 512 (32/8 heads, hd 128), the prefill rows with their profiles; then, on
# the knob's build, fa3's f16 sweep and compute-sanitizer racecheck and synccheck on its bf16
# sweep (the barrier it drops is what such tools would find missing). Fits a fresh machine
# or a warm one (REUSE=1).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r31d; mkdir -p $L
pack() { tar czf $OUT/r31d.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
( cd $B && make -j16 bench-gpu > $L/build-more.log 2>&1 ) || { tail -20 $L/build-more.log; pack; exit 1; }
wait
el "trial fa3: the tree, FA3_ONE_BARRIER=1"
timeout $(( $(left) - 130 )) bash tools/gpu-trial.sh --build $B --out $L/trial-fa3 --op attention --variant fa3 \
  --shape heads=32,kv=8,hd=128,len=2048 --shape heads=32,kv=8,hd=128,len=512,seqs=8 \
  --step "--model /tmp/llama3-8b-random --only 01 --sustain 0" -- "" -DFA3_ONE_BARRIER=1 2>&1 | tee $L/trial-console.txt | tail -14; pack
el "the knob's build: fa3's f16 sweep, racecheck and synccheck"
cd $B && BASE=$(sed -n 's/^CPPFLAGS = //p' Makefile)
rm -f gpu/*.o; make -j16 CPPFLAGS="$BASE -DFA3_ONE_BARRIER=1" llama-diff > $L/build-knob.log 2>&1 || { tail -5 $L/build-knob.log; pack; exit 1; }
timeout 90 ./llama-diff ops --op attention --variant fa3 --dtype f16 > $L/ops-fa3-f16-knob.txt 2>&1; echo "f16 sweep exit $?"; grep -h "planned" $L/ops-fa3-f16-knob.txt
for tool in racecheck synccheck; do [ $(left) -gt 50 ] || break
  timeout $(( $(left) - 40 < 120 ? $(left) - 40 : 120 )) /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fa3 --dtype bf16 > $L/san-fa3-$tool.txt 2>&1
  echo "$tool exit $?: $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L/san-fa3-$tool.txt)"; done; pack
rm -f gpu/*.o; make -j16 CPPFLAGS="$BASE" llama-diff bench-gpu > $L/build-tree.log 2>&1 || tail -5 $L/build-tree.log; pack
el done
