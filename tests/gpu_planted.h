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

/* embedding "shard-edge": the shard's range test stops one row short (local < shard - 1),
 * so the token start + shard - 1, the shard's last row, gets a zero row; every other row
 * is the lookup's, copied exactly. */
int lr_test_planted_embedding(const char *variant, void *out, const int64_t *ids, int64_t T, const void *w,
                              int64_t start, int64_t shard, int64_t H, lr_dtype dt, cudaStream_t s);

/* activation "last-ungated": out[t, NI-1] = up[t, NI-1], silu(gate) left out of each row's
 * last element; every other element is silu(gate) * up in float32, rounded once. The
 * silu op (observed as mlp.act_fn) is left to the library's. */
int lr_test_planted_silu_and_mul(const char *variant, void *out, const void *gu, int64_t T, int64_t NI,
                                 lr_dtype dt, cudaStream_t s);

/* cache "block-edge": a token whose slot is the last of its block (slot % block_size ==
 * block_size - 1) is not written (an off-by-one bound on the offset): the slot keeps what
 * it held. Every other token's key and value rows are copied exactly. */
int lr_test_planted_reshape_and_cache(const char *variant, void *k_cache, void *v_cache, const void *qkv,
                                      int64_t ld, int64_t k_col, int64_t v_col, int64_t T, int64_t nkv,
                                      int64_t hd, int64_t block_size, const int64_t *slot_mapping,
                                      lr_dtype dt, cudaStream_t s);

/* attention, written plainly (one block per token and head, two passes over the keys, P in
 * float32 as flash keeps it, the context rounded once), with one of the two structural
 * bugs the CPU simulations in test_gpu_ops.c plant: "mask-off-by-one", each query also
 * sees the key after its own where its sequence has one; "stale-key", the newest visible
 * key's K read from the slot before it (its V from its own). hd up to 256. ws is unused. */
int lr_test_planted_attention_mask(const char *variant, void *ctx, int64_t ldc, const void *q, int64_t ldq,
                                   const void *k_cache, const void *v_cache, const lr_gpu_attn_meta *meta,
                                   int64_t T, int64_t nh, int64_t nkv, int64_t hd, float scale, lr_dtype dt,
                                   lr_gpu_attn_ws *ws, cudaStream_t s);
int lr_test_planted_attention_stale(const char *variant, void *ctx, int64_t ldc, const void *q, int64_t ldq,
                                    const void *k_cache, const void *v_cache, const lr_gpu_attn_meta *meta,
                                    int64_t T, int64_t nh, int64_t nkv, int64_t hd, float scale, lr_dtype dt,
                                    lr_gpu_attn_ws *ws, cudaStream_t s);

#ifdef __cplusplus
}
#endif
#endif
