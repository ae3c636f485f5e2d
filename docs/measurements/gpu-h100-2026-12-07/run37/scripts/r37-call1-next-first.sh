# The first call of a session (session 31): on an H200, next-r36b.sh (the decode rows with
# fewer kernels a step: fdtc, the norms fused; batch 1 is above target only on the H200);
# on any other card, ../gpu-h100-2026-12-06/next-r35a.sh (Nsight Compute on the fa3
# family). Copy this and both scripts to gpurun/ first.
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
    exec bash gpurun/next-r36b.sh
else
    exec bash gpurun/next-r35a.sh
fi
