/* test_check.c: the library's tools for checking a run (ref/check/compare.c's metrics,
 * drill.c, logits.c, decode.c): the per-token and per-element metrics and the verdict
 * (one element per row off, one token off, rounding noise, the criteria from the table);
 * the layer of a stage name; the drill-down on made-up stage results (the first
 * divergence, the jump, the floor after an exact stage, a bug on one token, NaN, layer
 * outputs never the cause); the logits
 * metrics on logits whose softmaxes are known exactly; the decode scheduler's steps,
 * its reassembled run against a single forward and the golden, its callback's stop, and
 * bad plans and batches. */
#include "llamaref.h"
#include "llamaref_ops.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture_cases.h"

/* Values known exactly, computed with a few roundings (sums of a few terms). */
#define FEW_ROUNDINGS (16 * DBL_EPSILON)

/* ---- lr_compare_stage: per-token and per-element metrics, the verdict ------------------ */

/* The CPU precisions the metrics tests sweep (tcase_add_loop_test). */
static const lr_dtype cpu_precisions[] = {LR_F64, LR_F32};
#define N_CPU_PRECISIONS (int)(sizeof cpu_precisions / sizeof cpu_precisions[0])

/* A (T, W) tensor over data. */
static lr_tensor tensor2(double *data, int64_t T, int64_t W) {
    return (lr_tensor){.dtype = LR_F64, .ndim = 2, .shape = {T, W}, .data = data};
}

/* Deterministic values in [0.5, 1.5] with random signs: none near zero, rows of RMS
 * about 1. */
static double value_at(int64_t i) {
    double u = sin(12.9898 * (double)i + 78.233) * 43758.5453;
    u -= floor(u);
    return (i * 7919 % 3 ? 1 : -1) * (0.5 + u);
}

#define WIDE 4096 /* a real model's row */
#define ROWS 8

/* One element in every row of a 4096-wide tensor off by 1% (row 5's by 2%): the element
 * criterion fails on every row and names row 5's element, at every CPU precision. */
START_TEST(metrics_one_element_per_row_fails_where_it_is) {
    lr_dtype p = cpu_precisions[_i];
    static double ref[ROWS * WIDE], test[ROWS * WIDE]; /* (ROWS, WIDE) */
    for (int64_t i = 0; i < ROWS * WIDE; i++)
        ref[i] = test[i] = value_at(i);
    int64_t feature[ROWS];
    for (int64_t t = 0; t < ROWS; t++) {
        feature[t] = (t * 577 + 13) % WIDE;
        test[t * WIDE + feature[t]] *= t == 5 ? 1.02 : 1.01;
    }
    lr_tensor a = tensor2(test, ROWS, WIDE), b = tensor2(ref, ROWS, WIDE);
    lr_criteria c = lr_stage_criteria(LR_STAGE_PROJECTION, p, -1);
    lr_metrics m;
    ck_assert_int_eq(lr_compare_stage(&a, &b, &c, &m), LR_OK);
    ck_assert(m.elem_checked);
    ck_assert_int_eq(m.width, WIDE);
    ck_assert_int_eq(m.elem_fail, ROWS);
    ck_assert_int_eq(m.elem_index / m.width, 5);
    ck_assert_int_eq(m.elem_index % m.width, feature[5]);
    ck_assert(m.elem_ratio > 1);
    ck_assert(!lr_metrics_pass(&m, c.rel_l2));
    ck_assert(lr_metrics_failures(&m, c.rel_l2) & LR_FAILS_ELEMENT);
    /* Without criteria (lr_compare) the element criterion is not measured. */
    ck_assert_int_eq(lr_compare(&a, &b, &m), LR_OK);
    ck_assert(!m.elem_checked && m.elem_fail == 0 && m.elem_index == -1);
}
END_TEST

/* Rows of +-1 with one element per row off by twice what the element criterion allows:
 * the relative L2 over the 4096-wide rows stays within its budget, the element
 * criterion alone fails the stage. */
START_TEST(metrics_element_criterion_sees_what_the_l2_hides) {
    lr_dtype p = cpu_precisions[_i];
    static double ref[ROWS * WIDE], test[ROWS * WIDE]; /* (ROWS, WIDE) */
    for (int64_t i = 0; i < ROWS * WIDE; i++)
        ref[i] = test[i] = i % 3 ? 1 : -1; /* rms(row) = |b| = 1 */
    lr_criteria c = lr_stage_criteria(LR_STAGE_PROJECTION, p, -1);
    double off = 2 * (c.atol + c.rtol); /* twice the allowance of an element of size 1 */
    for (int64_t t = 0; t < ROWS; t++)
        test[t * WIDE + (t * 31 + 7) % WIDE] += off;
    lr_tensor a = tensor2(test, ROWS, WIDE), b = tensor2(ref, ROWS, WIDE);
    lr_metrics m;
    ck_assert_int_eq(lr_compare_stage(&a, &b, &c, &m), LR_OK);
    ck_assert_msg(m.rel_l2 <= c.rel_l2 && m.token_rel_l2 <= c.token, "rel_l2 %.3e, token %.3e", m.rel_l2,
                  m.token_rel_l2);
    ck_assert_int_eq(m.elem_fail, ROWS);
    ck_assert_double_eq_tol(m.elem_ratio, 2, 1e-6);
    ck_assert_uint_eq(lr_metrics_failures(&m, c.rel_l2), LR_FAILS_ELEMENT);
}
END_TEST

/* One token of many off, and another a little: the per-token relative L2 names the
 * right token. With token 0 a thousand times larger than the others (a trained model's
 * outlier token), the whole tensor's relative L2 cannot see token 4's error; the
 * per-token criterion fails the stage on its own. */
START_TEST(metrics_worst_token_is_found) {
    lr_dtype p = cpu_precisions[_i];
    enum { T = 6, W = 64 };
    double ref[T * W], test[T * W]; /* (T, W) */
    lr_criteria c = lr_stage_criteria(LR_STAGE_LAYER, p, -1);
    for (int64_t i = 0; i < T * W; i++) {
        ref[i] = value_at(i) * (i < W ? 1000 : 1);
        /* every element of token 4 off by twice the token budget, token 2 by half of it,
         * relative: within the element criterion */
        test[i] = ref[i] * (i / W == 4 ? 1 + 2 * c.token : i / W == 2 ? 1 + c.token / 2 : 1);
    }
    lr_tensor a = tensor2(test, T, W), b = tensor2(ref, T, W);
    lr_metrics m;
    ck_assert_int_eq(lr_compare_stage(&a, &b, &c, &m), LR_OK);
    ck_assert_int_eq(m.token_rel_l2_row, 4);
    ck_assert_double_eq_tol(m.token_rel_l2, 2 * c.token, FEW_ROUNDINGS);
    ck_assert_msg(m.rel_l2 <= c.rel_l2, "rel_l2 %.3e over %.3e", m.rel_l2, c.rel_l2);
    ck_assert_uint_eq(lr_metrics_failures(&m, c.rel_l2), LR_FAILS_TOKEN);
    ck_assert(!lr_metrics_pass(&m, c.rel_l2));
}
END_TEST

/* Each row held to its own token budget (lr_compare_stage_rows): beside a token a
 * thousand times larger, a token the error model predicts k times noisier than the stage
 * (lr_error_model_row_scale) passes with k/2 token budgets of error and fails with 2k;
 * without scales the first fails too. */
START_TEST(metrics_row_scales) {
    lr_dtype p = cpu_precisions[_i];
    enum { T = 4, W = 64 };
    const double k = 20;
    double ref[T * W], test[T * W], scale[T] = {1, k, 1, 1};
    lr_criteria c = lr_stage_criteria(LR_STAGE_LAYER, p, -1);
    for (int f = 0; f < 2; f++) {
        double off = f == 0 ? k / 2 : 2 * k; /* token 1's error, in token budgets */
        for (int64_t i = 0; i < T * W; i++)
            test[i] = ref[i] = value_at(i) * (i < W ? 1000 : 1);
        /* token 1 off by `off` token budgets, spread evenly over its elements */
        double bb = 0;
        for (int64_t i = W; i < 2 * W; i++)
            bb += ref[i] * ref[i];
        for (int64_t i = W; i < 2 * W; i++)
            test[i] = ref[i] + off * c.token * sqrt(bb / W) * ((i & 1) ? 1 : -1);
        lr_tensor a = tensor2(test, T, W), b = tensor2(ref, T, W);
        lr_metrics m, plain;
        ck_assert_int_eq(lr_compare_stage_rows(&a, &b, &c, scale, &m), LR_OK);
        ck_assert_int_eq(lr_compare_stage(&a, &b, &c, &plain), LR_OK);
        ck_assert_int_eq(m.token_rel_l2_row, 1);
        ck_assert_double_eq_tol(m.token_rel_l2, off * c.token, off * c.token * 1e-6);
        ck_assert_double_eq_tol(lr_metrics_token_budget(&m), k * c.token, k * c.token * 1e-12);
        ck_assert_double_eq(lr_metrics_token_budget(&plain), c.token);
        ck_assert(lr_metrics_failures(&plain, c.rel_l2) & LR_FAILS_TOKEN);
        /* its elements (k/2 token budgets each, over ten stage budgets) by the same scale */
        if (f == 0) ck_assert(!(lr_metrics_failures(&m, c.rel_l2) & LR_FAILS_ELEMENT));
        if (f == 0) ck_assert(lr_metrics_failures(&plain, c.rel_l2) & LR_FAILS_ELEMENT);
        if (f == 0)
            ck_assert_msg(!(lr_metrics_failures(&m, c.rel_l2) & LR_FAILS_TOKEN), "%g budgets of %g failed", off, k);
        else
            ck_assert_msg(lr_metrics_failures(&m, c.rel_l2) & LR_FAILS_TOKEN, "%g budgets of %g passed", off, k);
    }
}
END_TEST

/* Rounding noise passes every criterion at f32: a tensor rounded to float32 element by
 * element, and float32 dot products of 64 terms against float64 ones. */
START_TEST(metrics_rounding_noise_passes) {
    enum { T = 16, W = 256, K = 64 };
    static double ref[T * W], rounded[T * W], dots[T * W], ref_dots[T * W]; /* (T, W) */
    for (int64_t i = 0; i < T * W; i++) {
        ref[i] = value_at(i) * (1 + (double)(i % W) / W);
        rounded[i] = (float)ref[i];
    }
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < W; j++) {
            float sf = 0;
            double sd = 0;
            for (int64_t k = 0; k < K; k++) {
                double x = value_at(t * K + k), w = value_at(100000 + j * K + k) / sqrt(K);
                sf += (float)x * (float)w;
                sd += (double)(float)x * (double)(float)w; /* the same inputs, exact products */
            }
            dots[t * W + j] = sf;
            ref_dots[t * W + j] = sd;
        }
    lr_criteria c = lr_stage_criteria(LR_STAGE_PROJECTION, LR_F32, -1);
    lr_tensor a = tensor2(rounded, T, W), b = tensor2(ref, T, W);
    lr_metrics m;
    ck_assert_int_eq(lr_compare_stage(&a, &b, &c, &m), LR_OK);
    ck_assert_msg(lr_metrics_pass(&m, c.rel_l2),
                  "rounding: rel_l2 %.3e token %.3e elements over %lld (worst %.3f)", m.rel_l2,
                  m.token_rel_l2, (long long)m.elem_fail, m.elem_ratio);
    ck_assert(m.rel_l2 > 0 && m.elem_index >= 0); /* not equal: there was noise to judge */
    a = tensor2(dots, T, W);
    b = tensor2(ref_dots, T, W);
    ck_assert_int_eq(lr_compare_stage(&a, &b, &c, &m), LR_OK);
    ck_assert_msg(lr_metrics_pass(&m, c.rel_l2),
                  "dots: rel_l2 %.3e token %.3e elements over %lld (worst %.3f)", m.rel_l2, m.token_rel_l2,
                  (long long)m.elem_fail, m.elem_ratio);
    ck_assert(m.rel_l2 > 0);
}
END_TEST

/* The criteria come from the one table: the relative-L2 budget is lr_stage_budget's, the
 * others scale with it (the error model's scaling included); an unknown precision
 * passes nothing. */
START_TEST(metrics_criteria_come_from_the_table) {
    for (int k = 0; k <= LR_STAGE_UNKNOWN; k++) {
        lr_dtype precisions[] = {LR_F64, LR_F32, LR_BF16, LR_F16};
        for (int p = 0; p < 4; p++) {
            lr_criteria c = lr_stage_criteria((lr_stage_kind)k, precisions[p], -1);
            ck_assert(c.rel_l2 == lr_tolerance((lr_stage_kind)k, precisions[p]));
            ck_assert(c.token >= c.rel_l2 && c.atol > 0 && c.rtol > 0);
            double big = 1e3 * c.rel_l2; /* a prediction far above the fixtures' */
            lr_criteria s = lr_stage_criteria((lr_stage_kind)k, precisions[p], big);
            double f = s.rel_l2 / c.rel_l2;
            ck_assert(s.rel_l2 == lr_stage_budget((lr_stage_kind)k, precisions[p], big));
            ck_assert_double_eq_tol(s.token / c.token, f, f * FEW_ROUNDINGS);
            ck_assert_double_eq_tol(s.atol / c.atol, f, f * FEW_ROUNDINGS);
            ck_assert_double_eq_tol(s.rtol / c.rtol, f, f * FEW_ROUNDINGS);
        }
    }
    double one = 1, two = 2;
    lr_tensor a = {.dtype = LR_F64, .ndim = 1, .shape = {1}, .data = &two};
    lr_tensor b = {.dtype = LR_F64, .ndim = 1, .shape = {1}, .data = &one};
    lr_criteria none = lr_stage_criteria(LR_STAGE_NORM, LR_I64, -1);
    lr_metrics m;
    ck_assert_int_eq(lr_compare_stage(&b, &b, &none, &m), LR_OK);
    ck_assert(!lr_metrics_pass(&m, none.rel_l2));
    ck_assert_int_eq(lr_compare_stage(&a, &b, &none, &m), LR_OK);
    ck_assert(!lr_metrics_pass(&m, none.rel_l2));
}
END_TEST

/* A zero row in the reference allows no error in it; NaN fails as NaN alone; a 1-D
 * tensor is one row; a numel mismatch is refused. */
START_TEST(metrics_edges) {
    double ref[2 * 3] = {0, 0, 0, 1, 2, 3}, test[2 * 3] = {0, 1e-100, 0, 1, 2, 3}; /* (2, 3) */
    lr_tensor a = tensor2(test, 2, 3), b = tensor2(ref, 2, 3);
    lr_criteria c = lr_stage_criteria(LR_STAGE_NORM, LR_F64, -1);
    lr_metrics m;
    ck_assert_int_eq(lr_compare_stage(&a, &b, &c, &m), LR_OK);
    ck_assert_int_eq(m.token_rel_l2_row, 0);
    ck_assert(isinf(m.token_rel_l2) && isinf(m.elem_ratio) && m.elem_fail == 1 && m.elem_index == 1);
    ck_assert_uint_eq(lr_metrics_failures(&m, c.rel_l2), LR_FAILS_TOKEN | LR_FAILS_ELEMENT);
    test[1] = NAN;
    ck_assert_int_eq(lr_compare_stage(&a, &b, &c, &m), LR_OK);
    ck_assert_uint_eq(lr_metrics_failures(&m, c.rel_l2), LR_FAILS_NAN);
    lr_tensor flat = {.dtype = LR_F64, .ndim = 1, .shape = {6}, .data = ref};
    ck_assert_int_eq(lr_compare_stage(&flat, &flat, &c, &m), LR_OK);
    ck_assert(m.width == 6 && m.token_rel_l2 == 0 && m.token_rel_l2_row == -1 && m.elem_index == -1);
    ck_assert(lr_metrics_pass(&m, c.rel_l2));
    lr_tensor shorter = tensor2(ref, 1, 3);
    ck_assert_int_eq(lr_compare_stage(&shorter, &b, &c, &m), LR_E_SHAPE);
}
END_TEST

/* ---- lr_same_compare: the same-precision yardstick --------------------------------------- */

/* ref: values rounded to p; test: ref moved by k ulps at the elements move() picks. */
static void same_pair(double *ref, double *test, int64_t n, lr_dtype p, double (*move)(int64_t i)) {
    for (int64_t i = 0; i < n; i++) {
        double v = value_at(i);
        lr_convert(&ref[i], LR_F64, &v, LR_F64, 1);
        float f = (float)v;
        uint16_t h;
        lr_convert(&h, p, &f, LR_F32, 1);
        lr_convert(&ref[i], LR_F64, &h, p, 1);
        test[i] = ref[i] + move(i) * lr_ulp(p, ref[i]);
    }
}
static double move_none(int64_t i) { return (void)i, 0; }
static double move_one_far(int64_t i) { return i == 77 ? 4 : 0; }            /* one element 4 ulps */
static double move_many(int64_t i) { return i % 3 == 0 ? 1 : 0; }            /* a third by one ulp */
static double move_every_row_last(int64_t i) { return i % 256 == 255 ? 3 : 0; } /* each row's last */

START_TEST(same_precision_judges_shifts_and_elements) {
    enum { T = 64, W = 256, N = T * W };
    static double ref[N], test[N];
    const lr_dtype ps[] = {LR_BF16, LR_F16};
    for (size_t k = 0; k < 2; k++) {
        lr_dtype p = ps[k];
        lr_same_budget b = lr_same_precision_budget(p, 256);
        lr_tensor tr = tensor2(ref, T, W), tt = tensor2(test, T, W);
        lr_same_metrics m;
        same_pair(ref, test, N, p, move_none);
        ck_assert_int_eq(lr_same_compare(&tt, &tr, p, b, &m), LR_OK);
        ck_assert(m.pass && m.rel_l2 == 0 && m.clipped == 0 && m.over == 0);
        /* One element 4 ulps off: within fp16's element bound, over bf16's cap of 2; the
         * relative L2 judged counts one ulp of it, so it cannot fail the stage on its own. */
        same_pair(ref, test, N, p, move_one_far);
        ck_assert_int_eq(lr_same_compare(&tt, &tr, p, b, &m), LR_OK);
        ck_assert_int_eq(m.worst_token, 0);
        ck_assert_int_eq(m.worst_feature, 77);
        ck_assert(fabs(m.max_ulps - 4) < 1e-9);
        ck_assert(m.clipped < m.rel_l2 / 3.9 && m.clipped <= m.budget);
        ck_assert(p == LR_F16 ? m.pass : !m.pass);
        /* A third of the elements one ulp off (what a scale fault under an ulp does): every
         * element is within its bound, the relative L2 is far over. */
        same_pair(ref, test, N, p, move_many);
        ck_assert_int_eq(lr_same_compare(&tt, &tr, p, b, &m), LR_OK);
        ck_assert(m.max_ulps <= 1 + 1e-9 && m.over == 0);
        ck_assert(m.clipped > 2 * m.budget && !m.pass);
        /* Every row's last element 3 ulps off (a kernel that skips one element per row):
         * the element bound fails on every row at bf16; at fp16 (4 ulps allowed) the
         * relative L2 sees them (only the worst one is cut to an ulp). */
        same_pair(ref, test, N, p, move_every_row_last);
        ck_assert_int_eq(lr_same_compare(&tt, &tr, p, b, &m), LR_OK);
        ck_assert(!m.pass);
        if (p == LR_BF16) ck_assert_int_eq(m.over, T);
    }
}
END_TEST

/* A layer's output is the stream plus two rounded outputs: where they cancel, one flip of
 * a term is many ulps of the sum, and lr_same_compare_sum counts it in the terms' ulps. */
START_TEST(same_precision_sum_counts_the_terms) {
    enum { T = 4, W = 64, N = T * W };
    static double a[N], m[N], ref[N], test[N];
    for (int64_t i = 0; i < N; i++) {
        float x = (float)(8 * value_at(i)), y = (float)(-8 * value_at(i) + 0.05 * value_at(i + 7));
        uint16_t h;
        lr_convert(&h, LR_BF16, &x, LR_F32, 1);
        lr_convert(&a[i], LR_F64, &h, LR_BF16, 1);
        lr_convert(&h, LR_BF16, &y, LR_F32, 1);
        lr_convert(&m[i], LR_F64, &h, LR_BF16, 1);
        ref[i] = (double)(float)(a[i] + m[i]);
        test[i] = (double)(float)(a[i] + (i % 5 == 0 ? lr_ulp(LR_BF16, a[i]) : 0) + m[i]); /* a flips */
    }
    lr_tensor tr = tensor2(ref, T, W), tt = tensor2(test, T, W), ta = tensor2(a, T, W), tm = tensor2(m, T, W);
    const lr_tensor *terms[] = {&ta, &tm};
    lr_same_budget b = lr_same_precision_budget(LR_BF16, 64);
    b.rel_l2 = 1; /* the element bound alone */
    lr_same_metrics plain, sum;
    ck_assert_int_eq(lr_same_compare(&tt, &tr, LR_BF16, b, &plain), LR_OK);
    ck_assert_int_eq(lr_same_compare_sum(&tt, &tr, terms, 2, LR_BF16, b, &sum), LR_OK);
    ck_assert_msg(!plain.pass && plain.max_ulps > 4, "one term's flip is %.1f ulps of the sum", plain.max_ulps);
    ck_assert_msg(sum.pass && sum.max_ulps <= 1, "in the terms' ulps: %.2f", sum.max_ulps);
    /* three flips of a term is a bug */
    for (int64_t i = 0; i < N; i++)
        test[i] = (double)(float)(a[i] + (i % 5 == 0 ? 3 * lr_ulp(LR_BF16, a[i]) : 0) + m[i]);
    ck_assert_int_eq(lr_same_compare_sum(&tt, &tr, terms, 2, LR_BF16, b, &sum), LR_OK);
    ck_assert(!sum.pass && sum.over > 1);
    lr_tensor short_term = tensor2(m, T - 1, W);
    const lr_tensor *bad[] = {&ta, &short_term};
    ck_assert_int_eq(lr_same_compare_sum(&tt, &tr, bad, 2, LR_BF16, b, &sum), LR_E_SHAPE);
}
END_TEST

/* A projection whose terms cancel (one large product met by the rest, as a trained
 * model's massive activation is): two float32 orders of the sum differ by many ulps of the
 * result, which lr_same_compare_acc counts through lr_same_accumulation_bound; a scale
 * fault of 1e-3 (a quarter of a bf16 ulp) still fails it. */
START_TEST(same_precision_projection_counts_cancelling_terms) {
    enum { T = 8, N = 64, K = 512 };
    static float x[T * K], w[N * K];
    static double ref[T * N], test[T * N], faulty[T * N], acc[T * N];
    for (int64_t i = 0; i < T * K; i++)
        x[i] = lr_round_f32((float)value_at(i), LR_BF16);
    for (int64_t t = 0; t < T; t++)
        x[t * K] = 256; /* the massive channel */
    for (int64_t i = 0; i < N * K; i++)
        w[i] = lr_round_f32((float)(0.05 * value_at(i + 11)), LR_BF16);
    for (int64_t n = 0; n < N; n++) { /* what the massive term adds, the rest nearly takes away */
        double rest = 0;
        for (int64_t k = 1; k < K; k++)
            rest += (double)x[k] * w[n * K + k];
        w[n * K] = (float)((-rest + 1e-4 * value_at(n + 3)) / 256);
    }
    int64_t flipped = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) {
            float up = 0, down = 0; /* float32, in two orders */
            double exact = 0;
            for (int64_t k = 0; k < K; k++) {
                up += x[t * K + k] * w[n * K + k];
                down += x[t * K + K - 1 - k] * w[n * K + K - 1 - k];
                exact += (double)x[t * K + k] * w[n * K + k];
            }
            ref[t * N + n] = lr_round_f32(up, LR_BF16);
            test[t * N + n] = lr_round_f32(down, LR_BF16);
            faulty[t * N + n] = lr_round_f32((float)(exact * 1.001), LR_BF16);
            flipped += ref[t * N + n] != test[t * N + n];
        }
    ck_assert_int_eq(lr_same_accumulation_bound(acc, x, w, T, N, K), LR_OK);
    lr_tensor tr = tensor2(ref, T, N), tt = tensor2(test, T, N), tf = tensor2(faulty, T, N),
              ta = tensor2(acc, T, N);
    lr_same_budget b = lr_same_precision_budget(LR_BF16, K);
    lr_same_metrics plain, counted;
    ck_assert_int_eq(lr_same_compare(&tt, &tr, LR_BF16, b, &plain), LR_OK);
    ck_assert_int_eq(lr_same_compare_acc(&tt, &tr, &ta, LR_BF16, b, &counted), LR_OK);
    ck_assert_msg(flipped > 0 && !plain.pass, "%lld outputs differ by order; plain verdict %.1f ulps",
                  (long long)flipped, plain.max_ulps);
    fprintf(stderr, "projection: %lld of %d outputs moved by order; plain %.1f ulps (pass %d); counted %.2f ulps, %.3g of %.3g\n", (long long)flipped, T * N, plain.max_ulps, plain.pass, counted.max_ulps, counted.clipped, counted.budget);
    ck_assert_msg(counted.pass, "order counted: %.2f ulps, relative L2 %.3g of %.3g", counted.max_ulps,
                  counted.clipped, counted.budget);
    ck_assert_int_eq(lr_same_compare_acc(&tf, &tr, &ta, LR_BF16, b, &counted), LR_OK);
    ck_assert_msg(!counted.pass, "a 1e-3 scale fault passed: relative L2 %.3g of %.3g", counted.clipped,
                  counted.budget);
    lr_tensor short_acc = tensor2(acc, T - 1, N);
    ck_assert_int_eq(lr_same_compare_acc(&tt, &tr, &short_acc, LR_BF16, b, &counted), LR_E_SHAPE);
}
END_TEST

/* Attention whose kernel rounds P: another order of the scores (here q x (1 + 2^-14), more
 * than float32 order moves them, for more flips) flips some weights' roundings, and one
 * flip moves the output by ulp(P_j) (v_j - O) / l, which in a sharp early row at a small
 * output is several of its ulps (the H200 at Llama-3-8B's shapes: 4 and 6 ulps at tokens 7
 * and 43 of 512). Every move is explained by lr_same_attention_flip_bound; the verdict
 * counting it passes, and a fault of 1e-2 on one feature of every row with 1e-3 on the
 * others still fails it. */
START_TEST(same_precision_attention_counts_p_flips) {
    enum { T = 512, NH = 2, NKV = 1, HD = 64, QW = NH * HD, KW = NKV * HD, EARLY = 8 };
#define SHARP 2.0
    static float q[T * QW], k[T * KW], v[T * KW], qr[T * QW], kr[T * KW], ctx[T * QW], scores[T * T];
    static double ref[T * QW], test[T * QW], fault[T * QW], jump[T * QW];
    lr_config cfg = {.hidden_size = QW, .num_attention_heads = NH, .num_key_value_heads = NKV, .head_dim = HD,
                     .rope_theta = 10000.0, .rope_factor = 1.0, .rope_type = LR_ROPE_DEFAULT,
                     .max_position_embeddings = T};
    int64_t pos[T];
    for (int64_t t = 0; t < T; t++) pos[t] = t;
    for (int64_t i = 0; i < T * QW; i++) /* the first rows sharp, the rest nearly uniform */
        q[i] = lr_round_f32((float)((i / QW < EARLY ? SHARP : 0.5) * value_at(3 * i + 1)), LR_BF16);
    for (int64_t i = 0; i < T * KW; i++) {
        k[i] = lr_round_f32((float)value_at(5 * i + 2), LR_BF16);
        v[i] = lr_round_f32((float)value_at(7 * i + 3), LR_BF16);
    }
    double inv[HD / 2];
    float rs[HD];
    for (int64_t i = 0; i < HD / 2; i++) inv[i] = pow(10000.0, -2.0 * (double)i / HD);
    memcpy(qr, q, sizeof q), memcpy(kr, k, sizeof k);
    lr_ref_rotary_embedding_emulated(qr, QW, T, NH, HD, pos, inv, rs, LR_BF16);
    lr_ref_rotary_embedding_emulated(kr, KW, T, NKV, HD, pos, inv, rs, LR_BF16);
    lr_ref_attention_emulated(ctx, QW, qr, QW, kr, v, KW, T, 0, NH, NKV, HD, true, LR_BF16, scores);
    for (int64_t i = 0; i < T * QW; i++) ref[i] = ctx[i];
    for (int64_t i = 0; i < T * QW; i++) qr[i] *= 1 + 0x1p-14f;
    lr_ref_attention_emulated(ctx, QW, qr, QW, kr, v, KW, T, 0, NH, NKV, HD, true, LR_BF16, scores);
    for (int64_t i = 0; i < T * QW; i++) {
        test[i] = ctx[i];
        fault[i] = lr_round_f32((float)(ref[i] * (i % QW == QW - 1 ? 1.01 : 1.001)), LR_BF16);
    }
    lr_tensor tq = {.dtype = LR_F32, .ndim = 2, .shape = {T, QW}, .data = q},
              tk = {.dtype = LR_F32, .ndim = 2, .shape = {T, KW}, .data = k},
              tv = {.dtype = LR_F32, .ndim = 2, .shape = {T, KW}, .data = v};
    lr_tensor tr = tensor2(ref, T, QW), tt = tensor2(test, T, QW), tf = tensor2(fault, T, QW),
              tj = tensor2(jump, T, QW);
    lr_batch b = {.positions = pos, .num_tokens = T, .num_seqs = 1};
    bool applies = false;
    ck_assert_int_eq(lr_same_attention_flip_bound(jump, &cfg, &b, &tq, &tk, &tv, &tr, LR_BF16, &applies), LR_OK);
    ck_assert(applies);
    lr_same_budget ab = lr_same_attention_budget(LR_BF16, HD, T, true, LR_SAME_P_RANGE);
    lr_same_metrics plain, flips, faulty;
    ck_assert_int_eq(lr_same_compare(&tt, &tr, LR_BF16, ab, &plain), LR_OK);
    ck_assert_int_eq(lr_same_compare_flips(&tt, &tr, &tj, LR_BF16, ab, &flips), LR_OK);
    ck_assert_int_eq(lr_same_compare_flips(&tf, &tr, &tj, LR_BF16, ab, &faulty), LR_OK);
    /* Every move is within three flips, beyond one rounding; some need the flips (more
     * than three of their own ulps: a small output of a sharp early row). */
    int64_t moved = 0, beyond = 0;
    for (int64_t i = 0; i < T * QW; i++) {
        double d = fabs(test[i] - ref[i]), own = lr_ulp(LR_BF16, ref[i]);
        moved += d > 0;
        beyond += d > 3 * own;
        ck_assert_msg(d <= own + 3 * jump[i], "[%lld, %lld]: %.3g apart, one flip moves it %.3g (ulp %.3g)",
                      (long long)(i / QW), (long long)(i % QW), d, jump[i], own);
    }
    ck_assert_msg(moved > 0 && beyond > 0, "%lld outputs moved, %lld by more than 3 of their ulps", (long long)moved,
                  (long long)beyond);
    ck_assert_msg(flips.pass && flips.max_ulps <= plain.max_ulps, "flips: %.2f ulps (plain %.2f), over %lld",
                  flips.max_ulps, plain.max_ulps, (long long)flips.over);
    ck_assert_msg(!faulty.pass, "a fault of 1e-2 on one feature and 1e-3 elsewhere passed: %lld over, %.3g of %.3g",
                  (long long)faulty.over, faulty.clipped, faulty.budget);
    ck_assert_int_eq(lr_same_compare_flips(&tt, &tr, &tk, LR_BF16, ab, &flips), LR_E_SHAPE);
    lr_batch later = b;
    int64_t shifted[T];
    for (int64_t t = 0; t < T; t++) shifted[t] = t + 1;
    later.positions = shifted; /* a sequence past position 0: no bound */
    ck_assert_int_eq(lr_same_attention_flip_bound(jump, &cfg, &later, &tq, &tk, &tv, &tr, LR_BF16, &applies), LR_OK);
    ck_assert(!applies);
}
END_TEST

/* A few flips of large elements (SmolLM2's q_proj at bf16 on the H200: 13 tokens, one
 * element of 0.5% of the stage's squared norm one ulp off, 1.06 budgets of relative L2
 * where order explains 17 flips) pass; a scale fault, or many flips, still fail. */
START_TEST(same_precision_few_large_flips) {
    enum { T = 13, W = 576, N = T * W };
    static double ref[N], test[N];
    for (int64_t i = 0; i < N; i++)
        ref[i] = lr_round_f32((float)value_at(i), LR_BF16);
    ref[7 * W + 118] = lr_round_f32(14.0f, LR_BF16); /* 0.5% of the squared norm */
    ref[4 * W + 543] = lr_round_f32(-12.0f, LR_BF16);
    lr_tensor tr = tensor2(ref, T, W), tt = tensor2(test, T, W);
    lr_same_budget b = lr_same_precision_budget(LR_BF16, W);
    lr_same_metrics m;
    memcpy(test, ref, sizeof test);
    test[7 * W + 118] += lr_ulp(LR_BF16, ref[7 * W + 118]);
    test[4 * W + 543] -= lr_ulp(LR_BF16, ref[4 * W + 543]);
    ck_assert_int_eq(lr_same_compare(&tt, &tr, LR_BF16, b, &m), LR_OK);
    ck_assert_int_eq(m.flips, 2);
    ck_assert_msg(m.clipped > m.budget, "two flips are %.3g of a %.3g budget: no longer the case this tests",
                  m.clipped, m.budget);
    ck_assert_msg(m.pass, "two one-ulp flips of large elements failed (%.3g expected flips)", m.flips_expected);
    /* a third large one: more than order explains of the largest */
    test[0] = ref[0] = lr_round_f32(13.0f, LR_BF16);
    test[0] += lr_ulp(LR_BF16, ref[0]);
    ck_assert_int_eq(lr_same_compare(&tt, &tr, LR_BF16, b, &m), LR_OK);
    ck_assert(!m.pass);
    /* a scale fault of 1e-3 on every element, before its rounding */
    for (int64_t i = 0; i < N; i++) {
        double exact = i == 0 || i == 7 * W + 118 || i == 4 * W + 543 ? ref[i] : value_at(i);
        test[i] = lr_round_f32((float)(exact * 1.001), LR_BF16);
    }
    ck_assert_int_eq(lr_same_compare(&tt, &tr, LR_BF16, b, &m), LR_OK);
    ck_assert_msg(!m.pass && m.flips > 100, "scale fault: %lld flips, %.3g of %.3g", (long long)m.flips,
                  m.clipped, m.budget);
}
END_TEST

/* A massive activation (one element holding most of a stage's norm, as SmolLM2's token 0,
 * channel 507 does) flipped by one ulp is the per-element bound's alone; the rest of the
 * stage is still held to the relative L2 against its own norm, so a fault there fails. */
START_TEST(same_precision_massive_activation) {
    enum { T = 4, W = 64, N = T * W };
    static double ref[N], test[N];
    for (int64_t i = 0; i < N; i++)
        ref[i] = lr_round_f32((float)value_at(i), LR_F16);
    ref[5] = 24576; /* 99.9% of the squared norm; fp16's ulp there is 16 */
    lr_tensor tr = tensor2(ref, T, W), tt = tensor2(test, T, W);
    lr_same_budget b = lr_same_precision_budget(LR_F16, 64);
    lr_same_metrics m;
    for (int64_t i = 0; i < N; i++)
        test[i] = ref[i] + (i == 5 ? 16 : 0);
    ck_assert_int_eq(lr_same_compare(&tt, &tr, LR_F16, b, &m), LR_OK);
    ck_assert_msg(m.pass && m.rel_l2 > m.budget, "one flip of the massive element: %.3g (judged %.3g of %.3g)",
                  m.rel_l2, m.clipped, m.budget);
    /* the rest x (1 + 8e-4): one or two ulps on most of it, which against the whole
     * stage's norm (the massive element's) would be a thirtieth as large */
    for (int64_t i = 0; i < N; i++)
        test[i] = i == 5 ? ref[i] : lr_round_f32((float)(ref[i] * 1.0008), LR_F16);
    ck_assert_int_eq(lr_same_compare(&tt, &tr, LR_F16, b, &m), LR_OK);
    ck_assert_msg(!m.pass && m.over == 0 && m.rel_l2 < m.budget, "a fault on the rest: judged %.3g of %.3g, whole %.3g",
                  m.clipped, m.budget, m.rel_l2);
}
END_TEST

/* Attention that rounds P gets a share of elements over the ulp bound (and one ulp more
 * of cap), and P's flips in its relative L2, not one ulp more for every element: a kernel
 * 2 ulps off on one feature of every row (1 of 576, as a 1e-2 error on SmolLM2's last
 * feature is) fails, a few scattered 2-ulp flips pass. Attention that does not round P
 * has the plain budget of its longest reduction; both floor by feature. */
START_TEST(same_precision_attention_budget) {
    const lr_dtype ps[] = {LR_BF16, LR_F16};
    for (size_t k = 0; k < 2; k++) {
        lr_same_budget plain = lr_same_precision_budget(ps[k], 512);
        lr_same_budget no_p = lr_same_attention_budget(ps[k], 128, 512, false, LR_SAME_P_RANGE);
        lr_same_budget with_p = lr_same_attention_budget(ps[k], 128, 512, true, LR_SAME_P_RANGE);
        ck_assert(no_p.rel_l2 == plain.rel_l2 && no_p.ulps == plain.ulps && no_p.spare_share == 0);
        ck_assert(no_p.floor_by_feature && with_p.floor_by_feature && !plain.floor_by_feature);
        ck_assert(with_p.ulps == plain.ulps && with_p.cap == plain.cap + 1 && with_p.spare_share == 0x1p-12);
        ck_assert(with_p.rel_l2 >= plain.rel_l2);
        ck_assert(lr_same_attention_budget(ps[k], 128, 16, false, LR_SAME_P_RANGE).rel_l2 == lr_same_precision_budget(ps[k], 128).rel_l2);
    }
    enum { T = 64, W = 576, N = T * W };
    static double ref[N], test[N];
    for (int64_t i = 0; i < N; i++)
        ref[i] = lr_round_f32((float)value_at(i), LR_BF16);
    lr_tensor tr = tensor2(ref, T, W), tt = tensor2(test, T, W);
    lr_same_budget b = lr_same_attention_budget(LR_BF16, 64, 64, true, LR_SAME_P_RANGE);
    lr_same_metrics m;
    for (int64_t i = 0; i < N; i++) /* the last feature of every row two ulps off */
        test[i] = ref[i] + (i % W == W - 1 ? 2 * lr_ulp(LR_BF16, ref[i]) : 0);
    ck_assert_int_eq(lr_same_compare(&tt, &tr, LR_BF16, b, &m), LR_OK);
    ck_assert_msg(!m.pass && m.over == T, "one feature 2 ulps off: %lld over, pass %d", (long long)m.over, m.pass);
    for (int64_t i = 0; i < N; i++) /* three scattered elements */
        test[i] = ref[i] + (i % 9001 == 17 ? 2 * lr_ulp(LR_BF16, ref[i]) : 0);
    ck_assert_int_eq(lr_same_compare(&tt, &tr, LR_BF16, b, &m), LR_OK);
    ck_assert_msg(m.pass && m.over == 5, "scattered flips: %lld over, pass %d", (long long)m.over, m.pass);
}
END_TEST

/* A fault far under an ulp moves nothing by its dither alone: the dither stands for the
 * op's lost unrounded value, so x plus it must round back to x, also at a power of two,
 * where the spacing below is half the one above (the first version flipped those, and
 * "caught" a 1e-12 fault at model.norm). */
START_TEST(fault_dither_alone_never_flips) {
    lr_fault f;
    ck_assert_int_eq(lr_fault_parse("model.norm=scale:1e-12", &f), LR_OK);
    const double xs[] = {1.0, 0.5, -2.0, 0.75, 0x1.8p-10, 4096, -0x1p-6};
    const lr_dtype ps[] = {LR_BF16, LR_F16};
    for (size_t k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++)
            for (int64_t t = 0; t < 2000; t++) {
                float y = (float)lr_fault_apply(&f, xs[i], t, 3, 8, ps[k]);
                uint16_t h;
                double back;
                lr_convert(&h, ps[k], &y, LR_F32, 1);
                lr_convert(&back, LR_F64, &h, ps[k], 1);
                ck_assert_msg(back == xs[i], "%s: %g + dither rounds to %g (token %lld)", lr_dtype_name(ps[k]), xs[i],
                              back, (long long)t);
            }
}
END_TEST

/* ---- lr_stage_layer ---------------------------------------------------------------------- */

/* The backend table says which backends take host BLAS threads (llama-diff refuses
 * --threads for a run with nothing on the CPU): the CPU reference does, CUDA does not. */
START_TEST(backend_table_says_who_takes_threads) {
    const lr_backend_info *cpu = lr_backend_find("cpu"), *cuda = lr_backend_find("cuda");
    ck_assert_ptr_nonnull(cpu);
    ck_assert_ptr_nonnull(cuda);
    ck_assert(cpu->blas_threads);
    ck_assert(!cuda->blas_threads);
    /* and which take CUDA graphs (llama-diff refuses --cuda-graphs without a cuda side) */
    ck_assert(!cpu->graphs);
    ck_assert(cuda->graphs);
}
END_TEST

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

/* A made-up run of two layers in forward order at a precision's budgets (no error model),
 * every stage at `share` of its budget (0: exact) until set otherwise, each token
 * erring as the whole tensor does. */
typedef struct {
    char names[2 + 2 * LR_LAYER_STAGE_COUNT + 1][64];
    lr_stage_result r[2 + 2 * LR_LAYER_STAGE_COUNT + 1];
    size_t n;
} run;

static void set_shares(run *x, size_t i, double share, double token_share) {
    lr_stage_result *s = &x->r[i];
    s->m.rel_l2 = share * s->tolerance;
    s->m.token_rel_l2 = token_share * s->tolerance;
    s->m.nan_a = isnan(share);
    s->pass = lr_metrics_pass(&s->m, s->tolerance);
}

static void set_share(run *x, size_t i, double share) { set_shares(x, i, share, share); }

static void make_run_at(run *x, lr_dtype precision) {
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
        s->m.crit = lr_stage_criteria(s->kind, precision, -1);
        s->m.elem_checked = true;
        s->tolerance = s->m.crit.rel_l2;
        s->m.n = 1;
        s->predicted = -1;
        s->width = 1;
        set_share(x, i, 0);
    }
}

static void make_run(run *x) { make_run_at(x, LR_F64); }

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
    ck_assert(!d.by_token);
    ck_assert(d.growth == x.r[at(1, LR_LS_K_PROJ)].m.rel_l2 / x.r[at(1, LR_LS_Q_PROJ)].m.rel_l2);
}
END_TEST

/* f32 rounding after an exact embedding (8% to 60% of each budget, as the fixtures show)
 * and o_proj's weights off by ten budgets (1e-5 at f32): o_proj is named. With the
 * predecessor's error floored at a thousandth of the budget, rounding at layer 0's input
 * norm looked like a jump of 80 and took the blame. The same with an error model that
 * predicts each stage's rounding. */
START_TEST(drill_down_rounding_after_an_exact_stage_is_no_jump) {
    for (int with_model = 0; with_model < 2; with_model++) {
        run x;
        make_run_at(&x, LR_F32);
        for (size_t i = 1; i < x.n; i++) {
            double rounding = 0.08 + 0.52 * (double)(i - 1) / (double)(x.n - 2);
            set_share(&x, i, rounding);
            if (with_model) x.r[i].predicted = rounding * x.r[i].tolerance;
        }
        set_share(&x, at(0, LR_LS_O_PROJ), 10);
        set_share(&x, at(0, LR_LS_SELF_ATTN), 10);
        set_share(&x, at(0, LR_LS_POST_ATTENTION_LAYERNORM), 2);
        lr_drill d;
        ck_assert_int_eq(lr_drill_down(x.r, x.n, &d), LR_OK);
        ck_assert_int_eq(d.first, (int64_t)at(0, LR_LS_O_PROJ));
        ck_assert_msg(d.cause == (int64_t)at(0, LR_LS_O_PROJ), "model %d: cause %s", with_model,
                      x.r[d.cause].name);
        /* over its predecessor, or over its own prediction where that is larger */
        const lr_stage_result *o = &x.r[at(0, LR_LS_O_PROJ)], *in = &x.r[at(0, LR_LS_O_PROJ_INPUT)];
        ck_assert(d.growth == o->m.rel_l2 / fmax(in->m.rel_l2, o->predicted));
    }
}
END_TEST

/* Where the error model predicts more rounding at a stage than its predecessor shows
 * (an exact one), that prediction is the floor: a stage at its prediction is no jump. */
START_TEST(drill_down_floor_is_the_prediction) {
    run x;
    make_run_at(&x, LR_F32);
    set_share(&x, at(0, LR_LS_INPUT_LAYERNORM), 0.9); /* rounding, as predicted */
    x.r[at(0, LR_LS_INPUT_LAYERNORM)].predicted = 0.9 * x.r[at(0, LR_LS_INPUT_LAYERNORM)].tolerance;
    set_share(&x, at(0, LR_LS_Q_PROJ), 0.5);
    set_share(&x, at(0, LR_LS_K_PROJ), 3); /* x6: the cause */
    lr_drill d;
    ck_assert_int_eq(lr_drill_down(x.r, x.n, &d), LR_OK);
    ck_assert_int_eq(d.cause, (int64_t)at(0, LR_LS_K_PROJ));
    ck_assert_double_eq_tol(d.growth, 6, 6 * FEW_ROUNDINGS);
}
END_TEST

/* A bug on one token: q_proj's whole-tensor error barely grows, its worst token's grows
 * twentyfold and fails the per-token budget. The drill-down names q_proj by the token,
 * though the whole tensor's error grows more at a later stage. */
START_TEST(drill_down_sees_a_bug_on_one_token) {
    run x;
    make_run_at(&x, LR_F32);
    for (int s = 0; s < LR_LAYER_STAGE_COUNT; s++)
        set_shares(&x, at(0, (lr_layer_stage)s), 0.3, 0.5);
    set_shares(&x, at(0, LR_LS_Q_PROJ), 0.33, 10);
    set_shares(&x, at(0, LR_LS_O_PROJ_INPUT), 0.6, 10);
    for (int s = LR_LS_O_PROJ; s < LR_LAYER_STAGE_COUNT; s++)
        set_shares(&x, at(0, (lr_layer_stage)s), 0.6, 0.6);
    lr_drill d;
    ck_assert_int_eq(lr_drill_down(x.r, x.n, &d), LR_OK);
    ck_assert_int_eq(d.first, (int64_t)at(0, LR_LS_Q_PROJ));
    ck_assert_uint_eq(lr_metrics_failures(&x.r[d.first].m, x.r[d.first].tolerance), LR_FAILS_TOKEN);
    ck_assert_int_eq(d.cause, (int64_t)at(0, LR_LS_Q_PROJ));
    ck_assert(d.by_token);
    ck_assert_double_eq_tol(d.growth, 20, 20 * FEW_ROUNDINGS);
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
    ck_assert(isfinite(d.growth) && d.growth > 5); /* over the floor: nothing before it */
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
    TCase *metrics = tcase_create("metrics");
    tcase_add_loop_test(metrics, metrics_one_element_per_row_fails_where_it_is, 0, N_CPU_PRECISIONS);
    tcase_add_loop_test(metrics, metrics_element_criterion_sees_what_the_l2_hides, 0, N_CPU_PRECISIONS);
    tcase_add_loop_test(metrics, metrics_worst_token_is_found, 0, N_CPU_PRECISIONS);
    tcase_add_loop_test(metrics, metrics_row_scales, 0, N_CPU_PRECISIONS);
    tcase_add_test(metrics, metrics_rounding_noise_passes);
    tcase_add_test(metrics, metrics_criteria_come_from_the_table);
    tcase_add_test(metrics, metrics_edges);
    tcase_add_test(metrics, same_precision_judges_shifts_and_elements);
    tcase_add_test(metrics, same_precision_sum_counts_the_terms);
    tcase_add_test(metrics, same_precision_projection_counts_cancelling_terms);
    tcase_add_test(metrics, same_precision_attention_counts_p_flips);
    tcase_add_test(metrics, same_precision_few_large_flips);
    tcase_add_test(metrics, same_precision_massive_activation);
    tcase_add_test(metrics, same_precision_attention_budget);
    tcase_add_test(metrics, fault_dither_alone_never_flips);
    suite_add_tcase(s, metrics);
    TCase *names = tcase_create("stage names");
    tcase_add_test(names, stage_layer_reads_the_layer);
    tcase_add_test(names, backend_table_says_who_takes_threads);
    suite_add_tcase(s, names);
    TCase *drill = tcase_create("drill-down");
    tcase_add_test(drill, drill_down_of_a_passing_run_is_empty);
    tcase_add_test(drill, drill_down_names_the_jump_not_the_first_failure);
    tcase_add_test(drill, drill_down_rounding_after_an_exact_stage_is_no_jump);
    tcase_add_test(drill, drill_down_floor_is_the_prediction);
    tcase_add_test(drill, drill_down_sees_a_bug_on_one_token);
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
