# run 25, call C (prepared in session 17): the model-level suite with session 17's new
# checks (forward_rows_are_forwards_rows: lr_model_forward_rows, which gpu_bench's prefill
# rows use; greedy_is_the_argmax_of_the_logits: lr_model_greedy, which its decode rows
# use), test_gpu_linear (its data now with a cancelling pair, so its exact order check
# bites at 16 bits), the decode rows with greedy tokens against --host-logits in the same
# call (what leaving the logits on the GPU saves), the prefill rows with RoPE fused with the
# cache write and not (the profile says the fused kernel takes 55 us a layer at 2048 tokens,
# where the heads kernel alone took 21 in run 16: the fusion was only timed at decode), and
# the Llama-3-8B-shape check with fa3.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r25c; mkdir -p $L
pack() { tar czf $OUT/r25c.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el "suites"
timeout 120 ./tests/test_gpu_forward > $L/test_gpu_forward.log 2>&1; echo "test_gpu_forward exit $?"; grep -E "forward_rows|greedy|^[0-9]+%|:[EF]:" $L/test_gpu_forward.log | head -12
timeout 100 ./tests/test_gpu_linear > $L/test_gpu_linear.log 2>&1; echo "test_gpu_linear exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_linear.log | head -5; pack
el "decode rows: greedy tokens, then --host-logits"; wait
timeout 100 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 45 --graphs --steps 32 > $L/bench-greedy.txt 2>&1; grep -E "^  decode" $L/bench-greedy.txt
timeout 100 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 45 --graphs --steps 32 --host-logits > $L/bench-host-logits.txt 2>&1; grep -E "^  decode" $L/bench-host-logits.txt; pack
el "prefill rows: RoPE fused with the cache write (the default) and not"
timeout 80 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 01 > $L/bench-prefill-fused.txt 2>&1; grep -E "^  prefill" $L/bench-prefill-fused.txt
timeout 80 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 01 --no-rope-cache > $L/bench-prefill-unfused.txt 2>&1; grep -E "^  prefill" $L/bench-prefill-unfused.txt; pack
el "shape check fa3"; cd $SRC
( OUT=$L/shape timeout $(( $(left) - 10 )) bash tools/gpu-shape-check.sh --variants fa3 --kernels linear=auto --precisions bf16,fp16 --tokens 516 --no-faults > $L/shape-fa3.txt 2>&1; echo "exit $?" >> $L/shape-fa3.txt; rm -f $L/shape/*.safetensors )
grep -E "^attention=|^exit" $L/shape-fa3.txt | cut -c1-300; pack
el done
