# run 35, call C (session 29): attention fa3wp's first run on a GPU: FlashAttention-3's
# block, fa3p's two pipelined consumer warpgroups (S_t issued with P_{t-1} V_{t-1}, the
# softmax under the P V) fed by fa3w's producer warpgroup through a ring of four K/V stages,
# written in session 28 without a GPU; its hand-over is checked on the CPU
# (tools/model-fa3-layout.py, ws_schedule lag=1). fa3w (run 34) was correct at its first run
# but no faster than fa3 (120.7 against 119.2 us at 1 x 2048), its consumers a chain of
# wgmma, wait, softmax, wgmma, wait; fa3wp overlaps each consumer's softmax with its P V.
# First whether it finishes at all (a hang in its barriers would show in the first case's
# timeout), then its sweeps at bf16 and f16, its bits against fa3's (test_gpu_ops' fa3w
# case: fa3w's loops and fa3wp's), the sanitizers, op-level timing against fa3 and fa3w
# (1 x 2048 and 8 x 512, 32/8 heads, hd 128), and the prefill rows with attention=fa3wp
# against the defaults. Fits a fresh machine or a warm one (REUSE=1).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r35c; mkdir -p $L
pack() { tar czf $OUT/r35c.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu tests/test_gpu_ops > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el "fa3wp: one case first (a hang shows here), then its sweeps"
timeout 30 ./llama-diff ops --op attention --variant fa3wp --dtype bf16 --shape heads=8,kv=2,hd=128,len=300 > $L/ops-fa3wp-one.txt 2>&1; rc=$?; echo "one case exit $rc: $(grep -h planned $L/ops-fa3wp-one.txt)"
[ $rc -eq 0 ] || { tail -5 $L/ops-fa3wp-one.txt; echo "fa3wp's first case failed or hung (124): the rest would spend the call on it; stopping"; pack; exit 1; }
for d in bf16 f16; do timeout 90 ./llama-diff ops --op attention --variant fa3wp --dtype $d > $L/ops-fa3wp-$d.txt 2>&1; echo "sweep fa3wp $d exit $?"; grep -h "planned" $L/ops-fa3wp-$d.txt; grep -m4 "^FAIL" $L/ops-fa3wp-$d.txt | cut -c1-220; done; pack
el "fa3wp's bits against fa3's"
CK_RUN_SUITE=gpu_ops CK_RUN_CASE=fa3w timeout 200 ./tests/test_gpu_ops > $L/test_gpu_ops-fa3wp.log 2>&1; echo "test_gpu_ops fa3w (fa3w, fa3wp) exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_ops-fa3wp.log | cut -c1-240 | head -6; pack
el "op timing, fa3, fa3w, fa3wp"
for sh in len=2048 len=512,seqs=8; do for v in fa3 fa3w fa3wp; do timeout 60 ./llama-diff ops --op attention --variant $v --dtype bf16 --shape heads=32,kv=8,hd=128,$sh --perf > $L/perf-$v-$sh.txt 2>&1; echo "$v $sh: $(grep -hE '^(PASS|FAIL)' $L/perf-$v-$sh.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us|[0-9.]+ TFLOP/s' | tr '\n' ' ')"; done; done; pack
el sanitizers
for tool in memcheck racecheck synccheck; do [ $(left) -gt 150 ] || break; timeout 60 /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fa3wp --dtype bf16 > $L/san-fa3wp-$tool.txt 2>&1; echo "fa3wp $tool exit $?"; grep -m1 -E "ERROR SUMMARY|RACECHECK SUMMARY" $L/san-fa3wp-$tool.txt; done; pack
el "prefill rows: defaults, fa3wp"; wait
for n in tree fa3wp; do [ $(left) -gt 80 ] || break
  f=; [ $n = fa3wp ] && f="--kernels attention=fa3wp"
  timeout 80 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 01 $f --json $L/bench-$n.json > $L/bench-$n.txt 2>&1; echo "$n exit $?"; grep -E "^  prefill" $L/bench-$n.txt | cut -c1-110
done; pack
el done
