/* llamaref_ops.h: the reference ops and the op budgets, for a developer's own kernel
 * harness in C or CUDA (installed beside llamaref.h; docs/adding-a-kernel.md, "Calling
 * the reference ops and budgets from your own harness").
 *
 *   - The reference ops (lr_ref_*): one per module of the Llama forward, in float64 (the
 *     truth a kernel is judged against) and float32, and the emulated bf16/fp16 path
 *     (lr_ref_*_emulated): the float32 op on inputs already rounded to bf16/fp16, its
 *     outputs rounded once where the CUDA path rounds them: what the CUDA path computes
 *     but for the order of its float32 operations (ref/core/rounding.h).
 *   - The exact conversions to and from bf16/fp16 that the emulation rounds with.
 *   - lr_op_budget: what an op's output is held to at a dtype: the criteria against the
 *     float64 reference (lr_compare_stage) and, at bf16/fp16, the budget in ulps against
 *     the emulated reference (lr_same_compare). The same numbers `llama-diff ops` and
 *     tests/test_gpu_ops judge every registered kernel variant with.
 * Shapes are row-major; ld is a row stride in elements. Link with -lllamaref (pkg-config
 * llamaref). */
#ifndef LLAMAREF_OPS_H
#define LLAMAREF_OPS_H

#include "llamaref.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The reference ops ----------------------------------------------------------------- */

#define LR_REF_OPS(real, sfx)                                                              \
    /* ids (T) -> out (T, H): rows of w (shard, H) = vocabulary [start, start+shard), else 0 */ \
    void lr_ref_vocab_parallel_embedding_##sfx(real *out, const int64_t *ids, int64_t T,      \
                                               const real *w, int64_t start, int64_t shard,   \
                                               int64_t H);                                     \
    /* y (T, H) = x / sqrt(mean(x^2) + eps) * w */                                         \
    void lr_ref_rms_norm_##sfx(real *y, const real *x, const real *w, int64_t T, int64_t H,  \
                               double eps);                                                 \
    /* residual += x; y = rms_norm(residual) */                                            \
    void lr_ref_fused_add_rms_norm_##sfx(real *y, real *residual, const real *x,            \
                                         const real *w, int64_t T, int64_t H, double eps);  \
    /* y (T, N) = x (T, K) @ w (N, K)^T + b (N, or NULL) */                                 \
    void lr_ref_linear_##sfx(real *y, const real *x, const real *w, const real *b, int64_t T, \
                             int64_t N, int64_t K);                                         \
    /* neox RoPE in place on nheads heads of hd at the start of each row of x (T, ld) */   \
    void lr_ref_rotary_embedding_##sfx(real *x, int64_t ld, int64_t T, int64_t nheads,      \
                                       int64_t hd, const int64_t *positions,                \
                                       const double *inv_freq, real *scratch_hd);           \
    /* gu (T, 2 NI) = [gate | up] -> out (T, NI) = silu(gate) * up */                       \
    void lr_ref_silu_and_mul_##sfx(real *out, const real *gu, int64_t T, int64_t NI);       \
    /* gu (T, 2 NI) -> out (T, NI) = silu(gate) */                                          \
    void lr_ref_silu_##sfx(real *out, const real *gu, int64_t T, int64_t NI);               \
    /* one sequence, causal from past: q (n, ldq) nh heads, k v (past+n, ldkv) nkv heads    \
     * -> ctx (n, ldc); scores: scratch max(n, nh / nkv) * (past + n) */                    \
    void lr_ref_attention_##sfx(real *ctx, int64_t ldc, const real *q, int64_t ldq,         \
                                const real *k, const real *v, int64_t ldkv, int64_t n,      \
                                int64_t past, int64_t nh, int64_t nkv, int64_t hd,          \
                                real *scores);                                              \
    /* the same with P rounded to p_dtype per tile of `tile` keys, as the CUDA path's       \
     * 16-bit prefill kernels (fa2, tc's wmma) round it (ref/core/rounding.h) */           \
    void lr_ref_attention_tiled_##sfx(real *ctx, int64_t ldc, const real *q, int64_t ldq,   \
                                      const real *k, const real *v, int64_t ldkv, int64_t n, \
                                      int64_t past, int64_t nh, int64_t nkv, int64_t hd,    \
                                      int64_t tile, lr_dtype p_dtype, real *scores);

LR_REF_OPS(double, f64)
LR_REF_OPS(float, f32)
#undef LR_REF_OPS

/* ---- Exact conversions to and from the 16-bit dtypes ------------------------------------
 * Round to nearest, ties to even, as __float2bfloat16_rn and __float2half_rn do: half
 * subnormals below 2^-14, overflow to infinity (fp16 from 65520, its largest finite
 * 65504 plus half an ulp, up; bf16 past its largest finite), NaN stays NaN (quiet). */
uint16_t lr_bf16_from_f32(float x);
uint16_t lr_f16_from_f32(float x);
float lr_f32_from_bf16(uint16_t h);
float lr_f32_from_f16(uint16_t h);

/* x rounded to dt and widened back to float32 (exact): BF16 and F16 round; F32 and F64
 * return x. */
float lr_round_f32(float x, lr_dtype dt);
/* The same in place over x (n). */
void lr_round_f32_n(float *x, size_t n, lr_dtype dt);

/* Keys per tile where a 16-bit attention kernel rounds P (lr_ref_attention_tiled_*). */
#define LR_ATTN_P_TILE 64
/* Whether attention variant `variant` (NULL: the default; gpu/registry.cu) rounds P in a
 * call at compute dtype dt, head_dim hd, with max_new tokens in the batch's longest new
 * sequence: then its emulated reference is lr_ref_attention_tiled_f32 with
 * LR_ATTN_P_TILE. A variant not in the map keeps P in float32. */
bool lr_attention_rounds_p(const char *variant, lr_dtype dt, int64_t hd, int64_t max_new);

/* ---- The emulated bf16/fp16 reference ------------------------------------------------------
 * The op as `--backend cpu --precision bf16|fp16` computes it: the float32 op on inputs
 * already holding dt's values (round them with lr_round_f32_n first), each output rounded
 * once to dt where the CUDA path rounds it (ref/core/rounding.h), as float32 values. What a
 * correct bf16/fp16 kernel differs from only by the order of its float32 operations: hold
 * it to this within lr_op_budget's `same` budget (lr_same_compare). At F32 (and F64) these
 * are the _f32 ops. */
/* y (T, H) rounded once. */
void lr_ref_rms_norm_emulated(float *y, const float *x, const float *w, int64_t T, int64_t H, double eps,
                              lr_dtype dt);
/* y (T, H) rounded once; residual (T, H) stays float32 (the CUDA path keeps it so). */
void lr_ref_fused_add_rms_norm_emulated(float *y, float *residual, const float *x, const float *w, int64_t T,
                                        int64_t H, double eps, lr_dtype dt);
/* y (T, N) = x @ w^T rounded, then (b not NULL) + b rounded again: two roundings with a
 * bias, as the GEMM's output and then the bias add are stored. */
void lr_ref_linear_emulated(float *y, const float *x, const float *w, const float *b, int64_t T, int64_t N,
                            int64_t K, lr_dtype dt);
/* The rotated heads (the first nheads * hd columns of each row) rounded once; cos and sin
 * of the float64 angle rounded to float32. */
void lr_ref_rotary_embedding_emulated(float *x, int64_t ld, int64_t T, int64_t nheads, int64_t hd,
                                      const int64_t *positions, const double *inv_freq, float *scratch_hd,
                                      lr_dtype dt);
void lr_ref_silu_and_mul_emulated(float *out, const float *gu, int64_t T, int64_t NI, lr_dtype dt);
void lr_ref_silu_emulated(float *out, const float *gu, int64_t T, int64_t NI, lr_dtype dt);
/* One sequence as lr_ref_attention_f32, the context's nh * hd columns of each row rounded
 * once; rounds_p: P rounded to dt per tile of LR_ATTN_P_TILE keys before P V, as a kernel
 * that rounds P does (lr_attention_rounds_p says which do). */
void lr_ref_attention_emulated(float *ctx, int64_t ldc, const float *q, int64_t ldq, const float *k,
                               const float *v, int64_t ldkv, int64_t n, int64_t past, int64_t nh, int64_t nkv,
                               int64_t hd, bool rounds_p, lr_dtype dt, float *scores);

/* ---- Op budgets -------------------------------------------------------------------------
 * The ops (and kernel families) a budget is kept for: X(name, stage kind its per-token
 * and per-element factors are read from, exact). An exact op (a copy, a conversion) must
 * equal its reference bit for bit; no budget applies. */
#define LR_OP_BUDGET_MAP(X)                                                                \
    X("embedding", LR_STAGE_EMBEDDING, true)                                               \
    X("rms_norm", LR_STAGE_NORM, false)                                                    \
    X("fused_add_rms_norm", LR_STAGE_NORM, false)                                          \
    X("rmsnorm", LR_STAGE_NORM, false) /* the family: rms_norm's */                        \
    X("rotary", LR_STAGE_ATTENTION, false) /* judged where the model sees it: o_proj.input */ \
    X("silu_and_mul", LR_STAGE_ACTIVATION, false)                                          \
    X("silu", LR_STAGE_ACTIVATION, false)                                                  \
    X("activation", LR_STAGE_ACTIVATION, false)                                            \
    X("reshape_and_cache", LR_STAGE_ATTENTION, true)                                       \
    X("cache", LR_STAGE_ATTENTION, true)                                                   \
    X("attention", LR_STAGE_ATTENTION, false)                                              \
    X("sum", LR_STAGE_BLOCK, false) /* the single-GPU all-reduce */                        \
    X("linear", LR_STAGE_PROJECTION, false) /* reduction: K */                             \
    X("add_bias", LR_STAGE_PROJECTION, false)                                              \
    X("add_residual", LR_STAGE_LAYER, false)                                               \
    X("convert", LR_STAGE_UNKNOWN, true)

/* What an op's output is held to at one dtype. */
typedef struct {
    bool exact;         /* must equal the reference bit for bit (the rest is unused) */
    lr_stage_kind kind; /* the stage kind whose factors the criteria take */
    /* Against the float64 reference (lr_compare_stage, lr_metrics_failures(m, f64.rel_l2)):
     * relative L2 = unit roundoff x factor (F32 2^-24 x 128, F16 2^-11 x 8, BF16 2^-8 x 8),
     * the worst token and every element at lr_stage_criteria's multiples of it. */
    lr_criteria f64;
    /* At F16 and BF16: against the emulated reference (lr_same_compare), in ulps, for the
     * op's longest float32 reduction. has_same false at F32. */
    bool has_same;
    lr_same_budget same;
} lr_op_criteria;

/* The criteria of op (a name of LR_OP_BUDGET_MAP) at dt (F32, F16, BF16), whose longest
 * float32 reduction has reduction_len terms (1: none; RMSNorm: H; a sum: its parts;
 * attention: the larger of head_dim and the keys). LR_OK, or LR_E_INVAL naming the ops
 * or dtypes. */
int lr_op_budget(const char *op, lr_dtype dt, int64_t reduction_len, lr_op_criteria *out);

/* Attention's, finer: a kernel that rounds P to the dtype before P V (rounds_p:
 * lr_attention_rounds_p) rounds twice and gets P's flips as well, x_range the largest
 * |score * scale * log2 e| of the case (LR_SAME_P_RANGE when unknown). */
int lr_op_attention_budget(lr_dtype dt, int64_t head_dim, int64_t keys, bool rounds_p, double x_range,
                           lr_op_criteria *out);

/* The relative-L2 budget against float64 alone (0 for a dtype without one). */
double lr_op_rel_l2_budget(lr_dtype dt);

#ifdef __cplusplus
}
#endif
#endif
