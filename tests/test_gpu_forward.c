/* test_gpu_forward.c: the CUDA backend against the committed golden fixtures, the same
 * way test_forward.c checks the CPU reference: every fixture, every stage, in bf16, fp16
 * and fp32, at tp 1 and (single-GPU mode) tp 2 and 4; decode steps through the paged KV
 * cache; bitwise repeatability; every kernel variant at model level; the profiler; the
 * error model against every run of the sweep, live (the check tests/test_error_model
 * makes of frozen H100 records); a model larger than the card refused before anything is
 * read, and the streaming loader's host memory; decode steps replayed as CUDA graphs
 * (lr_options.cuda_graphs) bitwise equal to the eager steps, through batch-shape changes
 * and a cache reset. Skips (77) without CUDA or without a GPU.
 *
 * With --nccl (tests/test_gpu_nccl.sh) it runs the tensor-parallel ranks on separate GPUs
 * through NCCL instead: every fixture at every precision and every tp in 2, 4, 8 that the
 * host has GPUs for, against the golden at the same budgets as tp 1 and stage by stage
 * against the single-GPU tp mode run of the same shards; decode, repeatability, layer
 * isolation, the profiler and CUDA graphs over NCCL. Skips (77) with fewer than 2 GPUs or
 * without NCCL. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>
#include <stdlib.h>

#ifndef LR_HAVE_CUDA
int main(void) {
    puts("test_gpu_forward: built without CUDA: skipped");
    return 77;
}
#else

#include "gpu_ops.h"
#include "llamaref.h"

#include <check.h>
#include <cuda_runtime_api.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fixture_cases.h"

static const lr_dtype precisions[] = {LR_BF16, LR_F16, LR_F32};
#define N_PREC 3
static const int tps[] = {1, 2, 4};
#define N_TP 3
static const int nccl_tps[] = {2, 4, 8};
#define N_NCCL_TP 3

/* 1: the single-GPU tp mode (the ranks in turn on GPU 0); 0 (--nccl): tp GPUs over NCCL. */
static int devices_mode = 1;
static int gpu_count;
/* Tests that found the machine unfit and said so (SKIPPED in the output); when every test
 * that ran skipped, the program exits 77. */
static int skipped_tests;

/* The CUDA backend's options at a precision, everything else at its default. */
static lr_options cuda_options(lr_dtype precision) {
    lr_options o;
    lr_options_init(&o);
    o.backend = "cuda";
    o.precision = precision;
    return o;
}

static lr_model *make_model_on(const lr_checkpoint *ck, lr_dtype precision, int tp, const char *kernels,
                               int devices) {
    lr_options o = cuda_options(precision);
    o.tp_size = tp;
    o.num_devices = devices;
    o.kernels = kernels;
    lr_model *m;
    ck_assert_msg(lr_model_create(ck, &o, &m) == LR_OK, "%s", lr_last_error());
    int want = devices == 0 && tp > 1 && tp <= gpu_count ? tp : 1;
    ck_assert_msg(lr_model_num_devices(m) == want, "tp %d, devices %d: the model runs on %d GPUs, not %d", tp,
                  devices, lr_model_num_devices(m), want);
    return m;
}

static lr_model *make_model(const lr_checkpoint *ck, lr_dtype precision, int tp, const char *kernels) {
    return make_model_on(ck, precision, tp, kernels, devices_mode);
}

static void run_recorded(lr_model *m, const lr_batch *b, lr_kv_cache *kv, lr_recorder *rec) {
    lr_observer obs = lr_recorder_observer(rec);
    lr_tensor hidden, logits;
    ck_assert_msg(lr_model_forward(m, b, kv, &obs, &hidden) == LR_OK, "%s", lr_last_error());
    ck_assert_msg(lr_model_compute_logits(m, &hidden, &obs, &logits) == LR_OK, "%s", lr_last_error());
    ck_assert_msg(lr_recorder_status(rec) == LR_OK, "%s", lr_last_error());
}

/* Every stage of the fixture against the tolerance table; the worst share of budget is
 * printed so drift shows before failure. */
static void expect_golden(const loaded *L, lr_recorder *rec, lr_dtype precision, const char *what) {
    double worst = 0;
    const char *worst_stage = "";
    for (size_t i = 0; i < lr_fixture_stage_count(L->fx); i++) {
        const lr_st_entry *gold = lr_fixture_stage_at(L->fx, i);
        const lr_tensor *got = lr_recorder_find(rec, gold->name);
        ck_assert_msg(got != NULL, "%s: stage %s not reported", what, gold->name);
        /* Every criterion of the stage: whole tensor, worst token, every element. */
        lr_metrics met;
        lr_criteria crit = lr_stage_criteria(lr_stage_kind_of(gold->name), precision, -1);
        double tol = crit.rel_l2;
        ck_assert_int_eq(lr_compare_stage(got, &gold->t, &crit, &met), LR_OK);
        ck_assert_msg(lr_metrics_pass(&met, tol),
                      "%s: %s fails (bits %u): rel_l2 %.3e (%.2e), token %.3e (%.2e), %lld elements over", what,
                      gold->name, lr_metrics_failures(&met, tol), met.rel_l2, tol, met.token_rel_l2, crit.token,
                      (long long)met.elem_fail);
        if (met.rel_l2 / tol > worst) {
            worst = met.rel_l2 / tol;
            worst_stage = gold->name;
        }
    }
    printf("%-40s worst %5.1f%% of budget at %s\n", what, 100 * worst, worst_stage);
}

static const char *pname(lr_dtype d) { return d == LR_BF16 ? "bf16" : d == LR_F16 ? "fp16" : "fp32"; }

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The error model against this run, measured live on this GPU, as tests/test_error_model
 * holds the frozen H100 records to it (model_holds_for_frozen_h100_records_2026_11_25): no
 * stage over LR_ERROR_MODEL_HI x its prediction (a stage predicted exact must be exact),
 * and the median of measured / predicted at least LR_ERROR_MODEL_LO. */
static void expect_error_model(const loaded *L, lr_recorder *rec, lr_dtype precision, const char *what) {
    lr_error_model *em = case_error_model(L, precision);
    static double r[4096];
    int n = 0;
    double worst = 0;
    for (size_t i = 0; i < lr_fixture_stage_count(L->fx); i++) {
        const lr_st_entry *g = lr_fixture_stage_at(L->fx, i);
        const lr_tensor *got = lr_recorder_find(rec, g->name);
        ck_assert_msg(got != NULL, "%s: stage %s not reported", what, g->name);
        lr_metrics met;
        ck_assert_int_eq(lr_compare(got, &g->t, &met), LR_OK);
        double pred = lr_error_model_predict(em, g->name);
        if (pred <= 0) {
            ck_assert_msg(met.rel_l2 == 0, "%s: %s has error %.3e where the error model predicts exactly none",
                          what, g->name, met.rel_l2);
            continue;
        }
        ck_assert_msg(met.rel_l2 <= LR_ERROR_MODEL_HI * pred, "%s: %s measured %.3e > %.1f x the error model's %.3e",
                      what, g->name, met.rel_l2, LR_ERROR_MODEL_HI, pred);
        if (n < (int)(sizeof r / sizeof r[0])) r[n++] = met.rel_l2 / pred;
        worst = met.rel_l2 / pred > worst ? met.rel_l2 / pred : worst;
    }
    ck_assert_msg(n > 0, "%s: no stage the error model predicts", what);
    qsort(r, (size_t)n, sizeof r[0], by_value);
    ck_assert_msg(r[n / 2] >= LR_ERROR_MODEL_LO,
                  "%s: median measured / predicted %.3f < %.3f: the error model is too pessimistic", what, r[n / 2],
                  LR_ERROR_MODEL_LO);
    printf("%-40s error model (live): measured / predicted median %.2f, max %.2f\n", what, r[n / 2], worst);
    lr_error_model_free(em);
}

/* loop index = case x precision x tp */
START_TEST(every_stage_matches_golden) {
    int ci = _i / (N_PREC * N_TP), pi = (_i / N_TP) % N_PREC, ti = _i % N_TP;
    loaded L = load_case(&cases[ci]);
    lr_model *m = make_model(L.ck, precisions[pi], tps[ti], NULL);
    lr_recorder *rec;
    ck_assert_int_eq(lr_recorder_create(&rec), LR_OK);
    run_recorded(m, lr_fixture_batch(L.fx), NULL, rec);
    char what[128];
    snprintf(what, sizeof what, "%s %s tp %d", cases[ci].fixture, pname(precisions[pi]), tps[ti]);
    expect_golden(&L, rec, precisions[pi], what);
    expect_error_model(&L, rec, precisions[pi], what);
    lr_recorder_free(rec);
    lr_model_free(m);
    unload(&L);
}
END_TEST

/* --nccl: tp N over N GPUs against the golden (the budgets of tp 1) and, stage by stage,
 * against the single-GPU tp mode run of the same shards, within the same budgets; how
 * many stages are bitwise identical is printed. loop index = case x precision x tp. */
START_TEST(nccl_matches_golden_and_one_gpu) {
    int ci = _i / (N_PREC * N_NCCL_TP), pi = (_i / N_NCCL_TP) % N_PREC, tp = nccl_tps[_i % N_NCCL_TP];
    /* nccl_suite adds only the tp sizes the host has GPUs for, and says which it skips */
    ck_assert_msg(tp <= gpu_count, "tp %d over NCCL needs %d GPUs; the host has %d", tp, tp, gpu_count);
    loaded L = load_case(&cases[ci]);
    lr_model *multi = make_model_on(L.ck, precisions[pi], tp, NULL, 0);
    lr_model *one = make_model_on(L.ck, precisions[pi], tp, NULL, 1);
    lr_recorder *rm, *r1;
    ck_assert_int_eq(lr_recorder_create(&rm), LR_OK);
    ck_assert_int_eq(lr_recorder_create(&r1), LR_OK);
    run_recorded(multi, lr_fixture_batch(L.fx), NULL, rm);
    run_recorded(one, lr_fixture_batch(L.fx), NULL, r1);
    char what[128];
    snprintf(what, sizeof what, "%s %s tp %d over %d GPUs", cases[ci].fixture, pname(precisions[pi]), tp, tp);
    expect_golden(&L, rm, precisions[pi], what);
    size_t same = 0, n = lr_recorder_count(rm);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = lr_recorder_name(rm, i);
        const lr_tensor *x = lr_recorder_at(rm, i), *y = lr_recorder_find(r1, name);
        ck_assert_msg(y != NULL, "%s: stage %s missing from the single-GPU run", what, name);
        lr_metrics met;
        ck_assert_int_eq(lr_compare(x, y, &met), LR_OK);
        double tol = lr_tolerance(lr_stage_kind_of(name), precisions[pi]);
        ck_assert_msg(lr_metrics_pass(&met, tol), "%s: %s against the single-GPU run: rel_l2 %.3e > %.2e", what, name,
                      met.rel_l2, tol);
        same += met.max_abs == 0;
        worst = met.rel_l2 > worst ? met.rel_l2 : worst;
    }
    printf("%-40s against one GPU: %zu/%zu stages bitwise identical, max rel_l2 %.2e\n", what, same, n, worst);
    lr_recorder_free(rm);
    lr_recorder_free(r1);
    lr_model_free(multi);
    lr_model_free(one);
    unload(&L);
}
END_TEST

/* The profiler (lr_model_set_profiling on the CUDA backend): every op kind of a forward
 * and its logits is timed, all-reduce once per reduction at tp 2 and never at tp 1, and
 * the total stays within the wall time of the pass. loop index = tp 1, 2. */
START_TEST(profiler_times_every_op) {
    int tp = _i + 1;
    loaded L = load_case(&cases[0]);
    lr_model *m = make_model(L.ck, LR_BF16, tp, NULL);
    const lr_batch *b = lr_fixture_batch(L.fx);
    lr_tensor h, lg;
    ck_assert_int_eq(lr_model_forward(m, b, NULL, NULL, &h), LR_OK); /* warm: buffers grown */
    ck_assert_int_eq(lr_model_set_profiling(m, true), LR_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(lr_model_forward(m, b, NULL, NULL, &h), LR_OK);
    ck_assert_int_eq(lr_model_compute_logits(m, &h, NULL, &lg), LR_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    lr_profile p;
    ck_assert_int_eq(lr_model_get_profile(m, &p), LR_OK);
    int64_t layers = lr_model_config(m)->num_hidden_layers;
    uint64_t total = 0;
    for (int op = 0; op < LR_PROF_COUNT; op++) {
        total += p.ns[op];
        if (op == LR_PROF_ALL_REDUCE) {
            /* after the embedding, o_proj and down_proj of every layer */
            ck_assert_uint_eq(p.calls[op], tp > 1 ? (uint64_t)(2 * layers + 1) : 0);
        } else {
            ck_assert_msg(p.calls[op] > 0 && p.ns[op] > 0, "tp %d: %s not timed (%llu calls, %llu ns)", tp,
                          lr_prof_op_name((lr_prof_op)op), (unsigned long long)p.calls[op],
                          (unsigned long long)p.ns[op]);
        }
    }
    double wall = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    ck_assert_msg((double)total <= wall, "tp %d: %llu ns profiled in %.0f ns of wall time", tp,
                  (unsigned long long)total, wall);
    printf("profiler tp %d on %d GPU(s): %.0f%% of the pass's wall time attributed, all-reduce %.1f%%\n", tp,
           lr_model_num_devices(m), 100 * (double)total / wall, 100 * (double)p.ns[LR_PROF_ALL_REDUCE] / (double)total);
    /* Off: the counters stay as they were. */
    ck_assert_int_eq(lr_model_set_profiling(m, false), LR_OK);
    ck_assert_int_eq(lr_model_forward(m, b, NULL, NULL, &h), LR_OK);
    lr_profile q;
    ck_assert_int_eq(lr_model_get_profile(m, &q), LR_OK);
    ck_assert_int_eq(memcmp(&p, &q, sizeof p), 0);
    lr_model_free(m);
    unload(&L);
}
END_TEST

/* Each registered variant of each family, alone, through the whole model (bf16, tp 2). */
START_TEST(every_kernel_variant_at_model_level) {
    const lr_gpu_variant *v = lr_gpu_variant_at((size_t)_i);
    char kernels[128], what[160];
    snprintf(kernels, sizeof kernels, "%s=%s", v->family, v->name);
    for (int ci = 0; ci < N_CASES; ci++) {
        loaded L = load_case(&cases[ci]);
        lr_model *m = make_model(L.ck, LR_BF16, 2, kernels);
        lr_recorder *rec;
        ck_assert_int_eq(lr_recorder_create(&rec), LR_OK);
        run_recorded(m, lr_fixture_batch(L.fx), NULL, rec);
        snprintf(what, sizeof what, "%s %s", cases[ci].fixture, kernels);
        expect_golden(&L, rec, LR_BF16, what);
        lr_recorder_free(rec);
        lr_model_free(m);
        unload(&L);
    }
}
END_TEST

static int count_step(void *user, const lr_decode_step *st) {
    (void)st;
    ++*(int *)user;
    return 0;
}

/* Prefill the first 3 tokens of each sequence, then one token per sequence per step, all
 * sequences in one batch, through the paged cache (lr_decode_run). Each step's rows of
 * every stage are put back at their places in the prompt, and the assembled tensors are
 * checked against the golden with the same whole-tensor metric and budget as a full run
 * (the budgets come from PyTorch's whole-tensor error; a single bf16 row is noisier than
 * its tensor). loop index = case x precision. */
START_TEST(decode_after_prefill_matches_golden) {
    const fixture_case *fc = &cases[_i / N_PREC];
    lr_dtype precision = precisions[_i % N_PREC];
    loaded L = load_case(fc);
    lr_model *m = make_model(L.ck, precision, 2, NULL);
    lr_recorder *whole;
    ck_assert_int_eq(lr_recorder_create(&whole), LR_OK);
    lr_observer out = lr_recorder_observer(whole);
    lr_decode_plan plan = {.prefill = 3};
    int rounds = 0;
    ck_assert_msg(lr_decode_run(m, lr_fixture_batch(L.fx), &plan, count_step, &rounds, &out) == LR_OK, "%s",
                  lr_last_error());
    ck_assert_msg(lr_recorder_status(whole) == LR_OK, "%s", lr_last_error());
    ck_assert_int_gt(rounds, 1);
    double worst = 0;
    for (size_t i = 0; i < lr_fixture_stage_count(L.fx); i++) {
        const lr_st_entry *g = lr_fixture_stage_at(L.fx, i);
        const lr_tensor *a = lr_recorder_find(whole, g->name);
        ck_assert_msg(a != NULL, "%s %s decode: stage %s not reported", fc->fixture, pname(precision), g->name);
        lr_metrics met;
        ck_assert_int_eq(lr_compare(a, &g->t, &met), LR_OK);
        double tol = lr_tolerance(lr_stage_kind_of(g->name), precision);
        ck_assert_msg(lr_metrics_pass(&met, tol), "%s %s decode (%d rounds): %s rel_l2 %.3e > %.2e", fc->fixture,
                      pname(precision), rounds, g->name, met.rel_l2, tol);
        worst = met.rel_l2 / tol > worst ? met.rel_l2 / tol : worst;
    }
    printf("%s %s decode, %d rounds: worst %.1f%% of budget\n", fc->fixture, pname(precision), rounds, 100 * worst);
    lr_recorder_free(whole);
    lr_model_free(m);
    unload(&L);
}
END_TEST

/* Same settings, same bits: run twice (with and without an observer in between). */
START_TEST(runs_repeat_bitwise) {
    loaded L = load_case(&cases[0]);
    const lr_batch *b = lr_fixture_batch(L.fx);
    lr_model *m = make_model(L.ck, LR_BF16, 2, NULL);
    lr_tensor h, lg;
    ck_assert_int_eq(lr_model_forward(m, b, NULL, NULL, &h), LR_OK);
    ck_assert_int_eq(lr_model_compute_logits(m, &h, NULL, &lg), LR_OK);
    size_t n = (size_t)lr_tensor_numel(&lg) * 2;
    void *first = malloc(n);
    memcpy(first, lg.data, n);
    lr_recorder *rec;
    ck_assert_int_eq(lr_recorder_create(&rec), LR_OK);
    run_recorded(m, b, NULL, rec);
    ck_assert_int_eq(lr_model_forward(m, b, NULL, NULL, &h), LR_OK);
    ck_assert_int_eq(lr_model_compute_logits(m, &h, NULL, &lg), LR_OK);
    ck_assert_int_eq(memcmp(first, lg.data, n), 0);
    free(first);
    lr_recorder_free(rec);
    lr_model_free(m);
    unload(&L);
}
END_TEST

/* lr_model_forward_rows on the GPU: each row bit for bit forward's row of that token, the
 * logits of its rows bit for bit those of the same rows gathered from forward's (the same
 * LM head call), for rows unordered and repeated, an equally spaced run (one strided copy)
 * and every row reversed (n = T: compute_logits must not take the device's unpermuted
 * rows for them). Loop index: case x precision, tp 2 (the ranks of the single-GPU mode). */
START_TEST(forward_rows_are_forwards_rows) {
    const fixture_case *fc = &cases[_i / N_PREC];
    lr_dtype prec = precisions[_i % N_PREC];
    loaded L = load_case(fc);
    const lr_batch *b = lr_fixture_batch(L.fx);
    const lr_config *c = lr_checkpoint_config(L.ck);
    lr_model *m = make_model(L.ck, prec, 2, NULL);
    int64_t T = b->num_tokens, H = c->hidden_size, V = c->vocab_size;
    size_t es = lr_dtype_size(prec), w = (size_t)H * es;
    int64_t *rows = malloc((size_t)(T + 8) * sizeof *rows);
    unsigned char *full = malloc((size_t)T * w), *picked = malloc((size_t)(T + 8) * w),
                  *want = malloc((size_t)((T + 8) * V) * es);
    lr_tensor h, lg;
    ck_assert_msg(lr_model_forward(m, b, NULL, NULL, &h) == LR_OK, "%s", lr_last_error());
    memcpy(full, h.data, (size_t)T * w);
    for (int set = 0; set < 3; set++) {
        int64_t n = 0;
        if (set == 0) {
            const int64_t mixed[] = {T - 1, 0, T - 1, T / 2, 0, 1 % T, 2 % T};
            for (n = 0; n < 7; n++)
                rows[n] = mixed[n];
        } else if (set == 1) {
            for (int64_t r = 1; r < T; r += 3)
                rows[n++] = r;
        } else {
            for (n = 0; n < T; n++)
                rows[n] = T - 1 - n;
        }
        for (int64_t i = 0; i < n; i++)
            memcpy(picked + (size_t)i * w, full + (size_t)rows[i] * w, w);
        lr_tensor sel = {prec, 2, {n, H}, picked};
        ck_assert_msg(lr_model_compute_logits(m, &sel, NULL, &lg) == LR_OK, "%s", lr_last_error());
        memcpy(want, lg.data, (size_t)(n * V) * es);
        ck_assert_msg(lr_model_forward_rows(m, b, NULL, NULL, rows, n, &h) == LR_OK, "%s", lr_last_error());
        ck_assert_int_eq(h.shape[0], n);
        for (int64_t i = 0; i < n; i++)
            ck_assert_msg(
                memcmp((const unsigned char *)h.data + (size_t)i * w, full + (size_t)rows[i] * w, w) == 0,
                "%s %s, set %d: forward_rows' row %lld is not forward's row %lld", fc->fixture,
                lr_dtype_name(prec), set, (long long)i, (long long)rows[i]);
        ck_assert_msg(lr_model_compute_logits(m, &h, NULL, &lg) == LR_OK, "%s", lr_last_error());
        ck_assert_msg(memcmp(lg.data, want, (size_t)(n * V) * es) == 0,
                      "%s %s, set %d: the logits of forward_rows' %lld rows differ from those of forward's",
                      fc->fixture, lr_dtype_name(prec), set, (long long)n);
    }
    printf("%s %s: forward_rows bitwise forward's rows, and their logits (3 row sets)\n", fc->fixture,
           lr_dtype_name(prec));
    free(rows), free(full), free(picked), free(want);
    lr_model_free(m);
    unload(&L);
}
END_TEST

/* lr_model_greedy on the GPU (the logits left on the device, each rank's argmax, the ranks
 * compared on the host): each token the argmax of compute_logits' row, at tp 1 and 2 (two
 * vocabulary shards), for forward's hidden states (still on the device) and for hidden
 * rows handed back from the host. Loop index: case x precision. */
START_TEST(greedy_is_the_argmax_of_the_logits) {
    const fixture_case *fc = &cases[_i / N_PREC];
    lr_dtype prec = precisions[_i % N_PREC];
    loaded L = load_case(fc);
    const lr_batch *b = lr_fixture_batch(L.fx);
    int64_t T = b->num_tokens, V = lr_checkpoint_config(L.ck)->vocab_size;
    size_t es = lr_dtype_size(prec);
    int64_t *want = malloc((size_t)T * sizeof *want), *got = malloc((size_t)T * sizeof *got);
    double *row = malloc((size_t)V * sizeof *row);
    for (int tp = 1; tp <= 2; tp++) {
        lr_model *m = make_model(L.ck, prec, tp, NULL);
        lr_tensor h, lg;
        ck_assert_msg(lr_model_forward(m, b, NULL, NULL, &h) == LR_OK, "%s", lr_last_error());
        size_t hb = (size_t)lr_tensor_numel(&h) * es;
        void *copy = malloc(hb);
        memcpy(copy, h.data, hb);
        ck_assert_msg(lr_model_greedy(m, &h, NULL, got) == LR_OK, "%s", lr_last_error());
        ck_assert_msg(lr_model_compute_logits(m, &h, NULL, &lg) == LR_OK, "%s", lr_last_error());
        for (int64_t t = 0; t < T; t++) { /* the rule: the first NaN, else the first largest */
            lr_convert(row, LR_F64, (const char *)lg.data + (size_t)(t * V) * es, prec, (size_t)V);
            int64_t at = -1;
            for (int64_t j = 0; j < V && at < 0; j++)
                if (isnan(row[j])) at = j;
            if (at < 0) {
                at = 0;
                for (int64_t j = 1; j < V; j++)
                    if (row[j] > row[at]) at = j;
            }
            want[t] = at;
            ck_assert_msg(got[t] == at, "%s %s tp %d: greedy token %lld is %lld, the logits' argmax %lld",
                          fc->fixture, lr_dtype_name(prec), tp, (long long)t, (long long)got[t],
                          (long long)at);
        }
        lr_tensor back = {prec, 2, {T, h.shape[1]}, copy}; /* from the host: uploaded */
        ck_assert_msg(lr_model_greedy(m, &back, NULL, got) == LR_OK, "%s", lr_last_error());
        ck_assert_msg(memcmp(got, want, (size_t)T * sizeof *got) == 0,
                      "%s %s tp %d: greedy of hidden from the host differs", fc->fixture, lr_dtype_name(prec),
                      tp);
        free(copy);
        lr_model_free(m);
    }
    printf("%s %s: greedy tokens the logits' argmax at tp 1 and 2\n", fc->fixture, lr_dtype_name(prec));
    free(want), free(got), free(row);
    unload(&L);
}
END_TEST

/* Layer isolation on the GPU: every layer fed the golden residual stream still passes
 * every stage (its own error only). */
static const lr_tensor *inject_golden(void *user, const char *stage) {
    const lr_st_entry *e = lr_fixture_stage((const lr_fixture *)((void **)user)[1], stage);
    return e ? &e->t : NULL;
}
static void record_fwd(void *user, const char *stage, const lr_tensor *t) {
    lr_observer *rec = ((void **)user)[0];
    rec->on_stage(rec->user, stage, t);
}

START_TEST(isolated_layers_match_golden) {
    loaded L = load_case(&cases[_i]);
    lr_model *m = make_model(L.ck, LR_BF16, 2, NULL);
    lr_recorder *rec;
    ck_assert_int_eq(lr_recorder_create(&rec), LR_OK);
    lr_observer inner = lr_recorder_observer(rec);
    void *ctx[2] = {&inner, L.fx};
    lr_observer obs = {.on_stage = record_fwd, .user = ctx, .inject = inject_golden};
    lr_tensor h, lg;
    ck_assert_msg(lr_model_forward(m, lr_fixture_batch(L.fx), NULL, &obs, &h) == LR_OK, "%s", lr_last_error());
    ck_assert_msg(lr_model_compute_logits(m, &h, &obs, &lg) == LR_OK, "%s", lr_last_error());
    char what[128];
    snprintf(what, sizeof what, "%s bf16 tp 2 isolated", cases[_i].fixture);
    expect_golden(&L, rec, LR_BF16, what);
    lr_recorder_free(rec);
    lr_model_free(m);
    unload(&L);
}
END_TEST

/* After a failure: m (bf16) still runs L's fixture and matches its golden. */
static void still_matches_golden(const loaded *L, lr_model *m, const char *what) {
    lr_recorder *rec;
    ck_assert_int_eq(lr_recorder_create(&rec), LR_OK);
    run_recorded(m, lr_fixture_batch(L->fx), NULL, rec);
    expect_golden(L, rec, LR_BF16, what);
    lr_recorder_free(rec);
}

/* More than the card holds is a clear error, and the card still works afterwards. */
START_TEST(out_of_gpu_memory_is_a_clear_error) {
    loaded L = load_case(&cases[0]);
    lr_model *m = make_model(L.ck, LR_BF16, 1, NULL);
    lr_kv_cache *kv = NULL;
    /* One pool (keys of one layer) a quarter larger than the card's whole memory,
     * whatever the card: 2^16 slots of as many bf16 tokens as that takes. */
    size_t free_b = 0, total_b = 0;
    ck_assert_int_eq(cudaMemGetInfo(&free_b, &total_b), cudaSuccess);
    const lr_config *c = lr_model_config(m);
    int64_t slots = (int64_t)1 << 16, per_token = 2 * c->num_key_value_heads * c->head_dim;
    int64_t len = (int64_t)(1.25 * (double)total_b / (double)per_token / (double)slots) + 16;
    ck_assert_int_eq(lr_kv_cache_create(m, slots, len, &kv), LR_E_DEVICE);
    ck_assert_msg(strstr(lr_last_error(), "GiB") != NULL, "%s", lr_last_error());
    ck_assert_ptr_null(kv);
    still_matches_golden(&L, m, "gqa-f32-batch bf16 after an out-of-memory");
    lr_model_free(m);
    unload(&L);
}
END_TEST

/* Llama-2-70B's shapes (H 8192, I 28672, 64 heads, 8 KV heads of 128, vocab 32000). */
static const long long S70_H = 8192, S70_I = 28672, S70_NH = 64, S70_KV = 8, S70_HD = 128, S70_V = 32000;
static const long long S70_PER_LAYER = 2 * S70_H + 2 * S70_NH * S70_HD * S70_H + 2 * S70_KV * S70_HD * S70_H +
                                       3 * S70_H * S70_I;       /* parameters */
static const long long S70_OUTSIDE = 2 * S70_V * S70_H + S70_H; /* embedding, lm_head, final norm */
static const long long S70_LARGEST = S70_V * S70_H;             /* the embedding's parameters */

/* Writes DIR (LR_TMPDIR/name) holding a bf16 checkpoint of Llama-2-70B's layer shapes
 * with `layers` layers: a sparse file, header and size only, so the host's disk holds
 * next to nothing and every weight reads as 0. Returns the weights' bytes. */
static long long write_sparse_70b_shaped(const char *name, long long layers, char *dir, size_t dir_size) {
    const char *tmp = getenv("LR_TMPDIR");
    ck_assert_ptr_nonnull(tmp);
    char path[1100];
    snprintf(dir, dir_size, "%s/%s", tmp, name);
    mkdir(dir, 0755);
    const long long H = S70_H, I = S70_I, NH = S70_NH, KV = S70_KV, HD = S70_HD, V = S70_V, L = layers;
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_act\": \"silu\", "
            "\"hidden_size\": %lld, \"intermediate_size\": %lld, \"num_hidden_layers\": %lld, "
            "\"num_attention_heads\": %lld, \"num_key_value_heads\": %lld, \"head_dim\": %lld, \"vocab_size\": %lld, "
            "\"max_position_embeddings\": 4096, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, "
            "\"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\"}\n",
            H, I, L, NH, KV, HD, V);
    fclose(f);
    json_t *hdr = json_object();
    long long off = 0;
#define ADD(name, r, c)                                                                                    \
    do {                                                                                                   \
        long long n_ = (long long)(r) * (c) * 2;                                                           \
        json_object_set_new(hdr, name,                                                                     \
                            (c) > 1 ? json_pack("{s:s, s:[I,I], s:[I,I]}", "dtype", "BF16", "shape",       \
                                                (json_int_t)(r), (json_int_t)(c), "data_offsets",           \
                                                (json_int_t)off, (json_int_t)(off + n_))                    \
                                    : json_pack("{s:s, s:[I], s:[I,I]}", "dtype", "BF16", "shape",         \
                                                (json_int_t)(r), "data_offsets", (json_int_t)off,           \
                                                (json_int_t)(off + n_)));                                   \
        off += n_;                                                                                         \
    } while (0)
    ADD("model.embed_tokens.weight", V, H);
    char tname[128];
    for (long long l = 0; l < L; l++) {
        static const struct {
            const char *suffix;
            char rows, cols; /* H, I, Q (heads x head_dim), K (kv heads x head_dim), 1 */
        } t[] = {{"input_layernorm.weight", 'H', '1'},  {"post_attention_layernorm.weight", 'H', '1'},
                 {"self_attn.q_proj.weight", 'Q', 'H'}, {"self_attn.k_proj.weight", 'K', 'H'},
                 {"self_attn.v_proj.weight", 'K', 'H'}, {"self_attn.o_proj.weight", 'H', 'Q'},
                 {"mlp.gate_proj.weight", 'I', 'H'},    {"mlp.up_proj.weight", 'I', 'H'},
                 {"mlp.down_proj.weight", 'H', 'I'}};
        for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
            long long d[2];
            for (int j = 0; j < 2; j++) {
                char c = j ? t[k].cols : t[k].rows;
                d[j] = c == 'H' ? H : c == 'I' ? I : c == 'Q' ? NH * HD : c == 'K' ? KV * HD : 1;
            }
            snprintf(tname, sizeof tname, "model.layers.%lld.%s", l, t[k].suffix);
            ADD(tname, d[0], d[1]);
        }
    }
    ADD("model.norm.weight", H, 1);
    ADD("lm_head.weight", V, H);
#undef ADD
    char *js = json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    size_t jl = strlen(js), padded = (jl + 7) / 8 * 8;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    ck_assert(fwrite(len8, 1, 8, f) == 8 && fwrite(js, 1, jl, f) == jl && fwrite("        ", 1, padded - jl, f) == padded - jl);
    free(js);
    ck_assert_int_eq(ftruncate(fileno(f), (off_t)(8 + padded + off)), 0); /* sparse: no data written */
    fclose(f);
    ck_assert_int_eq(off, 2 * (S70_OUTSIDE + L * S70_PER_LAYER));
    return off;
}

static void remove_sparse(const char *dir) {
    char path[1100];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
}

/* A checkpoint of Llama-2-70B's layer shapes with as many layers as it takes for its
 * bf16 weights to be a quarter larger than the card's whole memory, whatever the card
 * (62 layers, 100 GiB, on an 80 GB H100; 110 layers, 176 GiB, on an H200's 139.8 GiB): a
 * sparse file (write_sparse_70b_shaped).
 * The model does not fit the card; the backend says so, with the sizes needed and free,
 * before the host reads a single weight (the pre-flight against cudaMemGetInfo), so the
 * host's memory stays where it was: the process's peak resident set does not grow by
 * even one tensor. At tp 1, and at tp 2 on this one GPU, where each rank alone would fit
 * a card of 1.25 / 2 of its memory but not both. */
START_TEST(a_model_larger_than_the_card_is_a_clear_error) {
    size_t free_b = 0, total_b = 0; /* GPU 0's, where a tp 1 model goes */
    ck_assert_int_eq(cudaSetDevice(0), cudaSuccess);
    ck_assert_int_eq(cudaMemGetInfo(&free_b, &total_b), cudaSuccess);
    const long long want = (long long)(total_b / 2) / 4 * 5; /* parameters: 2 bytes each in bf16 */
    const long long L = want > S70_OUTSIDE ? (want - S70_OUTSIDE) / S70_PER_LAYER + 1 : 1;
    char dir[1024];
    const long long bytes = write_sparse_70b_shaped("gpu-oversize", L, dir, sizeof dir);
    ck_assert_msg((unsigned long long)bytes > total_b, "%lld layers: %lld bytes, the card has %zu", L, bytes,
                  total_b);
    printf("test_gpu_forward: oversize model: %lld layers, %.1f GiB in bf16 "
           "for a card of %.1f GiB (%.1f GiB free)\n",
           L, (double)bytes / (1 << 30), (double)total_b / (1 << 30), (double)free_b / (1 << 30));

    lr_checkpoint *ck;
    ck_assert_msg(lr_checkpoint_open(dir, &ck) == LR_OK, "%s", lr_last_error());
    lr_model *m = NULL;
    /* tp 1, and tp 2 with both ranks on GPU 0 (the single-GPU mode): the GPU's need is
     * every rank it holds, so rank 0 (which alone fits) is not loaded before rank 1 fails */
    for (int tp = 1; tp <= 2; tp++) {
        lr_options o = cuda_options(LR_BF16);
        o.tp_size = tp;
        o.num_devices = 1;
        uint64_t peak_before = lr_host_peak_rss();
        ck_assert_int_eq(lr_model_create(ck, &o, &m), LR_E_DEVICE);
        uint64_t peak_after = lr_host_peak_rss();
        ck_assert_ptr_null(m);
        ck_assert_msg(strstr(lr_last_error(), "GiB") != NULL && strstr(lr_last_error(), "free") != NULL &&
                          strstr(lr_last_error(), "nothing was read") != NULL,
                      "tp %d: %s", tp, lr_last_error());
        ck_assert_msg(tp == 1 || strstr(lr_last_error(), "2 ranks of tp 2") != NULL, "%s", lr_last_error());
        printf("test_gpu_forward: oversize model, tp %d: %s\n", tp, lr_last_error());
        /* not one embedding's worth (500 MiB of bf16) read into the host */
        ck_assert_msg(peak_after - peak_before < (uint64_t)S70_LARGEST * 2,
                      "tp %d: refusing the oversize model raised the host's peak RSS by %.1f MiB", tp,
                      (peak_after - peak_before) / 1048576.0);
    }
    lr_checkpoint_close(ck);
    remove_sparse(dir);
    loaded Lc = load_case(&cases[0]); /* the card works afterwards */
    m = make_model(Lc.ck, LR_BF16, 1, NULL);
    still_matches_golden(&Lc, m, "gqa-f32-batch bf16 after an oversize model");
    lr_model_free(m);
    unload(&Lc);
}
END_TEST

/* The loader streams (issue 18): a bf16 checkpoint of Llama-2-70B's shapes, 8 layers,
 * 13.8 GiB (a sparse file: every weight reads as 0), loads into the card while the host's
 * resident set grows by no more than the loader's budget: its pinned staging, twice one
 * chunk's source pages (a chunk's pages straddle rows; readahead) and 512 MiB for the rest
 * (a cuBLAS handle, the plan), where the loader before it held the whole rank in float32
 * (27.5 GiB) and the sources of a packed tensor (896 MiB for gate_up_proj) stay under it.
 * The host's peak is reset first through /proc/self/clear_refs where the kernel allows it
 * (else it is measured from the peak before). The device bytes are reported. */
START_TEST(loading_streams_in_bounded_host_memory) {
    const long long L = 8;
    size_t free_b = 0, total_b = 0;
    ck_assert_int_eq(cudaSetDevice(0), cudaSuccess);
    ck_assert_int_eq(cudaMemGetInfo(&free_b, &total_b), cudaSuccess);
    const long long bytes = 2 * (S70_OUTSIDE + L * S70_PER_LAYER);
    if ((double)bytes > 0.8 * (double)free_b) {
        printf("test_gpu_forward: SKIPPED: loading_streams_in_bounded_host_memory: the %.1f GiB model "
               "needs a card with %.1f GiB free, GPU 0 has %.1f GiB\n",
               (double)bytes / (1 << 30), (double)bytes / 0.8 / (1 << 30), (double)free_b / (1 << 30));
        skipped_tests++;
        return;
    }
    /* the CUDA context and cuBLAS loaded first, so that their pages are not the load's */
    loaded Lc = load_case(&cases[0]);
    lr_model *small = make_model(Lc.ck, LR_BF16, 1, NULL);
    lr_model_free(small);
    unload(&Lc);
    char dir[1024];
    ck_assert_int_eq(write_sparse_70b_shaped("gpu-stream", L, dir, sizeof dir), bytes);
    lr_checkpoint *ck;
    ck_assert_msg(lr_checkpoint_open(dir, &ck) == LR_OK, "%s", lr_last_error());
    bool reset = lr_host_peak_rss_reset();
    long rss0 = lr_host_status_kib("VmRSS"), hwm0 = lr_host_status_kib("VmHWM");
    ck_assert_msg(rss0 > 0 && hwm0 > 0, "no VmRSS or VmHWM in /proc/self/status");
    lr_options o = cuda_options(LR_BF16);
    lr_model *m = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_msg(lr_model_create(ck, &o, &m) == LR_OK, "%s", lr_last_error());
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long hwm1 = lr_host_status_kib("VmHWM");
    lr_memory mem;
    ck_assert_int_eq(lr_model_memory(m, &mem), LR_OK);
    /* the loader's budget (docs/performance.md): staging, a chunk (staging / 2 of float32)
     * read from bf16, twice, and the rest */
    double chunk_src = (double)mem.load_staging / 2 / 4 * 2;
    double bound = (double)mem.load_staging + 2 * chunk_src + 512.0 * (1 << 20);
    double grew = 1024.0 * (double)(hwm1 - (reset ? rss0 : hwm0 > rss0 ? hwm0 : rss0));
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("test_gpu_forward: streamed %.1f GiB of bf16 weights in %.1f s (%.1f GiB/s): "
           "host peak RSS %.0f MiB, %.0f MiB over the %.0f MiB before (bound %.0f MiB; peak %s); "
           "device weights %.2f GiB, GPU in use after load %.2f GiB\n",
           (double)bytes / (1 << 30), secs, (double)bytes / (1 << 30) / secs, hwm1 / 1024.0, grew / 1048576.0,
           rss0 / 1024.0, bound / 1048576.0,
           reset ? "reset by clear_refs" : "not resettable, from the prior peak",
           (double)mem.device_weights / (1 << 30), (double)mem.device_used / (1 << 30));
    ck_assert_msg(grew <= bound,
                  "loading %.1f GiB raised the host's peak RSS by %.0f MiB, over the loader's %.0f MiB",
                  (double)bytes / (1 << 30), grew / 1048576.0, bound / 1048576.0);
    ck_assert_msg(mem.device_weights >= (uint64_t)bytes && mem.device_weights < (uint64_t)bytes + (1u << 20),
                  "device weights %llu bytes for %lld bytes of bf16", (unsigned long long)mem.device_weights,
                  bytes);
    ck_assert_msg(mem.device_used >= mem.device_weights, "GPU in use %llu < weights %llu",
                  (unsigned long long)mem.device_used, (unsigned long long)mem.device_weights);
    /* every weight read as 0: a forward gives finite (zero) logits */
    int64_t ids[2] = {1, 2}, pos[2] = {0, 1};
    lr_batch b = {.input_ids = ids, .positions = pos, .num_tokens = 2, .num_seqs = 1};
    lr_tensor h, lg;
    ck_assert_msg(lr_model_forward(m, &b, NULL, NULL, &h) == LR_OK, "%s", lr_last_error());
    ck_assert_msg(lr_model_compute_logits(m, &h, NULL, &lg) == LR_OK, "%s", lr_last_error());
    lr_model_free(m);
    lr_checkpoint_close(ck);
    remove_sparse(dir);
}
END_TEST

/* ---- CUDA graphs ---------------------------------------------------------------------- */

#define GR_SEQS 3     /* sequences of the graphs test's batch */
#define GR_PREFILL 70 /* tokens prefilled per sequence: past 64 keys, so tc's split decode
                       * runs 2 chunks while the graph's grid (capacity GR_CAP) has 5 */
#define GR_CAP 300    /* the cache's tokens per sequence */

/* One model's side of the graphs test: its cache and the step's output copied. */
typedef struct {
    lr_model *m;
    lr_kv_cache *kv;
    void *hidden, *logits; /* host copies of the last step's */
    size_t hbytes, lbytes;
} gr_side;

/* One forward through side x: its hidden states and logits copied (the backend's buffers
 * are reused by the next call). obs: optional. */
static void gr_step(gr_side *x, const lr_batch *b, const lr_observer *obs, const char *what) {
    lr_tensor h, lg;
    ck_assert_msg(lr_model_forward(x->m, b, x->kv, obs, &h) == LR_OK, "%s: %s", what, lr_last_error());
    ck_assert_msg(lr_model_compute_logits(x->m, &h, NULL, &lg) == LR_OK, "%s: %s", what, lr_last_error());
    x->hbytes = (size_t)(h.shape[0] * h.shape[1]) * lr_dtype_size(h.dtype);
    x->lbytes = (size_t)(lg.shape[0] * lg.shape[1]) * lr_dtype_size(lg.dtype);
    free(x->hidden), free(x->logits);
    x->hidden = malloc(x->hbytes), x->logits = malloc(x->lbytes);
    ck_assert(x->hidden && x->logits);
    memcpy(x->hidden, h.data, x->hbytes);
    memcpy(x->logits, lg.data, x->lbytes);
}

/* The same step on both sides; their hidden states and logits must be the same bits. */
static void gr_both(gr_side *e, gr_side *g, const lr_batch *b, const lr_observer *gobs, const char *what) {
    gr_step(e, b, NULL, what);
    gr_step(g, b, gobs, what);
    ck_assert_msg(e->hbytes == g->hbytes && memcmp(e->hidden, g->hidden, e->hbytes) == 0,
                  "%s: the hidden states with CUDA graphs differ from the eager ones", what);
    ck_assert_msg(e->lbytes == g->lbytes && memcmp(e->logits, g->logits, e->lbytes) == 0,
                  "%s: the logits with CUDA graphs differ from the eager ones", what);
}

/* Token t of sequence s: the fixture's ids in turn (all in its vocabulary). */
static int64_t gr_token(const lr_batch *fb, int64_t s, int64_t t) {
    return fb->input_ids[(s * 5 + t) % fb->num_tokens];
}

/* Prefills the first GR_PREFILL tokens of every sequence (one batch, eager on both). */
static void gr_prefill(gr_side *e, gr_side *g, const lr_batch *fb, const char *what) {
    int64_t n = GR_SEQS * GR_PREFILL, ids[GR_SEQS * GR_PREFILL], pos[GR_SEQS * GR_PREFILL], lens[GR_SEQS],
            sid[GR_SEQS];
    for (int64_t s = 0; s < GR_SEQS; s++) {
        lens[s] = GR_PREFILL, sid[s] = s;
        for (int64_t t = 0; t < GR_PREFILL; t++) {
            ids[s * GR_PREFILL + t] = gr_token(fb, s, t);
            pos[s * GR_PREFILL + t] = t;
        }
    }
    lr_batch b = {.input_ids = ids, .positions = pos, .seq_lens = lens, .seq_ids = sid, .num_tokens = n,
                  .num_seqs = GR_SEQS};
    gr_both(e, g, &b, NULL, what);
}

/* One decode step of the sequences in seqs (a token each, at *len[s], which advances). */
static void gr_decode(gr_side *e, gr_side *g, const lr_batch *fb, const int64_t *seqs, int64_t nseq, int64_t *len,
                      const lr_observer *gobs, const char *what) {
    int64_t ids[GR_SEQS], pos[GR_SEQS], one[GR_SEQS], sid[GR_SEQS];
    for (int64_t q = 0; q < nseq; q++) {
        int64_t s = seqs[q];
        ids[q] = gr_token(fb, s, len[s]), pos[q] = len[s], one[q] = 1, sid[q] = s;
        len[s]++;
    }
    lr_batch b = {.input_ids = ids, .positions = pos, .seq_lens = one, .seq_ids = sid, .num_tokens = nseq,
                  .num_seqs = nseq};
    gr_both(e, g, &b, gobs, what);
}

static void gr_free(gr_side *x) {
    lr_kv_cache_free(x->kv);
    lr_model_free(x->m);
    free(x->hidden), free(x->logits);
}

static void gr_ignore(void *user, const char *stage, const lr_tensor *t) {
    (void)stage, (void)t;
    ++*(int *)user;
}

/* Decode steps replayed as CUDA graphs give the eager steps' bits: every step's hidden
 * states and logits, which read everything the cache holds (so its keys and values, and
 * the paged writes into it, are the same too). Three sequences prefilled past 64 keys,
 * then steps of all three (warm-up, capture, replays), of two (a second shape, captured
 * in turn), of all three again, one step observed (which must run eagerly), and after a
 * cache reset a new prefill and decode (the reset drops the graphs: captured again).
 * loop index = case x {bf16 tp 1, fp16 tp 2, fp32 tp 1}. */
START_TEST(graphs_replay_decode_bitwise) {
    static const lr_dtype gprec[] = {LR_BF16, LR_F16, LR_F32};
    static const int gtp[] = {1, 2, 1};
    const fixture_case *fc = &cases[_i / 3];
    lr_dtype precision = gprec[_i % 3];
    int tp = gtp[_i % 3];
    loaded L = load_case(fc);
    const lr_batch *fb = lr_fixture_batch(L.fx);
    char what[160];
    gr_side e = {0}, g = {0};
    e.m = make_model(L.ck, precision, tp, NULL);
    lr_options o = cuda_options(precision);
    o.tp_size = tp;
    o.num_devices = devices_mode;
    o.cuda_graphs = true;
    ck_assert_msg(lr_model_create(L.ck, &o, &g.m) == LR_OK, "%s", lr_last_error());
    ck_assert_int_eq(lr_kv_cache_create(e.m, GR_SEQS, GR_CAP, &e.kv), LR_OK);
    ck_assert_int_eq(lr_kv_cache_create(g.m, GR_SEQS, GR_CAP, &g.kv), LR_OK);
    lr_graph_stats st;
    ck_assert_int_eq(lr_model_graph_stats(e.m, &st), LR_OK);
    ck_assert_msg(st.captures == 0 && st.replays == 0 && st.warmups == 0 && st.eager_steps == 0,
                  "a model without cuda_graphs counts graph steps");

    int64_t len[GR_SEQS], all[GR_SEQS] = {0, 1, 2}, two[2] = {0, 2};
    for (int round = 0; round < 2; round++) {
        for (int64_t s = 0; s < GR_SEQS; s++) len[s] = GR_PREFILL;
        snprintf(what, sizeof what, "%s %s tp %d graphs round %d prefill", fc->fixture, pname(precision), tp, round);
        gr_prefill(&e, &g, fb, what);
        for (int k = 0; k < (round ? 3 : 10); k++) {
            /* steps 4..6: sequences 0 and 2 only (another shape) */
            bool narrow = round == 0 && k >= 4 && k < 7;
            snprintf(what, sizeof what, "%s %s tp %d graphs round %d step %d (%d sequences)", fc->fixture,
                     pname(precision), tp, round, k, narrow ? 2 : GR_SEQS);
            gr_decode(&e, &g, fb, narrow ? two : all, narrow ? 2 : GR_SEQS, len, NULL, what);
        }
        if (round == 0) {
            /* an observed step runs eagerly, with the same bits */
            int seen = 0;
            lr_observer obs = {.on_stage = gr_ignore, .user = &seen};
            snprintf(what, sizeof what, "%s %s tp %d graphs observed step", fc->fixture, pname(precision), tp);
            gr_decode(&e, &g, fb, all, GR_SEQS, len, &obs, what);
            ck_assert_int_gt(seen, 0);
            ck_assert_int_eq(lr_model_graph_stats(g.m, &st), LR_OK);
            ck_assert_msg(st.eager_steps == 1, "%s: %llu eager steps, not 1", what, (unsigned long long)st.eager_steps);
            /* steps 0..9: 3 sequences at 0 (warm-up), 1 (captured), 2, 3, 7, 8, 9 (replayed);
             * 2 sequences at 4 (warm-up), 5 (captured), 6: 8 replays */
            ck_assert_msg(st.captures == 2 && st.warmups == 2 && st.replays == 8,
                          "%s: %llu captures, %llu warm-ups, %llu replays (2, 2, 8 expected)", what,
                          (unsigned long long)st.captures, (unsigned long long)st.warmups,
                          (unsigned long long)st.replays);
            lr_kv_cache_reset(e.kv);
            lr_kv_cache_reset(g.kv);
        }
    }
    ck_assert_int_eq(lr_model_graph_stats(g.m, &st), LR_OK);
    /* the reset dropped both captured shapes; the second round warmed 3 up and captured it */
    ck_assert_msg(st.invalidations >= 2 && st.captures == 3 && st.warmups == 3 && st.replays == 10,
                  "%s %s tp %d: after the reset %llu invalidations, %llu captures, %llu warm-ups, %llu replays "
                  "(>= 2, 3, 3, 10 expected)",
                  fc->fixture, pname(precision), tp, (unsigned long long)st.invalidations,
                  (unsigned long long)st.captures, (unsigned long long)st.warmups, (unsigned long long)st.replays);
    printf("%s %s tp %d: CUDA graphs bitwise equal to eager over %llu replays (%llu captures)\n", fc->fixture,
           pname(precision), tp, (unsigned long long)st.replays, (unsigned long long)st.captures);
    gr_free(&e), gr_free(&g);
    unload(&L);
}
END_TEST

/* A batch of the first seqs sequences, m new tokens each from its length len[s] (then
 * advanced), in the caller's arrays: ids and pos (seqs * m), lens and sid (seqs). */
static lr_batch gr_batch(const lr_batch *fb, int64_t seqs, int64_t m, int64_t *len, int64_t *ids,
                         int64_t *pos, int64_t *lens, int64_t *sid) {
    int64_t n = 0;
    for (int64_t s = 0; s < seqs; s++) {
        for (int64_t t = 0; t < m; t++, n++)
            ids[n] = gr_token(fb, s, len[s] + t), pos[n] = len[s] + t;
        lens[s] = m, sid[s] = s, len[s] += m;
    }
    return (lr_batch){.input_ids = ids,
                      .positions = pos,
                      .seq_lens = lens,
                      .seq_ids = sid,
                      .num_tokens = n,
                      .num_seqs = seqs};
}

/* A switch that must change no bit: the same prefill and 5 decode steps of the first seqs
 * sequences (at most GR_SEQS) with it off (side e, eager) and at on (side g, with CUDA
 * graphs, so captured and replayed launches have it too) give the same hidden states and
 * logits. set(-1) restores the switch's rule. */
static void switch_changes_no_bit(const fixture_case *fc, lr_dtype precision, void (*set)(int), int on,
                                  const char *feature, int64_t seqs) {
    loaded L = load_case(fc);
    const lr_batch *fb = lr_fixture_batch(L.fx);
    char what[160];
    gr_side e = {0}, g = {0};
    e.m = make_model(L.ck, precision, 1, NULL);
    lr_options o = cuda_options(precision);
    o.num_devices = devices_mode;
    o.cuda_graphs = true;
    ck_assert_msg(lr_model_create(L.ck, &o, &g.m) == LR_OK, "%s", lr_last_error());
    ck_assert_int_eq(lr_kv_cache_create(e.m, GR_SEQS, GR_CAP, &e.kv), LR_OK);
    ck_assert_int_eq(lr_kv_cache_create(g.m, GR_SEQS, GR_CAP, &g.kv), LR_OK);
    int64_t len[GR_SEQS] = {0};
    for (int k = -1; k < 5; k++) {
        int64_t ids[GR_SEQS * GR_PREFILL], pos[GR_SEQS * GR_PREFILL], lens[GR_SEQS], sid[GR_SEQS];
        lr_batch b = gr_batch(fb, seqs, k < 0 ? GR_PREFILL : 1, len, ids, pos, lens, sid);
        snprintf(what, sizeof what, "%s %s %s of %lld", fc->fixture, pname(precision),
                 k < 0 ? "prefill" : "decode", (long long)seqs);
        set(0);
        gr_step(&e, &b, NULL, what);
        set(on);
        gr_step(&g, &b, NULL, what);
        set(-1);
        ck_assert_msg(e.hbytes == g.hbytes && memcmp(e.hidden, g.hidden, e.hbytes) == 0,
                      "%s step %d: the hidden states with %s differ from those without", what, k, feature);
        ck_assert_msg(e.lbytes == g.lbytes && memcmp(e.logits, g.logits, e.lbytes) == 0,
                      "%s step %d: the logits with %s differ from those without", what, k, feature);
    }
    lr_graph_stats st;
    ck_assert_int_eq(lr_model_graph_stats(g.m, &st), LR_OK);
    ck_assert_msg(st.captures == 1 && st.replays == 4, "%s: %llu captures, %llu replays (1, 4 expected)",
                  what, (unsigned long long)st.captures, (unsigned long long)st.replays);
    gr_free(&e), gr_free(&g);
    unload(&L);
}

/* Programmatic dependent launch (gpu/common.cuh) moves when kernels start, never a bit. On
 * a device of compute capability 9.0 on it must be on by default, or the test would compare
 * the path with itself. loop index = case x {bf16, fp16}. */
START_TEST(pdl_changes_no_bit) {
    const fixture_case *fc = &cases[_i / 2];
    lr_dtype precision = _i % 2 ? LR_F16 : LR_BF16;
    int dev = 0, major = 0;
    ck_assert_int_eq(cudaGetDevice(&dev), cudaSuccess);
    ck_assert_int_eq(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), cudaSuccess);
    lr_gpu_pdl_set(-1);
    if (getenv("LLAMAREF_PDL") == NULL || strcmp(getenv("LLAMAREF_PDL"), "0") != 0)
        ck_assert_msg(lr_gpu_pdl() == (major >= 9),
                      "compute capability %d.x: programmatic dependent launch is %s", major,
                      lr_gpu_pdl() ? "on" : "off");
    switch_changes_no_bit(fc, precision, lr_gpu_pdl_set, -1, "programmatic dependent launch", GR_SEQS);
    printf(
        "%s %s: programmatic dependent launch %s, bitwise equal to launches without it (a prefill, 5 decode "
        "steps, 4 of them replayed graphs)\n",
        fc->fixture, pname(precision), lr_gpu_pdl() ? "on" : "off (below compute capability 9.0)");
}
END_TEST

/* RoPE fused with the cache write (lr_gpu_rotary_cache, gpu/rotary.cu) gives the bits of
 * the heads RoPE and the scatter one after the other, in a prefill and in decode steps,
 * eager and captured. loop index = case x {bf16, fp16}. */
START_TEST(rope_cache_changes_no_bit) {
    const fixture_case *fc = &cases[_i / 2];
    lr_dtype precision = _i % 2 ? LR_F16 : LR_BF16;
    switch_changes_no_bit(fc, precision, lr_gpu_rope_cache_set, 1, "RoPE fused with the cache write",
                          GR_SEQS);
    printf("%s %s: RoPE fused with the cache write, bitwise equal to the two kernels (a prefill, 5 decode "
           "steps, 4 of them replayed graphs)\n",
           fc->fixture, pname(precision));
}
END_TEST

/* The profiled calls of op kind prof in one decode step of seqs sequences (after their
 * prefill) on a fresh model; qkv_proj and gate_up_proj run once a layer either way. */
static uint64_t profiled_calls(const loaded *L, lr_dtype precision, int64_t seqs, int prof, int64_t *layers) {
    const lr_batch *fb = lr_fixture_batch(L->fx);
    lr_model *m = make_model(L->ck, precision, 1, NULL);
    lr_kv_cache *kv;
    ck_assert_int_eq(lr_kv_cache_create(m, GR_SEQS, GR_CAP, &kv), LR_OK);
    int64_t ids[GR_SEQS * 3], pos[GR_SEQS * 3], lens[GR_SEQS], sid[GR_SEQS], len[GR_SEQS] = {0};
    for (int step = 0; step < 2; step++) { /* a prefill of 3 tokens each, then a decode step */
        lr_batch b = gr_batch(fb, seqs, step == 0 ? 3 : 1, len, ids, pos, lens, sid);
        if (step == 1) ck_assert_int_eq(lr_model_set_profiling(m, true), LR_OK);
        lr_tensor h;
        ck_assert_msg(lr_model_forward(m, &b, kv, NULL, &h) == LR_OK, "%s", lr_last_error());
    }
    lr_profile p;
    ck_assert_int_eq(lr_model_get_profile(m, &p), LR_OK);
    *layers = lr_model_config(m)->num_hidden_layers;
    ck_assert_uint_eq(p.calls[LR_PROF_QKV_PROJ], (uint64_t)*layers);
    ck_assert_uint_eq(p.calls[LR_PROF_GATE_UP_PROJ], (uint64_t)*layers);
    lr_kv_cache_free(kv);
    lr_model_free(m);
    return p.calls[prof];
}

/* A fusion switch (set) that must change no bit (switch_changes_no_bit) in decode steps of
 * seqs sequences, and whose profiled decode step shows the fused-away op kind (prof) gone
 * with it on and there with it off, so that the comparison saw the fused kernel (every
 * fixture's hidden size is a multiple of 8, the fused kernels' rows): prof runs left(cfg,
 * layers) times with it on (the calls it leaves: those before a bias the fusion leaves out,
 * a final norm) and off(layers) without. */
static void fusion_changes_no_bit(int i, void (*set)(int), const char *feature, int prof,
                                  uint64_t (*left)(const lr_config *, uint64_t),
                                  uint64_t (*off_calls)(uint64_t)) {
    const fixture_case *fc = &cases[i / 4];
    lr_dtype precision = i % 2 ? LR_F16 : LR_BF16;
    int64_t seqs = 1 + (i / 2) % 2;
    switch_changes_no_bit(fc, precision, set, 1, feature, seqs);
    loaded L = load_case(fc);
    int64_t layers = 0;
    set(1);
    uint64_t on = profiled_calls(&L, precision, seqs, prof, &layers);
    set(0);
    uint64_t off = profiled_calls(&L, precision, seqs, prof, &layers);
    set(-1);
    uint64_t want_on = left(lr_checkpoint_config(L.ck), (uint64_t)layers),
             want_off = off_calls((uint64_t)layers);
    ck_assert_msg(
        on == want_on && off == want_off,
        "%s %s, %lld sequences, %s: %s ran %llu times with it and %llu without (%llu and %llu expected)",
        fc->fixture, pname(precision), (long long)seqs, feature, lr_prof_op_name((lr_prof_op)prof),
        (unsigned long long)on, (unsigned long long)off, (unsigned long long)want_on,
        (unsigned long long)want_off);
    unload(&L);
    printf("%s %s: %s (%s left %llu of %llu times) at %lld token(s) a step, bitwise equal to the kernels "
           "apart (a "
           "prefill, 5 decode steps, 4 of them replayed graphs)\n",
           fc->fixture, pname(precision), feature, lr_prof_op_name((lr_prof_op)prof),
           (unsigned long long)want_on, (unsigned long long)want_off, (long long)seqs);
}

/* The calls each fusion leaves, and those there are without it. */
static uint64_t per_layer(uint64_t layers) { return layers; }
static uint64_t mlp_left(const lr_config *c, uint64_t layers) { return c->mlp_bias ? layers : 0; }
static uint64_t attention_left(const lr_config *c, uint64_t layers) { return c->attention_bias ? layers : 0; }
static uint64_t norms(uint64_t layers) { return 2 * layers + 1; }
static uint64_t norms_left(const lr_config *c, uint64_t layers) {
    return 1 + mlp_left(c, layers) + attention_left(c, layers);
}

/* gate_up_proj with the activation in one kernel (lr_gpu_linear_silu, gpu/linear.cu): the
 * bits of gemv then the activation, and the activation's kernel gone. loop index = case x
 * {bf16, fp16} x {1, 2 sequences}. */
START_TEST(silu_fuse_changes_no_bit) {
    fusion_changes_no_bit(_i, lr_gpu_silu_fuse_set, "gate_up_proj with the activation", LR_PROF_SILU_AND_MUL,
                          mlp_left, per_layer);
}
END_TEST

/* qkv_proj with RoPE and the cache write in one kernel (lr_gpu_linear_rope_cache): the bits of
 * gemv then the fused RoPE + cache kernel, and the RoPE's kernel gone. loop index = case x
 * {bf16, fp16} x {1, 2 sequences}. */
START_TEST(qkv_fuse_changes_no_bit) {
    fusion_changes_no_bit(_i, lr_gpu_qkv_fuse_set, "qkv_proj with RoPE and the cache write", LR_PROF_ROTARY,
                          attention_left, per_layer);
}
END_TEST

/* The layers' norms inside those two fused GEMVs (lr_gpu_norm_linear_*; both fusions on in
 * both runs): the bits of rmsnorm's vec kernel then the GEMVs, and the profiled decode step's
 * norms gone but the final one's (and those before a projection a bias leaves apart). loop
 * index = case x {bf16, fp16} x {1, 2 sequences}. */
START_TEST(norm_fuse_changes_no_bit) {
    lr_gpu_silu_fuse_set(1), lr_gpu_qkv_fuse_set(1);
    fusion_changes_no_bit(_i, lr_gpu_norm_fuse_set, "the layers' norms in the fused GEMVs", LR_PROF_RMS_NORM,
                          norms_left, norms);
    lr_gpu_silu_fuse_set(-1), lr_gpu_qkv_fuse_set(-1);
}
END_TEST

/* --nccl: more GPUs than the host has, or a GPU count that is not the tp size, is refused
 * with the counts; the host's GPUs still work afterwards. */
START_TEST(bad_device_counts_are_refused) {
    loaded L = load_case(&cases[0]);
    lr_options o = cuda_options(LR_BF16);
    o.tp_size = 2;
    o.num_devices = 3; /* not the tp size */
    lr_model *m = NULL;
    ck_assert_int_eq(lr_model_create(L.ck, &o, &m), LR_E_DEVICE);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(lr_last_error(), "tp 2") != NULL, "%s", lr_last_error());
    o.tp_size = gpu_count * 2; /* more GPUs than there are */
    o.num_devices = gpu_count * 2;
    ck_assert_int_eq(lr_model_create(L.ck, &o, &m), LR_E_DEVICE);
    ck_assert_msg(strstr(lr_last_error(), "present") != NULL, "%s", lr_last_error());
    m = make_model(L.ck, LR_BF16, 2, NULL);
    still_matches_golden(&L, m, "gqa-f32-batch bf16 tp 2 over NCCL after refusals");
    lr_model_free(m);
    unload(&L);
}
END_TEST

START_TEST(bad_options_are_refused) {
    loaded L = load_case(&cases[0]);
    lr_options o = cuda_options(LR_F64);
    lr_model *m = NULL;
    ck_assert_int_eq(lr_model_create(L.ck, &o, &m), LR_E_INVAL);
    o.precision = LR_BF16;
    o.kernels = "rmsnorm=no-such-kernel";
    ck_assert_int_eq(lr_model_create(L.ck, &o, &m), LR_E_INVAL);
    ck_assert_msg(strstr(lr_last_error(), "no-such-kernel") != NULL, "%s", lr_last_error());
    o.kernels = "nonsense";
    ck_assert_int_eq(lr_model_create(L.ck, &o, &m), LR_E_INVAL);
    unload(&L);
}
END_TEST

/* The single-GPU suite. */
static Suite *one_gpu_suite(void) {
    Suite *s = suite_create("gpu forward");
    TCase *tc = tcase_create("golden");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, every_stage_matches_golden, 0, N_CASES * N_PREC * N_TP);
    tcase_add_loop_test(tc, decode_after_prefill_matches_golden, 0, N_CASES * N_PREC);
    tcase_add_loop_test(tc, every_kernel_variant_at_model_level, 0, (int)lr_gpu_variant_count());
    tcase_add_test(tc, runs_repeat_bitwise);
    tcase_add_loop_test(tc, forward_rows_are_forwards_rows, 0, N_CASES * N_PREC);
    tcase_add_loop_test(tc, greedy_is_the_argmax_of_the_logits, 0, N_CASES * N_PREC);
    tcase_add_loop_test(tc, isolated_layers_match_golden, 0, N_CASES);
    tcase_add_test(tc, bad_options_are_refused);
    tcase_add_test(tc, out_of_gpu_memory_is_a_clear_error);
    tcase_add_test(tc, a_model_larger_than_the_card_is_a_clear_error);
    tcase_add_test(tc, loading_streams_in_bounded_host_memory);
    tcase_add_loop_test(tc, profiler_times_every_op, 0, 2);
    tcase_add_loop_test(tc, graphs_replay_decode_bitwise, 0, N_CASES * 3);
    tcase_add_loop_test(tc, pdl_changes_no_bit, 0, N_CASES * 2);
    tcase_add_loop_test(tc, rope_cache_changes_no_bit, 0, N_CASES * 2);
    tcase_add_loop_test(tc, silu_fuse_changes_no_bit, 0, N_CASES * 4);
    tcase_add_loop_test(tc, qkv_fuse_changes_no_bit, 0, N_CASES * 4);
    tcase_add_loop_test(tc, norm_fuse_changes_no_bit, 0, N_CASES * 4);
    suite_add_tcase(s, tc);
    return s;
}

/* --nccl: the same checks wherever a tp 2 model runs, now over 2 GPUs, and every tp the
 * host has GPUs for against the golden and against one GPU. */
static Suite *nccl_suite(void) {
    devices_mode = 0;
    Suite *s = suite_create("gpu forward over NCCL");
    TCase *tc = tcase_create("nccl");
    tcase_set_timeout(tc, 300);
    for (int i = 0; i < N_CASES * N_PREC * N_NCCL_TP; i++)
        if (nccl_tps[i % N_NCCL_TP] <= gpu_count) tcase_add_loop_test(tc, nccl_matches_golden_and_one_gpu, i, i + 1);
    for (int t = 0; t < N_NCCL_TP; t++)
        if (nccl_tps[t] > gpu_count)
            printf("test_gpu_forward --nccl: SKIPPED: tp %d over NCCL against the golden and one GPU (%d runs): "
                   "needs %d GPUs, the host has %d\n",
                   nccl_tps[t], N_CASES * N_PREC, nccl_tps[t], gpu_count);
    tcase_add_loop_test(tc, decode_after_prefill_matches_golden, 0, N_CASES * N_PREC);
    tcase_add_test(tc, runs_repeat_bitwise);
    tcase_add_loop_test(tc, isolated_layers_match_golden, 0, N_CASES);
    tcase_add_test(tc, bad_device_counts_are_refused);
    tcase_add_loop_test(tc, profiler_times_every_op, 1, 2);
    for (int i = 0; i < N_CASES * 3; i++) /* the tp 2 configuration of each case, over NCCL */
        if (i % 3 == 1) tcase_add_loop_test(tc, graphs_replay_decode_bitwise, i, i + 1);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) {
    bool nccl = argc > 1 && strcmp(argv[1], "--nccl") == 0;
    if (argc > 1 && !nccl) {
        fprintf(stderr, "usage: test_gpu_forward [--nccl]\n");
        return 2;
    }
    if (cudaGetDeviceCount(&gpu_count) != cudaSuccess || gpu_count == 0) {
        puts("test_gpu_forward: no CUDA device: skipped");
        return 77;
    }
    if (nccl) {
#ifndef LR_HAVE_NCCL
        puts("test_gpu_forward --nccl: built without NCCL: skipped");
        return 77;
#endif
        if (gpu_count < 2) {
            printf("test_gpu_forward --nccl: %d GPU; tensor parallelism over NCCL needs 2 or more: skipped\n",
                   gpu_count);
            return 77;
        }
        printf("test_gpu_forward --nccl: %d GPUs\n", gpu_count);
    }
    SRunner *sr = srunner_create(nccl ? nccl_suite() : one_gpu_suite());
    /* CUDA does not survive fork() once initialised (main already asked for devices). */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr), ran = srunner_ntests_run(sr);
    srunner_free(sr);
    if (skipped_tests)
        printf("test_gpu_forward%s: %d of %d tests SKIPPED on this machine (each said why above)\n",
               nccl ? " --nccl" : "", skipped_tests, ran);
    if (failed) return EXIT_FAILURE;
    return ran > 0 && skipped_tests >= ran ? 77 : EXIT_SUCCESS;
}
#endif
