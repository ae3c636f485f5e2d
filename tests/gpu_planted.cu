/* gpu_planted.cu: the planted-bug kernels of gpu_planted.h, for tests/test_gpu_ops only.
 * Written plainly (one block per row or token, grid-stride, float32 arithmetic, one
 * rounding of each output) so that the planted flaw is the only thing wrong with them. */
#include "common.cuh"
#include "gpu_planted.h"

#define PLANTED_THREADS 256
#define PLANTED_MAX_BLOCKS 65535

static unsigned int planted_grid(int64_t rows) {
    return (unsigned int)(rows < PLANTED_MAX_BLOCKS ? rows : PLANTED_MAX_BLOCKS);
}

/* Sum over the block; every thread gets the same value. part: 32 floats of shared
 * memory, free to reuse once this returns to all threads. */
static __device__ float planted_block_sum(float v, float *part) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    __syncthreads(); /* part may still be read from the previous row */
    if (lane == 0) part[warp] = v;
    __syncthreads();
    float total = 0;
    for (int i = 0; i < nwarps; i++)
        total += part[i];
    return total;
}

/* ---- rmsnorm "last-unweighted" ---------------------------------------------------------- */

template <typename E>
static __global__ void planted_rmsnorm_kernel(E *y, float *residual, const E *x, const E *w, int64_t T,
                                              int64_t H, float eps) {
    __shared__ float part[32];
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        const E *xr = x + t * H;
        float *rr = residual ? residual + t * H : NULL;
        E *yr = y + t * H;
        float ss = 0;
        for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
            float v = ld(xr + i);
            if (rr) {
                v += rr[i];
                rr[i] = v;
            }
            ss += v * v;
        }
        ss = planted_block_sum(ss, part);
        float inv = 1.0f / sqrtf(ss / (float)H + eps);
        for (int64_t i = threadIdx.x; i < H; i += blockDim.x) { /* each thread rereads what it wrote */
            float v = rr ? rr[i] : ld(xr + i);
            st(yr + i, i == H - 1 ? v * inv /* the planted bug: no weight */ : v * inv * ld(w + i));
        }
    }
}

template <typename E>
static int planted_rmsnorm(void *y, float *residual, const void *x, const void *w, int64_t T, int64_t H,
                           float eps, cudaStream_t s) {
    if (T == 0) return LR_OK;
    planted_rmsnorm_kernel<E>
        <<<planted_grid(T), PLANTED_THREADS, 0, s>>>((E *)y, residual, (const E *)x, (const E *)w, T, H, eps);
    LAUNCH_CHECK();
    return LR_OK;
}

extern "C" int lr_test_planted_rms_norm(const char *variant, void *y, const void *x, const void *w, int64_t T,
                                        int64_t H, float eps, lr_dtype dt, cudaStream_t s) {
    (void)variant;
    if (T < 0 || H < 1)
        return lr_fail(LR_E_INVAL, "planted rms_norm: T %lld, H %lld", (long long)T, (long long)H);
    return LR_DISPATCH_DTYPE(dt, planted_rmsnorm, y, (float *)NULL, x, w, T, H, eps, s);
}

extern "C" int lr_test_planted_fused_add_rms_norm(const char *variant, void *y, float *residual,
                                                  const void *x, const void *w, int64_t T, int64_t H,
                                                  float eps, lr_dtype dt, cudaStream_t s) {
    (void)variant;
    if (T < 0 || H < 1 || !residual)
        return lr_fail(LR_E_INVAL, "planted fused_add_rms_norm: T %lld, H %lld, residual %p", (long long)T,
                       (long long)H, (void *)residual);
    return LR_DISPATCH_DTYPE(dt, planted_rmsnorm, y, residual, x, w, T, H, eps, s);
}

/* ---- rotary "f32-angle" ---------------------------------------------------------------- */

template <typename E>
static __global__ void planted_rotary_kernel(E *x, int64_t ldx, int64_t T, int64_t nheads, int64_t hd,
                                             const int64_t *positions, const double *inv_freq) {
    int64_t half = hd / 2;
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        float pos = (float)positions[t];
        for (int64_t k = threadIdx.x; k < nheads * half; k += blockDim.x) {
            int64_t h = k / half, i = k % half;
            float sn, c;
            sincosf(pos * (float)inv_freq[i], &sn, &c); /* the planted bug: float32, not float64 */
            E *v = x + t * ldx + h * hd;
            float x1 = ld(v + i), x2 = ld(v + half + i);
            st(v + i, x1 * c - x2 * sn);
            st(v + half + i, x2 * c + x1 * sn);
        }
    }
}

template <typename E>
static int planted_rotary(void *x, int64_t ldx, int64_t T, int64_t nheads, int64_t hd,
                          const int64_t *positions, const double *inv_freq, cudaStream_t s) {
    if (T == 0 || nheads == 0) return LR_OK;
    planted_rotary_kernel<E>
        <<<planted_grid(T), PLANTED_THREADS, 0, s>>>((E *)x, ldx, T, nheads, hd, positions, inv_freq);
    LAUNCH_CHECK();
    return LR_OK;
}

extern "C" int lr_test_planted_rotary(const char *variant, void *x, int64_t ld, int64_t T, int64_t nheads,
                                      int64_t hd, const int64_t *positions, const double *inv_freq,
                                      lr_dtype dt, cudaStream_t s) {
    (void)variant;
    if (T < 0 || nheads < 0 || hd < 2 || hd % 2 || nheads * hd > ld)
        return lr_fail(LR_E_INVAL, "planted rotary: T %lld, nheads %lld, hd %lld, ld %lld", (long long)T,
                       (long long)nheads, (long long)hd, (long long)ld);
    return LR_DISPATCH_DTYPE(dt, planted_rotary, x, ld, T, nheads, hd, positions, inv_freq, s);
}

/* ---- linear "gemv-drop-last": written plainly (one warp per output feature, grid-stride,
 * float32 arithmetic, one rounding of each output), so that the planted flaw is the only
 * thing wrong with it. */
#define PLANTED_WARPS 8
#define PLANTED_MAX_BLOCKS 65535

template <typename E>
static __global__ void planted_gemv_kernel(E *y, const E *x, const E *w, int64_t T, int64_t N, int64_t K) {
    const int lane = threadIdx.x & 31;
    for (int64_t n = (int64_t)blockIdx.x * PLANTED_WARPS + (threadIdx.x >> 5); n < N;
         n += (int64_t)gridDim.x * PLANTED_WARPS) {
        for (int64_t t = 0; t < T; t++) {
            float acc = 0.0f;
            for (int64_t k = lane; k < K - 1; k += 32) /* the bug: K - 1 */
                acc = fmaf(ld(w + n * K + k), ld(x + t * K + k), acc);
            for (int o = 16; o > 0; o >>= 1)
                acc += __shfl_xor_sync(0xffffffffu, acc, o);
            if (lane == 0) st(y + t * N + n, acc);
        }
    }
}

template <typename E>
static int planted_gemv(void *y, const void *x, const void *w, int64_t T, int64_t N, int64_t K,
                        cudaStream_t s) {
    int64_t blocks = (N + PLANTED_WARPS - 1) / PLANTED_WARPS;
    unsigned int grid = (unsigned int)(blocks < PLANTED_MAX_BLOCKS ? blocks : PLANTED_MAX_BLOCKS);
    planted_gemv_kernel<E><<<grid, PLANTED_WARPS * 32, 0, s>>>((E *)y, (const E *)x, (const E *)w, T, N, K);
    LAUNCH_CHECK();
    return LR_OK;
}

extern "C" int lr_test_planted_linear(const char *variant, void *y, const void *x, const void *w, int64_t T,
                                      int64_t N, int64_t K, lr_dtype dt, cublasHandle_t blas,
                                      cudaStream_t s) {
    (void)variant, (void)blas;
    if (T < 0 || N < 0 || K < 1) return lr_fail(LR_E_INVAL, "planted linear: bad sizes");
    if (T == 0 || N == 0) return LR_OK;
    return LR_DISPATCH_DTYPE(dt, planted_gemv, y, x, w, T, N, K, s);
}
