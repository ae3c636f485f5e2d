/* registry.cu: the registry of kernel variants: the in-tree table, the variants of kernel
 * plugins loaded at run time (lr_gpu_plugin_load, llamaref_kernels.h), and the family
 * names of LR_GPU_FAMILY_MAP. Each family's entry point (embedding.cu, rmsnorm.cu, ...)
 * finds the requested variant here (NULL: the family's default), validates its arguments,
 * packs them into its family's argument struct and runs the variant through
 * lr_gpu_kernel_run. Adding an in-tree variant is one launcher beside its kernel plus one
 * line below; adding one out of tree is a plugin (docs/adding-a-kernel.md). */
#include "common.cuh"
#include "rounding.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The launchers, defined beside their kernels (C++ linkage: a prototype that does not
 * match its definition fails to link rather than misbehave). */
int lr_gpu_embedding_gather(const void *args, cudaStream_t s);
int lr_gpu_rmsnorm_vec(const void *args, cudaStream_t s);
int lr_gpu_rmsnorm_block(const void *args, cudaStream_t s);
int lr_gpu_rmsnorm_warp(const void *args, cudaStream_t s);
int lr_gpu_linear_cublas(const void *args, cudaStream_t s);
int lr_gpu_linear_gemv(const void *args, cudaStream_t s);
int lr_gpu_linear_gemv2(const void *args, cudaStream_t s);
int lr_gpu_linear_mma(const void *args, cudaStream_t s);
int lr_gpu_linear_mmr(const void *args, cudaStream_t s);
int lr_gpu_linear_auto(const void *args, cudaStream_t s);
int lr_gpu_rotary_heads(const void *args, cudaStream_t s);
int lr_gpu_rotary_neox(const void *args, cudaStream_t s);
int lr_gpu_activation_vec(const void *args, cudaStream_t s);
int lr_gpu_activation_elementwise(const void *args, cudaStream_t s);
int lr_gpu_cache_scatter(const void *args, cudaStream_t s);
int lr_gpu_attention_tc(const void *args, cudaStream_t s);
int lr_gpu_attention_flash(const void *args, cudaStream_t s);
int lr_gpu_attention_simple(const void *args, cudaStream_t s);
int lr_gpu_attention_fa2(const void *args, cudaStream_t s);
int lr_gpu_attention_fa3(const void *args, cudaStream_t s);
int lr_gpu_attention_fa3p(const void *args, cudaStream_t s);
int lr_gpu_attention_fa3w(const void *args, cudaStream_t s);
int lr_gpu_attention_fa3wp(const void *args, cudaStream_t s);
int lr_gpu_attention_fa3wt(const void *args, cudaStream_t s);
int lr_gpu_attention_fa3wts(const void *args, cudaStream_t s);
int lr_gpu_attention_fd(const void *args, cudaStream_t s);
int lr_gpu_attention_fdt(const void *args, cudaStream_t s);
int lr_gpu_attention_fdtc(const void *args, cudaStream_t s);

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

struct lr_gpu_kernel {
    lr_gpu_variant v;
    lr_gpu_launch launch;
};

/* A family's name in the table below, so that it cannot be misspelt. */
#define FAM(id) family_names[LR_GPU_FAM_##id]
#define ALL LR_KERNEL_ALL_DTYPES
/* fa2 and tc round P as LR_ATTN_ROUNDING_MAP (ref/core/rounding.h) says. */
#define ROUNDS_P LR_KERNEL_ROUNDS_P

/* Families in the order the entry points appear in gpu_ops.h; exactly one default each. */
static const lr_gpu_kernel builtin[] = {
    {{FAM(EMBEDDING), "gather", "one block per token row: the shard's row, or zeros", true, ALL, 0},
     lr_gpu_embedding_gather},
    {{FAM(RMSNORM), "vec",
      "one block of 512 per row, the row in registers from 8/16-byte loads (one round trip); "
      "block for rows over 8192 or unaligned",
      true, ALL, 0},
     lr_gpu_rmsnorm_vec},
    {{FAM(RMSNORM), "block", "one block per row, block-wide sum of squares", false, ALL, 0},
     lr_gpu_rmsnorm_block},
    {{FAM(RMSNORM), "warp", "one warp per row, warp-shuffle sum of squares", false, ALL, 0},
     lr_gpu_rmsnorm_warp},
    {{FAM(LINEAR), "cublas",
      "cublasGemmEx on dtype operands, float32 accumulation (CUBLAS_COMPUTE_32F, no TF32), "
      "the output rounded once",
      false, ALL, 0},
     lr_gpu_linear_cublas},
    {{FAM(LINEAR), "gemv",
      "T <= 8 (decode): one warp per output feature, 16-byte loads of w each met by every token's "
      "x (one element at a time where K or a pointer is not 16-byte aligned), float32 FMAs, "
      "warp-shuffle sum, rounded once; F32, F16, BF16; cublas for T > 8",
      false, ALL, 0},
     lr_gpu_linear_gemv},
    {{FAM(LINEAR), "gemv2",
      "T <= 8 (decode): a block of 128 threads per 4 output features, K split over its threads, "
      "each a 4 x T tile of float32 FMAs on 16-byte loads of w and x; warp-shuffle then "
      "in-order shared-memory sum (no atomics), rounded once; F32, F16, BF16; gemv where K or a "
      "pointer is not 16-byte aligned, cublas for T > 8",
      false, ALL, 0},
     lr_gpu_linear_gemv2},
    {{FAM(LINEAR), "mma",
      "T <= 32 (decode batches): 64 output features per block on mma.sync m16n8k16 (float32 "
      "accumulators), w and x tiles by cp.async 4 stages deep, K split over a cluster of up to 8 "
      "blocks summed in rank order through distributed shared memory, rounded once; F16, BF16; "
      "cublas for F32, T > 32, K not a multiple of 8 or unaligned pointers",
      false, ALL, 0},
     lr_gpu_linear_mma},
    {{FAM(LINEAR), "mmr",
      "T <= 32 (decode batches): mma's tiles and cluster split with w read straight from global "
      "memory into the A fragments (no shared-memory stages, no barrier in the K loop; k in a "
      "fixed permutation within each 64), x from L1, rounded once; F16, BF16; cublas for F32, "
      "T > 32, K not a multiple of 8 or unaligned pointers",
      false, ALL, 0},
     lr_gpu_linear_mmr},
    {{FAM(LINEAR), "auto", "gemv for T <= 2 (decode), where it is faster than cuBLAS; cublas otherwise", true,
      ALL, 0},
     lr_gpu_linear_auto},
    {{FAM(ROTARY), "heads",
      "blocks of (token, 8 heads): each thread one frequency's float64 sincos, all 8 heads' "
      "pairs loaded before any store",
      true, ALL, 0},
     lr_gpu_rotary_heads},
    {{FAM(ROTARY), "neox",
      "one block per token: float64 sincos per frequency in shared memory, "
      "then every head's rotate-half pairs",
      false, ALL, 0},
     lr_gpu_rotary_neox},
    {{FAM(ACTIVATION), "vec", "16-byte loads and stores, a grid row per token (elementwise when unaligned)",
      true, ALL, 0},
     lr_gpu_activation_vec},
    {{FAM(ACTIVATION), "elementwise", "one thread per output element", false, ALL, 0},
     lr_gpu_activation_elementwise},
    {{FAM(CACHE), "scatter", "one block per token: its key and value rows to their slot", true, ALL, 0},
     lr_gpu_cache_scatter},
    {{FAM(ATTENTION), "fa2",
      "prefill (bf16/f16, head_dim 64/128): FlashAttention-2, 128 queries of one (sequence, "
      "head) per block, 32 a warp, mma.sync m16n8k16 with S and P in registers, 64-key K/V tiles "
      "cp.async double-buffered from the paged cache; else tc",
      false, ALL, ROUNDS_P},
     lr_gpu_attention_fa2},
    {{FAM(ATTENTION), "fa3",
      "prefill (bf16/f16, head_dim 64/128, compute capability 9.0, a build for sm_90): "
      "FlashAttention-3's warpgroup MMA, 128 queries of one (sequence, head) per block, 64 a "
      "warpgroup, wgmma for Q K^T (both from shared memory) and P V (P in registers), "
      "64-key K/V tiles cp.async double-buffered from the paged cache in the 128-byte "
      "swizzle; else fa2",
      false, ALL, ROUNDS_P},
     lr_gpu_attention_fa3},
    {{FAM(ATTENTION), "fa3p",
      "prefill as fa3 (the same bits), with FlashAttention-3's overlap inside a warpgroup: "
      "tile t's Q K^T and tile t-1's P V issued together, t's softmax while P V runs, K and V "
      "rings of two, one block an SM; else fa2",
      false, ALL, ROUNDS_P},
     lr_gpu_attention_fa3p},
    {{FAM(ATTENTION), "fa3w",
      "prefill as fa3 (the same bits), warp-specialised as FlashAttention-3: 192 queries a "
      "block in three consumer warpgroups, a producer warpgroup that walks the block table and "
      "fills a ring of three K/V stages, named barriers between them, setmaxnreg, one block an "
      "SM; else fa2",
      false, ALL, ROUNDS_P},
     lr_gpu_attention_fa3w},
    {{FAM(ATTENTION), "fa3wp",
      "prefill as fa3 (the same bits), FlashAttention-3's block: fa3p's two pipelined consumer "
      "warpgroups (128 queries) fed by fa3w's producer warpgroup through a ring of four K/V "
      "stages, setmaxnreg, one block an SM; else fa2",
      false, ALL, ROUNDS_P},
     lr_gpu_attention_fa3wp},
    {{FAM(ATTENTION), "fa3wt",
      "prefill as fa3 (the same bits), fa3w's block with its producer's K/V tiles copied by the "
      "tensor memory accelerator (one thread, 128-byte swizzle, an mbarrier a stage; the tile "
      "past the block's keys by cp.async); block sizes 8, 16, 32, 64; else fa3w's, else fa2",
      false, ALL, ROUNDS_P},
     lr_gpu_attention_fa3wt},
    {{FAM(ATTENTION), "fa3wts",
      "prefill as fa3 (the same bits), fa3wt made persistent: a block an SM taking fa3wt's work "
      "tiles a grid apart, the next one's Q (two buffers) and first K/V tiles (one ring over the "
      "block's key tiles) loaded under the current one's last tiles and store; block sizes 8, 16, "
      "32, 64; else fa3w's, else fa2",
      false, ALL, ROUNDS_P},
     lr_gpu_attention_fa3wts},
    {{FAM(ATTENTION), "tc",
      "decode: one block per (sequence, kv head, key chunk), the group's query heads "
      "together, chunks merged; prefill (bf16/f16, head_dim 64/128): wmma tensor-core "
      "tiles of 64 queries x 64 keys; else flash",
      false, ALL, ROUNDS_P},
     lr_gpu_attention_tc},
    {{FAM(ATTENTION), "fd",
      "decode (bf16/f16, head_dim 64/128): one block per (sequence, kv head, key chunk) in "
      "tiles of 64 keys, a key per pair of threads for the scores (its K row in 16-byte loads, "
      "even and odd vectors, V by cp.async to shared memory), the group's query heads together, "
      "float32, chunks merged; "
      "else fa3 (its wgmma prefill on compute capability 9.0, else fa2)",
      false, ALL, ROUNDS_P},
     lr_gpu_attention_fd},
    {{FAM(ATTENTION), "fdt",
      "decode (bf16/f16, head_dim 64/128): fd's split over key chunks (planned for the blocks "
      "the card holds at once) on mma.sync m16n8k16, each warp 16 keys at a time through its "
      "own cp.async ring, S = Q K^T and O^T = V^T P^T with P as two 16-bit terms (float32 "
      "softmax and sums), the warps merged in order, chunks merged; "
      "else fa3wts where fa3wt's grid is at most twelve blocks an SM and the block size one it copies, "
      "otherwise fa3 (the same bits; wgmma prefill on compute capability 9.0, else fa2)",
      true, ALL, ROUNDS_P},
     lr_gpu_attention_fdt},
    {{FAM(ATTENTION), "fdtc",
      "decode (bf16/f16, head_dim 64/128): fdt's plan, kernel and bits, with the chunks of each "
      "(sequence, kv head) in one thread-block cluster (up to 16 blocks, up to 4 chunks a "
      "block) merged through distributed shared memory as fdt's merge kernel merges them: no "
      "second kernel, no workspace; fdt's kernel and merge where the plan or the card allows "
      "no such cluster; else fdt's prefill (fa3wts or fa3)",
      false, ALL, ROUNDS_P},
     lr_gpu_attention_fdtc},
    {{FAM(ATTENTION), "flash",
      "16 query rows of one (sequence, head) per block; 32-key K/V "
      "tiles from the paged cache in shared memory; online softmax",
      false, ALL, 0},
     lr_gpu_attention_flash},
    {{FAM(ATTENTION), "simple", "one warp per (token, head), one key at a time, online softmax", false, ALL,
      0},
     lr_gpu_attention_simple},
};
#define N_BUILTIN (sizeof builtin / sizeof builtin[0])

/* The plugins loaded, in order; each one's variants in an array of its own that never
 * moves, so that lr_gpu_variant_at's pointers stay valid as more load. */
typedef struct {
    char *path;       /* as given */
    void *handle;     /* dlopen's; never closed once registered */
    lr_gpu_kernel *k; /* (n) */
    size_t n;
} plugin_rec;
static plugin_rec *plugins;
static size_t n_plugins;

extern "C" size_t lr_gpu_variant_count(void) {
    size_t n = N_BUILTIN;
    for (size_t p = 0; p < n_plugins; p++)
        n += plugins[p].n;
    return n;
}

static const lr_gpu_kernel *kernel_at(size_t i) {
    if (i < N_BUILTIN) return &builtin[i];
    i -= N_BUILTIN;
    for (size_t p = 0; p < n_plugins; i -= plugins[p].n, p++)
        if (i < plugins[p].n) return &plugins[p].k[i];
    return NULL;
}

extern "C" const lr_gpu_variant *lr_gpu_variant_at(size_t i) {
    const lr_gpu_kernel *k = kernel_at(i);
    return k ? &k->v : NULL;
}

/* Appends "text" to list (used so far), ", "-separated, as far as it fits. */
static void list_add(char *list, size_t n, size_t *used, const char *a, const char *b) {
    if (*used >= n) return;
    int k = snprintf(list + *used, n - *used, "%s%s%s", *used ? ", " : "", a, b);
    if (k > 0) *used += (size_t)k < n - *used ? (size_t)k : n - *used;
}

/* The message for an unknown family or name lists what there is, so that a mistyped
 * --kernel option tells the user the spelling. */
static int unknown(const char *family, const char *name) {
    char list[1024];
    size_t used = 0;
    list[0] = '\0';
    if (lr_gpu_family_find(family) < 0) {
        for (int f = 0; f < LR_GPU_NUM_FAMILIES; f++)
            list_add(list, sizeof list, &used, family_names[f], "");
        return lr_fail(LR_E_INVAL, "gpu kernels: no family \"%s\"; families: %s", family ? family : "(null)",
                       list);
    }
    size_t n = lr_gpu_variant_count();
    for (size_t i = 0; i < n; i++) {
        const lr_gpu_variant *v = lr_gpu_variant_at(i);
        if (strcmp(v->family, family) == 0)
            list_add(list, sizeof list, &used, v->name,
                     v->is_default ? " (default)"
                     : v->plugin   ? " (plugin)"
                                   : "");
    }
    return lr_fail(LR_E_INVAL, "gpu kernels: %s has no variant \"%s\"; variants: %s", family,
                   name ? name : "(default)", list);
}

int lr_gpu_kernel_find(const char *family, const char *name, const lr_gpu_kernel **out) {
    size_t n = lr_gpu_variant_count();
    for (size_t i = 0; family && i < n; i++) {
        const lr_gpu_kernel *k = kernel_at(i);
        if (strcmp(k->v.family, family) != 0) continue;
        if (name ? strcmp(k->v.name, name) == 0 : k->v.is_default) {
            *out = k;
            return LR_OK;
        }
    }
    return unknown(family, name);
}

extern "C" int lr_gpu_variant_check(const char *family, const char *name) {
    const lr_gpu_kernel *k;
    return lr_gpu_kernel_find(family, name, &k);
}

static uint32_t dtype_bit(lr_dtype dt) {
    return dt == LR_F32 ? LR_KERNEL_F32 : dt == LR_F16 ? LR_KERNEL_F16 : dt == LR_BF16 ? LR_KERNEL_BF16 : 0;
}

extern "C" const char *lr_gpu_dtypes_name(uint32_t dtypes, char *buf, size_t n) {
    static const struct {
        uint32_t bit;
        const char *name;
    } names[] = {{LR_KERNEL_F32, "F32"}, {LR_KERNEL_F16, "F16"}, {LR_KERNEL_BF16, "BF16"}};
    size_t used = 0;
    if (n) buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (dtypes & names[i].bit) list_add(buf, n, &used, names[i].name, "");
    return buf;
}

/* " (plugin NAME, FILE)" for a plugin's variant, "" for an in-tree one. */
static const char *origin(const lr_gpu_variant *v, char *buf, size_t n) {
    if (!v->plugin) return "";
    snprintf(buf, n, " (plugin %s, %s)", v->plugin, v->source);
    return buf;
}

static int refuse_dtype(const lr_gpu_variant *v, lr_dtype dt) {
    char takes[32], from[512];
    return lr_fail(LR_E_INVAL, "gpu kernels: %s variant \"%s\"%s does not take %s (it takes %s)", v->family,
                   v->name, origin(v, from, sizeof from), lr_dtype_name(dt),
                   lr_gpu_dtypes_name(v->dtypes, takes, sizeof takes));
}

extern "C" int lr_gpu_variant_check_dtype(const char *family, const char *name, lr_dtype dt) {
    const lr_gpu_kernel *k;
    int rc = lr_gpu_kernel_find(family, name, &k);
    if (rc) return rc;
    return k->v.dtypes & dtype_bit(dt) ? LR_OK : refuse_dtype(&k->v, dt);
}

int lr_gpu_kernel_run(const lr_gpu_kernel *k, const void *args, lr_dtype dt, cudaStream_t s) {
    if (!(k->v.dtypes & dtype_bit(dt))) return refuse_dtype(&k->v, dt);
    if (!k->v.plugin) return k->launch(args, s);
    /* A plugin's launcher leaves no message of its own (it links nothing of this
     * library): name it here, and catch a launch error it did not check. */
    char from[512];
    int rc = k->launch(args, s);
    cudaError_t e = cudaGetLastError();
    if (rc != LR_OK)
        return lr_fail(rc < 0 && strcmp(lr_status_name(rc), "LR_UNKNOWN") != 0 ? rc : LR_E_DEVICE,
                       "gpu %s: variant \"%s\"%s failed: status %d (%s)%s%s", k->v.family, k->v.name,
                       origin(&k->v, from, sizeof from), rc, lr_status_name(rc), e != cudaSuccess ? "; " : "",
                       e != cudaSuccess ? cudaGetErrorString(e) : "");
    if (e != cudaSuccess)
        return lr_fail(LR_E_DEVICE, "gpu %s: variant \"%s\"%s: %s", k->v.family, k->v.name,
                       origin(&k->v, from, sizeof from), cudaGetErrorString(e));
    return LR_OK;
}

/* ---- Plugins ------------------------------------------------------------------------ */

/* A variant name --kernel FAMILY=NAME can spell: 1 to LR_KERNEL_NAME_MAX of [A-Za-z0-9_.-]. */
static bool good_name(const char *s, bool printable) {
    size_t n = 0;
    for (; s[n] && n <= LR_KERNEL_NAME_MAX; n++) {
        unsigned char c = (unsigned char)s[n];
        if (printable ? !isprint(c) : !(isalnum(c) || c == '_' || c == '.' || c == '-')) return false;
    }
    return n >= 1 && n <= LR_KERNEL_NAME_MAX;
}

/* Every field of the table, before anything is registered. */
static int check_table(const char *path, const lr_kernel_plugin *t) {
    if (t->abi_version != LR_KERNEL_ABI_VERSION)
        return lr_fail(LR_E_INVAL,
                       "%s: abi_version: %u, this llamaref takes %d (rebuild the plugin against this "
                       "llamaref's llamaref_kernels.h)",
                       path, t->abi_version, LR_KERNEL_ABI_VERSION);
    if (!t->name) return lr_fail(LR_E_INVAL, "%s: name: NULL", path);
    if (!good_name(t->name, true))
        return lr_fail(LR_E_INVAL, "%s: name: not 1 to %d printable characters", path, LR_KERNEL_NAME_MAX);
    if (t->count < 1 || t->count > LR_KERNEL_PLUGIN_MAX_VARIANTS)
        return lr_fail(LR_E_INVAL, "%s: count: %u, not 1 to %d", path, t->count,
                       LR_KERNEL_PLUGIN_MAX_VARIANTS);
    if (!t->variants) return lr_fail(LR_E_INVAL, "%s: variants: NULL (count %u)", path, t->count);
    for (uint32_t i = 0; i < t->count; i++) {
        const lr_kernel_variant *v = &t->variants[i];
        if (v->family < 0 || v->family >= LR_GPU_NUM_FAMILIES) {
            char list[256];
            size_t used = 0;
            list[0] = '\0';
            for (int f = 0; f < LR_GPU_NUM_FAMILIES; f++) {
                char num[32];
                snprintf(num, sizeof num, " %d", f);
                list_add(list, sizeof list, &used, family_names[f], num);
            }
            return lr_fail(LR_E_INVAL, "%s: variants[%u].family: %d is no family (%s)", path, i,
                           (int)v->family, list);
        }
        const char *fam = family_names[v->family];
        if (!v->name) return lr_fail(LR_E_INVAL, "%s: variants[%u].name: NULL", path, i);
        if (!good_name(v->name, false))
            return lr_fail(LR_E_INVAL, "%s: variants[%u].name: \"%.80s\" is not 1 to %d of A-Z a-z 0-9 _ . -",
                           path, i, v->name, LR_KERNEL_NAME_MAX);
        if (!v->description) return lr_fail(LR_E_INVAL, "%s: variants[%u].description: NULL", path, i);
        if (!v->launch)
            return lr_fail(LR_E_INVAL, "%s: variants[%u].launch: NULL (%s \"%s\")", path, i, fam, v->name);
        if (!v->dtypes || (v->dtypes & ~(uint32_t)LR_KERNEL_ALL_DTYPES))
            return lr_fail(LR_E_INVAL,
                           "%s: variants[%u].dtypes: 0x%x is not a non-empty set of LR_KERNEL_F32, "
                           "LR_KERNEL_F16, LR_KERNEL_BF16 (%s \"%s\")",
                           path, i, v->dtypes, fam, v->name);
        if (v->rounding & ~(uint32_t)LR_KERNEL_ROUNDING_KNOWN)
            return lr_fail(LR_E_INVAL, "%s: variants[%u].rounding: 0x%x has unknown bits (%s \"%s\")", path,
                           i, v->rounding, fam, v->name);
        if ((v->rounding & LR_KERNEL_ROUNDS_P) && v->family != LR_GPU_FAM_ATTENTION)
            return lr_fail(LR_E_INVAL,
                           "%s: variants[%u].rounding: LR_KERNEL_ROUNDS_P is attention's, not %s's (\"%s\")",
                           path, i, fam, v->name);
        for (uint32_t j = 0; j < i; j++)
            if (t->variants[j].family == v->family && strcmp(t->variants[j].name, v->name) == 0)
                return lr_fail(LR_E_INVAL, "%s: variants[%u].name: %s \"%s\" is also variants[%u]", path, i,
                               fam, v->name, j);
        const lr_gpu_kernel *k;
        if (lr_gpu_kernel_find(fam, v->name, &k) == LR_OK) {
            if (!k->v.plugin)
                return lr_fail(LR_E_INVAL,
                               "%s: variants[%u].name: %s \"%s\" is an in-tree variant (gpu/registry.cu)",
                               path, i, fam, v->name);
            return lr_fail(LR_E_INVAL,
                           "%s: variants[%u].name: %s \"%s\" is registered already by plugin %s (%s)", path,
                           i, fam, v->name, k->v.plugin, k->v.source);
        }
    }
    return LR_OK;
}

extern "C" int lr_gpu_plugin_load(const char *path) {
    if (!path || !*path) return lr_fail(LR_E_INVAL, "kernel plugin: no file named");
    struct stat st;
    if (stat(path, &st) != 0) return lr_fail(LR_E_IO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return lr_fail(LR_E_IO, "%s: not a file (a kernel plugin is a shared object)", path);
    /* dlopen searches the library path for a name without a slash: load this file. */
    size_t len = strlen(path);
    char *local = (char *)malloc(len + 3);
    if (!local) return lr_fail(LR_E_NOMEM, "kernel plugin: out of memory");
    snprintf(local, len + 3, "%s%s", strchr(path, '/') ? "" : "./", path);
    dlerror();
    void *h = dlopen(local, RTLD_NOW | RTLD_LOCAL);
    free(local);
    if (!h) {
        const char *why = dlerror();
        /* dlerror starts with the path it was given: say it once. */
        const char *colon = why ? strstr(why, ": ") : NULL;
        return lr_fail(LR_E_IO, "%s: cannot load as a shared object: %s", path,
                       colon ? colon + 2
                       : why ? why
                             : "unknown error");
    }
    for (size_t p = 0; p < n_plugins; p++)
        if (plugins[p].handle == h) {
            dlclose(h);
            return lr_fail(LR_E_INVAL, "%s: loaded already (as %s)", path, plugins[p].path);
        }
    dlerror();
    const lr_kernel_plugin *t = (const lr_kernel_plugin *)dlsym(h, LR_KERNEL_PLUGIN_SYMBOL);
    if (!t) {
        dlclose(h);
        return lr_fail(LR_E_INVAL,
                       "%s: no symbol %s (a kernel plugin exports LR_KERNEL_PLUGIN_EXPORT const "
                       "lr_kernel_plugin %s; llamaref_kernels.h)",
                       path, LR_KERNEL_PLUGIN_SYMBOL, LR_KERNEL_PLUGIN_SYMBOL);
    }
    int rc = check_table(path, t);
    if (rc) {
        dlclose(h);
        return rc;
    }
    plugin_rec rec = {strdup(path), h, (lr_gpu_kernel *)calloc(t->count, sizeof(lr_gpu_kernel)), t->count};
    plugin_rec *grown = (plugin_rec *)realloc(plugins, (n_plugins + 1) * sizeof *plugins);
    if (grown) plugins = grown;
    if (!rec.path || !rec.k || !grown) {
        free(rec.path);
        free(rec.k);
        dlclose(h);
        return lr_fail(LR_E_NOMEM, "kernel plugin: out of memory");
    }
    /* The rounding map first: the one step that can still fail. */
    for (uint32_t i = 0; i < t->count; i++) {
        const lr_kernel_variant *v = &t->variants[i];
        if (v->family == LR_GPU_FAM_ATTENTION &&
            (rc = lr_attention_rounding_declare(v->name, (v->rounding & LR_KERNEL_ROUNDS_P) != 0)) != LR_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s", lr_last_error());
            free(rec.path);
            free(rec.k);
            dlclose(h);
            return lr_fail(rc, "%s: variants[%u]: %s", path, i, why);
        }
        rec.k[i].v = {family_names[v->family],
                      v->name,
                      v->description,
                      false,
                      v->dtypes,
                      v->rounding,
                      t->name,
                      rec.path};
        rec.k[i].launch = v->launch;
    }
    plugins[n_plugins++] = rec;
    return LR_OK;
}
