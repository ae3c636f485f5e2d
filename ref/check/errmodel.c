/* errmodel.c: the error model of docs/error-model.md. Predicts each stage's relative L2
 * error against a float64 golden from the precision's unit roundoff, the reduction
 * lengths of the model, and the norms of the reference's stages: what a correct
 * implementation in that precision should show, so a measurement far above it is a bug
 * and one near it is rounding. */
#include "internal.h"
#include "llamaref_ops.h"

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
    /* Each token's own prediction for a layer's output (modes, layers, rows), where the
     * source held the stages' rows (rows > 0): a residual stream whose norm one token holds
     * (SmolLM2's token 0, 98% of it) has a stage prediction that is that token's, while a
     * token whose layer update is a large share of its row carries many times more. */
    int64_t rows;
    double *row_layer;
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


/* Per row t of rows: ||x_t + sy y_t + sz z_t|| (y, z may be NULL). */
static void row_norms(const lr_tensor *x, const lr_tensor *y, double sy, const lr_tensor *z, double sz,
                      int64_t rows, double *out) {
    int64_t w = lr_tensor_numel(x) / rows;
    for (int64_t t = 0; t < rows; t++) {
        double s = 0;
        for (int64_t i = t * w; i < (t + 1) * w; i++) {
            double v = lr_tensor_get(x, i) + (y ? sy * lr_tensor_get(y, i) : 0) + (z ? sz * lr_tensor_get(z, i) : 0);
            s += v * v;
        }
        out[t] = sqrt(s);
    }
}

/* Each token's shares of a layer (row norms): its input stream h, the attention's update
 * a, the stream after it r1 = h + a, the MLP's update m, the output. */
typedef struct {
    double *h, *a, *r1, *m, *out;
} row_shares;

typedef struct {
    const lr_config *cfg;
    double rho, rw, ra, r_in, r_stream, mean_context;
    lr_stage_source src;
    void *user;
    const double *score; /* (layers): attention's score sensitivity (score_sensitivity), -1: none */
    int64_t rows;   /* the source stages' tokens, 0: no per-row prediction */
    row_shares rs;  /* scratch, rows each */
    double *eh_row; /* each token's carried error, rows */
} model_params;

/* Fills slot (layers, N_SLOTS) and the final norm and logits for one mode. */
static void predict_mode(const model_params *p, int mode, double embedding, const double *free_slot, double *slot,
                         double *row_layer, double *final_norm, double *logits) {
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
    const int64_t R = p->rows;
    const row_shares *rs = &p->rs;
    for (int64_t t = 0; t < R; t++)
        p->eh_row[t] = embedding;
    char name[96];
    for (int64_t l = 0; l < L; l++) {
        double *s = &slot[l * N_SLOTS];
        const double *fs = free_slot ? &free_slot[l * N_SLOTS] : s;
        if (mode != MODE_FREE) {
            eh = fmin(p->r_stream, l ? free_slot[(l - 1) * N_SLOTS + S_LAYER] : embedding);
            for (int64_t t = 0; t < R; t++)
                p->eh_row[t] = eh;
        }
        /* RMSNorm: the input's error, the weight's and the output's rounding; the sum of
         * squares (length H) moves only the scale, half its relative error. */
        s[S_INPUT_NORM] = sqrt(eh * eh + rw * rw + rho * rho + ACC(H) * ACC(H) / 4);
        /* A projection passes its input's relative error through (a generic matrix
         * neither grows nor shrinks a random error vector relative to the signal). Under
         * op isolation every op's input is the golden's, rounded to its buffer. */
        s[S_QKV] = hypot3(op ? IN(fs[S_INPUT_NORM]) : s[S_INPUT_NORM], hypot(rw, rho), ACC(H));
        /* Attention: q.k over head_dim, p.v over the context; the context inherits v's. Where
         * the source holds the layer's q, k and v, the scores' own error goes through the
         * softmax instead (score_sensitivity: their rounding and their accumulation over
         * head_dim, an absolute error of each score, a relative one of each probability). */
        const double sc = p->score ? p->score[l] : -1;
        const double own_scores = sc >= 0 ? p->ra * sc : ACC(cfg->head_dim);
        s[S_CONTEXT] = hypot3(op ? IN(fs[S_QKV]) : s[S_QKV], rho, hypot(own_scores, ACC(p->mean_context)));
        s[S_ATTN_OUT] = hypot3(op ? IN(fs[S_CONTEXT]) : s[S_CONTEXT], hypot(rw, rho), ACC(QH));

        const lr_tensor *hout = p->src(p->user, lr_layer_stage_name(name, sizeof name, l, LR_LS_LAYER));
        const lr_tensor *a = p->src(p->user, lr_layer_stage_name(name, sizeof name, l, LR_LS_SELF_ATTN));
        /* nh: carried from the layer before */
        const double nhout = hout ? norm2(hout, NULL, 0) : 0;
        double nout = nhout, na, nr1, nm;
        const bool with_a = h && hout && a && lr_tensor_numel(a) == lr_tensor_numel(h);
        const bool rows_here = R > 0 && h && hout && lr_tensor_numel(h) == lr_tensor_numel(hout) &&
                               lr_tensor_numel(h) % R == 0;
        if (rows_here) {
            row_norms(h, NULL, 0, NULL, 0, R, rs->h);
            row_norms(hout, NULL, 0, NULL, 0, R, rs->out);
            if (with_a) {
                row_norms(a, NULL, 0, NULL, 0, R, rs->a);
                row_norms(h, a, 1, NULL, 0, R, rs->r1);
                row_norms(hout, h, -1, a, -1, R, rs->m);
            } else {
                row_norms(hout, h, -1, NULL, 0, R, rs->m);
                for (int64_t t = 0; t < R; t++) {
                    rs->a[t] = rs->m[t] = rs->m[t] / sqrt(2.0);
                    rs->r1[t] = hypot(rs->h[t], rs->a[t]);
                }
            }
        }
        if (with_a) {
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
        /* each block's own error: its prediction less what it inherited (op isolation: all its own) */
        const double own_a = op ? s[S_ATTN_OUT] : sqrt(fmax(0, s[S_ATTN_OUT] * s[S_ATTN_OUT] - eh * eh));
        double na_new = (op ? p->r_in : own_a) * na / nr1;
        double er1 = hypot3(eh, na_new, rho);

        s[S_POST_NORM] = sqrt(er1 * er1 + rw * rw + rho * rho + ACC(H) * ACC(H) / 4);
        s[S_GATE_UP] = hypot3(op ? IN(fs[S_POST_NORM]) : s[S_POST_NORM], hypot(rw, rho), ACC(H));
        s[S_ACT_FN] = hypot(op ? IN(fs[S_GATE_UP]) : s[S_GATE_UP], rho);
        s[S_ACT_MUL] = hypot3(op ? IN(fs[S_GATE_UP]) : s[S_GATE_UP], rho, rho); /* silu, then the product */
        s[S_MLP_OUT] = hypot3(op ? IN(fs[S_ACT_MUL]) : s[S_ACT_MUL], hypot(rw, rho), ACC(I));
        /* The layer's output: the attention's residual sum plus the MLP's output (under op
         * isolation, the MLP's error is all its own). */
        if (op) er1 = hypot3(eh, s[S_ATTN_OUT] * na / nr1, rho);
        const double own_m = op ? s[S_MLP_OUT] : sqrt(fmax(0, s[S_MLP_OUT] * s[S_MLP_OUT] - er1 * er1));
        double nm_new = own_m * nm / nout;
        /* Each token the same way, from its own row's shares: the blocks' own errors are
         * relative to their rows (a projection's is), the shares are the token's. */
        for (int64_t t = 0; rows_here && t < R; t++) {
            double r1 = rs->r1[t] > 0 ? rs->r1[t] : 1, o = rs->out[t] > 0 ? rs->out[t] : 1;
            double e1 = hypot3(p->eh_row[t], own_a * rs->a[t] / r1, rho);
            p->eh_row[t] = hypot3(e1, own_m * rs->m[t] / o, rho);
            row_layer[l * R + t] = p->eh_row[t];
        }
        for (int64_t t = 0; !rows_here && t < R; t++) /* no rows here: the stage's figure */
            row_layer[l * R + t] = p->eh_row[t] = hypot3(er1, nm_new, rho);
        eh = hypot3(er1, nm_new, rho);
        s[S_LAYER] = eh;
        h = hout;
        nh = nhout;
    }
    if (mode != MODE_FREE) /* the final norm is fed the golden's last stream too */
        eh = fmin(p->r_stream, L ? free_slot[(L - 1) * N_SLOTS + S_LAYER] : embedding);
    *final_norm = sqrt(eh * eh + rw * rw + rho * rho + ACC(H) * ACC(H) / 4);
    /* isolated by op, the LM head is fed the golden's final norm, rounded as stored */
    *logits = hypot3(op ? IN(*final_norm) : *final_norm, hypot(rw, rho), ACC(H));
#undef IN
#undef ACC
}

/* Attention's scores s = q.k / sqrt(d) carry an absolute error of their own: their rounding
 * (rho |s|, and the max subtracted from them, rho |m|) and their accumulation over head_dim
 * (rho^2 d/2 sum_l q_l^2 k_l^2 / d). The softmax turns it into a relative error of each
 * probability, and the output o = sum_j p_j v_j moves by sum_j p_j ds_j (v_j - o). Per unit
 * of the scores' rounding: sqrt(sum over queries, heads and keys of p_j^2 E[ds_j^2] |v_j - o|^2
 * / sum |o|^2), from the source's q, k (RoPE applied) and v of layer l; at most SCORE_QUERIES
 * queries per sequence, evenly spaced, causal within each sequence. A trained model's
 * scores reach 10-40 (every query attends to one token, SmolLM2's first): there this is
 * several times the head_dim accumulation alone (docs/error-model.md). -1 when the
 * source lacks the layer's q, k or v, or their shapes are not the batch's. */
enum { SCORE_QUERIES = 32 };
static double score_sensitivity(const lr_config *cfg, const lr_batch *b, const double *inv_freq,
                                lr_stage_source src, void *user, int64_t l) {
    const int64_t T = b->num_tokens, nh = cfg->num_attention_heads, nkv = cfg->num_key_value_heads,
                  hd = cfg->head_dim;
    char n[96];
    const lr_tensor *tq = src(user, lr_layer_stage_name(n, sizeof n, l, LR_LS_Q_PROJ)),
                    *tk = src(user, lr_layer_stage_name(n, sizeof n, l, LR_LS_K_PROJ)),
                    *tv = src(user, lr_layer_stage_name(n, sizeof n, l, LR_LS_V_PROJ));
    if (!tq || !tk || !tv || T < 1 || nkv < 1 || nh % nkv || lr_tensor_numel(tq) != T * nh * hd ||
        lr_tensor_numel(tk) != T * nkv * hd || lr_tensor_numel(tv) != T * nkv * hd)
        return -1;
    double *q = malloc((size_t)(T * nh * hd) * sizeof *q), *k = malloc((size_t)(T * nkv * hd) * sizeof *k),
           *v = malloc((size_t)(T * nkv * hd) * sizeof *v), *sc = malloc((size_t)(2 * T + 2 * hd) * sizeof *sc);
    double num = 0, den = 0;
    if (!q || !k || !v || !sc) goto out;
    for (int64_t i = 0; i < T * nh * hd; i++)
        q[i] = lr_tensor_get(tq, i);
    for (int64_t i = 0; i < T * nkv * hd; i++)
        k[i] = lr_tensor_get(tk, i), v[i] = lr_tensor_get(tv, i);
    lr_ref_rotary_embedding_f64(q, nh * hd, T, nh, hd, b->positions, inv_freq, sc);
    lr_ref_rotary_embedding_f64(k, nkv * hd, T, nkv, hd, b->positions, inv_freq, sc);
    double *o = sc + T, *ex = sc + T + hd; /* the output, exp(s_j - m) */
    for (int64_t seq = 0, start = 0; seq < (b->seq_lens ? b->num_seqs : 1); seq++) {
        const int64_t len = b->seq_lens ? b->seq_lens[seq] : T, nq = len < SCORE_QUERIES ? len : SCORE_QUERIES;
        for (int64_t a = 0; a < nq; a++) {
            const int64_t i = start + len - 1 - a * len / nq; /* the last query always */
            for (int64_t h = 0; h < nh; h++) {
                const double *qi = q + (i * nh + h) * hd;
                const int64_t kh = h / (nh / nkv), keys = i - start + 1;
                double m = -INFINITY, z = 0;
                for (int64_t j = 0; j < keys; j++) {
                    const double *kj = k + ((start + j) * nkv + kh) * hd;
                    double d = 0;
                    for (int64_t e = 0; e < hd; e++)
                        d += qi[e] * kj[e];
                    sc[j] = d / sqrt((double)hd);
                    m = fmax(m, sc[j]);
                }
                for (int64_t e = 0; e < hd; e++)
                    o[e] = 0;
                for (int64_t j = 0; j < keys; j++)
                    z += ex[j] = exp(sc[j] - m);
                for (int64_t j = 0; j < keys; j++) {
                    const double pj = ex[j] / z, *vj = v + ((start + j) * nkv + kh) * hd;
                    for (int64_t e = 0; e < hd; e++)
                        o[e] += pj * vj[e];
                }
                for (int64_t j = 0; j < keys; j++) {
                    const double pj = ex[j] / z, *kj = k + ((start + j) * nkv + kh) * hd,
                                 *vj = v + ((start + j) * nkv + kh) * hd;
                    double qk2 = 0, dv2 = 0;
                    for (int64_t e = 0; e < hd; e++) {
                        qk2 += qi[e] * qi[e] * kj[e] * kj[e];
                        dv2 += (vj[e] - o[e]) * (vj[e] - o[e]);
                    }
                    const double var = sc[j] * sc[j] + m * m + 0.5 * qk2; /* (d/2) sum q^2 k^2 / d */
                    num += pj * pj * var * dv2;
                }
                for (int64_t e = 0; e < hd; e++)
                    den += o[e] * o[e];
            }
        }
        start += len;
    }
out:
    free(q), free(k), free(v), free(sc);
    return den > 0 ? sqrt(num / den) : -1;
}

/* b: the tokens the source's stages are of, or NULL (no score sensitivity). */
static int create(const lr_config *cfg, lr_dtype weights, lr_dtype precision, double mean_context,
                  const lr_batch *b, lr_stage_source src, void *user, lr_error_model **out) {
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
    /* Attention's score sensitivity where the source holds a layer's q, k and v. */
    double *score = NULL, *inv_freq = NULL;
    if (b && src && L > 0 && cfg->head_dim > 0 && (score = malloc((size_t)L * sizeof *score)) &&
        (inv_freq = malloc((size_t)(cfg->head_dim / 2 > 0 ? cfg->head_dim / 2 : 1) * sizeof *inv_freq))) {
        lr_rope_inv_freq(cfg, inv_freq);
        for (int64_t l = 0; l < L; l++)
            score[l] = score_sensitivity(cfg, b, inv_freq, src, user, l);
        p.score = score;
    }
    free(inv_freq);
    /* Per-row predictions where the source's embedding stage has rows (tokens). */
    const lr_tensor *e = src ? src(user, lr_model_stage_name(LR_MS_EMBED_TOKENS)) : NULL;
    p.rows = e && e->ndim >= 2 && e->shape[0] > 0 ? e->shape[0] : 0;
    lr_error_model *m = calloc(1, sizeof *m);
    double *scratch = p.rows ? calloc((size_t)p.rows * 6, sizeof *scratch) : NULL;
    if (!m || !(m->slot = calloc((size_t)(L > 0 ? L : 1) * N_SLOTS * N_MODES, sizeof *m->slot)) ||
        (p.rows && (!scratch || !(m->row_layer = calloc((size_t)(L > 0 ? L : 1) * (size_t)p.rows * N_MODES,
                                                        sizeof *m->row_layer))))) {
        free(scratch);
        free(score);
        lr_error_model_free(m);
        return lr_fail(LR_E_NOMEM, "error model: out of memory");
    }
    p.rs = (row_shares){scratch, scratch + p.rows, scratch + 2 * p.rows, scratch + 3 * p.rows,
                        scratch + 4 * p.rows};
    p.eh_row = scratch ? scratch + 5 * p.rows : NULL;
    m->layers = L;
    m->rows = p.rows;
    m->embedding = p.rw; /* the embedding is a lookup of (rounded) weights */
    size_t per_mode = (size_t)(L > 0 ? L : 1) * N_SLOTS, rows_per_mode = (size_t)(L > 0 ? L : 1) * (size_t)p.rows;
    for (int mode = 0; mode < N_MODES; mode++) /* the free run first: the isolated inputs use it */
        predict_mode(&p, mode, m->embedding, mode == MODE_FREE ? NULL : m->slot, m->slot + (size_t)mode * per_mode,
                     m->row_layer ? m->row_layer + (size_t)mode * rows_per_mode : NULL, &m->final_norm[mode],
                     &m->logits[mode]);
    free(scratch);
    free(score);
    *out = m;
    return LR_OK;
}

int lr_error_model_create(const lr_config *cfg, lr_dtype weights, lr_dtype precision, double mean_context,
                          lr_stage_source src, void *user, lr_error_model **out) {
    return create(cfg, weights, precision, mean_context, NULL, src, user, out);
}

int lr_error_model_create_batch(const lr_config *cfg, lr_dtype weights, lr_dtype precision, const lr_batch *b,
                                lr_stage_source src, void *user, lr_error_model **out) {
    double ctx = 0; /* the mean number of keys a token attends to */
    for (int64_t t = 0; b && t < b->num_tokens; t++)
        ctx += (double)b->positions[t] + 1;
    ctx = b && b->num_tokens > 0 ? ctx / (double)b->num_tokens : 1;
    return create(cfg, weights, precision, ctx, b, src, user, out);
}

void lr_error_model_free(lr_error_model *m) {
    if (!m) return;
    free(m->slot);
    free(m->row_layer);
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

void lr_error_model_row_scale(const lr_error_model *m, const char *stage, bool isolated, lr_isolation iso,
                              int64_t rows, double *scale) {
    for (int64_t t = 0; t < rows; t++)
        scale[t] = 1;
    if (!m || !m->row_layer || rows != m->rows || !stage || lr_stage_kind_of(stage) != LR_STAGE_LAYER) return;
    int64_t l = lr_stage_layer(stage);
    if (l < 0 || l >= m->layers) return;
    int mode = !isolated ? MODE_FREE : iso == LR_ISOLATE_OP ? MODE_OP : MODE_LAYER;
    double whole = predict(m, stage, mode);
    if (!(whole > 0)) return;
    const double *row = m->row_layer + ((size_t)mode * (size_t)m->layers + (size_t)l) * (size_t)rows;
    for (int64_t t = 0; t < rows; t++)
        if (row[t] > whole) scale[t] = row[t] / whole;
}
