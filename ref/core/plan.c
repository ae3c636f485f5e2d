/* plan.c: vLLM's packing (qkv_proj, gate_up_proj) and tensor-parallel sharding rules,
 * as a plan of slices per rank, and the materialised weights of a plan.
 *
 * Column-parallel (qkv_proj, gate_up_proj): each rank holds a block of output rows.
 * Row-parallel (o_proj, down_proj): each rank holds a block of input columns; the bias
 * is held whole and added once (rank 0). Embedding and LM head: the vocabulary is
 * padded to a multiple of LR_VOCAB_PADDING and split into equal contiguous shards. */
#include "internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lr_plan {
    lr_tp_layout layout;
    lr_packed_desc *d;
    size_t n, cap;
    lr_layer_index *layers; /* (nlayers) */
    int64_t nlayers;
    int model[LR_MODEL_WEIGHT_COUNT];
};

static const char *const layer_weight_suffix[] = {
#define LR_LW_NAME(id, suffix) suffix,
    LR_LAYER_WEIGHT_MAP(LR_LW_NAME)
#undef LR_LW_NAME
};
static const char *const model_weight_name[] = {
#define LR_MW_NAME(id, name) name,
    LR_MODEL_WEIGHT_MAP(LR_MW_NAME)
#undef LR_MW_NAME
};

static const char *const hf_layer_weight_suffix[] = {
#define LR_HW_NAME(id, suffix, rows, cols, when) suffix,
    LR_HF_LAYER_WEIGHT_MAP(LR_HW_NAME)
#undef LR_HW_NAME
};

char *lr_hf_layer_weight_name(char *buf, size_t n, int64_t layer, lr_hf_layer_weight w) {
    snprintf(buf, n, "model.layers.%lld.%s", (long long)layer,
             (unsigned)w < LR_HF_LAYER_WEIGHT_COUNT ? hf_layer_weight_suffix[w] : "");
    return buf;
}

const char *lr_layer_weight_suffix(lr_layer_weight w) {
    return (unsigned)w < LR_LAYER_WEIGHT_COUNT ? layer_weight_suffix[w] : "";
}
const char *lr_model_weight_name(lr_model_weight w) {
    return (unsigned)w < LR_MODEL_WEIGHT_COUNT ? model_weight_name[w] : "";
}

int lr_tp_layout_make(const lr_config *c, int tp, int rank, lr_tp_layout *out) {
    if (tp < 1 || tp > 4096) return lr_fail(LR_E_TP, "tp_size: %d is outside 1..4096", tp);
    if (rank < 0 || rank >= tp) return lr_fail(LR_E_TP, "tp_rank: %d is outside 0..%d", rank, tp - 1);
    lr_tp_layout L = {.tp_size = tp, .tp_rank = rank};
    int64_t nh = c->num_attention_heads, nkv = c->num_key_value_heads;
    if (nh % tp)
        return lr_fail(LR_E_TP, "config.json: num_attention_heads: %lld is not divisible by tp %d",
                       (long long)nh, tp);
    L.num_heads = nh / tp;
    if (tp >= nkv) {
        /* Fewer KV heads than ranks: each KV head is replicated over tp / nkv ranks. */
        if (tp % nkv)
            return lr_fail(LR_E_TP,
                           "config.json: num_key_value_heads: tp %d is not a multiple of %lld KV heads",
                           tp, (long long)nkv);
        L.num_kv_heads = 1;
        L.kv_replicas = tp / nkv;
        L.kv_head_start = rank / L.kv_replicas;
    } else {
        if (nkv % tp)
            return lr_fail(LR_E_TP, "config.json: num_key_value_heads: %lld is not divisible by tp %d",
                           (long long)nkv, tp);
        L.num_kv_heads = nkv / tp;
        L.kv_replicas = 1;
        L.kv_head_start = rank * L.num_kv_heads;
    }
    L.q_size = L.num_heads * c->head_dim;
    L.kv_size = L.num_kv_heads * c->head_dim;
    if (c->intermediate_size % tp)
        return lr_fail(LR_E_TP, "config.json: intermediate_size: %lld is not divisible by tp %d",
                       (long long)c->intermediate_size, tp);
    L.intermediate = c->intermediate_size / tp;
    L.vocab_padded = (c->vocab_size + LR_VOCAB_PADDING - 1) / LR_VOCAB_PADDING * LR_VOCAB_PADDING;
    if (L.vocab_padded % tp)
        return lr_fail(LR_E_TP, "config.json: vocab_size: padded vocabulary %lld is not divisible by tp %d",
                       (long long)L.vocab_padded, tp);
    L.vocab_shard = L.vocab_padded / tp;
    L.vocab_start = rank * L.vocab_shard;
    *out = L;
    return LR_OK;
}

static lr_packed_desc *add(lr_plan *p, int ndim, int64_t d0, int64_t d1, const char *fmt, ...)
    LR_PRINTF(5, 6);
static lr_packed_desc *add(lr_plan *p, int ndim, int64_t d0, int64_t d1, const char *fmt, ...) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        lr_packed_desc *d = realloc(p->d, cap * sizeof *d);
        if (!d) return NULL;
        p->d = d;
        p->cap = cap;
    }
    lr_packed_desc *d = &p->d[p->n++];
    memset(d, 0, sizeof *d);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->name, sizeof d->name, fmt, ap);
    va_end(ap);
    d->ndim = ndim;
    d->shape[0] = d0;
    d->shape[1] = ndim == 2 ? d1 : 1;
    d->tied_to = -1;
    return d;
}

/* A copy of rows [row0, row0+rows) x cols [col0, col0+cols) of src to dst_row0. */
static void slice(lr_packed_desc *d, const char *src, int64_t row0, int64_t col0,
                  int64_t dst_row0, int64_t rows, int64_t cols) {
    lr_slice *s = &d->slices[d->nslices++];
    size_t n = strnlen(src, sizeof s->src - 1); /* names are shorter: the plan makes them */
    memcpy(s->src, src, n);
    s->src[n] = '\0';
    s->src_row0 = row0;
    s->src_col0 = col0;
    s->dst_row0 = dst_row0;
    s->rows = rows;
    s->cols = cols;
}

/* A packed tensor of layer l, named from the weight table and recorded in its index. */
static lr_packed_desc *add_layer(lr_plan *p, int64_t l, lr_layer_weight w, int ndim, int64_t d0,
                                 int64_t d1) {
    lr_packed_desc *d = add(p, ndim, d0, d1, "model.layers.%lld.%s", (long long)l, layer_weight_suffix[w]);
    if (d) p->layers[l].at[w] = (int)(p->n - 1);
    return d;
}

/* Whole-tensor copy of layer l's tensor w (norm weights, row-parallel biases), from the
 * HF tensor of the same name. */
static int whole(lr_plan *p, int64_t l, lr_layer_weight w, int64_t n) {
    lr_packed_desc *d = add_layer(p, l, w, 1, n, 0);
    if (!d) return LR_E_NOMEM;
    char src[sizeof d->name];
    memcpy(src, d->name, sizeof src);
    slice(d, src, 0, 0, 0, n, 1);
    return LR_OK;
}

/* A model-level tensor w: a vocabulary shard of an [V, H] tensor (padding rows stay
 * zero), or the whole final norm. */
static int model_tensor(lr_plan *p, const lr_config *c, lr_model_weight w, const char *src) {
    const lr_tp_layout *L = &p->layout;
    bool norm = w == LR_MW_NORM;
    lr_packed_desc *d = norm ? add(p, 1, c->hidden_size, 0, "%s", model_weight_name[w])
                             : add(p, 2, L->vocab_shard, c->hidden_size, "%s", model_weight_name[w]);
    if (!d) return LR_E_NOMEM;
    p->model[w] = (int)(p->n - 1);
    int64_t end = L->vocab_start + L->vocab_shard;
    if (end > c->vocab_size) end = c->vocab_size;
    if (norm)
        slice(d, src, 0, 0, 0, c->hidden_size, 1);
    else if (end > L->vocab_start)
        slice(d, src, L->vocab_start, 0, 0, end - L->vocab_start, c->hidden_size);
    return LR_OK;
}

static int build(lr_plan *p, const lr_config *c) {
    const lr_tp_layout *L = &p->layout;
    int64_t H = c->hidden_size, hd = c->head_dim, r = L->tp_rank, Ir = L->intermediate;
    int64_t qkv = L->q_size + 2 * L->kv_size, q0 = r * L->q_size, kv0 = L->kv_head_start * hd;
    char src[3][128];
    lr_packed_desc *d;
    int rc;
    if (!(p->layers = malloc((size_t)(c->num_hidden_layers > 0 ? c->num_hidden_layers : 1) * sizeof *p->layers)))
        return LR_E_NOMEM;
    p->nlayers = c->num_hidden_layers;
    memset(p->layers, 0xff, (size_t)c->num_hidden_layers * sizeof *p->layers); /* every index -1 */
    if ((rc = model_tensor(p, c, LR_MW_EMBED, "model.embed_tokens.weight"))) return rc;
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        if ((rc = whole(p, l, LR_LW_INPUT_LAYERNORM, H))) return rc;

        /* qkv_proj: this rank's q heads, then its k and v heads, stacked as rows. */
        static const lr_hf_layer_weight qkv_src[2][3] = {{LR_HW_Q_PROJ_W, LR_HW_K_PROJ_W, LR_HW_V_PROJ_W},
                                                         {LR_HW_Q_PROJ_B, LR_HW_K_PROJ_B, LR_HW_V_PROJ_B}};
        for (int bias = 0; bias <= (c->attention_bias ? 1 : 0); bias++) {
            if (!(d = add_layer(p, l, bias ? LR_LW_QKV_B : LR_LW_QKV_W, bias ? 1 : 2, qkv, H))) return LR_E_NOMEM;
            for (int k = 0; k < 3; k++) lr_hf_layer_weight_name(src[k], sizeof src[k], l, qkv_src[bias][k]);
            int64_t cols = bias ? 1 : H;
            slice(d, src[0], q0, 0, 0, L->q_size, cols);
            slice(d, src[1], kv0, 0, L->q_size, L->kv_size, cols);
            slice(d, src[2], kv0, 0, L->q_size + L->kv_size, L->kv_size, cols);
        }
        /* o_proj: row-parallel, this rank's input columns. */
        if (!(d = add_layer(p, l, LR_LW_O_W, 2, H, L->q_size))) return LR_E_NOMEM;
        memcpy(src[0], d->name, sizeof src[0]);
        slice(d, src[0], 0, q0, 0, H, L->q_size);
        if (c->attention_bias && (rc = whole(p, l, LR_LW_O_B, H))) return rc;
        if ((rc = whole(p, l, LR_LW_POST_ATTENTION_LAYERNORM, H))) return rc;

        /* gate_up_proj: this rank's gate rows, then its up rows. */
        for (int bias = 0; bias <= (c->mlp_bias ? 1 : 0); bias++) {
            if (!(d = add_layer(p, l, bias ? LR_LW_GATE_UP_B : LR_LW_GATE_UP_W, bias ? 1 : 2, 2 * Ir, H)))
                return LR_E_NOMEM;
            lr_hf_layer_weight_name(src[0], sizeof src[0], l, bias ? LR_HW_GATE_PROJ_B : LR_HW_GATE_PROJ_W);
            lr_hf_layer_weight_name(src[1], sizeof src[1], l, bias ? LR_HW_UP_PROJ_B : LR_HW_UP_PROJ_W);
            int64_t cols = bias ? 1 : H;
            slice(d, src[0], r * Ir, 0, 0, Ir, cols);
            slice(d, src[1], r * Ir, 0, Ir, Ir, cols);
        }
        if (!(d = add_layer(p, l, LR_LW_DOWN_W, 2, H, Ir))) return LR_E_NOMEM;
        memcpy(src[0], d->name, sizeof src[0]);
        slice(d, src[0], 0, r * Ir, 0, H, Ir);
        if (c->mlp_bias && (rc = whole(p, l, LR_LW_DOWN_B, H))) return rc;
    }
    if ((rc = model_tensor(p, c, LR_MW_NORM, "model.norm.weight"))) return rc;
    bool tied = c->tie_word_embeddings;
    if ((rc = model_tensor(p, c, LR_MW_LM_HEAD, tied ? "model.embed_tokens.weight" : "lm_head.weight"))) return rc;
    if (tied) p->d[p->n - 1].tied_to = p->model[LR_MW_EMBED];
    return LR_OK;
}

int lr_plan_create(const lr_config *cfg, int tp_size, int tp_rank, lr_plan **out) {
    lr_plan *p = calloc(1, sizeof *p);
    if (!p) return lr_fail(LR_E_NOMEM, "plan: out of memory");
    int rc = lr_tp_layout_make(cfg, tp_size, tp_rank, &p->layout);
    if (rc == LR_OK && (rc = build(p, cfg)) == LR_E_NOMEM) lr_fail(rc, "plan: out of memory");
    if (rc) {
        lr_plan_free(p);
        return rc;
    }
    *out = p;
    return LR_OK;
}

void lr_plan_free(lr_plan *p) {
    if (!p) return;
    free(p->d);
    free(p->layers);
    free(p);
}

const lr_tp_layout *lr_plan_layout(const lr_plan *p) { return &p->layout; }
size_t lr_plan_count(const lr_plan *p) { return p->n; }
const lr_packed_desc *lr_plan_at(const lr_plan *p, size_t i) { return i < p->n ? &p->d[i] : NULL; }

const lr_layer_index *lr_plan_layer(const lr_plan *p, int64_t l) {
    return p->layers && l >= 0 && l < p->nlayers ? &p->layers[l] : NULL;
}

int lr_plan_model(const lr_plan *p, lr_model_weight w) {
    return (unsigned)w < LR_MODEL_WEIGHT_COUNT ? p->model[w] : -1;
}

int lr_plan_index(const lr_plan *p, const char *name) {
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->d[i].name, name) == 0) return (int)i;
    return -1;
}

/* ---- Materialised weights ---------------------------------------------------------- */

struct lr_weights {
    const lr_plan *plan;
    lr_dtype dtype;
    lr_tensor *t; /* plan order */
};

bool lr_packed_next_chunk(const lr_packed_desc *d, int64_t capacity, lr_chunk *c) {
    if (capacity < 1) capacity = 1;
    int k = c->slice;
    int64_t pos = c->elem0 + c->count;
    while (k < d->nslices && pos >= d->slices[k].rows * d->slices[k].cols) {
        k++;
        pos = 0;
    }
    if (k >= d->nslices) return false;
    const lr_slice *s = &d->slices[k];
    int64_t left = s->rows * s->cols - pos, n = left < capacity ? left : capacity;
    int64_t dcols = d->shape[1];
    /* narrower than the tensor: its rows are not contiguous there, so stop at the row's end */
    if (s->cols < dcols && n > s->cols - pos % s->cols) n = s->cols - pos % s->cols;
    c->slice = k;
    c->elem0 = pos;
    c->count = n;
    c->dst0 = (s->dst_row0 + pos / s->cols) * dcols + pos % s->cols;
    return true;
}

/* Whether any of n floats (dt F32) or doubles (F64) at p is a NaN or an infinity: the
 * exponent field all ones, which carries into the sign bit when its lowest bit is added.
 * Blocks of a fixed 64 elements, so that the compiler vectorises them at -O2 (the
 * weights of a checkpoint pass through here: 15 GiB for Llama-3-8B). */
#define FINITE_BLOCK 64
static inline uint32_t exponents_f32(const unsigned char *b, int64_t m) {
    uint32_t acc = 0;
    for (int64_t k = 0; k < m; k++) {
        uint32_t u;
        memcpy(&u, b + 4 * k, 4);
        acc |= (u & 0x7f800000u) + 0x00800000u;
    }
    return acc;
}

static inline uint64_t exponents_f64(const unsigned char *b, int64_t m) {
    uint64_t acc = 0;
    for (int64_t k = 0; k < m; k++) {
        uint64_t u;
        memcpy(&u, b + 8 * k, 8);
        acc |= (u & 0x7ff0000000000000u) + 0x0010000000000000u;
    }
    return acc;
}

static bool any_nonfinite(const void *p, lr_dtype dt, int64_t n) {
    const unsigned char *b = p;
    const size_t es = dt == LR_F32 ? 4 : 8;
    uint64_t acc = 0;
    int64_t j = 0;
    for (; j + FINITE_BLOCK <= n; j += FINITE_BLOCK) /* a constant count: vectorised */
        acc |= dt == LR_F32 ? (uint64_t)exponents_f32(b + es * j, FINITE_BLOCK) << 32
                            : exponents_f64(b + es * j, FINITE_BLOCK);
    acc |= dt == LR_F32 ? (uint64_t)exponents_f32(b + es * j, n - j) << 32 : exponents_f64(b + es * j, n - j);
    return acc >> 63;
}

/* The index of the first NaN or infinity among n floats (dt F32) or doubles (F64), -1 if
 * none. */
static int64_t first_nonfinite(const void *p, lr_dtype dt, int64_t n) {
    if (!any_nonfinite(p, dt, n)) return -1;
    for (int64_t j = 0; j < n; j++)
        if (!isfinite(dt == LR_F64 ? ((const double *)p)[j] : ((const float *)p)[j])) return j;
    return -1;
}

#define READ_RUN 8192 /* elements: 32 KiB of float32, 64 KiB of float64 */

int lr_packed_read_chunk(const lr_checkpoint *ck, const lr_packed_desc *d, const lr_chunk *c, lr_dtype dt,
                         void *dst) {
    if (dt != LR_F64 && dt != LR_F32)
        return lr_fail(LR_E_INVAL, "weights: compute dtype %s is not F64 or F32", lr_dtype_name(dt));
    if (c->slice < 0 || c->slice >= d->nslices || c->elem0 < 0 || c->count < 0 ||
        c->elem0 + c->count > d->slices[c->slice].rows * d->slices[c->slice].cols)
        return lr_fail(LR_E_INVAL, "weights: %s: chunk of %lld elements at %lld of slice %d is outside it",
                       d->name, (long long)c->count, (long long)c->elem0, c->slice);
    const lr_slice *s = &d->slices[c->slice];
    const lr_st_entry *e;
    int rc = lr_checkpoint_tensor(ck, s->src, &e);
    if (rc) return rc;
    int64_t src_cols = e->t.ndim == 2 ? e->t.shape[1] : 1;
    if (e->t.ndim != d->ndim || s->src_row0 + s->rows > e->t.shape[0] || s->src_col0 + s->cols > src_cols)
        return lr_fail(LR_E_SHAPE, "%s: tensor \"%s\": too small for %s of %s",
                       lr_checkpoint_file_of(ck, s->src), s->src, "a slice", d->name);
    size_t sz = lr_dtype_size(e->t.dtype), es = lr_dtype_size(dt);
    unsigned char *to = dst;
    /* Row by row of the slice, where the source rows are src_cols apart; where the slice
     * spans them whole (they follow one another), in runs of READ_RUN elements across
     * rows, each converted and checked while it is in the cache. */
    const bool whole_rows = s->src_col0 == 0 && s->cols == src_cols;
    for (int64_t pos = c->elem0, end = c->elem0 + c->count; pos < end;) {
        int64_t r = pos / s->cols, c0 = pos % s->cols,
                n = whole_rows ? (end - pos < READ_RUN ? end - pos : READ_RUN)
                               : (s->cols - c0 < end - pos ? s->cols - c0 : end - pos);
        const unsigned char *from =
            (const unsigned char *)e->t.data +
            ((size_t)(s->src_row0 + r) * (size_t)src_cols + (size_t)(s->src_col0 + c0)) * sz;
        lr_convert(to, dt, from, e->t.dtype, (size_t)n);
        /* A NaN or Inf weight poisons every stage after it: refuse it here, where the file
         * and the element can still be named. */
        int64_t j = first_nonfinite(to, dt, n);
        if (j >= 0) {
            double v = dt == LR_F64 ? ((const double *)to)[j] : ((const float *)to)[j];
            int64_t at = c0 + j; /* the element's column in the slice, counted from row r */
            return lr_fail(LR_E_NONFINITE, "%s: tensor \"%s\": element [%lld, %lld] is %s",
                           lr_checkpoint_file_of(ck, s->src), s->src,
                           (long long)(s->src_row0 + r + at / s->cols),
                           (long long)(s->src_col0 + at % s->cols), isnan(v) ? "NaN" : "infinite");
        }
        to += (size_t)n * es;
        pos += n;
    }
    return LR_OK;
}

int lr_weights_build(const lr_checkpoint *ck, const lr_plan *p, lr_dtype dt, lr_weights **out) {
    if (dt != LR_F64 && dt != LR_F32)
        return lr_fail(LR_E_INVAL, "weights: compute dtype %s is not F64 or F32", lr_dtype_name(dt));
    lr_weights *w = calloc(1, sizeof *w);
    if (!w || !(w->t = calloc(p->n ? p->n : 1, sizeof *w->t))) {
        free(w);
        return lr_fail(LR_E_NOMEM, "weights: out of memory");
    }
    w->plan = p;
    w->dtype = dt;
    size_t es = lr_dtype_size(dt);
    for (size_t i = 0; i < p->n; i++) {
        const lr_packed_desc *d = &p->d[i];
        lr_tensor *t = &w->t[i];
        t->dtype = dt;
        t->ndim = d->ndim;
        t->shape[0] = d->shape[0];
        t->shape[1] = d->ndim == 2 ? d->shape[1] : 0;
        if (d->tied_to >= 0) {
            t->data = w->t[d->tied_to].data;
            continue;
        }
        size_t n = (size_t)d->shape[0] * (size_t)d->shape[1];
        unsigned char *buf = calloc(n ? n : 1, es);
        if (!buf) {
            lr_weights_free(w);
            return lr_fail(LR_E_NOMEM, "weights: %s: cannot allocate %zu elements", d->name, n);
        }
        t->data = buf;
        /* one chunk per slice (per row where the slice is narrower than the tensor) */
        lr_chunk c = {0};
        while (lr_packed_next_chunk(d, INT64_MAX, &c)) {
            int rc = lr_packed_read_chunk(ck, d, &c, dt, buf + (size_t)c.dst0 * es);
            if (rc) {
                lr_weights_free(w);
                return rc;
            }
        }
        /* Converted: the file's pages of these tensors need not stay resident. */
        for (int k = 0; k < d->nslices; k++) lr_checkpoint_release(ck, d->slices[k].src);
    }
    *out = w;
    return LR_OK;
}

void lr_weights_free(lr_weights *w) {
    if (!w) return;
    for (size_t i = 0; w->t && i < w->plan->n; i++)
        if (w->plan->d[i].tied_to < 0) free((void *)w->t[i].data);
    free(w->t);
    free(w);
}

const lr_plan *lr_weights_plan(const lr_weights *w) { return w->plan; }
lr_dtype lr_weights_dtype(const lr_weights *w) { return w->dtype; }
const lr_tensor *lr_weights_at(const lr_weights *w, size_t i) { return i < w->plan->n ? &w->t[i] : NULL; }

const lr_tensor *lr_weights_get(const lr_weights *w, const char *name) {
    int i = lr_plan_index(w->plan, name);
    return i < 0 ? NULL : &w->t[i];
}
