/* gpu_linear_planted.cu: the planted-bug GEMV of gpu_linear_planted.h, for
 * tests/test_gpu_linear only. Written plainly (one warp per output feature, grid-stride,
 * float32 arithmetic, one rounding of each output) so that the planted flaw is the only
 * thing wrong with it. */
#include "common.cuh"
#include "gpu_linear_planted.h"

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
