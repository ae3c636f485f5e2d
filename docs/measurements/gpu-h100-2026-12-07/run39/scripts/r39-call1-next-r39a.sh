# run 39, call A (session 33; any sm_90 card, fresh or warm with REUSE=1): attention fa3wt at
# the model level, and where it pays by length. fa3 and fa3wt timed at one sequence of 512,
# 768, 1024, 1536, 2048 and at 2 x 1024, 4 x 1024, 8 x 512 (the threshold of a default by
# length); both prefill rows with fa3 and fa3wt in turn, twice each, row 0's logits dumped
# and compared byte for byte (fa3wt's bits are fa3's); then gpu-shape-check.sh (2 layers of
# Llama-3-8B's shapes, 700 tokens, every stage against the float64 reference and the
# same-precision verdict) with fa3 and fa3wt at bf16 and fp16.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r39a; mkdir -p $L
pack() { tar czf $OUT/r39a.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
( [ -d /tmp/llama3-8b-random ] || python3 $SRC/tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 ) &
MK=$!
el "fa3 and fa3wt by length"
for sh in len=512 len=768 len=1024 len=1536 len=2048 len=1024,seqs=2 len=1024,seqs=4 len=512,seqs=8 len=512,seqs=16; do for v in fa3 fa3wt fa3 fa3wt; do [ $(left) -gt 300 ] || break 2
  timeout 30 ./llama-diff ops --op attention --variant $v --dtype bf16 --shape heads=32,kv=8,hd=128,$sh --perf > $L/perf-$v-$sh.txt 2>&1; echo "$v $sh: $(grep -hE '^(PASS|FAIL)' $L/perf-$v-$sh.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us|[0-9.]+ TFLOP/s' | tr '\n' ' ')"; mv $L/perf-$v-$sh.txt $L/perf-$v-$sh-$RANDOM.txt; done; done; pack
wait $MK; el "prefill rows"
for k in fa3 fa3wt fa3 fa3wt; do [ $(left) -gt 200 ] && [ -d /tmp/llama3-8b-random ] || break
  n=$((n+1)); timeout $(( $(left) - 150 )) ./bench/gpu_bench --model /tmp/llama3-8b-random --only 0,1 --no-profile --kernels attention=$k --dump-logits $L/logits-$n-$k.bin --json $L/rows-$n-$k.json > $L/rows-$n-$k.txt 2>&1; echo "rows $k exit $?: $(grep -E '^  prefill' $L/rows-$n-$k.txt | sed -E 's/ +/ /g' | cut -c1-80 | tr '\n' ';')"; done
cmp $L/logits-1-fa3.bin $L/logits-2-fa3wt.bin && echo "row 0 logits: fa3wt's bytes are fa3's ($(stat -c %s $L/logits-1-fa3.bin) bytes)"; cmp $L/logits-1-fa3.bin $L/logits-3-fa3.bin && echo "fa3 twice: the same bytes"; rm -f $L/logits-*.bin; pack
el "shape check"; cd $SRC
[ $(left) -gt 60 ] && OUT=$L/shape timeout $(( $(left) - 15 )) bash tools/gpu-shape-check.sh --variants fa3wt,fa3 --precisions bf16,fp16 --no-faults > $L/shape-check.txt 2>&1; echo "shape check exit $?"; tail -8 $L/shape-check.txt | cut -c1-300
rm -f $L/shape/*.safetensors; pack; el done
