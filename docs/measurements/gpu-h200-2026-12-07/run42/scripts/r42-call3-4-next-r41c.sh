# run 41, call C (after next-r41b.sh; any sm_90 card, fresh or warm with REUSE=1): the rest of
# what fa3wts' knobs (FA3WTS_WG_STORE, FA3WTS_ALIGN_END; both on, KNOBS to change) owe before
# a default may take them: test_gpu_ops' fa3wts case (fa3's bits at its own grid and capped
# at 3 blocks, every block many work tiles), the f16 sweep, then gpu-shape-check.sh with
# fa3wts at bf16 and fp16 (the model-level check; about 250 s each in run 41, so a call
# rarely holds both after test_gpu_ops: PREC=fp16 ONLY_SHAPE=1 is the second call).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r41c; mkdir -p $L; KNOBS=${KNOBS:-"-DFA3WTS_WG_STORE=1 -DFA3WTS_ALIGN_END=1"}
pack() { tar czf $OUT/r41c.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && BASE=$(sed -n 's/^CPPFLAGS = //p' Makefile)
rm -f gpu/attention_fa3.o; make -j16 CPPFLAGS="$BASE $KNOBS" llama-diff tests/test_gpu_ops > $L/build-knob.log 2>&1 || { tail -5 $L/build-knob.log; pack; exit 1; }
if [ -z "${ONLY_SHAPE:-}" ]; then
el "test_gpu_ops fa3wts ($KNOBS)"
CK_RUN_CASE=fa3wts timeout 240 ./tests/test_gpu_ops > $L/test_gpu_ops-fa3wts-knob.log 2>&1; echo "test_gpu_ops fa3wts (knobs) exit $?: $(grep -E '^[0-9]+%' $L/test_gpu_ops-fa3wts-knob.log)"; grep -E ':[EF]:' $L/test_gpu_ops-fa3wts-knob.log | cut -c1-240 | head -4; pack
timeout 60 ./llama-diff ops --op attention --variant fa3wts --dtype f16 > $L/ops-fa3wts-f16-knob.txt 2>&1; echo "fa3wts f16 (knobs) exit $?: $(grep -h planned $L/ops-fa3wts-f16-knob.txt)"; pack
fi
el "shape check"; cd $SRC
[ $(left) -gt 60 ] && OUT=$L/shape timeout $(( $(left) - 40 )) bash tools/gpu-shape-check.sh --variants fa3wts --precisions ${PREC:-bf16,fp16} --no-faults > $L/shape-check.txt 2>&1; echo "shape check exit $?"; tail -6 $L/shape-check.txt | cut -c1-300
rm -f $L/shape/*.safetensors; cd $B && rm -f gpu/attention_fa3.o && make -j16 llama-diff tests/test_gpu_ops > /dev/null 2>&1; pack; el done
