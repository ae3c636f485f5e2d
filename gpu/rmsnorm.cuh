/* rmsnorm.cuh: the arithmetic of rmsnorm's "vec" kernel (rmsnorm.cu), which the GEMVs with
 * the norm before them (linear.cu, lr_gpu_norm_linear_silu and _rope_cache) repeat so that
 * their bits are the same: how a row is laid over the block's threads, each thread's sum
 * of squares, the block's sum, 1 / rms, and the scaled element. Each operation is spelled
 * with its rounding (__fmaf_rn, __fdiv_rn, ...), so that no compilation can contract one
 * differently in the two kernels; these are the operations nvcc chose for the unpinned
 * source before (the same PTX). Private to the backend's CUDA files. */
#ifndef LLAMAREF_GPU_RMSNORM_CUH
#define LLAMAREF_GPU_RMSNORM_CUH

#include "common.cuh"

/* The row of "vec": thread p of RMS_VEC_THREADS holds chunks k = p + c RMS_VEC_THREADS (c
 * = 0 .. RMS_VEC_CHUNKS - 1, k < H / 4) of 4 consecutive elements, loaded 4 at a time. */
#define RMS_VEC_THREADS 512
#define RMS_VEC_CHUNKS 4
#define RMS_VEC_WARPS (RMS_VEC_THREADS / 32)

/* 4 elements of E in one load. */
template <typename E> struct vec4_of;
template <> struct vec4_of<float> { typedef float4 T; };
template <> struct vec4_of<__half> { typedef uint2 T; };
template <> struct vec4_of<__nv_bfloat16> { typedef uint2 T; };

/* An element of the stream: x + residual (x + 0 where the stream starts, as the backend's
 * zeroed residual gives). */
static __device__ __forceinline__ float rms_stream(float x, float r) { return __fadd_rn(x, r); }

/* A thread's sum of squares after element v: elements in chunk order, then j. */
static __device__ __forceinline__ float rms_sumsq(float ss, float v) { return __fmaf_rn(v, v, ss); }

/* The warp's sum of its lanes' values: the xor tree (offsets 16, 8, 4, 2, 1); every lane
 * ends with the same bits. */
static __device__ __forceinline__ float rms_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* The row's sum from its RMS_VEC_WARPS warp sums, added in warp order from 0. */
static __device__ __forceinline__ float rms_row_sum(const float *warp_sums) {
    float total = 0.0f;
    for (int i = 0; i < RMS_VEC_WARPS; i++)
        total = __fadd_rn(total, warp_sums[i]);
    return total;
}

/* 1 / sqrt(ss / H + eps). */
static __device__ __forceinline__ float rms_inv(float ss, int64_t H, float eps) {
    return __frcp_rn(__fsqrt_rn(__fadd_rn(__fdiv_rn(ss, (float)H), eps)));
}

/* The normed element before its rounding to the dtype: (v * inv) * w. */
static __device__ __forceinline__ float rms_scale(float v, float inv, float w) {
    return __fmul_rn(__fmul_rn(v, inv), w);
}

#endif
