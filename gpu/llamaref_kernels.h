/* llamaref_kernels.h: the kernel ABI of llamaref's CUDA path, installed beside llamaref.h
 * and usable from C and CUDA. It is what a kernel variant sees (its family's argument
 * struct and the launcher type) and what a kernel plugin exports (a table of variants),
 * so that a kernel written in another tree can be checked by llama-diff and the op sweep
 * with no edit to this project (docs/adding-a-kernel.md, "A kernel plugin").
 *
 * The in-tree variants (gpu/registry.cu) take the same structs: every family's entry
 * point (gpu/gpu_ops.h) validates its arguments, fills its struct once and calls the
 * chosen variant's launcher with it; a plugin's launcher receives exactly what an in-tree
 * one does. Every pointer in an argument struct is a device pointer unless noted; shapes
 * are row-major; sizes are int64_t; dt is the element type of activations and weights.
 *
 * A plugin is a shared object that exports one symbol, LR_KERNEL_PLUGIN_SYMBOL, an
 * lr_kernel_plugin. It needs no symbol of libllamaref (everything it may call comes in its
 * arguments: attention's workspace through ws_reserve), so it loads into a program linked
 * statically against libllamaref.a, such as llama-diff, without -rdynamic. Build it with
 * the CUDA runtime shared (nvcc -cudart shared), the runtime the library uses, so that
 * streams and device memory are one runtime's.
 *
 * ABI: LR_KERNEL_ABI_VERSION changes whenever a struct below or a family's number changes;
 * the loader refuses a plugin built against another version. Families are only appended. */
#ifndef LLAMAREF_KERNELS_H
#define LLAMAREF_KERNELS_H

#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llamaref.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The version of everything in this header a plugin depends on. */
#define LR_KERNEL_ABI_VERSION 1

/* ---- Families ------------------------------------------------------------------------
 * X(ID, name): the enum LR_GPU_FAM_<ID> (a plugin variant's family), the name --kernel
 * FAMILY=NAME and listings use. The one list: the registry, the backend's --kernel
 * parsing and the op sweep follow it. New families go at the end. */
#define LR_GPU_FAMILY_MAP(X)                                                               \
    X(EMBEDDING, "embedding")                                                              \
    X(RMSNORM, "rmsnorm")                                                                  \
    X(ROTARY, "rotary")                                                                    \
    X(ACTIVATION, "activation")                                                            \
    X(CACHE, "cache")                                                                      \
    X(ATTENTION, "attention")                                                              \
    X(LINEAR, "linear")

typedef enum {
#define LR_GPU_FAMILY_ENUM(id, name) LR_GPU_FAM_##id,
    LR_GPU_FAMILY_MAP(LR_GPU_FAMILY_ENUM)
#undef LR_GPU_FAMILY_ENUM
    LR_GPU_NUM_FAMILIES
} lr_gpu_family;

/* ---- Element types a variant takes (lr_kernel_variant.dtypes) -------------------------- */
#define LR_KERNEL_F32 (1u << 0)
#define LR_KERNEL_F16 (1u << 1)
#define LR_KERNEL_BF16 (1u << 2)
#define LR_KERNEL_ALL_DTYPES (LR_KERNEL_F32 | LR_KERNEL_F16 | LR_KERNEL_BF16)

/* ---- Rounding a variant uses where it differs from the default (.rounding) -------------
 * The default (0): every input loaded as float32, float32 arithmetic, each output rounded
 * to dt once (ref/core/rounding.h). The emulated CPU reference (--precision bf16|fp16)
 * and the same-precision verdict follow a variant's declaration as they follow the
 * in-tree variants' (LR_ATTN_ROUNDING_MAP), so a kernel that rounds elsewhere and does not
 * say so fails that verdict.
 *
 * LR_KERNEL_ROUNDS_P (attention only): the probabilities P are rounded to dt before P V,
 * as FlashAttention-2 and the in-tree fa2 do: an online softmax over tiles of 64 keys,
 * scores in log2 units (scale * log2 e), each tile's weights exp2(s - running max) rounded
 * to dt, the row sum taken over the rounded weights. Declared for BF16/F16 prefill (some
 * sequence of the batch has more than one new token) at head_dim 64 and 128, the calls the
 * emulated reference tiles; other calls are held to P in float32. */
#define LR_KERNEL_ROUNDS_P (1u << 0)
#define LR_KERNEL_ROUNDING_KNOWN LR_KERNEL_ROUNDS_P

/* ---- The launcher ----------------------------------------------------------------------
 * args points to the argument struct of the variant's family (below), already validated
 * by the entry point (sizes non-negative, dt one the variant declared, no empty call); the
 * launcher enqueues its kernels on stream and returns LR_OK (0) or a negative status of
 * llamaref.h (LR_E_INVAL for a shape it cannot take, LR_E_DEVICE for a CUDA error). The
 * registry checks cudaGetLastError() after a plugin's launcher, so a launch error it did
 * not check is still reported, naming the variant. */
typedef int (*lr_gpu_launch)(const void *args, cudaStream_t stream);

/* ---- Argument structs, one per family ---------------------------------------------------- */

/* embedding: VocabParallelEmbedding on one rank. out (T, H) = row ids[t] - start of w for
 * tokens in [start, start + shard), zero rows for the others. */
typedef struct {
    void *out;          /* (T, H) */
    const int64_t *ids; /* (T) */
    int64_t T;
    const void *w;      /* (shard, H): vocabulary rows [start, start + shard) */
    int64_t start, shard, H;
    lr_dtype dt;
} lr_gpu_embedding_args;

/* rmsnorm: y (T, H) = v / sqrt(mean(v^2) + eps) * w (H), with v = x, or when residual is
 * not NULL (fused_add_rms_norm) residual (float32) += x first, stored back, and v the new
 * residual. y may alias x. */
typedef struct {
    void *y;         /* (T, H) */
    float *residual; /* (T, H), in/out, or NULL (plain RMSNorm) */
    const void *x;   /* (T, H) */
    const void *w;   /* (H) */
    int64_t T, H;
    float eps;
    lr_dtype dt;
} lr_gpu_rmsnorm_args;

/* linear: y (T, N) = x (T, K) w (N, K)^T, dense row-major tensors of dt, float32
 * accumulation, rounded once (the bias is added after, by the backend). Every size is at
 * least 1 and at most INT_MAX. blas is the caller's cuBLAS handle (a cublasHandle_t),
 * created on the current device: a variant that calls cuBLAS (cublas, the default auto
 * above two tokens, or another's fallback for shapes it has no kernel for) binds it to the launch stream first; one that
 * does not may ignore it. Declared as the struct cuBLAS's handle points to, so this
 * header needs no cuBLAS header. */
typedef struct {
    void *y;                    /* (T, N) */
    const void *x;              /* (T, K) */
    const void *w;              /* (N, K) */
    int64_t T, N, K;
    lr_dtype dt;
    struct cublasContext *blas; /* cublasHandle_t */
} lr_gpu_linear_args;

/* rotary: neox (rotate-half) RoPE in place on nheads heads of hd at the start of each row
 * of x; the angle positions[t] * inv_freq[i] and its sine and cosine in float64, each
 * rounded to float32 for the rotation. Columns past nheads * hd are left untouched. */
typedef struct {
    void *x;                  /* (T, ld): nheads heads of hd from column 0 */
    int64_t ld, T, nheads, hd;
    const int64_t *positions; /* (T) */
    const double *inv_freq;   /* (hd / 2) */
    lr_dtype dt;
} lr_gpu_rotary_args;

/* activation: out (T, NI) = silu(gate) * up (mul), or silu(gate) alone (!mul), with
 * silu(g) = g / (1 + expf(-g)) in float32. */
typedef struct {
    void *out;      /* (T, NI) */
    const void *gu; /* (T, 2 NI) = [gate | up] */
    int64_t T, NI;
    bool mul;
    lr_dtype dt;
} lr_gpu_activation_args;

/* cache: reshape_and_cache. Token t's key (columns k_col .. k_col + nkv hd of row t of
 * qkv) and value (v_col ..) to slot slot_mapping[t] = block * block_size + offset of the
 * paged caches; a slot of -1 writes nothing. */
typedef struct {
    void *k_cache, *v_cache;     /* (num_blocks, block_size, nkv, hd) */
    const void *qkv;             /* (T, ld) */
    int64_t ld, k_col, v_col, T, nkv, hd, block_size;
    const int64_t *slot_mapping; /* (T) */
    lr_dtype dt;
} lr_gpu_cache_args;

/* attention: where each query token's keys are (device arrays, but the sizes). */
typedef struct {
    const int32_t *block_tables; /* (num_seqs, max_blocks): physical block of each logical block */
    const int32_t *token_seq;    /* (T): batch sequence of each token */
    const int32_t *token_keys;   /* (T): keys visible to the token (past + j + 1) */
    const int32_t *seq_start;    /* (num_seqs): first token of the sequence in the batch */
    const int32_t *seq_len;      /* (num_seqs): its new tokens */
    const int32_t *seq_past;     /* (num_seqs): tokens cached before this batch */
    int64_t num_seqs, max_blocks, block_size;
    int64_t max_seq_len; /* max of seq_len (host value) */
    int64_t max_keys;    /* at least the max of token_keys (host value): the max itself in an
                          * eager step; the KV cache's capacity in a step the CUDA backend
                          * captures as a graph (lr_options.cuda_graphs), whose lengths are
                          * only in device memory. A variant sizes its grid with it and
                          * reads the real counts from token_keys (a plugin's variant is
                          * always called eagerly, with the max itself). */
} lr_gpu_attn_meta;

/* The caller's attention scratch (opaque; gpu_ops.h creates and frees it). */
typedef struct lr_gpu_attn_ws lr_gpu_attn_ws;

/* attention: causal attention through the paged cache, which already holds the batch's
 * keys and values: q (T, ldq) nh heads of hd -> ctx (T, ldc); query head h reads kv head
 * h / (nh / nkv); token t sees the first meta.token_keys[t] keys of its sequence; scores
 * scaled by scale, softmax in float32. hd is even and at most 256, nh a multiple of nkv,
 * meta.max_keys within int32. A variant that needs device scratch asks ws_reserve for it:
 * *out gets at least bytes on the current device, valid until the next call with ws on
 * this stream (growing it first waits for stream). */
typedef struct {
    void *ctx;                     /* (T, ldc) */
    int64_t ldc;
    const void *q;                 /* (T, ldq) */
    int64_t ldq;
    const void *k_cache, *v_cache; /* (num_blocks, block_size, nkv, hd) */
    lr_gpu_attn_meta meta;
    int64_t T, nh, nkv, hd;
    float scale;
    lr_dtype dt;
    lr_gpu_attn_ws *ws;            /* the stream's workspace: pass it to ws_reserve */
    int (*ws_reserve)(lr_gpu_attn_ws *ws, size_t bytes, cudaStream_t stream, void **out);
} lr_gpu_attention_args;

/* ---- A plugin's table ------------------------------------------------------------------ */

/* One kernel variant. */
typedef struct {
    int32_t family;          /* an lr_gpu_family */
    const char *name;        /* unique in its family, among the in-tree variants and every
                              * plugin loaded: 1 to 63 of [A-Za-z0-9_.-] (--kernel FAMILY=NAME) */
    const char *description; /* one line for listings: how it computes; not NULL */
    uint32_t dtypes;         /* the LR_KERNEL_<dtype> bits it takes (at least one); a call at
                              * another dtype is refused before the launcher runs */
    uint32_t rounding;       /* 0, or LR_KERNEL_ROUNDS_P (attention): where it rounds
                              * otherwise than the default (above) */
    lr_gpu_launch launch;    /* not NULL */
} lr_kernel_variant;

/* What a plugin exports under LR_KERNEL_PLUGIN_SYMBOL. The loader checks every field and
 * refuses the whole table (nothing registered) with a message naming the file and field. */
typedef struct {
    uint32_t abi_version;               /* LR_KERNEL_ABI_VERSION, as built */
    const char *name;                   /* the plugin's name in listings and messages: 1 to
                                         * 63 printable characters */
    uint32_t count;                     /* variants: 1 to LR_KERNEL_PLUGIN_MAX_VARIANTS */
    const lr_kernel_variant *variants;  /* (count) */
} lr_kernel_plugin;

#define LR_KERNEL_PLUGIN_SYMBOL "llamaref_kernel_plugin"
#define LR_KERNEL_PLUGIN_MAX_VARIANTS 64
#define LR_KERNEL_NAME_MAX 63

/* Export the table: LR_KERNEL_PLUGIN_EXPORT const lr_kernel_plugin llamaref_kernel_plugin
 * = {LR_KERNEL_ABI_VERSION, "mine", n, variants}; (C linkage and default visibility, also
 * from a .cu). */
#ifdef __cplusplus
#define LR_KERNEL_PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))
#else
#define LR_KERNEL_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
}
#endif
#endif
