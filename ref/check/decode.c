/* decode.c: the decode scheduler the checkers share. A batch runs as a server runs it:
 * each sequence's first tokens prefilled, all sequences in one batch, then one token of
 * every unfinished sequence per step through the KV cache. Each step goes to a callback,
 * and the steps' stages are put back in the batch's row order, so that a decoded run can
 * be compared with a fixture like a single forward. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* One stage's rows gathered over the steps. */
typedef struct {
    char *name;
    int64_t width;
    double *rows; /* (T, width) */
} gathered;

typedef struct {
    int64_t B, T;
    int64_t *len, *start, *done;                        /* (B) per sequence of the batch */
    int64_t *step_len, *step_seq, *step_row, *full_row; /* (B) per sequence of one step */
    int64_t *ids, *pos;                                 /* (T) one step's tokens */
    gathered *g;
    size_t ng, gcap;
} schedule;

static void schedule_free(schedule *s) {
    for (size_t k = 0; k < s->ng; k++) {
        free(s->g[k].name);
        free(s->g[k].rows);
    }
    free(s->g);
    free(s->len), free(s->start), free(s->done);
    free(s->step_len), free(s->step_seq), free(s->step_row), free(s->full_row);
    free(s->ids), free(s->pos);
}

/* Each sequence's length and first row, and how many tokens the prefill takes of it:
 * all but the last plan->decode, at most plan->prefill (when set), at least one. */
static int schedule_make(schedule *s, const lr_batch *b, const lr_decode_plan *plan) {
    int64_t B = b->num_seqs, T = b->num_tokens;
    if (B < 1 || T < 1 || !b->input_ids || !b->positions || (!b->seq_lens && B != 1))
        return lr_fail(LR_E_INVAL, "decode: batch of %lld tokens in %lld sequences%s", (long long)T,
                       (long long)B, !b->seq_lens && B != 1 ? " without seq_lens" : "");
    if (plan->decode < 0 || plan->prefill < 0)
        return lr_fail(LR_E_INVAL, "decode: plan: decode %lld and prefill %lld must not be negative",
                       (long long)plan->decode, (long long)plan->prefill);
    s->B = B, s->T = T;
    size_t nb = (size_t)B * sizeof(int64_t), nt = (size_t)T * sizeof(int64_t);
    if (!(s->len = malloc(nb)) || !(s->start = malloc(nb)) || !(s->done = malloc(nb)) ||
        !(s->step_len = malloc(nb)) || !(s->step_seq = malloc(nb)) || !(s->step_row = malloc(nb)) ||
        !(s->full_row = malloc(nb)) || !(s->ids = malloc(nt)) || !(s->pos = malloc(nt)))
        return lr_fail(LR_E_NOMEM, "decode: out of memory");
    int64_t at = 0;
    for (int64_t q = 0; q < B; q++) {
        int64_t n = b->seq_lens ? b->seq_lens[q] : T;
        if (n < 1 || n > T - at)
            return lr_fail(LR_E_INVAL, "decode: seq_lens[%lld]: %lld tokens, with %lld of %lld left",
                           (long long)q, (long long)n, (long long)(T - at), (long long)T);
        int64_t p = n - plan->decode;
        if (plan->prefill > 0 && p > plan->prefill) p = plan->prefill;
        s->len[q] = n;
        s->start[q] = at;
        s->done[q] = p > 1 ? p : 1;
        at += n;
    }
    if (at != T)
        return lr_fail(LR_E_INVAL, "decode: seq_lens sum to %lld, not num_tokens %lld", (long long)at,
                       (long long)T);
    return LR_OK;
}

/* The next step's batch: step 0 the prefill, later steps one token of each sequence
 * that has one left. Returns its number of sequences (0: the run is over). */
static int64_t schedule_step(schedule *s, int index, const lr_batch *b, lr_batch *out) {
    int64_t nb = 0, nt = 0;
    for (int64_t q = 0; q < s->B; q++) {
        int64_t from = index == 0 ? 0 : s->done[q], n = index == 0 ? s->done[q] : s->done[q] < s->len[q];
        if (n == 0) continue;
        memcpy(s->ids + nt, b->input_ids + s->start[q] + from, (size_t)n * sizeof *s->ids);
        memcpy(s->pos + nt, b->positions + s->start[q] + from, (size_t)n * sizeof *s->pos);
        s->step_len[nb] = n;
        s->step_seq[nb] = q;
        s->step_row[nb] = nt;
        s->full_row[nb] = s->start[q] + from;
        nb++;
        nt += n;
        if (index > 0) s->done[q]++;
    }
    *out = (lr_batch){.input_ids = s->ids,
                      .positions = s->pos,
                      .seq_lens = s->step_len,
                      .seq_ids = s->step_seq,
                      .num_tokens = nt,
                      .num_seqs = nb};
    return nb;
}

/* Puts a step's rows of every stage at their places in the batch. */
static int schedule_gather(schedule *s, const lr_recorder *rec, const lr_batch *step, int index) {
    for (size_t i = 0; i < lr_recorder_count(rec); i++) {
        const char *name = lr_recorder_name(rec, i);
        const lr_tensor *t = lr_recorder_at(rec, i); /* F64 (step tokens, width) */
        if (t->ndim != 2 || t->shape[0] != step->num_tokens)
            return lr_fail(LR_E_SHAPE, "decode: stage %s: %d dims [%lld, ...], expected [%lld, width]", name,
                           t->ndim, (long long)t->shape[0], (long long)step->num_tokens);
        size_t k = i < s->ng && strcmp(s->g[i].name, name) == 0 ? i : 0;
        while (k < s->ng && strcmp(s->g[k].name, name) != 0)
            k++;
        if (k == s->ng) {
            if (s->ng == s->gcap) {
                size_t cap = s->gcap ? 2 * s->gcap : 64;
                gathered *g = realloc(s->g, cap * sizeof *g);
                if (!g) return lr_fail(LR_E_NOMEM, "decode: out of memory");
                s->g = g;
                s->gcap = cap;
            }
            gathered *g = &s->g[s->ng];
            *g = (gathered){.width = t->shape[1]};
            if (!(g->name = strdup(name)) ||
                !(g->rows = calloc((size_t)(s->T * (g->width ? g->width : 1)), sizeof *g->rows))) {
                free(g->name);
                return lr_fail(LR_E_NOMEM, "decode: out of memory for stage %s", name);
            }
            s->ng++;
        }
        gathered *g = &s->g[k];
        if (t->shape[1] != g->width)
            return lr_fail(LR_E_SHAPE, "decode: stage %s: %lld features in step %lld, %lld before", name,
                           (long long)t->shape[1], (long long)index, (long long)g->width);
        for (int64_t q = 0; q < step->num_seqs; q++)
            memcpy(g->rows + s->full_row[q] * g->width, (const double *)t->data + s->step_row[q] * g->width,
                   (size_t)(step->seq_lens[q] * g->width) * sizeof *g->rows);
    }
    return LR_OK;
}

/* One isolation input of a step: its rows as F64 (step tokens, width). A list, not an
 * array, so that a view handed out stays where it is while later ones are added (a deep
 * model asks for hundreds in a step: SmolLM2's 30 layers). */
typedef struct held_input {
    double *rows;
    lr_tensor view;
    struct held_input *next;
} held_input;

/* A step's view of the whole batch's isolation source: the step's rows of what it returns,
 * kept until the step ends (an op may ask for two inputs before it reads either). */
typedef struct {
    lr_observer rec;          /* the step's recorder */
    const lr_observer *whole; /* its inject gives whole-batch tensors */
    const schedule *s;
    const lr_batch *step;
    held_input *held;
    int rc;
} step_source;

static void step_on_stage(void *user, const char *stage, const lr_tensor *t) {
    step_source *c = user;
    c->rec.on_stage(c->rec.user, stage, t);
}

static const lr_tensor *step_inject(void *user, const char *stage) {
    step_source *c = user;
    const lr_tensor *t = c->whole->inject(c->whole->user, stage);
    if (!t) return NULL;
    int64_t n = lr_tensor_numel(t), w = c->s->T > 0 ? n / c->s->T : 0;
    if (w < 1 || w * c->s->T != n) {
        c->rc = lr_fail(LR_E_SHAPE, "decode: isolation input %s: %lld elements are not %lld rows", stage,
                        (long long)n, (long long)c->s->T);
        return NULL;
    }
    held_input *h = malloc(sizeof *h);
    double *rows = h ? malloc((size_t)(c->step->num_tokens * w) * sizeof *rows) : NULL;
    if (!rows) {
        free(h);
        c->rc = lr_fail(LR_E_NOMEM, "decode: out of memory for isolation input %s", stage);
        return NULL;
    }
    for (int64_t q = 0; q < c->step->num_seqs; q++)
        for (int64_t e = 0; e < c->step->seq_lens[q] * w; e++)
            rows[c->s->step_row[q] * w + e] = lr_tensor_get(t, c->s->full_row[q] * w + e);
    *h = (held_input){.rows = rows,
                      .view = {.dtype = LR_F64, .ndim = 2, .shape = {c->step->num_tokens, w}, .data = rows},
                      .next = c->held};
    c->held = h;
    return &h->view;
}

static void step_source_clear(step_source *c) {
    while (c->held) {
        held_input *next = c->held->next;
        free(c->held->rows);
        free(c->held);
        c->held = next;
    }
}

int lr_decode_run(lr_model *m, const lr_batch *batch, const lr_decode_plan *plan, lr_decode_fn on_step,
                  void *user, const lr_observer *whole) {
    static const lr_decode_plan one_prefill = {0};
    if (!m || !batch) return lr_fail(LR_E_INVAL, "decode: no model or no batch");
    schedule s = {0};
    lr_kv_cache *kv = NULL;
    lr_recorder *rec = NULL;
    int rc = schedule_make(&s, batch, plan ? plan : &one_prefill);
    int64_t longest = 0;
    for (int64_t q = 0; rc == LR_OK && q < s.B; q++)
        longest = s.len[q] > longest ? s.len[q] : longest;
    if (rc == LR_OK) rc = lr_kv_cache_create(m, s.B, longest, &kv);
    if (rc == LR_OK) rc = lr_recorder_create(&rec);
    lr_batch step;
    for (int index = 0; rc == LR_OK && schedule_step(&s, index, batch, &step) > 0; index++) {
        lr_recorder_clear(rec);
        lr_observer obs = lr_recorder_observer(rec);
        step_source src = {.rec = obs, .whole = whole, .s = &s, .step = &step};
        if (whole && whole->inject)
            obs = (lr_observer){.on_stage = step_on_stage,
                                .user = &src,
                                .inject = step_inject,
                                .isolation = whole->isolation};
        lr_tensor hidden, logits;
        rc = lr_model_forward(m, &step, kv, &obs, &hidden);
        if (rc == LR_OK) rc = src.rc;
        if (rc == LR_OK) rc = lr_model_compute_logits(m, &hidden, &obs, &logits);
        if (rc == LR_OK) rc = lr_recorder_status(rec);
        step_source_clear(&src);
        if (rc) break;
        if (whole && whole->on_stage && (rc = schedule_gather(&s, rec, &step, index))) break;
        if (on_step) {
            lr_decode_step st = {.index = index,
                                 .batch = &step,
                                 .step_row = s.step_row,
                                 .full_row = s.full_row,
                                 .stages = rec};
            rc = on_step(user, &st);
        }
    }
    for (size_t k = 0; rc == LR_OK && whole && whole->on_stage && k < s.ng; k++) {
        lr_tensor t = {.dtype = LR_F64, .ndim = 2, .shape = {s.T, s.g[k].width}, .data = s.g[k].rows};
        whole->on_stage(whole->user, s.g[k].name, &t);
    }
    lr_recorder_free(rec);
    lr_kv_cache_free(kv);
    schedule_free(&s);
    return rc;
}
