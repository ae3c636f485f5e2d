/* model.c: the backend-independent front of a model: option and batch validation, the
 * KV cache's bookkeeping, and dispatch through the backend vtable. */
#include "backend.h"
#include "rounding.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

struct lr_model {
    const lr_backend_ops *ops;
    void *impl;
    lr_config cfg;
    lr_options opt;
    lr_fault *faults; /* (num_faults), handed to the backend */
    size_t num_faults;
};

struct lr_kv_cache {
    lr_model *m;
    void *impl;
    int64_t max_seqs, max_len;
    int64_t *len; /* (max_seqs) tokens held per slot */
};

void lr_options_init(lr_options *o) {
    memset(o, 0, sizeof *o);
    o->backend = "cpu";
    o->precision = LR_F64;
    o->tp_size = 1;
}

static const lr_backend_ops *find_backend(const char *name) {
    return lr_backend_ops_of(lr_backend_find(name ? name : "cpu"));
}

int lr_model_create(const lr_checkpoint *ck, const lr_options *opt, lr_model **out) {
    lr_options o;
    if (opt)
        o = *opt;
    else
        lr_options_init(&o);
    const lr_backend_ops *ops = find_backend(o.backend);
    if (!ops) return LR_E_BACKEND; /* the message says which are built in */
    if (o.tp_size < 1) return lr_fail(LR_E_TP, "tp_size: %d must be at least 1", o.tp_size);
    lr_rounding r;
    int rc = lr_rounding_find(o.rounding, &r);
    if (rc) return rc;
    if (r != LR_ROUNDING_CUDA && !lr_backend_find(ops->name)->rounding_profiles)
        return lr_fail(LR_E_INVAL,
                       "rounding: the %s backend rounds as the rounding map only (profile \"%s\")", ops->name,
                       o.rounding);
    if (r != LR_ROUNDING_CUDA && o.precision != LR_BF16 && o.precision != LR_F16)
        return lr_fail(LR_E_INVAL, "rounding: profile \"%s\" is for the emulated bf16/fp16 path, not %s",
                       o.rounding, lr_dtype_name(o.precision));
    if (o.attention_like && !lr_backend_find(ops->name)->rounding_profiles)
        return lr_fail(LR_E_INVAL, "attention_like: the %s backend runs its own attention variants (kernels)",
                       ops->name);
    if (o.attention_like && !lr_attention_variant_declared(o.attention_like))
        return lr_fail(LR_E_INVAL, "attention_like: \"%s\" is no attention variant of the rounding map "
                                   "(ref/core/rounding.h) nor one a kernel plugin declared",
                       o.attention_like);
    lr_model *m = calloc(1, sizeof *m);
    if (!m) return lr_fail(LR_E_NOMEM, "model: out of memory");
    m->ops = ops;
    m->cfg = *lr_checkpoint_config(ck);
    m->opt = o;
    rc = ops->create(ck, &o, &m->impl);
    if (rc) {
        free(m);
        return rc;
    }
    *out = m;
    return LR_OK;
}

void lr_model_free(lr_model *m) {
    if (!m) return;
    m->ops->destroy(m->impl);
    free(m->faults);
    free(m);
}

const lr_config *lr_model_config(const lr_model *m) { return &m->cfg; }
lr_dtype lr_model_precision(const lr_model *m) { return m->opt.precision; }

int lr_kv_cache_create(lr_model *m, int64_t max_seqs, int64_t max_len, lr_kv_cache **out) {
    if (max_seqs < 1 || max_len < 1 || max_seqs > LR_MAX_DIM || max_len > LR_MAX_DIM)
        return lr_fail(LR_E_INVAL, "kv cache: max_seqs %lld and max_len %lld must be positive",
                       (long long)max_seqs, (long long)max_len);
    lr_kv_cache *c = calloc(1, sizeof *c);
    if (!c || !(c->len = calloc((size_t)max_seqs, sizeof *c->len))) {
        free(c);
        return lr_fail(LR_E_NOMEM, "kv cache: out of memory");
    }
    c->m = m;
    c->max_seqs = max_seqs;
    c->max_len = max_len;
    int rc = m->ops->kv_create(m->impl, max_seqs, max_len, &c->impl);
    if (rc) {
        free(c->len);
        free(c);
        return rc;
    }
    *out = c;
    return LR_OK;
}

void lr_kv_cache_free(lr_kv_cache *c) {
    if (!c) return;
    c->m->ops->kv_free(c->impl);
    free(c->len);
    free(c);
}

void lr_kv_cache_reset(lr_kv_cache *c) {
    memset(c->len, 0, (size_t)c->max_seqs * sizeof *c->len);
    if (c->m->ops->kv_reset) c->m->ops->kv_reset(c->impl);
}

/* Checks a batch against the model and lays out its sequences (past left 0). */
static int layout_batch(const lr_model *m, const lr_batch *b, lr_seq_span *spans) {
    if (!b->input_ids || !b->positions)
        return lr_fail(LR_E_INVAL, "batch: input_ids and positions are required");
    for (int64_t t = 0; t < b->num_tokens; t++) {
        if (b->input_ids[t] < 0 || b->input_ids[t] >= m->cfg.vocab_size)
            return lr_fail(LR_E_INVAL, "batch: input_ids[%lld] = %lld is outside the vocabulary (0..%lld)",
                           (long long)t, (long long)b->input_ids[t], (long long)m->cfg.vocab_size - 1);
        if (b->positions[t] < 0 || b->positions[t] > LR_MAX_DIM)
            return lr_fail(LR_E_INVAL, "batch: positions[%lld] = %lld is out of range", (long long)t,
                           (long long)b->positions[t]);
    }
    int64_t start = 0, nseq = b->seq_lens ? b->num_seqs : 1;
    for (int64_t s = 0; s < nseq; s++) {
        int64_t len = b->seq_lens ? b->seq_lens[s] : b->num_tokens;
        int64_t slot = b->seq_ids ? b->seq_ids[s] : s;
        if (len < 1 || len > b->num_tokens - start)
            return lr_fail(LR_E_INVAL, "batch: seq_lens[%lld] = %lld does not fit the %lld tokens",
                           (long long)s, (long long)len, (long long)b->num_tokens);
        if (slot < 0 || slot >= LR_MAX_DIM)
            return lr_fail(LR_E_INVAL, "batch: seq_ids[%lld] = %lld is not a cache slot", (long long)s,
                           (long long)slot);
        for (int64_t k = 0; k < s; k++)
            if (spans[k].slot == slot)
                return lr_fail(LR_E_INVAL, "batch: seq_ids[%lld] = %lld appears twice", (long long)s,
                               (long long)slot);
        spans[s] = (lr_seq_span){.start = start, .len = len, .slot = slot, .past = 0};
        start += len;
    }
    if (start != b->num_tokens)
        return lr_fail(LR_E_INVAL, "batch: seq_lens add up to %lld, not num_tokens %lld", (long long)start,
                       (long long)b->num_tokens);
    return LR_OK;
}

/* Fills in what each slot already holds and checks the cache has room. */
static int place_in_cache(const lr_kv_cache *c, lr_seq_span *spans, int64_t nseq) {
    for (int64_t s = 0; s < nseq; s++) {
        if (spans[s].slot >= c->max_seqs)
            return lr_fail(LR_E_CAPACITY, "batch: sequence slot %lld but the KV cache has %lld slots",
                           (long long)spans[s].slot, (long long)c->max_seqs);
        spans[s].past = c->len[spans[s].slot];
        if (spans[s].past + spans[s].len > c->max_len)
            return lr_fail(LR_E_CAPACITY, "batch: sequence %lld needs %lld cached tokens; the cache holds %lld",
                           (long long)s, (long long)(spans[s].past + spans[s].len), (long long)c->max_len);
    }
    return LR_OK;
}

static int forward(lr_model *m, const lr_batch *b, lr_kv_cache *cache, const lr_observer *obs,
                   const int64_t *rows, int64_t n, lr_tensor *hidden) {
    if (!b || b->num_tokens < 1 || b->num_tokens > LR_MAX_DIM)
        return lr_fail(LR_E_INVAL, "batch: num_tokens must be in 1..%lld", (long long)LR_MAX_DIM);
    if (rows) {
        if (n < 1 || n > b->num_tokens)
            return lr_fail(LR_E_INVAL, "forward_rows: n %lld is outside 1..num_tokens (%lld)", (long long)n,
                           (long long)b->num_tokens);
        for (int64_t i = 0; i < n; i++)
            if (rows[i] < 0 || rows[i] >= b->num_tokens)
                return lr_fail(LR_E_INVAL, "forward_rows: rows[%lld] = %lld is outside 0..%lld", (long long)i,
                               (long long)rows[i], (long long)(b->num_tokens - 1));
    }
    if (b->seq_lens && (b->num_seqs < 1 || b->num_seqs > b->num_tokens))
        return lr_fail(LR_E_INVAL, "batch: num_seqs %lld is outside 1..num_tokens", (long long)b->num_seqs);
    if (cache && cache->m != m) return lr_fail(LR_E_INVAL, "forward: the KV cache belongs to another model");
    lr_batch one = *b;
    if (!b->seq_lens) one.num_seqs = 1;
    lr_seq_span *spans = calloc((size_t)one.num_seqs, sizeof *spans);
    if (!spans) return lr_fail(LR_E_NOMEM, "forward: out of memory");
    lr_kv_cache *tmp = NULL;
    int rc = layout_batch(m, &one, spans);
    if (rc == LR_OK && !cache) {
        /* A fresh cache just large enough for this batch. */
        int64_t slots = 0, longest = 0;
        for (int64_t s = 0; s < one.num_seqs; s++) {
            slots = spans[s].slot + 1 > slots ? spans[s].slot + 1 : slots;
            longest = spans[s].len > longest ? spans[s].len : longest;
        }
        if ((rc = lr_kv_cache_create(m, slots, longest, &tmp)) == LR_OK) cache = tmp;
    }
    if (rc == LR_OK) rc = place_in_cache(cache, spans, one.num_seqs);
    if (rc == LR_OK) rc = m->ops->forward(m->impl, &one, spans, cache->impl, obs, rows, n, hidden);
    if (rc == LR_OK)
        for (int64_t s = 0; s < one.num_seqs; s++) cache->len[spans[s].slot] += spans[s].len;
    free(spans);
    lr_kv_cache_free(tmp);
    return rc;
}

int lr_model_forward(lr_model *m, const lr_batch *b, lr_kv_cache *cache, const lr_observer *obs,
                     lr_tensor *hidden) {
    return forward(m, b, cache, obs, NULL, 0, hidden);
}

int lr_model_forward_rows(lr_model *m, const lr_batch *b, lr_kv_cache *cache, const lr_observer *obs,
                          const int64_t *rows, int64_t n, lr_tensor *hidden) {
    if (!rows) return lr_fail(LR_E_INVAL, "forward_rows: rows is NULL");
    return forward(m, b, cache, obs, rows, n, hidden);
}

/* hidden's shape and dtype, as compute_logits and greedy (what) take it. */
static int check_hidden(const lr_model *m, const lr_tensor *hidden, const char *what) {
    if (!hidden || hidden->ndim != 2 || hidden->shape[1] != m->cfg.hidden_size ||
        hidden->dtype != m->opt.precision || hidden->shape[0] < 1)
        return lr_fail(LR_E_INVAL, "%s: hidden must be (T, %lld) in %s", what, (long long)m->cfg.hidden_size,
                       lr_dtype_name(m->opt.precision));
    return LR_OK;
}

int lr_model_compute_logits(lr_model *m, const lr_tensor *hidden, const lr_observer *obs, lr_tensor *logits) {
    int rc = check_hidden(m, hidden, "compute_logits");
    if (rc) return rc;
    /* Op isolation: the LM head's input is the source's model.norm where it has one (the
     * head is an op like the others), rounded to the model's dtype as every isolated input
     * is, instead of the final norm the forward recomputed. */
    const lr_tensor *norm = obs && obs->inject && obs->isolation == LR_ISOLATE_OP
                                ? obs->inject(obs->user, lr_model_stage_name(LR_MS_NORM))
                                : NULL;
    if (!norm || norm->ndim != 2 || norm->shape[0] != hidden->shape[0] || norm->shape[1] != hidden->shape[1])
        return m->ops->compute_logits(m->impl, hidden, obs, logits);
    size_t n = (size_t)lr_tensor_numel(hidden);
    void *fed = malloc(n * lr_dtype_size(hidden->dtype));
    if (!fed) return lr_fail(LR_E_NOMEM, "compute_logits: out of memory for the isolated input");
    lr_convert(fed, hidden->dtype, norm->data, norm->dtype, n);
    lr_tensor in = *hidden;
    in.data = fed;
    rc = m->ops->compute_logits(m->impl, &in, obs, logits);
    free(fed);
    return rc;
}

/* The greedy rule over a row of n logits held as float64 (exact for every dtype): the
 * first NaN if there is one, else the first of the largest. */
static int64_t argmax_row(const double *v, int64_t n) {
    int64_t best = 0;
    for (int64_t j = 1; j < n && !isnan(v[best]); j++)
        if (isnan(v[j]) || v[j] > v[best]) best = j;
    return best;
}

int lr_model_greedy(lr_model *m, const lr_tensor *hidden, const lr_observer *obs, int64_t *tokens) {
    int rc = check_hidden(m, hidden, "greedy");
    if (rc) return rc;
    if (!tokens) return lr_fail(LR_E_INVAL, "greedy: tokens is NULL");
    if (m->ops->greedy && !(obs && (obs->on_stage || obs->inject)))
        return m->ops->greedy(m->impl, hidden, tokens);
    lr_tensor lg;
    if ((rc = lr_model_compute_logits(m, hidden, obs, &lg))) return rc;
    int64_t T = lg.shape[0], V = lg.shape[1];
    size_t es = lr_dtype_size(lg.dtype);
    double *row = malloc((size_t)V * sizeof *row);
    if (!row) return lr_fail(LR_E_NOMEM, "greedy: out of memory for a row of %lld logits", (long long)V);
    for (int64_t t = 0; t < T; t++) {
        lr_convert(row, LR_F64, (const char *)lg.data + (size_t)(t * V) * es, lg.dtype, (size_t)V);
        tokens[t] = argmax_row(row, V);
    }
    free(row);
    return LR_OK;
}

const char *lr_prof_op_name(lr_prof_op op) {
    static const char *const names[] = {
#define LR_PROF_NAME(name, label) label,
        LR_PROF_MAP(LR_PROF_NAME)
#undef LR_PROF_NAME
    };
    return (unsigned)op < LR_PROF_COUNT ? names[op] : "unknown";
}

int lr_model_num_devices(const lr_model *m) { return m->ops->num_devices ? m->ops->num_devices(m->impl) : 0; }

int lr_model_memory(const lr_model *m, lr_memory *out) {
    if (!m || !out) return lr_fail(LR_E_INVAL, "model memory: NULL argument");
    memset(out, 0, sizeof *out);
    if (m->ops->memory) m->ops->memory(m->impl, out);
    return LR_OK;
}

uint64_t lr_host_peak_rss(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0 || ru.ru_maxrss < 0) return 0;
    return (uint64_t)ru.ru_maxrss * 1024; /* KiB on Linux */
}

long lr_host_status_kib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') v = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return v;
}

bool lr_host_peak_rss_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

int lr_model_set_profiling(lr_model *m, bool on) {
    if (!m->ops->set_profiling)
        return lr_fail(LR_E_BACKEND, "profiling: the %s backend has no profiler", m->ops->name);
    m->ops->set_profiling(m->impl, on);
    return LR_OK;
}

int lr_model_get_profile(const lr_model *m, lr_profile *out) {
    if (!m->ops->get_profile)
        return lr_fail(LR_E_BACKEND, "profiling: the %s backend has no profiler", m->ops->name);
    m->ops->get_profile(m->impl, out);
    return LR_OK;
}

int lr_model_graph_stats(const lr_model *m, lr_graph_stats *out) {
    if (!m->ops->graph_stats)
        return lr_fail(LR_E_BACKEND, "graphs: the %s backend has no CUDA graphs", m->ops->name);
    m->ops->graph_stats(m->impl, out);
    return LR_OK;
}

int lr_model_set_faults(lr_model *m, const lr_fault *faults, size_t n) {
    if (!m->ops->set_faults)
        return lr_fail(LR_E_BACKEND, "faults: the %s backend takes no faults", m->ops->name);
    for (size_t k = 0; k < n; k++) {
        int rc = lr_fault_check(&faults[k], &m->cfg);
        if (rc) return rc;
        /* Two structural faults of one kind at one stage would each redefine the op. */
        for (size_t j = 0; j < k && lr_fault_is_structural(faults[k].kind); j++)
            if (faults[j].kind == faults[k].kind && strcmp(faults[j].stage, faults[k].stage) == 0)
                return lr_fail(LR_E_INVAL, "fault at \"%s\": two %s faults at one stage", faults[k].stage,
                               lr_fault_kind_name(faults[k].kind));
    }
    lr_fault *copy = NULL;
    if (n && !(copy = malloc(n * sizeof *copy))) return lr_fail(LR_E_NOMEM, "faults: out of memory");
    if (n) memcpy(copy, faults, n * sizeof *copy);
    m->ops->set_faults(m->impl, copy, n);
    free(m->faults);
    m->faults = copy;
    m->num_faults = n;
    return LR_OK;
}
