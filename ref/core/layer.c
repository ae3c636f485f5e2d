/* layer.c: LlamaDecoderLayer as one table of steps, and the composer that runs the
 * model over a backend's ops (layer.h). Both backends, CPU reference and CUDA, run
 * exactly this sequence; what differs is only how each op is computed. */
#include "layer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EMIT(s, b, g) {LR_LS_##s, LR_BUF_##b, LR_GATHER_##g}
#define NONE LR_NO_WEIGHT

/* vLLM's LlamaDecoderLayer with the (hidden_states, residual) convention: each norm
 * folds the block output into the residual stream first (the first one starts it). */
const lr_layer_step lr_layer_steps[] = {
    {"input_layernorm", LR_OP_NORM, LR_BUF_HIDDEN, LR_BUF_NORMED, LR_LW_INPUT_LAYERNORM, NONE,
     LR_BIAS_EVERY_RANK, LR_PROF_RMS_NORM, {EMIT(INPUT_LAYERNORM, NORMED, REPLICATED)}, 1, {{0}}, 0},
    /* LlamaAttention */
    {"qkv_proj", LR_OP_LINEAR, LR_BUF_NORMED, LR_BUF_QKV, LR_LW_QKV_W, LR_LW_QKV_B, LR_BIAS_EVERY_RANK,
     LR_PROF_QKV_PROJ, {EMIT(Q_PROJ, QKV, Q), EMIT(K_PROJ, QKV, K), EMIT(V_PROJ, QKV, V)}, 3,
     {EMIT(INPUT_LAYERNORM, NORMED, REPLICATED)}, 1},
    {"rotary_emb", LR_OP_ROTARY, LR_BUF_QKV, LR_BUF_QKV, NONE, NONE, LR_BIAS_EVERY_RANK, LR_PROF_ROTARY, {{0}}, 0,
     {EMIT(Q_PROJ, QKV, Q), EMIT(K_PROJ, QKV, K), EMIT(V_PROJ, QKV, V)}, 3},
    {"attn", LR_OP_ATTENTION, LR_BUF_QKV, LR_BUF_CTX, NONE, NONE, LR_BIAS_EVERY_RANK, LR_PROF_ATTENTION,
     {EMIT(O_PROJ_INPUT, CTX, Q)}, 1, {{0}}, 0},
    {"o_proj", LR_OP_LINEAR, LR_BUF_CTX, LR_BUF_PART, LR_LW_O_W, LR_LW_O_B, LR_BIAS_RANK0, LR_PROF_O_PROJ, {{0}}, 0,
     {EMIT(O_PROJ_INPUT, CTX, Q)}, 1},
    {"o_proj all-reduce", LR_OP_ALL_REDUCE, LR_BUF_PART, LR_BUF_HIDDEN, NONE, NONE, LR_BIAS_EVERY_RANK,
     LR_PROF_ALL_REDUCE, {EMIT(O_PROJ, HIDDEN, REPLICATED), EMIT(SELF_ATTN, HIDDEN, REPLICATED)}, 2, {{0}}, 0},
    {"post_attention_layernorm", LR_OP_NORM, LR_BUF_HIDDEN, LR_BUF_NORMED, LR_LW_POST_ATTENTION_LAYERNORM, NONE,
     LR_BIAS_EVERY_RANK, LR_PROF_RMS_NORM, {EMIT(POST_ATTENTION_LAYERNORM, NORMED, REPLICATED)}, 1,
     {EMIT(SELF_ATTN, HIDDEN, REPLICATED)}, 1},
    /* LlamaMLP */
    {"gate_up_proj", LR_OP_LINEAR, LR_BUF_NORMED, LR_BUF_GATE_UP, LR_LW_GATE_UP_W, LR_LW_GATE_UP_B,
     LR_BIAS_EVERY_RANK, LR_PROF_GATE_UP_PROJ, {EMIT(GATE_PROJ, GATE_UP, GATE), EMIT(UP_PROJ, GATE_UP, UP)}, 2,
     {EMIT(POST_ATTENTION_LAYERNORM, NORMED, REPLICATED)}, 1},
    {"act_fn", LR_OP_ACT_FN, LR_BUF_GATE_UP, LR_BUF_ACT, NONE, NONE, LR_BIAS_EVERY_RANK, LR_PROF_NONE,
     {EMIT(ACT_FN, ACT, INTERMEDIATE)}, 1, {EMIT(GATE_PROJ, GATE_UP, GATE), EMIT(UP_PROJ, GATE_UP, UP)}, 2},
    {"silu_and_mul", LR_OP_ACTIVATION, LR_BUF_GATE_UP, LR_BUF_ACT, NONE, NONE, LR_BIAS_EVERY_RANK,
     LR_PROF_SILU_AND_MUL, {EMIT(DOWN_PROJ_INPUT, ACT, INTERMEDIATE)}, 1,
     {EMIT(GATE_PROJ, GATE_UP, GATE), EMIT(UP_PROJ, GATE_UP, UP)}, 2},
    {"down_proj", LR_OP_LINEAR, LR_BUF_ACT, LR_BUF_PART, LR_LW_DOWN_W, LR_LW_DOWN_B, LR_BIAS_RANK0,
     LR_PROF_DOWN_PROJ, {{0}}, 0, {EMIT(DOWN_PROJ_INPUT, ACT, INTERMEDIATE)}, 1},
    {"down_proj all-reduce", LR_OP_ALL_REDUCE, LR_BUF_PART, LR_BUF_HIDDEN, NONE, NONE, LR_BIAS_EVERY_RANK,
     LR_PROF_ALL_REDUCE, {EMIT(DOWN_PROJ, HIDDEN, REPLICATED), EMIT(MLP, HIDDEN, REPLICATED)}, 2, {{0}}, 0},
    /* The residual stream after the layer, as Hugging Face reports it. */
    {"residual", LR_OP_RESIDUAL_SUM, LR_BUF_HIDDEN, LR_BUF_SUM, NONE, NONE, LR_BIAS_EVERY_RANK, LR_PROF_NONE,
     {EMIT(LAYER, SUM, REPLICATED)}, 1, {{0}}, 0},
};
const size_t lr_num_layer_steps = sizeof lr_layer_steps / sizeof lr_layer_steps[0];

#undef EMIT
#undef NONE

int64_t lr_compose_widest(const lr_config *c) {
    int64_t w = c->hidden_size;
    int64_t d[] = {c->intermediate_size, c->num_attention_heads * c->head_dim, c->num_key_value_heads * c->head_dim};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) w = d[i] > w ? d[i] : w;
    return w;
}

/* One forward's state: what the composer tracks between steps. */
typedef struct {
    const lr_composer *c;
    const lr_layer_ops *ops;
    void *be;
    int64_t T;
    const lr_observer *obs; /* NULL unless on_stage is set */
    const lr_observer *inject;
    bool isolate_ops;   /* op-level isolation: every op's input from inject */
    bool residual_live; /* the residual stream has started: norms add into it */
    char *host;         /* (T, widest) in obs_dtype, observers only */
    int64_t *fault_at;  /* (num_faults): lr_stage_order of each fault's stage */
    double *inv_freq;   /* (head_dim / 2): a theta fault's RoPE frequencies, with one */
    bool act_done;      /* the layer's activation ran with gate_up_proj (linear_activation) */
    bool qkv_held;      /* qkv_proj waits for the attention step (linear_rotary_attention) */
    bool norm_held;     /* the norm waits for the fused slot after it (hold_norm): held */
    lr_held_norm held;
    lr_buf qkv_in;      /* ... its input, weight and bias */
    int qkv_w, qkv_b;
} pass;

/* Whether a fused slot may take ops whose intermediate buffer nothing else sees: no
 * observer, no fault (any: the composer does not sort them by stage), no op-level
 * isolation (which writes every op's input). */
static bool may_fuse(const pass *p) { return !p->obs && !p->isolate_ops && !p->fault_at; }

static void mark(const pass *p, int prof) {
    if (p->ops->prof_mark) p->ops->prof_mark(p->be, prof);
}

/* Row stride of a buffer, and where rank r's block of a gathered stage is: source
 * column, width, destination column in the whole tensor. */
static int64_t buf_ld(const lr_composer *c, lr_buf b) {
    const lr_tp_layout *L = &c->layouts[0];
    switch (b) {
    case LR_BUF_QKV: return L->q_size + 2 * L->kv_size;
    case LR_BUF_CTX: return L->q_size;
    case LR_BUF_GATE_UP: return 2 * L->intermediate;
    case LR_BUF_ACT: return L->intermediate;
    default: return c->cfg->hidden_size;
    }
}

static void block_of(const lr_composer *c, lr_gather g, int r, int64_t *src, int64_t *cols, int64_t *dst) {
    const lr_tp_layout *L = &c->layouts[r];
    int64_t hd = c->cfg->head_dim;
    *src = 0;
    switch (g) {
    case LR_GATHER_Q: *cols = L->q_size, *dst = r * L->q_size; break;
    case LR_GATHER_K: *src = L->q_size, *cols = L->kv_size, *dst = L->kv_head_start * hd; break;
    case LR_GATHER_V: *src = L->q_size + L->kv_size, *cols = L->kv_size, *dst = L->kv_head_start * hd; break;
    case LR_GATHER_UP: *src = L->intermediate; /* fall through */
    case LR_GATHER_GATE:
    case LR_GATHER_INTERMEDIATE: *cols = L->intermediate, *dst = r * L->intermediate; break;
    default: *cols = c->cfg->hidden_size, *dst = 0; break;
    }
}

/* Reports a stage: a replicated buffer as it is, a column-parallel one gathered. */
static int emit(const pass *p, const char *name, lr_stage_width_unit width, lr_buf b, lr_gather g) {
    const lr_composer *c = p->c;
    int64_t N = lr_width_of(c->cfg, width), ld = buf_ld(c, b), src, cols, dst;
    size_t es = lr_dtype_size(p->ops->obs_dtype);
    int rc = LR_OK;
    for (int r = 0; rc == LR_OK && r < (g == LR_GATHER_REPLICATED ? 1 : c->tp); r++) {
        block_of(c, g, r, &src, &cols, &dst);
        rc = p->ops->read(p->be, b, r, ld, src, cols, p->host + (size_t)dst * es, N);
    }
    if (rc) return rc;
    lr_tensor t = {.dtype = p->ops->obs_dtype, .ndim = 2, .shape = {p->T, N}, .data = p->host};
    p->obs->on_stage(p->obs->user, name, &t);
    mark(p, LR_PROF_NONE);
    return LR_OK;
}

static int emit_layer_stage(const pass *p, int64_t l, const lr_layer_emit *e) {
    char name[96];
    return emit(p, lr_layer_stage_name(name, sizeof name, l, e->stage), lr_layer_stage_width(e->stage), e->buf,
                e->gather);
}

/* Applies the faults at stage order `at` (the stage's buffer, gathered as it is
 * reported) before anything reads it. */
static int inject_faults(const pass *p, int64_t at, lr_stage_width_unit width, lr_buf b, lr_gather g) {
    const lr_composer *c = p->c;
    int64_t N = lr_width_of(c->cfg, width), ld = buf_ld(c, b), src, cols, dst;
    for (size_t k = 0; k < c->num_faults; k++) {
        if (p->fault_at[k] != at || lr_fault_is_structural(c->faults[k].kind)) continue;
        /* Replicated kv heads: every replica's copy gets the same factors (the factor
         * depends on the stage's feature, not on the rank). */
        for (int r = 0; r < (g == LR_GATHER_REPLICATED ? 1 : c->tp); r++) {
            block_of(c, g, r, &src, &cols, &dst);
            int rc = p->ops->perturb(p->be, b, r, ld, src, cols, dst, N, &c->faults[k]);
            if (rc) return rc;
        }
    }
    return LR_OK;
}

/* What the structural faults at stage order `at` change in the op that computes it
 * (fault.c defines each; the op only obeys). */
static void mods_at(const pass *p, int64_t at, lr_op_mods *m) {
    const lr_composer *c = p->c;
    *m = (lr_op_mods){.rms_eps = c->cfg->rms_norm_eps};
    for (size_t k = 0; p->fault_at && k < c->num_faults; k++) {
        const lr_fault *f = &c->faults[k];
        if (p->fault_at[k] != at) continue;
        switch (f->kind) {
        case LR_FAULT_RMS_EPS: m->rms_eps = lr_fault_rms_eps(f, c->cfg->rms_norm_eps); break;
        case LR_FAULT_THETA:
            lr_fault_inv_freq(f, c->cfg, p->inv_freq);
            m->inv_freq = p->inv_freq;
            break;
        case LR_FAULT_MASK: m->mask_shift = (int)f->eps; break;
        case LR_FAULT_STALE_KV: m->stale_back = (int64_t)f->eps; break;
        default: break;
        }
    }
}

/* swap_heads at stage order `at` (attention's output, CTX gathered as o_proj.input): the
 * columns of query heads h and h + 1 exchanged, through the backend's read and write,
 * which are exact (obs_dtype holds every buffer's dtype), on whichever ranks hold them. */
static int swap_heads(const pass *p, int64_t at) {
    const lr_composer *c = p->c;
    int64_t N = lr_width_of(c->cfg, LR_WIDTH_Q), hd = c->cfg->head_dim, ld = buf_ld(c, LR_BUF_CTX), src, cols, dst;
    size_t es = lr_dtype_size(p->ops->obs_dtype);
    for (size_t k = 0; k < c->num_faults; k++) {
        if (p->fault_at[k] != at || c->faults[k].kind != LR_FAULT_SWAP_HEADS) continue;
        char *rows = malloc((size_t)(p->T * N) * es);
        if (!rows) return lr_fail(LR_E_NOMEM, "forward: out of memory");
        int rc = LR_OK;
        for (int r = 0; rc == LR_OK && r < c->tp; r++) {
            block_of(c, LR_GATHER_Q, r, &src, &cols, &dst);
            rc = p->ops->read(p->be, LR_BUF_CTX, r, ld, src, cols, rows + (size_t)dst * es, N);
        }
        size_t a = (size_t)((int64_t)c->faults[k].eps * hd) * es, n = (size_t)hd * es;
        char tmp[4096];
        for (int64_t t = 0; rc == LR_OK && t < p->T; t++) {
            char *row = rows + (size_t)(t * N) * es;
            for (size_t o = 0; o < n; o += sizeof tmp) {
                size_t m = n - o < sizeof tmp ? n - o : sizeof tmp;
                memcpy(tmp, row + a + o, m);
                memcpy(row + a + o, row + a + n + o, m);
                memcpy(row + a + n + o, tmp, m);
            }
        }
        lr_tensor t = {.dtype = p->ops->obs_dtype, .ndim = 2, .shape = {p->T, N}, .data = rows};
        for (int r = 0; rc == LR_OK && r < c->tp; r++) {
            block_of(c, LR_GATHER_Q, r, &src, &cols, &dst);
            rc = p->ops->write(p->be, LR_BUF_CTX, r, ld, src, cols, &t, dst);
        }
        free(rows);
        if (rc) return rc;
    }
    return LR_OK;
}

/* The name of the stream entering layer l: the embedding, or the layer before's output. */
static char *stream_name(char *name, size_t n, int64_t l) {
    if (l == 0)
        snprintf(name, n, "%s", lr_model_stage_name(LR_MS_EMBED_TOKENS));
    else
        lr_layer_stage_name(name, n, l - 1, LR_LS_LAYER);
    return name;
}

/* Layer isolation: the residual stream entering layer l (l = L: the final norm) as the
 * caller supplies it, if it does. */
static int inject_stream(pass *p, int64_t l) {
    char name[96];
    const lr_tensor *t = p->inject->inject(p->inject->user, stream_name(name, sizeof name, l));
    if (!t || lr_tensor_numel(t) != p->T * p->c->cfg->hidden_size) return LR_OK;
    int rc = p->ops->load_stream(p->be, l == 0, t);
    p->residual_live = l > 0;
    mark(p, LR_PROF_NONE);
    return rc;
}

/* Op-level isolation: a step's input stage s of layer l, scattered to each rank's block
 * of its buffer as it is gathered when reported. Absent: the op runs on its own input. */
static int load_input(const pass *p, int64_t l, const lr_layer_emit *in) {
    const lr_composer *c = p->c;
    char name[96];
    const lr_tensor *t = p->inject->inject(p->inject->user, lr_layer_stage_name(name, sizeof name, l, in->stage));
    int64_t N = lr_width_of(c->cfg, lr_layer_stage_width(in->stage)), ld = buf_ld(c, in->buf), src, cols, dst;
    if (!t || t->ndim != 2 || t->shape[0] != p->T || t->shape[1] != N) return LR_OK;
    for (int r = 0; r < (in->gather == LR_GATHER_REPLICATED ? 1 : c->tp); r++) {
        block_of(c, in->gather, r, &src, &cols, &dst);
        int rc = p->ops->write(p->be, in->buf, r, ld, src, cols, t, dst);
        if (rc) return rc;
    }
    return LR_OK;
}

/* Op-level isolation before step s of layer l: its input stages; the post-attention
 * norm also gets the stream entering the layer as its residual (self_attn, its hidden,
 * is one of its inputs). */
static int isolate_step(pass *p, const lr_layer_step *s, int64_t l) {
    if (s->op == LR_OP_NORM && l >= 0 && s->num_inputs) {
        /* The stream and the block output go together: loading the stream clears HIDDEN,
         * so without the block output (a fixture without sub-stages) neither is loaded. */
        char name[96];
        const lr_tensor *t = p->inject->inject(p->inject->user, stream_name(name, sizeof name, l));
        const lr_tensor *h =
            p->inject->inject(p->inject->user, lr_layer_stage_name(name, sizeof name, l, s->inputs[0].stage));
        int64_t n = p->T * p->c->cfg->hidden_size;
        if (!h || lr_tensor_numel(h) != n) return LR_OK;
        if (t && lr_tensor_numel(t) == n) {
            int rc = p->ops->load_stream(p->be, false, t);
            if (rc) return rc;
            p->residual_live = true;
        }
    }
    for (int k = 0; k < s->num_inputs; k++) {
        int rc = load_input(p, l, &s->inputs[k]);
        if (rc) return rc;
    }
    mark(p, LR_PROF_NONE);
    return LR_OK;
}

#define TRY(call)                                                                          \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_) return rc_;                                                               \
    } while (0)

/* Whether the norm step s feeds a fused slot that takes it (hold_norm): the next step is
 * qkv_proj or gate_up_proj, run through its slot. */
static bool norm_holds(const pass *p, const lr_layer_step *s) {
    const lr_layer_ops *ops = p->ops;
    if (!ops->hold_norm || !may_fuse(p) || s + 1 >= lr_layer_steps + lr_num_layer_steps) return false;
    const lr_layer_step *n = s + 1;
    return n->op == LR_OP_LINEAR && n->in == LR_BUF_NORMED &&
           ((n->out == LR_BUF_QKV && ops->linear_rotary_attention) ||
            (n->out == LR_BUF_GATE_UP && ops->linear_activation));
}

static int run_step(pass *p, const lr_layer_step *s, int64_t l, const lr_layer_index *ix) {
    const lr_composer *c = p->c;
    const lr_layer_ops *ops = p->ops;
    int w = s->weight == LR_NO_WEIGHT ? LR_NO_WEIGHT : ix->at[s->weight];
    int b = s->bias == LR_NO_WEIGHT ? LR_NO_WEIGHT : ix->at[s->bias];
    int prof = s->prof;
    bool observer_only = s->op == LR_OP_ACT_FN || s->op == LR_OP_RESIDUAL_SUM;
    if (observer_only && !p->obs) return LR_OK;
    if (p->isolate_ops) TRY(isolate_step(p, s, l));
    /* Structural faults name the stage the op computes: a norm's own; RoPE's and
     * attention's, observed together, is attention's output. */
    int64_t at = 1 + l * LR_LAYER_STAGE_COUNT +
                 (s->op == LR_OP_NORM ? (int64_t)s->emits[0].stage : (int64_t)LR_LS_O_PROJ_INPUT);
    lr_op_mods mods;
    mods_at(p, at, &mods);
    switch (s->op) {
    case LR_OP_NORM:
        if (norm_holds(p, s)) { /* run by the slot after it */
            p->norm_held = true, p->held = (lr_held_norm){w, p->residual_live, mods};
            prof = LR_PROF_NONE;
        } else {
            TRY(ops->rms_norm(p->be, w, p->residual_live, &mods));
        }
        p->residual_live = true;
        break;
    case LR_OP_LINEAR: {
        /* gate_up_proj and the activation in one call, where the backend has the slot and
         * nothing looks at GATE_UP in between. */
        if (s->out == LR_BUF_GATE_UP && ops->linear_activation && may_fuse(p)) {
            for (int r = 0; r < c->tp; r++)
                TRY(ops->linear_activation(p->be, r, s->in, w, b, p->norm_held ? &p->held : NULL));
            p->act_done = true, p->norm_held = false;
            break;
        }
        /* qkv_proj held for the attention step, where RoPE and attention join it. */
        if (s->out == LR_BUF_QKV && ops->linear_rotary_attention && may_fuse(p)) {
            p->qkv_held = true, p->qkv_in = s->in, p->qkv_w = w, p->qkv_b = b;
            prof = LR_PROF_NONE;
            break;
        }
        /* A row-parallel output at tp 1 is the result itself: no all-reduce to wait for. */
        lr_buf out = s->out == LR_BUF_PART && c->tp == 1 ? LR_BUF_HIDDEN : s->out;
        for (int r = 0; r < c->tp; r++)
            TRY(ops->linear(p->be, r, out, s->in, w, s->bias_rule == LR_BIAS_RANK0 && r > 0 ? LR_NO_WEIGHT : b));
        break;
    }
    case LR_OP_ROTARY:
        /* Fused with the attention that follows when the backend has the slot. */
        if (ops->rotary_attention || p->qkv_held) return LR_OK;
        for (int r = 0; r < c->tp; r++) TRY(ops->rotary(p->be, r, &mods));
        break;
    case LR_OP_ATTENTION:
        for (int r = 0; r < c->tp; r++)
            TRY(p->qkv_held ? ops->linear_rotary_attention(p->be, r, l, p->qkv_in, p->qkv_w, p->qkv_b, &mods,
                                                           p->norm_held ? &p->held : NULL)
                : ops->rotary_attention ? ops->rotary_attention(p->be, r, l, &mods)
                                        : ops->attention(p->be, r, l, &mods));
        p->qkv_held = false, p->norm_held = false;
        if (p->fault_at) TRY(swap_heads(p, at));
        break;
    case LR_OP_ACTIVATION:
    case LR_OP_ACT_FN:
        if (s->op == LR_OP_ACTIVATION && p->act_done) { /* computed with gate_up_proj */
            p->act_done = false;
            prof = LR_PROF_NONE;
            break;
        }
        for (int r = 0; r < c->tp; r++) TRY(ops->activation(p->be, r, s->op == LR_OP_ACTIVATION));
        break;
    case LR_OP_ALL_REDUCE:
        if (c->tp > 1) TRY(ops->all_reduce(p->be));
        else prof = LR_PROF_NONE; /* at tp 1 the partial sum is the result: nothing ran */
        break;
    case LR_OP_RESIDUAL_SUM:
        TRY(ops->residual_sum(p->be));
        break;
    }
    mark(p, prof);
    for (int k = 0; p->fault_at && k < s->num_emits; k++) {
        const lr_layer_emit *e = &s->emits[k];
        TRY(inject_faults(p, 1 + l * LR_LAYER_STAGE_COUNT + e->stage, lr_layer_stage_width(e->stage), e->buf,
                          e->gather));
    }
    for (int k = 0; p->obs && k < s->num_emits; k++) TRY(emit_layer_stage(p, l, &s->emits[k]));
    return LR_OK;
}

static int forward(pass *p) {
    const lr_composer *c = p->c;
    const lr_config *cfg = c->cfg;
    const lr_layer_ops *ops = p->ops;
    int embed = lr_plan_model(c->plan, LR_MW_EMBED), norm = lr_plan_model(c->plan, LR_MW_NORM);

    /* VocabParallelEmbedding: masked lookups per shard, then the all-reduce. */
    lr_buf out = c->tp == 1 ? LR_BUF_HIDDEN : LR_BUF_PART;
    for (int r = 0; r < c->tp; r++) TRY(ops->embedding(p->be, r, out, embed));
    mark(p, LR_PROF_EMBEDDING);
    if (c->tp > 1) {
        TRY(ops->all_reduce(p->be));
        mark(p, LR_PROF_ALL_REDUCE);
    }
    if (p->fault_at) TRY(inject_faults(p, 0, LR_WIDTH_HIDDEN, LR_BUF_HIDDEN, LR_GATHER_REPLICATED));
    if (p->obs)
        TRY(emit(p, lr_model_stage_name(LR_MS_EMBED_TOKENS), LR_WIDTH_HIDDEN, LR_BUF_HIDDEN, LR_GATHER_REPLICATED));

    for (int64_t l = 0; l <= cfg->num_hidden_layers; l++) {
        if (p->inject) TRY(inject_stream(p, l));
        if (l == cfg->num_hidden_layers) break;
        const lr_layer_index *ix = lr_plan_layer(c->plan, l);
        for (size_t k = 0; k < lr_num_layer_steps; k++) TRY(run_step(p, &lr_layer_steps[k], l, ix));
    }

    lr_op_mods mods;
    mods_at(p, lr_stage_order(lr_model_stage_name(LR_MS_NORM)), &mods);
    TRY(ops->rms_norm(p->be, norm, p->residual_live, &mods));
    mark(p, LR_PROF_RMS_NORM);
    if (p->fault_at)
        TRY(inject_faults(p, lr_stage_order(lr_model_stage_name(LR_MS_NORM)), LR_WIDTH_HIDDEN, LR_BUF_NORMED,
                          LR_GATHER_REPLICATED));
    if (p->obs) TRY(emit(p, lr_model_stage_name(LR_MS_NORM), LR_WIDTH_HIDDEN, LR_BUF_NORMED, LR_GATHER_REPLICATED));
    return LR_OK;
}

#undef TRY

int lr_compose_forward(const lr_composer *c, void *be, int64_t T, const lr_observer *obs) {
    pass p = {.c = c, .ops = c->ops, .be = be, .T = T};
    p.obs = obs && obs->on_stage ? obs : NULL;
    p.inject = obs && obs->inject ? obs : NULL;
    p.isolate_ops = p.inject && obs->isolation == LR_ISOLATE_OP;
    if (p.obs) {
        size_t n = (size_t)(T * lr_compose_widest(c->cfg)) * lr_dtype_size(c->ops->obs_dtype);
        if (!(p.host = malloc(n ? n : 1)))
            return lr_fail(LR_E_NOMEM, "forward: cannot allocate %zu bytes for observed stages", n);
    }
    if (c->num_faults) {
        int64_t half = c->cfg->head_dim / 2;
        if (!(p.fault_at = malloc(c->num_faults * sizeof *p.fault_at)) ||
            !(p.inv_freq = malloc((size_t)(half > 0 ? half : 1) * sizeof *p.inv_freq))) {
            free(p.host);
            free(p.fault_at);
            return lr_fail(LR_E_NOMEM, "forward: out of memory");
        }
        for (size_t k = 0; k < c->num_faults; k++) p.fault_at[k] = lr_stage_order(c->faults[k].stage);
    }
    int rc = forward(&p);
    free(p.host);
    free(p.fault_at);
    free(p.inv_freq);
    return rc;
}
