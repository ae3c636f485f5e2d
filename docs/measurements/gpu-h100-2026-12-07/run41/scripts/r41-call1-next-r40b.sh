# run 40, call B (session 35 or later; any sm_90 card, fresh or warm with REUSE=1): what
# attention fa3wts still owes before the default's prefill may take it. Run 40 call 1 (H100,
# session 34) ran its sweeps (70 of 70 at bf16 and f16), the tracer, memcheck (clean),
# racecheck (69 of 70 cases before its timeout, no hazard) and both prefill rows (row 0's
# logits fa3's bytes), and timed it at 1 x 2048 (106.0 us against fa3wt's 110.9, fa3's
# 122.8) and 8 x 512 (86.7 against fa3's 84.9). Here: test_gpu_ops' fa3wts case (its bits
# against fa3's at its own grid and capped at 3 blocks); racecheck and synccheck whole; the
# timings at the shapes run 39 timed that call 1 did not (fa3, fa3wt, fa3wts twice); then
# gpu-shape-check.sh with fa3wts at bf16 and fp16 (the model-level check at both).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r40b; mkdir -p $L
pack() { tar czf $OUT/r40b.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 tests/test_gpu_ops > $L/build-tests.log 2>&1 || { tail -20 $L/build-tests.log; pack; exit 1; }
el "test_gpu_ops, case fa3wts"
CK_RUN_CASE=fa3wts timeout 240 ./tests/test_gpu_ops > $L/test_gpu_ops-fa3wts.log 2>&1; echo "test_gpu_ops fa3wts exit $?: $(grep -E '^[0-9]+%' $L/test_gpu_ops-fa3wts.log)"; grep -E ':[EF]:' $L/test_gpu_ops-fa3wts.log | cut -c1-240 | head -4; pack
el sanitizers
for tool in racecheck synccheck; do [ $(left) -gt 200 ] || break
  timeout 120 /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fa3wts --dtype bf16 > $L/san-fa3wts-$tool.txt 2>&1
  echo "fa3wts $tool exit $?: $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L/san-fa3wts-$tool.txt); cases passed $(grep -c '^PASS' $L/san-fa3wts-$tool.txt)"; pack; done
el timing
for sh in len=1024,seqs=4 len=512,seqs=16 len=1024,seqs=2 len=1536 len=1024; do for v in fa3 fa3wt fa3wts fa3wts; do [ $(left) -gt 330 ] || break 2
  n=$((n+1)); timeout 30 ./llama-diff ops --op attention --variant $v --dtype bf16 --shape heads=32,kv=8,hd=128,$sh --perf > $L/perf-$n-$v.txt 2>&1; echo "$v $sh: $(grep -hE '^(PASS|FAIL)' $L/perf-$n-$v.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us|[0-9.]+ TFLOP/s' | tr '\n' ' ')"; done; done; pack
el "shape check"; cd $SRC
[ $(left) -gt 60 ] && OUT=$L/shape timeout $(( $(left) - 15 )) bash tools/gpu-shape-check.sh --variants fa3wts --precisions bf16,fp16 --no-faults > $L/shape-check.txt 2>&1; echo "shape check exit $?"; tail -8 $L/shape-check.txt | cut -c1-300
rm -f $L/shape/*.safetensors; pack; el done
