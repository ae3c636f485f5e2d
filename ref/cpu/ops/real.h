/* real.h: the precision of one compilation of the CPU reference's op templates.
 * ref/cpu_f64.c and ref/cpu_f32.c each define LR_REAL (64 or 32) and include the
 * templates in ref/ops/, so one readable source serves both precisions. */
#include <cblas.h>
#include <math.h>

#undef real
#undef R
#undef GEMM
#undef GEMV
#undef LR_REAL_DTYPE

#if LR_REAL == 64
typedef double real;
#define R(name) name##_f64
#define GEMM cblas_dgemm
#define GEMV cblas_dgemv
#define LR_REAL_DTYPE LR_F64
#define RSQRT(x) sqrt(x)
#define REXP(x) exp(x)
#elif LR_REAL == 32
typedef float real;
#define R(name) name##_f32
#define GEMM cblas_sgemm
#define GEMV cblas_sgemv
#define LR_REAL_DTYPE LR_F32
#define RSQRT(x) sqrtf(x)
#define REXP(x) expf(x)
#else
#error "define LR_REAL as 64 or 32"
#endif
