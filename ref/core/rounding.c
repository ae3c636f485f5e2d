/* rounding.c: the rounding map's lookups (rounding.h): the dtype each composer buffer is
 * stored in, and which attention variants round their probabilities. The 16-bit
 * conversions themselves are in tensor.c, beside the widening ones. */
#include "rounding.h"

#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const lr_storage storage[LR_BUF_COUNT] = {
#define LR_STORAGE_ENTRY(buf, store) [LR_BUF_##buf] = LR_STORE_##store,
    LR_BUF_STORAGE_MAP(LR_STORAGE_ENTRY)
#undef LR_STORAGE_ENTRY
};

/* A buffer added to lr_buf must be added to the map: count the entries. */
#define LR_STORAGE_ONE(buf, store) +1
_Static_assert(0 LR_BUF_STORAGE_MAP(LR_STORAGE_ONE) == LR_BUF_COUNT,
               "LR_BUF_STORAGE_MAP must name every lr_buf once");
#undef LR_STORAGE_ONE

lr_storage lr_buf_storage(lr_buf b) { return (unsigned)b < LR_BUF_COUNT ? storage[b] : LR_STORE_COMPUTE; }

lr_dtype lr_buf_dtype(lr_buf b, lr_dtype compute) {
    if (lr_buf_storage(b) == LR_STORE_F32 && lr_dtype_size(compute) < lr_dtype_size(LR_F32)) return LR_F32;
    return compute;
}

static const struct {
    const char *name;
    bool rounds_p;
} attn_variants[] = {
#define LR_ATTN_ENTRY(name, rounds) {name, rounds},
    LR_ATTN_ROUNDING_MAP(LR_ATTN_ENTRY)
#undef LR_ATTN_ENTRY
};

#define N_ATTN_MAP (sizeof attn_variants / sizeof attn_variants[0])

/* Run-time declarations (kernel plugins): grown as plugins load, never shrunk. */
static struct {
    char *name;
    bool rounds_p;
} *declared;
static size_t n_declared;

/* The declaration of variant, or NULL. */
static const bool *rounding_of(const char *variant) {
    for (size_t i = 0; i < N_ATTN_MAP; i++)
        if (strcmp(attn_variants[i].name, variant) == 0) return &attn_variants[i].rounds_p;
    for (size_t i = 0; i < n_declared; i++)
        if (strcmp(declared[i].name, variant) == 0) return &declared[i].rounds_p;
    return NULL;
}

bool lr_attention_rounds_p(const char *variant, lr_dtype dt, int64_t hd, int64_t max_new) {
    if (!variant) variant = LR_ATTN_DEFAULT_VARIANT;
    /* The kernels that round P (fa2's mma.sync, tc's wmma) take 16-bit operands, 64 or
     * 128 dimensions per head, and prefill only; they hand anything else on. */
    if ((dt != LR_BF16 && dt != LR_F16) || (hd != 64 && hd != 128) || max_new < 2) return false;
    const bool *r = rounding_of(variant);
    return r && *r;
}

int lr_attention_rounding_declare(const char *variant, bool rounds_p) {
    if (!variant || !*variant) return lr_fail(LR_E_INVAL, "rounding map: an attention variant without a name");
    if (rounding_of(variant))
        return lr_fail(LR_E_INVAL, "rounding map: attention variant \"%s\" is declared already", variant);
    void *grown = realloc(declared, (n_declared + 1) * sizeof *declared);
    if (!grown) return lr_fail(LR_E_NOMEM, "rounding map: out of memory");
    declared = grown;
    if (!(declared[n_declared].name = strdup(variant))) return lr_fail(LR_E_NOMEM, "rounding map: out of memory");
    declared[n_declared++].rounds_p = rounds_p;
    return LR_OK;
}
