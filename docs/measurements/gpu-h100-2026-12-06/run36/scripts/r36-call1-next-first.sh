# The first call of a session (session 30): on an H200, next-r36b.sh (the decode rows with
# fewer kernels a step: fdtc, the norms fused); on any other card, next-r36a.sh (linear
# auto's gemv at T 3: the checks before it becomes the default). Copy this and both scripts
# to gpurun/ first.
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
    exec bash gpurun/next-r36b.sh
else
    exec bash gpurun/next-r36a.sh
fi
