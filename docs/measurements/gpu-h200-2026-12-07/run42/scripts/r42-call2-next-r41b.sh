# run 41, call B (session 36 or later; any sm_90 card, fresh or warm with REUSE=1): attention
# fa3wts' two knobs (gpu/attention_fa3.cu, written in session 35 without a GPU; each gives the
# same bits): FA3WTS_WG_STORE (each consumer warpgroup stores its output from its own rows of
# Q and goes on to its next work tile without the consumers' store barrier; run 40 left about
# 3.7 us a work tile in series at 8 x 512) and FA3WTS_ALIGN_END (a sequence's work tiles end
# at its last row, so the short tile is its first rows: tools/fa3wts-balance.py's busiest
# block 30 key tiles instead of 34 at 8 x 512, 51 instead of 61 at 4 x 1024, 51 instead of
# 53 at 1 x 2048). gpu-trial.sh over the tree, each knob and both (each build's fa3wts sweep
# must pass), timed at 8 x 512, 16 x 512, 4 x 1024, 2 x 1024 and 1 x 2048 with fa3 as the
# peer; then both knobs' build: racecheck and synccheck on fa3wts' sweep. next-r41c.sh
# follows with the knobs' remaining checks.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r41b; mkdir -p $L; KNOBS="-DFA3WTS_WG_STORE=1 -DFA3WTS_ALIGN_END=1"
pack() { tar czf $OUT/r41b.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
el "trial fa3wts: the tree, each knob, both"
timeout $(( $(left) - 150 )) bash tools/gpu-trial.sh --build $B --out $L/trial-fa3wts --op attention --variant fa3wts --peer fa3 \
  --shape heads=32,kv=8,hd=128,len=512,seqs=8 --shape heads=32,kv=8,hd=128,len=512,seqs=16 \
  --shape heads=32,kv=8,hd=128,len=1024,seqs=4 --shape heads=32,kv=8,hd=128,len=1024,seqs=2 \
  --shape heads=32,kv=8,hd=128,len=2048 -- "" -DFA3WTS_WG_STORE=1 -DFA3WTS_ALIGN_END=1 "$KNOBS" 2>&1 | tee $L/trial-console.txt | tail -14; pack
el "both knobs' build: racecheck, synccheck"
cd $B && BASE=$(sed -n 's/^CPPFLAGS = //p' Makefile)
rm -f gpu/attention_fa3.o; make -j16 CPPFLAGS="$BASE $KNOBS" llama-diff > $L/build-knob.log 2>&1 || { tail -5 $L/build-knob.log; pack; exit 1; }
for tool in racecheck synccheck; do [ $(left) -gt 50 ] || break
  timeout $(( $(left) - 30 < 120 ? $(left) - 30 : 120 )) /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fa3wts --dtype bf16 > $L/san-fa3wts-$tool-knob.txt 2>&1
  echo "fa3wts $tool (knobs) exit $?: $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L/san-fa3wts-$tool-knob.txt); cases passed $(grep -c '^PASS' $L/san-fa3wts-$tool-knob.txt)"; pack; done
rm -f gpu/attention_fa3.o; make -j16 llama-diff > /dev/null 2>&1; pack; el done
