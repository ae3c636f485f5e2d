/* gpu_planted.h: CUDA kernels with planted bugs, compiled only into tests/test_gpu_ops
 * (tests/gpu_planted.cu), never into the library: no --kernel option or registry lookup
 * can reach them. Each is a correct op but for one deliberate flaw of the kind a real
 * kernel has; the op sweep must fail it, which is how the test shows what the sweep sees.
 * The signatures are gpu_ops.h's, so a sweep calls them as it calls a registered variant
 * (variant is ignored). */
#ifndef LLAMAREF_TEST_GPU_PLANTED_H
#define LLAMAREF_TEST_GPU_PLANTED_H

#include "gpu_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* rmsnorm "last-unweighted": y[t, H-1] = x[t, H-1] / rms (no weight); every other element
 * is RMSNorm's. The bug of issue 15 that the old sweep missed at bf16 on every shape. */
int lr_test_planted_rms_norm(const char *variant, void *y, const void *x, const void *w, int64_t T, int64_t H,
                             float eps, lr_dtype dt, cudaStream_t s);
int lr_test_planted_fused_add_rms_norm(const char *variant, void *y, float *residual, const void *x,
                                       const void *w, int64_t T, int64_t H, float eps, lr_dtype dt,
                                       cudaStream_t s);

/* rotary "f32-angle": the angle positions[t] * inv_freq[i] formed, and its sine and cosine
 * taken, in float32 (as many kernels do) instead of float64 as gpu_ops.h promises: near
 * position 2^20 the angle is off by up to a few hundredths of a radian, at small
 * positions by far less than a bf16 ulp. */
int lr_test_planted_rotary(const char *variant, void *x, int64_t ld, int64_t T, int64_t nheads, int64_t hd,
                           const int64_t *positions, const double *inv_freq, lr_dtype dt, cudaStream_t s);

/* linear "gemv-drop-last": y[t, n] = sum over k < K - 1 of x[t, k] w[n, k]; the last input
 * feature is left out (a tail loop that stops one short), in float32 with one rounding of
 * each output. One warp per output feature, lanes striding one element at a time over k, a
 * warp-shuffle sum: gemv's scalar order but for the missing term. Any T. */
int lr_test_planted_linear(const char *variant, void *y, const void *x, const void *w, int64_t T, int64_t N,
                           int64_t K, lr_dtype dt, cublasHandle_t blas, cudaStream_t s);

#ifdef __cplusplus
}
#endif
#endif
