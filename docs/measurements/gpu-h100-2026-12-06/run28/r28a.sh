# run 28, call A (session 22; session 23 added test_gpu_linear, whose norm cases are new): what making attention fdt and the two fused decode GEMVs the
# default still needs, after run 27's call A (an H100) found them faster (batch 32 with
# graphs 8.670 -> 7.759 ms with fdt; batch 1 5.811 -> 5.540 with fdt and both fusions) and
# passing every op-level check (fdt's sweeps 68/68 at bf16 and f16, sanitizers clean; the
# fused case of test_gpu_linear, memcheck clean):
#  - fdt's decode kernel at model level: the Llama-3-8B-shape check with decode steps (the
#    float64 reference's dump of 516 tokens, 2 layers; then `check --decode 4` of the CUDA
#    path: a 512-token prefill and 4 single-token steps through fdt's kernel, at bf16 and
#    fp16). Run 27's shape check ran only the prefill (fa3's) before its call ended;
#  - test_gpu_forward whole: silu_fuse_changes_no_bit and qkv_fuse_changes_no_bit (the
#    fusions bitwise equal to the unfused kernels at model level, eager and in graphs), and
#    the public API of session 17, never yet run on a GPU;
#  - first fdt's sweeps and memcheck again: session 22 rewrote its loader (a walk through the
#    block table, the same bits);
#  - then fd and fdt at op level at 32 sequences (the batch; the sweep took at most
#    8 before session 22), and fa3p against fa3 at 1 x 2048 (run 27's call B timed 8 x 512
#    only).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r28a; mkdir -p $L
pack() { tar czf $OUT/r28a.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
( cd $B && make -j16 tests/test_gpu_forward > $L/build-tests.log 2>&1 ) || { tail -20 $L/build-tests.log; pack; exit 1; }
el "fdt's sweeps and memcheck (its loader walks the block table since session 22: the same bits, new addresses)"
for d in bf16 f16; do timeout 60 $B/llama-diff ops --op attention --variant fdt --dtype $d > $L/ops-fdt-$d.txt 2>&1; echo "sweep fdt $d exit $?"; grep -h "planned" $L/ops-fdt-$d.txt; grep -m3 "^FAIL" $L/ops-fdt-$d.txt | cut -c1-200; done
( cd $B && timeout 50 /usr/local/cuda/bin/compute-sanitizer --tool memcheck --error-exitcode 9 ./llama-diff ops --op attention --variant fdt --dtype bf16 > $L/san-fdt-memcheck.txt 2>&1; echo "fdt memcheck exit $?"; grep -m1 "ERROR SUMMARY" $L/san-fdt-memcheck.txt ); pack
el "fdt's decode at model level: the float64 reference's dump, then check --decode 4"
OUT=$L/shape timeout 150 bash tools/gpu-shape-check.sh --variants fdt --precisions bf16,fp16 --tokens 516 --decode 4 --no-faults --dump-only > $L/shape-dump.txt 2>&1; echo "dump exit $?"; tail -2 $L/shape-dump.txt | cut -c1-200
OUT=$L/shape timeout $(( $(left) - 250 )) bash tools/gpu-shape-check.sh --variants fdt --precisions bf16,fp16 --tokens 516 --decode 4 --no-faults --reference $L/shape/shape-ref-f64.safetensors > $L/shape.txt 2>&1; echo "exit $?" >> $L/shape.txt
grep -E "^attention=|^exit" $L/shape.txt | cut -c1-300; rm -f $L/shape/*.safetensors; pack
el "test_gpu_forward"; cd $B
timeout $(( $(left) - 40 )) ./tests/test_gpu_forward > $L/test_gpu_forward.log 2>&1; echo "test_gpu_forward exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_forward.log | cut -c1-240 | head -8; grep -E "fused at|bitwise equal to the" $L/test_gpu_forward.log | cut -c1-200 | sort | uniq | head -12; pack
el "test_gpu_linear (the norm-fused GEMVs' op-level bits, session 23)"
( cd $B && make -j16 tests/test_gpu_linear > $L/build-linear.log 2>&1 ) && { timeout 90 ./tests/test_gpu_linear > $L/test_gpu_linear.log 2>&1; echo "test_gpu_linear exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_linear.log | cut -c1-240 | head -6; }; pack
el "fd and fdt at 32 sequences (the sweep's shapes take 32 since session 22)"
for v in fd fdt; do [ $(left) -gt 60 ] || break; timeout 40 ./llama-diff ops --op attention --variant $v --dtype bf16 --shape heads=32,kv=8,hd=128,past=1024,seqs=32 --perf > $L/perf-$v-32.txt 2>&1; echo "$v seqs 32: $(grep -hE '^(PASS|FAIL)' $L/perf-$v-32.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us [0-9]+ GB/s [0-9.]+ of copy' | tr '\n' ' ')"; done; pack
el "fa3 and fa3p at 1 x 2048"
for v in fa3 fa3p; do [ $(left) -gt 10 ] || break; timeout $(( $(left) / 2 )) ./llama-diff ops --op attention --variant $v --dtype bf16 --shape heads=32,kv=8,hd=128,len=2048 --perf > $L/perf-$v-2048.txt 2>&1; echo "$v 1 x 2048: $(grep -hE '^(PASS|FAIL)' $L/perf-$v-2048.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us|[0-9.]+ TFLOP/s' | tr '\n' ' ')"; done; pack
el done
