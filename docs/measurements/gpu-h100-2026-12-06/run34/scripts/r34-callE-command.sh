# run 34, call E (session 28), typed at the console on the warm machine with the last 339 s:
# the steps after call D's op sweep (llama-diff on every fixture, decode through the GEMVs,
# the error model, the plugin, PyTorch's error, the memory lines)
source gpurun/env.sh; mkdir -p $OUT/check; OUT=$OUT/check timeout 300 bash tools/gpu-check.sh --reuse --skip test_gpu_ops,test_gpu_linear,test_gpu_forward,nccl,ops-sweep,make-check | grep -vE '^(PASS|SKIP) ' | tail -150; echo "gpu-check exit ${PIPESTATUS[0]}"
