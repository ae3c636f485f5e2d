/* gpu_ops.h: entry points of the CUDA backend's op families, callable from C and CUDA.
 * Every pointer is a device pointer unless noted; shapes are row-major with ld a row
 * stride in elements; dt is the activation and weight dtype (F32, F16 or BF16); all
 * arithmetic inside kernels is float32. Each family (LR_GPU_FAMILY_MAP) has named
 * variants (registry.cu); variant NULL selects the family's default. Functions return
 * LR_OK or a status with a message (lr_last_error()). Mirrors ref/cpu/ref_ops.h, argument
 * for argument. */
#ifndef LLAMAREF_GPU_OPS_H
#define LLAMAREF_GPU_OPS_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdint.h>

#include "llamaref.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Kernel families and the registry of their variants -------------------------------- */

/* The families, in the order of their entry points below: X(ID, name). The one list:
 * the enum, the names, the backend's --kernel parsing and the test's sweeps follow it. */
#define LR_GPU_FAMILY_MAP(X)                                                               \
    X(EMBEDDING, "embedding")                                                              \
    X(RMSNORM, "rmsnorm")                                                                  \
    X(LINEAR, "linear")                                                                    \
    X(ROTARY, "rotary")                                                                    \
    X(ACTIVATION, "activation")                                                            \
    X(CACHE, "cache")                                                                      \
    X(ATTENTION, "attention")

typedef enum {
#define LR_GPU_FAMILY_ENUM(id, name) LR_GPU_FAM_##id,
    LR_GPU_FAMILY_MAP(LR_GPU_FAMILY_ENUM)
#undef LR_GPU_FAMILY_ENUM
    LR_GPU_NUM_FAMILIES
} lr_gpu_family;

const char *lr_gpu_family_name(lr_gpu_family f); /* "rmsnorm"; NULL out of range */
int lr_gpu_family_find(const char *name);         /* the family so named, or -1 */

typedef struct {
    const char *family; /* a name of LR_GPU_FAMILY_MAP */
    const char *name;
    const char *description;
    bool is_default;
} lr_gpu_variant;

size_t lr_gpu_variant_count(void);
const lr_gpu_variant *lr_gpu_variant_at(size_t i);
/* LR_OK when family has a variant of that name (NULL: the default), else LR_E_INVAL
 * naming the choices. */
int lr_gpu_variant_check(const char *family, const char *name);

/* ---- Ops (mirroring ref/cpu/ref_ops.h) ------------------------------------------------- */

/* ids (T, host-written device I64) -> out (T, H): rows of w (shard, H) for tokens in
 * [start, start + shard), zero rows for the others. */
int lr_gpu_embedding(const char *variant, void *out, const int64_t *ids, int64_t T, const void *w,
                     int64_t start, int64_t shard, int64_t H, lr_dtype dt, cudaStream_t s);

/* y (T, H) = x / sqrt(mean(x^2) + eps) * w (H). */
int lr_gpu_rms_norm(const char *variant, void *y, const void *x, const void *w, int64_t T,
                    int64_t H, float eps, lr_dtype dt, cudaStream_t s);

/* residual (T, H, float32) += x (T, H); y (T, H) = rms_norm(residual) * w. */
int lr_gpu_fused_add_rms_norm(const char *variant, void *y, float *residual, const void *x,
                              const void *w, int64_t T, int64_t H, float eps, lr_dtype dt,
                              cudaStream_t s);

/* y (T, N) = x (T, K) @ w (N, K)^T: float32 accumulation, rounded once to dt (the bias,
 * which lr_ref_linear takes, is lr_gpu_add_bias after, as the rounding map has it). Dense
 * rows (ld = K, K, N). blas: a cuBLAS handle created on the current device, not NULL, the
 * one argument lr_ref_linear has no twin for: variants that call cuBLAS (the default, and
 * others for shapes they have no kernel for) run it on s, and leave it bound to s. */
int lr_gpu_linear(const char *variant, void *y, const void *x, const void *w, int64_t T, int64_t N,
                  int64_t K, lr_dtype dt, cublasHandle_t blas, cudaStream_t s);

/* neox RoPE in place on nheads heads of hd at the start of each row of x (T, ld); the
 * angle positions[t] * inv_freq[i] is formed and its sine and cosine taken in float64. */
int lr_gpu_rotary(const char *variant, void *x, int64_t ld, int64_t T, int64_t nheads,
                  int64_t hd, const int64_t *positions, const double *inv_freq, lr_dtype dt,
                  cudaStream_t s);

/* gu (T, 2 NI) = [gate | up] -> out (T, NI) = silu(gate) * up. */
int lr_gpu_silu_and_mul(const char *variant, void *out, const void *gu, int64_t T, int64_t NI,
                        lr_dtype dt, cudaStream_t s);
/* gu (T, 2 NI) -> out (T, NI) = silu(gate) (observed as mlp.act_fn). */
int lr_gpu_silu(void *out, const void *gu, int64_t T, int64_t NI, lr_dtype dt, cudaStream_t s);

/* Paged KV cache of one layer on one rank: k_cache, v_cache (num_blocks, block_size,
 * nkv, hd). Token t's key (columns k_col.. of row t of qkv (T, ld)) and value (v_col..)
 * go to slot slot_mapping[t] = block * block_size + offset. */
int lr_gpu_reshape_and_cache(const char *variant, void *k_cache, void *v_cache, const void *qkv,
                             int64_t ld, int64_t k_col, int64_t v_col, int64_t T, int64_t nkv,
                             int64_t hd, int64_t block_size, const int64_t *slot_mapping,
                             lr_dtype dt, cudaStream_t s);

/* Where each query token's keys are (all device arrays but the sizes). */
typedef struct {
    const int32_t *block_tables; /* (num_seqs, max_blocks): physical block of each logical block */
    const int32_t *token_seq;    /* (T): batch sequence of each token */
    const int32_t *token_keys;   /* (T): keys visible to the token (past + j + 1) */
    const int32_t *seq_start;    /* (num_seqs): first token of the sequence in the batch */
    const int32_t *seq_len;      /* (num_seqs): its new tokens */
    const int32_t *seq_past;     /* (num_seqs): tokens cached before this batch */
    int64_t num_seqs, max_blocks, block_size;
    int64_t max_seq_len; /* max of seq_len (host value) */
    int64_t max_keys;    /* max of token_keys (host value) */
} lr_gpu_attn_meta;

/* Scratch of the attention kernels (tc's split-key decode keeps its partial results there),
 * owned by the caller: one per stream that runs attention (the CUDA backend keeps one per
 * rank), not used by two threads at once. Created empty, without touching a device; the
 * first call that needs it allocates on the current device (a later call on another
 * device fails with LR_E_INVAL), calls that need more grow it. Free it once the work that
 * used it is done; free accepts NULL. */
typedef struct lr_gpu_attn_ws lr_gpu_attn_ws;
int lr_gpu_attn_ws_create(lr_gpu_attn_ws **out);
void lr_gpu_attn_ws_free(lr_gpu_attn_ws *ws);

/* Causal attention through the paged cache (which already holds this batch's keys):
 * q (T, ldq) nh heads of hd -> ctx (T, ldc); query head h reads kv head h / (nh / nkv);
 * scores scaled by scale; softmax in float32. ws: the stream's workspace (not NULL; the
 * one argument lr_ref_attention has no twin for). */
int lr_gpu_attention(const char *variant, void *ctx, int64_t ldc, const void *q, int64_t ldq,
                     const void *k_cache, const void *v_cache, const lr_gpu_attn_meta *meta,
                     int64_t T, int64_t nh, int64_t nkv, int64_t hd, float scale, lr_dtype dt,
                     lr_gpu_attn_ws *ws, cudaStream_t s);

/* ---- Small helpers ---------------------------------------------------------------------- */

/* out (n) = sum of nparts tensors (n) in part order, in float32, rounded once; out may be
 * parts[0]. parts: a host array of device pointers. (The single-GPU tp mode's all-reduce.) */
int lr_gpu_sum(void *out, const void *const *parts, int nparts, int64_t n, lr_dtype dt,
               cudaStream_t s);
/* y (T, N) += b (N). */
int lr_gpu_add_bias(void *y, const void *b, int64_t T, int64_t N, lr_dtype dt, cudaStream_t s);
/* dst (n, ddt) = src (n, sdt); any of F64 (source only), F32, F16, BF16. */
int lr_gpu_convert(void *dst, lr_dtype ddt, const void *src, lr_dtype sdt, int64_t n,
                   cudaStream_t s);
/* out (n, float32) = a (n, dt) + r (n, float32): the model.layers.{i} stage. */
int lr_gpu_add_residual(float *out, const void *a, const float *r, int64_t n, lr_dtype dt,
                        cudaStream_t s);

#ifdef __cplusplus
}
#endif
#endif
