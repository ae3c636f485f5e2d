/* rounding.c: the rounding map's lookups (rounding.h): the dtype each composer buffer is
 * stored in, and which attention variants round their probabilities. The 16-bit
 * conversions themselves are in tensor.c, beside the widening ones. */
#include "rounding.h"

#include <string.h>

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

bool lr_attention_rounds_p(const char *variant, lr_dtype dt, int64_t hd, int64_t max_new) {
    if (!variant) variant = LR_ATTN_DEFAULT_VARIANT;
    /* The kernels that round P (fa2's mma.sync, tc's wmma) take 16-bit operands, 64 or
     * 128 dimensions per head, and prefill only; they hand anything else on. */
    if ((dt != LR_BF16 && dt != LR_F16) || (hd != 64 && hd != 128) || max_new < 2) return false;
    for (size_t i = 0; i < sizeof attn_variants / sizeof attn_variants[0]; i++)
        if (strcmp(attn_variants[i].name, variant) == 0) return attn_variants[i].rounds_p;
    return false;
}
