/* registry.cu: the table of kernel variants. Each family's entry point (embedding.cu,
 * rmsnorm.cu, ...) validates its arguments, packs them into its family's argument struct
 * and calls the launcher this table names for the requested variant (NULL: the family's
 * default). Adding a variant is one launcher beside its kernel plus one line below. */
#include "common.cuh"

#include <stdio.h>
#include <string.h>

/* A launcher: args points to the argument struct of the launcher's family (defined in
 * that family's .cu); it dispatches on the dtype and launches on stream s. */
typedef int (*lr_gpu_launch)(const void *args, cudaStream_t s);

/* The launchers, defined beside their kernels (C++ linkage: a prototype that does not
 * match its definition fails to link rather than misbehave). */
int lr_gpu_embedding_gather(const void *args, cudaStream_t s);
int lr_gpu_rmsnorm_vec(const void *args, cudaStream_t s);
int lr_gpu_rmsnorm_block(const void *args, cudaStream_t s);
int lr_gpu_rmsnorm_warp(const void *args, cudaStream_t s);
int lr_gpu_rotary_heads(const void *args, cudaStream_t s);
int lr_gpu_rotary_neox(const void *args, cudaStream_t s);
int lr_gpu_activation_vec(const void *args, cudaStream_t s);
int lr_gpu_activation_elementwise(const void *args, cudaStream_t s);
int lr_gpu_cache_scatter(const void *args, cudaStream_t s);
int lr_gpu_attention_tc(const void *args, cudaStream_t s);
int lr_gpu_attention_flash(const void *args, cudaStream_t s);
int lr_gpu_attention_simple(const void *args, cudaStream_t s);
int lr_gpu_attention_fa2(const void *args, cudaStream_t s);

typedef struct {
    lr_gpu_variant v;
    lr_gpu_launch launch;
} kernel_entry;

/* Families in the order the entry points appear in gpu_ops.h; exactly one default each. */
static const kernel_entry kernels[] = {
    {{"embedding", "gather", "one block per token row: the shard's row, or zeros", true},
     lr_gpu_embedding_gather},
    {{"rmsnorm", "vec",
      "one block of 512 per row, the row in registers from 8/16-byte loads (one round trip); "
      "block for rows over 8192 or unaligned",
      true},
     lr_gpu_rmsnorm_vec},
    {{"rmsnorm", "block", "one block per row, block-wide sum of squares", false}, lr_gpu_rmsnorm_block},
    {{"rmsnorm", "warp", "one warp per row, warp-shuffle sum of squares", false}, lr_gpu_rmsnorm_warp},
    {{"rotary", "heads",
      "blocks of (token, 8 heads): each thread one frequency's float64 sincos, all 8 heads' "
      "pairs loaded before any store",
      true},
     lr_gpu_rotary_heads},
    {{"rotary", "neox",
      "one block per token: float64 sincos per frequency in shared memory, "
      "then every head's rotate-half pairs",
      false},
     lr_gpu_rotary_neox},
    {{"activation", "vec", "16-byte loads and stores, a grid row per token (elementwise when unaligned)", true},
     lr_gpu_activation_vec},
    {{"activation", "elementwise", "one thread per output element", false}, lr_gpu_activation_elementwise},
    {{"cache", "scatter", "one block per token: its key and value rows to their slot", true},
     lr_gpu_cache_scatter},
    {{"attention", "fa2",
      "prefill (bf16/f16, head_dim 64/128): FlashAttention-2, 64 queries of one (sequence, "
      "head) per block, mma.sync m16n8k16 with S and P in registers, 64-key K/V tiles "
      "cp.async double-buffered from the paged cache; else tc",
      true},
     lr_gpu_attention_fa2},
    {{"attention", "tc",
      "decode: one block per (sequence, kv head, key chunk), the group's query heads "
      "together, chunks merged; prefill (bf16/f16, head_dim 64/128): wmma tensor-core "
      "tiles of 64 queries x 64 keys; else flash",
      false},
     lr_gpu_attention_tc},
    {{"attention", "flash",
      "16 query rows of one (sequence, head) per block; 32-key K/V "
      "tiles from the paged cache in shared memory; online softmax",
      false},
     lr_gpu_attention_flash},
    {{"attention", "simple", "one warp per (token, head), one key at a time, online softmax", false},
     lr_gpu_attention_simple},
};
#define N_KERNELS (sizeof kernels / sizeof kernels[0])

extern "C" size_t lr_gpu_variant_count(void) { return N_KERNELS; }

extern "C" const lr_gpu_variant *lr_gpu_variant_at(size_t i) { return i < N_KERNELS ? &kernels[i].v : NULL; }

/* The message for an unknown family or name lists what there is, so that a mistyped
 * --kernel option tells the user the spelling. */
static int unknown(const char *family, const char *name) {
    char list[512];
    size_t used = 0;
    list[0] = '\0';
    bool family_known = false;
    for (size_t i = 0; i < N_KERNELS; i++)
        if (family && strcmp(kernels[i].v.family, family) == 0) family_known = true;
    for (size_t i = 0; i < N_KERNELS && used < sizeof list; i++) {
        const lr_gpu_variant *v = &kernels[i].v;
        bool first_of_family = true;
        for (size_t j = 0; j < i; j++)
            if (strcmp(kernels[j].v.family, v->family) == 0) first_of_family = false;
        int n;
        if (family_known) {
            if (strcmp(v->family, family) != 0) continue;
            n = snprintf(list + used, sizeof list - used, "%s%s%s", used ? ", " : "", v->name,
                         v->is_default ? " (default)" : "");
        } else {
            if (!first_of_family) continue;
            n = snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", v->family);
        }
        if (n < 0) break;
        used += (size_t)n;
    }
    if (!family_known)
        return lr_fail(LR_E_INVAL, "gpu kernels: no family \"%s\"; families: %s", family ? family : "(null)",
                       list);
    return lr_fail(LR_E_INVAL, "gpu kernels: %s has no variant \"%s\"; variants: %s", family, name, list);
}

/* The launcher of family's variant name (NULL: the default), for the entry points. */
int lr_gpu_variant_find(const char *family, const char *name, lr_gpu_launch *out) {
    for (size_t i = 0; family && i < N_KERNELS; i++) {
        const kernel_entry *k = &kernels[i];
        if (strcmp(k->v.family, family) != 0) continue;
        if (name ? strcmp(k->v.name, name) == 0 : k->v.is_default) {
            *out = k->launch;
            return LR_OK;
        }
    }
    return unknown(family, name);
}

extern "C" int lr_gpu_variant_check(const char *family, const char *name) {
    lr_gpu_launch launch;
    return lr_gpu_variant_find(family, name, &launch);
}
