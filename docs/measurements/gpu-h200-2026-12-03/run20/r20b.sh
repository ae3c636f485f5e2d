# run 20, call B: fd's pipelined decode kernel (tiles of 64 keys, K and V by cp.async two
# stages deep): its op sweep (decode-long included), the sanitizers, per-op and step speed.
source gpurun/env.sh  # = ../../gpu-h200-2026-12-02/run18/env.sh
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
L=/tmp/r20b; mkdir -p $L
pack() { tar czf $OUT/r20b.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el "ops sweep fd"; timeout 90 ./llama-diff ops --op attention --variant fd > $L/ops-fd.txt 2>&1; echo "exit $?"; tail -2 $L/ops-fd.txt; grep -c "^PASS" $L/ops-fd.txt; grep -m8 "^FAIL" $L/ops-fd.txt | cut -c1-250; pack
for t in memcheck racecheck synccheck; do el "sanitizer $t fd bf16"; timeout 75 compute-sanitizer --tool $t --error-exitcode 9 ./llama-diff ops --op attention --variant fd --dtype bf16 > $L/san-$t-fd.txt 2>&1; echo "exit $?"; tail -2 $L/san-$t-fd.txt; done
el "racecheck linear cublas and gemv (auto's two halves)"; for v in cublas gemv; do timeout 40 compute-sanitizer --tool racecheck --error-exitcode 9 ./llama-diff ops --op linear --variant $v --dtype bf16 > $L/san-racecheck-$v.txt 2>&1; echo "$v exit $?"; tail -1 $L/san-racecheck-$v.txt; grep -o "nvjet[a-z0-9_]*\|gemv[a-z0-9_]*" $L/san-racecheck-$v.txt | sort | uniq -c | head -4; done
el "memcheck fd f16"; timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 ./llama-diff ops --op attention --variant fd --dtype f16 > $L/san-memcheck-fd-f16.txt 2>&1; echo "exit $?"; tail -2 $L/san-memcheck-fd-f16.txt; pack
el gpu_ops_bench; timeout 90 ./bench/gpu_ops_bench > $L/gpu-ops.txt 2>&1; grep -E "^card|attention .*decode" $L/gpu-ops.txt; pack
wait; el "gpu_bench attention=fd,linear=auto"; timeout 110 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 --kernels attention=fd,linear=auto > $L/gpu-bench-fd-auto.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode|profiled" $L/gpu-bench-fd-auto.txt | head -12; pack
el done
