# run 19, call 5: the fd attention variant: its fixture sweep, per-op decode, model-level checks and decode bench
source gpurun/env.sh
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
L=/tmp/r19e; mkdir -p $L
pack() { tar czf $OUT/r19e.tgz -C $L . 2>/dev/null; }
python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el "ops sweep fd"; timeout 120 ./llama-diff ops --op attention --variant fd > $L/ops-fd.txt 2>&1; echo "exit $?"; tail -4 $L/ops-fd.txt; grep -c "^PASS" $L/ops-fd.txt; grep -m5 "^FAIL" $L/ops-fd.txt | cut -c1-200; pack
el "fixture checks -k attention=fd --decode 4"; for m in gqa-f32:gqa-f32-batch long-gqa-f32:long-gqa-f32-300 mha-bias-bf16:mha-bias-bf16 mqa-hd-f16:mqa-hd-f16; do for p in bf16 fp16; do
  timeout 30 ./llama-diff check -b cuda -p $p -k attention=fd --decode 4 -m $SRC/fixtures/models/${m%%:*} -f $SRC/fixtures/golden/${m##*:}.safetensors > $L/chk-fd-${m%%:*}-$p.txt 2>&1; echo "${m%%:*} $p exit $?"; done; done; pack
el gpu_ops_bench; timeout 90 ./bench/gpu_ops_bench > $L/gpu-ops.txt 2>&1; grep -E "^card|attention .*decode" $L/gpu-ops.txt; pack
wait; el "gpu_bench attention=fd"; timeout 100 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 --kernels attention=fd,linear=auto > $L/gpu-bench-fd-auto.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $L/gpu-bench-fd-auto.txt | head -5; pack
el done
