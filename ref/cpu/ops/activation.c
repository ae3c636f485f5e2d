/* activation.c (template, see ops/real.h): SiluAndMul, the MLP's activation on the packed
 * gate_up_proj output, silu alone (observed as mlp.act_fn), and the product as torch
 * computes it under transformers (a rounding profile's ACT_SILU_ROUNDED, rounding.h). */

static inline real R(silu1)(real g) { return g / (1 + REXP(-g)); }

/* gu (T, 2I) = [gate | up] -> out (T, NI) = silu(gate) * up. */
void R(lr_ref_silu_and_mul)(real *out, const real *gu, int64_t T, int64_t NI) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < NI; i++) out[t * NI + i] = R(silu1)(gu[t * 2 * NI + i]) * gu[t * 2 * NI + NI + i];
}

/* gu (T, 2I) -> out (T, NI) = silu(gate). */
void R(lr_ref_silu)(real *out, const real *gu, int64_t T, int64_t NI) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < NI; i++) out[t * NI + i] = R(silu1)(gu[t * 2 * NI + i]);
}

/* gu (T, 2I) -> out (T, NI) = round(silu(gate)) * up: act_fn(gate_proj(x)) * up_proj(x),
 * silu's output rounded to dt before the product, which the caller rounds. */
void R(lr_ref_silu_and_mul_torch)(real *out, const real *gu, int64_t T, int64_t NI, lr_dtype dt) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < NI; i++)
            out[t * NI + i] = R(round1)(R(silu1)(gu[t * 2 * NI + i]), dt) * gu[t * 2 * NI + NI + i];
}
