# run 35, call 5 (session 29), typed at the console on the warm H200 after call 4: the
# issue's four rows with the defaults once more (gpu_bench's default rows, no peer), as a
# second sample of call 1's.
source gpurun/env.sh; export LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu; cd $B && timeout 250 ./bench/gpu_bench --model /tmp/llama3-8b-random --json $OUT/bench-defaults.json > $OUT/bench-defaults.txt 2>&1; echo exit $?; grep -E "^  (prefill|decode)|ceiling|copy|GEMM" $OUT/bench-defaults.txt | cut -c1-160
