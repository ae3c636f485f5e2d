/* rounding.h: the rounding map: where the CUDA path rounds to its 16-bit compute dtype
 * (bf16, fp16), written once and read by both backends. The CUDA backend keeps each
 * composer buffer in the dtype the map names (buf_dtype in gpu/cuda_backend.cu); the CPU
 * reference's emulated-precision path (--backend cpu --precision bf16|fp16) computes in
 * float32 and rounds at exactly these points, so that it is a yardstick for the CUDA path
 * that differs from it only in float32 arithmetic order (docs/architecture.md, "The
 * rounding map").
 *
 * Buffers (LR_BUF_STORAGE_MAP): each lr_buf is stored in the compute dtype or in float32.
 * A buffer stored in the compute dtype is rounded once, by the op that writes it, from
 * that op's float32 result.
 *
 * Inside the ops (the default kernels of gpu/): every op loads its inputs as float32,
 * computes in float32 and rounds its output once, except where noted.
 *   weights      converted once at load: the checkpoint to float32 (lr_weights_build),
 *                then to the dtype (lr_gpu_convert); two roundings for a float64 file
 *   embedding    the shard's rows copied (exact); other ranks' rows are zeros
 *   linear       lr_gpu_linear, every variant (the default cublasGemmEx with
 *                CUBLAS_COMPUTE_32F, a split K summed in float32 too:
 *                lr_gpu_blas_create's math mode; gemv's float32 FMAs and warp sums): dtype inputs,
 *                float32 accumulation, output rounded to the dtype; then the bias (dtype)
 *                added in float32 and the sum rounded again (lr_gpu_add_bias): two
 *                roundings with a bias
 *   rms_norm     RESIDUAL (float32) += HIDDEN (the first norm: RESIDUAL = 0 + HIDDEN);
 *                inv = 1 / sqrtf(sum x^2 / H + eps), float32;
 *                NORMED = round((x * inv) * w), one rounding
 *   rotary       cos and sin of the float64 angle, each rounded to float32;
 *                x1 c - x2 s and x2 c + x1 s in float32, rounded once (in place in QKV)
 *   cache        keys and values copied from QKV (already in the dtype): exact
 *   attention    Q K^T with float32 accumulation, softmax in float32, P V accumulated in
 *                float32, O / l rounded once; P itself is rounded to the dtype before
 *                P V only where lr_attention_rounds_p says (LR_ATTN_ROUNDING_MAP)
 *   silu_and_mul silu(g) * u = g / (1 + expf(-g)) * u in float32, rounded once
 *   all-reduce   lr_gpu_sum (one GPU): the float32 sum of the ranks' parts (each in the
 *                dtype) in rank order, rounded once. Over NCCL the sum is NCCL's in the
 *                dtype: the same single rounding at tp 2, a rounding per step beyond
 *   residual sum observers only: SUM = HIDDEN + RESIDUAL in float32
 *   logits       the LM head's GEMM, output rounded to the dtype */
#ifndef LLAMAREF_ROUNDING_H
#define LLAMAREF_ROUNDING_H

#include "layer.h"
#include "llamaref_ops.h" /* the exact conversions, LR_ATTN_P_TILE, lr_attention_rounds_p */

#ifdef __cplusplus
extern "C" {
#endif

/* How a buffer is stored: in the compute dtype, or in float32 whatever the compute dtype
 * (float64 where the compute dtype is float64: the CPU reference's f64 path). */
typedef enum { LR_STORE_COMPUTE, LR_STORE_F32 } lr_storage;

/* The buffer-level map: every lr_buf, once (rounding.c checks the count). */
#define LR_BUF_STORAGE_MAP(X)                                                                                \
    X(HIDDEN, COMPUTE)  /* a block's output: the GEMM's or the all-reduce's, rounded */                      \
    X(RESIDUAL, F32)    /* the residual stream (vLLM and HF keep it in the dtype) */                         \
    X(NORMED, COMPUTE)  /* the norm's output, the projections' input */                                      \
    X(SUM, F32)         /* observers: hidden + residual, as the stream is float32 */                         \
    X(QKV, COMPUTE)     /* q, k, v after the GEMM (and its bias), then after RoPE */                         \
    X(CTX, COMPUTE)     /* attention's output */                                                             \
    X(PART, COMPUTE)    /* a rank's partial product, as the all-reduce receives it */                        \
    X(GATE_UP, COMPUTE) /* gate and up after the GEMM (and its bias) */                                      \
    X(ACT, COMPUTE)     /* silu(gate) * up */

lr_storage lr_buf_storage(lr_buf b);

/* The dtype buffer b is stored in when the model computes in `compute`: the compute
 * dtype, or for LR_STORE_F32 buffers float32 unless the compute dtype is wider. */
lr_dtype lr_buf_dtype(lr_buf b, lr_dtype compute);

/* Attention variants (gpu/registry.cu) and whether they round the probabilities P to
 * the dtype before P V. A variant that rounds elsewhere declares it here. Those that do
 * (fa2, fa3, fd, fdt and fdtc through fa3's or fa2's kernel, and tc's wmma kernel) round them as
 * FlashAttention does: an online softmax over tiles of LR_ATTN_P_TILE keys, scores in log2 units (scale
 * * log2 e), each tile's weights exp2(s - running max) rounded to the dtype, the row sum
 * taken over the rounded weights, the running sums rescaled in float32 as the max grows.
 * Only for bf16/fp16 prefill (a batch in which some sequence has more than one new token)
 * at head_dim 64 or 128; everything else they hand on (fa3 -> fa2 -> tc -> flash) keeps P
 * in float32. */
#define LR_ATTN_ROUNDING_MAP(X)                                                                              \
    X("fa2", true)     /* mma.sync prefill; else tc */                                                       \
    X("fa3", true)     /* wgmma prefill (sm_90a); else fa2 */                                                \
    X("fa3p", true)    /* fa3's prefill, pipelined inside a warpgroup (the same bits); else fa2 */           \
    X("fa3w", true)    /* fa3's prefill, warp-specialised (the same bits); else fa2 */                       \
    X("fa3wp", true)   /* fa3p's warpgroups fed by fa3w's producer (the same bits); else fa2 */              \
    X("fa3wt", true)   /* fa3w, its producer's K/V tiles copied by TMA (the same bits); else fa3w, fa2 */    \
    X("fa3wts", true)  /* fa3wt, persistent: a block an SM over its work tiles (the same bits) */            \
    X("tc", true)      /* wmma prefill; split-key decode in float32; else flash */                           \
    X("fd", true)      /* fa3's prefill (or fa2's); split-key decode in float32 */                           \
    X("fdt", true)     /* fa3's prefill (or fa2's); split-key decode, P as two 16-bit terms */               \
    X("fdtc", true)    /* fdt's bits, its chunks merged inside a thread-block cluster */                     \
    X("flash", false)  /* float32 throughout */                                                              \
    X("simple", false) /* float32 throughout */

#define LR_ATTN_DEFAULT_VARIANT "fdt"

/* lr_attention_rounds_p, LR_ATTN_P_TILE (the kernels' FA_BK and TC_BK) and the exact
 * conversions to and from bf16/fp16 (tensor.c): llamaref_ops.h, where a harness outside
 * the tree finds them. */

/* A variant registered at run time (a kernel plugin's: llamaref_kernels.h,
 * LR_KERNEL_ROUNDS_P) declares whether it rounds P, under the same conditions as the map's
 * (16-bit prefill at head_dim 64 or 128). The name is copied; a name of the map above or
 * one declared before is LR_E_INVAL. Not thread-safe: declare before any run. */
int lr_attention_rounding_declare(const char *variant, bool rounds_p);

/* variant's name as the map or a plugin's declaration holds it (it lives as long as the
 * process), or NULL where neither declares it. */
const char *lr_attention_variant_declared(const char *variant);
/* The attention variant a kernels string ("family=name,...", lr_options.kernels) selects,
 * as lr_attention_variant_declared gives it; NULL where it selects none (the default) or
 * one undeclared (which the CUDA backend refuses). */
const char *lr_attention_variant_in(const char *kernels);

/* ---- Rounding profiles ----------------------------------------------------------------
 * The map above is the CUDA path's, and the emulated reference's unless told otherwise.
 * An engine that computes in bf16/fp16 but rounds at other points is modelled by a
 * profile: the same ops on the same buffers, rounding where that engine rounds, so that
 * each of its ops can be held to the emulated reference within float32 order alone
 * (lr_options.rounding; llama-diff compare --rounding, a dump's `rounding` metadata). A
 * profile names one choice at each point where engines differ:
 *   stream     STREAM_F32: the residual stream in float32 (RESIDUAL and SUM as the buffer
 *              map stores them). STREAM_ROUNDED: RESIDUAL and SUM in the dtype, each
 *              residual add rounded (h = round(x + attn), out = round(h + mlp)) and the
 *              norm after it reading the rounded sum.
 *   norm       NORM_ONCE: NORMED = round((x * inv) * w). NORM_BEFORE_WEIGHT: y = round(x *
 *              inv) (x * inv in float32, inv as the map's), NORMED = round(w * y).
 *   bias       BIAS_TWICE: the GEMM's output rounded, then again with the bias. BIAS_ONCE:
 *              the bias added to the float32 product, one rounding (torch's addmm).
 *   rotary     ROPE_MAP: the map's. ROPE_TORCH: inv_freq (lr_rope_inv_freq_torch) and the
 *              angle pos * inv_freq in float32, cos and sin in float32 rounded to the
 *              dtype; out = round(round(x cos) + round(rotate_half(x) sin)).
 *   attention  ATTN_VARIANT: the map's (the variant's, lr_attention_rounds_p).
 *              ATTN_TORCH_FLASH (torch's CPU flash-attention kernel, sdpa): scores q.k in
 *              float32, times the scale in float32; an online softmax over blocks of
 *              LR_TORCH_FLASH_KV_BLOCK keys from key 0: e = exp(s - running max) in
 *              float32, the row sum over the unrounded e, P = round(e) before P V, the
 *              float32 accumulator rescaled as the max grows; out = round(acc * (1 / l)).
 *              ATTN_TORCH_EAGER (transformers' eager attention): s = round(round(q.k) *
 *              scale); the softmax in float32, P = round(e * (1 / sum e)), already
 *              normalized; P V in float32, one rounding.
 *   act        ACT_ONCE: round(silu(g) * u). ACT_SILU_ROUNDED: a = round(silu(g)), then
 *              round(a * u).
 * The embedding, the projections without bias (dtype inputs, float32 accumulation, one
 * rounding) and the logits are the same in every profile. bf16 and fp16 round at the
 * same points, each to its own grid.
 *
 * X(id, name, stream, norm, bias, rotary, attention, act). The transformers profiles:
 * transformers 5.24 on torch 2.15's CPU at bf16 (inference, no grad), measured bit for
 * bit on gqa-f32 with every op fed the dump's own input (the bias on F.linear alone;
 * docs/outside-engines.md); transformers' default and linear RoPE frequencies. */
#define LR_ROUNDING_PROFILE_MAP(X)                                                                           \
    X(CUDA, "cuda", STREAM_F32, NORM_ONCE, BIAS_TWICE, ROPE_MAP, ATTN_VARIANT, ACT_ONCE) /* the map */       \
    X(TRANSFORMERS, "transformers", STREAM_ROUNDED, NORM_BEFORE_WEIGHT, BIAS_ONCE, ROPE_TORCH,               \
      ATTN_TORCH_FLASH,                                                                                      \
      ACT_SILU_ROUNDED) /* Hugging Face transformers, attn_implementation "sdpa" (its default) */            \
    X(TRANSFORMERS_EAGER, "transformers-eager", STREAM_ROUNDED, NORM_BEFORE_WEIGHT, BIAS_ONCE, ROPE_TORCH,   \
      ATTN_TORCH_EAGER, ACT_SILU_ROUNDED) /* ... attn_implementation "eager" */

/* The default: the rounding map itself. */
#define LR_ROUNDING_DEFAULT "cuda"

/* Keys per block of torch's CPU flash-attention kernel (its kvSplitSize). */
#define LR_TORCH_FLASH_KV_BLOCK 512

typedef enum {
#define LR_ROUNDING_ID(id, ...) LR_ROUNDING_##id,
    LR_ROUNDING_PROFILE_MAP(LR_ROUNDING_ID)
#undef LR_ROUNDING_ID
        LR_ROUNDING_COUNT
} lr_rounding;

typedef enum { LR_RND_STREAM_F32, LR_RND_STREAM_ROUNDED } lr_rnd_stream;
typedef enum { LR_RND_NORM_ONCE, LR_RND_NORM_BEFORE_WEIGHT } lr_rnd_norm;
typedef enum { LR_RND_BIAS_TWICE, LR_RND_BIAS_ONCE } lr_rnd_bias;
typedef enum { LR_RND_ROPE_MAP, LR_RND_ROPE_TORCH } lr_rnd_rope;
typedef enum { LR_RND_ATTN_VARIANT, LR_RND_ATTN_TORCH_FLASH, LR_RND_ATTN_TORCH_EAGER } lr_rnd_attn;
typedef enum { LR_RND_ACT_ONCE, LR_RND_ACT_SILU_ROUNDED } lr_rnd_act;

typedef struct {
    const char *name;
    lr_rnd_stream stream;
    lr_rnd_norm norm;
    lr_rnd_bias bias;
    lr_rnd_rope rotary;
    lr_rnd_attn attention;
    lr_rnd_act act;
} lr_rounding_profile;

/* The profile r (the map's for anything out of range). */
const lr_rounding_profile *lr_rounding_profile_of(lr_rounding r);
/* The profile called name (NULL: the default); LR_E_INVAL naming every profile otherwise. */
int lr_rounding_find(const char *name, lr_rounding *out);
/* The profiles' names, comma-separated in table order ("cuda, transformers, ..."). */
const char *lr_rounding_names(void);
/* lr_buf_dtype under profile r: a stream that r rounds is stored in the compute dtype. */
lr_dtype lr_buf_dtype_in(lr_rounding r, lr_buf b, lr_dtype compute);
/* Whether attention under profile r rounds P (at dt, head_dim hd, max_new new tokens in the
 * longest sequence): the variant's rule under the map's attention (variant NULL: the
 * default), always at bf16/fp16 under torch's. */
bool lr_rounding_rounds_p(lr_rounding r, const char *variant, lr_dtype dt, int64_t hd, int64_t max_new);

#ifdef __cplusplus
}
#endif
#endif
