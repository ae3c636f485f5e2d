/* fixture.c: golden fixtures in the llama-golden/1 format (a safetensors file of inputs
 * and stage outputs), validated against the format and against a model's config. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lr_fixture {
    lr_st_file *f;
    lr_batch batch;
    int64_t *inputs; /* aligned copies: input_ids (T), positions (T), seq_lens (B) */
    lr_st_entry *stages; /* (nstages) copies of the file's entries, [1, T, F] seen as [T, F] */
    size_t nstages;
};

static bool is_input(const char *name) {
    return strcmp(name, "input_ids") == 0 || strcmp(name, "positions") == 0 ||
           strcmp(name, "seq_lens") == 0;
}

/* An I64 vector input; n is its length, or -1 when any length is fine. */
static int input_vector(lr_fixture *fx, const char *name, int64_t n, const lr_st_entry **out) {
    const char *path = lr_st_path(fx->f);
    const lr_st_entry *e = lr_st_find(fx->f, name);
    if (!e) return lr_fail(LR_E_FIXTURE, "%s: tensor \"%s\": missing", path, name);
    if (e->t.dtype != LR_I64 || e->t.ndim != 1)
        return lr_fail(LR_E_FIXTURE, "%s: tensor \"%s\": must be a 1-D I64 tensor (is %s, %d-D)", path,
                       name, lr_dtype_name(e->t.dtype), e->t.ndim);
    if (e->t.shape[0] < 1 || (n >= 0 && e->t.shape[0] != n))
        return lr_fail(LR_E_FIXTURE, "%s: tensor \"%s\": length %lld, expected %lld", path, name,
                       (long long)e->t.shape[0], (long long)n);
    *out = e;
    return LR_OK;
}

static int validate(lr_fixture *fx) {
    const char *path = lr_st_path(fx->f);
    const char *fmt = lr_st_metadata(fx->f, "format");
    if (!fmt) return lr_fail(LR_E_FIXTURE, "%s: __metadata__.format: missing (expected \"%s\")", path, LR_FIXTURE_FORMAT);
    if (strcmp(fmt, LR_FIXTURE_FORMAT) != 0)
        return lr_fail(LR_E_FIXTURE, "%s: __metadata__.format: \"%s\" is not \"%s\"", path, fmt, LR_FIXTURE_FORMAT);
    const lr_st_entry *ids, *pos, *lens = NULL;
    int rc;
    if ((rc = input_vector(fx, "input_ids", -1, &ids))) return rc;
    int64_t T = ids->t.shape[0];
    if ((rc = input_vector(fx, "positions", T, &pos))) return rc;
    if (lr_st_find(fx->f, "seq_lens") && (rc = input_vector(fx, "seq_lens", -1, &lens))) return rc;
    int64_t B = lens ? lens->t.shape[0] : 0;
    if (B > T) return lr_fail(LR_E_FIXTURE, "%s: tensor \"seq_lens\": %lld sequences for %lld tokens", path, (long long)B, (long long)T);
    fx->inputs = malloc((size_t)(2 * T + B) * sizeof(int64_t));
    if (!fx->inputs) return lr_fail(LR_E_NOMEM, "%s: out of memory", path);
    memcpy(fx->inputs, ids->t.data, (size_t)T * 8);
    memcpy(fx->inputs + T, pos->t.data, (size_t)T * 8);
    if (lens) memcpy(fx->inputs + 2 * T, lens->t.data, (size_t)B * 8);
    int64_t sum = 0;
    for (int64_t s = 0; s < B; s++) {
        int64_t len = fx->inputs[2 * T + s];
        if (len < 1 || len > T - sum)
            return lr_fail(LR_E_FIXTURE, "%s: tensor \"seq_lens\": entry %lld = %lld does not fit %lld tokens",
                           path, (long long)s, (long long)len, (long long)T);
        sum += len;
    }
    if (lens && sum != T)
        return lr_fail(LR_E_FIXTURE, "%s: tensor \"seq_lens\": sums to %lld, not %lld tokens", path,
                       (long long)sum, (long long)T);
    for (int64_t t = 0; t < T; t++)
        if (fx->inputs[T + t] < 0)
            return lr_fail(LR_E_FIXTURE, "%s: tensor \"positions\": entry %lld is negative", path, (long long)t);
    fx->batch = (lr_batch){.input_ids = fx->inputs, .positions = fx->inputs + T,
                           .seq_lens = lens ? fx->inputs + 2 * T : NULL, .num_tokens = T,
                           .num_seqs = lens ? B : 1};

    size_t n = lr_st_count(fx->f);
    fx->stages = calloc(n ? n : 1, sizeof *fx->stages);
    if (!fx->stages) return lr_fail(LR_E_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        const lr_st_entry *e = lr_st_at(fx->f, i);
        if (is_input(e->name)) continue;
        /* Engines dump in the dtype they compute in, and often with a batch dimension. */
        lr_dtype d = e->t.dtype;
        if (d != LR_F64 && d != LR_F32 && d != LR_BF16 && d != LR_F16)
            return lr_fail(LR_E_FIXTURE, "%s: tensor \"%s\": stage dtype %s (F64, F32, BF16 or F16 expected)", path,
                           e->name, lr_dtype_name(d));
        lr_st_entry s = *e;
        if (s.t.ndim == 3 && s.t.shape[0] == 1) {
            s.t.ndim = 2;
            s.t.shape[0] = s.t.shape[1];
            s.t.shape[1] = s.t.shape[2];
            s.t.shape[2] = 0;
        }
        if (s.t.ndim != 2 || s.t.shape[0] != T)
            return lr_fail(LR_E_FIXTURE, "%s: tensor \"%s\": stage shape must be [%lld, features] or [1, %lld, features]",
                           path, e->name, (long long)T, (long long)T);
        fx->stages[fx->nstages++] = s;
    }
    return LR_OK;
}

/* Validates the fixture over fx->f once rc (opening or parsing it) is LR_OK; frees fx
 * on any failure. */
static int finish(lr_fixture *fx, int rc, lr_fixture **out) {
    if (rc == LR_OK) rc = validate(fx);
    if (rc) {
        lr_fixture_free(fx);
        return rc;
    }
    *out = fx;
    return LR_OK;
}

int lr_fixture_open(const char *path, lr_fixture **out) {
    lr_fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return lr_fail(LR_E_NOMEM, "%s: out of memory", path);
    return finish(fx, lr_st_open(path, &fx->f), out);
}

int lr_fixture_parse(const void *buf, size_t len, const char *name, lr_fixture **out) {
    lr_fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return lr_fail(LR_E_NOMEM, "%s: out of memory", name);
    return finish(fx, lr_st_parse(buf, len, name, &fx->f), out);
}

void lr_fixture_free(lr_fixture *fx) {
    if (!fx) return;
    lr_st_close(fx->f);
    free(fx->inputs);
    free(fx->stages);
    free(fx);
}

const lr_batch *lr_fixture_batch(const lr_fixture *fx) { return &fx->batch; }
const char *lr_fixture_metadata(const lr_fixture *fx, const char *key) { return lr_st_metadata(fx->f, key); }
size_t lr_fixture_stage_count(const lr_fixture *fx) { return fx->nstages; }
const lr_st_entry *lr_fixture_stage_at(const lr_fixture *fx, size_t i) { return i < fx->nstages ? &fx->stages[i] : NULL; }

const lr_st_entry *lr_fixture_stage(const lr_fixture *fx, const char *name) {
    for (size_t i = 0; i < fx->nstages; i++)
        if (strcmp(fx->stages[i].name, name) == 0) return &fx->stages[i];
    return NULL;
}

int lr_fixture_check_config(const lr_fixture *fx, const lr_config *c) {
    const char *path = lr_st_path(fx->f);
    for (size_t i = 0; i < fx->nstages; i++) {
        const lr_st_entry *e = &fx->stages[i];
        int64_t w = lr_stage_width(c, e->name, NULL);
        if (w < 0)
            return lr_fail(LR_E_FIXTURE, "%s: tensor \"%s\": not a stage of this model (%lld layers)", path,
                           e->name, (long long)c->num_hidden_layers);
        if (e->t.shape[1] != w)
            return lr_fail(LR_E_FIXTURE, "%s: tensor \"%s\": %lld features, the model's config implies %lld",
                           path, e->name, (long long)e->t.shape[1], (long long)w);
    }
    /* The required stages: embedding, every layer, final norm, logits. */
    char name[64];
    for (int64_t l = -1; l <= c->num_hidden_layers + 1; l++) {
        if (l == -1)
            snprintf(name, sizeof name, "%s", lr_model_stage_name(LR_MS_EMBED_TOKENS));
        else if (l == c->num_hidden_layers)
            snprintf(name, sizeof name, "%s", lr_model_stage_name(LR_MS_NORM));
        else if (l == c->num_hidden_layers + 1)
            snprintf(name, sizeof name, "%s", lr_model_stage_name(LR_MS_LM_HEAD));
        else
            lr_layer_stage_name(name, sizeof name, l, LR_LS_LAYER);
        if (!lr_fixture_stage(fx, name))
            return lr_fail(LR_E_FIXTURE, "%s: tensor \"%s\": required stage missing", path, name);
    }
    for (int64_t t = 0; t < fx->batch.num_tokens; t++)
        if (fx->batch.input_ids[t] < 0 || fx->batch.input_ids[t] >= c->vocab_size)
            return lr_fail(LR_E_FIXTURE, "%s: tensor \"input_ids\": entry %lld = %lld is outside the vocabulary of %lld",
                           path, (long long)t, (long long)fx->batch.input_ids[t], (long long)c->vocab_size);
    return LR_OK;
}
