# run 38, call B (session 32; any card, fresh or warm with REUSE=1): test_gpu_ops as a whole
# (about 400 s on an H100), owed since run 34; gpu-check.sh's other steps left out. The logs
# come back as one archive.
source gpurun/env.sh
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
D=$OUT; L=/tmp/gpu-out; mkdir -p $L
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el "gpu-check: test_gpu_ops"
OUT=$L timeout $(( ${LIMIT:-585} - 20 )) bash tools/gpu-check.sh ${REUSE:+--reuse} \
    --skip test_gpu_linear,test_gpu_forward,nccl,ops-sweep,make-check,diff,decode,plugin > $L/console.txt 2>&1
echo "gpu-check exit $?"; grep -E "^(==|--)|[0-9]+%: Checks|^# |FAIL" $L/console.txt | tail -20
tar czf $D/r38b.tgz -C $L .
el done
