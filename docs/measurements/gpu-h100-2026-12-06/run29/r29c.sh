# run 29, call C (session 24): next-r29a.sh's checks of fdtc and next-r28e.sh's timing of the
# norm fusion in one call (one build, one model), for a session whose device time holds two
# calls: fdtc's bits against fdt's (test_gpu_ops' helpers case: test_fdtc_is_fdt, and
# fa3p's against fa3's), its sweeps at bf16 and f16 and at Llama-3-8B's shapes, memcheck and
# racecheck on its bf16 sweep; then the decode rows with graphs (the defaults: fdt, the two
# fused GEMVs) against fdtc, the norms fused, and both, one run each in turn, then the two
# that lead again. Fits a fresh machine.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r29c; mkdir -p $L
pack() { tar czf $OUT/r29c.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && { make -j16 bench-gpu tests/test_gpu_ops > $L/build-more.log 2>&1 || { tail -20 $L/build-more.log; pack; exit 1; }; }
el "fdtc's bits against fdt's: test_gpu_ops, helpers case"
CK_RUN_SUITE=gpu_ops CK_RUN_CASE=helpers timeout 200 ./tests/test_gpu_ops > $L/test_gpu_ops-helpers.log 2>&1; echo "exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_ops-helpers.log | cut -c1-260 | head -6; pack
el "fdtc sweeps"
for d in bf16 f16; do timeout 60 ./llama-diff ops --op attention --variant fdtc --dtype $d > $L/ops-fdtc-$d.txt 2>&1; echo "sweep fdtc $d exit $?"; grep -h "planned" $L/ops-fdtc-$d.txt | cut -c1-160; grep -m3 "^FAIL" $L/ops-fdtc-$d.txt | cut -c1-220; done
timeout 60 ./llama-diff ops --op attention --variant fdtc --dtype bf16 --shapes llama3-8b > $L/ops-fdtc-8b.txt 2>&1; echo "sweep fdtc llama3-8b exit $?"; grep -h "planned" $L/ops-fdtc-8b.txt | cut -c1-160; pack
for tool in memcheck racecheck; do [ $(left) -gt 330 ] || break
  timeout 80 /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fdtc --dtype bf16 > $L/san-fdtc-$tool.txt 2>&1; echo "fdtc $tool exit $?"; grep -m2 -E "ERROR SUMMARY|RACECHECK SUMMARY" $L/san-fdtc-$tool.txt
done; pack
el "decode rows with graphs"; wait
row() { # name args...
  n=$1; shift; [ $(left) -gt 60 ] || return
  timeout 100 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 45 --graphs "$@" --json $L/bench-$n.json > $L/bench-$n.txt 2>&1
  echo "$n: $(grep -E "^  decode|ceilings" $L/bench-$n.txt | sed -E 's/ +/ /g' | cut -c1-110 | tr '\n' '|')"
}
row fdt-1; row fdtc-1 --kernels attention=fdtc; row fdt-norm-1 --norm-fuse; row fdtc-norm-1 --kernels attention=fdtc --norm-fuse; pack
row fdt-2; row fdtc-norm-2 --kernels attention=fdtc --norm-fuse; pack
el done
