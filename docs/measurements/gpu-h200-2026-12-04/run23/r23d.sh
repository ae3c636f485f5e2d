# run 23, call D: where a batch-1 step's time goes with CUDA graphs and PDL (Nsight Systems,
# the graph's kernels traced as nodes): wall time against summed kernel time, gaps, per kind.
source gpurun/env.sh
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems*/bin/nsys /usr/local/cuda/nsight-systems*/bin/nsys 2>/dev/null | head -1)
echo "nsys: ${NSYS:-none}"; [ -n "$NSYS" ] || { ls /usr/local/cuda/ /opt/nvidia 2>&1 | head; exit 3; }
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
L=/tmp/r23d; mkdir -p $L
pack() { tar czf $OUT/r23d.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
wait
for row in 4 5; do
  el "nsys row $row"; timeout 150 $NSYS profile -o /tmp/p$row -f true --trace=cuda --cuda-graph-trace=node ./bench/gpu_bench --model /tmp/llama3-8b-random --only $row --graphs --steps 16 --no-profile > $L/nsys-$row.txt 2>&1; echo "exit $?"; grep -E "decode" $L/nsys-$row.txt | grep -v "^|" | cut -c1-90
  timeout 60 $NSYS stats -r cuda_gpu_trace -f csv -o /tmp/tr$row /tmp/p$row.nsys-rep > /dev/null 2>&1; ls /tmp/tr$row* | head -2
  python3 $SRC/gpurun/nsys-steps.py /tmp/tr${row}_cuda_gpu_trace.csv | tee $L/steps-row$row.md; pack
done
el done
