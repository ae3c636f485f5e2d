# run 36, call 3 (session 30), typed at the console on the warm H100 after auto's mid range
# (AUTO_GEMV_MID_{N,K,T} 8192, 4096, 3) was made gpu/linear.cu's default in the working
# tree: the model-level steps of gpu-check.sh with it (a fresh build). Its logs went to
# $OUT loose, more files than the fetch takes, so only the first eight came back; the
# console's last lines are in ../call3/console-tail.txt. Lesson: tar $OUT's files first.
source gpurun/env.sh; timeout 440 bash tools/gpu-check.sh --skip test_gpu_ops,nccl,ops-sweep,plugin,make-check > $OUT/gpu-check-console.txt 2>&1; echo rc $?; tail -40 $OUT/gpu-check-console.txt; cp -r gpu-out $OUT/ 2>/dev/null; true
