/* test_check.c: the library's tools for checking a run (ref/check/drill.c, logits.c,
 * decode.c): the layer of a stage name; the drill-down on made-up stage results (the
 * first divergence, the jump, the floor, NaN, layer outputs never the cause); the logits
 * metrics on logits whose softmaxes are known exactly; the decode scheduler's steps,
 * its reassembled run against a single forward and the golden, its callback's stop, and
 * bad plans and batches. */
#include "llamaref.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture_cases.h"

/* Values known exactly, computed with a few roundings (sums of a few terms). */
#define FEW_ROUNDINGS (16 * DBL_EPSILON)

/* ---- lr_stage_layer ---------------------------------------------------------------------- */

START_TEST(stage_layer_reads_the_layer) {
    char name[64];
    ck_assert_int_eq(lr_stage_layer(lr_layer_stage_name(name, sizeof name, 3, LR_LS_LAYER)), 3);
    ck_assert_int_eq(lr_stage_layer(lr_layer_stage_name(name, sizeof name, 12, LR_LS_UP_PROJ)), 12);
    ck_assert_int_eq(lr_stage_layer(lr_layer_stage_name(name, sizeof name, 0, LR_LS_DOWN_PROJ_INPUT)), 0);
    for (int s = 0; s < LR_MODEL_STAGE_COUNT; s++)
        ck_assert_int_eq(lr_stage_layer(lr_model_stage_name((lr_model_stage)s)), -1);
    ck_assert_int_eq(lr_stage_layer("model.layers.x"), -1);
    ck_assert_int_eq(lr_stage_layer("model.layers."), -1);
    ck_assert_int_eq(lr_stage_layer(NULL), -1);
}
END_TEST

/* ---- lr_drill_down ---------------------------------------------------------------------- */

/* A made-up run of two layers in forward order, every stage at `share` of its f64
 * budget (0: exact) until set otherwise. */
typedef struct {
    char names[2 + 2 * LR_LAYER_STAGE_COUNT + 1][64];
    lr_stage_result r[2 + 2 * LR_LAYER_STAGE_COUNT + 1];
    size_t n;
} run;

static void set_share(run *x, size_t i, double share) {
    lr_stage_result *s = &x->r[i];
    s->m.rel_l2 = share * s->tolerance;
    s->m.nan_a = isnan(share);
    s->pass = lr_metrics_pass(&s->m, s->tolerance);
}

static void make_run(run *x) {
    memset(x, 0, sizeof *x);
    snprintf(x->names[x->n++], 64, "%s", lr_model_stage_name(LR_MS_EMBED_TOKENS));
    for (int64_t l = 0; l < 2; l++)
        for (int s = 0; s < LR_LAYER_STAGE_COUNT; s++)
            lr_layer_stage_name(x->names[x->n++], 64, l, (lr_layer_stage)s);
    snprintf(x->names[x->n++], 64, "%s", lr_model_stage_name(LR_MS_NORM));
    snprintf(x->names[x->n++], 64, "%s", lr_model_stage_name(LR_MS_LM_HEAD));
    for (size_t i = 0; i < x->n; i++) {
        lr_stage_result *s = &x->r[i];
        s->name = x->names[i];
        s->kind = lr_stage_kind_of(s->name);
        s->tolerance = lr_tolerance(s->kind, LR_F64);
        s->m.n = 1;
        s->predicted = -1;
        s->width = 1;
        set_share(x, i, 0);
    }
}

/* The index of stage s of layer l in a made-up run. */
static size_t at(int64_t l, lr_layer_stage s) { return 1 + (size_t)(l * LR_LAYER_STAGE_COUNT + s); }

START_TEST(drill_down_of_a_passing_run_is_empty) {
    run x;
    make_run(&x);
    for (size_t i = 0; i < x.n; i++)
        set_share(&x, i, 0.5);
    lr_drill d;
    ck_assert_int_eq(lr_drill_down(x.r, x.n, &d), LR_OK);
    ck_assert_int_eq(d.first, -1);
    ck_assert_int_eq(d.cause, -1);
    ck_assert_int_eq(d.layer, -1);
    ck_assert_int_eq(lr_drill_down(NULL, 0, &d), LR_OK);
    ck_assert_int_eq(d.first, -1);
    ck_assert_int_eq(lr_drill_down(NULL, 3, &d), LR_E_INVAL);
}
END_TEST

/* The first stage over budget is q_proj, but the error grows most at k_proj: the
 * drill-down names k_proj, and nothing outside layer 1 (layer 0 errs more, yet passes). */
START_TEST(drill_down_names_the_jump_not_the_first_failure) {
    run x;
    make_run(&x);
    for (int s = 0; s < LR_LAYER_STAGE_COUNT; s++)
        set_share(&x, at(0, (lr_layer_stage)s), 0.9);
    set_share(&x, at(1, LR_LS_INPUT_LAYERNORM), 0.5);
    set_share(&x, at(1, LR_LS_Q_PROJ), 1.5);
    set_share(&x, at(1, LR_LS_K_PROJ), 100);
    for (int s = LR_LS_V_PROJ; s < LR_LAYER_STAGE_COUNT; s++)
        set_share(&x, at(1, (lr_layer_stage)s), 150);
    lr_drill d;
    ck_assert_int_eq(lr_drill_down(x.r, x.n, &d), LR_OK);
    ck_assert_int_eq(d.first, (int64_t)at(1, LR_LS_Q_PROJ));
    ck_assert_int_eq(d.layer, 1);
    ck_assert_int_eq(d.cause, (int64_t)at(1, LR_LS_K_PROJ));
    ck_assert(d.growth == x.r[at(1, LR_LS_K_PROJ)].m.rel_l2 / x.r[at(1, LR_LS_Q_PROJ)].m.rel_l2);
}
END_TEST

/* An exact predecessor counts as a thousandth of the budget, so that rounding right
 * after it is no jump; here the growth is at most a thousand everywhere in layer 0 but
 * the planted stage's. */
START_TEST(drill_down_floor_keeps_rounding_from_looking_like_a_jump) {
    run x;
    make_run(&x);
    set_share(&x, at(0, LR_LS_INPUT_LAYERNORM), 0.01); /* over an exact embedding: x10 */
    set_share(&x, at(0, LR_LS_Q_PROJ), 0.01);
    set_share(&x, at(0, LR_LS_K_PROJ), 0.01);
    set_share(&x, at(0, LR_LS_V_PROJ), 0.01);
    set_share(&x, at(0, LR_LS_O_PROJ_INPUT), 2); /* x200: the cause */
    for (int s = LR_LS_O_PROJ; s < LR_LAYER_STAGE_COUNT; s++)
        set_share(&x, at(0, (lr_layer_stage)s), 2);
    lr_drill d;
    ck_assert_int_eq(lr_drill_down(x.r, x.n, &d), LR_OK);
    ck_assert_int_eq(d.cause, (int64_t)at(0, LR_LS_O_PROJ_INPUT));
    ck_assert(d.growth == x.r[at(0, LR_LS_O_PROJ_INPUT)].m.rel_l2 / x.r[at(0, LR_LS_V_PROJ)].m.rel_l2);
}
END_TEST

/* A failure outside the layers: the stages from the start up to it are searched. */
START_TEST(drill_down_outside_the_layers) {
    run x;
    make_run(&x);
    set_share(&x, 0, 5);
    lr_drill d;
    ck_assert_int_eq(lr_drill_down(x.r, x.n, &d), LR_OK);
    ck_assert_int_eq(d.first, 0);
    ck_assert_int_eq(d.layer, -1);
    ck_assert_int_eq(d.cause, 0);
    ck_assert_double_eq_tol(d.growth, 5000, 5000 * FEW_ROUNDINGS); /* over the floor: nothing before it */
}
END_TEST

/* NaN: the first stage that holds one is the cause, with infinite growth. */
START_TEST(drill_down_finds_the_first_nan) {
    run x;
    make_run(&x);
    set_share(&x, at(1, LR_LS_GATE_PROJ), 0.5);
    set_share(&x, at(1, LR_LS_ACT_FN), NAN);
    for (int s = LR_LS_DOWN_PROJ_INPUT; s < LR_LAYER_STAGE_COUNT; s++)
        set_share(&x, at(1, (lr_layer_stage)s), NAN);
    lr_drill d;
    ck_assert_int_eq(lr_drill_down(x.r, x.n, &d), LR_OK);
    ck_assert_int_eq(d.first, (int64_t)at(1, LR_LS_ACT_FN));
    ck_assert_int_eq(d.cause, (int64_t)at(1, LR_LS_ACT_FN));
    ck_assert(isinf(d.growth));
}
END_TEST

/* A layer's output only adds up its sub-stages: never the cause, even where it jumps. */
START_TEST(drill_down_never_blames_a_layer_output) {
    run x;
    make_run(&x);
    set_share(&x, at(0, LR_LS_MLP), 0.001);
    set_share(&x, at(0, LR_LS_LAYER), 50);
    lr_drill d;
    ck_assert_int_eq(lr_drill_down(x.r, x.n, &d), LR_OK);
    ck_assert_int_eq(d.first, (int64_t)at(0, LR_LS_LAYER));
    ck_assert_int_ne(d.cause, d.first);
    ck_assert_int_ne(x.r[d.cause].kind, LR_STAGE_LAYER);
    ck_assert_int_eq(lr_stage_layer(x.r[d.cause].name), 0);
}
END_TEST

/* ---- lr_logits_compare ------------------------------------------------------------------- */

START_TEST(logits_of_the_same_run_agree_exactly) {
    double v[2 * 7]; /* (2, 7) */
    for (int i = 0; i < 14; i++)
        v[i] = sin(1.7 * i) * 3;
    lr_tensor t = {.dtype = LR_F64, .ndim = 2, .shape = {2, 7}, .data = v};
    lr_logits_metrics g;
    ck_assert_int_eq(lr_logits_compare(&t, &t, LR_LOGITS_TOP_K, &g), LR_OK);
    ck_assert_int_eq(g.tokens, 2);
    ck_assert_int_eq(g.k, LR_LOGITS_TOP_K);
    ck_assert_int_eq(g.top1_agree, 2);
    ck_assert(g.topk_overlap == 1 && g.kl_mean == 0 && g.kl_max == 0 && g.max_abs_delta_logprob == 0);
    /* k beyond the vocabulary: the whole vocabulary */
    ck_assert_int_eq(lr_logits_compare(&t, &t, 100, &g), LR_OK);
    ck_assert_int_eq(g.k, 7);
    ck_assert(g.topk_overlap == 1);
}
END_TEST

/* Token 0: the reference's (1/2, 1/4, 1/4) against the test's (1/4, 1/2, 1/4): top-1
 * differs, KL = ln 2 / 4, the largest change of a log-probability ln 2. Token 1 the
 * same on both sides. Top-2 sets: {0, 1} both, so the overlap is whole. */
START_TEST(logits_metrics_of_known_softmaxes) {
    const double l2 = log(2.0);
    double ref[6] = {-l2, -2 * l2, -2 * l2, 0, 1, 2};  /* (2, 3) */
    double test[6] = {-2 * l2, -l2, -2 * l2, 0, 1, 2}; /* (2, 3) */
    lr_tensor a = {.dtype = LR_F64, .ndim = 2, .shape = {2, 3}, .data = test};
    lr_tensor b = {.dtype = LR_F64, .ndim = 2, .shape = {2, 3}, .data = ref};
    lr_logits_metrics g;
    ck_assert_int_eq(lr_logits_compare(&a, &b, 2, &g), LR_OK);
    ck_assert_int_eq(g.top1_agree, 1);
    ck_assert(g.topk_overlap == 1);
    ck_assert_double_eq_tol(g.kl_max, l2 / 4, FEW_ROUNDINGS);
    ck_assert_int_eq(g.kl_max_token, 0);
    ck_assert_double_eq_tol(g.kl_mean, l2 / 8, FEW_ROUNDINGS);
    ck_assert_double_eq_tol(g.max_abs_delta_logprob, l2, FEW_ROUNDINGS);
    /* top-1 sets {1} and {0}: no overlap on token 0 */
    ck_assert_int_eq(lr_logits_compare(&a, &b, 1, &g), LR_OK);
    ck_assert(g.topk_overlap == 0.5);
}
END_TEST

/* Top-5 of 6 sharing 4: overlap 4/5. A NaN logit shows as NaN. */
START_TEST(logits_topk_overlap_and_nan) {
    double ref[6] = {6, 5, 4, 3, 2, 1}, test[6] = {6, 5, 4, 3, 1, 2.5}; /* (1, 6) each */
    lr_tensor a = {.dtype = LR_F64, .ndim = 2, .shape = {1, 6}, .data = test};
    lr_tensor b = {.dtype = LR_F64, .ndim = 2, .shape = {1, 6}, .data = ref};
    lr_logits_metrics g;
    ck_assert_int_eq(lr_logits_compare(&a, &b, 5, &g), LR_OK);
    ck_assert(g.topk_overlap == 4.0 / 5.0);
    ck_assert_int_eq(g.top1_agree, 1);
    test[3] = NAN;
    ck_assert_int_eq(lr_logits_compare(&a, &b, 5, &g), LR_OK);
    ck_assert(isnan(g.max_abs_delta_logprob));
}
END_TEST

START_TEST(logits_of_different_shapes_are_refused) {
    double v[12] = {0};
    lr_tensor a = {.dtype = LR_F64, .ndim = 2, .shape = {2, 6}, .data = v};
    lr_tensor b = {.dtype = LR_F64, .ndim = 2, .shape = {3, 4}, .data = v};
    lr_tensor c = {.dtype = LR_F64, .ndim = 1, .shape = {12}, .data = v};
    lr_logits_metrics g;
    ck_assert_int_eq(lr_logits_compare(&a, &b, 5, &g), LR_E_SHAPE);
    ck_assert_msg(strstr(lr_last_error(), "logits") != NULL, "%s", lr_last_error());
    ck_assert_int_eq(lr_logits_compare(&c, &c, 5, &g), LR_E_SHAPE);
    ck_assert_int_eq(lr_logits_compare(&a, &a, 0, &g), LR_E_INVAL);
}
END_TEST

/* ---- lr_decode_run ------------------------------------------------------------------------ */

static lr_model *cpu_model(const loaded *L, lr_dtype precision, int tp) {
    lr_options o;
    lr_options_init(&o);
    o.precision = precision;
    o.tp_size = tp;
    lr_model *m;
    ck_assert_msg(lr_model_create(L->ck, &o, &m) == LR_OK, "%s", lr_last_error());
    return m;
}

/* What the steps looked like. */
typedef struct {
    const lr_batch *full;
    int steps, stop_at;
    int64_t stage_count;   /* stages every step reports */
    int64_t tokens;        /* over all steps */
    int64_t first_lens[8]; /* step 0's seq_lens */
    int64_t first_seqs;
} seen;

static seen seen_of(const loaded *L) {
    int64_t layers = lr_checkpoint_config(L->ck)->num_hidden_layers;
    return (seen){.full = lr_fixture_batch(L->fx),
                  .stage_count = LR_MODEL_STAGE_COUNT + layers * LR_LAYER_STAGE_COUNT};
}

static int note_step(void *user, const lr_decode_step *st) {
    seen *s = user;
    const lr_batch *b = st->batch;
    ck_assert_int_eq(st->index, s->steps);
    ck_assert_ptr_nonnull(b->seq_lens);
    ck_assert_ptr_nonnull(b->seq_ids);
    for (int64_t q = 0, row = 0; q < b->num_seqs; row += b->seq_lens[q], q++) {
        ck_assert_int_eq(st->step_row[q], row);
        if (st->index > 0) ck_assert_int_eq(b->seq_lens[q], 1);
        for (int64_t j = 0; j < b->seq_lens[q]; j++) {
            ck_assert_int_eq(b->input_ids[row + j], s->full->input_ids[st->full_row[q] + j]);
            ck_assert_int_eq(b->positions[row + j], s->full->positions[st->full_row[q] + j]);
        }
    }
    ck_assert_int_eq((int64_t)lr_recorder_count(st->stages), s->stage_count);
    if (st->index == 0) {
        s->first_seqs = b->num_seqs;
        for (int64_t q = 0; q < b->num_seqs && q < 8; q++)
            s->first_lens[q] = b->seq_lens[q];
    }
    s->tokens += b->num_tokens;
    return ++s->steps == s->stop_at ? 42 : 0;
}

/* gqa-f32-batch (sequences of 7, 12 and 5 tokens) with the last 4 of each decoded: a
 * prefill of 3, 8 and 1 tokens, then 4 steps of one token per sequence; put back
 * together, the run matches a single forward and the golden at the f64 budgets. */
START_TEST(decode_steps_and_the_whole_run) {
    loaded L = load_case(&cases[0]);
    const lr_batch *full = lr_fixture_batch(L.fx);
    ck_assert_int_eq(full->num_seqs, 3);
    lr_model *m = cpu_model(&L, LR_F64, 2);
    lr_recorder *whole, *once;
    ck_assert_int_eq(lr_recorder_create(&whole), LR_OK);
    ck_assert_int_eq(lr_recorder_create(&once), LR_OK);
    seen s = seen_of(&L);
    lr_decode_plan plan = {.decode = 4};
    lr_observer out = lr_recorder_observer(whole);
    ck_assert_msg(lr_decode_run(m, full, &plan, note_step, &s, &out) == LR_OK, "%s", lr_last_error());
    ck_assert_int_eq(s.steps, 5);
    ck_assert_int_eq(s.tokens, full->num_tokens);
    ck_assert_int_eq(s.first_seqs, 3);
    for (int q = 0; q < 3; q++)
        ck_assert_int_eq(s.first_lens[q], full->seq_lens[q] - 4 > 1 ? full->seq_lens[q] - 4 : 1);
    /* the same model in one forward */
    lr_observer obs = lr_recorder_observer(once);
    lr_tensor h, lg;
    ck_assert_int_eq(lr_model_forward(m, full, NULL, &obs, &h), LR_OK);
    ck_assert_int_eq(lr_model_compute_logits(m, &h, &obs, &lg), LR_OK);
    ck_assert_int_eq(lr_recorder_count(whole), lr_recorder_count(once));
    for (size_t i = 0; i < lr_recorder_count(once); i++) {
        const char *name = lr_recorder_name(once, i);
        ck_assert_str_eq(lr_recorder_name(whole, i), name);
        const lr_tensor *d = lr_recorder_at(whole, i);
        ck_assert_int_eq(d->shape[0], full->num_tokens);
        lr_metrics met;
        double tol = lr_tolerance(lr_stage_kind_of(name), LR_F64);
        ck_assert_int_eq(lr_compare(d, lr_recorder_at(once, i), &met), LR_OK);
        ck_assert_msg(lr_metrics_pass(&met, tol), "%s against one forward: rel_l2 %.3e", name, met.rel_l2);
        const lr_st_entry *g = lr_fixture_stage(L.fx, name);
        if (!g) continue;
        ck_assert_int_eq(lr_compare(d, &g->t, &met), LR_OK);
        ck_assert_msg(lr_metrics_pass(&met, tol), "%s against the golden: rel_l2 %.3e", name, met.rel_l2);
    }
    lr_recorder_free(whole);
    lr_recorder_free(once);
    lr_model_free(m);
    unload(&L);
}
END_TEST

/* A prefill limit: at most 3 tokens of each sequence, then one per step until the
 * longest (12) is done. No plan: the whole batch in one step. */
START_TEST(decode_prefill_limit_and_no_plan) {
    loaded L = load_case(&cases[0]);
    const lr_batch *full = lr_fixture_batch(L.fx);
    lr_model *m = cpu_model(&L, LR_F32, 1);
    seen s = seen_of(&L);
    lr_decode_plan plan = {.prefill = 3};
    ck_assert_msg(lr_decode_run(m, full, &plan, note_step, &s, NULL) == LR_OK, "%s", lr_last_error());
    ck_assert_int_eq(s.steps, 1 + 12 - 3);
    for (int q = 0; q < 3; q++)
        ck_assert_int_eq(s.first_lens[q], 3);
    seen one = seen_of(&L);
    ck_assert_msg(lr_decode_run(m, full, NULL, note_step, &one, NULL) == LR_OK, "%s", lr_last_error());
    ck_assert_int_eq(one.steps, 1);
    for (int q = 0; q < 3; q++)
        ck_assert_int_eq(one.first_lens[q], full->seq_lens[q]);
    lr_model_free(m);
    unload(&L);
}
END_TEST

/* The callback's nonzero return ends the run, comes back as the result, and nothing is
 * reported as the whole run. */
START_TEST(decode_callback_stops_the_run) {
    loaded L = load_case(&cases[0]);
    lr_model *m = cpu_model(&L, LR_F32, 1);
    lr_recorder *whole;
    ck_assert_int_eq(lr_recorder_create(&whole), LR_OK);
    lr_observer out = lr_recorder_observer(whole);
    seen s = seen_of(&L);
    s.stop_at = 2;
    lr_decode_plan plan = {.decode = 4};
    ck_assert_int_eq(lr_decode_run(m, lr_fixture_batch(L.fx), &plan, note_step, &s, &out), 42);
    ck_assert_int_eq(s.steps, 2);
    ck_assert_int_eq(lr_recorder_count(whole), 0);
    lr_recorder_free(whole);
    lr_model_free(m);
    unload(&L);
}
END_TEST

START_TEST(decode_refuses_bad_plans_and_batches) {
    loaded L = load_case(&cases[0]);
    lr_model *m = cpu_model(&L, LR_F32, 1);
    lr_decode_plan neg = {.decode = -1};
    ck_assert_int_eq(lr_decode_run(m, lr_fixture_batch(L.fx), &neg, NULL, NULL, NULL), LR_E_INVAL);
    ck_assert_msg(strstr(lr_last_error(), "decode") != NULL, "%s", lr_last_error());
    int64_t ids[4] = {1, 2, 3, 4}, pos[4] = {0, 1, 2, 3}, lens[2] = {3, 3};
    lr_batch b = {.input_ids = ids, .positions = pos, .seq_lens = lens, .num_tokens = 4, .num_seqs = 2};
    ck_assert_int_eq(lr_decode_run(m, &b, NULL, NULL, NULL, NULL), LR_E_INVAL); /* lens sum to 6 */
    ck_assert_msg(strstr(lr_last_error(), "seq_lens") != NULL, "%s", lr_last_error());
    b.seq_lens = NULL; /* two sequences need their lengths */
    ck_assert_int_eq(lr_decode_run(m, &b, NULL, NULL, NULL, NULL), LR_E_INVAL);
    ck_assert_int_eq(lr_decode_run(NULL, &b, NULL, NULL, NULL, NULL), LR_E_INVAL);
    lr_model_free(m);
    unload(&L);
}
END_TEST

static Suite *check_suite(void) {
    Suite *s = suite_create("check");
    TCase *names = tcase_create("stage names");
    tcase_add_test(names, stage_layer_reads_the_layer);
    suite_add_tcase(s, names);
    TCase *drill = tcase_create("drill-down");
    tcase_add_test(drill, drill_down_of_a_passing_run_is_empty);
    tcase_add_test(drill, drill_down_names_the_jump_not_the_first_failure);
    tcase_add_test(drill, drill_down_floor_keeps_rounding_from_looking_like_a_jump);
    tcase_add_test(drill, drill_down_outside_the_layers);
    tcase_add_test(drill, drill_down_finds_the_first_nan);
    tcase_add_test(drill, drill_down_never_blames_a_layer_output);
    suite_add_tcase(s, drill);
    TCase *logits = tcase_create("logits");
    tcase_add_test(logits, logits_of_the_same_run_agree_exactly);
    tcase_add_test(logits, logits_metrics_of_known_softmaxes);
    tcase_add_test(logits, logits_topk_overlap_and_nan);
    tcase_add_test(logits, logits_of_different_shapes_are_refused);
    suite_add_tcase(s, logits);
    TCase *decode = tcase_create("decode");
    tcase_set_timeout(decode, 60);
    tcase_add_test(decode, decode_steps_and_the_whole_run);
    tcase_add_test(decode, decode_prefill_limit_and_no_plan);
    tcase_add_test(decode, decode_callback_stops_the_run);
    tcase_add_test(decode, decode_refuses_bad_plans_and_batches);
    suite_add_tcase(s, decode);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(check_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
