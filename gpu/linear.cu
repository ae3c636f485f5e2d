/* linear.cu: the matrix product every parallel linear layer does on one rank (qkv_proj,
 * o_proj, gate_up_proj, down_proj, the LM head), the twin of ref/cpu/ops/linear.c without
 * its bias (lr_gpu_add_bias adds it after, as the rounding map says). Variants: cuBLAS
 * (the call the backend made until auto became the default) and two hand-written GEMVs for
 * the few tokens of a decode step, which read each weight row once for every token of the
 * batch: gemv (one warp per row) and gemv2 (a block per 4 rows, K split over its threads);
 * auto, the default, picks gemv or cublas by the token count and the shape. */
#include "common.cuh"
#include "rmsnorm.cuh"
#include "tensorcore.cuh"

#include <cooperative_groups.h>
#include <limits.h>

#define LR_GPU_BLAS_MATH ((cublasMath_t)(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION))

/* Every linear launcher receives an lr_gpu_linear_args (llamaref_kernels.h). */
typedef lr_gpu_linear_args linear_args;

/* ---- cublas ---------------------------------------------------------------------------- */

static cudaDataType_t cuda_type(lr_dtype dt) {
    return dt == LR_BF16 ? CUDA_R_16BF : dt == LR_F16 ? CUDA_R_16F : CUDA_R_32F;
}

/* The handle runs its work on s from here on; it is left so (a handle serves one stream,
 * as the backend's one per rank does, so this is a no-op there). */
static int cublas_bind(cublasHandle_t blas, cudaStream_t s) {
    cudaStream_t cur = NULL;
    CUBLAS_CHECK(cublasGetStream(blas, &cur));
    if (cur != s) CUBLAS_CHECK(cublasSetStream(blas, s));
    cublasMath_t mode;
    CUBLAS_CHECK(cublasGetMathMode(blas, &mode));
    if (mode != LR_GPU_BLAS_MATH) CUBLAS_CHECK(cublasSetMathMode(blas, LR_GPU_BLAS_MATH));
    return LR_OK;
}

/* The math mode of every cuBLAS handle of the library (lr_gpu_blas_create; cublas_bind
 * sets it on a caller's handle): float32 compute as the default, and a K split across
 * blocks summed in float32 too. cuBLAS may otherwise add a split K's partial products in
 * the output dtype, a second rounding the rounding map does not have (PyTorch allows it by
 * default: torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction). On the H200
 * a GEMM of T 16, N 37, K 4100 at fp16 was 2 ulps off in places and 2.6 times the op
 * sweep's relative L2 with it. */
extern "C" int lr_gpu_blas_create(cublasHandle_t *out) {
    if (cublasCreate(out) != CUBLAS_STATUS_SUCCESS) return lr_fail(LR_E_DEVICE, "cuda: cannot create a cuBLAS handle");
    if (cublasSetMathMode(*out, LR_GPU_BLAS_MATH) != CUBLAS_STATUS_SUCCESS) {
        cublasDestroy(*out);
        return lr_fail(LR_E_DEVICE, "cuda: cannot set the cuBLAS handle's math mode");
    }
    return LR_OK;
}

/* Row-major y = x w^T is column-major Y^T (N, T) = W (K, N)^T X^T (K, T): dtype operands,
 * float32 accumulation (CUBLAS_COMPUTE_32F: no TF32), the output rounded once to dt. */
int lr_gpu_linear_cublas(const void *args, cudaStream_t s) {
    const linear_args *a = (const linear_args *)args;
    int rc = cublas_bind(a->blas, s);
    if (rc) return rc;
    float one = 1, zero = 0;
    cudaDataType_t t = cuda_type(a->dt);
    CUBLAS_CHECK(cublasGemmEx(a->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)a->N, (int)a->T, (int)a->K, &one, a->w,
                              t, (int)a->K, a->x, t, (int)a->K, &zero, a->y, t, (int)a->N, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
    return LR_OK;
}

/* ---- gemv -------------------------------------------------------------------------------
 * For T <= GEMV_MAX_T tokens (decode), the product is bound by reading w once: one warp
 * per output feature n (a row of w), lanes striding over K. Each load of w (16 bytes:
 * 8 bf16/f16 or 4 f32 elements) meets the same 16 bytes of every token's row of x, so w
 * is read once for all T tokens; x (at most 8 rows) stays in L1/L2. Arithmetic order, per
 * output (n, t): each lane accumulates its elements k = lane * VEC + j + i * 32 * VEC
 * (i ascending, then j) with fmaf into one float32, then a xor-butterfly sums the 32
 * lanes (offsets 16, 8, 4, 2, 1; every lane ends with the same bits, since float32
 * addition commutes); lane t stores token t's sum, rounded once to the dtype. Without
 * 16-byte alignment (K not a multiple of VEC, or x or w not 16-byte aligned) the lanes
 * stride one element at a time (k = lane + 32 i), the same arithmetic otherwise.
 * tests/test_gpu_linear.c simulates both orders on the CPU. */
#define GEMV_MAX_T 8
#define AUTO_GEMV_MAX_T 2 /* the tokens auto gives gemv (auto, below) */
#define GEMV_WARPS 8 /* output features (warps) per block */
#define MAX_BLOCKS 65535

/* 16 bytes of E as float32 (exact), element j from the low bytes up, as memory holds them. */
template <typename E> struct vec16;
template <> struct vec16<float> {
    static __device__ __forceinline__ void unpack(uint4 v, float *f) {
        f[0] = __uint_as_float(v.x), f[1] = __uint_as_float(v.y);
        f[2] = __uint_as_float(v.z), f[3] = __uint_as_float(v.w);
    }
};
template <> struct vec16<__nv_bfloat16> {
    static __device__ __forceinline__ void unpack(uint4 v, float *f) {
        const unsigned int u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++)
            f[2 * i] = __uint_as_float(u[i] << 16), f[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
    }
};
template <> struct vec16<__half> {
    static __device__ __forceinline__ void unpack(uint4 v, float *f) {
        const unsigned int u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            f[2 * i] = __half2float(__ushort_as_half((unsigned short)(u[i] & 0xffffu)));
            f[2 * i + 1] = __half2float(__ushort_as_half((unsigned short)(u[i] >> 16)));
        }
    }
};

/* One vector step of a gemv lane: vector i of its row of w (wv, loaded) against vector i of
 * every token's row of x, accumulated in order (j ascending) into acc[t]. */
template <typename E, int MT>
static __device__ __forceinline__ void gemv_vec_step(float *acc, uint4 wv, const E *__restrict__ x, int64_t K,
                                                     int64_t i) {
    constexpr int V = 16 / sizeof(E);
    float wf[V], xf[V];
    vec16<E>::unpack(wv, wf);
#pragma unroll
    for (int t = 0; t < MT; t++) {
        vec16<E>::unpack(((const uint4 *)(x + t * K))[i], xf);
#pragma unroll
        for (int j = 0; j < V; j++)
            acc[t] = fmaf(wf[j], xf[j], acc[t]);
    }
}

/* Launched with programmatic dependent launch (common.cuh). Before its wait for the kernel
 * before it (whose output is x), each lane asks for the first vectors of its warp's first
 * row of w (w is written by no kernel): at decode that kernel is a norm, the attention or
 * the activation, microseconds of little traffic, behind which the weights' first reads now
 * go. The vectors are used in the loop's order, so the sums are the same bits.
 *  - Staged: GEMV_STAGED vectors a lane go to shared memory by cp.async (4 KB a warp at 8,
 *    half a 4096-wide bf16 row), where the whole grid is resident at once with that memory
 *    and registers for GEMV_STAGED_BLOCKS blocks an SM (gemv_staged_fits), at T <=
 *    GEMV_STAGED_MAX_T: o_proj and down_proj at batch 1 on the H200 (512 blocks, one
 *    wave of 4 an SM); qkv_proj's 768 are not. Each lane reads back only what it copied
 *    itself, after cp.async.wait_group: no barrier. Run 23 (H200, a batch-1 step with
 *    graphs, the same calls): 4.870 ms unstaged, 4.663 with 8 vectors and 4 blocks, 4.684
 *    with 12, 4.923 with 13 (52 KB a block leave L1 little room for x); 6 blocks an SM,
 *    which stage qkv_proj too but hold a thread to 40 registers, 5.149 (8 vectors) and
 *    4.969 (9).
 *  - Otherwise GEMV_PRELOAD vectors a lane go to registers. Two (2 x 16 bytes x 32 lanes, a
 *    quarter of a 4096-wide bf16 row) cost no blocks per SM; 8 cost occupancy (run 21 on
 *    the H200: a batch-1 step 6.0 ms eager, against 4.8-4.9 with 2 or 4). A grid of several
 *    waves (gate_up_proj, the LM head) would gain from staging only in its first wave, and
 *    lose blocks per SM. Asking L2 for each row's first 4 KB with prefetch.global.L2
 *    instead made the step slower (with graphs 5.15 ms, 5.89 with 8 KB, 4.81 with neither). */
#ifndef GEMV_PRELOAD
#define GEMV_PRELOAD 2
#endif
#ifndef GEMV_STAGED
#define GEMV_STAGED 8
#endif
#ifndef GEMV_STAGED_BLOCKS
#define GEMV_STAGED_BLOCKS 4 /* a staged grid's blocks an SM (registers: 64 a thread) */
#endif
#define GEMV_STAGED_MAX_T 2 /* auto's gemv range; more tokens' accumulators would spill */
static_assert(GEMV_PRELOAD >= 0 && GEMV_STAGED >= 0 && GEMV_STAGED * GEMV_WARPS * 32 * 16 <= 227 * 1024,
              "gemv: GEMV_PRELOAD, GEMV_STAGED >= 0; the staged vectors within an SM's shared memory");

template <typename E, int MT, bool VEC, int SP>
static __global__ void __launch_bounds__(GEMV_WARPS * 32, SP > 0 ? GEMV_STAGED_BLOCKS : 1)
    linear_gemv_kernel(E *__restrict__ y, const E *__restrict__ x, const E *__restrict__ w, int64_t N,
                       int64_t K) {
    constexpr int V = 16 / sizeof(E), PRE = VEC && SP == 0 ? GEMV_PRELOAD : 0;
    static_assert(VEC || SP == 0, "gemv: only the vector path stages w");
    extern __shared__ uint4 gemv_stage[]; /* SP x 32 vectors a warp, lane-minor */
    const int lane = threadIdx.x & 31;
    const int64_t step = (int64_t)gridDim.x * GEMV_WARPS,
                  n0 = (int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    const int64_t nv = K / V;
    uint4 *stage = gemv_stage + (threadIdx.x >> 5) * SP * 32 + lane;
    pdl_trigger();
    uint4 pre[PRE > 0 ? PRE : 1];
#pragma unroll
    for (int u = 0; u < PRE; u++) {
        const int64_t i = lane + 32 * u;
        pre[u] = n0 < N && i < nv ? ((const uint4 *)(w + n0 * K))[i] : make_uint4(0, 0, 0, 0);
    }
    if (SP > 0) {
#pragma unroll
        for (int u = 0; u < SP; u++) {
            const int64_t i = lane + 32 * (PRE + u);
            const bool ok = n0 < N && i < nv;
            cp_async16(smem_u32(stage + 32 * u),
                       ok ? (const void *)((const uint4 *)(w + n0 * K) + i) : (const void *)w, ok ? 16 : 0);
        }
        cp_async_commit();
    }
    pdl_wait();
    /* n is warp-uniform, so the shuffles below run with every lane of the warp. */
    for (int64_t n = n0; n < N; n += step) {
        const E *wr = w + n * K;
        float acc[MT];
#pragma unroll
        for (int t = 0; t < MT; t++)
            acc[t] = 0.0f;
        if (VEC) {
            const uint4 *w4 = (const uint4 *)wr;
            int64_t i = lane;
            if (n == n0) {
#pragma unroll
                for (int u = 0; u < PRE; u++, i += 32)
                    if (i < nv) gemv_vec_step<E, MT>(acc, pre[u], x, K, i);
                if (SP > 0) {
                    cp_async_wait<0>();
#pragma unroll
                    for (int u = 0; u < SP; u++, i += 32)
                        if (i < nv) gemv_vec_step<E, MT>(acc, stage[32 * u], x, K, i);
                }
            }
            for (; i < nv; i += 32)
                gemv_vec_step<E, MT>(acc, w4[i], x, K, i);
        } else {
            for (int64_t k = lane; k < K; k += 32) {
                float wk = ld(wr + k);
#pragma unroll
                for (int t = 0; t < MT; t++)
                    acc[t] = fmaf(wk, ld(x + t * K + k), acc[t]);
            }
        }
#pragma unroll
        for (int t = 0; t < MT; t++)
            for (int o = 16; o > 0; o >>= 1)
                acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], o);
#pragma unroll
        for (int t = 0; t < MT; t++)
            if (lane == t) st(y + t * N + n, acc[t]);
    }
    if (SP > 0 && n0 >= N) cp_async_wait<0>(); /* a warp without a row: its empty copies done */
}

/* Blocks of a staged GEMV kernel (GEMV_WARPS warps, smem bytes of dynamic shared memory) an
 * SM holds at once; 0 where the runtime refuses the memory (it then runs unstaged). */
template <typename Kernel> static int staged_blocks_per_sm(Kernel kernel, size_t smem) {
    int n = 0;
    cudaError_t e = smem > 48 * 1024
                        ? cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)
                        : cudaSuccess;
    if (e == cudaSuccess)
        e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, GEMV_WARPS * 32, smem);
    if (e != cudaSuccess) n = 0, (void)cudaGetLastError();
    return n;
}

/* Whether every block of a grid of this many fits on the card at once with the staged
 * vectors' shared memory (asked once an instance: the cards of a process are alike). */
template <typename E, int MT> static bool gemv_staged_fits(unsigned int grid) {
    static int per_sm = -1;
    if (GEMV_STAGED == 0) return false;
    if (per_sm < 0)
        per_sm = staged_blocks_per_sm(linear_gemv_kernel<E, MT, true, GEMV_STAGED>,
                                      (size_t)GEMV_STAGED * GEMV_WARPS * 32 * 16);
    return (int64_t)grid <= (int64_t)lr_gpu_sm_count() * per_sm;
}

template <typename E, int MT> static int linear_gemv_t(const linear_args *a, cudaStream_t s) {
    constexpr int V = 16 / sizeof(E);
    bool vec = a->K % V == 0 && ((uintptr_t)a->x & 15) == 0 && ((uintptr_t)a->w & 15) == 0;
    int64_t blocks = (a->N + GEMV_WARPS - 1) / GEMV_WARPS;
    unsigned int grid = (unsigned int)(blocks < MAX_BLOCKS ? blocks : MAX_BLOCKS);
    E *y = (E *)a->y;
    const E *x = (const E *)a->x, *w = (const E *)a->w;
    if constexpr (MT <= GEMV_STAGED_MAX_T) {
        if (vec && gemv_staged_fits<E, MT>(grid)) {
            LR_LAUNCH(linear_gemv_kernel<E, MT, true, GEMV_STAGED>, grid, GEMV_WARPS * 32,
                      (size_t)GEMV_STAGED * GEMV_WARPS * 32 * 16, s, y, x, w, a->N, a->K);
            return LR_OK;
        }
    }
    if (vec)
        LR_LAUNCH(linear_gemv_kernel<E, MT, true, 0>, grid, GEMV_WARPS * 32, 0, s, y, x, w, a->N, a->K);
    else
        LR_LAUNCH(linear_gemv_kernel<E, MT, false, 0>, grid, GEMV_WARPS * 32, 0, s, y, x, w, a->N, a->K);
    return LR_OK;
}

/* The token count T (1 to 8, GEMV_MAX_T) as a template argument of LAUNCH<E, T>, so that
 * the accumulators are registers; cuBLAS for any other T. */
#define GEMV_BY_TOKENS(LAUNCH, a, s)                                                                          \
    switch ((a)->T) {                                                                                         \
    case 1: return LAUNCH<E, 1>(a, s);                                                                        \
    case 2: return LAUNCH<E, 2>(a, s);                                                                        \
    case 3: return LAUNCH<E, 3>(a, s);                                                                        \
    case 4: return LAUNCH<E, 4>(a, s);                                                                        \
    case 5: return LAUNCH<E, 5>(a, s);                                                                        \
    case 6: return LAUNCH<E, 6>(a, s);                                                                        \
    case 7: return LAUNCH<E, 7>(a, s);                                                                        \
    case 8: return LAUNCH<E, 8>(a, s);                                                                        \
    default: return lr_gpu_linear_cublas(a, s);                                                               \
    }

template <typename E> static int linear_gemv(const linear_args *a, cudaStream_t s) {
    GEMV_BY_TOKENS(linear_gemv_t, a, s)
}

int lr_gpu_linear_gemv(const void *args, cudaStream_t s) {
    const linear_args *a = (const linear_args *)args;
    if (a->T > GEMV_MAX_T) return lr_gpu_linear_cublas(args, s);
    return LR_DISPATCH_DTYPE(a->dt, linear_gemv, a, s);
}

/* ---- gemv over row pairs, with an epilogue ----------------------------------------------
 * gemv's arithmetic on two rows of w at a time, then an epilogue given both results: a GEMV
 * that ends with the small op after it. lr_gpu_linear_silu: gate_up_proj's gate and up rows
 * of one feature, then SiluAndMul; lr_gpu_linear_rope_cache: qkv_proj's rows i and i + hd/2
 * of one head, then RoPE and the cache write. Warp p of the grid takes pair p (grid-stride):
 * rows Epi::row(p, 0) and Epi::row(p, 1), each summed as gemv sums a row (the same lanes,
 * vector order, butterfly), the loads of both issued together; lane t rounds token t's two
 * sums to E, as gemv stores them, and hands those values to Epi::finish, so the epilogue
 * starts from gemv's stored bits. Before the PDL wait each lane asks for the first vectors of
 * both rows, as gemv does for one: PAIR_PRELOAD of each to registers, or, where the whole
 * grid is resident at once with the memory (pair_staged_fits), PAIR_STAGED of each to
 * shared memory by cp.async (8 in all, gemv's 4 KB a warp): qkv_proj at batch 1 on the H200
 * is 384 blocks of pairs, one wave at 4 blocks an SM, where gemv's 768 of single rows were
 * not. For T <= PAIR_MAX_T (auto's gemv range) with 16-byte aligned rows
 * (lr_gpu_linear_fuses); the entry points run the two kernels otherwise. */
#define PAIR_MAX_T LR_GPU_LINEAR_FUSED_MAX_T
static_assert(PAIR_MAX_T <= AUTO_GEMV_MAX_T && PAIR_MAX_T <= GEMV_MAX_T,
              "gemv pairs: their tokens are gemv's under auto");
#ifndef PAIR_PRELOAD
#define PAIR_PRELOAD 2
#endif
#ifndef PAIR_STAGED
#define PAIR_STAGED 4
#endif
#ifndef PAIR_STAGED_BLOCKS
#define PAIR_STAGED_BLOCKS 4
#endif
static_assert(PAIR_PRELOAD >= 0 && PAIR_STAGED >= 0 && 2 * PAIR_STAGED * GEMV_WARPS * 32 * 16 <= 227 * 1024,
              "gemv pairs: PAIR_PRELOAD, PAIR_STAGED >= 0; the staged vectors within an SM's shared memory");

/* The layer's norm before a GEMV over row pairs (lr_gpu_norm_linear_*): what rmsnorm's vec
 * kernel computes for the T rows of the stream (rmsnorm.cuh), formed by every block into its
 * own shared memory as the GEMV's x, and the stream stored by block 0. */
template <typename E> struct pair_norm {
    const E *hidden;     /* (T, K) */
    const float *res_in; /* (T, K), or NULL: the stream starts (hidden + 0) */
    float *res_out;      /* (T, K): hidden + res_in */
    const E *w;          /* (K) */
    float eps;
};

/* Chunk k (4 elements) of row t of the stream, rows of K: hidden + residual, as vec forms
 * them. */
template <typename E>
static __device__ __forceinline__ void pair_norm_chunk(const pair_norm<E> &nm, int t, int64_t K, int64_t k,
                                                       float *v) {
    typedef typename vec4_of<E>::T V4;
    const V4 xv = ((const V4 *)(nm.hidden + t * K))[k];
    const E *xe = (const E *)&xv;
    const float4 r = nm.res_in ? ((const float4 *)(nm.res_in + t * K))[k] : make_float4(0, 0, 0, 0);
    const float rr[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int j = 0; j < 4; j++)
        v[j] = rms_stream(elem<E>::load(xe[j]), rr[j]);
}

/* xs (MT, K) = rms_norm(stream) * w, and (block 0) res_out = the stream, with vec's bits: the
 * block's GEMV_WARPS * 32 threads play vec's RMS_VEC_THREADS, thread p the parts of vec's
 * threads p + u GEMV_WARPS * 32 (u = 0 .. PAIR_NORM_U - 1), so warp w of the block is vec's
 * warp w + u GEMV_WARPS with the same lanes: each of vec's threads sums its own chunks in
 * order, each of its warps in the same xor tree, and the warp sums are added in vec's warp
 * order. Every thread of the block calls it (two barriers). The second pass forms the stream
 * again from memory (L1) rather than keeping it: its registers would be the GEMV's. */
#define PAIR_NORM_U (RMS_VEC_THREADS / (GEMV_WARPS * 32))
static_assert(RMS_VEC_THREADS % (GEMV_WARPS * 32) == 0,
              "gemv pairs' norm: vec's threads a whole number of blocks");
template <typename E, int MT>
static __device__ void pair_norm_rows(E *xs, const pair_norm<E> &nm, int64_t K) {
    typedef typename vec4_of<E>::T V4;
    __shared__ float part[MT][RMS_VEC_WARPS];
    const int64_t nc = K / 4;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int t = 0; t < MT; t++)
#pragma unroll
        for (int u = 0; u < PAIR_NORM_U; u++) {
            const int p = threadIdx.x + u * GEMV_WARPS * 32;
            float ss = 0.0f;
#pragma unroll
            for (int c = 0; c < RMS_VEC_CHUNKS; c++) {
                const int64_t k = p + (int64_t)c * RMS_VEC_THREADS;
                if (k < nc) {
                    float v[4];
                    pair_norm_chunk(nm, t, K, k, v);
                    if (blockIdx.x == 0)
                        ((float4 *)(nm.res_out + t * K))[k] = make_float4(v[0], v[1], v[2], v[3]);
#pragma unroll
                    for (int j = 0; j < 4; j++)
                        ss = rms_sumsq(ss, v[j]);
                }
            }
            ss = rms_warp_sum(ss);
            if (lane == 0) part[t][warp + u * GEMV_WARPS] = ss;
        }
    __syncthreads();
#pragma unroll
    for (int t = 0; t < MT; t++) {
        const float inv = rms_inv(rms_row_sum(part[t]), K, nm.eps);
#pragma unroll
        for (int u = 0; u < PAIR_NORM_U; u++)
#pragma unroll
            for (int c = 0; c < RMS_VEC_CHUNKS; c++) {
                const int64_t k = threadIdx.x + u * GEMV_WARPS * 32 + (int64_t)c * RMS_VEC_THREADS;
                if (k < nc) {
                    float v[4];
                    pair_norm_chunk(nm, t, K, k, v);
                    const V4 wv = ((const V4 *)nm.w)[k];
                    const E *we = (const E *)&wv;
                    V4 out;
                    E *oe = (E *)&out;
#pragma unroll
                    for (int j = 0; j < 4; j++)
                        oe[j] = elem<E>::store(rms_scale(v[j], inv, elem<E>::load(we[j])));
                    ((V4 *)(xs + t * K))[k] = out;
                }
            }
    }
    __syncthreads();
}

template <typename E, int MT, int SP, class Epi, bool NORM>
static __global__ void __launch_bounds__(GEMV_WARPS * 32, SP > 0 ? PAIR_STAGED_BLOCKS : 1)
    linear_gemv_pair_kernel(Epi epi, const E *__restrict__ x, const E *__restrict__ w, int64_t npairs,
                            int64_t K, pair_norm<E> nm) {
    constexpr int PRE = SP == 0 ? PAIR_PRELOAD : 0;
    extern __shared__ uint4 pair_stage[]; /* 2 SP x 32 vectors a warp, lane-minor: row 0's, then row 1's */
    const int lane = threadIdx.x & 31;
    const int64_t step = (int64_t)gridDim.x * GEMV_WARPS,
                  p0 = (int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    const int64_t nv = K / (16 / (int)sizeof(E));
    uint4 *stage = pair_stage + (threadIdx.x >> 5) * 2 * SP * 32 + lane;
    pdl_trigger();
    /* w is written by no kernel: the pair's first vectors are asked for before the wait */
    const uint4 *f0 = (const uint4 *)(w + (p0 < npairs ? epi.row(p0, 0) : 0) * K),
                *f1 = (const uint4 *)(w + (p0 < npairs ? epi.row(p0, 1) : 0) * K);
    uint4 pre[2][PRE > 0 ? PRE : 1];
#pragma unroll
    for (int u = 0; u < PRE; u++) {
        const int64_t i = lane + 32 * u;
        const bool ok = p0 < npairs && i < nv;
        pre[0][u] = ok ? f0[i] : make_uint4(0, 0, 0, 0);
        pre[1][u] = ok ? f1[i] : make_uint4(0, 0, 0, 0);
    }
    if (SP > 0) {
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int u = 0; u < SP; u++) {
                const int64_t i = lane + 32 * u;
                const bool ok = p0 < npairs && i < nv;
                cp_async16(smem_u32(stage + 32 * (h * SP + u)),
                           ok ? (const void *)((h ? f1 : f0) + i) : (const void *)w, ok ? 16 : 0);
            }
        cp_async_commit();
    }
    pdl_wait();
    const E *xin = x; /* the input rows: x, or the normed rows after the staged vectors */
    if constexpr (NORM) {
        E *xs = (E *)(pair_stage + 2 * SP * 32 * GEMV_WARPS);
        pair_norm_rows<E, MT>(xs, nm, K);
        xin = xs;
    }
    /* p is warp-uniform, so the shuffles below run with every lane of the warp. */
    for (int64_t p = p0; p < npairs; p += step) {
        const uint4 *a4 = (const uint4 *)(w + epi.row(p, 0) * K),
                    *b4 = (const uint4 *)(w + epi.row(p, 1) * K);
        float a[MT], b[MT];
#pragma unroll
        for (int t = 0; t < MT; t++)
            a[t] = 0.0f, b[t] = 0.0f;
        int64_t i = lane;
        if (p == p0) {
#pragma unroll
            for (int u = 0; u < PRE; u++, i += 32)
                if (i < nv) {
                    gemv_vec_step<E, MT>(a, pre[0][u], xin, K, i);
                    gemv_vec_step<E, MT>(b, pre[1][u], xin, K, i);
                }
            if (SP > 0) {
                cp_async_wait<0>();
#pragma unroll
                for (int u = 0; u < SP; u++, i += 32)
                    if (i < nv) {
                        gemv_vec_step<E, MT>(a, stage[32 * u], xin, K, i);
                        gemv_vec_step<E, MT>(b, stage[32 * (SP + u)], xin, K, i);
                    }
            }
        }
        for (; i < nv; i += 32) {
            const uint4 av = a4[i], bv = b4[i];
            gemv_vec_step<E, MT>(a, av, xin, K, i);
            gemv_vec_step<E, MT>(b, bv, xin, K, i);
        }
#pragma unroll
        for (int t = 0; t < MT; t++)
            for (int o = 16; o > 0; o >>= 1) {
                a[t] += __shfl_xor_sync(0xffffffffu, a[t], o);
                b[t] += __shfl_xor_sync(0xffffffffu, b[t], o);
            }
#pragma unroll
        for (int t = 0; t < MT; t++)
            if (lane == t) epi.finish(p, t, elem<E>::store(a[t]), elem<E>::store(b[t]));
    }
    if (SP > 0 && p0 >= npairs) cp_async_wait<0>(); /* a warp without a pair: its empty copies done */
}

/* Whether every block of a grid of this many fits on the card at once with the staged
 * vectors' shared memory and the normed rows' (smem bytes in all; asked once an instance
 * and size). */
template <typename E, int MT, class Epi, bool NORM>
static bool pair_staged_fits(unsigned int grid, size_t smem) {
    static int per_sm = -1;
    static size_t asked = 0;
    if (PAIR_STAGED == 0) return false;
    if (per_sm < 0 || asked != smem)
        per_sm = staged_blocks_per_sm(linear_gemv_pair_kernel<E, MT, PAIR_STAGED, Epi, NORM>, smem),
        asked = smem;
    return (int64_t)grid <= (int64_t)lr_gpu_sm_count() * per_sm;
}

template <typename E, int MT, class Epi, bool NORM>
static int gemv_pairs_t(const Epi &epi, const void *x, const void *w, int64_t npairs, int64_t K,
                        const pair_norm<E> &nm, cudaStream_t s) {
    const int64_t blocks = (npairs + GEMV_WARPS - 1) / GEMV_WARPS;
    const unsigned int grid = (unsigned int)(blocks < MAX_BLOCKS ? blocks : MAX_BLOCKS);
    const E *xe = (const E *)x, *we = (const E *)w;
    const size_t rows = NORM ? (size_t)MT * (size_t)K * sizeof(E) : 0,
                 staged = (size_t)2 * PAIR_STAGED * GEMV_WARPS * 32 * 16 + rows;
    if (pair_staged_fits<E, MT, Epi, NORM>(grid, staged))
        LR_LAUNCH(linear_gemv_pair_kernel<E, MT, PAIR_STAGED, Epi, NORM>, grid, GEMV_WARPS * 32, staged, s,
                  epi, xe, we, npairs, K, nm);
    else /* rows: at most PAIR_NORM_MAX_BYTES, under the 48 KB a launch may take unasked */
        LR_LAUNCH(linear_gemv_pair_kernel<E, MT, 0, Epi, NORM>, grid, GEMV_WARPS * 32, rows, s, epi, xe, we,
                  npairs, K, nm);
    return LR_OK;
}

/* nm NULL: x is the input; else the norm's rows are (x is not read). */
template <typename E, class Epi>
static int gemv_pairs(const Epi &epi, const void *x, const void *w, int64_t T, int64_t npairs, int64_t K,
                      const pair_norm<E> *nm, cudaStream_t s) {
    static_assert(PAIR_MAX_T == 2, "gemv pairs: one instance a token count");
    if (nm)
        return T == 1 ? gemv_pairs_t<E, 1, Epi, true>(epi, x, w, npairs, K, *nm, s)
                      : gemv_pairs_t<E, 2, Epi, true>(epi, x, w, npairs, K, *nm, s);
    const pair_norm<E> none = {};
    return T == 1 ? gemv_pairs_t<E, 1, Epi, false>(epi, x, w, npairs, K, none, s)
                  : gemv_pairs_t<E, 2, Epi, false>(epi, x, w, npairs, K, none, s);
}

extern "C" bool lr_gpu_linear_fuses(int64_t T, int64_t K, const void *x, const void *w, lr_dtype dt) {
    const int64_t V = dt == LR_F32 ? 4 : 8;
    return T >= 1 && T <= PAIR_MAX_T && K > 0 && K % V == 0 && ((uintptr_t)x & 15) == 0 &&
           ((uintptr_t)w & 15) == 0 && (dt == LR_F32 || dt == LR_F16 || dt == LR_BF16);
}

/* SiluAndMul after gate_up_proj: pair p is feature p's gate row p and up row NI + p. */
template <typename E> struct silu_epi {
    E *act; /* (T, NI) */
    int64_t NI;
    __device__ __forceinline__ int64_t row(int64_t p, int h) const { return h ? NI + p : p; }
    __device__ __forceinline__ void finish(int64_t p, int t, E g, E u) const {
        st(act + t * NI + p, silu1(elem<E>::load(g)) * elem<E>::load(u));
    }
};

/* The norm's arguments as the kernel takes them; NULL without one. */
template <typename E> static const pair_norm<E> *pair_norm_of(const lr_gpu_norm_in *n, pair_norm<E> *out) {
    if (!n) return NULL;
    *out = {(const E *)n->hidden, n->residual_in, n->residual_out, (const E *)n->weight, n->eps};
    return out;
}

template <typename E>
static int linear_silu_fused(void *act, const void *x, const void *w, int64_t T, int64_t NI, int64_t K,
                             const lr_gpu_norm_in *norm, cudaStream_t s) {
    pair_norm<E> nm;
    return gemv_pairs<E>(silu_epi<E>{(E *)act, NI}, x, w, T, NI, K, pair_norm_of(norm, &nm), s);
}

extern "C" int lr_gpu_linear_silu(void *act, void *gu, const void *x, const void *w, int64_t T, int64_t NI,
                                  int64_t K, lr_dtype dt, cublasHandle_t blas, cudaStream_t s) {
    if (T < 0 || NI < 0 || K < 0)
        return lr_fail(LR_E_INVAL, "gpu linear_silu: negative size (T %lld, NI %lld, K %lld)", (long long)T,
                       (long long)NI, (long long)K);
    if (NI > INT_MAX / 2)
        return lr_fail(LR_E_INVAL, "gpu linear_silu: NI %lld: 2 NI over %d", (long long)NI, INT_MAX);
    if (dt != LR_F32 && dt != LR_F16 && dt != LR_BF16)
        return lr_fail(LR_E_INVAL, "gpu linear_silu: dtype %s is not F32, F16 or BF16", lr_dtype_name(dt));
    if (T == 0 || NI == 0) return LR_OK;
    if (!lr_gpu_linear_fuses(T, K, x, w, dt)) {
        if (!gu)
            return lr_fail(LR_E_INVAL, "gpu linear_silu: T %lld, K %lld or alignment needs gu, which is NULL",
                           (long long)T, (long long)K);
        int rc = lr_gpu_linear(NULL, gu, x, w, T, 2 * NI, K, dt, blas, s);
        return rc ? rc : lr_gpu_silu_and_mul(NULL, act, gu, T, NI, dt, s);
    }
    return LR_DISPATCH_DTYPE(dt, linear_silu_fused, act, x, w, T, NI, K, (const lr_gpu_norm_in *)NULL, s);
}

/* RoPE and the cache write after qkv_proj: pair p is (head h, i) with p = h * hd/2 + i, rows
 * h hd + i and h hd + hd/2 + i. What rotary.cu's fused RoPE + cache kernel does with the
 * two values gemv stored: a q or k head's pair rotated by the float64 sincos of pos * inv_freq[i]
 * (rot_pair, one rounding) back to qkv, a k head's also to its cache slot; a v head's
 * values to qkv and the cache as they are. A negative slot writes no cache entry. */
template <typename E> struct rope_cache_epi {
    E *qkv; /* (T, ld): q heads, k heads, v heads */
    int64_t ld, nh, nkv, hd;
    const int64_t *positions, *slots; /* (T) */
    const double *inv_freq;           /* (hd / 2) */
    E *k_cache, *v_cache;             /* (slots, nkv, hd) */
    __device__ __forceinline__ int64_t row(int64_t p, int h) const {
        const int64_t half = hd / 2, head = p / half;
        return head * hd + (p - head * half) + (h ? half : 0);
    }
    __device__ __forceinline__ void finish(int64_t p, int t, E x1, E x2) const {
        const int64_t half = hd / 2, head = p / half, i = p - head * half, slot = slots[t];
        E *r = qkv + t * ld + head * hd, e1 = x1, e2 = x2;
        if (head < nh + nkv) {
            double sn, cd;
            sincos((double)positions[t] * inv_freq[i], &sn, &cd);
            float y1, y2;
            rot_pair(elem<E>::load(x1), elem<E>::load(x2), (float)cd, (float)sn, y1, y2);
            e1 = elem<E>::store(y1), e2 = elem<E>::store(y2);
        }
        r[i] = e1, r[half + i] = e2;
        if (head >= nh && slot >= 0) {
            E *c = (head < nh + nkv ? k_cache + (head - nh) * hd : v_cache + (head - nh - nkv) * hd) +
                   slot * nkv * hd;
            c[i] = e1, c[half + i] = e2;
        }
    }
};

template <typename E>
static int linear_rope_cache_fused(void *qkv, const void *x, const void *w, int64_t T, int64_t nh,
                                   int64_t nkv, int64_t hd, int64_t K, const int64_t *positions,
                                   const double *inv_freq, void *k_cache, void *v_cache,
                                   const int64_t *slot_mapping, const lr_gpu_norm_in *norm, cudaStream_t s) {
    const rope_cache_epi<E> epi{(E *)qkv,  (nh + 2 * nkv) * hd, nh,       nkv,          hd,
                                positions, slot_mapping,        inv_freq, (E *)k_cache, (E *)v_cache};
    pair_norm<E> nm;
    return gemv_pairs<E>(epi, x, w, T, (nh + 2 * nkv) * (hd / 2), K, pair_norm_of(norm, &nm), s);
}

extern "C" int lr_gpu_linear_rope_cache(void *qkv, const void *x, const void *w, int64_t T, int64_t nh,
                                        int64_t nkv, int64_t hd, int64_t K, const int64_t *positions,
                                        const double *inv_freq, void *k_cache, void *v_cache,
                                        const int64_t *slot_mapping, lr_dtype dt, cublasHandle_t blas,
                                        cudaStream_t s) {
    if (T < 0 || nh < 0 || nkv < 0 || hd < 0 || K < 0)
        return lr_fail(LR_E_INVAL,
                       "gpu linear_rope_cache: negative size (T %lld, nh %lld, nkv %lld, hd %lld, K %lld)",
                       (long long)T, (long long)nh, (long long)nkv, (long long)hd, (long long)K);
    if (hd % 2 != 0) return lr_fail(LR_E_INVAL, "gpu linear_rope_cache: head_dim %lld is odd", (long long)hd);
    const int64_t N = (nh + 2 * nkv) * hd;
    if (N > INT_MAX)
        return lr_fail(LR_E_INVAL, "gpu linear_rope_cache: (nh + 2 nkv) hd = %lld over %d", (long long)N,
                       INT_MAX);
    if (dt != LR_F32 && dt != LR_F16 && dt != LR_BF16)
        return lr_fail(LR_E_INVAL, "gpu linear_rope_cache: dtype %s is not F32, F16 or BF16",
                       lr_dtype_name(dt));
    if (T == 0 || N == 0) return LR_OK;
    if (!lr_gpu_linear_fuses(T, K, x, w, dt)) {
        int rc = lr_gpu_linear(NULL, qkv, x, w, T, N, K, dt, blas, s);
        return rc ? rc
                  : lr_gpu_rotary_cache(qkv, N, T, nh, nkv, hd, positions, inv_freq, k_cache, v_cache,
                                        slot_mapping, dt, s);
    }
    return LR_DISPATCH_DTYPE(dt, linear_rope_cache_fused, qkv, x, w, T, nh, nkv, hd, K, positions, inv_freq,
                             k_cache, v_cache, slot_mapping, (const lr_gpu_norm_in *)NULL, s);
}

/* ---- the same with the layer's norm before them ---------------------------------------- */

/* The most bytes of normed rows a block of the one kernel keeps: within the 48 KB a launch
 * takes without asking, beside the norm's own few hundred bytes. */
#define PAIR_NORM_MAX_BYTES (32 * 1024)

extern "C" bool lr_gpu_norm_linear_fuses(int64_t T, int64_t K, const lr_gpu_norm_in *norm, const void *w,
                                         lr_dtype dt) {
    const size_t es = lr_dtype_size(dt);
    return norm && lr_gpu_linear_fuses(T, K, norm->hidden, w, dt) &&
           lr_gpu_rmsnorm_vec_takes(K, norm->normed, norm->hidden, norm->weight, norm->residual_in, dt) &&
           norm->residual_out && ((uintptr_t)norm->residual_out & 15) == 0 &&
           norm->residual_out != norm->residual_in && (size_t)T * (size_t)K * es <= PAIR_NORM_MAX_BYTES;
}

/* The norm alone, as the backend's rms_norm op runs it: residual_out = residual_in (or 0),
 * then the vec kernel's fused add and norm into normed. */
static int norm_apart(const lr_gpu_norm_in *n, int64_t T, int64_t K, lr_dtype dt, cudaStream_t s) {
    const size_t bytes = (size_t)T * (size_t)K * sizeof(float);
    if (n->residual_in && n->residual_in != n->residual_out)
        CUDA_CHECK(cudaMemcpyAsync(n->residual_out, n->residual_in, bytes, cudaMemcpyDeviceToDevice, s));
    else if (!n->residual_in)
        CUDA_CHECK(cudaMemsetAsync(n->residual_out, 0, bytes, s));
    return lr_gpu_fused_add_rms_norm("vec", n->normed, n->residual_out, n->hidden, n->weight, T, K, n->eps,
                                     dt, s);
}

static int norm_in_check(const char *who, const lr_gpu_norm_in *n) {
    if (!n || !n->hidden || !n->residual_out || !n->weight || !n->normed)
        return lr_fail(LR_E_INVAL, "gpu %s: the norm's hidden, residual_out, weight and normed are required",
                       who);
    return LR_OK;
}

static bool gemv_dtype(lr_dtype dt) { return dt == LR_F32 || dt == LR_F16 || dt == LR_BF16; }

/* Arguments the entry point without the norm refuses (it says which) go to it before the
 * norm runs, so that a refused call leaves the stream alone. */
extern "C" int lr_gpu_norm_linear_silu(void *act, void *gu, const lr_gpu_norm_in *norm, const void *w,
                                       int64_t T, int64_t NI, int64_t K, lr_dtype dt, cublasHandle_t blas,
                                       cudaStream_t s) {
    int rc = norm_in_check("norm_linear_silu", norm);
    if (rc) return rc;
    if (T < 0 || NI < 0 || K < 0 || NI > INT_MAX / 2 || !gemv_dtype(dt))
        return lr_gpu_linear_silu(act, gu, norm->normed, w, T, NI, K, dt, blas, s);
    if (NI == 0 || !lr_gpu_norm_linear_fuses(T, K, norm, w, dt)) {
        if ((rc = norm_apart(norm, T, K, dt, s))) return rc;
        return lr_gpu_linear_silu(act, gu, norm->normed, w, T, NI, K, dt, blas, s);
    }
    return LR_DISPATCH_DTYPE(dt, linear_silu_fused, act, (const void *)NULL, w, T, NI, K, norm, s);
}

extern "C" int lr_gpu_norm_linear_rope_cache(void *qkv, const lr_gpu_norm_in *norm, const void *w, int64_t T,
                                             int64_t nh, int64_t nkv, int64_t hd, int64_t K,
                                             const int64_t *positions, const double *inv_freq, void *k_cache,
                                             void *v_cache, const int64_t *slot_mapping, lr_dtype dt,
                                             cublasHandle_t blas, cudaStream_t s) {
    int rc = norm_in_check("norm_linear_rope_cache", norm);
    if (rc) return rc;
    if (T < 0 || nh < 0 || nkv < 0 || hd < 0 || K < 0 || hd % 2 != 0 || (nh + 2 * nkv) * hd > INT_MAX ||
        !gemv_dtype(dt))
        return lr_gpu_linear_rope_cache(qkv, norm->normed, w, T, nh, nkv, hd, K, positions, inv_freq, k_cache,
                                        v_cache, slot_mapping, dt, blas, s);
    if ((nh + 2 * nkv) * hd == 0 || !lr_gpu_norm_linear_fuses(T, K, norm, w, dt)) {
        if ((rc = norm_apart(norm, T, K, dt, s))) return rc;
        return lr_gpu_linear_rope_cache(qkv, norm->normed, w, T, nh, nkv, hd, K, positions, inv_freq, k_cache,
                                        v_cache, slot_mapping, dt, blas, s);
    }
    return LR_DISPATCH_DTYPE(dt, linear_rope_cache_fused, qkv, (const void *)NULL, w, T, nh, nkv, hd, K,
                             positions, inv_freq, k_cache, v_cache, slot_mapping, norm, s);
}

/* ---- gemv2 ------------------------------------------------------------------------------
 * gemv's job, shaped for the H200's bandwidth at every T <= 8 and every N. gemv's one row
 * per warp loads T vectors of x for each vector of w (8 times w's bytes through L1 at T 8,
 * which is what it runs out of there), and at N 4096 has 512 blocks of a few iterations
 * each. Here a block of GEMV2_THREADS threads owns GEMV2_ROWS rows of w and splits K among
 * all its threads: each thread keeps a register tile of ROWS x T float32 accumulators, so
 * every 16-byte vector of w meets every token (w read once for all T) and every vector of
 * x meets every row (x through L1 at T / ROWS of w's bytes); the vectors of w for two
 * steps (2 x ROWS 16-byte loads) are issued before any is used, and leave no lines in L1
 * (which x, read by every block, has to itself). N 4096 gives 1024 blocks
 * of 4 warps, enough for 132 SMs; the K split is inside the block, summed in a fixed order
 * through shared memory, so there is no second kernel, no workspace and no atomic.
 *
 * Arithmetic order, per output (n, t): thread p of the block (p = 32 warp + lane)
 * accumulates with fmaf into one float32 the vectors i = p, p + THREADS, p + 2 THREADS, ...
 * (ascending; the V elements of each in order); each warp sums its 32 lanes in the xor
 * tree (offsets 16, 8, 4, 2, 1, as gemv does; the lanes trade halves of their tiles
 * instead of each keeping all, which is the same tree since float32 addition commutes);
 * the warps' sums are added in order, ((w0 + w1) + w2) + w3, in float32; the sum is rounded
 * once to the dtype. Where the vector path does not apply (K not a multiple of V, x or w
 * not 16-byte aligned), gemv runs the call; T > 8 goes to cublas. tests/test_gpu_ops.c
 * simulates this order on the CPU (sim-gemv2). */
/* Tuning knobs, overridable for a trial build (make CPPFLAGS=-DGEMV2_ROWS=8). ROWS leaves
 * each output's arithmetic order as it is; THREADS changes it (sim-gemv2 assumes 128). */
#ifndef GEMV2_ROWS
#define GEMV2_ROWS 4 /* output features per block: each thread's tile is ROWS x T */
#endif
#ifndef GEMV2_THREADS
#define GEMV2_THREADS 128 /* per block, all splitting K */
#endif
#define GEMV2_WARPS (GEMV2_THREADS / 32)
static_assert(GEMV2_ROWS >= 1 && GEMV2_THREADS % 32 == 0 && GEMV2_THREADS >= 32 && GEMV2_THREADS <= 1024,
              "gemv2: ROWS >= 1, THREADS a multiple of 32 up to 1024");

/* A 16-byte load of w, which each block reads once: through L1 without a line there
 * (L1::no_allocate), so that L1 keeps the x that every block reads again. */
static __device__ __forceinline__ uint4 ld_stream(const uint4 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

/* The xor tree over a warp of C values per lane, as a reduce-scatter: where the count is
 * even, a lane keeps half its values (the upper half where its lane bit o is set) and adds
 * its partner's copy of that half (C/2 shuffles instead of C); an odd count is summed
 * whole. At the end each lane holds lane_sum_count(C) finished sums, the first being value
 * number `first`; the lanes that differ only in lane_sum_dup(C)'s bits hold the same ones. */
static constexpr int lane_sum_count(int c, int o) {
    return o == 0 ? c : c % 2 == 0 ? lane_sum_count(c / 2, o / 2) : lane_sum_count(c, o / 2);
}
static constexpr int lane_sum_dup(int c, int o) {
    return o == 0 ? 0 : c % 2 == 0 ? lane_sum_dup(c / 2, o / 2) : (o | lane_sum_dup(c, o / 2));
}

template <int C, int O> struct lane_sum {
    static __device__ __forceinline__ void run(float *v, int lane, int &first) {
        if constexpr (O > 0) {
            if constexpr (C % 2 == 0) {
                constexpr int H = C / 2;
                const bool up = (lane & O) != 0;
#pragma unroll
                for (int i = 0; i < H; i++) {
                    const float send = up ? v[i] : v[i + H], keep = up ? v[i + H] : v[i];
                    v[i] = keep + __shfl_xor_sync(0xffffffffu, send, O);
                }
                if (up) first += H;
                lane_sum<H, O / 2>::run(v, lane, first);
            } else {
#pragma unroll
                for (int i = 0; i < C; i++)
                    v[i] += __shfl_xor_sync(0xffffffffu, v[i], O);
                lane_sum<C, O / 2>::run(v, lane, first);
            }
        }
    }
};

/* One step of a thread: vector i of its ROWS rows (already loaded, wv) against vector i of
 * every token's x. acc[t * ROWS + r] is output (row r, token t). */
template <typename E, int MT>
static __device__ __forceinline__ void gemv2_step(float *acc, const uint4 *wv, const uint4 *__restrict__ x4,
                                                  int64_t nv, int64_t i) {
    constexpr int V = 16 / sizeof(E), R = GEMV2_ROWS;
    float wf[R][V];
#pragma unroll
    for (int r = 0; r < R; r++)
        vec16<E>::unpack(wv[r], wf[r]);
#pragma unroll
    for (int t = 0; t < MT; t++) {
        float xf[V];
        vec16<E>::unpack(__ldg(x4 + t * nv + i), xf);
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int j = 0; j < V; j++)
                acc[t * R + r] = fmaf(wf[r][j], xf[j], acc[t * R + r]);
    }
}

/* y (T, N) = x (T, K) w (N, K)^T for MT = T tokens, rows n0 .. n0 + ROWS - 1 per block;
 * K a multiple of V, x and w 16-byte aligned (the launcher's test). */
template <typename E, int MT>
static __global__ void __launch_bounds__(GEMV2_THREADS)
    linear_gemv2_kernel(E *__restrict__ y, const E *__restrict__ x, const E *__restrict__ w, int64_t N,
                        int64_t K) {
    constexpr int V = 16 / sizeof(E), R = GEMV2_ROWS, C = MT * R, NT = GEMV2_THREADS;
    constexpr int NF = lane_sum_count(C, 16), DUP = lane_sum_dup(C, 16);
    __shared__ float part[GEMV2_WARPS][C];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t n0 = (int64_t)blockIdx.x * R, nv = K / V;
    pdl_trigger(); /* launched with programmatic dependent launch (common.cuh) */
    pdl_wait();
    /* The last block's rows past N read row N - 1 again (in bounds) and store nothing. */
    const uint4 *wr[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        wr[r] = (const uint4 *)(w + (n0 + r < N ? n0 + r : N - 1) * K);
    const uint4 *x4 = (const uint4 *)x;
    float acc[C];
#pragma unroll
    for (int c = 0; c < C; c++)
        acc[c] = 0.0f;
    int64_t i = tid;
    for (; i + NT < nv; i += 2 * NT) {
        uint4 a[R], b[R];
#pragma unroll
        for (int r = 0; r < R; r++)
            a[r] = ld_stream(wr[r] + i);
#pragma unroll
        for (int r = 0; r < R; r++)
            b[r] = ld_stream(wr[r] + i + NT);
        gemv2_step<E, MT>(acc, a, x4, nv, i);
        gemv2_step<E, MT>(acc, b, x4, nv, i + NT);
    }
    if (i < nv) {
        uint4 a[R];
#pragma unroll
        for (int r = 0; r < R; r++)
            a[r] = ld_stream(wr[r] + i);
        gemv2_step<E, MT>(acc, a, x4, nv, i);
    }
    int first = 0;
    lane_sum<C, 16>::run(acc, lane, first);
    if ((lane & DUP) == 0) {
#pragma unroll
        for (int q = 0; q < NF; q++)
            part[warp][first + q] = acc[q];
    }
    __syncthreads();
    for (int c = tid; c < C; c += NT) {
        float sum = part[0][c];
#pragma unroll
        for (int p = 1; p < GEMV2_WARPS; p++)
            sum += part[p][c];
        const int64_t n = n0 + c % R;
        if (n < N) st(y + (int64_t)(c / R) * N + n, sum);
    }
}

template <typename E, int MT> static int linear_gemv2_t(const linear_args *a, cudaStream_t s) {
    /* N <= INT_MAX (the entry point's limit): at most 2^29 blocks, under the grid's 2^31 - 1 */
    unsigned int grid = (unsigned int)((a->N + GEMV2_ROWS - 1) / GEMV2_ROWS);
    LR_LAUNCH(linear_gemv2_kernel<E, MT>, grid, GEMV2_THREADS, 0, s, (E *)a->y, (const E *)a->x,
              (const E *)a->w, a->N, a->K);
    return LR_OK;
}

template <typename E> static int linear_gemv2(const linear_args *a, cudaStream_t s) {
    constexpr int V = 16 / sizeof(E);
    if (a->K % V != 0 || ((uintptr_t)a->x & 15) != 0 || ((uintptr_t)a->w & 15) != 0)
        return lr_gpu_linear_gemv(a, s);
    GEMV_BY_TOKENS(linear_gemv2_t, a, s)
}

int lr_gpu_linear_gemv2(const void *args, cudaStream_t s) {
    const linear_args *a = (const linear_args *)args;
    if (a->T > GEMV_MAX_T) return lr_gpu_linear_cublas(args, s);
    return LR_DISPATCH_DTYPE(a->dt, linear_gemv2, a, s);
}

/* ---- mma -------------------------------------------------------------------------------
 * For the T of a batch's decode step above what a GEMV serves (3 to 32 tokens), where
 * cuBLAS reads the narrow projections' weights at 36-43% of the copy bandwidth on the H200
 * (run 20: qkv_proj 27.8 us and o_proj 22.2 us at T 32, against 12 and 8 us for their
 * bytes). The product is still bound by reading w once, so the kernel is shaped for that:
 *  - a block of 4 warps owns 64 output features (16 a warp, one m16 tile) and every token
 *    (NT tiles of 8, T <= 8 NT), over a slice of K;
 *  - w's 64 x MM_BK and x's 8 NT x MM_BK tiles go to shared memory by cp.async, MM_STAGES deep
 *    (16-byte chunks swizzled by row, so the 8 rows an ldmatrix reads fall in 8 bank
 *    quads); A fragments (w) and B fragments (x) by ldmatrix, mma.sync m16n8k16 with
 *    float32 accumulators;
 *  - where 64-feature tiles are too few for the card (N 4096 is 64 of them), K is split
 *    over a cluster of S = 2, 4 or 8 blocks (sm_90): each block's float32 partial tile goes
 *    to its shared memory, and after the cluster's barrier block r sums rows r 64/S ..
 *    of every block's tile through distributed shared memory, in rank order 0, 1, ..., S - 1,
 *    and rounds once. No workspace, no atomic, no second kernel, the same bits every run.
 * Within an mma the 16 products' order is the tensor core's; per output the k16 steps are
 * added in ascending k, then the cluster's slices in rank order. F32, T > 32, K not a
 * multiple of 8 or x or w not 16-byte aligned: cublas. Launched with programmatic
 * dependent launch (common.cuh): the first stages' weights are asked for before the wait.
 * Checked on the H200 (run 22): its sweeps (139 cases at bf16 and f16), the model-level
 * suites, compute-sanitizer. Not a default: it is slower than cublas at T 32 on every
 * Llama-3-8B projection (qkv_proj 31.1 us against 27.7, o_proj 27.6 against 20.6,
 * gate_up_proj 89.7 against 69.2, down_proj 60.3 against 44.3), and than gemv at T 1;
 * stages of 128 or 256 k were slower still (docs/performance.md, run 22). Nsight Compute
 * put it at 31% of DRAM throughput where cuBLAS's split-K kernel reaches 59% with one
 * block an SM and long K runs: MM_WARPS, MM_BK, MM_STAGES and MM_MIN_SLICE (the shortest
 * K slice a block takes, in stages) may be set at build time for such trials
 * (tools/gpu-trial.sh). */
#ifndef MM_WARPS
#define MM_WARPS 4 /* a block's warps, 16 output features each */
#endif
#define MM_BN (16 * MM_WARPS) /* output features per block */
#ifndef MM_BK
#define MM_BK 64 /* k per stage: MM_BK / 8 chunks of 16 bytes a row */
#endif
#ifndef MM_STAGES
#define MM_STAGES 4
#endif
#define MM_MAX_T 32
#define MM_MAX_CLUSTER 8
#ifndef MM_MIN_SLICE
#define MM_MIN_SLICE 1 /* stages: no K slice shorter (a trial knob, with MM_BK and MM_STAGES) */
#endif
#define MM_ROW_BYTES (MM_BK * 2)
static_assert(MM_BK % 64 == 0, "mma: whole swizzle rows of 8 chunks");

/* A stage's bytes for NT tiles of 8 tokens: w's MM_BN rows, then x's 8 NT. The partial
 * tile (MM_BN x 8 NT floats) takes the stages' room at the end. */
template <int NT> static constexpr int mm_stage_bytes() { return (MM_BN + 8 * NT) * MM_ROW_BYTES; }
template <int NT> static constexpr int mm_smem() { return MM_STAGES * mm_stage_bytes<NT>(); }

/* Row r's 16-byte chunk c of a tile whose rows are MM_BK elements: chunks swizzled within
 * each 8 by the row, so that the 8 rows an ldmatrix reads fall in 8 bank quads. */
static __device__ __forceinline__ uint32_t mm_chunk(uint32_t tile, int r, int c) {
    return tile + (uint32_t)(r * MM_ROW_BYTES + ((c ^ (r & 7)) << 4));
}

/* Copies of stage k0 .. k0 + MM_BK - 1 of w's tile (rows n0 .. n0 + 63) and of x's (every
 * token): chunks at or past kend, rows past N or T, zeros. */
template <typename E>
static __device__ __forceinline__ void mm_load_w(uint32_t wt, const E *__restrict__ w, int64_t n0, int64_t N,
                                                 int64_t K, int64_t k0, int64_t kend) {
#pragma unroll
    for (int q = threadIdx.x; q < MM_BN * (MM_BK / 8); q += MM_WARPS * 32) {
        const int r = q / (MM_BK / 8), c = q % (MM_BK / 8);
        const int64_t k = k0 + c * 8;
        const bool ok = n0 + r < N && k < kend;
        cp_async16(mm_chunk(wt, r, c), ok ? (const void *)(w + (n0 + r) * K + k) : (const void *)w,
                   ok ? 16 : 0);
    }
}
template <typename E, int NT>
static __device__ __forceinline__ void mm_load_x(uint32_t xt, const E *__restrict__ x, int64_t T, int64_t K,
                                                 int64_t k0, int64_t kend) {
#pragma unroll
    for (int q = threadIdx.x; q < 8 * NT * (MM_BK / 8); q += MM_WARPS * 32) {
        const int r = q / (MM_BK / 8), c = q % (MM_BK / 8);
        const int64_t k = k0 + c * 8;
        const bool ok = r < T && k < kend;
        cp_async16(mm_chunk(xt, r, c), ok ? (const void *)(x + r * K + k) : (const void *)x, ok ? 16 : 0);
    }
}

/* The block's float32 tile (MM_BN features x 8 NT tokens, as mma.sync left it in each
 * warp's acc) to y: summed over the cluster's S blocks in rank order 0, 1, ..., S - 1
 * through distributed shared memory (sm_90; S is 1 below it), rounded once. part: the
 * block's shared memory, MM_BN * 8 NT floats, which no thread uses any more. */
template <typename E, int NT>
static __device__ __forceinline__ void mm_store_tile(E *__restrict__ y, const float (&acc)[NT][4],
                                                     float *part, int64_t T, int64_t N, int64_t n0, int rank,
                                                     int S) {
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    /* The block's partial tile, part[feature][token], float32. c0, c1: feature g, tokens
     * 2 (lane % 4) + 0, 1 of tile j; c2, c3: feature g + 8. */
    const int g = warp * 16 + (lane >> 2), tc = 2 * (lane & 3);
#pragma unroll
    for (int j = 0; j < NT; j++) {
        part[g * (8 * NT) + j * 8 + tc] = acc[j][0];
        part[g * (8 * NT) + j * 8 + tc + 1] = acc[j][1];
        part[(g + 8) * (8 * NT) + j * 8 + tc] = acc[j][2];
        part[(g + 8) * (8 * NT) + j * 8 + tc + 1] = acc[j][3];
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    cluster.sync(); /* every block's partials written and visible to the cluster */
    const int rows = MM_BN / S, r0 = rank * rows;
    for (int q = tid; q < rows * 8 * NT; q += MM_WARPS * 32) {
        const int f = r0 + q / (8 * NT), t = q % (8 * NT);
        float sum = 0.0f;
        for (int s = 0; s < S; s++)
            sum += cluster.map_shared_rank(part, s)[f * (8 * NT) + t];
        if (t < T && n0 + f < N) st(y + (int64_t)t * N + n0 + f, sum);
    }
    cluster.sync(); /* no block leaves while another reads its shared memory */
#else
    /* no clusters before sm_90: the launcher sets S = 1 */
    __syncthreads();
    for (int q = tid; q < MM_BN * 8 * NT; q += MM_WARPS * 32) {
        const int f = q / (8 * NT), t = q % (8 * NT);
        if (t < T && n0 + f < N) st(y + (int64_t)t * N + n0 + f, part[f * (8 * NT) + t]);
    }
#endif
}

/* Grid (ceil(N / MM_BN) S) in clusters of S along x: block b is tile b / S, slice b % S. */
template <typename E, int NT>
static __global__ void __launch_bounds__(MM_WARPS * 32)
    linear_mma_kernel(E *__restrict__ y, const E *__restrict__ x, const E *__restrict__ w, int64_t T,
                      int64_t N, int64_t K, int S, int64_t kslice) {
    extern __shared__ __align__(128) unsigned char mm_smem[];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int64_t n0 = (int64_t)(blockIdx.x / S) * MM_BN;
    const int rank = (int)(blockIdx.x % S);
    const int64_t kbeg = rank * kslice < K ? rank * kslice : K;
    const int64_t kend = kbeg + kslice < K ? kbeg + kslice : K;
    const int niter = (int)((kend - kbeg + MM_BK - 1) / MM_BK);
    constexpr int STAGE = mm_stage_bytes<NT>(), XT = MM_BN * MM_ROW_BYTES;
    static_assert(MM_BN * 8 * NT * (int)sizeof(float) <= MM_STAGES * STAGE, "mma: the partial tile fits");
    const uint32_t base = smem_u32(mm_smem);
    float acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++)
        acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;

    /* Launched with programmatic dependent launch (common.cuh): the first stages' weights
     * (written by no kernel) are asked for before the wait, x's (the kernel before wrote
     * them) after it. Group 0 holds stage 0's x and the weights of every first stage. */
    pdl_trigger();
#pragma unroll
    for (int p = 0; p < MM_STAGES - 1; p++)
        if (p < niter) mm_load_w<E>(base + p * STAGE, w, n0, N, K, kbeg + (int64_t)p * MM_BK, kend);
    pdl_wait();
#pragma unroll
    for (int p = 0; p < MM_STAGES - 1; p++) {
        if (p < niter) mm_load_x<E, NT>(base + p * STAGE + XT, x, T, K, kbeg + (int64_t)p * MM_BK, kend);
        cp_async_commit();
    }
    for (int it = 0; it < niter; it++) {
        cp_async_wait<MM_STAGES - 2>();
        __syncthreads(); /* stage it landed for every thread; stage it - 1 read by every warp */
        const int nx = it + MM_STAGES - 1;
        if (nx < niter) {
            const uint32_t wt = base + (nx % MM_STAGES) * STAGE;
            const int64_t k0 = kbeg + (int64_t)nx * MM_BK;
            mm_load_w<E>(wt, w, n0, N, K, k0, kend);
            mm_load_x<E, NT>(wt + XT, x, T, K, k0, kend);
        }
        cp_async_commit();
        const uint32_t wt = base + (it % MM_STAGES) * STAGE, xt = wt + XT;
#pragma unroll
        for (int kk = 0; kk < MM_BK / 16; kk++) {
            /* A: matrices (rows 0-7, k lo), (8-15, lo), (0-7, hi), (8-15, hi) of the warp's 16 */
            const int m = lane >> 3, ar = warp * 16 + (m & 1) * 8 + (lane & 7);
            uint32_t a[4];
            ldsm_x4(a, mm_chunk(wt, ar, kk * 2 + (m >> 1)));
#pragma unroll
            for (int j = 0; j < NT; j++) {
                /* B: token rows j 8 .. + 7 at k lo (lanes 0-7) and k hi (lanes 8-15) */
                const int br = j * 8 + (lane & 7);
                uint32_t b0, b1;
                ldsm_x2(b0, b1, mm_chunk(xt, br, kk * 2 + ((lane >> 3) & 1)));
                mma16816<E>::mma(acc[j], a, b0, b1);
            }
        }
    }
    cp_async_wait<0>();
    __syncthreads(); /* every warp is done with the stages: their room takes the partials */

    mm_store_tile<E, NT>(y, acc, (float *)mm_smem, T, N, n0, rank, S);
}

/* The launch of mma's and mmr's kernels (the same arguments): the most slices (8, 4, 2, 1)
 * that keep the grid within one wave of per_sm blocks an SM, K slices of whole steps of
 * bk, none under MM_MIN_SLICE steps; clusters of the slices from sm_90 on (below it, one
 * slice); programmatic dependent launch. */
template <typename E>
static int mm_launch(void (*kernel)(E *, const E *, const E *, int64_t, int64_t, int64_t, int, int64_t),
                     int per_sm, int64_t bk, int smem, const linear_args *a, cudaStream_t s) {
    const int64_t tiles = (a->N + MM_BN - 1) / MM_BN, wave = (int64_t)lr_gpu_sm_count() * per_sm;
    const int64_t steps = (a->K + bk - 1) / bk;
    int S = lr_gpu_cc_major() >= 9 ? MM_MAX_CLUSTER : 1;
    while (S > 1 && (tiles * S > wave || steps < (int64_t)S * MM_MIN_SLICE))
        S /= 2;
    const int64_t kslice = (steps + S - 1) / S * bk;
    if (tiles * S > INT_MAX) return lr_gpu_linear_cublas(a, s);
    cudaLaunchAttribute at[2] = {lr_pdl_attribute()};
    at[1].id = cudaLaunchAttributeClusterDimension;
    at[1].val.clusterDim.x = (unsigned int)S, at[1].val.clusterDim.y = 1, at[1].val.clusterDim.z = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned int)(tiles * S)), cfg.blockDim = dim3(MM_WARPS * 32);
    cfg.dynamicSmemBytes = smem, cfg.stream = s, cfg.attrs = at, cfg.numAttrs = S > 1 ? 2 : 1;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, (E *)a->y, (const E *)a->x, (const E *)a->w, a->T, a->N, a->K,
                                  S, kslice));
    return LR_OK;
}

/* Blocks an SM holds of kernel with smem bytes of dynamic shared memory. */
template <typename K> static int mm_per_sm(K kernel, int smem) {
    int n = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, MM_WARPS * 32, smem));
    return n > 0 ? n : 1;
}

template <typename E, int NT> static int linear_mma_t(const linear_args *a, cudaStream_t s) {
    constexpr int smem = mm_smem<NT>();
    auto kernel = linear_mma_kernel<E, NT>;
    if (smem > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    static int per_sm = 0; /* asked once an instance: the cards of a process are alike */
    if (per_sm == 0) per_sm = mm_per_sm(kernel, smem);
    return mm_launch<E>(kernel, per_sm, MM_BK, smem, a, s);
}

/* mma's and mmr's calls: cublas where they have no kernel (T > 32, K not a multiple of 8,
 * x or w not 16-byte aligned), else LAUNCH<E, NT> for NT = ceil(T / 8) tiles of 8 tokens. */
#define MM_BY_TILES(LAUNCH, a, s)                                                                            \
    if ((a)->T > MM_MAX_T || (a)->K % 8 != 0 || ((uintptr_t)(a)->x & 15) != 0 ||                             \
        ((uintptr_t)(a)->w & 15) != 0)                                                                       \
        return lr_gpu_linear_cublas(a, s);                                                                   \
    switch (((a)->T + 7) / 8) {                                                                              \
    case 1:                                                                                                  \
        return LAUNCH<E, 1>(a, s);                                                                           \
    case 2:                                                                                                  \
        return LAUNCH<E, 2>(a, s);                                                                           \
    case 3:                                                                                                  \
        return LAUNCH<E, 3>(a, s);                                                                           \
    default:                                                                                                 \
        return LAUNCH<E, 4>(a, s);                                                                           \
    }

template <typename E> static int linear_mma(const linear_args *a, cudaStream_t s) {
    MM_BY_TILES(linear_mma_t, a, s)
}

/* Tensor cores take 16-bit operands: F32 goes to cublas. */
template <> int linear_mma<float>(const linear_args *a, cudaStream_t s) { return lr_gpu_linear_cublas(a, s); }

int lr_gpu_linear_mma(const void *args, cudaStream_t s) {
    const linear_args *a = (const linear_args *)args;
    return LR_DISPATCH_DTYPE(a->dt, linear_mma, a, s);
}

/* ---- mmr ---------------------------------------------------------------------------------
 * mma's tiles and cluster split (above), with w read straight from global memory into the
 * A fragments: no shared-memory stages and no barrier in the K loop (run 22's ncu put
 * mma's block-wide stages, filling and draining behind a barrier each, at 31% of DRAM
 * throughput). Lane (g, q) (g = lane / 4, q = lane % 4) takes, for a step of 64 k from
 * k0, the 16-byte vectors at k0 + 8q and k0 + 32 + 8q of its warp's rows g and g + 8 (w,
 * 8 rows x 64 contiguous bytes a load instruction: whole sectors), and of token g of each
 * tile of 8 (x, from L1, which w's loads leave alone). The k16 products of a step take
 * k in a fixed permutation of memory's order, the same for A and B: k-step s (0..3) of
 * the step is half h = s / 2 of the lane's vectors, 32-bit words 2 (s % 2) and 2 (s % 2)
 * + 1, so fragment k 2q, 2q + 1 is memory k0 + 32h + 8q + 4 (s % 2) + 0, 1 and fragment
 * k 2q + 8, 2q + 9 is + 2, 3: the four k16 products cover the step's 64 k once each.
 * MR_DEPTH steps of w are in flight ahead of the one in use (registers; MR_XA_DEPTH at
 * T <= 8, below); the first are asked for before the PDL wait. Per output the step's
 * products are added in this order, the steps in ascending k, then the cluster's slices in
 * rank order: the same bits every run, not cublas's or mma's. F32, T > 32, K not a
 * multiple of 8 or unaligned pointers: as mma. A registry variant, not auto's choice:
 * slower than cublas on o_proj at T 3 to 8 (runs 31 and 33, docs/performance.md). */
#ifndef MR_DEPTH
#define MR_DEPTH 2
#endif
/* MR_X_AHEAD (1 by default; 0 leaves it out; the same values in the same order, so the
 * same bits): at T <= 8 (one tile of tokens) x's vectors of a step are asked for with w's,
 * MR_XA_DEPTH steps ahead (the first just after the PDL wait), where the loop had asked
 * for them only at their step, so every step waited a trip to L2 before its products.
 * Larger tiles keep the loads at their step (x ahead for 2 to 4 tiles took 143 to 222
 * registers) and MR_DEPTH steps of w in flight. Run 33 (H100, us at T 4 and 8, qkv_proj /
 * o_proj): the tree 32.9 / 20.9 and 32.8 / 20.6; x ahead at depth 2 (106 registers, which
 * halved qkv_proj's K split) 28.7 / 27.5 and 28.5 / 27.2; x ahead at depth 1 27.4 / 21.0
 * and 28.6 / 21.1 (cublas 29.3 / 17.4 and 28.9 / 16.8). */
#ifndef MR_X_AHEAD
#define MR_X_AHEAD 1
#endif
#ifndef MR_XA_DEPTH
#define MR_XA_DEPTH 1
#endif
#define MR_BK 64 /* k per step: two 16-byte vectors a lane for each of 2 rows */
static_assert(MR_DEPTH >= 1 && MR_DEPTH <= 8 && MR_XA_DEPTH >= 1 && MR_XA_DEPTH <= 8,
              "mmr: 1 to 8 steps in flight");

static __device__ __forceinline__ uint32_t u4_word(const uint4 &v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

/* A step's w vectors of lane q: v[2h] row 0's and v[2h + 1] row 1's at k0 + 32h + 8q
 * (zeros past kend or for a row past N, ok0/ok1 false: nothing is read there). */
static __device__ __forceinline__ void mr_load_w(uint4 (&v)[4], const uint4 *w0, const uint4 *w1, bool ok0,
                                                 bool ok1, int64_t k0, int64_t kend, int q) {
    const uint4 z = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int64_t k = k0 + 32 * h + 8 * q;
        const bool in = k < kend;
        v[2 * h] = ok0 && in ? ld_stream(w0 + k / 8) : z;
        v[2 * h + 1] = ok1 && in ? ld_stream(w1 + k / 8) : z;
    }
}

/* A step's x vectors of lane (g, q): v[j][h] token 8 j + g's at k0 + 32h + 8q (zeros past T
 * or kend). */
template <typename E, int NT>
static __device__ __forceinline__ void mr_load_x(uint4 (&v)[NT][2], const E *x, int64_t T, int64_t K,
                                                 int64_t k0, int64_t kend, int g, int q) {
    const uint4 z = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int64_t t = j * 8 + g, k = k0 + 32 * h + 8 * q;
            v[j][h] = t < T && k < kend ? __ldg((const uint4 *)(x + t * K + k)) : z;
        }
}

/* Grid (ceil(N / MM_BN) S) in clusters of S along x, as mma's. */
template <typename E, int NT>
static __global__ void __launch_bounds__(MM_WARPS * 32)
    linear_mmr_kernel(E *__restrict__ y, const E *__restrict__ x, const E *__restrict__ w, int64_t T,
                      int64_t N, int64_t K, int S, int64_t kslice) {
    __shared__ __align__(16) float part[MM_BN * 8 * NT];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    const int64_t n0 = (int64_t)(blockIdx.x / S) * MM_BN;
    const int rank = (int)(blockIdx.x % S);
    const int64_t kbeg = rank * kslice < K ? rank * kslice : K;
    const int64_t kend = kbeg + kslice < K ? kbeg + kslice : K;
    const int64_t r0 = n0 + warp * 16 + g, r1 = r0 + 8;
    const bool ok0 = r0 < N, ok1 = r1 < N;
    const uint4 *w0 = (const uint4 *)(w + (ok0 ? r0 : 0) * K), *w1 = (const uint4 *)(w + (ok1 ? r1 : 0) * K);
    float acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++)
        acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;

    /* Launched with programmatic dependent launch (common.cuh): w (written by no kernel)
     * is asked for before the wait, x (the kernel before wrote it) after it. */
    pdl_trigger();
    constexpr bool XA = MR_X_AHEAD && NT == 1;
    constexpr int D = XA ? MR_XA_DEPTH : MR_DEPTH; /* steps of w in flight */
    uint4 wv[D][4];
#pragma unroll
    for (int p = 0; p < D; p++)
        mr_load_w(wv[p], w0, w1, ok0, ok1, kbeg + (int64_t)p * MR_BK, kend, q);
    pdl_wait();
    uint4 xa[XA ? D : 1][NT][2];
    if constexpr (XA) {
#pragma unroll
        for (int p = 0; p < D; p++)
            mr_load_x<E, NT>(xa[p], x, T, K, kbeg + (int64_t)p * MR_BK, kend, g, q);
    }
    for (int64_t kb0 = kbeg; kb0 < kend; kb0 += (int64_t)D * MR_BK) {
#pragma unroll
        for (int d = 0; d < D; d++) {
            const int64_t kb = kb0 + (int64_t)d * MR_BK;
            if (kb >= kend) break; /* warp-uniform */
            uint4 cur[4];
#pragma unroll
            for (int i = 0; i < 4; i++)
                cur[i] = wv[d][i];
            mr_load_w(wv[d], w0, w1, ok0, ok1, kb + (int64_t)D * MR_BK, kend, q);
            uint4 xv[NT][2];
            if constexpr (XA) {
#pragma unroll
                for (int j = 0; j < NT; j++)
                    xv[j][0] = xa[d][j][0], xv[j][1] = xa[d][j][1];
                mr_load_x<E, NT>(xa[d], x, T, K, kb + (int64_t)D * MR_BK, kend, g, q);
            } else {
                mr_load_x<E, NT>(xv, x, T, K, kb, kend, g, q);
            }
#pragma unroll
            for (int ks = 0; ks < 4; ks++) {
                const int h = ks >> 1, o = 2 * (ks & 1);
                const uint32_t a[4] = {u4_word(cur[2 * h], o), u4_word(cur[2 * h + 1], o),
                                       u4_word(cur[2 * h], o + 1), u4_word(cur[2 * h + 1], o + 1)};
#pragma unroll
                for (int j = 0; j < NT; j++)
                    mma16816<E>::mma(acc[j], a, u4_word(xv[j][h], o), u4_word(xv[j][h], o + 1));
            }
        }
    }
    mm_store_tile<E, NT>(y, acc, part, T, N, n0, rank, S);
}

template <typename E, int NT> static int linear_mmr_t(const linear_args *a, cudaStream_t s) {
    auto kernel = linear_mmr_kernel<E, NT>;
    static int per_sm = 0; /* asked once an instance: the cards of a process are alike */
    if (per_sm == 0) per_sm = mm_per_sm(kernel, 0);
    return mm_launch<E>(kernel, per_sm, MR_BK, 0, a, s);
}

template <typename E> static int linear_mmr(const linear_args *a, cudaStream_t s) {
    MM_BY_TILES(linear_mmr_t, a, s)
}

/* Tensor cores take 16-bit operands: F32 goes to cublas. */
template <> int linear_mmr<float>(const linear_args *a, cudaStream_t s) { return lr_gpu_linear_cublas(a, s); }

int lr_gpu_linear_mmr(const void *args, cudaStream_t s) {
    const linear_args *a = (const linear_args *)args;
    return LR_DISPATCH_DTYPE(a->dt, linear_mmr, a, s);
}

/* ---- auto ------------------------------------------------------------------------------
 * gemv where it beat cuBLAS on the Llama-3-8B decode shapes, cublas otherwise; its bits
 * are those of whichever ran. Two ranges:
 *  - T <= AUTO_GEMV_MAX_T (2), every shape: gemv ahead on every one on the H200 (run 16's
 *    table in docs/performance.md).
 *  - T <= AUTO_GEMV_MID_T (3) where N <= AUTO_GEMV_MID_N (8192) and K <= AUTO_GEMV_MID_K
 *    (4096; 0 bounds nothing): qkv_proj and o_proj, not down_proj (K 14336), gate_up_proj
 *    or lm_head (wide N). gemv ahead at T 3 in three runs on two cards, microseconds
 *    qkv_proj / o_proj against cublas: run 34 (H100) 25.7 / 16.6 against 29.7 / 21.6; run
 *    35 (H200) 21.2 / 17.0 against 23.5 and 22.7 / 19.6 and 19.7; run 36 (H100) 26.5 / 18.8
 *    against 34.4 and 35.8 / 23.5 and 18.6. On down_proj it lost (55.3 against 50.5, run
 *    34). At T 4 no clear gain (run 35: 27.8 / 16.2 against 26.5 and 22.8 / 17.4 and 17.5,
 *    the tree's two builds 15% apart; run 36: 35.5 / 19.7 against 30.2 and 31.7 / 21.4 and
 *    26.8), so T 4 stays cublas's. The default since run 36, whose build with it passed
 *    test_gpu_linear, test_gpu_forward and llama-diff check -b cuda on every fixture at bf16
 *    and fp16, plain and --decode 4. All three are build-time knobs (-D) for the next trial.
 * mmr instead of cublas from T 3 was slower on every shape timed and took batch 32 with
 * graphs from 8.0 to 11.3 ms (run 31, H100). */
#ifndef AUTO_GEMV_MID_N
#define AUTO_GEMV_MID_N 8192
#endif
#ifndef AUTO_GEMV_MID_K
#define AUTO_GEMV_MID_K 4096
#endif
#ifndef AUTO_GEMV_MID_T
#define AUTO_GEMV_MID_T 3
#endif
static_assert(AUTO_GEMV_MID_T >= 0 && AUTO_GEMV_MID_T <= GEMV_MAX_T,
              "AUTO_GEMV_MID_T: 0 to GEMV_MAX_T tokens");
int lr_gpu_linear_auto(const void *args, cudaStream_t s) {
    const linear_args *a = (const linear_args *)args;
    const bool mid = a->T <= AUTO_GEMV_MID_T && a->N <= AUTO_GEMV_MID_N &&
                     (AUTO_GEMV_MID_K == 0 || a->K <= AUTO_GEMV_MID_K);
    if (a->T <= AUTO_GEMV_MAX_T || mid) return lr_gpu_linear_gemv(args, s);
    return lr_gpu_linear_cublas(args, s);
}

/* ---- Entry point ----------------------------------------------------------------------- */

extern "C" int lr_gpu_linear(const char *variant, void *y, const void *x, const void *w, int64_t T, int64_t N,
                             int64_t K, lr_dtype dt, cublasHandle_t blas, cudaStream_t s) {
    const lr_gpu_kernel *k;
    int rc = lr_gpu_kernel_find("linear", variant, &k);
    if (rc) return rc;
    if (T < 0 || N < 0 || K < 0)
        return lr_fail(LR_E_INVAL, "gpu linear: negative size (T %lld, N %lld, K %lld)", (long long)T,
                       (long long)N, (long long)K);
    if (T > INT_MAX || N > INT_MAX || K > INT_MAX)
        return lr_fail(LR_E_INVAL, "gpu linear: a size over %d, cuBLAS's limit (T %lld, N %lld, K %lld)",
                       INT_MAX, (long long)T, (long long)N, (long long)K);
    if (dt != LR_F32 && dt != LR_F16 && dt != LR_BF16)
        return lr_fail(LR_E_INVAL, "gpu linear: dtype %s is not F32, F16 or BF16", lr_dtype_name(dt));
    if (T == 0 || N == 0) return LR_OK;
    if (K == 0)
        return lr_fail(LR_E_INVAL, "gpu linear: K 0 (no input features) for %lld outputs", (long long)N);
    if (!blas) return lr_fail(LR_E_INVAL, "gpu linear: no cuBLAS handle");
    linear_args a = {y, x, w, T, N, K, dt, blas};
    return lr_gpu_kernel_run(k, &a, dt, s);
}
