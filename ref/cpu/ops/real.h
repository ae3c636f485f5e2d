/* real.h: the precision of one compilation of the CPU reference's op templates.
 * ref/cpu_f64.c and ref/cpu_f32.c each define LR_REAL (64 or 32) and include the
 * templates in ref/ops/, so one readable source serves both precisions. The emulated
 * bf16/fp16 path is the float32 one with the rounding map's roundings, or a rounding
 * profile's (ops/model.c). */
#include <cblas.h>
#include <math.h>

#undef real
#undef R
#undef GEMM
#undef GEMV
#undef LR_REAL_DTYPE
#undef RSQRT
#undef REXP
#undef REXP2

#if LR_REAL == 64
typedef double real;
#define R(name) name##_f64
#define GEMM cblas_dgemm
#define GEMV cblas_dgemv
#define LR_REAL_DTYPE LR_F64
#define RSQRT(x) sqrt(x)
#define REXP(x) exp(x)
#define REXP2(x) exp2(x)
#elif LR_REAL == 32
typedef float real;
#define R(name) name##_f32
#define GEMM cblas_sgemm
#define GEMV cblas_sgemv
#define LR_REAL_DTYPE LR_F32
#define RSQRT(x) sqrtf(x)
#define REXP(x) expf(x)
#define REXP2(x) exp2f(x)
#else
#error "define LR_REAL as 64 or 32"
#endif

/* x (n) rounded in place to dt and held as real: the emulated bf16/fp16 path's one
 * rounding step (ref/core/rounding.h). Nothing where dt is not narrower than real (the
 * f32 and f64 paths). */
static inline void R(round_to)(real *x, size_t n, lr_dtype dt) {
#if LR_REAL == 32
    lr_round_f32_n(x, n, dt);
#else
    (void)x, (void)n, (void)dt;
#endif
}

/* One value so: a rounding profile's rounding inside an op (ref/core/rounding.h). */
static inline real R(round1)(real x, lr_dtype dt) {
#if LR_REAL == 32
    return lr_round_f32(x, dt);
#else
    (void)dt;
    return x;
#endif
}
