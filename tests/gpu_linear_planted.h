/* gpu_linear_planted.h: a GEMV with a planted bug, compiled only into tests/test_gpu_linear
 * (tests/gpu_linear_planted.cu), never into the library: no --kernel option or registry
 * lookup reaches it. It is a correct y = x w^T but for one deliberate flaw of the kind a
 * hand-written GEMV has; the linear sweep must fail it, which is how the test shows what
 * its criteria see. Its signature is lr_gpu_linear's (variant and blas are ignored). */
#ifndef LLAMAREF_TEST_GPU_LINEAR_PLANTED_H
#define LLAMAREF_TEST_GPU_LINEAR_PLANTED_H

#include "gpu_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

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
