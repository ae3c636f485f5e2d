/* errmodel.c: the error model of docs/error-model.md. Predicts each stage's relative L2
 * error against a float64 golden from the precision's unit roundoff, the reduction
 * lengths of the model, and the norms of the reference's stages: what a correct
 * implementation in that precision should show, so a measurement far above it is a bug
 * and one near it is rounding. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The root-mean-square relative error of rounding to nearest, per unit roundoff u:
 * a value m * 2^e (m in [1, 2), log-uniform) is off by at most u 2^e, uniformly, so the
 * relative error has variance u^2 E[1/m^2] / 3 with E[1/m^2] = 3 / (8 ln 2). */
#define RHO_PER_U 0.4247

/* Per-layer slots, one per predicted sub-stage. */
enum {
    S_INPUT_NORM,
    S_QKV,
    S_CONTEXT,
    S_ATTN_OUT,
    S_POST_NORM,
    S_GATE_UP,
    S_ACT_FN,
    S_ACT_MUL,
    S_MLP_OUT,
    S_LAYER,
    N_SLOTS
};

/* The slot that predicts each layer stage (lr_layer_stage order). */
static const int slot_of_stage[LR_LAYER_STAGE_COUNT] = {
    [LR_LS_INPUT_LAYERNORM] = S_INPUT_NORM,
    [LR_LS_Q_PROJ] = S_QKV,
    [LR_LS_K_PROJ] = S_QKV,
    [LR_LS_V_PROJ] = S_QKV,
    [LR_LS_O_PROJ_INPUT] = S_CONTEXT,
    [LR_LS_O_PROJ] = S_ATTN_OUT,
    [LR_LS_SELF_ATTN] = S_ATTN_OUT,
    [LR_LS_POST_ATTENTION_LAYERNORM] = S_POST_NORM,
    [LR_LS_GATE_PROJ] = S_GATE_UP,
    [LR_LS_UP_PROJ] = S_GATE_UP,
    [LR_LS_ACT_FN] = S_ACT_FN,
    [LR_LS_DOWN_PROJ_INPUT] = S_ACT_MUL,
    [LR_LS_DOWN_PROJ] = S_MLP_OUT,
    [LR_LS_MLP] = S_MLP_OUT,
    [LR_LS_LAYER] = S_LAYER,
};

/* What a mode of running leaves at each stage (docs/error-model.md): free-running, every
 * error carried from the embedding on; layer isolation, each layer fed the golden's
 * stream (rounded to the stream's storage), so only the layer's own error accumulates;
 * op isolation, each op fed the golden's input to it (rounded to the buffer's dtype), so
 * each op's error is its own rounding and arithmetic. */
enum { MODE_FREE, MODE_LAYER, MODE_OP, N_MODES };

struct lr_error_model {
    int64_t layers;
    double embedding, final_norm[N_MODES], logits[N_MODES];
    double *slot; /* (modes, layers, N_SLOTS) */
};

static double unit_roundoff(lr_dtype d) {
    switch (d) {
    case LR_F64: return 0x1p-53;
    case LR_F32: return 0x1p-24;
    case LR_F16: return 0x1p-11;
    case LR_BF16: return 0x1p-8;
    default: return NAN;
    }
}

/* Whether every value of dtype `from` is a value of `to` (for weights of ordinary
 * magnitude; bf16 into fp16 holds for |w| in fp16's normal range). */
static bool exact_in(lr_dtype from, lr_dtype to) {
    if (from == to || to == LR_F64) return true;
    if (to == LR_F32) return from == LR_F16 || from == LR_BF16;
    if (to == LR_F16) return from == LR_BF16;
    return false;
}

static double hypot3(double a, double b, double c) { return sqrt(a * a + b * b + c * c); }

/* ||t|| and ||t + u|| (u may be NULL), over every element. */
static double norm2(const lr_tensor *t, const lr_tensor *u, double su) {
    int64_t n = lr_tensor_numel(t);
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = lr_tensor_get(t, i) + (u ? su * lr_tensor_get(u, i) : 0);
        s += x * x;
    }
    return sqrt(s);
}


typedef struct {
    const lr_config *cfg;
    double rho, rw, ra, r_in, r_stream, mean_context;
    lr_stage_source src;
    void *user;
} model_params;

/* Fills slot (layers, N_SLOTS) and the final norm and logits for one mode. */
static void predict_mode(const model_params *p, int mode, double embedding, const double *free_slot, double *slot,
                         double *final_norm, double *logits) {
    const lr_config *cfg = p->cfg;
    const int64_t L = cfg->num_hidden_layers, H = cfg->hidden_size, I = cfg->intermediate_size;
    const int64_t QH = cfg->num_attention_heads * cfg->head_dim;
    const double rho = p->rho, rw = p->rw, ra = p->ra;
    const bool op = mode == MODE_OP;
    /* An isolated input is the golden's, stored: never further off than the free run's
     * (the embedding of float32 weights is exact either way). */
#define IN(free_err) (fmin(p->r_in, (free_err)))
#define ACC(K) (ra * sqrt((double)(K) / 2.0))
    const lr_tensor *h = p->src(p->user, lr_model_stage_name(LR_MS_EMBED_TOKENS));
    double nh = h ? norm2(h, NULL, 0) : 0;
    double eh = embedding;
    char name[96];
    for (int64_t l = 0; l < L; l++) {
        double *s = &slot[l * N_SLOTS];
        const double *fs = free_slot ? &free_slot[l * N_SLOTS] : s;
        if (mode != MODE_FREE) eh = fmin(p->r_stream, l ? free_slot[(l - 1) * N_SLOTS + S_LAYER] : embedding);
        /* RMSNorm: the input's error, the weight's and the output's rounding; the sum of
         * squares (length H) moves only the scale, half its relative error. */
        s[S_INPUT_NORM] = sqrt(eh * eh + rw * rw + rho * rho + ACC(H) * ACC(H) / 4);
        /* A projection passes its input's relative error through (a generic matrix
         * neither grows nor shrinks a random error vector relative to the signal). Under
         * op isolation every op's input is the golden's, rounded to its buffer. */
        s[S_QKV] = hypot3(op ? IN(fs[S_INPUT_NORM]) : s[S_INPUT_NORM], hypot(rw, rho), ACC(H));
        /* Attention: q.k over head_dim, p.v over the context; the context inherits v's. */
        s[S_CONTEXT] = hypot3(op ? IN(fs[S_QKV]) : s[S_QKV], rho, hypot(ACC(cfg->head_dim), ACC(p->mean_context)));
        s[S_ATTN_OUT] = hypot3(op ? IN(fs[S_CONTEXT]) : s[S_CONTEXT], hypot(rw, rho), ACC(QH));

        const lr_tensor *hout = p->src(p->user, lr_layer_stage_name(name, sizeof name, l, LR_LS_LAYER));
        const lr_tensor *a = p->src(p->user, lr_layer_stage_name(name, sizeof name, l, LR_LS_SELF_ATTN));
        /* nh: carried from the layer before */
        const double nhout = hout ? norm2(hout, NULL, 0) : 0;
        double nout = nhout, na, nr1, nm;
        if (h && hout && a && lr_tensor_numel(a) == lr_tensor_numel(h)) {
            na = norm2(a, NULL, 0);
            nr1 = norm2(h, a, 1);
            /* m = out - r1 = out - h - a */
            double s2 = 0;
            for (int64_t i = 0, n = lr_tensor_numel(h); i < n; i++) {
                double x = lr_tensor_get(hout, i) - lr_tensor_get(h, i) - lr_tensor_get(a, i);
                s2 += x * x;
            }
            nm = sqrt(s2);
        } else {
            /* No attention output in the source: split the layer's update evenly. */
            double nd = h && hout ? norm2(hout, h, -1) : nh;
            na = nm = nd / sqrt(2.0);
            nr1 = sqrt(nh * nh + na * na);
        }
        if (!(nr1 > 0)) nr1 = 1;
        if (!(nout > 0)) nout = 1;
        /* The residual adds: the stream keeps its relative error through the layer (a
         * layer is a well-conditioned map of the stream; where a block cancels part of
         * the stream, the error it inherited cancels with it), and each block adds its
         * own new error (its prediction less what it inherited) in proportion to its
         * share of the stream, plus the sum's rounding. Under op isolation the
         * post-attention norm sums the golden's stream and attention output, stored. */
        double na_new = op ? p->r_in * na / nr1 : sqrt(fmax(0, s[S_ATTN_OUT] * s[S_ATTN_OUT] - eh * eh)) * na / nr1;
        double er1 = hypot3(eh, na_new, rho);

        s[S_POST_NORM] = sqrt(er1 * er1 + rw * rw + rho * rho + ACC(H) * ACC(H) / 4);
        s[S_GATE_UP] = hypot3(op ? IN(fs[S_POST_NORM]) : s[S_POST_NORM], hypot(rw, rho), ACC(H));
        s[S_ACT_FN] = hypot(op ? IN(fs[S_GATE_UP]) : s[S_GATE_UP], rho);
        s[S_ACT_MUL] = hypot3(op ? IN(fs[S_GATE_UP]) : s[S_GATE_UP], rho, rho); /* silu, then the product */
        s[S_MLP_OUT] = hypot3(op ? IN(fs[S_ACT_MUL]) : s[S_ACT_MUL], hypot(rw, rho), ACC(I));
        /* The layer's output: the attention's residual sum plus the MLP's output (under op
         * isolation, the MLP's error is all its own). */
        if (op) er1 = hypot3(eh, s[S_ATTN_OUT] * na / nr1, rho);
        double nm_new = op ? s[S_MLP_OUT] * nm / nout : sqrt(fmax(0, s[S_MLP_OUT] * s[S_MLP_OUT] - er1 * er1)) * nm / nout;
        eh = hypot3(er1, nm_new, rho);
        s[S_LAYER] = eh;
        h = hout;
        nh = nhout;
    }
    if (mode != MODE_FREE) /* the final norm is fed the golden's last stream too */
        eh = fmin(p->r_stream, L ? free_slot[(L - 1) * N_SLOTS + S_LAYER] : embedding);
    *final_norm = sqrt(eh * eh + rw * rw + rho * rho + ACC(H) * ACC(H) / 4);
    *logits = hypot3(*final_norm, hypot(rw, rho), ACC(H));
#undef IN
#undef ACC
}

int lr_error_model_create(const lr_config *cfg, lr_dtype weights, lr_dtype precision, double mean_context,
                          lr_stage_source src, void *user, lr_error_model **out) {
    *out = NULL;
    double u = unit_roundoff(precision);
    if (isnan(u)) return lr_fail(LR_E_INVAL, "error model: no unit roundoff for precision %d", (int)precision);
    if (!(mean_context >= 1)) mean_context = 1;
    const int64_t L = cfg->num_hidden_layers;
    /* Storage rounding of every stored tensor, of the weights (when the checkpoint's
     * values are not values of the compute precision), and accumulation: fp32 for the
     * 16-bit precisions (cuBLAS and the kernels accumulate in fp32), else the precision.
     * The residual stream is stored in fp32 at the 16-bit precisions. */
    const bool lowp = precision == LR_BF16 || precision == LR_F16;
    const double rho = RHO_PER_U * u;
    model_params p = {.cfg = cfg,
                      .rho = rho,
                      .rw = exact_in(weights, precision) ? 0 : rho,
                      .ra = RHO_PER_U * (lowp ? 0x1p-24 : u),
                      /* isolated inputs: the float64 golden, stored (exact at f64) */
                      .r_in = precision == LR_F64 ? 0 : rho,
                      .r_stream = precision == LR_F64 ? 0 : lowp ? RHO_PER_U * 0x1p-24 : rho,
                      .mean_context = mean_context,
                      .src = src,
                      .user = user};
    lr_error_model *m = calloc(1, sizeof *m);
    if (!m || !(m->slot = calloc((size_t)(L > 0 ? L : 1) * N_SLOTS * N_MODES, sizeof *m->slot))) {
        free(m);
        return lr_fail(LR_E_NOMEM, "error model: out of memory");
    }
    m->layers = L;
    m->embedding = p.rw; /* the embedding is a lookup of (rounded) weights */
    size_t per_mode = (size_t)(L > 0 ? L : 1) * N_SLOTS;
    for (int mode = 0; mode < N_MODES; mode++) /* the free run first: the isolated inputs use it */
        predict_mode(&p, mode, m->embedding, mode == MODE_FREE ? NULL : m->slot, m->slot + (size_t)mode * per_mode,
                     &m->final_norm[mode], &m->logits[mode]);
    *out = m;
    return LR_OK;
}

void lr_error_model_free(lr_error_model *m) {
    if (!m) return;
    free(m->slot);
    free(m);
}

static double predict(const lr_error_model *m, const char *stage, int mode) {
    if (!m || !stage) return -1;
    switch (lr_stage_kind_of(stage)) {
    case LR_STAGE_UNKNOWN: return -1;
    case LR_STAGE_EMBEDDING: return m->embedding;
    case LR_STAGE_LOGITS: return m->logits[mode];
    default: break;
    }
    int64_t order = lr_stage_order(stage);
    if (order == lr_stage_order(lr_model_stage_name(LR_MS_NORM))) return m->final_norm[mode];
    int64_t l = (order - 1) / LR_LAYER_STAGE_COUNT;
    if (order < 1 || l >= m->layers) return -1;
    const double *slot = m->slot + (size_t)mode * (size_t)(m->layers > 0 ? m->layers : 1) * N_SLOTS;
    return slot[l * N_SLOTS + slot_of_stage[(order - 1) % LR_LAYER_STAGE_COUNT]];
}

double lr_error_model_predict(const lr_error_model *m, const char *stage) { return predict(m, stage, MODE_FREE); }

double lr_error_model_predict_isolated(const lr_error_model *m, const char *stage, lr_isolation iso) {
    return predict(m, stage, iso == LR_ISOLATE_OP ? MODE_OP : MODE_LAYER);
}
