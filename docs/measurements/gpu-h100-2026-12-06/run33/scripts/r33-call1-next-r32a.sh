# run 32, call A (session 26): three fa3 knobs written after run 31 without a GPU. First, its
# block's block-table entries in shared memory (-DFA3_TABLE_SMEM=256; the same addresses, so
# the same bits). Run 31's Nsight Compute profile of fa3 at 1 x 2048 (H100; run31/call4) put about a
# tenth of the stall samples on the fetch's long-scoreboard waits for the block-table entry
# a key (a global load, then the 64-bit address arithmetic that needs it, in front of each
# tile's copies), and the fetch at about 210 of a warp's 730 instructions a tile. Second,
# O's rescale skipped by a warp whose factors are all exactly 1 (-DFA3_RESCALE_SKIP=1; a
# multiply by 1 left out, the same bits). Third, the softmax's weights as
# exp2(fma(s, sl2, -m)) (-DFA3_FMA_SCALE=1; one rounding fewer, so P's bits change within
# its rounding; FMUL was 11.7% of the instructions). Through gpu-trial.sh over the tree and
# the three added in turn: each build's fa3 sweep (bf16), fa3 at 1 x 2048 and 8 x 512
# (32/8 heads, hd 128), the prefill rows with their profiles, and (--logits) whether the
# 1 x 2048 row's logits keep the tree's bits (the first two must, the third need not);
# then, on the build with all three, fa3's f16 sweep, racecheck and synccheck on its bf16
# sweep (a new barrier and shared array), and Nsight Compute's stall sites at 1 x 2048, to
# set beside run 31's.
# Fits a fresh machine or a warm one (REUSE=1).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r32a; mkdir -p $L
pack() { tar czf $OUT/r32a.tgz --exclude='*.ncu-rep' -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
( cd $B && make -j16 bench-gpu > $L/build-more.log 2>&1 ) || { tail -20 $L/build-more.log; pack; exit 1; }
wait
el "trial fa3: the tree, FA3_TABLE_SMEM=256, with FA3_RESCALE_SKIP=1, with FA3_FMA_SCALE=1"
timeout $(( $(left) - 160 )) bash tools/gpu-trial.sh --build $B --out $L/trial-fa3 --op attention --variant fa3 \
  --shape heads=32,kv=8,hd=128,len=2048 --shape heads=32,kv=8,hd=128,len=512,seqs=8 \
  --step "--model /tmp/llama3-8b-random --only 01 --sustain 0" --logits -- "" -DFA3_TABLE_SMEM=256 \
  "-DFA3_TABLE_SMEM=256 -DFA3_RESCALE_SKIP=1" "-DFA3_TABLE_SMEM=256 -DFA3_RESCALE_SKIP=1 -DFA3_FMA_SCALE=1" 2>&1 | tee $L/trial-console.txt | tail -24; pack
el "the three knobs' build: fa3's f16 sweep, racecheck, synccheck, ncu at 1 x 2048"
cd $B && BASE=$(sed -n 's/^CPPFLAGS = //p' Makefile)
rm -f gpu/*.o; make -j16 CPPFLAGS="$BASE -DFA3_TABLE_SMEM=256 -DFA3_RESCALE_SKIP=1 -DFA3_FMA_SCALE=1" llama-diff > $L/build-knob.log 2>&1 || { tail -5 $L/build-knob.log; pack; exit 1; }
timeout 90 ./llama-diff ops --op attention --variant fa3 --dtype f16 > $L/ops-fa3-f16-knob.txt 2>&1; echo "f16 sweep exit $?"; grep -h "planned" $L/ops-fa3-f16-knob.txt
for tool in racecheck synccheck; do [ $(left) -gt 70 ] || break
  timeout $(( $(left) - 60 < 120 ? $(left) - 60 : 120 )) /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fa3 --dtype bf16 > $L/san-fa3-$tool.txt 2>&1
  echo "$tool exit $?: $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L/san-fa3-$tool.txt)"; done; pack
SECT="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section InstructionStats --section SourceCounters"
[ $(left) -gt 40 ] && { el "ncu: fa3-2048 (the three knobs)"
  timeout $(( $(left) - 15 )) ncu --clock-control none $SECT -k regex:attention_fa3_kernel --launch-count 1 -o $L/fa3-2048-knob -f ./llama-diff ops --op attention --variant fa3 --dtype bf16 --shape heads=32,kv=8,hd=128,len=2048 > $L/ncu-fa3-2048-knob.log 2>&1; echo "exit $?"
  [ -f $L/fa3-2048-knob.ncu-rep ] && { ncu --import $L/fa3-2048-knob.ncu-rep --page details > $L/ncu-fa3-2048-knob.txt 2>&1; grep -E "Duration|Issued Warp|No Eligible|Registers Per|Block Limit Shared" $L/ncu-fa3-2048-knob.txt | cut -c1-120
    ncu --import $L/fa3-2048-knob.ncu-rep --page source --csv --print-source sass 2>/dev/null | gzip -9 > $L/ncu-fa3-2048-knob-sass.csv.gz; }; }; pack
rm -f gpu/*.o; make -j16 CPPFLAGS="$BASE" llama-diff bench-gpu > $L/build-tree.log 2>&1 || tail -5 $L/build-tree.log; pack
el done
