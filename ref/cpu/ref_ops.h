/* ref_ops.h: the CPU reference's ops, one per module, in float64 and float32, for the
 * forward pass and for op-level tests of other backends (gpu/ kernels are checked
 * against these). Declared in the installed header llamaref_ops.h, where a developer's
 * own harness finds them too. */
#ifndef LLAMAREF_REF_OPS_H
#define LLAMAREF_REF_OPS_H

#include "llamaref_ops.h"

/* The ops where a rounding profile rounds other than the map (ref/core/rounding.h), not
 * installed: the op rounding to dt inside where the profile says (nothing on the float64
 * instantiation: ops/real.h) and leaving its output for the caller to round, as the
 * map's ops leave theirs. ops/model.c picks them by the model's profile. */
#define LR_REF_PROFILE_OPS(real, sfx)                                                                        \
    /* NORM_BEFORE_WEIGHT: y (T, H) = round(x / sqrt(mean(x^2) + eps)) * w */                                \
    void lr_ref_rms_norm_torch_##sfx(real *y, const real *x, const real *w, int64_t T, int64_t H,            \
                                     double eps, lr_dtype dt);                                               \
    /* ROPE_TORCH: in place, round(x cos) + round(rotate_half(x) sin), angle and cos, sin in float32 */      \
    void lr_ref_rotary_embedding_torch_##sfx(real *x, int64_t ld, int64_t T, int64_t nheads, int64_t hd,     \
                                             const int64_t *positions, const double *inv_freq,               \
                                             real *scratch_hd, lr_dtype dt);                                 \
    /* ACT_SILU_ROUNDED: out (T, NI) = round(silu(gate)) * up */                                             \
    void lr_ref_silu_and_mul_torch_##sfx(real *out, const real *gu, int64_t T, int64_t NI, lr_dtype dt);     \
    /* ATTN_TORCH_FLASH, ATTN_TORCH_EAGER: one sequence as lr_ref_attention_##sfx */                         \
    void lr_ref_attention_torch_flash_##sfx(                                                                 \
        real *ctx, int64_t ldc, const real *q, int64_t ldq, const real *k, const real *v, int64_t ldkv,      \
        int64_t n, int64_t past, int64_t nh, int64_t nkv, int64_t hd, lr_dtype p_dtype, real *scores);       \
    void lr_ref_attention_torch_eager_##sfx(                                                                 \
        real *ctx, int64_t ldc, const real *q, int64_t ldq, const real *k, const real *v, int64_t ldkv,      \
        int64_t n, int64_t past, int64_t nh, int64_t nkv, int64_t hd, lr_dtype p_dtype, real *scores);

LR_REF_PROFILE_OPS(double, f64)
LR_REF_PROFILE_OPS(float, f32)
#undef LR_REF_PROFILE_OPS

#endif
