# run 27, call A (session 21): attention "fdt" (fd's decode on mma.sync, a warp 16 keys at a
# time through its own cp.async ring, no barrier in the key loop; P V with P as two 16-bit
# terms) checked, then timed against fd; then session 20's fused decode GEMVs (switches
# LLAMAREF_SILU_FUSE / LLAMAREF_QKV_FUSE, gpu_bench --silu-fuse --qkv-fuse) checked and timed;
# the decode rows with graphs: tree, fdt, fusions, fdt + fusions, twice in turn. Then the
# sanitizers on fdt and the fused GEMVs, and fdt's Llama-3-8B-shape check with decode steps.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r27a; mkdir -p $L
pack() { tar czf $OUT/r27a.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu tests/test_gpu_linear > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
if [ -z "${BENCH_ONLY:-}" ]; then
el "fdt sweeps"
for d in bf16 f16; do timeout 60 ./llama-diff ops --op attention --variant fdt --dtype $d > $L/ops-fdt-$d.txt 2>&1; echo "sweep fdt $d exit $?"; grep -h "planned" $L/ops-fdt-$d.txt; grep -m4 "^FAIL" $L/ops-fdt-$d.txt | cut -c1-220; done; pack
el "op timing, fd then fdt"
for n in 1 8 32; do for v in fd fdt; do timeout 30 ./llama-diff ops --op attention --variant $v --dtype bf16 --shape heads=32,kv=8,hd=128,past=1024,seqs=$n --perf > $L/perf-$v-$n.txt 2>&1; echo "$v seqs $n: $(grep -hE '^(PASS|FAIL)' $L/perf-$v-$n.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us [0-9]+ GB/s [0-9.]+ of copy' | tr '\n' ' ')"; done; done; pack
el "fused GEMVs"
CK_RUN_CASE=fused timeout 60 ./tests/test_gpu_linear > $L/test_gpu_linear-fused.log 2>&1; echo "test_gpu_linear fused exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_linear-fused.log | head -5; pack
fi
el "decode rows with graphs"; wait
for k in 1 2; do
  for n in tree fdt fuse fdtfuse; do
    [ $(left) -gt ${ROW_RESERVE:-200} ] || break 2
    f=; case $n in fdt) f="--kernels attention=fdt";; fuse) f="--silu-fuse --qkv-fuse";; fdtfuse) f="--kernels attention=fdt --silu-fuse --qkv-fuse";; esac
    timeout 90 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 45 --graphs --steps 32 $f --json $L/bench-$n-$k.json > $L/bench-$n-$k.txt 2>&1; echo "$n $k exit $?"; grep -E "^  decode" $L/bench-$n-$k.txt | cut -c1-110
  done
done; pack
el sanitizers
for tool in memcheck racecheck synccheck; do timeout 50 /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fdt --dtype bf16 > $L/san-fdt-$tool.txt 2>&1; echo "fdt $tool exit $?"; grep -m1 -E "ERROR SUMMARY|RACECHECK SUMMARY" $L/san-fdt-$tool.txt; done; pack
CK_RUN_CASE=fused timeout 50 /usr/local/cuda/bin/compute-sanitizer --tool memcheck --error-exitcode 9 ./tests/test_gpu_linear > $L/san-fused-memcheck.txt 2>&1; echo "fused memcheck exit $?"; grep -m1 "ERROR SUMMARY" $L/san-fused-memcheck.txt; pack
el "shape check fdt, decode 4"; cd $SRC
( OUT=$L/shape timeout $(( $(left) - 8 )) bash tools/gpu-shape-check.sh --variants fdt --kernels linear=auto --precisions bf16,fp16 --tokens 516 --decode 4 --no-faults > $L/shape.txt 2>&1; echo "exit $?" >> $L/shape.txt; rm -f $L/shape/*.safetensors )
grep -E "^attention=|^exit|agree|stages" $L/shape.txt | cut -c1-240 | head -12; pack
el done
