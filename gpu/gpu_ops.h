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
#include "llamaref_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Kernel families and the registry of their variants -------------------------------- */

/* The families (LR_GPU_FAMILY_MAP, lr_gpu_family) and the argument structs of their
 * launchers are in llamaref_kernels.h, the ABI kernel plugins build against. */

const char *lr_gpu_family_name(lr_gpu_family f); /* "rmsnorm"; NULL out of range */
int lr_gpu_family_find(const char *name);         /* the family so named, or -1 */

/* A registered variant: in-tree (registry.cu) or from a plugin (lr_gpu_plugin_load). */
typedef struct {
    const char *family; /* a name of LR_GPU_FAMILY_MAP */
    const char *name;
    const char *description;
    bool is_default;    /* in-tree only: exactly one per family */
    uint32_t dtypes;    /* LR_KERNEL_<dtype> bits it takes */
    uint32_t rounding;  /* LR_KERNEL_ROUNDS_P, or 0: the default rounding */
    const char *plugin; /* the plugin's name; NULL in-tree */
    const char *source; /* the plugin's file as given to lr_gpu_plugin_load; NULL in-tree */
} lr_gpu_variant;

/* Every variant, the in-tree ones first (in the table's order), then each plugin's in the
 * order loaded. */
size_t lr_gpu_variant_count(void);
const lr_gpu_variant *lr_gpu_variant_at(size_t i);
/* LR_OK when family has a variant of that name (NULL: the default), else LR_E_INVAL
 * naming the choices. */
int lr_gpu_variant_check(const char *family, const char *name);
/* LR_OK when that variant (as lr_gpu_variant_check finds it) takes dtype dt, else
 * LR_E_INVAL naming the dtypes it takes. */
int lr_gpu_variant_check_dtype(const char *family, const char *name, lr_dtype dt);
/* "F32, F16, BF16": the dtypes of a LR_KERNEL_<dtype> mask, into buf. */
const char *lr_gpu_dtypes_name(uint32_t dtypes, char *buf, size_t n);

/* Loads a kernel plugin (llamaref_kernels.h): dlopen(path), its LR_KERNEL_PLUGIN_SYMBOL,
 * the ABI version and every field of its table checked, names unique per family among
 * the variants registered so far. On success its variants join the registry (and the
 * rounding map: lr_attention_rounds_p); the object stays loaded for the life of the
 * process. On failure nothing is registered and the message names the file and the field
 * (LR_E_IO: no such file or not loadable; LR_E_INVAL: a bad table). Not thread-safe: load
 * plugins before any kernel runs. */
int lr_gpu_plugin_load(const char *path);

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
/* Whether rmsnorm "vec" (the default) runs its own kernel on rows of H (else "block"'s): the
 * norm that lr_gpu_norm_linear_* fuse runs only where it does. (rmsnorm.cu) */
bool lr_gpu_rmsnorm_vec_takes(int64_t H, const void *y, const void *x, const void *w, const float *residual,
                              lr_dtype dt);

/* y (T, N) = x (T, K) @ w (N, K)^T: float32 accumulation, rounded once to dt (the bias,
 * which lr_ref_linear takes, is lr_gpu_add_bias after, as the rounding map has it). Dense
 * rows (ld = K, K, N). blas: a cuBLAS handle created on the current device, not NULL, the
 * one argument lr_ref_linear has no twin for: variants that call cuBLAS (cublas, auto above
 * two tokens, and others for shapes they have no kernel for) run it on s, and leave it bound to s. */
/* A cuBLAS handle on the current device with the library's math mode (float32 compute, a
 * split K summed in float32: the rounding map's one rounding); every handle the library,
 * its tests and benches create is made so, and the linear family sets it on a caller's. */
int lr_gpu_blas_create(cublasHandle_t *out);
int lr_gpu_linear(const char *variant, void *y, const void *x, const void *w, int64_t T, int64_t N,
                  int64_t K, lr_dtype dt, cublasHandle_t blas, cudaStream_t s);

/* GEMVs that end with the op after them (linear.cu), not registry families: the CUDA
 * backend runs them where the variants of the ops they replace are the defaults and
 * lr_gpu_silu_fuse() / lr_gpu_qkv_fuse() say so. Each gives the bits of linear "auto" (gemv
 * at these T) then that op. Their one kernel runs where lr_gpu_linear_fuses says (T <= 2, K
 * a multiple of 16 bytes' elements, x and w 16-byte aligned); the two kernels otherwise.
 *
 * gate_up_proj and SiluAndMul: act (T, NI) = silu(x wg^T) * (x wu^T) for the packed w
 * (2 NI, K) = [wg; wu], each product rounded to dt first; gu (T, 2 NI) is the two
 * kernels' product, and may be NULL only where the one kernel runs. */
#define LR_GPU_LINEAR_FUSED_MAX_T 2 /* the most tokens of their one kernel: auto's gemv range */
int lr_gpu_linear_silu(void *act, void *gu, const void *x, const void *w, int64_t T, int64_t NI, int64_t K,
                       lr_dtype dt, cublasHandle_t blas, cudaStream_t s);
/* qkv_proj, RoPE and the cache write: qkv (T, (nh + 2 nkv) hd) = x w^T, then what
 * lr_gpu_rotary_cache does to it (its q and k heads rotated, k and v to slot_mapping[t]). */
int lr_gpu_linear_rope_cache(void *qkv, const void *x, const void *w, int64_t T, int64_t nh, int64_t nkv,
                             int64_t hd, int64_t K, const int64_t *positions, const double *inv_freq,
                             void *k_cache, void *v_cache, const int64_t *slot_mapping, lr_dtype dt,
                             cublasHandle_t blas, cudaStream_t s);
bool lr_gpu_linear_fuses(int64_t T, int64_t K, const void *x, const void *w, lr_dtype dt);

/* The same two with the layer's norm before them (the input or post-attention layernorm):
 * residual_out = hidden + residual_in (hidden + 0 without one: the stream starts), and the
 * projection's input rms_norm(residual_out) * weight, each with the bits of
 * lr_gpu_fused_add_rms_norm's default variant ("vec") on a residual that held residual_in.
 * Their one kernel (where lr_gpu_norm_linear_fuses says) keeps the normed rows in each
 * block's shared memory, every block forming them from hidden and residual_in, and block 0
 * writing residual_out; normed is then not written. Otherwise the norm runs first
 * (residual_in copied to residual_out, or residual_out zeroed; the vec kernel into normed),
 * then the entry point above. residual_out may not be residual_in (the one kernel's blocks
 * all read residual_in while block 0 writes residual_out). */
typedef struct {
    const void *hidden;       /* (T, K) dt: the stream's new part (the op before's output) */
    const float *residual_in; /* (T, K) float32, or NULL */
    float *residual_out;      /* (T, K) float32 */
    const void *weight;       /* (K) dt: the norm's */
    float eps;
    void *normed; /* (T, K) dt: the norm's output where it runs apart */
} lr_gpu_norm_in;
int lr_gpu_norm_linear_silu(void *act, void *gu, const lr_gpu_norm_in *norm, const void *w, int64_t T,
                            int64_t NI, int64_t K, lr_dtype dt, cublasHandle_t blas, cudaStream_t s);
int lr_gpu_norm_linear_rope_cache(void *qkv, const lr_gpu_norm_in *norm, const void *w, int64_t T, int64_t nh,
                                  int64_t nkv, int64_t hd, int64_t K, const int64_t *positions,
                                  const double *inv_freq, void *k_cache, void *v_cache,
                                  const int64_t *slot_mapping, lr_dtype dt, cublasHandle_t blas,
                                  cudaStream_t s);
/* Where the one kernel runs: lr_gpu_linear_fuses, the vec norm's conditions
 * (lr_gpu_rmsnorm_vec_takes, on normed), residual_out 16-byte aligned and not residual_in,
 * and the T normed rows within 32 KB of shared memory. */
bool lr_gpu_norm_linear_fuses(int64_t T, int64_t K, const lr_gpu_norm_in *norm, const void *w, lr_dtype dt);

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

/* RoPE (as the rotary family's heads variant computes it) on the nh + nkv q and k heads at
 * the start of each row of qkv (T, ld), then token t's k and v heads (the next nkv and the
 * nkv after them) to slot_mapping[t] of the cache (as the cache family's scatter does), in
 * one kernel: the same bits as the two. Not a registry family: the CUDA backend runs it
 * where those two are its variants and lr_gpu_rope_cache() says so. (rotary.cu) */
int lr_gpu_rotary_cache(void *qkv, int64_t ld, int64_t T, int64_t nh, int64_t nkv, int64_t hd,
                        const int64_t *positions, const double *inv_freq, void *k_cache, void *v_cache,
                        const int64_t *slot_mapping, lr_dtype dt, cudaStream_t s);

/* lr_gpu_attn_meta, where each query token's keys are: llamaref_kernels.h. */

/* Scratch of the attention kernels (tc's split-key decode keeps its partial results there),
 * owned by the caller: one per stream that runs attention (the CUDA backend keeps one per
 * rank), not used by two threads at once. Created empty, without touching a device; the
 * first call that needs it allocates on the current device (a later call on another
 * device fails with LR_E_INVAL), calls that need more grow it. Free it once the work that
 * used it is done; free accepts NULL. */
int lr_gpu_attn_ws_create(lr_gpu_attn_ws **out);
void lr_gpu_attn_ws_free(lr_gpu_attn_ws *ws);
/* Bytes the workspace holds now (0: none yet). It only grows, and growing frees the old
 * allocation, which a captured CUDA graph may point into: the backend drops its graphs
 * when this changes. */
size_t lr_gpu_attn_ws_bytes(const lr_gpu_attn_ws *ws);

/* Causal attention through the paged cache (which already holds this batch's keys):
 * q (T, ldq) nh heads of hd -> ctx (T, ldc); query head h reads kv head h / (nh / nkv);
 * scores scaled by scale; softmax in float32. ws: the stream's workspace (not NULL; the
 * one argument lr_ref_attention has no twin for). */
int lr_gpu_attention(const char *variant, void *ctx, int64_t ldc, const void *q, int64_t ldq,
                     const void *k_cache, const void *v_cache, const lr_gpu_attn_meta *meta,
                     int64_t T, int64_t nh, int64_t nkv, int64_t hd, float scale, lr_dtype dt,
                     lr_gpu_attn_ws *ws, cudaStream_t s);
/* Whether attention variant fa3's own kernel (wgmma, gpu/attention_fa3.cu) runs on the
 * current device: the build has it (*built: configure's CUDA_ARCH sm_90, the file
 * compiled for sm_90a) and the device is of compute capability 9.0. Where it does not,
 * fa3 hands every call to fa2, and a sweep of fa3 checks fa2's kernel. */
bool lr_gpu_attention_fa3_native(bool *built);

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
/* For each row t of x (T rows of stride ld, the first n elements of each) and each chunk c
 * of its columns (chunk columns a chunk, nchunks = ceil(n / chunk)): val[t * nchunks + c]
 * the chunk's largest element (as float32) and idx[t * nchunks + c] the lowest column of
 * the row holding it, a NaN counting as larger than any number (torch.argmax's rule). The
 * row's argmax is the best of its chunks' by the same rule (among equal values, the lower
 * column). T >= 0, 1 <= n <= ld, n < 2^31, chunk >= 1. (Greedy decoding: lr_model_greedy.) */
int lr_gpu_argmax(float *val, int32_t *idx, const void *x, int64_t ld, int64_t T, int64_t n, int64_t chunk,
                  lr_dtype dt, cudaStream_t s);

/* Programmatic dependent launch (gpu/common.cuh says what it is and what a kernel launched
 * with it does): whether this thread's launches on the current device carry it. On where
 * the device's compute capability is 9.0 or more, unless LLAMAREF_PDL=0 is in the
 * environment or lr_gpu_pdl_set(0) was called; lr_gpu_pdl_set(-1) goes back to that rule.
 * It moves when kernels start, never a bit of what they compute. (util.cu) */
bool lr_gpu_pdl(void);
void lr_gpu_pdl_set(int on);

/* Whether the CUDA backend fuses RoPE with the cache write (lr_gpu_rotary_cache). On
 * (since run 24, docs/performance.md) unless LLAMAREF_ROPE_CACHE=0 is in the environment
 * or lr_gpu_rope_cache_set(0) was called; lr_gpu_rope_cache_set(-1) goes back to that
 * rule. It changes no bit. (util.cu) */
bool lr_gpu_rope_cache(void);
void lr_gpu_rope_cache_set(int on);
/* Whether lr_gpu_rotary_cache runs its kernel for many tokens (a block a token, whole
 * 16-byte vectors, the angles in shared memory) from ROT_WIDE_MIN_T (64) tokens on, where
 * head_dim / 2 is a multiple of a vector's elements and the rows and caches are 16-byte
 * aligned. On (since run 31, docs/performance.md) unless LLAMAREF_ROPE_WIDE=0 is in the
 * environment or lr_gpu_rope_wide_set(0) was called; set(-1) goes back to that rule. It
 * changes no bit (test_gpu_linear's rotary_cache_wide). (util.cu) */
bool lr_gpu_rope_wide(void);
void lr_gpu_rope_wide_set(int on);
/* How many times this process has launched that kernel (for tests: that a call took it). */
uint64_t lr_gpu_rope_wide_launches(void);

/* Whether the CUDA backend runs gate_up_proj and the activation as one kernel
 * (lr_gpu_linear_silu), and qkv_proj with RoPE and the cache write
 * (lr_gpu_linear_rope_cache), in a decode step of at most 2 tokens. On unless
 * LLAMAREF_SILU_FUSE=0 / LLAMAREF_QKV_FUSE=0 is in the environment or
 * lr_gpu_silu_fuse_set(0) / lr_gpu_qkv_fuse_set(0) was called; set(-1) goes back to that
 * rule. They change no bit (test_gpu_forward's *_fuse_changes_no_bit). (util.cu) */
bool lr_gpu_silu_fuse(void);
void lr_gpu_silu_fuse_set(int on);
bool lr_gpu_qkv_fuse(void);
void lr_gpu_qkv_fuse_set(int on);
/* Whether the CUDA backend also runs the layers' norms (input and post-attention) inside
 * those two fused GEMVs (lr_gpu_norm_linear_rope_cache, lr_gpu_norm_linear_silu) where they
 * run, on one GPU with the default rmsnorm variant: two kernels fewer a layer at decode.
 * Off (its bits held on a GPU, run 28; not yet timed) unless LLAMAREF_NORM_FUSE=1 is in the environment or
 * lr_gpu_norm_fuse_set(1) was called; set(-1) goes back to that rule. It changes no bit.
 * (util.cu) */
bool lr_gpu_norm_fuse(void);
void lr_gpu_norm_fuse_set(int on);

/* Attention fa3wts' grid (gpu/attention_fa3.cu): at most `blocks` blocks, each taking the work
 * tiles that many apart, where blocks > 0 (a test's lever: every block then takes many work
 * tiles of a batch of any size, the skipped ones of shorter sequences among them); 0 (the
 * default): one block an SM. It changes no bit. */
void lr_gpu_attention_fa3wts_grid_set(int blocks);

/* The current device's compute capability (major) and multiprocessor count, asked once
 * a device; 0 where the runtime cannot say. (util.cu) */
int lr_gpu_cc_major(void);
int lr_gpu_sm_count(void);

#ifdef __cplusplus
}
#endif
#endif
