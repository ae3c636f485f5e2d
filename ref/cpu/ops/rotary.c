/* rotary.c (template, see ops/real.h): rotary position embedding in the neox
 * (rotate-half) layout that Hugging Face Llama checkpoints use. Angles are computed in
 * float64 from inverse frequencies made in float64 (lr_rope_inv_freq, ref/core/config.c), whatever the
 * compute precision; or as torch computes them under transformers (a rounding profile's
 * ROPE_TORCH, ref/core/rounding.h). */

/* In place on x (T, ld) holding nheads heads of hd at the start of each row:
 * x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin, halves of each head, angle pos * inv_freq. */
void R(lr_ref_rotary_embedding)(real *x, int64_t ld, int64_t T, int64_t nheads, int64_t hd,
                                const int64_t *positions, const double *inv_freq /* (hd/2) */,
                                real *cs /* scratch (hd) */) {
    int64_t half = hd / 2;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t i = 0; i < half; i++) {
            double a = (double)positions[t] * inv_freq[i];
            cs[i] = (real)cos(a);
            cs[half + i] = (real)sin(a);
        }
        for (int64_t h = 0; h < nheads; h++) {
            real *v = x + t * ld + h * hd;
            for (int64_t i = 0; i < half; i++) {
                real x1 = v[i], x2 = v[half + i], c = cs[i], s = cs[half + i];
                v[i] = x1 * c - x2 * s;
                v[half + i] = x2 * c + x1 * s;
            }
        }
    }
}

/* As lr_ref_rotary_embedding, as transformers rotates (apply_rotary_pos_emb): the angle
 * pos * inv_freq in float32 (inv_freq's values taken as float32: lr_rope_inv_freq_torch),
 * cos and sin in float32 rounded to dt, x cos and rotate_half(x) sin each rounded to dt,
 * then summed; the sum left for the caller to round. */
void R(lr_ref_rotary_embedding_torch)(real *x, int64_t ld, int64_t T, int64_t nheads, int64_t hd,
                                      const int64_t *positions, const double *inv_freq /* (hd/2) */,
                                      real *cs /* scratch (hd) */, lr_dtype dt) {
    int64_t half = hd / 2;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t i = 0; i < half; i++) {
            float a = (float)positions[t] * (float)inv_freq[i];
            cs[i] = R(round1)((real)(float)cos((double)a), dt);
            cs[half + i] = R(round1)((real)(float)sin((double)a), dt);
        }
        for (int64_t h = 0; h < nheads; h++) {
            real *v = x + t * ld + h * hd;
            for (int64_t i = 0; i < half; i++) {
                real x1 = v[i], x2 = v[half + i], c = cs[i], s = cs[half + i];
                v[i] = R(round1)(x1 * c, dt) - R(round1)(x2 * s, dt);
                v[half + i] = R(round1)(x2 * c, dt) + R(round1)(x1 * s, dt);
            }
        }
    }
}
