# run 25, call B (prepared in session 17, which was lent no GPU): attention fa3's first run
# on a GPU. Its wgmma kernel must run on the H200 (test_fa3_native, with test_argmax in the
# same test case), pass its sweeps at bf16 and f16 and the three sanitizers, then the trial
# against fa2 (1 x 2048 and 8 x 512 at 32/8 heads, hd 128; the prefill rows with
# attention=fa3) over the tree and -DFA3_MINB=2 (two blocks an SM, 128 registers), and the
# defaults' prefill rows in the same call. Call C (next-r25c.sh) has the model-level checks.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r25b; mkdir -p $L
pack() { tar czf $OUT/r25b.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
grep -c "attention_fa3" $L/build.log; grep -m1 "sm_90a" $L/build.log | cut -c1-160
el "fa3 native; sweeps"
CK_RUN_SUITE=gpu_ops CK_RUN_CASE=helpers timeout 120 ./tests/test_gpu_ops > $L/test_gpu_ops-helpers.log 2>&1; echo "test_gpu_ops helpers exit $?"; grep -E "^fa3:|^[0-9]+%|:[EF]:" $L/test_gpu_ops-helpers.log | head -6
for d in bf16 f16; do timeout 90 ./llama-diff ops --op attention --variant fa3 --dtype $d > $L/ops-fa3-$d.txt 2>&1; echo "sweep fa3 $d exit $?"; grep -h "planned" $L/ops-fa3-$d.txt; grep -m5 "^FAIL" $L/ops-fa3-$d.txt | cut -c1-240; done
timeout 90 ./llama-diff ops --op attention --variant fa3 --dtype bf16 --shapes llama3-8b > $L/ops-fa3-8b.txt 2>&1; echo "sweep fa3 llama3-8b exit $?"; grep -h "planned" $L/ops-fa3-8b.txt; pack
for tool in memcheck racecheck synccheck; do timeout 120 /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fa3 --dtype bf16 > $L/san-$tool.txt 2>&1; echo "$tool exit $?"; grep -m2 -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard" $L/san-$tool.txt; done; pack
el "trial fa3"; cd $SRC
timeout 300 bash tools/gpu-trial.sh --build $B --out $L/trial-fa3 --op attention --variant fa3 \
  --shape heads=32,kv=8,hd=128,len=2048 --shape heads=32,kv=8,hd=128,len=512,seqs=8 --peer fa2 \
  --step "--model /tmp/llama3-8b-random --only 01 --kernels attention=fa3" -- "" -DFA3_MINB=2 2>&1 | tee $L/trial-fa3-console.txt | tail -12; pack
# Session 18: the SM clock and power sampled every 20 ms through these rows (the GEMMs of the
# prefill rows run at 1.09-1.25 of the ceiling's rate: is the clock lower under a sustained
# load than in the ceiling's short 8192^3 GEMMs?). clocks.csv: every sample (the ceilings'
# GEMMs come first, then the load, then the rows); clocks-summary.txt: the busy samples'
# medians; reasons.csv: the clock event (throttle) reasons, sampled apart in case the field
# is unknown to the driver.
el "defaults' prefill rows, clocks sampled"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,utilization.gpu,temperature.gpu --format=csv,noheader,nounits -lms 20 > $L/clocks.csv 2>&1 & SMI=$!
nvidia-smi --query-gpu=timestamp,utilization.gpu,clocks_event_reasons.active --format=csv,noheader -lms 100 > $L/reasons.csv 2>&1 & SMI2=$!
timeout $(( $(left) - 5 )) $B/bench/gpu_bench --model /tmp/llama3-8b-random --only 01 > $L/bench-defaults.txt 2>&1; grep -E "^  prefill|^ceilings" $L/bench-defaults.txt | cut -c1-120
kill $SMI $SMI2 2>/dev/null; wait $SMI $SMI2 2>/dev/null
python3 -c '
import sys, statistics as st
rows = [r.split(", ") for r in open(sys.argv[1]) if r.count(",") >= 5]
busy = [r for r in rows if r[4].strip().isdigit() and int(r[4]) > 50]
if not busy: sys.exit(print("no busy samples of", len(rows)))
c = [float(r[1]) for r in busy]; p = [float(r[3]) for r in busy]
print("busy samples %d of %d: SM clock median %.0f MHz (min %.0f, max %.0f); power median %.0f W (max %.0f)" % (len(busy), len(rows), st.median(c), min(c), max(c), st.median(p), max(p)))
' $L/clocks.csv | tee $L/clocks-summary.txt
cut -d, -f3 $L/reasons.csv | sort | uniq -c | sort -rn | head -4; pack
el done
