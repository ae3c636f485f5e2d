/* emulated.c: the emulated bf16/fp16 reference ops of llamaref_ops.h: the float32 ops of
 * ref/cpu/ops/ with their outputs rounded where the CUDA path rounds them (the rounding
 * map, ref/core/rounding.h), one op at a time, for a kernel's own harness and the op
 * sweep (gpu/opsweep.c). The model-level emulated path rounds the same way through the
 * composer's buffers (ref/cpu/ops/model.c). */
#include "llamaref_ops.h"

/* Columns [0, w) of each row of x (T, ld) rounded to dt. */
static void round_cols(float *x, int64_t T, int64_t ld, int64_t w, lr_dtype dt) {
    for (int64_t t = 0; t < T; t++)
        lr_round_f32_n(x + t * ld, (size_t)w, dt);
}

void lr_ref_rms_norm_emulated(float *y, const float *x, const float *w, int64_t T, int64_t H, double eps,
                              lr_dtype dt) {
    lr_ref_rms_norm_f32(y, x, w, T, H, eps);
    lr_round_f32_n(y, (size_t)(T * H), dt);
}

void lr_ref_fused_add_rms_norm_emulated(float *y, float *residual, const float *x, const float *w, int64_t T,
                                        int64_t H, double eps, lr_dtype dt) {
    lr_ref_fused_add_rms_norm_f32(y, residual, x, w, T, H, eps);
    lr_round_f32_n(y, (size_t)(T * H), dt);
}

void lr_ref_linear_emulated(float *y, const float *x, const float *w, const float *b, int64_t T, int64_t N,
                            int64_t K, lr_dtype dt) {
    lr_ref_linear_f32(y, x, w, NULL, T, N, K);
    lr_round_f32_n(y, (size_t)(T * N), dt);
    if (!b) return;
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++)
            y[t * N + n] += b[n];
    lr_round_f32_n(y, (size_t)(T * N), dt);
}

void lr_ref_rotary_embedding_emulated(float *x, int64_t ld, int64_t T, int64_t nheads, int64_t hd,
                                      const int64_t *positions, const double *inv_freq, float *scratch_hd,
                                      lr_dtype dt) {
    lr_ref_rotary_embedding_f32(x, ld, T, nheads, hd, positions, inv_freq, scratch_hd);
    round_cols(x, T, ld, nheads * hd, dt);
}

void lr_ref_silu_and_mul_emulated(float *out, const float *gu, int64_t T, int64_t NI, lr_dtype dt) {
    lr_ref_silu_and_mul_f32(out, gu, T, NI);
    lr_round_f32_n(out, (size_t)(T * NI), dt);
}

void lr_ref_silu_emulated(float *out, const float *gu, int64_t T, int64_t NI, lr_dtype dt) {
    lr_ref_silu_f32(out, gu, T, NI);
    lr_round_f32_n(out, (size_t)(T * NI), dt);
}

void lr_ref_attention_emulated(float *ctx, int64_t ldc, const float *q, int64_t ldq, const float *k,
                               const float *v, int64_t ldkv, int64_t n, int64_t past, int64_t nh, int64_t nkv,
                               int64_t hd, bool rounds_p, lr_dtype dt, float *scores) {
    if (rounds_p)
        lr_ref_attention_tiled_f32(ctx, ldc, q, ldq, k, v, ldkv, n, past, nh, nkv, hd, LR_ATTN_P_TILE, dt,
                                   scores);
    else
        lr_ref_attention_f32(ctx, ldc, q, ldq, k, v, ldkv, n, past, nh, nkv, hd, scores);
    round_cols(ctx, n, ldc, nh * hd, dt);
}
