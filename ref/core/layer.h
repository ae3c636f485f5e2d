/* layer.h: the decoder layer as data, and the one composer that runs it for every
 * backend. The step table (layer.c) lists LlamaDecoderLayer's steps in the spec's order:
 * the op, its input and output buffers, its weights, where its bias applies, the
 * profiling kind it is charged to, and the stages it reports. The composer walks it and
 * owns what every backend shares: rank loops, all-reduce points, the residual stream's
 * state, stage names and the column gathers for observers, profiling marks, and the
 * stream override that layer isolation uses. A backend supplies ops (lr_layer_ops) over
 * buffers the composer names (lr_buf); it never spells a stage name. */
#ifndef LLAMAREF_LAYER_H
#define LLAMAREF_LAYER_H

#include "internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Activations the composer names. Replicated ones exist once per device (every rank
 * sees the same values); per-rank ones once per rank. */
typedef enum {
    LR_BUF_HIDDEN,   /* (T, H) replicated: a block's output, the all-reduce's result */
    LR_BUF_RESIDUAL, /* (T, H) replicated: the residual stream (in whatever dtype the backend keeps it) */
    LR_BUF_NORMED,   /* (T, H) replicated: a norm's output */
    LR_BUF_SUM,      /* (T, H) replicated, observers only: hidden + residual (model.layers.{i}) */
    LR_BUF_QKV,      /* (T, q_r + 2 kv_r) per rank: packed q, k, v */
    LR_BUF_CTX,      /* (T, q_r) per rank: attention's output */
    LR_BUF_PART,     /* (T, H) per rank: a row-parallel partial sum (at tp 1 the composer writes HIDDEN) */
    LR_BUF_GATE_UP,  /* (T, 2 I_r) per rank: packed gate, up */
    LR_BUF_ACT,      /* (T, I_r) per rank: silu(gate) * up, or silu(gate) for observers */
    LR_BUF_COUNT
} lr_buf;

typedef enum {
    LR_OP_NORM,         /* NORMED = rms_norm(RESIDUAL (+)= HIDDEN) * weight (replicated) */
    LR_OP_LINEAR,       /* out = in @ weight^T (+ bias) (per rank) */
    LR_OP_ROTARY,       /* RoPE in place on the q and k heads of QKV (per rank) */
    LR_OP_ATTENTION,    /* QKV's k, v into the KV cache; causal attention -> CTX (per rank) */
    LR_OP_ACTIVATION,   /* ACT = silu(gate) * up of GATE_UP (per rank) */
    LR_OP_ALL_REDUCE,   /* HIDDEN = sum over ranks of PART (nothing at tp 1) */
    LR_OP_ACT_FN,       /* observers only: ACT = silu(gate) (mlp.act_fn) */
    LR_OP_RESIDUAL_SUM  /* observers only: SUM = HIDDEN + RESIDUAL */
} lr_op;

/* Where a linear's bias applies: on every rank (column-parallel: each rank's own block),
 * or once, on rank 0 (row-parallel: the partial sums are all-reduced). */
typedef enum { LR_BIAS_EVERY_RANK, LR_BIAS_RANK0 } lr_bias_rule;

/* How a stage is assembled from the ranks: a replicated buffer as it is, or each rank's
 * block of columns gathered into the whole tensor. */
typedef enum {
    LR_GATHER_REPLICATED,
    LR_GATHER_Q,            /* the rank's q heads (QKV's first block, or CTX) */
    LR_GATHER_K,            /* the rank's kv heads, QKV's second block */
    LR_GATHER_V,            /* QKV's third block */
    LR_GATHER_GATE,         /* the rank's intermediate block of GATE_UP's first half */
    LR_GATHER_UP,           /* ... its second half */
    LR_GATHER_INTERMEDIATE  /* the rank's intermediate block (ACT) */
} lr_gather;

typedef struct {
    lr_layer_stage stage;
    lr_buf buf;
    lr_gather gather;
} lr_layer_emit;

#define LR_STEP_MAX_EMITS 3
#define LR_NO_WEIGHT (-1)

/* One step of the layer. */
typedef struct {
    const char *name; /* vLLM's module: "qkv_proj", "rotary_emb", ... */
    lr_op op;
    lr_buf in, out;   /* for LINEAR */
    int weight, bias; /* lr_layer_weight, or LR_NO_WEIGHT */
    lr_bias_rule bias_rule;
    int prof;         /* lr_prof_op charged, or LR_PROF_NONE */
    lr_layer_emit emits[LR_STEP_MAX_EMITS]; /* reported after the step, in order */
    int num_emits;
    /* Op-level isolation: the stages that feed the step, loaded into their buffers before
     * it (the norms' residual stream is the composer's, not listed here). */
    lr_layer_emit inputs[LR_STEP_MAX_EMITS];
    int num_inputs;
} lr_layer_step;

#define LR_PROF_NONE (-1)

/* The decoder layer's steps in order, and how many. */
extern const lr_layer_step lr_layer_steps[];
extern const size_t lr_num_layer_steps;

/* What structural faults (docs/detection.md) change in how an op computes: the composer
 * fills it from the faults at the stage the op computes, through fault.c's one
 * definition of each (lr_fault_rms_eps, lr_fault_inv_freq, lr_causal_keys,
 * lr_stale_kv_source); a backend only obeys it. Without a fault: the model's eps, NULL,
 * 0 and 0. */
typedef struct {
    double rms_eps;         /* norm: the epsilon to use */
    const double *inv_freq; /* rotary: (head_dim / 2) RoPE frequencies, host memory, in place
                             * of the model's; NULL: the model's */
    int mask_shift;         /* attention: new token j of a sequence sees
                             * lr_causal_keys(past, j, len, mask_shift) keys */
    int64_t stale_back;     /* attention: 0, or once the batch's keys and values are cached,
                             * each new token's entry copied, in token order, from position
                             * lr_stale_kv_source(past, j, stale_back) where that is >= 0 */
} lr_op_mods;

/* A layer's norm held by the composer for the fused slot after it (lr_layer_ops.hold_norm):
 * what rms_norm(weight, add, &mods) would have done, the slot's to do first. */
typedef struct {
    int weight;
    bool add;
    lr_op_mods mods;
} lr_held_norm;

/* The ops a backend supplies. be is the backend's state for the forward in progress
 * (it knows T, the batch, its buffers). Weights are plan indices (lr_plan_layer,
 * lr_plan_model), identical on every rank. Every op returns LR_OK or a status set with
 * lr_fail. Required unless marked optional. */
typedef struct {
    lr_dtype obs_dtype; /* the dtype read() writes for observers */
    /* rank r's shard of the vocabulary -> out (T, H) (zeros for other tokens) */
    int (*embedding)(void *be, int rank, lr_buf out, int weight);
    /* replicated, on every device: RESIDUAL = HIDDEN (add false: the stream starts) or
     * RESIDUAL += HIDDEN (add true); NORMED = rms_norm(RESIDUAL) * weight, with mods->rms_eps */
    int (*rms_norm)(void *be, int weight, bool add, const lr_op_mods *mods);
    /* out (T, N) = in (T, K) @ weight (N, K)^T (+ bias (N) unless LR_NO_WEIGHT) */
    int (*linear)(void *be, int rank, lr_buf out, lr_buf in, int weight, int bias);
    /* mods: inv_freq (rotary); mask_shift and stale_back (attention) */
    int (*rotary)(void *be, int rank, const lr_op_mods *mods);
    int (*attention)(void *be, int rank, int64_t layer, const lr_op_mods *mods);
    /* gated: ACT = silu(gate) * up; else ACT = silu(gate) (observers) */
    int (*activation)(void *be, int rank, bool gated);
    int (*all_reduce)(void *be);
    int (*residual_sum)(void *be);
    /* Observers: the (T, cols) block at column col of rank's buffer b (T, ld) (replicated
     * buffers: rank 0's device) -> dst (T, dst_ld) in obs_dtype, host memory. */
    int (*read)(void *be, lr_buf b, int rank, int64_t ld, int64_t col, int64_t cols, void *dst,
                int64_t dst_ld);
    /* Isolation: t (T, H), any float dtype, becomes HIDDEN (embedding true: the layer-0
     * input) or RESIDUAL with HIDDEN zeroed (the stream entering a later layer). */
    int (*load_stream)(void *be, bool embedding, const lr_tensor *t);
    /* Op-level isolation: columns src_col.. of t (T, N), any float dtype, into the (T, cols)
     * block at column col of rank's buffer b (T, ld), rounded to the buffer's dtype
     * (replicated buffers: on every device). */
    int (*write)(void *be, lr_buf b, int rank, int64_t ld, int64_t col, int64_t cols, const lr_tensor *t,
                 int64_t src_col);
    /* Fault injection: the (T, cols) block at column col of rank's buffer b (T, ld)
     * (replicated buffers: on every device) holds features dst_col.. of a stage of width
     * features; multiply each element by lr_fault_factor(f, token, feature, width), in
     * place, in the buffer's own dtype. */
    int (*perturb)(void *be, lr_buf b, int rank, int64_t ld, int64_t col, int64_t cols, int64_t dst_col,
                   int64_t width, const lr_fault *f);
    /* optional: the op just enqueued (or LR_PROF_NONE) ends here; NULL: no profiler */
    void (*prof_mark)(void *be, int prof);
    /* optional fused slot: rotary then attention in one call (NULL: the composer calls
     * the two ops in turn); a backend with a profiler marks LR_PROF_ROTARY itself where
     * its RoPE ends (the composer marks the attention after the call) */
    int (*rotary_attention)(void *be, int rank, int64_t layer, const lr_op_mods *mods);
    /* optional fused slot: the gated MLP's gate_up_proj (out (T, 2 I_r) = in @ weight^T
     * (+ bias)) then its activation (ACT = silu(gate) * up) in one call, GATE_UP left
     * unwritten; the composer calls it in place of the two only where nothing sees
     * GATE_UP (no observer, no fault, no op-level isolation) and charges the call to the
     * projection; NULL: the two ops in turn. norm: NULL, or the post-attention norm, held
     * (hold_norm) */
    int (*linear_activation)(void *be, int rank, lr_buf in, int weight, int bias, const lr_held_norm *norm);
    /* optional fused slot: qkv_proj (QKV = in @ weight^T (+ bias)), RoPE and attention in
     * one call, as linear then rotary and attention (or rotary_attention) do them; the
     * composer calls it at the attention step in place of the three where nothing sees QKV
     * between them (as linear_activation); a backend with a profiler marks
     * LR_PROF_QKV_PROJ itself where its projection ends (and LR_PROF_ROTARY where a RoPE of
     * its own ends), the composer marks the attention after the call; NULL: the ops in turn.
     * norm: NULL, or the input norm, held (hold_norm) */
    int (*linear_rotary_attention)(void *be, int rank, int64_t layer, lr_buf in, int weight, int bias,
                                   const lr_op_mods *mods, const lr_held_norm *norm);
    /* optional: the two fused slots above take the norm before them too. Where the composer
     * calls one of them in place of the ops (nothing sees NORMED either), it holds the norm
     * that feeds it, on every rank's call (in: NORMED), instead of calling rms_norm; the
     * backend does the norm first, as rms_norm would, and may leave NORMED unwritten. The
     * profile charges the norm to the projection. */
    bool hold_norm;
} lr_layer_ops;

/* What the composer needs of a model: its shape and sharding, and the plan's indices. */
typedef struct {
    const lr_layer_ops *ops;
    const lr_config *cfg;
    const lr_tp_layout *layouts; /* (tp) */
    int tp;
    const lr_plan *plan;         /* rank 0's; indices are the same on every rank */
    const lr_fault *faults;      /* (num_faults), checked (lr_fault_check); may be NULL */
    size_t num_faults;
} lr_composer;

/* LlamaModel.forward over T tokens: the embedding, every layer, the final norm (result
 * in NORMED). obs may be NULL; its on_stage and inject are each optional. */
int lr_compose_forward(const lr_composer *c, void *be, int64_t T, const lr_observer *obs);

/* Columns of the widest stage an observer can be given: the host buffer size / T. */
int64_t lr_compose_widest(const lr_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
