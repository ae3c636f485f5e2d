# run 42, call A (session 37 or later; any sm_90 card, fresh or warm with REUSE=1): what
# FA3WTS_ALIGN_END still owes before fa3wts may take it as its value. Run 42 (an H200) timed
# it 2.8-11% faster than the tree at 8 x 512, 16 x 512, 4 x 1024 and 2 x 1024 and 2.9%
# slower at 1 x 2048, one sample each, with fa3 not timed (the trial's time ran out); it
# passed the sweeps (bf16, f16), test_gpu_ops' fa3wts case, racecheck, synccheck and the
# bf16 shape check; its fp16 shape check was cut by the call's end. Here: that fp16 shape
# check, then fa3, fa3wts (the tree) and fa3wts built with the knob, alternating, three
# times each at 1 x 2048, 2, 3 and 4 x 1024, 8 and 16 x 512: whether the knob wins where the
# default runs fa3wts (at most 3 of fa3wt's waves) and whether, with it, fa3wts beats fa3
# past 3 waves (FA3WT_MAX_WAVES).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r42a; mkdir -p $L; KNOB=-DFA3WTS_ALIGN_END=1
pack() { tar czf $OUT/r42a.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && BASE=$(sed -n 's/^CPPFLAGS = //p' Makefile)
rm -f gpu/attention_fa3.o; make -j16 CPPFLAGS="$BASE $KNOB" llama-diff > $L/build-knob.log 2>&1 || { tail -5 $L/build-knob.log; pack; exit 1; }
cp llama-diff $L/llama-diff-knob
el "shape check, fp16, $KNOB"; cd $SRC
OUT=$L/shape timeout $(( $(left) - 170 < 300 ? $(left) - 170 : 300 )) bash tools/gpu-shape-check.sh --variants fa3wts --precisions fp16 --no-faults > $L/shape-check.txt 2>&1; echo "shape check exit $?"; tail -3 $L/shape-check.txt | cut -c1-300
rm -f $L/shape/*.safetensors; pack
cd $B && rm -f gpu/attention_fa3.o && make -j16 llama-diff > $L/build-tree.log 2>&1 || { tail -5 $L/build-tree.log; pack; exit 1; }
el "timing: fa3, fa3wts, fa3wts with $KNOB, alternating"
for sh in len=2048 len=1024,seqs=2 len=1024,seqs=3 len=1024,seqs=4 len=512,seqs=8 len=512,seqs=16; do for r in 1 2 3; do
  for v in fa3 fa3wts knob; do [ $(left) -gt 15 ] || break 3
    bin=./llama-diff var=$v; [ $v = knob ] && bin=$L/llama-diff-knob var=fa3wts; n=$((n+1))
    timeout 30 $bin ops --op attention --variant $var --dtype bf16 --shape heads=32,kv=8,hd=128,$sh --perf > $L/perf-$n-$v.txt 2>&1
    echo "$v $sh: $(grep -hE '^(PASS|FAIL)' $L/perf-$n-$v.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us|[0-9.]+ TFLOP/s' | tr '\n' ' ')"
  done; done; done | tee $L/timing.txt; pack; el done
