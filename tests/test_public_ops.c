/* test_public_ops.c: the installed reference ops and op budgets (llamaref_ops.h) called
 * exactly as an outside harness calls them: this file sees only the installed headers
 * (its include path is ref/ alone, Makefile.am) and the library. An RMSNorm "kernel"
 * written here in its own float32 order passes at F32, F16 and BF16; the same kernel
 * leaving the last element's weight out fails at each (the docs/adding-a-kernel.md
 * example, "Calling the reference ops and budgets from your own harness"). */
#include <llamaref_ops.h>

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { T = 7, H = 1000 };

/* The kernel under test: sum of squares in reverse order, then (x * inv) * w, in float32;
 * planted: the last element unweighted. */
static void my_rms_norm(float *y, const float *x, const float *w, float eps, int planted) {
    for (int t = 0; t < T; t++) {
        float ss = 0;
        for (int i = H - 1; i >= 0; i--)
            ss += x[t * H + i] * x[t * H + i];
        float inv = 1.0f / sqrtf(ss / H + eps);
        for (int i = 0; i < H; i++)
            y[t * H + i] = planted && i == H - 1 ? x[t * H + i] * inv : x[t * H + i] * inv * w[i];
    }
}

/* Judges the kernel at dt; true when both verdicts pass. */
static int judge_kernel(lr_dtype dt, int planted) {
    static float x[T * H], w[H], y[T * H], emul[T * H];
    static double xd[T * H], wd[H], ref[T * H];
    unsigned s = 12345;
    for (int i = 0; i < T * H; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = lr_round_f32(((float)(s >> 8) / 16777216.0f) * 2.5f - 1.25f, dt); /* inputs in the dtype */
        xd[i] = x[i];
    }
    for (int i = 0; i < H; i++)
        w[i] = lr_round_f32(1.0f + 0.2f * (float)((i % 7) - 3) / 3.0f, dt), wd[i] = w[i];
    double eps = 1e-5;
    lr_ref_rms_norm_f64(ref, xd, wd, T, H, eps);         /* the truth */
    lr_ref_rms_norm_emulated(emul, x, w, T, H, eps, dt); /* the emulated reference */
    my_rms_norm(y, x, w, (float)eps, planted);
    lr_round_f32_n(y, (size_t)(T * H), dt); /* the kernel stores in the dtype */

    lr_op_criteria c;
    ck_assert_int_eq(lr_op_budget("rms_norm", dt, H, &c), LR_OK);
    ck_assert(!c.exact);
    lr_tensor a = {.dtype = LR_F32, .ndim = 2, .shape = {T, H}, .data = y};
    lr_tensor b = {.dtype = LR_F64, .ndim = 2, .shape = {T, H}, .data = ref};
    lr_metrics m;
    ck_assert_int_eq(lr_compare_stage(&a, &b, &c.f64, &m), LR_OK);
    int pass = lr_metrics_failures(&m, c.f64.rel_l2) == 0;
    ck_assert_int_eq(c.has_same, dt != LR_F32);
    if (c.has_same) {
        lr_tensor e = {.dtype = LR_F32, .ndim = 2, .shape = {T, H}, .data = emul};
        lr_same_metrics sm;
        ck_assert_int_eq(lr_same_compare(&a, &e, dt, c.same, &sm), LR_OK);
        pass = pass && sm.pass;
    }
    return pass;
}

static const lr_dtype dtypes[] = {LR_F32, LR_F16, LR_BF16};

START_TEST(test_correct_passes) {
    ck_assert_msg(judge_kernel(dtypes[_i], 0), "%s", lr_dtype_name(dtypes[_i]));
}
END_TEST

START_TEST(test_planted_fails) {
    ck_assert_msg(!judge_kernel(dtypes[_i], 1), "%s", lr_dtype_name(dtypes[_i]));
}
END_TEST

START_TEST(test_budgets) {
    lr_op_criteria c;
    ck_assert_int_eq(lr_op_budget("rms_norm", LR_BF16, 4096, &c), LR_OK);
    ck_assert(fabs(c.f64.rel_l2 - 0x1p-8 * 8) < 1e-15 && c.f64.token > c.f64.rel_l2 && c.f64.atol > 0);
    ck_assert(c.has_same && c.same.ulps >= 1 && c.same.rel_l2 > 0);
    ck_assert(fabs(lr_op_rel_l2_budget(LR_F32) - 0x1p-24 * 128) < 1e-18);
    ck_assert_int_eq(lr_op_budget("embedding", LR_F16, 1, &c), LR_OK);
    ck_assert(c.exact);
    /* attention: a kernel that rounds P gets at least as much as one that does not */
    lr_op_criteria p1, p2;
    ck_assert_int_eq(lr_op_attention_budget(LR_BF16, 128, 2048, false, LR_SAME_P_RANGE, &p1), LR_OK);
    ck_assert_int_eq(lr_op_attention_budget(LR_BF16, 128, 2048, true, LR_SAME_P_RANGE, &p2), LR_OK);
    ck_assert(p2.same.rel_l2 >= p1.same.rel_l2 && p2.same.ulps >= p1.same.ulps);
    /* bad input: a status and a message naming what is wrong */
    ck_assert_int_eq(lr_op_budget("nope", LR_F32, 1, &c), LR_E_INVAL);
    ck_assert(strstr(lr_last_error(), "nope") && strstr(lr_last_error(), "rms_norm"));
    ck_assert_int_eq(lr_op_budget("rms_norm", LR_F64, 1, &c), LR_E_INVAL);
    ck_assert(strstr(lr_last_error(), "F64") || strstr(lr_last_error(), "f64"));
    ck_assert_int_eq(lr_op_budget("rms_norm", LR_F32, 0, &c), LR_E_INVAL);
    ck_assert_int_eq(lr_op_budget("rms_norm", LR_F32, 1, NULL), LR_E_INVAL);
    ck_assert_int_eq(lr_op_budget(NULL, LR_F32, 1, &c), LR_E_INVAL);
    /* the emulated linear rounds the product, then the sum with the bias (bf16, ulp 2^-7 at
     * 1): (1 + 2^-7)^2 = 1 + 2^-6 + 2^-14 rounds to 1 + 2^-6; + 2^-8 is a tie, to even:
     * 1 + 2^-6. One rounding of the exact 1 + 2^-6 + 2^-8 + 2^-14 would give 1 + 3 2^-7. */
    float xs[1] = {1.0f + 0x1p-7f}, ws[1] = {1.0f + 0x1p-7f}, bs[1] = {0x1p-8f}, ys[1];
    lr_ref_linear_emulated(ys, xs, ws, bs, 1, 1, 1, LR_BF16);
    ck_assert_msg(ys[0] == 1.0f + 0x1p-6f, "linear emulated: %.9g", (double)ys[0]);
    lr_ref_linear_emulated(ys, xs, ws, NULL, 1, 1, 1, LR_F32); /* exact in float32 */
    ck_assert(ys[0] == 1.0f + 0x1p-6f + 0x1p-14f);
    /* the exact conversions round to nearest even */
    ck_assert(lr_f32_from_bf16(lr_bf16_from_f32(1.0f + 0x1p-8f)) == 1.0f);
    ck_assert(lr_f32_from_f16(lr_f16_from_f32(65520.0f)) == INFINITY);
}
END_TEST

int main(void) {
    Suite *s = suite_create("public_ops");
    TCase *tc = tcase_create("reference_ops_and_budgets");
    tcase_add_test(tc, test_budgets);
    tcase_add_loop_test(tc, test_correct_passes, 0, 3);
    tcase_add_loop_test(tc, test_planted_fails, 0, 3);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
