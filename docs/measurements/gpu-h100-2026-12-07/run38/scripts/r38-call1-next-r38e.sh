# run 38, call E (session 32; any sm_90 card, fresh or warm with REUSE=1): attention fa3wt's
# first run: fa3w's block with its producer's K/V tiles copied by the tensor memory
# accelerator (gpu/attention_fa3.cu, written in session 32 without a GPU). A hang (a wrong
# mbarrier phase or byte count) is stopped by each command's timeout. Here: fa3wt's sweep
# at bf16 and f16 (every check against the float64 truth), the kernel tracer on one 1 x 2048
# call (which kernel ran: attention_fa3wt_kernel, not fa3w's fallback), fa3, fa3w and fa3wt
# timed at 1 x 2048 and 8 x 512 (block size 16, and at 64), test_gpu_ops' fa3w case (fa3w,
# fa3wp and fa3wt bit for bit fa3's, TMA block sizes 8-64 and two refused), the
# sanitizers on fa3wt's sweep, then both prefill rows with fa3wt.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r38e; mkdir -p $L
pack() { tar czf $OUT/r38e.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 tests/test_gpu_ops bench-gpu > $L/build-tests.log 2>&1 || { tail -20 $L/build-tests.log; pack; exit 1; }
KL=$B/bench/libllamaref_ktrace.so
el "fa3wt's sweeps"
for dt in bf16 f16; do timeout 60 ./llama-diff ops --op attention --variant fa3wt --dtype $dt > $L/ops-fa3wt-$dt.txt 2>&1; rc=$?; echo "fa3wt $dt exit $rc: $(grep -h planned $L/ops-fa3wt-$dt.txt)"; grep -hE '^FAIL' $L/ops-fa3wt-$dt.txt | head -3 | cut -c1-200
  [ $rc = 124 ] && { echo "fa3wt hung: the last lines"; tail -3 $L/ops-fa3wt-$dt.txt | cut -c1-200; pack; el done; exit 1; }; done; pack
if [ -f $KL ]; then timeout 60 bash $SRC/tools/ktrace.sh --lib $KL -o $L/fa3wt-2048.jsonl -- ./llama-diff ops --op attention --variant fa3wt --dtype bf16 --shape heads=32,kv=8,hd=128,len=2048 > $L/ktrace-fa3wt.txt 2>&1
  echo "traced fa3wt 1 x 2048 exit $?: kernels $(grep -o '"name":"[^"]*attention[^"]*"' $L/fa3wt-2048.jsonl | sort | uniq -c | sed -E 's/"name":"//; s/"$//' | tr '\n' ';' | cut -c1-300)"; gzip -f $L/fa3wt-2048.jsonl; fi
el timing
for sh in len=2048 len=512,seqs=8; do for v in fa3 fa3w fa3wt; do [ $(left) -gt 60 ] || break 2
  timeout 30 ./llama-diff ops --op attention --variant $v --dtype bf16 --shape heads=32,kv=8,hd=128,$sh --perf > $L/perf-$v-$sh.txt 2>&1; echo "$v $sh: $(grep -hE '^(PASS|FAIL)' $L/perf-$v-$sh.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us|[0-9.]+ TFLOP/s' | tr '\n' ' ')"; done; done
for v in fa3w fa3wt; do [ $(left) -gt 60 ] || break; timeout 30 ./llama-diff ops --op attention --variant $v --dtype bf16 --shape heads=32,kv=8,hd=128,len=2048,bs=64 --perf > $L/perf-$v-bs64.txt 2>&1; echo "$v len=2048 bs=64: $(grep -hE '^(PASS|FAIL)' $L/perf-$v-bs64.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us|[0-9.]+ TFLOP/s' | tr '\n' ' ')"; done; pack
el "test_gpu_ops, case fa3w"
CK_RUN_CASE=fa3w timeout $(( $(left) - 20 < 200 ? $(left) - 20 : 200 )) ./tests/test_gpu_ops > $L/test_gpu_ops-fa3w.log 2>&1; echo "test_gpu_ops fa3w exit $?: $(grep -E '^[0-9]+%' $L/test_gpu_ops-fa3w.log)"; grep -E ':[EF]:' $L/test_gpu_ops-fa3w.log | cut -c1-240 | head -4; pack
el sanitizers
for tool in memcheck racecheck synccheck; do [ $(left) -gt 60 ] || break
  timeout $(( $(left) - 40 < 120 ? $(left) - 40 : 120 )) /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fa3wt --dtype bf16 > $L/san-fa3wt-$tool.txt 2>&1
  echo "fa3wt $tool exit $?: $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L/san-fa3wt-$tool.txt)"; pack; done
el "prefill rows with fa3wt"
[ -d /tmp/llama3-8b-random ] || { [ $(left) -gt 150 ] && python3 $SRC/tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1; }
for k in fa3 fa3wt; do [ $(left) -gt 70 ] && [ -d /tmp/llama3-8b-random ] || break
  timeout $(( $(left) - 10 )) ./bench/gpu_bench --model /tmp/llama3-8b-random --only 0,1 --no-profile --kernels attention=$k --json $L/rows-$k.json > $L/rows-$k.txt 2>&1; echo "rows $k exit $?: $(grep -E '^  prefill' $L/rows-$k.txt | sed -E 's/ +/ /g' | cut -c1-80 | tr '\n' ';')"; done; pack
el done
