# run 37, call B (session 31; any card, a warm machine with REUSE=1 or a fresh one): the two
# steps of tools/gpu-check.sh that no run since 34 has taken, test_gpu_ops as a whole and
# make check on the GPU, with today's defaults (linear auto's gemv at T 3 among them). The
# logs go to /tmp and come back as one archive ($OUT's fetch caps the file count: run 36).
source gpurun/env.sh
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
D=$OUT; L=/tmp/gpu-out; mkdir -p $L
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el "gpu-check: test_gpu_ops and make-check"
OUT=$L timeout $(( ${LIMIT:-585} - 25 )) bash tools/gpu-check.sh ${REUSE:+--reuse} \
    --skip test_gpu_linear,test_gpu_forward,nccl,ops-sweep,diff,decode,plugin > $L/console.txt 2>&1
echo "gpu-check exit $?"
grep -E "^(==|--)|[0-9]+%: Checks|FAIL|PASS:|^# (TOTAL|PASS|SKIP|FAIL|ERROR)" $L/console.txt | tail -40
tar czf $D/r37b.tgz -C $L .
el done
