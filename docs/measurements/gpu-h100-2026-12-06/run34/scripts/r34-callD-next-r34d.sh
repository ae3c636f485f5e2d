# run 34, call D (session 28): the whole gpu-check.sh but for the suites call A ran
# (test_gpu_linear, test_gpu_forward) and the two longest steps (test_gpu_ops, about 400 s;
# make check, which runs the GPU suites again): test_gpu_forward --nccl, the op sweep of
# every variant at the fixtures' shapes and Llama-3-8B's, llama-diff on every fixture at
# bf16/fp16/fp32 x tp 1/2/4, decode through the GEMVs, the error model against the records
# just measured, and the kernel plugin. A warm machine (REUSE=1) keeps the build.
source gpurun/env.sh
mkdir -p $OUT/check
OUT=$OUT/check timeout $(( ${LIMIT:-585} - 10 )) bash tools/gpu-check.sh ${REUSE:+--reuse} --skip test_gpu_ops,test_gpu_linear,test_gpu_forward,make-check \
  | grep -vE '^(PASS|SKIP) ' | tail -120
echo "gpu-check exit ${PIPESTATUS[0]}"
