/* test_forward.c: the CPU reference against the committed golden fixtures: every
 * fixture, every stage, f64 and f32, tp 1, 2 and 4, and the emulated bf16 and fp16 (the
 * float32 path rounded where the CUDA path rounds, ref/core/rounding.h) at tp 1 and 2
 * within their budgets; decode steps through the KV cache against the full-prompt rows;
 * the observer contract and bitwise repeatability; bad fixtures and batches. */
#include "llamaref.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture_cases.h"

static const lr_dtype precisions[] = {LR_F64, LR_F32};
static const int tps[] = {1, 2, 4};
static const lr_dtype emulated[] = {LR_BF16, LR_F16};

static lr_model *make_model(const lr_checkpoint *ck, lr_dtype precision, int tp) {
    lr_options o;
    lr_options_init(&o);
    o.precision = precision;
    o.tp_size = tp;
    lr_model *m;
    int rc = lr_model_create(ck, &o, &m);
    ck_assert_msg(rc == LR_OK, "%s", lr_last_error());
    return m;
}

/* Runs a batch through forward and compute_logits with a recorder attached. */
static void run_recorded(lr_model *m, const lr_batch *b, lr_recorder *rec) {
    lr_observer obs = lr_recorder_observer(rec);
    lr_tensor hidden, logits;
    int rc = lr_model_forward(m, b, NULL, &obs, &hidden);
    ck_assert_msg(rc == LR_OK, "%s", lr_last_error());
    rc = lr_model_compute_logits(m, &hidden, &obs, &logits);
    ck_assert_msg(rc == LR_OK, "%s", lr_last_error());
    ck_assert_msg(lr_recorder_status(rec) == LR_OK, "%s", lr_last_error());
}

/* Every fixture stage against the tolerance table's budget for the precision. */
static void expect_golden(int ci, lr_dtype precision, int tp) {
    loaded L = load_case(&cases[ci]);
    lr_model *m = make_model(L.ck, precision, tp);
    lr_recorder *rec;
    ck_assert_int_eq(lr_recorder_create(&rec), LR_OK);
    run_recorded(m, lr_fixture_batch(L.fx), rec);
    for (size_t i = 0; i < lr_fixture_stage_count(L.fx); i++) {
        const lr_st_entry *gold = lr_fixture_stage_at(L.fx, i);
        const lr_tensor *got = lr_recorder_find(rec, gold->name);
        ck_assert_msg(got != NULL, "%s: stage %s not reported", cases[ci].fixture, gold->name);
        /* Every criterion of the stage: whole tensor, worst token, every element. */
        lr_metrics met;
        lr_criteria crit = lr_stage_criteria(lr_stage_kind_of(gold->name), precision, -1);
        ck_assert_int_eq(lr_compare_stage(got, &gold->t, &crit, &met), LR_OK);
        ck_assert_msg(lr_metrics_pass(&met, crit.rel_l2),
                      "%s %s tp %d: %s fails (bits %u): rel_l2 %.3e (%.1e), token %.3e (%.1e), %lld elements over",
                      cases[ci].fixture, lr_dtype_name(precision), tp, gold->name, lr_metrics_failures(&met, crit.rel_l2),
                      met.rel_l2, crit.rel_l2, met.token_rel_l2, crit.token, (long long)met.elem_fail);
    }
    lr_recorder_free(rec);
    lr_model_free(m);
    unload(&L);
}

/* Loop index = case x precision (f64, f32) x tp (1, 2, 4). */
/* The host memory readings the CLI and the benches report: the resident set now and its
 * peak are positive and ordered, an unknown key is -1. */
START_TEST(host_memory_readings) {
    long rss = lr_host_status_kib("VmRSS"), hwm = lr_host_status_kib("VmHWM");
    ck_assert_msg(rss > 0 && hwm >= rss, "VmRSS %ld KiB, VmHWM %ld KiB", rss, hwm);
    ck_assert_int_eq(lr_host_status_kib("NoSuchKey"), -1);
    ck_assert(lr_host_peak_rss() >= (uint64_t)rss * 1024 / 2);
    if (lr_host_peak_rss_reset()) ck_assert(lr_host_status_kib("VmHWM") > 0);
}
END_TEST

START_TEST(every_stage_matches_golden) {
    expect_golden(_i / 6, precisions[(_i / 3) % 2], tps[_i % 3]);
}
END_TEST

/* The emulated precisions at their own budgets: loop index = case x (bf16, fp16) x tp
 * (1, 2). */
START_TEST(emulated_stages_match_golden) {
    expect_golden(_i / 4, emulated[(_i / 2) % 2], tps[_i % 2]);
}
END_TEST

/* The observer sees each stage of the spec exactly once, with the spec's shape. */
START_TEST(observer_sees_every_stage_once) {
    loaded L = load_case(&cases[_i]);
    const lr_config *c = lr_checkpoint_config(L.ck);
    lr_model *m = make_model(L.ck, LR_F64, 2);
    lr_recorder *rec;
    ck_assert_int_eq(lr_recorder_create(&rec), LR_OK);
    run_recorded(m, lr_fixture_batch(L.fx), rec);
    /* embed + 15 per layer (14 sub-stages + the layer) + norm + lm_head */
    ck_assert_int_eq((int)lr_recorder_count(rec), (int)(3 + 15 * c->num_hidden_layers));
    for (size_t i = 0; i < lr_recorder_count(rec); i++) {
        const char *name = lr_recorder_name(rec, i);
        int64_t w = lr_stage_width(c, name, NULL);
        ck_assert_msg(w > 0, "unknown stage %s", name);
        const lr_tensor *t = lr_recorder_at(rec, i);
        ck_assert_int_eq(t->ndim, 2);
        ck_assert_int_eq(t->shape[0], lr_fixture_batch(L.fx)->num_tokens);
        ck_assert_int_eq(t->shape[1], w);
        for (size_t j = 0; j < i; j++) ck_assert_str_ne(name, lr_recorder_name(rec, j));
    }
    lr_recorder_free(rec);
    lr_model_free(m);
    unload(&L);
}
END_TEST

/* No observer: the same result bit for bit, and the same again on a second run. */
START_TEST(observer_changes_nothing_and_runs_repeat) {
    loaded L = load_case(&cases[0]);
    const lr_batch *b = lr_fixture_batch(L.fx);
    lr_model *m = make_model(L.ck, LR_F32, 2);
    int64_t n = b->num_tokens * lr_checkpoint_config(L.ck)->hidden_size;
    float *first = malloc((size_t)n * sizeof *first);
    lr_tensor h;
    ck_assert_int_eq(lr_model_forward(m, b, NULL, NULL, &h), LR_OK);
    memcpy(first, h.data, (size_t)n * sizeof *first);
    lr_recorder *rec;
    ck_assert_int_eq(lr_recorder_create(&rec), LR_OK);
    lr_observer obs = lr_recorder_observer(rec);
    ck_assert_int_eq(lr_model_forward(m, b, NULL, &obs, &h), LR_OK);
    ck_assert_int_eq(memcmp(first, h.data, (size_t)n * sizeof *first), 0);
    ck_assert_int_eq(lr_model_forward(m, b, NULL, NULL, &h), LR_OK);
    ck_assert_int_eq(memcmp(first, h.data, (size_t)n * sizeof *first), 0);
    free(first);
    lr_recorder_free(rec);
    lr_model_free(m);
    unload(&L);
}
END_TEST

/* The emulated precisions: hidden states and logits (in the dtype) bit for bit the same
 * with and without an observer and run after run, at tp 2. Loop index: bf16, fp16. */
START_TEST(emulated_runs_repeat) {
    loaded L = load_case(&cases[0]);
    const lr_batch *b = lr_fixture_batch(L.fx);
    lr_model *m = make_model(L.ck, emulated[_i], 2);
    const lr_config *c = lr_checkpoint_config(L.ck);
    size_t nh = (size_t)(b->num_tokens * c->hidden_size) * 2, nl = (size_t)(b->num_tokens * c->vocab_size) * 2;
    unsigned char *hidden = malloc(nh), *logits = malloc(nl);
    lr_recorder *rec;
    ck_assert_int_eq(lr_recorder_create(&rec), LR_OK);
    lr_observer obs = lr_recorder_observer(rec);
    for (int run = 0; run < 3; run++) {
        lr_tensor h, lg;
        const lr_observer *o = run == 1 ? &obs : NULL;
        ck_assert_int_eq(lr_model_forward(m, b, NULL, o, &h), LR_OK);
        ck_assert_int_eq(h.dtype, emulated[_i]);
        ck_assert_int_eq(lr_model_compute_logits(m, &h, o, &lg), LR_OK);
        ck_assert_int_eq(lg.dtype, emulated[_i]);
        if (run == 0) {
            memcpy(hidden, h.data, nh);
            memcpy(logits, lg.data, nl);
        } else {
            ck_assert_msg(memcmp(hidden, h.data, nh) == 0, "run %d: hidden states differ", run);
            ck_assert_msg(memcmp(logits, lg.data, nl) == 0, "run %d: logits differ", run);
        }
    }
    free(hidden);
    free(logits);
    lr_recorder_free(rec);
    lr_model_free(m);
    unload(&L);
}
END_TEST

/* Rows [r0, r0 + n) of stage tensors a (n rows) and golden g, within tolerance. */
static void expect_rows(const lr_tensor *a, const lr_st_entry *g, int64_t r0, lr_dtype precision,
                        const char *what) {
    int64_t w = g->t.shape[1];
    size_t es = lr_dtype_size(g->t.dtype);
    lr_tensor rows = g->t;
    rows.shape[0] = a->shape[0];
    rows.data = (const char *)g->t.data + (size_t)(r0 * w) * es;
    lr_metrics met;
    ck_assert_int_eq(lr_compare(a, &rows, &met), LR_OK);
    double tol = lr_tolerance(lr_stage_kind_of(g->name), precision);
    ck_assert_msg(lr_metrics_pass(&met, tol), "%s: %s rows %lld..: rel_l2 %.3e > %.1e", what, g->name,
                  (long long)r0, met.rel_l2, tol);
}

/* A decode step's rows of every stage against the fixture's rows at those tokens. */
typedef struct {
    const fixture_case *fc;
    const lr_fixture *fx;
    lr_dtype precision;
    int steps;
} step_check;

static int expect_step_rows(void *user, const lr_decode_step *st) {
    step_check *c = user;
    for (size_t i = 0; i < lr_fixture_stage_count(c->fx); i++) {
        const lr_st_entry *g = lr_fixture_stage_at(c->fx, i);
        const lr_tensor *got = lr_recorder_find(st->stages, g->name);
        ck_assert_ptr_nonnull(got);
        for (int64_t q = 0; q < st->batch->num_seqs; q++) {
            lr_tensor part = *got;
            part.shape[0] = st->batch->seq_lens[q];
            part.data = (const double *)got->data + st->step_row[q] * got->shape[1];
            expect_rows(&part, g, st->full_row[q], c->precision, c->fc->fixture);
        }
    }
    c->steps++;
    return 0;
}

/* Prefill the first 3 tokens of every sequence together, then decode the rest one token
 * per sequence per step, all sequences in one batch (lr_decode_run): each step's stages
 * equal the fixture's rows at those tokens. */
static void expect_decode(const fixture_case *fc, lr_dtype precision) {
    loaded L = load_case(fc);
    lr_model *m = make_model(L.ck, precision, 2);
    step_check c = {.fc = fc, .fx = L.fx, .precision = precision};
    lr_decode_plan plan = {.prefill = 3};
    ck_assert_msg(lr_decode_run(m, lr_fixture_batch(L.fx), &plan, expect_step_rows, &c, NULL) == LR_OK, "%s",
                  lr_last_error());
    ck_assert_int_gt(c.steps, 1);
    lr_model_free(m);
    unload(&L);
}

/* Loop index = case x precision (f64, f32). */
START_TEST(decode_after_prefill_matches_full_prompt) {
    expect_decode(&cases[_i / 2], precisions[_i % 2]);
}
END_TEST

static int count_step(void *user, const lr_decode_step *st) {
    (void)st;
    ++*(int *)user;
    return 0;
}

/* The same at the emulated precisions, with the steps' rows put back at their places in
 * the prompt and checked as whole tensors (the budgets are whole-tensor errors; a single
 * bf16 row is noisier than its tensor), as test_gpu_forward checks the CUDA path's decode.
 * Loop index = case x (bf16, fp16). */
START_TEST(emulated_decode_matches_full_prompt) {
    const fixture_case *fc = &cases[_i / 2];
    lr_dtype precision = emulated[_i % 2];
    loaded L = load_case(fc);
    lr_model *m = make_model(L.ck, precision, 2);
    lr_recorder *whole;
    ck_assert_int_eq(lr_recorder_create(&whole), LR_OK);
    lr_observer out = lr_recorder_observer(whole);
    lr_decode_plan plan = {.prefill = 3};
    int steps = 0;
    ck_assert_msg(lr_decode_run(m, lr_fixture_batch(L.fx), &plan, count_step, &steps, &out) == LR_OK, "%s",
                  lr_last_error());
    ck_assert_msg(lr_recorder_status(whole) == LR_OK, "%s", lr_last_error());
    ck_assert_int_gt(steps, 1);
    for (size_t i = 0; i < lr_fixture_stage_count(L.fx); i++) {
        const lr_st_entry *g = lr_fixture_stage_at(L.fx, i);
        const lr_tensor *a = lr_recorder_find(whole, g->name);
        ck_assert_msg(a != NULL, "%s: stage %s not reported", fc->fixture, g->name);
        expect_rows(a, g, 0, precision, fc->fixture);
    }
    lr_recorder_free(whole);
    lr_model_free(m);
    unload(&L);
}
END_TEST

/* lr_model_forward_rows: each row it returns is forward's row of that token, bit for bit
 * (rows unordered, repeated, a run of equally spaced ones), and the logits of its rows are
 * those of the same rows gathered from forward's. Loop index: f64, f32, bf16, fp16 (the
 * emulated precisions hold their results in the dtype). Every case's batch. */
START_TEST(forward_rows_are_forwards_rows) {
    static const lr_dtype precs[] = {LR_F64, LR_F32, LR_BF16, LR_F16};
    for (int ci = 0; ci < N_CASES; ci++) {
        loaded L = load_case(&cases[ci]);
        const lr_batch *b = lr_fixture_batch(L.fx);
        const lr_config *c = lr_checkpoint_config(L.ck);
        lr_model *m = make_model(L.ck, precs[_i], 1);
        int64_t T = b->num_tokens, H = c->hidden_size, V = c->vocab_size;
        size_t es = lr_dtype_size(precs[_i]), w = (size_t)H * es;
        int64_t rows[] = {T - 1, 0, T - 1, T / 2, 0, T > 1 ? 1 : 0, T > 2 ? 2 : 0}, n = 7;
        unsigned char *full = malloc((size_t)T * w), *picked = malloc((size_t)n * w),
                      *want_lg = malloc((size_t)(n * V) * es);
        lr_tensor h, lg;
        ck_assert_msg(lr_model_forward(m, b, NULL, NULL, &h) == LR_OK, "%s", lr_last_error());
        memcpy(full, h.data, (size_t)T * w);
        for (int64_t i = 0; i < n; i++)
            memcpy(picked + (size_t)i * w, full + (size_t)rows[i] * w, w);
        lr_tensor sel = {precs[_i], 2, {n, H}, picked};
        ck_assert_int_eq(lr_model_compute_logits(m, &sel, NULL, &lg), LR_OK);
        memcpy(want_lg, lg.data, (size_t)(n * V) * es);
        ck_assert_msg(lr_model_forward_rows(m, b, NULL, NULL, rows, n, &h) == LR_OK, "%s", lr_last_error());
        ck_assert_int_eq(h.dtype, precs[_i]);
        ck_assert_int_eq(h.ndim, 2);
        ck_assert_int_eq(h.shape[0], n);
        ck_assert_int_eq(h.shape[1], H);
        for (int64_t i = 0; i < n; i++)
            ck_assert_msg(
                memcmp((const unsigned char *)h.data + (size_t)i * w, full + (size_t)rows[i] * w, w) == 0,
                "%s %s: forward_rows' row %lld is not forward's row %lld", cases[ci].fixture,
                lr_dtype_name(precs[_i]), (long long)i, (long long)rows[i]);
        ck_assert_int_eq(lr_model_compute_logits(m, &h, NULL, &lg), LR_OK);
        ck_assert_msg(memcmp(lg.data, want_lg, (size_t)(n * V) * es) == 0,
                      "%s %s: the logits of forward_rows' rows differ from those of forward's",
                      cases[ci].fixture, lr_dtype_name(precs[_i]));
        free(full), free(picked), free(want_lg);
        lr_model_free(m);
        unload(&L);
    }
}
END_TEST

/* The greedy rule, written here apart from the library's: the first NaN if any, else the
 * first index of the largest value. */
static int64_t oracle_argmax(const void *row, lr_dtype dt, int64_t n) {
    double *v = malloc((size_t)n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    lr_convert(v, LR_F64, row, dt, (size_t)n);
    int64_t at = -1;
    for (int64_t j = 0; j < n && at < 0; j++)
        if (isnan(v[j])) at = j;
    if (at < 0) {
        at = 0;
        for (int64_t j = 1; j < n; j++)
            if (v[j] > v[at]) at = j;
    }
    free(v);
    return at;
}

/* lr_model_greedy: each token the argmax of compute_logits' row, with and without an
 * observer (the recorder sees the lm_head stage once, as compute_logits reports it); bad
 * arguments refused. Loop index: f64, f32, bf16, fp16; every case's batch. */
START_TEST(greedy_is_the_argmax_of_the_logits) {
    static const lr_dtype precs[] = {LR_F64, LR_F32, LR_BF16, LR_F16};
    for (int ci = 0; ci < N_CASES; ci++) {
        loaded L = load_case(&cases[ci]);
        const lr_batch *b = lr_fixture_batch(L.fx);
        lr_model *m = make_model(L.ck, precs[_i], 2);
        int64_t T = b->num_tokens, V = lr_checkpoint_config(L.ck)->vocab_size;
        size_t es = lr_dtype_size(precs[_i]);
        int64_t *want = malloc((size_t)T * sizeof *want), *got = malloc((size_t)T * sizeof *got);
        lr_tensor h, lg;
        ck_assert_msg(lr_model_forward(m, b, NULL, NULL, &h) == LR_OK, "%s", lr_last_error());
        ck_assert_int_eq(lr_model_compute_logits(m, &h, NULL, &lg), LR_OK);
        for (int64_t t = 0; t < T; t++)
            want[t] = oracle_argmax((const char *)lg.data + (size_t)(t * V) * es, lg.dtype, V);
        for (int observed = 0; observed < 2; observed++) {
            lr_recorder *rec;
            ck_assert_int_eq(lr_recorder_create(&rec), LR_OK);
            lr_observer obs = lr_recorder_observer(rec);
            ck_assert_msg(lr_model_greedy(m, &h, observed ? &obs : NULL, got) == LR_OK, "%s",
                          lr_last_error());
            for (int64_t t = 0; t < T; t++)
                ck_assert_msg(got[t] == want[t], "%s %s%s: token %lld is %lld, the logits' argmax %lld",
                              cases[ci].fixture, lr_dtype_name(precs[_i]), observed ? " (observed)" : "",
                              (long long)t, (long long)got[t], (long long)want[t]);
            ck_assert_int_eq(lr_recorder_find(rec, "lm_head") != NULL, observed);
            lr_recorder_free(rec);
        }
        ck_assert_int_eq(lr_model_greedy(m, &h, NULL, NULL), LR_E_INVAL);
        ck_assert_msg(strstr(lr_last_error(), "tokens") != NULL, "%s", lr_last_error());
        lr_tensor narrow = h;
        narrow.shape[1] = h.shape[1] - 1;
        ck_assert_int_eq(lr_model_greedy(m, &narrow, NULL, got), LR_E_INVAL);
        ck_assert_msg(strstr(lr_last_error(), "greedy: hidden") != NULL, "%s", lr_last_error());
        free(want), free(got);
        lr_model_free(m);
        unload(&L);
    }
}
END_TEST

/* Bad batches are refused with a status, before any work. */
START_TEST(bad_batches_are_refused) {
    loaded L = load_case(&cases[0]);
    lr_model *m = make_model(L.ck, LR_F64, 1);
    int64_t ids[4] = {1, 2, 3, 4}, pos[4] = {0, 1, 2, 3}, lens[2] = {3, 3}, big[1] = {200};
    lr_tensor h;
    lr_batch b = {.input_ids = ids, .positions = pos, .seq_lens = lens, .num_tokens = 4, .num_seqs = 2};
    ck_assert_int_eq(lr_model_forward(m, &b, NULL, NULL, &h), LR_E_INVAL); /* lens sum to 6 */
    ck_assert_msg(strstr(lr_last_error(), "seq_lens") != NULL, "%s", lr_last_error());
    lr_batch oov = {.input_ids = big, .positions = pos, .num_tokens = 1};
    ck_assert_int_eq(lr_model_forward(m, &oov, NULL, NULL, &h), LR_E_INVAL);
    ck_assert_msg(strstr(lr_last_error(), "input_ids[0]") != NULL, "%s", lr_last_error());
    lr_kv_cache *kv;
    ck_assert_int_eq(lr_kv_cache_create(m, 1, 3, &kv), LR_OK);
    lr_batch four = {.input_ids = ids, .positions = pos, .num_tokens = 4};
    ck_assert_int_eq(lr_model_forward(m, &four, kv, NULL, &h), LR_E_CAPACITY);
    /* forward_rows: the rows outside the batch, too many or none, or no array; named */
    int64_t rows[5] = {0, 3, 4, -1, 1};
    ck_assert_int_eq(lr_model_forward_rows(m, &four, NULL, NULL, rows, 3, &h), LR_E_INVAL);
    ck_assert_msg(strstr(lr_last_error(), "rows[2] = 4") != NULL, "%s", lr_last_error());
    ck_assert_int_eq(lr_model_forward_rows(m, &four, NULL, NULL, rows + 3, 1, &h), LR_E_INVAL);
    ck_assert_msg(strstr(lr_last_error(), "rows[0] = -1") != NULL, "%s", lr_last_error());
    ck_assert_int_eq(lr_model_forward_rows(m, &four, NULL, NULL, rows, 5, &h), LR_E_INVAL);
    ck_assert_msg(strstr(lr_last_error(), "n 5") != NULL, "%s", lr_last_error());
    ck_assert_int_eq(lr_model_forward_rows(m, &four, NULL, NULL, rows, 0, &h), LR_E_INVAL);
    ck_assert_msg(strstr(lr_last_error(), "n 0") != NULL, "%s", lr_last_error());
    ck_assert_int_eq(lr_model_forward_rows(m, &four, NULL, NULL, NULL, 1, &h), LR_E_INVAL);
    ck_assert_msg(strstr(lr_last_error(), "rows is NULL") != NULL, "%s", lr_last_error());
    lr_kv_cache_reset(kv); /* no backend hook on the CPU: only the lengths */
    lr_kv_cache_free(kv);
    /* CUDA graphs are the cuda backend's */
    lr_graph_stats gs;
    ck_assert_int_eq(lr_model_graph_stats(m, &gs), LR_E_BACKEND);
    ck_assert_msg(strstr(lr_last_error(), "cpu") != NULL, "%s", lr_last_error());
    lr_model_free(m);
    unload(&L);
}
END_TEST

/* Writes a copy of the default fixture with one change, and expects open or the config
 * check to refuse it with LR_E_FIXTURE and a message naming the tensor or field. */
enum { DROP_INPUT_IDS, WRONG_FORMAT, NO_FORMAT, WRONG_WIDTH, DROP_REQUIRED, WRONG_INPUT_DTYPE, N_BAD };

START_TEST(bad_fixtures_are_refused) {
    static const char *expect[N_BAD] = {"input_ids", "format", "format", "model.layers.1.mlp.up_proj",
                                        "model.norm", "positions"};
    loaded L = load_case(&cases[0]);
    lr_st_writer *w;
    ck_assert_int_eq(lr_st_writer_create(&w), LR_OK);
    ck_assert_int_eq(lr_st_writer_set_metadata(w, "format", _i == WRONG_FORMAT ? "llama-golden/0" : LR_FIXTURE_FORMAT), LR_OK);
    if (_i == NO_FORMAT) {
        lr_st_writer_free(w);
        ck_assert_int_eq(lr_st_writer_create(&w), LR_OK);
    }
    const lr_batch *b = lr_fixture_batch(L.fx);
    lr_tensor ids = {.dtype = LR_I64, .ndim = 1, .shape = {b->num_tokens}, .data = b->input_ids};
    lr_tensor pos = {.dtype = LR_I64, .ndim = 1, .shape = {b->num_tokens}, .data = b->positions};
    float posf[64];
    for (int64_t t = 0; t < b->num_tokens; t++) posf[t] = (float)b->positions[t];
    if (_i == WRONG_INPUT_DTYPE) pos = (lr_tensor){.dtype = LR_F32, .ndim = 1, .shape = {b->num_tokens}, .data = posf};
    if (_i != DROP_INPUT_IDS) ck_assert_int_eq(lr_st_writer_add(w, "input_ids", &ids), LR_OK);
    ck_assert_int_eq(lr_st_writer_add(w, "positions", &pos), LR_OK);
    double *junk = calloc(64 * 1024, sizeof *junk);
    for (size_t i = 0; i < lr_fixture_stage_count(L.fx); i++) {
        const lr_st_entry *e = lr_fixture_stage_at(L.fx, i);
        if (_i == DROP_REQUIRED && strcmp(e->name, "model.norm") == 0) continue;
        lr_tensor t = e->t;
        if (_i == WRONG_WIDTH && strcmp(e->name, "model.layers.1.mlp.up_proj") == 0) {
            t.shape[1] -= 1;
            t.data = junk;
        }
        ck_assert_int_eq(lr_st_writer_add(w, e->name, &t), LR_OK);
    }
    char name[64];
    snprintf(name, sizeof name, "bad-fixture-%d.safetensors", _i);
    const char *tmp = getenv("LR_TMPDIR");
    char *path = malloc(strlen(tmp ? tmp : ".") + strlen(name) + 2);
    sprintf(path, "%s/%s", tmp ? tmp : ".", name);
    ck_assert_int_eq(lr_st_writer_write(w, path, true), LR_OK);
    lr_fixture *fx = NULL;
    int rc = lr_fixture_open(path, &fx);
    if (rc == LR_OK) rc = lr_fixture_check_config(fx, lr_checkpoint_config(L.ck));
    ck_assert_int_eq(rc, LR_E_FIXTURE);
    ck_assert_msg(strstr(lr_last_error(), expect[_i]) && strstr(lr_last_error(), name), "%s", lr_last_error());
    lr_fixture_free(fx);
    free(path);
    free(junk);
    lr_st_writer_free(w);
    unload(&L);
}
END_TEST


/* ---- Structural faults (docs/detection.md) -------------------------------------------- */

/* text with the number after "key": multiplied by factor (%.17g: read back exactly). */
static char *times(char *text, const char *key, double factor) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    char *at = strstr(text, pat), *end;
    ck_assert_msg(at != NULL, "config.json has no %s", key);
    at += strlen(pat);
    double v = strtod(at, &end);
    ck_assert(end > at);
    char num[64];
    snprintf(num, sizeof num, " %.17g", v * factor);
    char *out = malloc(strlen(text) + sizeof num);
    sprintf(out, "%.*s%s%s", (int)(at - text), text, num, end);
    free(text);
    return out;
}

/* A copy of fixture model `name` with rms_norm_eps x eps_k and rope_theta x theta_k in its
 * config (the weights linked): the planted bug a structural fault stands for. */
static char *planted_model(const char *name, double eps_k, double theta_k) {
    const char *root = getenv("LR_FIXTURES"), *tmp = getenv("LR_TMPDIR");
    char src[1024], path[1200];
    snprintf(src, sizeof src, "%s/models/%s/config.json", root, name);
    FILE *f = fopen(src, "rb");
    ck_assert_msg(f != NULL, "%s", src);
    char *text = calloc(1, 1 << 16);
    size_t n = fread(text, 1, (1 << 16) - 1, f);
    fclose(f);
    ck_assert(n > 0);
    text = times(times(text, "rms_norm_eps", eps_k), "rope_theta", theta_k);
    char *dir = malloc(1024);
    snprintf(dir, 1024, "%s/planted-%s-XXXXXX", tmp ? tmp : "/tmp", name);
    ck_assert(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "wb");
    ck_assert(f && fputs(text, f) >= 0 && fclose(f) == 0);
    free(text);
    char weights[1200], *abs;
    snprintf(weights, sizeof weights, "%s/models/%s/model.safetensors", root, name);
    ck_assert_msg((abs = realpath(weights, NULL)) != NULL, "%s", weights);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert_msg(symlink(abs, path) == 0, "symlink %s", abs);
    free(abs);
    return dir;
}

static void remove_planted(char *dir) {
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
    free(dir);
}

/* The final hidden states of a forward (copied: the backend owns them). */
static void *hidden_of(lr_model *m, const lr_batch *b, size_t *bytes) {
    lr_tensor h;
    ck_assert_msg(lr_model_forward(m, b, NULL, NULL, &h) == LR_OK, "%s", lr_last_error());
    *bytes = (size_t)lr_tensor_numel(&h) * lr_dtype_size(h.dtype);
    void *copy = malloc(*bytes);
    memcpy(copy, h.data, *bytes);
    return copy;
}

/* A theta fault at every layer and an rms_eps fault at every norm compute exactly what a
 * checkpoint with that theta and eps computes: the faults mean the config change, bit for
 * bit. Loop index: f64 and the emulated bf16, tp 1 and 2. */
START_TEST(structural_faults_equal_a_planted_config) {
    lr_dtype p = _i / 2 ? LR_BF16 : LR_F64;
    int tp = 1 + _i % 2;
    loaded L = load_case(&cases[0]);
    const lr_config *c = lr_checkpoint_config(L.ck);
    char *dir = planted_model(cases[0].model, 1 + 9.0, 1 + 1e-3);
    lr_checkpoint *planted;
    ck_assert_msg(lr_checkpoint_open(dir, &planted) == LR_OK, "%s", lr_last_error());
    ck_assert(lr_checkpoint_config(planted)->rms_norm_eps == c->rms_norm_eps * (1 + 9.0));
    lr_fault f[32];
    size_t n = 0;
    char spec[160];
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        snprintf(spec, sizeof spec, "model.layers.%lld.self_attn.o_proj.input=theta:1e-3", (long long)l);
        ck_assert_int_eq(lr_fault_parse(spec, &f[n++]), LR_OK);
        snprintf(spec, sizeof spec, "model.layers.%lld.input_layernorm=rms_eps:9", (long long)l);
        ck_assert_int_eq(lr_fault_parse(spec, &f[n++]), LR_OK);
        snprintf(spec, sizeof spec, "model.layers.%lld.post_attention_layernorm=rms_eps:9", (long long)l);
        ck_assert_int_eq(lr_fault_parse(spec, &f[n++]), LR_OK);
    }
    ck_assert_int_eq(lr_fault_parse("model.norm=rms_eps:9", &f[n++]), LR_OK);
    lr_model *faulted = make_model(L.ck, p, tp), *plain = make_model(L.ck, p, tp), *want = make_model(planted, p, tp);
    /* Refused, leaving the model's faults as they were (none): two of one structural kind
     * at one stage, a kind on a stage whose op cannot have it, a head the model lacks. */
    lr_fault twice[2] = {f[0], f[0]}, wrong;
    ck_assert_int_eq(lr_model_set_faults(faulted, twice, 2), LR_E_INVAL);
    ck_assert_ptr_nonnull(strstr(lr_last_error(), "two theta faults"));
    ck_assert_int_eq(lr_fault_parse("model.layers.0.mlp.up_proj=rms_eps:9", &wrong), LR_OK);
    ck_assert_int_eq(lr_model_set_faults(faulted, &wrong, 1), LR_E_INVAL);
    snprintf(spec, sizeof spec, "model.layers.0.self_attn.o_proj.input=swap_heads:%lld",
             (long long)(c->num_attention_heads - 1));
    ck_assert_int_eq(lr_fault_parse(spec, &wrong), LR_OK);
    ck_assert_int_eq(lr_model_set_faults(faulted, &wrong, 1), LR_E_INVAL);
    ck_assert_msg(lr_model_set_faults(faulted, f, n) == LR_OK, "%s", lr_last_error());
    const lr_batch *b = lr_fixture_batch(L.fx);
    size_t nf, np, nw;
    void *hf = hidden_of(faulted, b, &nf), *hp = hidden_of(plain, b, &np), *hw = hidden_of(want, b, &nw);
    ck_assert(nf == nw && nf == np);
    ck_assert_msg(memcmp(hf, hw, nf) == 0, "the faults differ from the planted config");
    ck_assert_msg(memcmp(hf, hp, nf) != 0, "the faults changed nothing");
    free(hf), free(hp), free(hw);
    lr_model_free(faulted), lr_model_free(plain), lr_model_free(want);
    lr_checkpoint_close(planted);
    remove_planted(dir);
    unload(&L);
}
END_TEST

/* The off-by-one mask at the last layer: in a prefill, the last token of each sequence
 * (which has no next key: +1) or its first (whose own key is all it sees: -1) comes out
 * bit for bit as without the fault, every other token differs. The same at tp 2 and in
 * the emulated bf16. Loop index: shift (+1, -1) x (f64 tp 1, bf16 tp 2). */
START_TEST(mask_fault_is_off_by_one) {
    int shift = _i / 2 ? -1 : 1;
    lr_dtype p = _i % 2 ? LR_BF16 : LR_F64;
    loaded L = load_case(&cases[0]);
    const lr_config *c = lr_checkpoint_config(L.ck);
    char spec[160];
    snprintf(spec, sizeof spec, "model.layers.%lld.self_attn.o_proj.input=mask:%d", (long long)(c->num_hidden_layers - 1),
             shift);
    lr_fault f;
    ck_assert_int_eq(lr_fault_parse(spec, &f), LR_OK);
    lr_model *faulted = make_model(L.ck, p, 1 + _i % 2), *plain = make_model(L.ck, p, 1 + _i % 2);
    ck_assert_msg(lr_model_set_faults(faulted, &f, 1) == LR_OK, "%s", lr_last_error());
    const lr_batch *b = lr_fixture_batch(L.fx);
    size_t n, row = (size_t)c->hidden_size * lr_dtype_size(p);
    char *hf = hidden_of(faulted, b, &n), *hp = hidden_of(plain, b, &n);
    int64_t t = 0, same = 0;
    for (int64_t s = 0; s < (b->seq_lens ? b->num_seqs : 1); s++) {
        int64_t len = b->seq_lens ? b->seq_lens[s] : b->num_tokens;
        ck_assert_int_gt(len, 1);
        for (int64_t j = 0; j < len; j++, t++) {
            bool untouched = shift > 0 ? j == len - 1 : j == 0;
            bool eq = memcmp(hf + (size_t)t * row, hp + (size_t)t * row, row) == 0;
            ck_assert_msg(eq == untouched, "shift %d: sequence %lld token %lld %s", shift, (long long)s, (long long)j,
                          eq ? "unchanged" : "changed");
            same += eq;
        }
    }
    ck_assert_int_eq(same, b->seq_lens ? b->num_seqs : 1);
    free(hf), free(hp);
    lr_model_free(faulted), lr_model_free(plain);
    unload(&L);
}
END_TEST

static int no_step(void *user, const lr_decode_step *st) {
    (void)user, (void)st;
    return 0;
}

/* stale_kv at the last layer changes nothing in a prefill and every decoded token's
 * output: the decode steps read the stale entry (f64 tp 1; the emulated bf16 at tp 2). */
START_TEST(stale_kv_fault_acts_in_decode_only) {
    lr_dtype p = _i ? LR_BF16 : LR_F64;
    loaded L = load_case(&cases[0]);
    const lr_config *c = lr_checkpoint_config(L.ck);
    char spec[160];
    snprintf(spec, sizeof spec, "model.layers.%lld.self_attn.o_proj.input=stale_kv:1",
             (long long)(c->num_hidden_layers - 1));
    lr_fault f;
    ck_assert_int_eq(lr_fault_parse(spec, &f), LR_OK);
    lr_model *faulted = make_model(L.ck, p, 1 + _i), *plain = make_model(L.ck, p, 1 + _i);
    ck_assert_msg(lr_model_set_faults(faulted, &f, 1) == LR_OK, "%s", lr_last_error());
    const lr_batch *b = lr_fixture_batch(L.fx);
    size_t n;
    void *hf = hidden_of(faulted, b, &n), *hp = hidden_of(plain, b, &n);
    ck_assert_msg(memcmp(hf, hp, n) == 0, "stale_kv changed a prefill");
    free(hf), free(hp);
    lr_recorder *rf, *rp;
    ck_assert_int_eq(lr_recorder_create(&rf), LR_OK);
    ck_assert_int_eq(lr_recorder_create(&rp), LR_OK);
    lr_observer of = lr_recorder_observer(rf), op = lr_recorder_observer(rp);
    lr_decode_plan plan = {.decode = 2};
    ck_assert_msg(lr_decode_run(faulted, b, &plan, no_step, NULL, &of) == LR_OK, "%s", lr_last_error());
    ck_assert_msg(lr_decode_run(plain, b, &plan, no_step, NULL, &op) == LR_OK, "%s", lr_last_error());
    const lr_tensor *a = lr_recorder_find(rf, "model.norm"), *z = lr_recorder_find(rp, "model.norm");
    ck_assert(a && z && a->dtype == LR_F64);
    int64_t H = c->hidden_size, t = 0;
    for (int64_t s = 0; s < (b->seq_lens ? b->num_seqs : 1); s++) {
        int64_t len = b->seq_lens ? b->seq_lens[s] : b->num_tokens;
        for (int64_t j = 0; j < len; j++, t++) {
            bool decoded = j >= len - 2 && j > 0;
            bool eq = memcmp((const double *)a->data + t * H, (const double *)z->data + t * H, (size_t)H * 8) == 0;
            ck_assert_msg(eq != decoded, "sequence %lld token %lld (%s) %s", (long long)s, (long long)j,
                          decoded ? "decoded" : "prefilled", eq ? "unchanged" : "changed");
        }
    }
    lr_recorder_free(rf), lr_recorder_free(rp);
    lr_model_free(faulted), lr_model_free(plain);
    unload(&L);
}
END_TEST

static Suite *forward_suite(void) {
    Suite *s = suite_create("forward");
    TCase *tc = tcase_create("golden");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, every_stage_matches_golden, 0, N_CASES * 6);
    tcase_add_loop_test(tc, observer_sees_every_stage_once, 0, N_CASES);
    tcase_add_test(tc, observer_changes_nothing_and_runs_repeat);
    tcase_add_loop_test(tc, forward_rows_are_forwards_rows, 0, 4);
    tcase_add_loop_test(tc, greedy_is_the_argmax_of_the_logits, 0, 4);
    tcase_add_loop_test(tc, decode_after_prefill_matches_full_prompt, 0, N_CASES * 2);
    suite_add_tcase(s, tc);
    TCase *em = tcase_create("emulated bf16 and fp16");
    tcase_set_timeout(em, 60);
    tcase_add_loop_test(em, emulated_stages_match_golden, 0, N_CASES * 4);
    tcase_add_loop_test(em, emulated_decode_matches_full_prompt, 0, N_CASES * 2);
    tcase_add_loop_test(em, emulated_runs_repeat, 0, 2);
    suite_add_tcase(s, em);
    TCase *sf = tcase_create("structural faults");
    tcase_set_timeout(sf, 60);
    tcase_add_loop_test(sf, structural_faults_equal_a_planted_config, 0, 4);
    tcase_add_loop_test(sf, mask_fault_is_off_by_one, 0, 4);
    tcase_add_loop_test(sf, stale_kv_fault_acts_in_decode_only, 0, 2);
    suite_add_tcase(s, sf);
    TCase *bad = tcase_create("bad input");
    tcase_add_test(bad, bad_batches_are_refused);
    tcase_add_test(bad, host_memory_readings);
    tcase_add_loop_test(bad, bad_fixtures_are_refused, 0, N_BAD);
    suite_add_tcase(s, bad);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(forward_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
