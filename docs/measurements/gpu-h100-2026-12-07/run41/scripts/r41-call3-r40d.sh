# run 40, call D: the default prefill choosing fa3wts (was fa3wt) or fa3; run 39 call 2 script otherwise
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r40d; mkdir -p $L
pack() { tar czf $OUT/r40d.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 tests/test_gpu_ops bench-gpu > $L/build-tests.log 2>&1 || { tail -20 $L/build-tests.log; pack; exit 1; }
( [ -d /tmp/llama3-8b-random ] || python3 $SRC/tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 ) &
MK=$!
KL=$B/bench/libllamaref_ktrace.so
for sh in len=2048 len=512,seqs=8; do n=$((n+1)); timeout 60 bash $SRC/tools/ktrace.sh --lib $KL -o $L/default-$n.jsonl -- ./llama-diff ops --op attention --variant fdt --dtype bf16 --shape heads=32,kv=8,hd=128,$sh > $L/ktrace-default-$n.txt 2>&1
  echo "traced the default at $sh exit $?: kernels $(grep -o '"name":"[^"]*attention[^"]*"' $L/default-$n.jsonl | sort | uniq -c | sed -E 's/"name":"//; s/"$//' | tr '\n' ';' | cut -c1-300)"; gzip -f $L/default-$n.jsonl; done
for dt in bf16 f16; do timeout 90 ./llama-diff ops --op attention --variant fdt --dtype $dt > $L/ops-fdt-$dt.txt 2>&1; echo "fdt $dt exit $?: $(grep -h planned $L/ops-fdt-$dt.txt)"; grep -hE '^FAIL' $L/ops-fdt-$dt.txt | head -3 | cut -c1-200; done; pack
wait $MK; el "prefill rows"
for k in fdt fa3 fdt fa3; do [ $(left) -gt 300 ] && [ -d /tmp/llama3-8b-random ] || break
  n=$((n+1)); timeout 60 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 0,1 --no-profile --kernels attention=$k --dump-logits $L/logits-$n-$k.bin --json $L/rows-$n-$k.json > $L/rows-$n-$k.txt 2>&1; echo "rows $k exit $?: $(grep -E '^  prefill' $L/rows-$n-$k.txt | sed -E 's/ +/ /g' | cut -c1-80 | tr '\n' ';')"; done
cmp $L/logits-3-fdt.bin $L/logits-4-fa3.bin && echo "row 0 logits: the default's bytes are fa3's ($(stat -c %s $L/logits-3-fdt.bin) bytes)"; rm -f $L/logits-*.bin; pack
el "test_gpu_ops, case fa3w"
CK_RUN_CASE=fa3w timeout $(( $(left) - 10 )) ./tests/test_gpu_ops > $L/test_gpu_ops.log 2>&1; echo "test_gpu_ops fa3w exit $?: $(grep -E '^[0-9]+%' $L/test_gpu_ops.log)"; grep -E ':[EF]:' $L/test_gpu_ops.log | cut -c1-240 | head -6; tail -2 $L/test_gpu_ops.log | cut -c1-200
pack; el done
