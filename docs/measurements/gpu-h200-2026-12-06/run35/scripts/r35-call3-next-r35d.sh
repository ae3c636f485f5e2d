# run 35, call D (session 29), after next-r35c.sh has shown fa3wp finishes and passes:
# fa3wp's consumers taking turns to issue their MMAs (-DFA3WP_PINGPONG=1, FlashAttention-3's
# "ping-pong": one warpgroup's softmax under the other's MMAs; written in session 28 without
# a GPU, its turns checked on the CPU by ws_schedule's pingpong: issued in turn, no deadlock
# with the stages' barriers, no arrival left). Through gpu-trial.sh over the tree and the
# knob: each build's fa3wp sweep (bf16), fa3wp at 1 x 2048 and 8 x 512 (32/8 heads, hd 128)
# with fa3 the peer, the prefill rows with attention=fa3wp; then the knob's build: fa3wp's
# f16 sweep, its bits against fa3's (test_gpu_ops' fa3w case), racecheck and synccheck.
# Fits a fresh machine or a warm one (REUSE=1).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r35d; mkdir -p $L
pack() { tar czf $OUT/r35d.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
( cd $B && make -j16 bench-gpu tests/test_gpu_ops > $L/build-more.log 2>&1 ) || { tail -20 $L/build-more.log; pack; exit 1; }
wait
el "trial fa3wp: the tree, FA3WP_PINGPONG=1"
timeout $(( $(left) - 200 )) bash tools/gpu-trial.sh --build $B --out $L/trial-fa3wp --op attention --variant fa3wp \
  --shape heads=32,kv=8,hd=128,len=2048 --shape heads=32,kv=8,hd=128,len=512,seqs=8 --peer fa3 \
  --step "--model /tmp/llama3-8b-random --only 01 --sustain 0 --kernels attention=fa3wp" -- "" -DFA3WP_PINGPONG=1 2>&1 | tee $L/trial-console.txt | tail -14; pack
el "the knob's build: fa3wp's f16 sweep, its bits against fa3's, racecheck and synccheck"
cd $B && BASE=$(sed -n 's/^CPPFLAGS = //p' Makefile)
rm -f gpu/*.o; make -j16 CPPFLAGS="$BASE -DFA3WP_PINGPONG=1" llama-diff tests/test_gpu_ops > $L/build-knob.log 2>&1 || { tail -5 $L/build-knob.log; pack; exit 1; }
timeout 90 ./llama-diff ops --op attention --variant fa3wp --dtype f16 > $L/ops-fa3wp-f16-knob.txt 2>&1; echo "f16 sweep exit $?"; grep -h "planned" $L/ops-fa3wp-f16-knob.txt
CK_RUN_SUITE=gpu_ops CK_RUN_CASE=fa3w timeout 200 ./tests/test_gpu_ops > $L/test_gpu_ops-fa3w-knob.log 2>&1; echo "test_gpu_ops fa3w (knob) exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_ops-fa3w-knob.log | cut -c1-240 | head -6; pack
for tool in racecheck synccheck; do [ $(left) -gt 50 ] || break
  timeout $(( $(left) - 20 < 90 ? $(left) - 20 : 90 )) /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fa3wp --dtype bf16 > $L/san-fa3wp-$tool-knob.txt 2>&1
  echo "fa3wp $tool (knob) exit $?: $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L/san-fa3wp-$tool-knob.txt)"; done; pack
rm -f gpu/*.o; make -j16 CPPFLAGS="$BASE" llama-diff tests/test_gpu_ops > $L/build-tree.log 2>&1 || tail -5 $L/build-tree.log; pack
el done
