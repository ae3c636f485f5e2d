/* test_layer.c: the layer table and the composer (ref/core/layer.c) over a recording
 * backend: every stage in the table's order exactly once, rank loops and all-reduce
 * points, the bias rule, the residual stream's start, isolation, the optional fused
 * slot and the profiling marks. The real backends are checked against the goldens by
 * test_forward and test_gpu_forward; this checks the sequence they both run. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "internal.h"

#define MAX_CALLS 4096

/* One op call as the recording backend saw it. */
typedef struct {
    char op[16];
    int rank;
    lr_buf out, in;
    int weight, bias;
    bool flag;
} call;

typedef struct {
    call calls[MAX_CALLS];
    int n;
    char stages[512][96];
    int nstages;
    int prof_calls[LR_PROF_COUNT];
    bool fused;
    double stream[64]; /* what load_stream got */
    lr_op_mods mods[MAX_CALLS];              /* what each norm, rotary and attention call got */
    bool faulted_freq[MAX_CALLS];            /* a rotary call given frequencies of its own */
    double ctx_row0[64];                     /* row 0 of what write() put into CTX, by stage column */
    bool has_held[MAX_CALLS];                /* a fused slot's call given a held norm */
    lr_held_norm held[MAX_CALLS];            /* which */
} recorder;

static recorder *rec;

static int record(const char *op, int rank, lr_buf out, lr_buf in, int weight, int bias, bool flag) {
    ck_assert_int_lt(rec->n, MAX_CALLS);
    call *c = &rec->calls[rec->n++];
    snprintf(c->op, sizeof c->op, "%s", op);
    c->rank = rank, c->out = out, c->in = in, c->weight = weight, c->bias = bias, c->flag = flag;
    return LR_OK;
}

static int f_embedding(void *be, int r, lr_buf out, int w) { return (void)be, record("embedding", r, out, out, w, -1, 0); }
static int f_rms_norm(void *be, int w, bool add, const lr_op_mods *m) {
    rec->mods[rec->n] = *m;
    return (void)be, record("rms_norm", -1, 0, 0, w, -1, add);
}
static int f_linear(void *be, int r, lr_buf out, lr_buf in, int w, int b) { return (void)be, record("linear", r, out, in, w, b, 0); }
static int f_rotary(void *be, int r, const lr_op_mods *m) {
    rec->mods[rec->n] = *m;
    rec->faulted_freq[rec->n] = m->inv_freq != NULL;
    return (void)be, record("rotary", r, 0, 0, -1, -1, 0);
}
static int f_attention(void *be, int r, int64_t l, const lr_op_mods *m) {
    rec->mods[rec->n] = *m;
    return (void)be, record("attention", r, 0, 0, (int)l, -1, 0);
}
static int f_activation(void *be, int r, bool gated) { return (void)be, record("activation", r, 0, 0, -1, -1, gated); }
static int f_all_reduce(void *be) { return (void)be, record("all_reduce", -1, 0, 0, -1, -1, 0); }
static int f_residual_sum(void *be) { return (void)be, record("residual_sum", -1, 0, 0, -1, -1, 0); }
static int f_fused(void *be, int r, int64_t l, const lr_op_mods *m) {
    rec->mods[rec->n] = *m;
    return (void)be, record("rotary_attn", r, 0, 0, (int)l, -1, 0);
}
static void held_norm(const lr_held_norm *n) {
    rec->has_held[rec->n] = n != NULL;
    if (n) rec->held[rec->n] = *n;
}
static int f_linear_act(void *be, int r, lr_buf in, int w, int b, const lr_held_norm *n) {
    held_norm(n);
    return (void)be, record("linear_act", r, LR_BUF_ACT, in, w, b, 0);
}
static int f_linear_rope_attn(void *be, int r, int64_t l, lr_buf in, int w, int b, const lr_op_mods *m,
                              const lr_held_norm *n) {
    rec->mods[rec->n] = *m;
    held_norm(n);
    (void)l;
    return (void)be, record("qkv_rope_attn", r, LR_BUF_CTX, in, w, b, 0);
}
static int f_read(void *be, lr_buf b, int r, int64_t ld, int64_t col, int64_t cols, void *dst, int64_t dst_ld) {
    (void)be, (void)ld;
    /* Each element says where it came from: buffer, rank, source column. */
    for (int64_t c = 0; c < cols; c++) ((double *)dst)[c] = b * 1000 + r * 100 + (double)(col + c);
    (void)dst_ld;
    return LR_OK;
}
static int f_load_stream(void *be, bool embedding, const lr_tensor *t) {
    (void)be;
    memcpy(rec->stream, t->data, sizeof rec->stream);
    return record("load_stream", -1, 0, 0, -1, -1, embedding);
}
static void f_prof(void *be, int prof) {
    (void)be;
    if (prof >= 0) rec->prof_calls[prof]++;
}

static void on_stage(void *user, const char *stage, const lr_tensor *t) {
    (void)user;
    ck_assert_int_lt(rec->nstages, 512);
    snprintf(rec->stages[rec->nstages++], 96, "%s", stage);
    ck_assert_int_eq(t->dtype, LR_F64);
}

static int f_perturb(void *be, lr_buf b, int r, int64_t ld, int64_t col, int64_t cols, int64_t dst_col, int64_t width,
                     const lr_fault *f) {
    (void)be, (void)ld, (void)f;
    ck_assert_int_eq(dst_col + cols <= width, 1);
    return record("perturb", r, b, b, (int)col, (int)dst_col, 0);
}

static int f_write(void *be, lr_buf b, int r, int64_t ld, int64_t col, int64_t cols, const lr_tensor *t,
                   int64_t src_col) {
    (void)be, (void)ld;
    ck_assert_int_le(src_col + cols, t->shape[1]);
    for (int64_t c = 0; b == LR_BUF_CTX && t->dtype == LR_F64 && c < cols; c++)
        rec->ctx_row0[src_col + c] = ((const double *)t->data)[src_col + c];
    return record("write", r, b, b, (int)col, (int)src_col, 0);
}

static lr_layer_ops mock_ops(bool fused) {
    lr_layer_ops o = {.obs_dtype = LR_F64,
                      .embedding = f_embedding,
                      .rms_norm = f_rms_norm,
                      .linear = f_linear,
                      .rotary = f_rotary,
                      .attention = f_attention,
                      .activation = f_activation,
                      .all_reduce = f_all_reduce,
                      .residual_sum = f_residual_sum,
                      .read = f_read,
                      .load_stream = f_load_stream,
                      .write = f_write,
                      .perturb = f_perturb,
                      .prof_mark = f_prof,
                      .rotary_attention = fused ? f_fused : NULL};
    return o;
}

/* A small config: 2 layers, 4 heads, 2 kv heads, hidden 8, biases on. */
static lr_config config(void) {
    lr_config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = 64, c.hidden_size = 8, c.intermediate_size = 16, c.num_hidden_layers = 2;
    c.num_attention_heads = 4, c.num_key_value_heads = 2, c.head_dim = 2, c.rms_norm_eps = 1e-6;
    c.rope_theta = 10000, c.attention_bias = true, c.mlp_bias = true;
    return c;
}

typedef struct {
    lr_config cfg;
    lr_plan *plan;
    lr_tp_layout L[4];
    lr_composer c;
    lr_layer_ops ops;
} setup;

static void make(setup *s, int tp, bool fused) {
    s->cfg = config();
    ck_assert_int_eq(lr_plan_create(&s->cfg, tp, 0, &s->plan), LR_OK);
    for (int r = 0; r < tp; r++) ck_assert_int_eq(lr_tp_layout_make(&s->cfg, tp, r, &s->L[r]), LR_OK);
    s->ops = mock_ops(fused);
    s->c = (lr_composer){&s->ops, &s->cfg, s->L, tp, s->plan, NULL, 0};
    rec = calloc(1, sizeof *rec);
}

static void unmake(setup *s) {
    lr_plan_free(s->plan);
    free(rec);
    rec = NULL;
}

static int count(const char *op) {
    int n = 0;
    for (int i = 0; i < rec->n; i++) n += strcmp(rec->calls[i].op, op) == 0;
    return n;
}

/* The table reports every layer stage exactly once, in LR_LAYER_STAGE_MAP's order. */
START_TEST(table_covers_every_stage_in_order) {
    int next = 0;
    for (size_t k = 0; k < lr_num_layer_steps; k++)
        for (int e = 0; e < lr_layer_steps[k].num_emits; e++) {
            ck_assert_int_eq(lr_layer_steps[k].emits[e].stage, next);
            next++;
        }
    ck_assert_int_eq(next, LR_LAYER_STAGE_COUNT);
}
END_TEST

/* A forward reports the fixture spec's stages in order, gathered from every rank. */
START_TEST(stages_in_forward_order) {
    int tp = _i;
    setup s;
    make(&s, tp, false);
    lr_observer obs = {.on_stage = on_stage};
    ck_assert_int_eq(lr_compose_forward(&s.c, NULL, 3, &obs), LR_OK);
    int L = (int)s.cfg.num_hidden_layers;
    ck_assert_int_eq(rec->nstages, 2 + L * LR_LAYER_STAGE_COUNT);
    int64_t prev = -1;
    for (int i = 0; i < rec->nstages; i++) {
        int64_t o = lr_stage_order(rec->stages[i]);
        ck_assert_msg(o > prev, "%s out of order", rec->stages[i]);
        prev = o;
    }
    ck_assert_str_eq(rec->stages[0], "model.embed_tokens");
    ck_assert_str_eq(rec->stages[rec->nstages - 1], "model.norm");
    unmake(&s);
}
END_TEST

/* Rank loops, all-reduce points and the bias rule. */
START_TEST(ranks_reductions_and_biases) {
    int tp = _i;
    setup s;
    make(&s, tp, false);
    ck_assert_int_eq(lr_compose_forward(&s.c, NULL, 3, NULL), LR_OK);
    int L = (int)s.cfg.num_hidden_layers;
    ck_assert_int_eq(count("embedding"), tp);
    ck_assert_int_eq(count("linear"), 4 * tp * L);
    ck_assert_int_eq(count("rotary"), tp * L);
    ck_assert_int_eq(count("attention"), tp * L);
    ck_assert_int_eq(count("activation"), tp * L); /* act_fn runs only for observers */
    ck_assert_int_eq(count("all_reduce"), tp > 1 ? 2 * L + 1 : 0);
    ck_assert_int_eq(count("rms_norm"), 2 * L + 1);
    ck_assert_int_eq(count("residual_sum"), 0);
    for (int i = 0; i < rec->n; i++) {
        const call *c = &rec->calls[i];
        if (strcmp(c->op, "linear") != 0) continue;
        const lr_packed_desc *w = lr_plan_at(s.plan, (size_t)c->weight);
        bool row_parallel = strstr(w->name, "o_proj") || strstr(w->name, "down_proj");
        if (row_parallel) {
            /* partial sums: bias once, on rank 0; at tp 1 straight into the result */
            ck_assert_int_eq(c->out, tp == 1 ? LR_BUF_HIDDEN : LR_BUF_PART);
            ck_assert_int_eq(c->bias >= 0, c->rank == 0);
        } else {
            ck_assert_int_ge(c->bias, 0);
        }
        if (c->bias >= 0) {
            const lr_packed_desc *b = lr_plan_at(s.plan, (size_t)c->bias);
            ck_assert_int_eq(b->shape[0], w->shape[0]); /* the bias of that weight */
        }
    }
    /* The first norm starts the residual stream, every later one adds into it. */
    int norms = 0;
    for (int i = 0; i < rec->n; i++)
        if (strcmp(rec->calls[i].op, "rms_norm") == 0) ck_assert_int_eq(rec->calls[i].flag, norms++ > 0);
    ck_assert_int_eq(rec->prof_calls[LR_PROF_QKV_PROJ], L);
    ck_assert_int_eq(rec->prof_calls[LR_PROF_ALL_REDUCE], tp > 1 ? 2 * L + 1 : 0);
    unmake(&s);
}
END_TEST

/* Column-parallel stages are gathered: rank r's block lands at its columns. */
static double kept[64];
static void keep_k_proj(void *user, const char *stage, const lr_tensor *t) {
    (void)user;
    if (strcmp(stage, "model.layers.0.self_attn.k_proj") == 0)
        memcpy(kept, t->data, (size_t)lr_tensor_numel(t) * sizeof(double));
}

START_TEST(gathers_put_each_rank_at_its_columns) {
    setup s;
    make(&s, 2, false);
    lr_observer obs = {.on_stage = keep_k_proj};
    ck_assert_int_eq(lr_compose_forward(&s.c, NULL, 1, &obs), LR_OK);
    /* f_read marks each element buffer * 1000 + rank * 100 + source column. Rank r's k
     * block starts at its QKV column q_r and lands at column kv_head_start * head_dim. */
    for (int r = 0; r < 2; r++) {
        const lr_tp_layout *L = &s.L[r];
        for (int64_t c = 0; c < L->kv_size; c++)
            ck_assert(kept[L->kv_head_start * s.cfg.head_dim + c] == LR_BUF_QKV * 1000 + r * 100 + (double)(L->q_size + c));
    }
    unmake(&s);
}
END_TEST

/* Isolation: the stream entering layer 0 is the embedding; later ones are the residual. */
static const lr_tensor *inject(void *user, const char *stage) {
    static double stream[64];
    (void)user;
    if (strcmp(stage, "model.layers.0") != 0) return NULL;
    for (int i = 0; i < 64; i++) stream[i] = i;
    static lr_tensor t;
    t = (lr_tensor){.dtype = LR_F64, .ndim = 2, .shape = {3, 8}, .data = stream};
    return &t;
}

START_TEST(isolation_replaces_the_residual_stream) {
    setup s;
    make(&s, 1, false);
    lr_observer obs = {.inject = inject};
    ck_assert_int_eq(lr_compose_forward(&s.c, NULL, 3, &obs), LR_OK);
    ck_assert_int_eq(count("load_stream"), 1);
    /* After the injection before layer 1, that layer's first norm adds to the stream. */
    int i = 0;
    while (strcmp(rec->calls[i].op, "load_stream") != 0) i++;
    ck_assert(!rec->calls[i].flag); /* not the embedding */
    while (strcmp(rec->calls[i].op, "rms_norm") != 0) i++;
    ck_assert(rec->calls[i].flag);
    ck_assert(rec->stream[5] == 5.0);
    unmake(&s);
}
END_TEST

/* Op-level isolation: every op that has an input stage gets it written into its buffer
 * right before it runs (each rank's block of a column-parallel one); the post-attention
 * norm also gets the stream entering the layer. */
static const lr_tensor *every_stage(void *user, const char *stage) {
    static double data[3 * 64];
    static lr_tensor t;
    const lr_config *c = user;
    bool req;
    int64_t w = lr_stage_width(c, stage, &req);
    if (w < 0) return NULL;
    t = (lr_tensor){.dtype = LR_F64, .ndim = 2, .shape = {3, w}, .data = data};
    return &t;
}

START_TEST(op_isolation_loads_each_ops_input) {
    setup s;
    make(&s, 2, false);
    lr_observer obs = {NULL, &s.cfg, every_stage, LR_ISOLATE_OP};
    ck_assert_int_eq(lr_compose_forward(&s.c, NULL, 3, &obs), LR_OK);
    int L = (int)s.cfg.num_hidden_layers, tp = 2;
    /* per layer: qkv_proj 1 (replicated), rope 3 x tp, o_proj tp, post-norm 1, gate_up 1,
     * act_fn and silu_and_mul 2 x tp each (only silu_and_mul runs unobserved), down tp */
    ck_assert_int_eq(count("write"), L * (1 + 3 * tp + tp + 1 + 1 + 2 * tp + tp));
    /* layer-0 stream, then per layer: its stream, and the post-attention norm's, final */
    ck_assert_int_eq(count("load_stream"), 1 + (L - 1) + L + 1);
    for (int i = 1; i < rec->n; i++) {
        const call *c = &rec->calls[i];
        if (strcmp(c->op, "linear") == 0) {
            /* the linear's input was just written (o_proj and down_proj: per rank) */
            const call *w = &rec->calls[i - 1];
            bool ok = strcmp(w->op, "write") == 0 && w->out == c->in;
            for (int j = i - 1; !ok && j > 0 && strcmp(rec->calls[j].op, "linear") == 0; j--)
                ok = strcmp(rec->calls[j - 1].op, "write") == 0 && rec->calls[j - 1].out == c->in;
            ck_assert_msg(ok, "call %d: linear into %d without its input written", i, c->out);
        }
    }
    unmake(&s);
}
END_TEST

/* A fixture with only the streams (no sub-stages): op isolation falls back to layer
 * isolation; the post-attention norm must not take the stream without self_attn, which
 * would leave its hidden input zero. */
static const lr_tensor *streams_only(void *user, const char *stage) {
    const char *suffix;
    if (lr_stage_split(stage, &suffix) >= 0 && *suffix) return NULL;
    return every_stage(user, stage);
}

START_TEST(op_isolation_without_sub_stages_is_layer_isolation) {
    setup s;
    make(&s, 1, false);
    lr_observer obs = {NULL, &s.cfg, streams_only, LR_ISOLATE_OP};
    ck_assert_int_eq(lr_compose_forward(&s.c, NULL, 3, &obs), LR_OK);
    int L = (int)s.cfg.num_hidden_layers;
    ck_assert_int_eq(count("write"), 0);
    ck_assert_int_eq(count("load_stream"), 1 + (L - 1) + 1); /* as --isolate layer */
    unmake(&s);
}
END_TEST

/* A backend with the fused rotary + attention slot gets it instead of the two ops. */
START_TEST(fused_slot_replaces_two_ops) {
    setup s;
    make(&s, 2, true);
    ck_assert_int_eq(lr_compose_forward(&s.c, NULL, 3, NULL), LR_OK);
    ck_assert_int_eq(count("rotary"), 0);
    ck_assert_int_eq(count("attention"), 0);
    ck_assert_int_eq(count("rotary_attn"), 2 * 2);
    ck_assert_int_eq(rec->prof_calls[LR_PROF_ROTARY], 0);
    ck_assert_int_eq(rec->prof_calls[LR_PROF_ATTENTION], 2);
    unmake(&s);
}
END_TEST

/* A backend with the gate_up_proj + activation slot gets it in place of the two, with the
 * projection's input, weight and bias, charged to the projection; not where anything
 * looks at GATE_UP: an observer, a fault (any: the composer does not sort them), op-level
 * isolation. */
static void count_mlp(setup *s, const lr_observer *obs, int *fused, int *act) {
    rec->n = 0;
    memset(rec->prof_calls, 0, sizeof rec->prof_calls);
    ck_assert_int_eq(lr_compose_forward(&s->c, NULL, 3, obs), LR_OK);
    *fused = count("linear_act"), *act = count("activation");
}

START_TEST(fused_mlp_slot_replaces_gate_up_and_activation) {
    setup s;
    int tp = 2, fused, act;
    make(&s, tp, false);
    s.ops.linear_activation = f_linear_act;
    int L = (int)s.cfg.num_hidden_layers;
    count_mlp(&s, NULL, &fused, &act);
    ck_assert_int_eq(fused, tp * L);
    ck_assert_int_eq(act, 0);
    ck_assert_int_eq(count("linear"), 3 * tp * L);
    ck_assert_int_eq(rec->prof_calls[LR_PROF_GATE_UP_PROJ], L);
    ck_assert_int_eq(rec->prof_calls[LR_PROF_SILU_AND_MUL], 0);
    for (int i = 0; i < rec->n; i++) {
        const call *c = &rec->calls[i];
        if (strcmp(c->op, "linear_act") != 0) continue;
        const lr_packed_desc *w = lr_plan_at(s.plan, (size_t)c->weight);
        ck_assert_msg(strstr(w->name, "gate_up_proj") != NULL, "linear_act with %s", w->name);
        ck_assert_int_eq(c->in, LR_BUF_NORMED);
        ck_assert_int_ge(c->bias, 0); /* the config has biases: the slot is given gate_up's */
        ck_assert_int_eq(lr_plan_at(s.plan, (size_t)c->bias)->shape[0], w->shape[0]);
        /* rank 0, rank 1, then down_proj */
        ck_assert_str_eq(rec->calls[i + 1].op, c->rank == tp - 1 ? "linear" : "linear_act");
    }
    /* An observer sees gate_proj and up_proj: the two ops run. */
    lr_observer obs = {.on_stage = on_stage};
    count_mlp(&s, &obs, &fused, &act);
    ck_assert_int_eq(fused, 0);
    ck_assert_int_eq(act, 2 * tp * L); /* act_fn and silu_and_mul */
    /* Op-level isolation writes GATE_UP before the activation. */
    lr_observer iso = {NULL, &s.cfg, every_stage, LR_ISOLATE_OP};
    count_mlp(&s, &iso, &fused, &act);
    ck_assert_int_eq(fused, 0);
    ck_assert_int_eq(act, tp * L);
    /* Layer-level isolation loads only streams: fused. */
    lr_observer layer_iso = {NULL, &s.cfg, every_stage, LR_ISOLATE_LAYER};
    count_mlp(&s, &layer_iso, &fused, &act);
    ck_assert_int_eq(fused, tp * L);
    ck_assert_int_eq(act, 0);
    /* A fault anywhere. */
    lr_fault f;
    ck_assert_int_eq(lr_fault_parse("model.norm=scale:1e-3", &f), LR_OK);
    ck_assert_int_eq(lr_fault_check(&f, &s.cfg), LR_OK);
    s.c.faults = &f, s.c.num_faults = 1;
    count_mlp(&s, NULL, &fused, &act);
    ck_assert_int_eq(fused, 0);
    ck_assert_int_eq(act, tp * L);
    unmake(&s);
}
END_TEST

/* A backend with the qkv_proj + RoPE + attention slot gets it at the attention step in
 * place of the three, with the projection's input, weight and bias, with or without the
 * rotary_attention slot; the profile's attention marked by the composer, qkv_proj and
 * rotary left to the backend. Not with an observer. */
START_TEST(fused_qkv_slot_replaces_projection_rope_and_attention) {
    for (int with_rope_slot = 0; with_rope_slot < 2; with_rope_slot++) {
        setup s;
        int tp = 2;
        make(&s, tp, with_rope_slot);
        s.ops.linear_rotary_attention = f_linear_rope_attn;
        int L = (int)s.cfg.num_hidden_layers;
        ck_assert_int_eq(lr_compose_forward(&s.c, NULL, 3, NULL), LR_OK);
        ck_assert_int_eq(count("qkv_rope_attn"), tp * L);
        ck_assert_int_eq(count("rotary") + count("attention") + count("rotary_attn"), 0);
        ck_assert_int_eq(count("linear"), 3 * tp * L);
        ck_assert_int_eq(rec->prof_calls[LR_PROF_QKV_PROJ], 0);
        ck_assert_int_eq(rec->prof_calls[LR_PROF_ROTARY], 0);
        ck_assert_int_eq(rec->prof_calls[LR_PROF_ATTENTION], L);
        int seen = 0;
        for (int i = 0; i < rec->n; i++) {
            const call *c = &rec->calls[i];
            if (strcmp(c->op, "qkv_rope_attn") != 0) continue;
            const lr_packed_desc *w = lr_plan_at(s.plan, (size_t)c->weight);
            ck_assert_msg(strstr(w->name, "qkv_proj") != NULL, "qkv_rope_attn with %s", w->name);
            ck_assert_int_eq(c->in, LR_BUF_NORMED);
            ck_assert_int_eq(c->rank, seen++ % tp);
            ck_assert_int_eq(lr_plan_at(s.plan, (size_t)c->bias)->shape[0], w->shape[0]);
            /* the layer's input norm before it; o_proj after its ranks */
            if (c->rank == tp - 1) ck_assert_str_eq(rec->calls[i + 1].op, "linear");
        }
        rec->n = 0;
        lr_observer obs = {.on_stage = on_stage};
        ck_assert_int_eq(lr_compose_forward(&s.c, NULL, 3, &obs), LR_OK);
        ck_assert_int_eq(count("qkv_rope_attn"), 0);
        ck_assert_int_eq(count(with_rope_slot ? "rotary_attn" : "attention"), tp * L);
        unmake(&s);
    }
}
END_TEST

/* A backend whose fused slots take the norm before them (hold_norm) gets each layer's input
 * norm with qkv_proj's slot and its post-attention norm with gate_up_proj's, on every
 * rank's call, in place of rms_norm (the final norm still runs), the norm's profile interval
 * left to the projection; the first layer's input norm starts the stream (add false). A
 * norm whose projection is not fused (no slot, an observer) runs as rms_norm; without
 * hold_norm the slots get no norm. */
static void count_norms(setup *s, const lr_observer *obs, int *norms, int *held) {
    rec->n = 0;
    memset(rec->has_held, 0, sizeof rec->has_held);
    memset(rec->prof_calls, 0, sizeof rec->prof_calls);
    ck_assert_int_eq(lr_compose_forward(&s->c, NULL, 3, obs), LR_OK);
    *norms = count("rms_norm"), *held = 0;
    for (int i = 0; i < rec->n; i++)
        *held += rec->has_held[i];
}

START_TEST(held_norms_go_to_the_fused_slots) {
    setup s;
    int tp = 2, norms, held;
    make(&s, tp, false);
    int L = (int)s.cfg.num_hidden_layers;
    s.ops.linear_activation = f_linear_act;
    s.ops.linear_rotary_attention = f_linear_rope_attn;
    count_norms(&s, NULL, &norms, &held);
    ck_assert_int_eq(norms, 2 * L + 1); /* hold_norm off */
    ck_assert_int_eq(held, 0);
    s.ops.hold_norm = true;
    count_norms(&s, NULL, &norms, &held);
    ck_assert_int_eq(norms, 1);
    ck_assert_int_eq(held, 2 * tp * L);
    ck_assert_int_eq(rec->prof_calls[LR_PROF_RMS_NORM], 1);
    int qkv_seen = 0;
    for (int i = 0; i < rec->n; i++) {
        if (!rec->has_held[i]) continue;
        const call *c = &rec->calls[i];
        const lr_held_norm *n = &rec->held[i];
        const char *norm = lr_plan_at(s.plan, (size_t)n->weight)->name;
        bool qkv = strcmp(c->op, "qkv_rope_attn") == 0;
        ck_assert_msg(strstr(norm, qkv ? "input_layernorm" : "post_attention_layernorm") != NULL,
                      "%s given %s", c->op, norm);
        ck_assert_int_eq(c->in, LR_BUF_NORMED);
        ck_assert_int_eq(n->add, !(qkv && qkv_seen++ < tp)); /* layer 0's input norm: every rank's call */
        ck_assert(n->mods.rms_eps == s.cfg.rms_norm_eps);
        ck_assert_int_eq(n->mods.stale_back, 0);
    }
    ck_assert_str_eq(rec->calls[rec->n - 1].op, "rms_norm"); /* the final norm */
    /* Only gate_up_proj fused: the input norms run. */
    s.ops.linear_rotary_attention = NULL;
    count_norms(&s, NULL, &norms, &held);
    ck_assert_int_eq(norms, L + 1);
    ck_assert_int_eq(held, tp * L);
    ck_assert_int_eq(rec->prof_calls[LR_PROF_RMS_NORM], L + 1);
    /* An observer: nothing fused, every norm runs. */
    s.ops.linear_rotary_attention = f_linear_rope_attn;
    lr_observer obs = {.on_stage = on_stage};
    count_norms(&s, &obs, &norms, &held);
    ck_assert_int_eq(norms, 2 * L + 1);
    ck_assert_int_eq(held, 0);
    unmake(&s);
}
END_TEST

/* A fault perturbs its stage's buffer right after the op that computes it, on every
 * rank's block of a column-parallel stage, before anything reads it. */
START_TEST(faults_perturb_the_right_buffer_after_their_op) {
    setup s;
    make(&s, 2, false);
    lr_fault f[3];
    ck_assert_int_eq(lr_fault_parse("model.layers.1.self_attn.k_proj=scale:1e-3", &f[0]), LR_OK);
    ck_assert_int_eq(lr_fault_parse("model.layers.0.mlp.down_proj=element:1e-2", &f[1]), LR_OK);
    ck_assert_int_eq(lr_fault_parse("model.norm=noise:1e-3:7", &f[2]), LR_OK);
    for (int k = 0; k < 3; k++) ck_assert_int_eq(lr_fault_check(&f[k], &s.cfg), LR_OK);
    s.c.faults = f;
    s.c.num_faults = 3;
    ck_assert_int_eq(lr_compose_forward(&s.c, NULL, 3, NULL), LR_OK);
    ck_assert_int_eq(count("perturb"), 2 + 1 + 1);
    int linears = 0, i;
    for (i = 0; i < rec->n; i++) {
        const call *c = &rec->calls[i];
        if (strcmp(c->op, "linear") == 0) linears++;
        if (strcmp(c->op, "perturb") != 0) continue;
        if (c->out == LR_BUF_QKV) {
            /* after layer 1's qkv_proj (linears 9 and 10: two ranks), before its rotary; each
             * rank's k block */
            ck_assert_int_eq(linears, 10);
            ck_assert_int_eq(strcmp(rec->calls[i + (c->rank == 0)].op, "perturb"), 0);
            ck_assert_int_eq(c->weight, (int)s.L[c->rank].q_size);
            ck_assert_int_eq(c->bias, (int)(s.L[c->rank].kv_head_start * s.cfg.head_dim));
        } else if (c->out == LR_BUF_HIDDEN) {
            /* after layer 0's down_proj all-reduce, before the next norm */
            ck_assert_int_eq(linears, 8);
            ck_assert_int_eq(strcmp(rec->calls[i - 1].op, "all_reduce"), 0);
        } else {
            ck_assert_int_eq(c->out, LR_BUF_NORMED); /* the final norm's output */
            ck_assert_int_eq(i, rec->n - 1);
        }
    }
    /* Stages no op computes are refused, with the reason. */
    lr_fault bad;
    ck_assert_int_eq(lr_fault_parse("model.layers.0=scale:1e-3", &bad), LR_OK);
    ck_assert_int_eq(lr_fault_check(&bad, &s.cfg), LR_E_INVAL);
    ck_assert_int_eq(lr_fault_parse("lm_head=scale:1e-3", &bad), LR_OK);
    ck_assert_int_eq(lr_fault_check(&bad, &s.cfg), LR_E_INVAL);
    ck_assert_int_eq(lr_fault_parse("model.layers.2.mlp=scale:1e-3", &bad), LR_OK);
    ck_assert_int_eq(lr_fault_check(&bad, &s.cfg), LR_E_INVAL);
    ck_assert_int_ne(lr_fault_parse("model.norm=scale", &bad), LR_OK);
    ck_assert_int_ne(lr_fault_parse("model.norm=shift:1", &bad), LR_OK);
    ck_assert_int_ne(lr_fault_parse("model.norm=noise:-1", &bad), LR_OK);
    ck_assert_int_ne(lr_fault_parse("model.norm=noise:1e-3:x", &bad), LR_OK);
    unmake(&s);
}
END_TEST

/* The factors: scale everywhere, element on the last feature only, noise of RMS eps,
 * mean 0, the same for the same (seed, token, feature) and different for another seed. */
START_TEST(fault_factors) {
    lr_fault f;
    ck_assert_int_eq(lr_fault_parse("model.norm=element:0.5", &f), LR_OK);
    ck_assert(lr_fault_factor(&f, 3, 9, 10) == 1.5 && lr_fault_factor(&f, 3, 8, 10) == 1.0);
    ck_assert_int_eq(lr_fault_parse("model.norm=noise:0.01:42", &f), LR_OK);
    double sum = 0, sq = 0;
    int n = 100000;
    for (int i = 0; i < n; i++) {
        double d = lr_fault_factor(&f, i / 100, i % 100, 100) - 1;
        sum += d, sq += d * d;
    }
    ck_assert_double_eq_tol(sqrt(sq / n), 0.01, 2e-4);
    ck_assert_double_eq_tol(sum / n, 0, 1e-4);
    ck_assert(lr_fault_factor(&f, 5, 7, 100) == lr_fault_factor(&f, 5, 7, 100));
    lr_fault g = f;
    g.seed = 43;
    ck_assert(lr_fault_factor(&f, 5, 7, 100) != lr_fault_factor(&g, 5, 7, 100));
}
END_TEST


/* Structural faults: parsed with their own EPS rules, refused on stages whose op cannot
 * have them (with the reason), and handed to the op they change as lr_op_mods. */
START_TEST(structural_faults_parse_and_are_refused_where_no_op_has_them) {
    lr_config cfg = config();
    lr_fault f;
    const char *good[] = {"model.layers.1.self_attn.o_proj.input=theta:1e-3",
                          "model.layers.0.input_layernorm=rms_eps:9",
                          "model.layers.1.post_attention_layernorm=rms_eps:9",
                          "model.norm=rms_eps:9",
                          "model.layers.0.self_attn.o_proj.input=mask:1",
                          "model.layers.0.self_attn.o_proj.input=mask:-1",
                          "model.layers.1.self_attn.o_proj.input=stale_kv:1",
                          "model.layers.1.self_attn.o_proj.input=swap_heads:2"};
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        ck_assert_msg(lr_fault_parse(good[k], &f) == LR_OK, "%s: %s", good[k], lr_last_error());
        ck_assert(lr_fault_is_structural(f.kind));
        ck_assert_msg(lr_fault_check(&f, &cfg) == LR_OK, "%s: %s", good[k], lr_last_error());
    }
    ck_assert(!lr_fault_is_structural(LR_FAULT_SCALE) && !lr_fault_is_structural(LR_FAULT_NOISE));
    ck_assert_str_eq(lr_fault_kind_name(LR_FAULT_STALE_KV), "stale_kv");
    /* EPS out of the kind's range */
    const char *bad_eps[] = {"model.norm=rms_eps:-1", "model.layers.0.self_attn.o_proj.input=theta:-2",
                             "model.layers.0.self_attn.o_proj.input=mask:2",
                             "model.layers.0.self_attn.o_proj.input=mask:0",
                             "model.layers.0.self_attn.o_proj.input=stale_kv:0",
                             "model.layers.0.self_attn.o_proj.input=stale_kv:1.5",
                             "model.layers.0.self_attn.o_proj.input=swap_heads:-1",
                             "model.layers.0.self_attn.o_proj.input=swap_heads:0.5",
                             "model.layers.0.self_attn.o_proj.input=thetas:1e-3"};
    for (size_t k = 0; k < sizeof bad_eps / sizeof bad_eps[0]; k++)
        ck_assert_msg(lr_fault_parse(bad_eps[k], &f) == LR_E_INVAL, "%s parsed", bad_eps[k]);
    /* stages whose op cannot have the kind: the message says where to inject instead */
    const char *bad_stage[] = {"model.layers.0.self_attn.q_proj=theta:1e-3",
                               "model.layers.0.self_attn.o_proj=mask:1",
                               "model.embed_tokens=stale_kv:1",
                               "model.norm=swap_heads:0",
                               "model.layers.0.self_attn.o_proj.input=rms_eps:9",
                               "model.layers.0.mlp.down_proj=rms_eps:9",
                               "model.layers.1.self_attn.o_proj.input=swap_heads:3" /* 4 heads */};
    for (size_t k = 0; k < sizeof bad_stage / sizeof bad_stage[0]; k++) {
        ck_assert_int_eq(lr_fault_parse(bad_stage[k], &f), LR_OK);
        ck_assert_msg(lr_fault_check(&f, &cfg) == LR_E_INVAL, "%s accepted", bad_stage[k]);
    }
    ck_assert_int_eq(lr_fault_parse("model.layers.0.self_attn.k_proj=theta:1e-3", &f), LR_OK);
    ck_assert_int_eq(lr_fault_check(&f, &cfg), LR_E_INVAL);
    ck_assert_ptr_nonnull(strstr(lr_last_error(), "self_attn.o_proj.input"));
    ck_assert_int_eq(lr_fault_parse("model.layers.0.self_attn=rms_eps:9", &f), LR_OK);
    ck_assert_int_eq(lr_fault_check(&f, &cfg), LR_E_INVAL);
    ck_assert_ptr_nonnull(strstr(lr_last_error(), "input_layernorm"));
}
END_TEST

/* The one definition of each structural fault's semantics (fault.c). */
START_TEST(structural_fault_semantics) {
    lr_fault f;
    ck_assert_int_eq(lr_fault_parse("model.norm=rms_eps:9", &f), LR_OK);
    ck_assert_double_eq_tol(lr_fault_rms_eps(&f, 1e-5), 1e-4, 1e-18);
    ck_assert(lr_fault_rms_eps(NULL, 1e-5) == 1e-5);
    lr_config cfg = config();
    cfg.head_dim = 8;
    double inv[4], ref[4];
    ck_assert_int_eq(lr_fault_parse("model.layers.0.self_attn.o_proj.input=theta:1e-3", &f), LR_OK);
    lr_fault_inv_freq(&f, &cfg, inv);
    lr_fault_inv_freq(NULL, &cfg, ref);
    for (int i = 0; i < 4; i++) {
        ck_assert_double_eq_tol(ref[i], pow(10000, -2.0 * i / 8), 1e-15);
        ck_assert_double_eq_tol(inv[i], pow(10000 * 1.001, -2.0 * i / 8), 1e-15);
    }
    ck_assert(inv[1] < ref[1]);
    /* the mask: query j sees past + j + 1 keys, one more or one fewer, within 1 .. past + len */
    ck_assert_int_eq(lr_causal_keys(0, 2, 5, 0), 3);
    ck_assert_int_eq(lr_causal_keys(0, 2, 5, 1), 4);
    ck_assert_int_eq(lr_causal_keys(0, 4, 5, 1), 5); /* the last token: no next key */
    ck_assert_int_eq(lr_causal_keys(7, 0, 1, 1), 8); /* a decode step: nothing to add */
    ck_assert_int_eq(lr_causal_keys(0, 2, 5, -1), 2);
    ck_assert_int_eq(lr_causal_keys(0, 0, 5, -1), 1); /* never no key */
    ck_assert_int_eq(lr_causal_keys(7, 0, 1, -1), 7);
    /* stale_kv: only a sequence with cached tokens; the entry back positions before */
    ck_assert_int_eq(lr_stale_kv_source(0, 3, 1), -1);
    ck_assert_int_eq(lr_stale_kv_source(7, 0, 1), 6);
    ck_assert_int_eq(lr_stale_kv_source(7, 1, 3), 5);
    ck_assert_int_eq(lr_stale_kv_source(2, 0, 3), -1);
    ck_assert_int_eq(lr_stale_kv_source(7, 0, 0), -1);
}
END_TEST

/* The composer hands each op the mods of its stage's faults: the faulted norm its eps,
 * the faulted layer's rotary its own frequencies and attention (or the fused slot) the
 * mask shift and stale entries; no other call sees anything but the model's. */
START_TEST(structural_faults_reach_their_op) {
    for (int fused = 0; fused < 2; fused++) {
        setup s;
        make(&s, 2, fused);
        lr_fault f[4];
        ck_assert_int_eq(lr_fault_parse("model.layers.1.post_attention_layernorm=rms_eps:9", &f[0]), LR_OK);
        ck_assert_int_eq(lr_fault_parse("model.layers.0.self_attn.o_proj.input=theta:1e-3", &f[1]), LR_OK);
        ck_assert_int_eq(lr_fault_parse("model.layers.1.self_attn.o_proj.input=mask:-1", &f[2]), LR_OK);
        ck_assert_int_eq(lr_fault_parse("model.layers.1.self_attn.o_proj.input=stale_kv:2", &f[3]), LR_OK);
        s.c.faults = f;
        s.c.num_faults = 4;
        ck_assert_int_eq(lr_compose_forward(&s.c, NULL, 3, NULL), LR_OK);
        ck_assert_int_eq(count("perturb"), 0); /* nothing multiplies an output */
        int norms = 0, rotaries = 0, attns = 0;
        for (int i = 0; i < rec->n; i++) {
            const call *c = &rec->calls[i];
            const lr_op_mods *m = &rec->mods[i];
            if (strcmp(c->op, "rms_norm") == 0) {
                /* norms 0-3: layers 0 and 1, input and post-attention; 4: model.norm */
                double want = norms == 3 ? 1e-5 : 1e-6;
                ck_assert_double_eq_tol(m->rms_eps, want, 1e-18);
                norms++;
            } else if (strcmp(c->op, "rotary") == 0) {
                ck_assert_int_eq(rec->faulted_freq[i], rotaries < 2); /* layer 0's two ranks */
                rotaries++;
            }
            if (strcmp(c->op, "attention") == 0 || strcmp(c->op, "rotary_attn") == 0) {
                bool l1 = c->weight == 1;
                ck_assert_int_eq(m->mask_shift, l1 ? -1 : 0);
                ck_assert_int_eq(m->stale_back, l1 ? 2 : 0);
                if (fused) ck_assert_int_eq(m->inv_freq != NULL, !l1);
                attns++;
            }
        }
        ck_assert_int_eq(norms, 5);
        ck_assert_int_eq(rotaries, fused ? 0 : 4);
        ck_assert_int_eq(attns, 4);
        unmake(&s);
    }
}
END_TEST

/* swap_heads: attention's output read from every rank, heads h and h + 1 exchanged
 * (here across the ranks: heads 1 and 2 of 4 at tp 2), and written back. */
START_TEST(swap_heads_exchanges_two_heads_across_ranks) {
    setup s;
    make(&s, 2, false);
    lr_fault f;
    ck_assert_int_eq(lr_fault_parse("model.layers.0.self_attn.o_proj.input=swap_heads:1", &f), LR_OK);
    ck_assert_int_eq(lr_fault_check(&f, &s.cfg), LR_OK);
    s.c.faults = &f;
    s.c.num_faults = 1;
    ck_assert_int_eq(lr_compose_forward(&s.c, NULL, 3, NULL), LR_OK);
    ck_assert_int_eq(count("write"), 2); /* one block per rank, layer 0 only */
    /* f_read: buffer * 1000 + rank * 100 + column; head_dim 2, two heads per rank */
    double ctx = LR_BUF_CTX * 1000;
    double want[8] = {ctx + 0, ctx + 1, ctx + 100, ctx + 101, ctx + 2, ctx + 3, ctx + 102, ctx + 103};
    for (int c = 0; c < 8; c++) ck_assert_double_eq(rec->ctx_row0[c], want[c]);
    unmake(&s);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("layer");
    TCase *tc = tcase_create("composer");
    tcase_add_test(tc, table_covers_every_stage_in_order);
    tcase_add_loop_test(tc, stages_in_forward_order, 1, 3);
    tcase_add_loop_test(tc, ranks_reductions_and_biases, 1, 3);
    tcase_add_test(tc, gathers_put_each_rank_at_its_columns);
    tcase_add_test(tc, isolation_replaces_the_residual_stream);
    tcase_add_test(tc, fused_slot_replaces_two_ops);
    tcase_add_test(tc, fused_mlp_slot_replaces_gate_up_and_activation);
    tcase_add_test(tc, fused_qkv_slot_replaces_projection_rope_and_attention);
    tcase_add_test(tc, held_norms_go_to_the_fused_slots);
    tcase_add_test(tc, faults_perturb_the_right_buffer_after_their_op);
    tcase_add_test(tc, fault_factors);
    tcase_add_test(tc, structural_faults_parse_and_are_refused_where_no_op_has_them);
    tcase_add_test(tc, structural_fault_semantics);
    tcase_add_test(tc, structural_faults_reach_their_op);
    tcase_add_test(tc, swap_heads_exchanges_two_heads_across_ranks);
    tcase_add_test(tc, op_isolation_loads_each_ops_input);
    tcase_add_test(tc, op_isolation_without_sub_stages_is_layer_isolation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
