/* example_kernels.cu: an example kernel plugin for llamaref, built out of tree against an
 * installed llamaref (see README.md): two RMSNorm variants, a SiluAndMul variant and two
 * GEMVs that `llama-diff --plugin ./libexample_kernels.so --kernel rmsnorm=example-row`
 * runs in a whole model and `llama-diff ops --plugin ./libexample_kernels.so` sweeps op by
 * op.
 *
 *   rmsnorm    example-row           one block per row, block-wide sum of squares (correct)
 *   rmsnorm    example-planted       the same with a planted bug: the last element of each
 *                                    row is not multiplied by its weight. The checks must
 *                                    fail it.
 *   activation example-silu          one thread per output element, F16 and BF16 only (a
 *                                    call at F32 is refused before the launcher runs)
 *   linear     example-gemv          T <= 8 (a decode step): one warp per output feature,
 *                                    lanes striding over K, a warp-shuffle sum; larger T to
 *                                    cuBLAS through the caller's handle (correct)
 *   linear     example-gemv-planted  the same with a planted bug: the last input feature
 *                                    left out at T <= 8. The checks must fail it.
 *
 * The plugin uses nothing of libllamaref but its headers: everything it needs comes in
 * the argument structs of llamaref_kernels.h (the linear family's carries the caller's
 * cuBLAS handle), and a launcher returns a status of llamaref.h. It links cuBLAS itself,
 * shared, the library llamaref's CUDA path links, so the handle is that library's.
 * Arithmetic is float32, each output rounded to the dtype once (the default rounding, so
 * no .rounding is declared). */
#include <cublas_v2.h>
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

/* ---- linear: y (T, N) = x (T, K) w (N, K)^T ----------------------------------------------
 * For the few tokens of a decode step (T <= GEMV_MAX_T) the product is bound by reading w:
 * one warp per output feature n, lanes striding over K one element at a time, each weight
 * element met by every token's x (the token count a template argument, so the
 * accumulators are registers); fmaf into float32, a xor-butterfly over the warp, lane t
 * stores token t's output rounded once. PLANTED stops one term short. Larger T goes to
 * cuBLAS: the caller's handle (lr_gpu_linear_args.blas) bound to the launch stream, dtype
 * operands, float32 accumulation (CUBLAS_COMPUTE_32F: no TF32), rounded once. */
#define GEMV_MAX_T 8
#define GEMV_WARPS 8 /* output features per block of 256 threads */

template <typename E, int MT, bool PLANTED>
static __global__ void gemv_kernel(E *y, const E *x, const E *w, int64_t N, int64_t K) {
    const int lane = threadIdx.x & 31;
    const int64_t terms = PLANTED ? K - 1 : K, step = (int64_t)gridDim.x * GEMV_WARPS;
    /* n is warp-uniform, so the shuffles below run with every lane of the warp */
    for (int64_t n = (int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5); n < N; n += step) {
        const E *wr = w + n * K;
        float acc[MT];
#pragma unroll
        for (int t = 0; t < MT; t++)
            acc[t] = 0.0f;
        for (int64_t k = lane; k < terms; k += 32) {
            float wk = load(wr + k);
#pragma unroll
            for (int t = 0; t < MT; t++)
                acc[t] = fmaf(wk, load(x + t * K + k), acc[t]);
        }
#pragma unroll
        for (int t = 0; t < MT; t++)
            for (int o = 16; o > 0; o >>= 1)
                acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], o);
#pragma unroll
        for (int t = 0; t < MT; t++)
            if (lane == t) store(y + t * N + n, acc[t]);
    }
}

template <typename E, int MT, bool PLANTED> static int gemv_t(const lr_gpu_linear_args *a, cudaStream_t s) {
    int64_t blocks = (a->N + GEMV_WARPS - 1) / GEMV_WARPS;
    unsigned int grid = (unsigned int)(blocks < MAX_BLOCKS ? blocks : MAX_BLOCKS);
    gemv_kernel<E, MT, PLANTED>
        <<<grid, GEMV_WARPS * 32, 0, s>>>((E *)a->y, (const E *)a->x, (const E *)a->w, a->N, a->K);
    return cudaGetLastError() == cudaSuccess ? LR_OK : LR_E_DEVICE;
}

template <typename E, bool PLANTED> static int gemv_typed(const lr_gpu_linear_args *a, cudaStream_t s) {
    switch (a->T) {
    case 1:
        return gemv_t<E, 1, PLANTED>(a, s);
    case 2:
        return gemv_t<E, 2, PLANTED>(a, s);
    case 3:
        return gemv_t<E, 3, PLANTED>(a, s);
    case 4:
        return gemv_t<E, 4, PLANTED>(a, s);
    case 5:
        return gemv_t<E, 5, PLANTED>(a, s);
    case 6:
        return gemv_t<E, 6, PLANTED>(a, s);
    case 7:
        return gemv_t<E, 7, PLANTED>(a, s);
    default:
        return gemv_t<E, 8, PLANTED>(a, s);
    }
}

/* Row-major y = x w^T is column-major Y^T (N, T) = W (K, N)^T X^T (K, T). */
static int linear_cublas(const lr_gpu_linear_args *a, cudaStream_t s) {
    cublasHandle_t h = (cublasHandle_t)a->blas;
    cudaStream_t cur = NULL;
    if (cublasGetStream(h, &cur) != CUBLAS_STATUS_SUCCESS) return LR_E_DEVICE;
    if (cur != s && cublasSetStream(h, s) != CUBLAS_STATUS_SUCCESS) return LR_E_DEVICE;
    cudaDataType_t t = a->dt == LR_BF16 ? CUDA_R_16BF : a->dt == LR_F16 ? CUDA_R_16F : CUDA_R_32F;
    float one = 1, zero = 0;
    cublasStatus_t st =
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)a->N, (int)a->T, (int)a->K, &one, a->w, t, (int)a->K,
                     a->x, t, (int)a->K, &zero, a->y, t, (int)a->N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return st == CUBLAS_STATUS_SUCCESS ? LR_OK : LR_E_DEVICE;
}

/* The launchers the table names: args is an lr_gpu_linear_args (sizes 1 to INT_MAX). */
template <bool PLANTED> static int gemv_launch(const void *args, cudaStream_t s) {
    const lr_gpu_linear_args *a = (const lr_gpu_linear_args *)args;
    if (a->T > GEMV_MAX_T) return linear_cublas(a, s);
    switch (a->dt) {
    case LR_F32:
        return gemv_typed<float, PLANTED>(a, s);
    case LR_F16:
        return gemv_typed<__half, PLANTED>(a, s);
    case LR_BF16:
        return gemv_typed<__nv_bfloat16, PLANTED>(a, s);
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
    {LR_GPU_FAM_LINEAR, "example-gemv",
     "example plugin: T <= 8, one warp per output feature, fmaf over K, warp-shuffle sum; cuBLAS (the "
     "caller's handle) for T > 8",
     LR_KERNEL_ALL_DTYPES, 0, gemv_launch<false>},
    {LR_GPU_FAM_LINEAR, "example-gemv-planted",
     "example plugin, planted bug: example-gemv with the last input feature left out at T <= 8",
     LR_KERNEL_ALL_DTYPES, 0, gemv_launch<true>},
};

LR_KERNEL_PLUGIN_EXPORT const lr_kernel_plugin llamaref_kernel_plugin = {
    LR_KERNEL_ABI_VERSION, "example", sizeof variants / sizeof variants[0], variants};
