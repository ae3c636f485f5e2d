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
    lr_kv_cache_free(kv);
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

static Suite *forward_suite(void) {
    Suite *s = suite_create("forward");
    TCase *tc = tcase_create("golden");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, every_stage_matches_golden, 0, N_CASES * 6);
    tcase_add_loop_test(tc, observer_sees_every_stage_once, 0, N_CASES);
    tcase_add_test(tc, observer_changes_nothing_and_runs_repeat);
    tcase_add_loop_test(tc, decode_after_prefill_matches_full_prompt, 0, N_CASES * 2);
    suite_add_tcase(s, tc);
    TCase *em = tcase_create("emulated bf16 and fp16");
    tcase_set_timeout(em, 60);
    tcase_add_loop_test(em, emulated_stages_match_golden, 0, N_CASES * 4);
    tcase_add_loop_test(em, emulated_decode_matches_full_prompt, 0, N_CASES * 2);
    tcase_add_loop_test(em, emulated_runs_repeat, 0, 2);
    suite_add_tcase(s, em);
    TCase *bad = tcase_create("bad input");
    tcase_add_test(bad, bad_batches_are_refused);
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
