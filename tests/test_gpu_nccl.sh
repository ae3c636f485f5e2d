#!/bin/sh
# test_gpu_nccl.sh: tensor parallelism across real GPUs through NCCL (tests/test_gpu_forward
# --nccl): every fixture at every precision and every tp in 2, 4, 8 that the host has GPUs
# for, against the golden and against the single-GPU tp mode; decode, repeatability,
# layer isolation and the profiler over NCCL. Skips (77) without CUDA, without NCCL or
# with fewer than 2 GPUs, and says which.
set -u
if [ -n "${LLAMA_DIFF:-}" ]; then BIN=${LLAMA_DIFF%/*}/tests/test_gpu_forward; else BIN=$(dirname "$0")/test_gpu_forward; fi
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
exec "$BIN" --nccl
