/* fuzz_safetensors.c: libFuzzer target for the safetensors reader (lr_st_parse). A
 * file that parses must keep every promise the reader makes: each tensor's bytes lie
 * inside the input (read here element by element, so ASan sees any stray offset), its
 * byte count matches shape x dtype, and lookups by name find the same entry. */
#include "fuzz.h"
#include "llamaref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lr_st_file *f;
    if (lr_st_parse(data, size, "fuzz", &f) != LR_OK) {
        FUZZ_CHECK_MESSAGE("fuzz");
        return 0;
    }
    volatile double sink = 0;
    size_t n = lr_st_count(f);
    for (size_t i = 0; i < n; i++) {
        const lr_st_entry *e = lr_st_at(f, i);
        FUZZ_CHECK(e && e->name);
        FUZZ_CHECK(lr_st_find(f, e->name) == e);
        FUZZ_CHECK(e->t.ndim >= 0 && e->t.ndim <= LR_MAX_DIMS);
        /* lr_tensor_numel() multiplies in int64: every partial product must fit. */
        uint64_t prefix = 1;
        for (int d = 0; d < e->t.ndim; d++) {
            FUZZ_CHECK(e->t.shape[d] >= 0);
            FUZZ_CHECK(!__builtin_mul_overflow(prefix, (uint64_t)e->t.shape[d], &prefix));
            FUZZ_CHECK(prefix <= (uint64_t)INT64_MAX);
        }
        int64_t numel = lr_tensor_numel(&e->t);
        FUZZ_CHECK(numel >= 0);
        FUZZ_CHECK((uint64_t)numel * lr_dtype_size(e->t.dtype) == e->nbytes);
        const uint8_t *p = e->t.data;
        FUZZ_CHECK(p >= data + 8 && p <= data + size && e->nbytes <= (uint64_t)(data + size - p));
        for (int64_t k = 0; k < numel; k++) sink = sink + lr_tensor_get(&e->t, k);
        /* The conversions the loaders apply to weights and fixtures. */
        double *d = malloc(numel ? (size_t)numel * sizeof *d : 1);
        float *s = malloc(numel ? (size_t)numel * sizeof *s : 1);
        FUZZ_CHECK(d && s);
        lr_convert(d, LR_F64, e->t.data, e->t.dtype, (size_t)numel);
        lr_convert(s, LR_F32, e->t.data, e->t.dtype, (size_t)numel);
        if (numel > 0) sink = sink + d[numel - 1] + s[0];
        free(d);
        free(s);
    }
    FUZZ_CHECK(lr_st_at(f, n) == NULL);
    FUZZ_CHECK(lr_st_find(f, "") == NULL || lr_st_find(f, "")->name[0] == '\0');
    static const char *const keys[] = {"format", "model", "", "__metadata__"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const char *v = lr_st_metadata(f, keys[k]);
        if (v) sink = sink + (double)strlen(v);
    }
    FUZZ_CHECK(strcmp(lr_st_path(f), "fuzz") == 0);
    lr_st_close(f);
    (void)sink;
    return 0;
}
