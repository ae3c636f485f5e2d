/* registry.cu: the table of kernel variants, and the family names of gpu_ops.h's
 * LR_GPU_FAMILY_MAP. Each family's entry point (embedding.cu, rmsnorm.cu, ...) validates
 * its arguments, packs them into its family's argument struct and calls the launcher this
 * table names for the requested variant (NULL: the family's default). Adding a variant is
 * one launcher beside its kernel plus one line below. */
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
int lr_gpu_linear_cublas(const void *args, cudaStream_t s);
int lr_gpu_linear_gemv(const void *args, cudaStream_t s);
int lr_gpu_rotary_heads(const void *args, cudaStream_t s);
int lr_gpu_rotary_neox(const void *args, cudaStream_t s);
int lr_gpu_activation_vec(const void *args, cudaStream_t s);
int lr_gpu_activation_elementwise(const void *args, cudaStream_t s);
int lr_gpu_cache_scatter(const void *args, cudaStream_t s);
int lr_gpu_attention_tc(const void *args, cudaStream_t s);
int lr_gpu_attention_flash(const void *args, cudaStream_t s);
int lr_gpu_attention_simple(const void *args, cudaStream_t s);
int lr_gpu_attention_fa2(const void *args, cudaStream_t s);

/* ---- Families ---------------------------------------------------------------------- */

static constexpr const char *family_names[LR_GPU_NUM_FAMILIES] = {
#define FAMILY_NAME(id, name) name,
    LR_GPU_FAMILY_MAP(FAMILY_NAME)
#undef FAMILY_NAME
};

extern "C" const char *lr_gpu_family_name(lr_gpu_family f) {
    return (int)f >= 0 && (int)f < LR_GPU_NUM_FAMILIES ? family_names[f] : NULL;
}

extern "C" int lr_gpu_family_find(const char *name) {
    for (int f = 0; name && f < LR_GPU_NUM_FAMILIES; f++)
        if (strcmp(family_names[f], name) == 0) return f;
    return -1;
}

/* ---- Variants ---------------------------------------------------------------------- */

typedef struct {
    lr_gpu_variant v;
    lr_gpu_launch launch;
} kernel_entry;

/* A family's name in the table below, so that it cannot be misspelt. */
#define FAM(id) family_names[LR_GPU_FAM_##id]

/* Families in the order the entry points appear in gpu_ops.h; exactly one default each. */
static const kernel_entry kernels[] = {
    {{FAM(EMBEDDING), "gather", "one block per token row: the shard's row, or zeros", true},
     lr_gpu_embedding_gather},
    {{FAM(RMSNORM), "vec",
      "one block of 512 per row, the row in registers from 8/16-byte loads (one round trip); "
      "block for rows over 8192 or unaligned",
      true},
     lr_gpu_rmsnorm_vec},
    {{FAM(RMSNORM), "block", "one block per row, block-wide sum of squares", false}, lr_gpu_rmsnorm_block},
    {{FAM(RMSNORM), "warp", "one warp per row, warp-shuffle sum of squares", false}, lr_gpu_rmsnorm_warp},
    {{FAM(LINEAR), "cublas",
      "cublasGemmEx on dtype operands, float32 accumulation (CUBLAS_COMPUTE_32F, no TF32), "
      "the output rounded once",
      true},
     lr_gpu_linear_cublas},
    {{FAM(LINEAR), "gemv",
      "T <= 8 (decode): one warp per output feature, 16-byte loads of w each met by every token's "
      "x (one element at a time where K or a pointer is not 16-byte aligned), float32 FMAs, "
      "warp-shuffle sum, rounded once; F32, F16, BF16; cublas for T > 8",
      false},
     lr_gpu_linear_gemv},
    {{FAM(ROTARY), "heads",
      "blocks of (token, 8 heads): each thread one frequency's float64 sincos, all 8 heads' "
      "pairs loaded before any store",
      true},
     lr_gpu_rotary_heads},
    {{FAM(ROTARY), "neox",
      "one block per token: float64 sincos per frequency in shared memory, "
      "then every head's rotate-half pairs",
      false},
     lr_gpu_rotary_neox},
    {{FAM(ACTIVATION), "vec", "16-byte loads and stores, a grid row per token (elementwise when unaligned)",
      true},
     lr_gpu_activation_vec},
    {{FAM(ACTIVATION), "elementwise", "one thread per output element", false}, lr_gpu_activation_elementwise},
    {{FAM(CACHE), "scatter", "one block per token: its key and value rows to their slot", true},
     lr_gpu_cache_scatter},
    {{FAM(ATTENTION), "fa2",
      "prefill (bf16/f16, head_dim 64/128): FlashAttention-2, 64 queries of one (sequence, "
      "head) per block, mma.sync m16n8k16 with S and P in registers, 64-key K/V tiles "
      "cp.async double-buffered from the paged cache; else tc",
      true},
     lr_gpu_attention_fa2},
    {{FAM(ATTENTION), "tc",
      "decode: one block per (sequence, kv head, key chunk), the group's query heads "
      "together, chunks merged; prefill (bf16/f16, head_dim 64/128): wmma tensor-core "
      "tiles of 64 queries x 64 keys; else flash",
      false},
     lr_gpu_attention_tc},
    {{FAM(ATTENTION), "flash",
      "16 query rows of one (sequence, head) per block; 32-key K/V "
      "tiles from the paged cache in shared memory; online softmax",
      false},
     lr_gpu_attention_flash},
    {{FAM(ATTENTION), "simple", "one warp per (token, head), one key at a time, online softmax", false},
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
    if (lr_gpu_family_find(family) < 0) {
        for (int f = 0; f < LR_GPU_NUM_FAMILIES && used < sizeof list; f++) {
            int n = snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", family_names[f]);
            if (n < 0) break;
            used += (size_t)n;
        }
        return lr_fail(LR_E_INVAL, "gpu kernels: no family \"%s\"; families: %s", family ? family : "(null)",
                       list);
    }
    for (size_t i = 0; i < N_KERNELS && used < sizeof list; i++) {
        const lr_gpu_variant *v = &kernels[i].v;
        if (strcmp(v->family, family) != 0) continue;
        int n = snprintf(list + used, sizeof list - used, "%s%s%s", used ? ", " : "", v->name,
                         v->is_default ? " (default)" : "");
        if (n < 0) break;
        used += (size_t)n;
    }
    return lr_fail(LR_E_INVAL, "gpu kernels: %s has no variant \"%s\"; variants: %s", family,
                   name ? name : "(default)", list);
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
