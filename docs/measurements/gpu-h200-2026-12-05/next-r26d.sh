# run 26, call D (prepared in session 19): FD_PIPE, the one fd knob that gained in run 25's
# call D (with FD_HEAD_MINOR: batch 1 / 32 with graphs 4.552 / 6.842 ms against the tree's
# 4.647 / 6.949), alone and with FD_HEAD_MINOR against the tree in one trial (each build's
# sweep first); then, on the FD_PIPE build alone, the three sanitizers on fd's bf16 sweep
# and the Llama-3-8B-shape check with decode steps (fd's split kernel at head_dim 128) at
# bf16 and fp16. Session 20 added META_EARLY (the split and merge kernels read the step's
# metadata and plan their chunks before their PDL wait) on top of FD_PIPE as a fourth build;
# if it wins, its own check is test_gpu_forward's pdl_changes_no_bit on a build with it,
# the last step here where time is left.
# All pass and faster: FD_PIPE (FD_MINB 5) becomes fd's default, and
# FD_HEAD_MINOR and SP_FIT (no gain in run 25) are removed (FD_FUSE_MERGE, which lost, was
# removed in session 20).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r26d; mkdir -p $L
pack() { tar czf $OUT/r26d.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
wait; cd $SRC
el "trial fd FD_PIPE"; timeout 300 bash tools/gpu-trial.sh --build $B --out $L/trial-fd --op attention --variant fd \
  --shape heads=32,kv=8,hd=128,past=1024,seqs=8 --shape heads=32,kv=8,hd=128,past=1024 \
  --step "--model /tmp/llama3-8b-random --only 45 --graphs --steps 32" -- "" "-DFD_PIPE=1 -DFD_MINB=5" \
  "-DFD_HEAD_MINOR=1 -DFD_PIPE=1 -DFD_MINB=5" "-DFD_PIPE=1 -DFD_MINB=5 -DMETA_EARLY=1" 2>&1 | tee $L/trial-fd-console.txt | tail -14; pack
el "FD_PIPE build: sanitizers, shape check"
BASE=$(sed -n 's/^CPPFLAGS = //p' $B/Makefile); rm -f $B/gpu/*.o
make -C $B -j16 CPPFLAGS="$BASE -DFD_PIPE=1 -DFD_MINB=5" llama-diff > $L/build-pipe.log 2>&1 || { tail -20 $L/build-pipe.log; pack; exit 1; }
for tool in memcheck racecheck synccheck; do timeout 60 /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 $B/llama-diff ops --op attention --variant fd --dtype bf16 > $L/san-$tool.txt 2>&1; echo "$tool exit $?"; grep -m1 -E "ERROR SUMMARY|RACECHECK SUMMARY" $L/san-$tool.txt; done; pack
( OUT=$L/shape timeout $(( $(left) - 8 )) bash tools/gpu-shape-check.sh --variants fd --kernels linear=auto --precisions bf16,fp16 --tokens 516 --decode 4 --no-faults > $L/shape.txt 2>&1; echo "exit $?" >> $L/shape.txt; rm -f $L/shape/*.safetensors )
grep -E "^attention=|^exit" $L/shape.txt | cut -c1-240 | head -8; pack
if [ $(left) -gt 120 ]; then
  el "META_EARLY build: test_gpu_forward"; rm -f $B/gpu/*.o
  make -C $B -j16 CPPFLAGS="$BASE -DFD_PIPE=1 -DFD_MINB=5 -DMETA_EARLY=1" tests/test_gpu_forward > $L/build-early.log 2>&1 && \
  ( cd $B && timeout $(( $(left) - 10 )) ./tests/test_gpu_forward > $L/test_gpu_forward-early.log 2>&1; echo "test_gpu_forward (META_EARLY) exit $?" ); grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_forward-early.log | head -4; pack
fi
el done
