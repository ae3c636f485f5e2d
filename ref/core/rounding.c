/* rounding.c: the rounding map's lookups (rounding.h): the dtype each composer buffer is
 * stored in, which attention variants round their probabilities, and the rounding
 * profiles. The 16-bit conversions themselves are in tensor.c, beside the widening ones. */
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

const char *lr_attention_variant_declared(const char *variant) {
    for (size_t i = 0; variant && i < N_ATTN_MAP; i++)
        if (strcmp(attn_variants[i].name, variant) == 0) return attn_variants[i].name;
    for (size_t i = 0; variant && i < n_declared; i++)
        if (strcmp(declared[i].name, variant) == 0) return declared[i].name;
    return NULL;
}

const char *lr_attention_variant_in(const char *kernels) {
    for (const char *at = kernels; at && (at = strstr(at, "attention=")); at++) {
        if (at != kernels && at[-1] != ',') continue;
        char name[64];
        size_t len = strcspn(at + strlen("attention="), ",");
        if (len == 0 || len >= sizeof name) return NULL;
        memcpy(name, at + strlen("attention="), len);
        name[len] = '\0';
        return lr_attention_variant_declared(name);
    }
    return NULL;
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

static const lr_rounding_profile profiles[LR_ROUNDING_COUNT] = {
#define LR_PROFILE_ENTRY(id, name, stream, norm, bias, rotary, attention, act)                               \
    [LR_ROUNDING_##id] = {name,          LR_RND_##stream, LR_RND_##norm,                                     \
                          LR_RND_##bias, LR_RND_##rotary, LR_RND_##attention,                                \
                          LR_RND_##act},
    LR_ROUNDING_PROFILE_MAP(LR_PROFILE_ENTRY)
#undef LR_PROFILE_ENTRY
};

const lr_rounding_profile *lr_rounding_profile_of(lr_rounding r) {
    return &profiles[(unsigned)r < LR_ROUNDING_COUNT ? r : LR_ROUNDING_CUDA];
}

const char *lr_rounding_names(void) {
#define LR_PROFILE_NAME(id, name, ...) ", " name
    static const char list[] = LR_ROUNDING_PROFILE_MAP(LR_PROFILE_NAME);
#undef LR_PROFILE_NAME
    return list + 2;
}

int lr_rounding_find(const char *name, lr_rounding *out) {
    if (!name) name = LR_ROUNDING_DEFAULT;
    for (int r = 0; r < LR_ROUNDING_COUNT; r++)
        if (strcmp(profiles[r].name, name) == 0) {
            *out = (lr_rounding)r;
            return LR_OK;
        }
    return lr_fail(LR_E_INVAL, "rounding: \"%s\" is no rounding profile (%s)", name, lr_rounding_names());
}

lr_dtype lr_buf_dtype_in(lr_rounding r, lr_buf b, lr_dtype compute) {
    if (lr_rounding_profile_of(r)->stream == LR_RND_STREAM_ROUNDED &&
        (b == LR_BUF_RESIDUAL || b == LR_BUF_SUM))
        return compute;
    return lr_buf_dtype(b, compute);
}

bool lr_rounding_rounds_p(lr_rounding r, const char *variant, lr_dtype dt, int64_t hd, int64_t max_new) {
    if (lr_rounding_profile_of(r)->attention == LR_RND_ATTN_VARIANT)
        return lr_attention_rounds_p(variant, dt, hd, max_new);
    return dt == LR_BF16 || dt == LR_F16;
}
