# run 34, call C (session 28): attention fa3w's first run on a GPU: fa3 warp-specialised
# (a producer warpgroup that walks the block table and fills a ring of three K/V stages,
# three consumer warpgroups with fa3's arithmetic, named barriers, setmaxnreg 56 / 152, one
# block of 192 query rows an SM), written in session 27 without a GPU; its hand-over is
# checked on the CPU (tools/model-fa3-layout.py, ws_schedule). First whether it finishes
# at all (a hang in its barriers would show as the first sweep's timeout), then its bits
# against fa3's (test_gpu_ops' fa3w case), its sweeps at bf16 and f16, the sanitizers,
# op-level timing against fa3 (1 x 2048 and 8 x 512, 32/8 heads, hd 128: fa3 at 119.1 and
# 83.6 us in run 33), and the prefill rows with attention=fa3w against the defaults.
# Fits a fresh machine or a warm one (REUSE=1).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r34c; mkdir -p $L
pack() { tar czf $OUT/r34c.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu tests/test_gpu_ops > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el "fa3w: one case first (a hang shows here), then its sweeps"
timeout 30 ./llama-diff ops --op attention --variant fa3w --dtype bf16 --shape heads=8,kv=2,hd=128,len=300 > $L/ops-fa3w-one.txt 2>&1; echo "one case exit $?: $(grep -h planned $L/ops-fa3w-one.txt)"
for d in bf16 f16; do timeout 90 ./llama-diff ops --op attention --variant fa3w --dtype $d > $L/ops-fa3w-$d.txt 2>&1; echo "sweep fa3w $d exit $?"; grep -h "planned" $L/ops-fa3w-$d.txt; grep -m4 "^FAIL" $L/ops-fa3w-$d.txt | cut -c1-220; done; pack
el "fa3w's bits against fa3's"
CK_RUN_SUITE=gpu_ops CK_RUN_CASE=fa3w timeout 150 ./tests/test_gpu_ops > $L/test_gpu_ops-fa3w.log 2>&1; echo "test_gpu_ops fa3w exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_ops-fa3w.log | cut -c1-240 | head -6; pack
el "op timing, fa3 then fa3w"
for sh in len=2048 len=512,seqs=8; do for v in fa3 fa3w; do timeout 60 ./llama-diff ops --op attention --variant $v --dtype bf16 --shape heads=32,kv=8,hd=128,$sh --perf > $L/perf-$v-$sh.txt 2>&1; echo "$v $sh: $(grep -hE '^(PASS|FAIL)' $L/perf-$v-$sh.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us|[0-9.]+ TFLOP/s' | tr '\n' ' ')"; done; done; pack
el sanitizers
for tool in memcheck racecheck synccheck; do [ $(left) -gt 150 ] || break; timeout 60 /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fa3w --dtype bf16 > $L/san-fa3w-$tool.txt 2>&1; echo "fa3w $tool exit $?"; grep -m1 -E "ERROR SUMMARY|RACECHECK SUMMARY" $L/san-fa3w-$tool.txt; done; pack
el "prefill rows: defaults, fa3w"; wait
for n in tree fa3w; do [ $(left) -gt 80 ] || break
  f=; [ $n = fa3w ] && f="--kernels attention=fa3w"
  timeout 80 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 01 $f --json $L/bench-$n.json > $L/bench-$n.txt 2>&1; echo "$n exit $?"; grep -E "^  prefill" $L/bench-$n.txt | cut -c1-110
done; pack
el done
