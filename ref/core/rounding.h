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
 * (fa2, and tc's wmma kernel) round them as FlashAttention does: an online softmax over
 * tiles of LR_ATTN_P_TILE keys, scores in log2 units (scale * log2 e), each tile's
 * weights exp2(s - running max) rounded to the dtype, the row sum taken over the rounded
 * weights, the running sums rescaled in float32 as the max grows. Only for bf16/fp16
 * prefill (a batch in which some sequence has more than one new token) at head_dim 64 or
 * 128; everything else they hand on (fa2 -> tc -> flash) keeps P in float32. */
#define LR_ATTN_ROUNDING_MAP(X)                                                                              \
    X("fa2", true)     /* mma.sync prefill; else tc */                                                       \
    X("tc", true)      /* wmma prefill; split-key decode in float32; else flash */                           \
    X("flash", false)  /* float32 throughout */                                                              \
    X("simple", false) /* float32 throughout */

#define LR_ATTN_DEFAULT_VARIANT "fa2"

/* lr_attention_rounds_p, LR_ATTN_P_TILE (the kernels' FA_BK and TC_BK) and the exact
 * conversions to and from bf16/fp16 (tensor.c): llamaref_ops.h, where a harness outside
 * the tree finds them. */

/* A variant registered at run time (a kernel plugin's: llamaref_kernels.h,
 * LR_KERNEL_ROUNDS_P) declares whether it rounds P, under the same conditions as the map's
 * (16-bit prefill at head_dim 64 or 128). The name is copied; a name of the map above or
 * one declared before is LR_E_INVAL. Not thread-safe: declare before any run. */
int lr_attention_rounding_declare(const char *variant, bool rounds_p);

#ifdef __cplusplus
}
#endif
#endif
