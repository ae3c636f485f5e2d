# The first call of a session (session 32): on an H200, next-r38a.sh (the kernel tracer on the
# decode rows, where batch 1 misses its target on that card); on any other card,
# next-r38b.sh (test_gpu_ops as a whole). Copy this and both scripts to gpurun/ first.
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
    exec bash gpurun/next-r38a.sh
else
    exec bash gpurun/next-r38b.sh
fi
