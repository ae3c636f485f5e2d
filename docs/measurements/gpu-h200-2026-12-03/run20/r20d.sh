# run 20, call D: the op sweep's attention judged with each element's cap beyond one flip of
# a weight where P is rounded (efe5785), on the H200: every attention variant's sweep.
source gpurun/env.sh  # = ../../gpu-h200-2026-12-02/run18/env.sh
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
L=/tmp/r20d; mkdir -p $L; pack() { tar czf $OUT/r20d.tgz -C $L . 2>/dev/null; }
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
cd $B; el "ops --op attention, every variant"; timeout 200 ./llama-diff ops --op attention > $L/ops-attention.txt 2>&1; echo "exit $?"; tail -1 $L/ops-attention.txt; grep -m8 "^FAIL" $L/ops-attention.txt | cut -c1-300; pack; el done
