/* tensor.c: dtypes, element access and conversion between storage and compute types,
 * both ways: the 16-bit dtypes widen exactly, and narrow with one rounding to nearest
 * even (rounding.h), as the CUDA path's conversions do. */
#include "internal.h"
#include "rounding.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[LR_DTYPE_COUNT] = {
#define LR_DTYPE_INFO(name, str, size) {str, size},
    LR_DTYPE_MAP(LR_DTYPE_INFO)
#undef LR_DTYPE_INFO
};

const char *lr_dtype_name(lr_dtype dt) {
    return (unsigned)dt < LR_DTYPE_COUNT ? dtype_info[dt].name : "?";
}

size_t lr_dtype_size(lr_dtype dt) { return (unsigned)dt < LR_DTYPE_COUNT ? dtype_info[dt].size : 0; }

int lr_dtype_parse(const char *s, lr_dtype *out) {
    for (int i = 0; i < LR_DTYPE_COUNT; i++) {
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (lr_dtype)i;
            return LR_OK;
        }
    }
    return LR_E_DTYPE;
}

int64_t lr_tensor_numel(const lr_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* IEEE half (1-5-10) to double; exact. */
static double half_to_double(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    double v;
    if (exp == 0)
        v = ldexp((double)man, -24); /* subnormal: man * 2^-14 / 2^10 */
    else if (exp == 31)
        v = man ? NAN : INFINITY;
    else
        v = ldexp((double)(man | 0x400), exp - 25);
    return sign ? -v : v;
}

/* bfloat16 is the top half of a float32; exact. */
static float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

double lr_tensor_get(const lr_tensor *t, int64_t i) {
    const unsigned char *p = (const unsigned char *)t->data + (size_t)i * lr_dtype_size(t->dtype);
    switch (t->dtype) {
    case LR_F64: { double v; memcpy(&v, p, 8); return v; }
    case LR_F32: { float v; memcpy(&v, p, 4); return v; }
    case LR_F16: { uint16_t v; memcpy(&v, p, 2); return half_to_double(v); }
    case LR_BF16: { uint16_t v; memcpy(&v, p, 2); return bf16_to_float(v); }
    case LR_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case LR_I32: { int32_t v; memcpy(&v, p, 4); return (double)v; }
    default: return NAN;
    }
}

/* ---- Narrowing: float32 (or wider) to bf16 and fp16 ---------------------------------- */

/* bfloat16 keeps the top half of a float32: add half an ulp of the kept half (less one
 * when the kept half is even, so that ties go to even) and truncate. A carry into the
 * exponent is the right result, up to infinity; subnormals round the same way, as bf16
 * has float32's exponent range. */
uint16_t lr_bf16_from_f32(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN, quiet */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* IEEE half: 1-5-10, exponent bias 15, smallest normal 2^-14, largest finite 65504. */
uint16_t lr_f16_from_f32(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    u &= 0x7fffffffu;
    if (u > 0x7f800000u) return sign | 0x7e00u;   /* NaN, quiet */
    if (u >= 0x477ff000u) return sign | 0x7c00u;  /* >= 65520 = 65504 + half an ulp: infinity */
    if (u < 0x38800000u) {
        /* Below 2^-14: a subnormal half, k * 2^-24; x * 2^24 is exact in float32 and
         * rounds to the integer k (ties to even; k = 1024 is the smallest normal). */
        float a;
        memcpy(&a, &u, sizeof a);
        return sign | (uint16_t)nearbyintf(a * 0x1p24f);
    }
    uint32_t h = (((u >> 23) - 127 + 15) << 10) | ((u & 0x7fffffu) >> 13), rest = u & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++; /* a carry into the exponent is right */
    return sign | (uint16_t)h;
}

float lr_f32_from_bf16(uint16_t h) { return bf16_to_float(h); }

float lr_f32_from_f16(uint16_t h) { return (float)half_to_double(h); }

/* A float64 to a binary format of p significand bits whose normal exponents run from emin
 * to emax, rounded once (nearest, ties to even): the quantum of x's binade (of the
 * subnormal range below 2^emin) times the nearest integer to x over it. Exact steps
 * otherwise: the quotient by a power of two and the product are exact in float64. */
static double round_to_format(double x, int p, int emin, int emax) {
    if (!isfinite(x) || x == 0) return x;
    int e;
    frexp(x, &e); /* |x| in [2^(e-1), 2^e) */
    int lead = e - 1 < emin ? emin : e - 1;
    double quantum = ldexp(1.0, lead - p + 1), r = nearbyint(x / quantum) * quantum;
    return fabs(r) >= ldexp(1.0, emax + 1) ? copysign(INFINITY, x) : r;
}

/* A float64 to bf16 or fp16 bits with one rounding (through float32 it could round
 * twice): rounded in float64, the result is exact in float32 and converts exactly. */
static uint16_t narrow_f64(double v, lr_dtype dt) {
    if (dt == LR_BF16) return lr_bf16_from_f32((float)(isnan(v) ? v : round_to_format(v, 8, -126, 127)));
    return lr_f16_from_f32((float)(isnan(v) ? v : round_to_format(v, 11, -14, 15)));
}

float lr_round_f32(float x, lr_dtype dt) {
    switch (dt) {
    case LR_BF16: return lr_f32_from_bf16(lr_bf16_from_f32(x));
    case LR_F16: return lr_f32_from_f16(lr_f16_from_f32(x));
    default: return x;
    }
}

void lr_round_f32_n(float *x, size_t n, lr_dtype dt) {
    if (dt == LR_BF16)
        for (size_t i = 0; i < n; i++) x[i] = lr_f32_from_bf16(lr_bf16_from_f32(x[i]));
    else if (dt == LR_F16)
        for (size_t i = 0; i < n; i++) x[i] = lr_f32_from_f16(lr_f16_from_f32(x[i]));
}

/* BF16 widened: the bits shifted into a float32's top half, without lr_tensor_get's
 * per-element dispatch (a checkpoint's weights go through here: 15 GiB for Llama-3-8B). The
 * same values as bf16_to_float, NaNs' bits included. Blocks of a fixed 64 elements and
 * restrict, so that the compiler vectorises them at -O2 (0.55 to 5.4 GiB/s of bf16 read by
 * lr_packed_read_chunk on the development machine, with plan.c's any_nonfinite). */
#define WIDEN_BLOCK 64
static inline void widen_bf16_run(float *restrict d, const unsigned char *restrict s, size_t m) {
    for (size_t k = 0; k < m; k++) {
        uint16_t h;
        memcpy(&h, s + 2 * k, 2);
        d[k] = bf16_to_float(h);
    }
}

static void widen_bf16_f32(float *restrict d, const unsigned char *restrict s, size_t n) {
    size_t i = 0;
    for (; i + WIDEN_BLOCK <= n; i += WIDEN_BLOCK)
        widen_bf16_run(d + i, s + 2 * i, WIDEN_BLOCK); /* a constant count: vectorised */
    widen_bf16_run(d + i, s + 2 * i, n - i);
}

/* Through float32 a block at a time: exact, as float32 to float64 is. */
static void widen_bf16_f64(double *restrict d, const unsigned char *restrict s, size_t n) {
    float f[WIDEN_BLOCK];
    for (size_t i = 0; i < n; i += WIDEN_BLOCK) {
        size_t m = n - i < WIDEN_BLOCK ? n - i : WIDEN_BLOCK;
        widen_bf16_run(f, s + 2 * i, m);
        for (size_t k = 0; k < m; k++)
            d[i + k] = f[k];
    }
}

/* To F64 and F32 as before; to BF16 and F16 with one rounding from any source. */
void lr_convert(void *dst, lr_dtype ddt, const void *src, lr_dtype sdt, size_t n) {
    lr_tensor view = {.dtype = sdt, .ndim = 1, .shape = {(int64_t)n}, .data = src};
    if (sdt == LR_BF16 && ddt == LR_F32) {
        widen_bf16_f32(dst, src, n);
        return;
    }
    if (sdt == LR_BF16 && ddt == LR_F64) {
        widen_bf16_f64(dst, src, n);
        return;
    }
    if (ddt == LR_F64) {
        double *d = dst;
        if (sdt == LR_F64) {
            memcpy(d, src, n * 8);
            return;
        }
        for (size_t i = 0; i < n; i++) d[i] = lr_tensor_get(&view, (int64_t)i);
    } else if (ddt == LR_BF16 || ddt == LR_F16) {
        unsigned char *d = dst;
        if (sdt == ddt) {
            memcpy(d, src, n * 2);
            return;
        }
        for (size_t i = 0; i < n; i++) {
            double v = lr_tensor_get(&view, (int64_t)i);
            uint16_t h = sdt != LR_F32 ? narrow_f64(v, ddt)
                         : ddt == LR_BF16 ? lr_bf16_from_f32((float)v)
                                          : lr_f16_from_f32((float)v);
            memcpy(d + 2 * i, &h, 2);
        }
    } else {
        float *d = dst;
        if (sdt == LR_F32) {
            memcpy(d, src, n * 4);
            return;
        }
        for (size_t i = 0; i < n; i++) d[i] = (float)lr_tensor_get(&view, (int64_t)i);
    }
}

/* Significand bits after the point of a precision's storage (bf16 7, fp16 10), and the
 * smallest normal exponent. */
static int mantissa_bits(lr_dtype p) { return p == LR_BF16 ? 7 : p == LR_F16 ? 10 : p == LR_F32 ? 23 : 52; }
static int min_exponent(lr_dtype p) { return p == LR_F16 ? -14 : p == LR_BF16 || p == LR_F32 ? -126 : -1022; }

double lr_ulp(lr_dtype p, double v) {
    int e;
    frexp(fabs(v), &e); /* |v| in [2^(e-1), 2^e) */
    e -= 1;
    if (v == 0 || e < min_exponent(p)) e = min_exponent(p);
    return ldexp(1.0, e - mantissa_bits(p));
}
