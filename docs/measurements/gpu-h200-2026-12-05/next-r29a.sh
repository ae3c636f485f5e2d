# run 29, call A: attention fdtc's first run on a GPU, written without one. fdtc
# is fdt's plan and kernel with the chunks of each (sequence, kv head) launched as one
# thread-block cluster (up to 16 blocks, up to 4 chunks a block) and merged through
# distributed shared memory in attention_merge_kernel's order: no merge kernel (about 6 us a
# layer at batch 1 on the H100), no workspace. It must give fdt's bits (test_gpu_ops'
# test_fdtc_is_fdt in the helpers case: the fixtures' and Llama-3-8B's decodes and two of at
# most 64 keys, at f16 and bf16, each eager and again planned as a decode graph plans),
# pass its sweeps at bf16 and f16 and compute-sanitizer's memcheck and racecheck; then ncu
# names the kernels fdtc launches at batch 1 (the cluster kernel, its cluster size, no
# merge), the op-level times of fdt and fdtc at 1, 8 and 32 sequences (1024 cached keys,
# 32/8 heads, hd 128; at 32 the plan has one chunk a head and fdtc runs fdt's kernel), and
# the decode rows with graphs, fdt then fdtc, twice in turn. Fits a warm machine (REUSE=1)
# or a fresh one, where the last steps may not fit (each is guarded).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-570} - ($(date +%s) - T0) )); }
L=/tmp/r29a; mkdir -p $L
pack() { tar czf $OUT/r29a.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && { make -j16 bench-gpu tests/test_gpu_ops > $L/build-more.log 2>&1 || { tail -20 $L/build-more.log; pack; exit 1; }; }
el "fdtc's bits against fdt's (and fa3p's against fa3's): test_gpu_ops, helpers case"
CK_RUN_SUITE=gpu_ops CK_RUN_CASE=helpers timeout 240 ./tests/test_gpu_ops > $L/test_gpu_ops-helpers.log 2>&1; echo "test_gpu_ops helpers exit $?"; grep -E "^fa3:|^[0-9]+%|:[EF]:" $L/test_gpu_ops-helpers.log | cut -c1-260 | head -6; pack
el "fdtc sweeps"
for d in bf16 f16; do timeout 60 ./llama-diff ops --op attention --variant fdtc --dtype $d > $L/ops-fdtc-$d.txt 2>&1; echo "sweep fdtc $d exit $?"; grep -h "planned" $L/ops-fdtc-$d.txt; grep -m4 "^FAIL" $L/ops-fdtc-$d.txt | cut -c1-220; done
timeout 90 ./llama-diff ops --op attention --variant fdtc --dtype bf16 --shapes llama3-8b > $L/ops-fdtc-8b.txt 2>&1; echo "sweep fdtc llama3-8b exit $?"; grep -h "planned" $L/ops-fdtc-8b.txt; grep -m4 "^FAIL" $L/ops-fdtc-8b.txt | cut -c1-220; pack
el sanitizers
for tool in memcheck racecheck; do [ $(left) -gt 300 ] || break
  timeout 90 /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fdtc --dtype bf16 > $L/san-fdtc-$tool.txt 2>&1; echo "fdtc $tool exit $?"; grep -m2 -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard" $L/san-fdtc-$tool.txt
done; pack
el "ncu: fdtc's launches at batch 1 (a cluster kernel, no merge)"
SH=heads=32,kv=8,hd=128,past=1024
[ $(left) -gt 240 ] && { timeout 60 ncu --section LaunchStats -k regex:"attention_fdt|attention_merge" --launch-count 3 ./llama-diff ops --op attention --variant fdtc --dtype bf16 --shape $SH > $L/ncu-fdtc-b1.txt 2>&1; echo "exit $?"; grep -E "^  [a-zA-Z_].*\(|Cluster Size|Grid Size|Dynamic Shared" $L/ncu-fdtc-b1.txt | cut -c1-160 | head -12; }; pack
el "op timing, fdt then fdtc, twice in turn"
for sh in $SH $SH,seqs=8 $SH,seqs=32; do for rep in 1 2; do for v in fdt fdtc; do [ $(left) -gt 200 ] || break 3
  timeout 30 ./llama-diff ops --op attention --variant $v --dtype bf16 --shape $sh --perf > $L/perf-$v-$sh-$rep.txt 2>&1
  echo "$v $sh ($rep): $(grep -hE '^(PASS|FAIL)' $L/perf-$v-$sh-$rep.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us|[0-9.]+ GB/s' | tr '\n' ' ')"
done; done; done; pack
el "decode rows with graphs, fdt then fdtc, twice in turn"; wait
for rep in 1 2; do for v in fdt fdtc; do [ $(left) -gt 70 ] || break 2
  timeout 110 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 45 --graphs --kernels attention=$v --json $L/bench-$v-$rep.json > $L/bench-$v-$rep.txt 2>&1
  echo "$v ($rep): $(grep -E "^  decode" $L/bench-$v-$rep.txt | sed -E 's/ +/ /g' | cut -c1-120 | tr '\n' '|')"
done; done; pack
el done
