/* ref_ops.h: the CPU reference's ops, one per module, in float64 and float32, for the
 * forward pass and for op-level tests of other backends (gpu/ kernels are checked
 * against these). Shapes are row-major; ld is a row stride in elements. Not installed. */
#ifndef LLAMAREF_REF_OPS_H
#define LLAMAREF_REF_OPS_H

#include "llamaref.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LR_REF_OPS(real, sfx)                                                              \
    /* ids (T) -> out (T, H): rows of w (shard, H) = vocabulary [start, start+shard), else 0 */ \
    void lr_ref_vocab_parallel_embedding_##sfx(real *out, const int64_t *ids, int64_t T,      \
                                               const real *w, int64_t start, int64_t shard,   \
                                               int64_t H);                                     \
    /* y (T, H) = x / sqrt(mean(x^2) + eps) * w */                                         \
    void lr_ref_rms_norm_##sfx(real *y, const real *x, const real *w, int64_t T, int64_t H,  \
                               double eps);                                                 \
    /* residual += x; y = rms_norm(residual) */                                            \
    void lr_ref_fused_add_rms_norm_##sfx(real *y, real *residual, const real *x,            \
                                         const real *w, int64_t T, int64_t H, double eps);  \
    /* y (T, N) = x (T, K) @ w (N, K)^T + b (N, or NULL) */                                 \
    void lr_ref_linear_##sfx(real *y, const real *x, const real *w, const real *b, int64_t T, \
                             int64_t N, int64_t K);                                         \
    /* neox RoPE in place on nheads heads of hd at the start of each row of x (T, ld) */   \
    void lr_ref_rotary_embedding_##sfx(real *x, int64_t ld, int64_t T, int64_t nheads,      \
                                       int64_t hd, const int64_t *positions,                \
                                       const double *inv_freq, real *scratch_hd);           \
    /* gu (T, 2 NI) = [gate | up] -> out (T, NI) = silu(gate) * up */                       \
    void lr_ref_silu_and_mul_##sfx(real *out, const real *gu, int64_t T, int64_t NI);       \
    /* gu (T, 2 NI) -> out (T, NI) = silu(gate) */                                          \
    void lr_ref_silu_##sfx(real *out, const real *gu, int64_t T, int64_t NI);               \
    /* one sequence, causal from past: q (n, ldq) nh heads, k v (past+n, ldkv) nkv heads    \
     * -> ctx (n, ldc); scores: scratch max(n, nh / nkv) * (past + n) */                    \
    void lr_ref_attention_##sfx(real *ctx, int64_t ldc, const real *q, int64_t ldq,         \
                                const real *k, const real *v, int64_t ldkv, int64_t n,      \
                                int64_t past, int64_t nh, int64_t nkv, int64_t hd,          \
                                real *scores);                                              \
    /* the same with P rounded to p_dtype per tile of `tile` keys, as the CUDA path's       \
     * 16-bit prefill kernels (fa2, tc's wmma) round it (ref/core/rounding.h) */           \
    void lr_ref_attention_tiled_##sfx(real *ctx, int64_t ldc, const real *q, int64_t ldq,   \
                                      const real *k, const real *v, int64_t ldkv, int64_t n, \
                                      int64_t past, int64_t nh, int64_t nkv, int64_t hd,    \
                                      int64_t tile, lr_dtype p_dtype, real *scores);

LR_REF_OPS(double, f64)
LR_REF_OPS(float, f32)
#undef LR_REF_OPS

#ifdef __cplusplus
}
#endif
#endif
