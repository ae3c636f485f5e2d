/* rmsnorm.c (template, see ops/real.h): RMSNorm, alone and fused with the residual add
 * as vLLM's fused_add_rms_norm does it, and as torch computes it under transformers (a
 * rounding profile's NORM_BEFORE_WEIGHT, ref/core/rounding.h). */

/* y = x / sqrt(mean(x^2) + eps) * w, per row of x (T, H). */
void R(lr_ref_rms_norm)(real *y, const real *x, const real *w, int64_t T, int64_t H, double eps) {
    for (int64_t t = 0; t < T; t++) {
        const real *xr = x + t * H;
        real *yr = y + t * H;
        real ss = 0;
        for (int64_t i = 0; i < H; i++) ss += xr[i] * xr[i];
        real inv = 1 / RSQRT(ss / (real)H + (real)eps);
        for (int64_t i = 0; i < H; i++) yr[i] = xr[i] * inv * w[i];
    }
}

/* residual += x; y = rms_norm(residual). x, residual, y: (T, H). */
void R(lr_ref_fused_add_rms_norm)(real *y, real *residual, const real *x, const real *w, int64_t T,
                                  int64_t H, double eps) {
    for (int64_t i = 0; i < T * H; i++) residual[i] += x[i];
    R(lr_ref_rms_norm)(y, residual, w, T, H, eps);
}

/* y = round(x / sqrt(mean(x^2) + eps)) * w per row of x (T, H), the normalized x rounded
 * to dt before the weight multiplies it (transformers' LlamaRMSNorm: float32, then
 * .to(input dtype), then weight * that); y left for the caller to round. */
void R(lr_ref_rms_norm_torch)(real *y, const real *x, const real *w, int64_t T, int64_t H, double eps,
                              lr_dtype dt) {
    for (int64_t t = 0; t < T; t++) {
        const real *xr = x + t * H;
        real *yr = y + t * H;
        real ss = 0;
        for (int64_t i = 0; i < H; i++)
            ss += xr[i] * xr[i];
        real inv = 1 / RSQRT(ss / (real)H + (real)eps);
        for (int64_t i = 0; i < H; i++)
            yr[i] = w[i] * R(round1)(xr[i] * inv, dt);
    }
}
