# run 42, call C (session 37 or later; any sm_90 card, fresh or warm with REUSE=1): attention
# fa3wts' third knob, FA3WTS_PIPE (written in session 36 without a GPU; the same bits): each
# consumer warpgroup's key tiles in fa3p's step (S_t issued with P_{t-1} V_{t-1}, S_t's
# softmax under that P V). gpu-trial.sh over the tree, the knob, and the knob with
# FA3WTS_ALIGN_END (each build's sweep must pass), timed at 1 x 2048, 2 and 4 x 1024, 8 and
# 16 x 512 with fa3 as the peer; then the knob's build: racecheck, synccheck and test_gpu_ops'
# fa3wts case (fa3's bits at its own grid and capped at 3 blocks). If it wins: its f16 sweep
# and the shape checks (run42/scripts/r42-call3-4-next-r41c.sh with KNOBS=-DFA3WTS_PIPE=1).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r42c; mkdir -p $L; KNOB=-DFA3WTS_PIPE=1
pack() { tar czf $OUT/r42c.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
el "trial fa3wts: the tree, $KNOB, with FA3WTS_ALIGN_END"
timeout $(( $(left) - 300 )) bash tools/gpu-trial.sh --build $B --out $L/trial-fa3wts --op attention --variant fa3wts --peer fa3 \
  --shape heads=32,kv=8,hd=128,len=2048 --shape heads=32,kv=8,hd=128,len=1024,seqs=2 \
  --shape heads=32,kv=8,hd=128,len=1024,seqs=4 --shape heads=32,kv=8,hd=128,len=512,seqs=8 \
  --shape heads=32,kv=8,hd=128,len=512,seqs=16 -- "" "$KNOB" "$KNOB -DFA3WTS_ALIGN_END=1" 2>&1 | tee $L/trial-console.txt | tail -12; pack
el "$KNOB: racecheck, synccheck, test_gpu_ops fa3wts"
cd $B && BASE=$(sed -n 's/^CPPFLAGS = //p' Makefile)
rm -f gpu/attention_fa3.o; make -j16 CPPFLAGS="$BASE $KNOB" llama-diff tests/test_gpu_ops > $L/build-knob.log 2>&1 || { tail -5 $L/build-knob.log; pack; exit 1; }
for tool in racecheck synccheck; do [ $(left) -gt 60 ] || break
  timeout 80 /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fa3wts --dtype bf16 > $L/san-$tool.txt 2>&1
  echo "fa3wts $tool ($KNOB) exit $?: $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L/san-$tool.txt); cases passed $(grep -c '^PASS' $L/san-$tool.txt)"; pack; done
[ $(left) -gt 30 ] && CK_RUN_CASE=fa3wts timeout $(( $(left) - 20 )) ./tests/test_gpu_ops > $L/test_gpu_ops-fa3wts.log 2>&1
echo "test_gpu_ops fa3wts ($KNOB) exit $?: $(grep -E '^[0-9]+%' $L/test_gpu_ops-fa3wts.log)"; grep -E ':[EF]:' $L/test_gpu_ops-fa3wts.log | cut -c1-240 | head -4
rm -f gpu/attention_fa3.o; make -j16 llama-diff tests/test_gpu_ops > /dev/null 2>&1; pack; el done
