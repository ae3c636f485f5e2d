/* rmsnorm.cu: RMSNorm, alone and fused with the residual add (vLLM's fused_add_rms_norm,
 * with a float32 residual stream), the twin of ref/ops/rmsnorm.c. Variants that differ
 * in how a row is read and its sum of squares reduced, so the registry has a real choice
 * and each checks the others. */
#include "rmsnorm.cuh"

/* Every rmsnorm launcher receives an lr_gpu_rmsnorm_args (llamaref_kernels.h). */

#define MAX_ROW_BLOCKS 65535
#define BLOCK_THREADS 256
#define WARP_ROWS 8 /* rows (warps) per block of the warp variant */

/* Sum over the block; every thread gets the same value (all add the warp sums in the
 * same order). part: 32 floats of shared memory. */
static __device__ float block_sum(float v, float *part) {
    v = rms_warp_sum(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    __syncthreads(); /* part may still be read from the previous row */
    if (lane == 0) part[warp] = v;
    __syncthreads();
    float total = 0;
    for (int i = 0; i < nwarps; i++)
        total += part[i];
    return total;
}

/* One row: pass 1 forms v = residual + x (stored back) or x, and its sum of squares;
 * pass 2 writes y. Each thread rereads in pass 2 exactly the elements it wrote in pass 1,
 * so y may alias x. lane/nlanes: this thread's place among the row's threads. */
template <typename E>
static __device__ __forceinline__ float row_sumsq(float *rr, const E *xr, int64_t H, int lane, int nlanes) {
    float ss = 0;
    for (int64_t i = lane; i < H; i += nlanes) {
        float v = ld(xr + i);
        if (rr) {
            v += rr[i];
            rr[i] = v;
        }
        ss += v * v;
    }
    return ss;
}

template <typename E>
static __device__ __forceinline__ void row_scale(E *yr, const float *rr, const E *xr, const E *w, int64_t H,
                                                 float ss, float eps, int lane, int nlanes) {
    float inv = 1.0f / sqrtf(ss / (float)H + eps);
    for (int64_t i = lane; i < H; i += nlanes) {
        float v = rr ? rr[i] : ld(xr + i);
        st(yr + i, v * inv * ld(w + i));
    }
}

/* "block": one block per row. */
template <typename E>
static __global__ void rmsnorm_block_kernel(E *y, float *residual, const E *x, const E *w, int64_t T,
                                            int64_t H, float eps) {
    __shared__ float part[32];
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        float *rr = residual ? residual + t * H : NULL;
        float ss = row_sumsq(rr, x + t * H, H, threadIdx.x, blockDim.x);
        ss = block_sum(ss, part);
        row_scale(y + t * H, rr, x + t * H, w, H, ss, eps, threadIdx.x, blockDim.x);
    }
}

/* "warp": one warp per row, WARP_ROWS rows per block; no shared memory, no barrier. */
template <typename E>
static __global__ void rmsnorm_warp_kernel(E *y, float *residual, const E *x, const E *w, int64_t T,
                                           int64_t H, float eps) {
    int lane = threadIdx.x & 31;
    int64_t stride = (int64_t)gridDim.x * WARP_ROWS;
    for (int64_t t = (int64_t)blockIdx.x * WARP_ROWS + (threadIdx.x >> 5); t < T; t += stride) {
        float *rr = residual ? residual + t * H : NULL;
        float ss = rms_warp_sum(row_sumsq(rr, x + t * H, H, lane, 32));
        row_scale(y + t * H, rr, x + t * H, w, H, ss, eps, lane, 32);
    }
}

/* "vec": one block of VEC_THREADS per row; each thread holds up to VEC_CHUNKS chunks of
 * 4 consecutive elements in registers, loaded together (8- or 16-byte loads), so a row
 * costs one round trip to memory for x, the residual and w, not one per element: the
 * decode case (T of 1 to 32), where the block variant waits on every load in turn. Rows
 * wider than 4 * VEC_THREADS * VEC_CHUNKS, H not a multiple of 4 or unaligned pointers
 * take the block kernel. */
#define VEC_THREADS RMS_VEC_THREADS /* rmsnorm.cuh: the row's layout and arithmetic */
#define VEC_CHUNKS RMS_VEC_CHUNKS
/* Rows that VEC_CHUNKS / 2 chunks cover (H <= 4096 at bf16) run an instance of that many,
 * whose thread takes 32 registers where the full one takes 56 (ptxas, bf16): 4 blocks of
 * 512 threads an SM, not 2, which the prefill rows' T rows use (run 31, H100: rms_norm's
 * share of prefill 1 x 2048 from 2.48 to 2.30 ms, of 8 x 512 from 4.92 to 4.54). A thread
 * sums its chunks in order, and the chunks past the row are skipped in both, so each sum,
 * and so each bit, is the same. */
template <typename E, int CH>
static __global__ void __launch_bounds__(VEC_THREADS)
    rmsnorm_vec_kernel(E *y, float *residual, const E *x, const E *w, int64_t T, int64_t H, float eps) {
    typedef typename vec4_of<E>::T V;
    __shared__ float part[32];
    const int64_t nc = H / 4;
    pdl_trigger(); /* launched with programmatic dependent launch (common.cuh) */
    pdl_wait();
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        float v[CH][4], wv[CH][4];
        float ss = 0.0f;
#pragma unroll
        for (int c = 0; c < CH; c++) {
            int64_t k = threadIdx.x + (int64_t)c * VEC_THREADS;
            if (k < nc) {
                V xv = ((const V *)(x + t * H))[k], ww = ((const V *)w)[k];
                const E *xe = (const E *)&xv, *we = (const E *)&ww;
                float4 r = residual ? ((const float4 *)(residual + t * H))[k] : make_float4(0, 0, 0, 0);
                const float rr[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    v[c][j] = rms_stream(elem<E>::load(xe[j]), residual ? rr[j] : 0.0f);
                    wv[c][j] = elem<E>::load(we[j]);
                }
            }
        }
#pragma unroll
        for (int c = 0; c < CH; c++) {
            int64_t k = threadIdx.x + (int64_t)c * VEC_THREADS;
            if (k < nc) {
                if (residual) ((float4 *)(residual + t * H))[k] = make_float4(v[c][0], v[c][1], v[c][2], v[c][3]);
#pragma unroll
                for (int j = 0; j < 4; j++)
                    ss = rms_sumsq(ss, v[c][j]);
            }
        }
        ss = rms_warp_sum(ss);
        __syncthreads(); /* part may still be read from the previous row */
        if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
        __syncthreads();
        const float inv = rms_inv(rms_row_sum(part), H, eps);
#pragma unroll
        for (int c = 0; c < CH; c++) {
            int64_t k = threadIdx.x + (int64_t)c * VEC_THREADS;
            if (k < nc) {
                V out;
                E *oe = (E *)&out;
#pragma unroll
                for (int j = 0; j < 4; j++)
                    oe[j] = elem<E>::store(rms_scale(v[c][j], inv, wv[c][j]));
                ((V *)(y + t * H))[k] = out;
            }
        }
    }
}

template <typename E> static int rmsnorm_block(const lr_gpu_rmsnorm_args *a, cudaStream_t s);

/* Whether "vec" runs its own kernel on these rows (else "block"'s): H a multiple of 4 and
 * within its chunks, y, x and w aligned to its loads, the residual (or NULL) to 16 bytes. */
extern "C" bool lr_gpu_rmsnorm_vec_takes(int64_t H, const void *y, const void *x, const void *w,
                                         const float *residual, lr_dtype dt) {
    const uintptr_t align = dt == LR_F32 ? 16 : 8; /* sizeof(vec4_of<E>::T) */
    return H > 0 && H % 4 == 0 && H <= 4 * VEC_THREADS * VEC_CHUNKS && (uintptr_t)y % align == 0 &&
           (uintptr_t)x % align == 0 && (uintptr_t)w % align == 0 && (uintptr_t)residual % 16 == 0;
}

template <typename E> static int rmsnorm_vec(const lr_gpu_rmsnorm_args *a, cudaStream_t s) {
    static_assert(sizeof(typename vec4_of<E>::T) == (sizeof(E) == 4 ? 16 : 8),
                  "lr_gpu_rmsnorm_vec_takes' alignment");
    if (!lr_gpu_rmsnorm_vec_takes(a->H, a->y, a->x, a->w, a->residual, a->dt)) return rmsnorm_block<E>(a, s);
    unsigned int grid = (unsigned int)(a->T < MAX_ROW_BLOCKS ? a->T : MAX_ROW_BLOCKS);
    auto kernel = rmsnorm_vec_kernel<E, VEC_CHUNKS>;
    constexpr int HALF = VEC_CHUNKS / 2 > 0 ? VEC_CHUNKS / 2 : 1;
    if (a->H <= 4 * VEC_THREADS * HALF) kernel = rmsnorm_vec_kernel<E, HALF>;
    LR_LAUNCH(kernel, grid, VEC_THREADS, 0, s, (E *)a->y, a->residual, (const E *)a->x, (const E *)a->w, a->T,
              a->H, a->eps);
    return LR_OK;
}

int lr_gpu_rmsnorm_vec(const void *args, cudaStream_t s);

template <typename E> static int rmsnorm_block(const lr_gpu_rmsnorm_args *a, cudaStream_t s) {
    unsigned int grid = (unsigned int)(a->T < MAX_ROW_BLOCKS ? a->T : MAX_ROW_BLOCKS);
    rmsnorm_block_kernel<E><<<grid, BLOCK_THREADS, 0, s>>>((E *)a->y, a->residual, (const E *)a->x,
                                                           (const E *)a->w, a->T, a->H, a->eps);
    LAUNCH_CHECK();
    return LR_OK;
}

template <typename E> static int rmsnorm_warp(const lr_gpu_rmsnorm_args *a, cudaStream_t s) {
    int64_t blocks = (a->T + WARP_ROWS - 1) / WARP_ROWS;
    unsigned int grid = (unsigned int)(blocks < MAX_ROW_BLOCKS ? blocks : MAX_ROW_BLOCKS);
    rmsnorm_warp_kernel<E><<<grid, WARP_ROWS * 32, 0, s>>>((E *)a->y, a->residual, (const E *)a->x,
                                                           (const E *)a->w, a->T, a->H, a->eps);
    LAUNCH_CHECK();
    return LR_OK;
}

int lr_gpu_rmsnorm_block(const void *args, cudaStream_t s) {
    const lr_gpu_rmsnorm_args *a = (const lr_gpu_rmsnorm_args *)args;
    return LR_DISPATCH_DTYPE(a->dt, rmsnorm_block, a, s);
}

int lr_gpu_rmsnorm_vec(const void *args, cudaStream_t s) {
    const lr_gpu_rmsnorm_args *a = (const lr_gpu_rmsnorm_args *)args;
    return LR_DISPATCH_DTYPE(a->dt, rmsnorm_vec, a, s);
}

int lr_gpu_rmsnorm_warp(const void *args, cudaStream_t s) {
    const lr_gpu_rmsnorm_args *a = (const lr_gpu_rmsnorm_args *)args;
    return LR_DISPATCH_DTYPE(a->dt, rmsnorm_warp, a, s);
}

static int rmsnorm_run(const char *op, bool fused, const char *variant, void *y, float *residual,
                       const void *x, const void *w, int64_t T, int64_t H, float eps, lr_dtype dt,
                       cudaStream_t s) {
    const lr_gpu_kernel *k;
    int rc = lr_gpu_kernel_find("rmsnorm", variant, &k);
    if (rc) return rc;
    if (T < 0 || H < 0)
        return lr_fail(LR_E_INVAL, "gpu %s: negative size (T %lld, H %lld)", op, (long long)T, (long long)H);
    if (dt != LR_F32 && dt != LR_F16 && dt != LR_BF16)
        return lr_fail(LR_E_INVAL, "gpu %s: dtype %s is not F32, F16 or BF16", op, lr_dtype_name(dt));
    if (!(eps >= 0)) return lr_fail(LR_E_INVAL, "gpu %s: eps %g is negative or NaN", op, (double)eps);
    if (T == 0 || H == 0) return LR_OK;
    if (fused && !residual) return lr_fail(LR_E_INVAL, "gpu %s: residual is NULL", op);
    lr_gpu_rmsnorm_args a = {y, residual, x, w, T, H, eps, dt};
    return lr_gpu_kernel_run(k, &a, dt, s);
}

extern "C" int lr_gpu_rms_norm(const char *variant, void *y, const void *x, const void *w, int64_t T,
                               int64_t H, float eps, lr_dtype dt, cudaStream_t s) {
    return rmsnorm_run("rms_norm", false, variant, y, NULL, x, w, T, H, eps, dt, s);
}

extern "C" int lr_gpu_fused_add_rms_norm(const char *variant, void *y, float *residual, const void *x,
                                         const void *w, int64_t T, int64_t H, float eps, lr_dtype dt,
                                         cudaStream_t s) {
    return rmsnorm_run("fused_add_rms_norm", true, variant, y, residual, x, w, T, H, eps, dt, s);
}
