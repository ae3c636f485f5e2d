# run 28, call E (session 23): the layers' norms inside the fused decode GEMVs
# (LLAMAREF_NORM_FUSE, written in session 23 without a GPU): its op-level bits
# (test_gpu_linear's test_norm_linear_*), its model-level bits (test_gpu_forward's
# norm_fuse_changes_no_bit) unless call A ran them, compute-sanitizer memcheck and racecheck
# on the op-level cases, then both decode rows with graphs, fdt and the two fused GEMVs, with
# and without the norms fused, each twice in turn (the same model file, the same card).
# Fits a warm machine (REUSE=1) or a fresh one.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r28e; mkdir -p $L
pack() { tar czf $OUT/r28e.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && { make -j16 bench-gpu tests/test_gpu_linear tests/test_gpu_forward > $L/build-more.log 2>&1 || { tail -20 $L/build-more.log; pack; exit 1; }; }
el "test_gpu_linear (the norm-fused GEMVs against vec then the fused GEMVs)"
echo "(test_gpu_linear ran in call A)"
for tool in memcheck racecheck; do [ $(left) -gt 280 ] || break
  CK_RUN_CASE=fused timeout 120 /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./tests/test_gpu_linear > $L/san-$tool.txt 2>&1; echo "$tool exit $?"; grep -m1 "ERROR SUMMARY" $L/san-$tool.txt
done; pack
el "norm_fuse_changes_no_bit"
echo "(test_gpu_forward ran in call A)"
wait
el "decode rows with graphs, fdt and the fused GEMVs, without and with the norms fused"
for rep in 1 2; do for n in off on; do [ $(left) -gt 70 ] || break
  f=; [ $n = on ] && f=--norm-fuse
  timeout 120 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 45 --graphs --kernels attention=fdt --silu-fuse --qkv-fuse $f --json $L/bench-$n-$rep.json > $L/bench-$n-$rep.txt 2>&1
  echo "norms $n ($rep): $(grep -E "^  decode" $L/bench-$n-$rep.txt | sed -E 's/ +/ /g' | cut -c1-120 | tr '\n' '|')"
done; done; pack
el done
