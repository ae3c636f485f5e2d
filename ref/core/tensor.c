/* tensor.c: dtypes, element access and conversion between storage and compute types. */
#include "internal.h"

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

void lr_convert(void *dst, lr_dtype ddt, const void *src, lr_dtype sdt, size_t n) {
    lr_tensor view = {.dtype = sdt, .ndim = 1, .shape = {(int64_t)n}, .data = src};
    if (ddt == LR_F64) {
        double *d = dst;
        if (sdt == LR_F64) {
            memcpy(d, src, n * 8);
            return;
        }
        for (size_t i = 0; i < n; i++) d[i] = lr_tensor_get(&view, (int64_t)i);
    } else {
        float *d = dst;
        if (sdt == LR_F32) {
            memcpy(d, src, n * 4);
            return;
        }
        for (size_t i = 0; i < n; i++) d[i] = (float)lr_tensor_get(&view, (int64_t)i);
    }
}
