# run 27, call C (session 22): attention fa3p's first run on a GPU: fa3's prefill with
# FlashAttention-3's overlap inside a warpgroup (tile t's Q K^T and tile t-1's P V issued
# together, t's softmax while P V runs; one block an SM at 189 registers). It must give
# fa3's bits (test_gpu_ops' test_fa3p_is_fa3, in the helpers case, over the sweep's shapes
# and Llama-3-8B's), pass its sweeps at bf16 and f16 and the three sanitizers, then
# op-level timing against fa3 (1 x 2048 and 8 x 512 at 32/8 heads, hd 128), the prefill
# rows with attention=fa3p against the defaults in the same call, and the Llama-3-8B-shape
# check through it. Fits a warm machine after call A (REUSE=1) or a fresh one.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r27c; mkdir -p $L
pack() { tar czf $OUT/r27c.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu tests/test_gpu_ops > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el "fa3 native, fa3p's bits against fa3's"
CK_RUN_SUITE=gpu_ops CK_RUN_CASE=helpers timeout 150 ./tests/test_gpu_ops > $L/test_gpu_ops-helpers.log 2>&1; echo "test_gpu_ops helpers exit $?"; grep -E "^fa3:|^[0-9]+%|:[EF]:" $L/test_gpu_ops-helpers.log | cut -c1-240 | head -6; pack
el "fa3p sweeps"
for d in bf16 f16; do timeout 90 ./llama-diff ops --op attention --variant fa3p --dtype $d > $L/ops-fa3p-$d.txt 2>&1; echo "sweep fa3p $d exit $?"; grep -h "planned" $L/ops-fa3p-$d.txt; grep -m4 "^FAIL" $L/ops-fa3p-$d.txt | cut -c1-220; done; pack
el "op timing, fa3 then fa3p"
for sh in len=2048 len=512,seqs=8; do for v in fa3 fa3p; do timeout 150 ./llama-diff ops --op attention --variant $v --dtype bf16 --shape heads=32,kv=8,hd=128,$sh --perf > $L/perf-$v-$sh.txt 2>&1; echo "$v $sh: $(grep -hE '^(PASS|FAIL)' $L/perf-$v-$sh.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us|[0-9.]+ TFLOP/s' | tr '\n' ' ')"; done; done; pack
el "prefill rows: defaults, fa3p, twice in turn"; wait
for k in 1 2; do for n in tree fa3p; do
  [ $(left) -gt ${ROW_RESERVE:-230} ] || break 2
  f=; [ $n = fa3p ] && f="--kernels attention=fa3p"
  timeout 80 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 01 $f --json $L/bench-$n-$k.json > $L/bench-$n-$k.txt 2>&1; echo "$n $k exit $?"; grep -E "^  prefill" $L/bench-$n-$k.txt | cut -c1-110
done; done; pack
el sanitizers
for tool in memcheck racecheck synccheck; do [ $(left) -gt 120 ] || break; timeout 60 /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fa3p --dtype bf16 > $L/san-fa3p-$tool.txt 2>&1; echo "fa3p $tool exit $?"; grep -m1 -E "ERROR SUMMARY|RACECHECK SUMMARY" $L/san-fa3p-$tool.txt; done; pack
el "shape check fa3p"; cd $SRC
( OUT=$L/shape timeout $(( $(left) - 8 )) bash tools/gpu-shape-check.sh --variants fa3p --precisions bf16,fp16 --tokens 516 --no-faults > $L/shape.txt 2>&1; echo "exit $?" >> $L/shape.txt; rm -f $L/shape/*.safetensors )
grep -E "^attention=|^exit|agree|stages" $L/shape.txt | cut -c1-240 | head -12; pack
el done
