# run 40, call A (session 34 or later; any sm_90 card, fresh or warm with REUSE=1): attention
# fa3wts' first run: fa3wt made persistent (gpu/attention_fa3.cu, written in session 33
# without a GPU; its hand-over is tools/model-fa3-layout.py's ws_schedule_tma with persist;
# since session 34 each block takes a work tile from each row of the grid, every other row
# backwards).
# A hang (a barrier count or an mbarrier parity wrong) is stopped by each command's timeout.
# Here: its sweeps at bf16 and f16; the kernel tracer on one 8 x 512 call (which kernel ran:
# attention_fa3wts_kernel, one block an SM); fa3, fa3wt and fa3wts timed at run 39's shapes;
# test_gpu_ops' fa3wts case (its bits against fa3's, at its own grid and capped at 3 blocks);
# the sanitizers on its sweep; then both prefill rows with it against fa3, row 0's logits
# compared byte for byte.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r40a; mkdir -p $L
pack() { tar czf $OUT/r40a.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 tests/test_gpu_ops bench-gpu > $L/build-tests.log 2>&1 || { tail -20 $L/build-tests.log; pack; exit 1; }
( [ -d /tmp/llama3-8b-random ] || python3 $SRC/tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 ) &
MK=$!
KL=$B/bench/libllamaref_ktrace.so
el "fa3wts' sweeps"
for dt in bf16 f16; do timeout 60 ./llama-diff ops --op attention --variant fa3wts --dtype $dt > $L/ops-fa3wts-$dt.txt 2>&1; rc=$?; echo "fa3wts $dt exit $rc: $(grep -h planned $L/ops-fa3wts-$dt.txt)"; grep -hE '^FAIL' $L/ops-fa3wts-$dt.txt | head -3 | cut -c1-200
  [ $rc = 124 ] && { echo "fa3wts hung: the last lines"; tail -3 $L/ops-fa3wts-$dt.txt | cut -c1-200; pack; el done; exit 1; }; done; pack
[ -f $KL ] && { timeout 60 bash $SRC/tools/ktrace.sh --lib $KL -o $L/fa3wts-8x512.jsonl -- ./llama-diff ops --op attention --variant fa3wts --dtype bf16 --shape heads=32,kv=8,hd=128,len=512,seqs=8 > $L/ktrace-fa3wts.txt 2>&1
  echo "traced fa3wts 8 x 512 exit $?: kernels $(grep -o '"name":"[^"]*attention[^"]*"' $L/fa3wts-8x512.jsonl | sort | uniq -c | sed -E 's/"name":"//; s/"$//' | tr '\n' ';' | cut -c1-300)"; gzip -f $L/fa3wts-8x512.jsonl; }
el timing
for sh in len=512,seqs=8 len=2048 len=512,seqs=16 len=1024,seqs=4 len=1024; do for v in fa3 fa3wt fa3wts fa3wts; do
  case $sh in len=512,seqs=8|len=2048) [ $(left) -gt 120 ] || break 2 ;; *) [ $(left) -gt 330 ] || break 2 ;; esac
  n=$((n+1)); timeout 30 ./llama-diff ops --op attention --variant $v --dtype bf16 --shape heads=32,kv=8,hd=128,$sh --perf > $L/perf-$n-$v.txt 2>&1; echo "$v $sh: $(grep -hE '^(PASS|FAIL)' $L/perf-$n-$v.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us|[0-9.]+ TFLOP/s' | tr '\n' ' ')"; done; done; pack
el "test_gpu_ops, case fa3wts"
[ $(left) -gt 190 ] && CK_RUN_CASE=fa3wts timeout $(( $(left) - 150 < 240 ? $(left) - 150 : 240 )) ./tests/test_gpu_ops > $L/test_gpu_ops-fa3wts.log 2>&1; echo "test_gpu_ops fa3wts exit $?: $(grep -E '^[0-9]+%' $L/test_gpu_ops-fa3wts.log)"; grep -E ':[EF]:' $L/test_gpu_ops-fa3wts.log | cut -c1-240 | head -4; pack
el sanitizers
for tool in memcheck racecheck synccheck; do [ $(left) -gt 100 ] || break
  timeout $(( $(left) - 80 < 120 ? $(left) - 80 : 120 )) /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fa3wts --dtype bf16 > $L/san-fa3wts-$tool.txt 2>&1
  echo "fa3wts $tool exit $?: $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L/san-fa3wts-$tool.txt)"; pack; done
wait $MK; el "prefill rows"
for k in fa3 fa3wts; do [ $(left) -gt 30 ] && [ -d /tmp/llama3-8b-random ] || break
  timeout $(( $(left) - 10 )) ./bench/gpu_bench --model /tmp/llama3-8b-random --only 0,1 --no-profile --kernels attention=$k --dump-logits $L/logits-$k.bin --json $L/rows-$k.json > $L/rows-$k.txt 2>&1; echo "rows $k exit $?: $(grep -E '^  prefill' $L/rows-$k.txt | sed -E 's/ +/ /g' | cut -c1-80 | tr '\n' ';')"; done
cmp $L/logits-fa3.bin $L/logits-fa3wts.bin && echo "row 0 logits: fa3wts' bytes are fa3's"; rm -f $L/logits-*.bin; pack
el done
