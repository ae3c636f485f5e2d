# run 27, call B (session 21): what comes after call A on a warm machine (REUSE=1 keeps its
# build): the suites of the fused decode GEMVs and the public API of session 17 never yet
# run on a GPU (test_gpu_forward: silu_fuse_changes_no_bit, qkv_fuse_changes_no_bit,
# forward_rows_are_forwards_rows, greedy_is_the_argmax_of_the_logits, ...; test_gpu_linear:
# every case), racecheck on the fused case, then linear mmr's sweeps and its T = 32 shapes
# against cublas (run24/next-r25a.sh's first half).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r27b; mkdir -p $L
pack() { tar czf $OUT/r27b.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu tests/test_gpu_linear tests/test_gpu_forward > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el "test_gpu_forward, test_gpu_linear"
timeout 200 ./tests/test_gpu_forward > $L/test_gpu_forward.log 2>&1; echo "test_gpu_forward exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_forward.log | head -8; grep -cE "(activation|cache write) fused at" $L/test_gpu_forward.log; pack
timeout 100 ./tests/test_gpu_linear > $L/test_gpu_linear.log 2>&1; echo "test_gpu_linear exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_linear.log | head -5; pack
CK_RUN_CASE=fused timeout 60 /usr/local/cuda/bin/compute-sanitizer --tool racecheck --error-exitcode 9 ./tests/test_gpu_linear > $L/san-fused-racecheck.txt 2>&1; echo "fused racecheck exit $?"; grep -m1 "RACECHECK SUMMARY\|ERROR SUMMARY" $L/san-fused-racecheck.txt; pack
el "mmr sweeps and shapes"
for d in bf16 f16; do timeout 60 ./llama-diff ops --op linear --variant mmr --dtype $d > $L/ops-mmr-$d.txt 2>&1; echo "sweep mmr $d exit $?"; grep -h "planned" $L/ops-mmr-$d.txt; grep -m3 "^FAIL" $L/ops-mmr-$d.txt | cut -c1-200; done; pack
for sh in T=32,N=6144,K=4096 T=32,N=4096,K=4096 T=32,N=28672,K=4096 T=32,N=4096,K=14336; do for v in cublas mmr; do [ $(left) -gt 15 ] || break 2; timeout 30 ./llama-diff ops --op linear --variant $v --dtype bf16 --shape $sh --perf > $L/perf-$v-$sh.txt 2>&1; echo "$v $sh: $(grep -hE '^(PASS|FAIL)' $L/perf-$v-$sh.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us [0-9]+ GB/s [0-9.]+ of copy' | tr '\n' ' ')"; done; done; pack
el done
