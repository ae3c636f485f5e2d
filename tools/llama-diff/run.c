/* run.c: running a model for llama-diff: the input (a fixture's batch or --tokens), one
 * forward with every stage recorded (progress on stderr, layer isolation), and check
 * --decode, which runs the fixture as a prefill and single-token steps through the KV
 * cache (lr_decode_run) and compares each step with the fixture's rows. */
#include "diff.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- input ------------------------------------------------------------------------------ */

static int parse_tokens(const char *s, int64_t **ids, int64_t *n) {
    size_t cap = 16, k = 0;
    int64_t *v = malloc(cap * sizeof *v);
    if (!v) return bad("out of memory");
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (!*p) break;
        char *end;
        long long x = strtoll(p, &end, 10);
        if (end == p || x < 0) {
            free(v);
            return bad("--tokens: \"%s\" is not a list of non-negative token ids", s);
        }
        if (k == cap) {
            int64_t *nv = realloc(v, 2 * cap * sizeof *v);
            if (!nv) {
                free(v);
                return bad("out of memory");
            }
            v = nv;
            cap *= 2;
        }
        v[k++] = x;
        p = end;
    }
    if (k == 0) {
        free(v);
        return bad("--tokens: no token ids given");
    }
    *ids = v;
    *n = (int64_t)k;
    return 0;
}

int input_open(const args *a, input *in) {
    memset(in, 0, sizeof *in);
    if (!!a->fixture == !!a->tokens)
        return bad("%s: give exactly one of --fixture FILE or --tokens \"...\"", a->cmd);
    if (a->fixture) {
        int rc = lr_fixture_open(a->fixture, &in->fx);
        if (rc) return lib_fail(rc);
        in->b = *lr_fixture_batch(in->fx);
        return 0;
    }
    int64_t T = 0;
    int status = parse_tokens(a->tokens, &in->ids, &T);
    if (status) return status;
    if (!(in->pos = malloc((size_t)T * sizeof *in->pos))) return bad("out of memory");
    for (int64_t t = 0; t < T; t++)
        in->pos[t] = t;
    in->b = (lr_batch){.input_ids = in->ids, .positions = in->pos, .num_tokens = T, .num_seqs = 1};
    return 0;
}

void input_close(input *in) {
    lr_fixture_free(in->fx);
    free(in->ids);
    free(in->pos);
}

/* ---- one forward -------------------------------------------------------------------------- */

/* Observer of a run: records every stage; with isolate, feeds each layer (or op) its
 * input from the reference's stages. */
typedef struct {
    lr_observer rec;
    lr_stage_source isolate;
    void *isolate_user;
    double start, last;
    long long layers;
    bool progress, tty, shown;
} run_ctx;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void run_on_stage(void *user, const char *stage, const lr_tensor *t) {
    run_ctx *c = user;
    c->rec.on_stage(c->rec.user, stage, t);
    /* Progress once a run has taken more than a second and a half: on a terminal one
     * line rewritten at every layer's output, elsewhere (a CI log) a line every five
     * seconds. */
    if (c->layers <= 0 || !c->progress || lr_stage_kind_of(stage) != LR_STAGE_LAYER) return;
    long long l = (long long)lr_stage_layer(stage);
    double now = now_s();
    if (now - c->start < 1.5 || (!c->tty && now - c->last < 5)) return;
    if (c->tty) {
        fprintf(stderr, "\rllama-diff: layer %lld/%lld", l + 1, c->layers);
        c->shown = true;
    } else {
        fprintf(stderr, "llama-diff: layer %lld/%lld, %.0f s\n", l + 1, c->layers, now - c->start);
    }
    c->last = now;
}

static const lr_tensor *run_inject(void *user, const char *stage) {
    run_ctx *c = user;
    return c->isolate(c->isolate_user, stage);
}

const char *devices_note(int devices, int tp) {
    static char buf[48];
    if (devices == 0) return "";
    if (devices == 1) return tp > 1 ? ", ranks in turn on one GPU" : ", one GPU";
    snprintf(buf, sizeof buf, ", over %d GPUs (NCCL)", devices);
    return buf;
}

/* The model of a run, with the faults --inject asks for (said on stderr: a run with a
 * fault is not a measurement of the backend). Returns an exit status. */
static int make_model(const args *a, const lr_checkpoint *ck, lr_model **out) {
    lr_model *m;
    int rc = lr_model_create(ck, &a->opt, &m);
    if (rc) return lib_fail(rc);
    if (a->nfaults && (rc = lr_model_set_faults(m, a->faults, (size_t)a->nfaults))) {
        lr_model_free(m);
        return lib_fail(rc);
    }
    for (int k = 0; k < a->nfaults; k++)
        fprintf(stderr, "llama-diff: injecting a fault (%s backend): %s=%s:%g\n",
                a->opt.backend ? a->opt.backend : "cpu", a->faults[k].stage,
                lr_fault_kind_name(a->faults[k].kind), a->faults[k].eps);
    *out = m;
    return 0;
}

/* Right after loading: the model's GPUs and device memory, the host's peak so far. */
static void loaded_stats(const lr_model *m, run_stats *st) {
    if (!st) return;
    memset(st, 0, sizeof *st);
    st->devices = lr_model_num_devices(m);
    lr_model_memory(m, &st->mem);
    st->host_peak_after_load = lr_host_peak_rss();
}

/* Bytes as GiB, MiB or KiB, whichever reads best. */
static const char *human(uint64_t b, char *buf, size_t size) {
    if (b >= (1u << 30))
        snprintf(buf, size, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= (1u << 20))
        snprintf(buf, size, "%.1f MiB", b / (1024.0 * 1024));
    else
        snprintf(buf, size, "%.1f KiB", b / 1024.0);
    return buf;
}

const char *memory_note(const run_stats *st, const char *backend, char *buf, size_t size) {
    char h[4][32];
    const double G = 1024.0 * 1024 * 1024;
    int n = snprintf(buf, size, "host peak RSS %.2f GiB (%.2f GiB after loading)",
                     st->host_peak_after_run / G, st->host_peak_after_load / G);
    if (st->mem.host_weights_budget && n >= 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n,
                      "; cpu weights %s, at most %s held of a %s budget, %s converted",
                      human(st->mem.host_weights_total, h[0], sizeof h[0]),
                      human(st->mem.host_weights_peak, h[1], sizeof h[1]),
                      human(st->mem.host_weights_budget, h[2], sizeof h[2]),
                      human(st->mem.host_weights_converted, h[3], sizeof h[3]));
    if (st->devices > 0 && n >= 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n,
                 "; %s weights %.2f GiB on %d GPU%s, %.2f GiB in use there after loading", backend,
                 st->mem.device_weights / G, st->devices, st->devices == 1 ? "" : "s",
                 st->mem.device_used / G);
    return buf;
}

json_t *memory_json(const run_stats *st) {
    return json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "host_peak_rss", (json_int_t)st->host_peak_after_run,
        "host_peak_rss_after_load", (json_int_t)st->host_peak_after_load, "device_weights",
        (json_int_t)st->mem.device_weights, "device_used_after_load", (json_int_t)st->mem.device_used,
        "load_staging", (json_int_t)st->mem.load_staging, "host_weights_budget",
        (json_int_t)st->mem.host_weights_budget, "host_weights_total", (json_int_t)st->mem.host_weights_total,
        "host_weights_peak", (json_int_t)st->mem.host_weights_peak, "host_weights_converted",
        (json_int_t)st->mem.host_weights_converted);
}

int run_model(const args *a, const lr_checkpoint *ck, const lr_batch *b, lr_recorder *rec,
              lr_stage_source isolate, void *isolate_user, run_stats *stats) {
    lr_model *m;
    int rc = make_model(a, ck, &m);
    if (rc) return rc;
    loaded_stats(m, stats);
    run_ctx ctx = {.rec = lr_recorder_observer(rec),
                   .isolate = isolate,
                   .isolate_user = isolate_user,
                   .start = now_s(),
                   .layers = (long long)lr_checkpoint_config(ck)->num_hidden_layers,
                   .progress = !a->quiet,
                   .tty = isatty(STDERR_FILENO) != 0};
    lr_observer obs = {.on_stage = run_on_stage,
                       .user = &ctx,
                       .inject = isolate ? run_inject : NULL,
                       .isolation = a->isolate_ops ? LR_ISOLATE_OP : LR_ISOLATE_LAYER};
    lr_tensor hidden, logits;
    rc = lr_model_forward(m, b, NULL, &obs, &hidden);
    if (rc == LR_OK) rc = lr_model_compute_logits(m, &hidden, &obs, &logits);
    if (rc == LR_OK) rc = lr_recorder_status(rec);
    if (ctx.shown) fputs("\r\033[K", stderr);
    if (stats) lr_model_memory(m, &stats->mem); /* the weight cache's figures after the run */
    lr_model_free(m);
    if (stats) stats->host_peak_after_run = lr_host_peak_rss();
    return rc ? lib_fail(rc) : 0;
}

/* ---- check --decode ------------------------------------------------------------------------ */

typedef struct {
    const args *a;
    const lr_fixture *fx;
    json_t *steps; /* one object per step */
} decode_ctx;

/* A step's rows of every stage against the fixture's rows, sequence by sequence: each
 * stage's relative L2 over the step's rows (kept as "rels" until decode_steps_judge holds
 * them to the verdict's budgets) and the logits error, as a JSON object. */
static int on_decode_step(void *user, const lr_decode_step *st) {
    decode_ctx *c = user;
    const lr_batch *b = st->batch;
    double logits_err = 0;
    json_t *rels = json_object();
    for (size_t i = 0; rels && i < lr_recorder_count(st->stages); i++) {
        const char *name = lr_recorder_name(st->stages, i);
        const lr_st_entry *g = lr_fixture_stage(c->fx, name);
        if (!g) continue;
        const double *got = lr_recorder_at(st->stages, i)->data; /* (step tokens, w) */
        int64_t w = g->t.shape[1];
        double dd = 0, bb = 0;
        for (int64_t q = 0; q < b->num_seqs; q++) {
            for (int64_t e = 0; e < b->seq_lens[q] * w; e++) {
                double x = got[st->step_row[q] * w + e], y = lr_tensor_get(&g->t, st->full_row[q] * w + e);
                dd += (x - y) * (x - y);
                bb += y * y;
            }
        }
        double rel = bb > 0 ? sqrt(dd / bb) : sqrt(dd);
        json_object_set_new(rels, g->name, json_real(isfinite(rel) ? rel : -1.0));
        if (strcmp(name, lr_model_stage_name(LR_MS_LM_HEAD)) == 0) logits_err = rel;
    }
    json_t *o = json_pack("{s:i, s:s, s:I, s:f, s:o*}", "step", st->index, "kind",
                          st->index == 0 ? "prefill" : "decode", "tokens", (json_int_t)b->num_tokens,
                          "lm_head_rel_l2", logits_err, "rels", rels);
    if (!o || json_array_append_new(c->steps, o)) return LR_E_NOMEM;
    return 0;
}

void decode_steps_judge(json_t *steps, const report *r, bool text) {
    size_t k;
    json_t *st;
    json_array_foreach(steps, k, st) {
        bool prefill = strcmp(json_string_value(json_object_get(st, "kind")), "prefill") == 0;
        json_t *rels = json_object_get(st, "rels");
        double worst = 0;
        const char *worst_name = "";
        for (size_t i = 0; i < r->n; i++) { /* in forward order, each stage's figure found by name */
            const lr_stage_result *x = &r->res[i];
            const json_t *v = json_object_get(rels, x->name);
            if (!v) continue;
            /* the verdict's budgets: a prefill's rows as the stage's relative L2, a decode
             * step's token (one per sequence) as a token */
            double budget = prefill ? x->tolerance : x->m.crit.token, rel = json_real_value(v);
            double share = rel < 0 ? INFINITY : rel / budget;
            if (!(share <= worst)) worst = share, worst_name = x->name;
        }
        json_object_set_new(st, "worst_stage", json_string(worst_name));
        json_object_set_new(st, "worst_budget_used", json_real(isfinite(worst) ? worst : -1.0));
        if (text)
            printf("%s %3lld: %3lld tokens, logits rel_l2 %.2e, worst stage %s at %.1f%% of its %s budget\n",
                   prefill ? "prefill" : "decode ", (long long)json_integer_value(json_object_get(st, "step")),
                   (long long)json_integer_value(json_object_get(st, "tokens")),
                   json_real_value(json_object_get(st, "lm_head_rel_l2")), worst_name, 100 * worst,
                   prefill ? "stage" : "token");
        json_object_del(st, "rels");
    }
    if (text && json_array_size(steps)) fputc('\n', stdout);
}

/* The whole-run observer of a decoded run: records every stage and, isolated, gives the
 * steps their inputs from the reference's stages. */
typedef struct {
    lr_observer rec;
    lr_stage_source src;
    void *src_user;
} whole_ctx;

static void whole_on_stage(void *user, const char *stage, const lr_tensor *t) {
    whole_ctx *c = user;
    c->rec.on_stage(c->rec.user, stage, t);
}

static const lr_tensor *whole_inject(void *user, const char *stage) {
    whole_ctx *c = user;
    return c->src(c->src_user, stage);
}

static lr_observer whole_observer(whole_ctx *c, const args *a, lr_recorder *rec, lr_stage_source isolate,
                                  void *isolate_user) {
    *c = (whole_ctx){.rec = lr_recorder_observer(rec), .src = isolate, .src_user = isolate_user};
    return (lr_observer){.on_stage = whole_on_stage,
                         .user = c,
                         .inject = isolate ? whole_inject : NULL,
                         .isolation = a->isolate_ops ? LR_ISOLATE_OP : LR_ISOLATE_LAYER};
}

int run_decoded(const args *a, const lr_checkpoint *ck, const lr_batch *b, lr_recorder *rec,
                lr_stage_source isolate, void *isolate_user) {
    lr_model *m;
    int rc = make_model(a, ck, &m);
    if (rc) return rc;
    lr_decode_plan plan = {.decode = a->decode};
    whole_ctx wc;
    lr_observer whole = whole_observer(&wc, a, rec, isolate, isolate_user);
    rc = lr_decode_run(m, b, &plan, NULL, NULL, &whole);
    if (rc == LR_OK) rc = lr_recorder_status(rec);
    lr_model_free(m);
    return rc ? lib_fail(rc) : 0;
}

int run_decode(const args *a, const lr_checkpoint *ck, const lr_fixture *fx, lr_recorder *rec, json_t **steps_out,
               run_stats *stats) {
    decode_ctx c = {.a = a, .fx = fx, .steps = json_array()};
    if (!c.steps) return bad("out of memory");
    lr_model *m;
    int rc = make_model(a, ck, &m);
    if (rc) {
        json_decref(c.steps);
        return rc;
    }
    loaded_stats(m, stats);
    /* Every sequence prefilled but its last a->decode tokens (at least one). */
    lr_decode_plan plan = {.decode = a->decode};
    whole_ctx wc;
    lr_observer whole = whole_observer(&wc, a, rec, a->isolate ? fixture_source : NULL, (void *)fx);
    rc = lr_decode_run(m, lr_fixture_batch(fx), &plan, on_decode_step, &c, &whole);
    if (rc == LR_OK) rc = lr_recorder_status(rec);
    if (stats) lr_model_memory(m, &stats->mem); /* the weight cache's figures after the run */
    lr_model_free(m);
    if (stats) stats->host_peak_after_run = lr_host_peak_rss();
    if (rc) {
        json_decref(c.steps);
        return lib_fail(rc);
    }
    *steps_out = c.steps;
    return 0;
}
