# run 43, call A (session 38 or later; any sm_90 card, an H200 first; fresh or warm with
# REUSE=1): the default's prefill with session 37's values (end-aligned work tiles, and fa3wts
# where fa3wt's grid is at most FA3WT_MAX_WAVES = 12 waves, was 3), the chooser's checks run
# 41 call 3 ran for the last change: the kernel tracer on the default (fdt) at 1 x 2048,
# 8 x 512 and 16 x 512 (fa3wts expected; 11.6 waves at most) and 32 x 512 (23 waves: fa3);
# the default's sweeps at bf16 and f16; the prefill rows under the default and --kernels
# attention=fa3, alternating, three times each, row 0's logits against fa3's bytes (on an
# H200: 1 x 2048's repeats, run 42's one sample at 1.24); then test_gpu_ops' fa3w case (the
# default's prefill against fa3 on each side of the bound; 257 s in run 41) and, if time is
# left, its fa3wts case (else a warm call's: CK_RUN_CASE=fa3wts ./tests/test_gpu_ops).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r43a; mkdir -p $L
pack() { tar czf $OUT/r43a.tgz --exclude='*.bin' -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
( [ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 ) &
MK=$!
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 tests/test_gpu_ops bench-gpu > $L/build-tests.log 2>&1 || { tail -20 $L/build-tests.log; pack; exit 1; }
KL=$B/bench/libllamaref_ktrace.so
for sh in len=2048 len=512,seqs=8 len=512,seqs=16 len=512,seqs=32; do n=$((n+1))
  timeout 60 bash $SRC/tools/ktrace.sh --lib $KL -o $L/default-$n.jsonl -- ./llama-diff ops --op attention --variant fdt --dtype bf16 --shape heads=32,kv=8,hd=128,$sh > $L/ktrace-default-$n.txt 2>&1
  echo "traced the default at $sh exit $?: kernels $(grep -o '"name":"[^"]*attention[^"]*"' $L/default-$n.jsonl | sort | uniq -c | sed -E 's/"name":"//; s/"$//' | tr '\n' ';' | cut -c1-300)"; gzip -f $L/default-$n.jsonl; done
for dt in bf16 f16; do timeout 90 ./llama-diff ops --op attention --variant fdt --dtype $dt > $L/ops-fdt-$dt.txt 2>&1; echo "fdt $dt exit $?: $(grep -h planned $L/ops-fdt-$dt.txt)"; grep -hE '^FAIL' $L/ops-fdt-$dt.txt | head -3 | cut -c1-200; done; pack
wait $MK; el "prefill rows"
for r in 1 2 3; do for k in fdt fa3; do [ $(left) -gt 45 ] && [ -d /tmp/llama3-8b-random ] || break 2
  timeout 60 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 0,1 --no-profile --kernels attention=$k --dump-logits $L/logits-$r-$k.bin --json $L/rows-$r-$k.json > $L/rows-$r-$k.txt 2>&1
  echo "rows $k $r exit $?: $(grep -E '^  prefill' $L/rows-$r-$k.txt | sed -E 's/ +/ /g' | cut -c1-80 | tr '\n' ';')"; done
  cmp -s $L/logits-$r-fdt.bin $L/logits-$r-fa3.bin && echo "row 0 logits: the default's bytes are fa3's" || echo "row 0 logits: DIFFER"; rm -f $L/logits-$r-*.bin; done
pack
for c in fa3w fa3wts; do [ $(left) -gt 100 ] || break; el "test_gpu_ops, case $c"
  CK_RUN_CASE=$c timeout $(( $(left) - 10 )) ./tests/test_gpu_ops > $L/test_gpu_ops-$c.log 2>&1; echo "test_gpu_ops $c exit $?: $(grep -E '^[0-9]+%' $L/test_gpu_ops-$c.log)"; grep -E ':[EF]:' $L/test_gpu_ops-$c.log | cut -c1-240 | head -6; pack; done
el done
