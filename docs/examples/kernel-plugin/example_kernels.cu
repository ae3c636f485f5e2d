/* example_kernels.cu: an example kernel plugin for llamaref, built out of tree against an
 * installed llamaref (see README.md): two RMSNorm variants and a SiluAndMul variant that
 * `llama-diff --plugin ./libexample_kernels.so --kernel rmsnorm=example-row` runs in a
 * whole model.
 *
 *   rmsnorm    example-row      one block per row, block-wide sum of squares (correct)
 *   rmsnorm    example-planted  the same with a planted bug: the last element of each row
 *                               is not multiplied by its weight. The checks must fail it.
 *   activation example-silu     one thread per output element, F16 and BF16 only (a call
 *                               at F32 is refused before the launcher runs)
 *
 * The plugin uses nothing of libllamaref but its headers: everything it needs comes in
 * the argument structs of llamaref_kernels.h, and a launcher returns a status of
 * llamaref.h. Arithmetic is float32, each output rounded to the dtype once (the default
 * rounding, so no .rounding is declared). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <llamaref_kernels.h>

#define THREADS 256
#define MAX_BLOCKS 65535 /* grid cap: kernels loop grid-stride over rows */

/* Element types: load as float32, store rounded to nearest even. */
static __device__ __forceinline__ float load(const float *p) { return *p; }
static __device__ __forceinline__ float load(const __half *p) { return __half2float(*p); }
static __device__ __forceinline__ float load(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
static __device__ __forceinline__ void store(float *p, float v) { *p = v; }
static __device__ __forceinline__ void store(__half *p, float v) { *p = __float2half_rn(v); }
static __device__ __forceinline__ void store(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

/* Sum over the block, the same value in every thread. part: 32 floats of shared memory. */
static __device__ float block_sum(float v, float *part) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    __syncthreads(); /* part may still be read for the previous row */
    if (lane == 0) part[warp] = v;
    __syncthreads();
    float total = 0;
    for (int i = 0; i < nwarps; i++)
        total += part[i];
    return total;
}

/* y (T, H) = v / sqrt(mean(v^2) + eps) * w, v = x or residual += x (float32, stored back).
 * PLANTED: the last element of each row without its weight. */
template <typename E, bool PLANTED>
static __global__ void rmsnorm_kernel(E *y, float *residual, const E *x, const E *w, int64_t T, int64_t H,
                                      float eps) {
    __shared__ float part[32];
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        const E *xr = x + t * H;
        float *rr = residual ? residual + t * H : NULL;
        float ss = 0;
        for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
            float v = load(xr + i);
            if (rr) {
                v += rr[i];
                rr[i] = v;
            }
            ss += v * v;
        }
        float inv = 1.0f / sqrtf(block_sum(ss, part) / (float)H + eps);
        /* each thread rereads only what it wrote above, so y may alias x */
        for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
            float v = rr ? rr[i] : load(xr + i);
            bool skip_weight = PLANTED && i == H - 1;
            store(y + t * H + i, skip_weight ? v * inv : v * inv * load(w + i));
        }
    }
}

template <typename E, bool PLANTED> static int rmsnorm_typed(const lr_gpu_rmsnorm_args *a, cudaStream_t s) {
    unsigned int grid = (unsigned int)(a->T < MAX_BLOCKS ? a->T : MAX_BLOCKS);
    rmsnorm_kernel<E, PLANTED><<<grid, THREADS, 0, s>>>((E *)a->y, a->residual, (const E *)a->x,
                                                        (const E *)a->w, a->T, a->H, a->eps);
    return cudaGetLastError() == cudaSuccess ? LR_OK : LR_E_DEVICE;
}

/* The launchers the table names: args is an lr_gpu_rmsnorm_args. */
template <bool PLANTED> static int rmsnorm_launch(const void *args, cudaStream_t s) {
    const lr_gpu_rmsnorm_args *a = (const lr_gpu_rmsnorm_args *)args;
    switch (a->dt) {
    case LR_F32:
        return rmsnorm_typed<float, PLANTED>(a, s);
    case LR_F16:
        return rmsnorm_typed<__half, PLANTED>(a, s);
    case LR_BF16:
        return rmsnorm_typed<__nv_bfloat16, PLANTED>(a, s);
    default:
        return LR_E_INVAL;
    }
}

/* out (T, NI) = silu(gate) * up, or silu(gate) alone; gu (T, 2 NI) = [gate | up]. */
template <typename E>
static __global__ void silu_kernel(E *out, const E *gu, int64_t T, int64_t NI, bool mul) {
    int64_t n = T * NI, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        int64_t t = i / NI, j = i % NI;
        float g = load(gu + t * 2 * NI + j);
        float a = g / (1.0f + expf(-g));
        store(out + i, mul ? a * load(gu + t * 2 * NI + NI + j) : a);
    }
}

template <typename E> static int silu_typed(const lr_gpu_activation_args *a, cudaStream_t s) {
    int64_t blocks = (a->T * a->NI + THREADS - 1) / THREADS;
    unsigned int grid = (unsigned int)(blocks < MAX_BLOCKS ? blocks : MAX_BLOCKS);
    silu_kernel<E><<<grid, THREADS, 0, s>>>((E *)a->out, (const E *)a->gu, a->T, a->NI, a->mul);
    return cudaGetLastError() == cudaSuccess ? LR_OK : LR_E_DEVICE;
}

static int silu_launch(const void *args, cudaStream_t s) {
    const lr_gpu_activation_args *a = (const lr_gpu_activation_args *)args;
    switch (a->dt) { /* F32 never arrives: the table says F16 and BF16 */
    case LR_F16:
        return silu_typed<__half>(a, s);
    case LR_BF16:
        return silu_typed<__nv_bfloat16>(a, s);
    default:
        return LR_E_INVAL;
    }
}

static const lr_kernel_variant variants[] = {
    {LR_GPU_FAM_RMSNORM, "example-row", "example plugin: one block of 256 per row, block-wide sum of squares",
     LR_KERNEL_ALL_DTYPES, 0, rmsnorm_launch<false>},
    {LR_GPU_FAM_RMSNORM, "example-planted",
     "example plugin, planted bug: the last element of each row without its weight", LR_KERNEL_ALL_DTYPES, 0,
     rmsnorm_launch<true>},
    {LR_GPU_FAM_ACTIVATION, "example-silu", "example plugin: one thread per output element (F16, BF16)",
     LR_KERNEL_F16 | LR_KERNEL_BF16, 0, silu_launch},
};

LR_KERNEL_PLUGIN_EXPORT const lr_kernel_plugin llamaref_kernel_plugin = {
    LR_KERNEL_ABI_VERSION, "example", sizeof variants / sizeof variants[0], variants};
