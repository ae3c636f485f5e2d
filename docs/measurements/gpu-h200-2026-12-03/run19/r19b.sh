# run 19, call 2: the kept changes (merge, chunk 32, linear=auto): tests, per-op and model-level decode bench
source gpurun/env.sh
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include
# as ran, test_gpu_forward lacked these (gpu-check.sh's): 88 failures; call 3 set them and it passed 88 of 88
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=$PWD/tests/tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
# as ran, the tarball sorted after 8 other files and did not come back; keep only it in $OUT:
pack() { (cd $OUT && tar czf /tmp/r19b.tgz . 2>/dev/null && find . -type f ! -name r19b.tgz -delete; mv /tmp/r19b.tgz .); }
python3 tools/make-bench-model.py /tmp/llama3-8b-random > $OUT/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $OUT/build.log 2>&1 || { tail -30 $OUT/build.log; exit 1; }
cd $B && make -j16 bench-gpu > $OUT/build-bench.log 2>&1 || { tail -20 $OUT/build-bench.log; exit 1; }
git -C $SRC log -1 --format=%h > $OUT/commit.txt 2>/dev/null
el test_gpu_linear; ./tests/test_gpu_linear > $OUT/test_gpu_linear.log 2>&1; echo "exit $?"; grep "^[0-9]*%" $OUT/test_gpu_linear.log
el gpu_ops_bench; ./bench/gpu_ops_bench > $OUT/gpu-ops.txt 2>&1; grep -E "^card|attention  (fa2|tc) .*decode|linear" $OUT/gpu-ops.txt | head -40; pack
wait; tail -2 $OUT/make-model.log
for k in default linear=auto; do el "gpu_bench $k"; a=; [ $k != default ] && a="--kernels $k"
  timeout 150 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 2345 --graphs --steps 32 $a --json $OUT/gpu-bench-${k/=/-}.json > $OUT/gpu-bench-${k/=/-}.txt 2>&1; echo "exit $?"; grep -E "ceilings|decode" $OUT/gpu-bench-${k/=/-}.txt | head -6; pack; done
el test_gpu_ops; timeout 150 ./tests/test_gpu_ops > $OUT/test_gpu_ops.log 2>&1; echo "exit $?"; grep -E "^[0-9]+%|FAIL" $OUT/test_gpu_ops.log | head -5; pack
el test_gpu_forward; timeout 120 ./tests/test_gpu_forward > $OUT/test_gpu_forward.log 2>&1; echo "exit $?"; grep -E "^[0-9]+%|FAIL" $OUT/test_gpu_forward.log | head -5; pack
el checks; for m in gqa-f32:gqa-f32-batch long-gqa-f32:long-gqa-f32-300 mha-bias-bf16:mha-bias-bf16 mqa-hd-f16:mqa-hd-f16; do for p in bf16 fp16; do for k in "" "-k linear=auto"; do
  ./llama-diff check -b cuda -p $p $k --decode 4 -m $SRC/fixtures/models/${m%%:*} -f $SRC/fixtures/golden/${m##*:}.safetensors > $OUT/chk-${m%%:*}-$p${k:+-auto}.txt 2>&1; echo "${m%%:*} $p ${k:-default} exit $?"; done; done; done; pack
el done
