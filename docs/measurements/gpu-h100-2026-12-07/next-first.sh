# The first call of a session (after session 33): on an H200, next-r38a.sh (the kernel tracer
# on the decode rows, where batch 1 misses its target on that card); on any other card,
# next-r40a.sh (attention fa3wts' first run). Copy this and both scripts to gpurun/ first.
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
    exec bash gpurun/next-r38a.sh
else
    exec bash gpurun/next-r40a.sh
fi
