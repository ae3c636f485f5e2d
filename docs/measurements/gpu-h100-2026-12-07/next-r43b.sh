# run 43, call B (session 38 or later; any sm_90 card, fresh or warm with REUSE=1): fa3wts'
# knob FA3WTS_LPT (written in session 37 without a GPU; the same bits): the work tiles in a
# longest-first list schedule computed on the host instead of the snake order, which
# tools/fa3wts-balance.py puts at 0.947 of the snake order's time at 1 x 2048 (run 42's fit;
# the 350 TFLOP/s there if it holds) and level elsewhere. gpu-trial.sh over the
# tree and the knob (each build's sweep must pass), timed at 1 x 2048, 1 x 1536, 2 and
# 4 x 1024, 8 and 16 x 512 with fa3 as the peer; then the knob's build: test_gpu_ops'
# fa3wts case (fa3's bits at its own grid and capped at 3 blocks, every block many work
# tiles from the schedule), racecheck and synccheck. If it wins: alternate it with the tree
# three times at 1 x 2048 (next-r42a.sh's loop, run43/scripts/r43-call1-next-r42a.sh) and
# the shape checks (run42/scripts/r42-call3-4-next-r41c.sh with KNOBS=-DFA3WTS_LPT=1).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r43b; mkdir -p $L; KNOB=-DFA3WTS_LPT=1
pack() { tar czf $OUT/r43b.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
el "trial fa3wts: the tree, $KNOB"
timeout $(( $(left) - 330 )) bash tools/gpu-trial.sh --build $B --out $L/trial-fa3wts --op attention --variant fa3wts --peer fa3 \
  --shape heads=32,kv=8,hd=128,len=2048 --shape heads=32,kv=8,hd=128,len=1536 --shape heads=32,kv=8,hd=128,len=1024,seqs=2 \
  --shape heads=32,kv=8,hd=128,len=1024,seqs=4 --shape heads=32,kv=8,hd=128,len=512,seqs=8 \
  --shape heads=32,kv=8,hd=128,len=512,seqs=16 -- "" "$KNOB" 2>&1 | tee $L/trial-console.txt | tail -10; pack
el "$KNOB: test_gpu_ops fa3wts, racecheck, synccheck"
cd $B && BASE=$(sed -n 's/^CPPFLAGS = //p' Makefile)
rm -f gpu/attention_fa3.o; make -j16 CPPFLAGS="$BASE $KNOB" llama-diff tests/test_gpu_ops > $L/build-knob.log 2>&1 || { tail -5 $L/build-knob.log; pack; exit 1; }
CK_RUN_CASE=fa3wts timeout 150 ./tests/test_gpu_ops > $L/test_gpu_ops-fa3wts.log 2>&1
echo "test_gpu_ops fa3wts ($KNOB) exit $?: $(grep -E '^[0-9]+%' $L/test_gpu_ops-fa3wts.log)"; grep -E ':[EF]:' $L/test_gpu_ops-fa3wts.log | cut -c1-240 | head -4; pack
for tool in racecheck synccheck; do [ $(left) -gt 60 ] || break
  timeout $(( $(left) - 30 < 80 ? $(left) - 30 : 80 )) /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fa3wts --dtype bf16 > $L/san-$tool.txt 2>&1
  echo "fa3wts $tool ($KNOB) exit $?: $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L/san-$tool.txt); cases passed $(grep -c '^PASS' $L/san-$tool.txt)"; pack; done
rm -f gpu/attention_fa3.o; make -j16 llama-diff tests/test_gpu_ops > /dev/null 2>&1; pack; el done
