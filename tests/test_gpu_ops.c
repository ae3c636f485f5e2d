/* test_gpu_ops.c: every registered CUDA kernel variant against the CPU reference op it
 * mirrors (ref/cpu/ref_ops.h), op by op, in the spirit of llama.cpp's test-backend-ops:
 * for each variant of each family, each dtype (F32, F16, BF16) and a sweep of shapes,
 * fresh random inputs (rounded to the dtype on the host, so the references see exactly
 * what the GPU reads), outputs poisoned beforehand (unwritten elements read as NaN), guard
 * bytes around every device buffer (out-of-bounds writes), NaN/Inf checks. Each output is
 * judged as the model-level verdict judges a stage (judge(), the budgets below):
 *   - against the float64 reference: relative L2, the worst token's relative L2 and every
 *     element (lr_compare_stage with op-level lr_criteria);
 *   - at F16 and BF16, also against the emulated reference at the same precision (the
 *     float32 op of --backend cpu --precision bf16|fp16 on the same inputs, rounded where
 *     the CUDA path rounds), in ulps (lr_same_compare, lr_same_precision_budget).
 * Kernels with planted bugs (tests/gpu_planted.cu, compiled into this test only) run
 * through the same sweeps, and the test asserts that the sweep fails them: the RMSNorm
 * that leaves the weight out on each row's last element on every case at every dtype.
 * The verdicts themselves are checked on the CPU, device or not (test_verdicts_cpu):
 * kernels simulated in their own float32 order pass, their planted versions fail.
 * Also: the registry's shape, unknown variants and bad arguments (LR_E_INVAL). Skips (77)
 * without CUDA or without a device; the registry, argument and verdict checks need no
 * device and run first either way. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>

#ifndef LR_HAVE_CUDA
int main(void) {
    puts("test_gpu_ops: built without CUDA; skipping");
    return 77;
}
#else

#include "gpu_ops.h"
#include "gpu_planted.h"
#include "ref_ops.h"
#include "rounding.h"

#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- Budgets ---------------------------------------------------------------------------
 * The one place this suite's tolerances live.
 *
 * Against the float64 reference, the relative L2 error of an op's output, by the dtype
 * the kernel reads and writes, as unit roundoff u (2^-p for p significand bits) times a
 * factor. Inputs are exactly representable in the dtype and the kernels compute in
 * float32, so the error is the final rounding to the dtype (relative at most u per
 * element, about u/sqrt(3) in RMS) plus float32 arithmetic (u32 = 2^-24 per operation,
 * growing like sqrt(K) over a reduction of K terms).
 *   F16, BF16: the final rounding dominates; 8 u leaves a margin of about 14x over the
 *              expected u/sqrt(3) (F16 3.9e-3, BF16 3.1e-2).
 *   F32:       the output rounding is u32 itself, so the reductions dominate: 128 u
 *              (7.6e-6) covers sqrt(K) u32 for K up to 16384 terms (the widest row
 *              or key range here) with room for expf and the 1-ulp sincos.
 * The worst token and every element (op_criteria) are held as the model-level verdict
 * holds a stage (lr_stage_criteria, ref/check/compare.c; docs/tolerances.md): the same
 * multiples of the relative-L2 budget, read from that table, applied to the budget above.
 * The argument is the same op by op: the budget bounds an RMS, a token's relative L2
 * strays from the tensor's where some tokens carry more error (attention rows over many
 * keys against rows over one), and the largest of N element errors of RMS s is about
 * sqrt(2 ln N) s, 5.5 for the 3.4e6 elements of the largest case here, under the table's
 * 10. For a single op this is loose: a correct kernel's element error is one rounding,
 * u |b|, plus float32 arithmetic, a tenth or less of the allowance at F16 and BF16. So
 * against float64 a bf16 kernel can only be seen to be wrong by more than bf16's own
 * rounding noise; what is finer than that is the next yardstick's.
 *
 * At F16 and BF16, against the emulated reference (the same op in float32 arithmetic on
 * the same inputs, rounded where the CUDA path rounds: ref/core/rounding.h), what is left
 * is the order of float32 operations, held in ulps of the dtype by the model-level
 * same-precision verdict's budget, lr_same_precision_budget (ref/check/same.c;
 * docs/detection.md) for the op's own reduction length: one ulp per element at bf16
 * (one element of a case up to two), four at fp16, and a relative L2 of a tenth of an
 * ulp or what sqrt(K) 2^-24 of accumulation order flips, whichever is larger.
 *
 * Copies (embedding, the cache write, conversions) must be exact and are checked so, as
 * are the float32 residual stream and sums whose float32 arithmetic is one operation per
 * element on both sides. See docs/adding-a-kernel.md. */
static const struct {
    lr_dtype dt;
    double unit_roundoff, factor;
} budgets[] = {
    {LR_F32, 0x1p-24, 128},
    {LR_F16, 0x1p-11, 8},
    {LR_BF16, 0x1p-8, 8},
};

static double budget(lr_dtype dt) {
    for (size_t i = 0; i < sizeof budgets / sizeof budgets[0]; i++)
        if (budgets[i].dt == dt) return budgets[i].unit_roundoff * budgets[i].factor;
    ck_abort_msg("no budget for dtype %s", lr_dtype_name(dt));
    return 0;
}

/* The criteria of an op whose output is judged like a stage of this kind: the model's
 * per-token and per-element factors (lr_stage_criteria over its own relative-L2 budget)
 * times the op budget. */
static lr_criteria op_criteria(lr_stage_kind kind, lr_dtype dt) {
    lr_criteria s = lr_stage_criteria(kind, dt, -1);
    ck_assert_msg(s.rel_l2 > 0 && isfinite(s.token) && isfinite(s.atol) && isfinite(s.rtol),
                  "no stage criteria for %s at %s", lr_stage_kind_name(kind), lr_dtype_name(dt));
    double b = budget(dt), k = b / s.rel_l2;
    return (lr_criteria){.rel_l2 = b, .token = s.token * k, .atol = s.atol * k, .rtol = s.rtol * k};
}

/* The dtypes with a same-precision yardstick. */
static bool lowp(lr_dtype dt) { return dt == LR_F16 || dt == LR_BF16; }

/* The same-precision budget of an op whose longest float32 reduction has `reduction`
 * terms (1: none): the model-level verdict's (none is used at F32). */
static lr_same_budget same_budget(lr_dtype dt, int64_t reduction) {
    return lr_same_precision_budget(lowp(dt) ? dt : LR_BF16, reduction);
}

/* The same for attention (lr_same_attention_budget): its reductions are the head (Q K^T)
 * and the keys (P V), and a kernel that rounds P to the dtype before P V
 * (lr_attention_rounds_p) rounds twice, so it gets P's flips too, with X the case's
 * largest |x| of P = 2^x. Measured on the CPU with a simulated kernel (sim_attention:
 * online softmax, tiles of 64 keys, dot products in another order) against the emulated
 * reference, over single sequences of 1 to 70 new tokens after 0 to 300 cached, the head
 * counts and sizes here, and 10 seeds: with one rounding's budget alone, fp16 cases
 * reached 1.11 of the relative L2 and a bf16 case had 18 elements 2 ulps off; with P's
 * term, at most 0.64 and no element over. test_verdicts_cpu checks it on this sweep's
 * own cases. */
static lr_same_budget attention_same_budget(lr_dtype dt, int64_t hd, int64_t max_keys, bool rounds_p, double X) {
    return lr_same_attention_budget(lowp(dt) ? dt : LR_BF16, hd, max_keys, rounds_p, X);
}

static const lr_dtype dtypes[] = {LR_F32, LR_F16, LR_BF16};
#define N_DTYPES (int)(sizeof dtypes / sizeof dtypes[0])

/* ---- Seed, case label, assertions ----------------------------------------------------- */

static uint64_t g_seed;       /* LR_TEST_SEED, or from the clock */
static uint64_t g_rng;        /* per test, from g_seed and the test's name and index */
static char g_case[256];      /* what is being checked, for every failure message */
static cudaStream_t g_stream; /* ops run on a stream of their own, not the default one */
static lr_gpu_attn_ws *g_ws;  /* attention's workspace for g_stream */

/* A planted target (g_planted) is run to be failed: judge() records a failing verdict
 * instead of asserting, case_end() counts the cases that failed. */
static bool g_planted;
static int g_case_failed;     /* failing verdicts in the current case */
static char g_case_why[1024]; /* the first of them */
static int g_cases, g_caught; /* planted: cases ended, and those with a failing verdict */
static char g_missed[256];    /* planted: the first case that passed */

/* Check records every passing assertion, so loops look for the first bad element and
 * assert once. The format string must be followed by FAIL_PREFIX. */
#define CHECK(cond, ...) ck_assert_msg(cond, "[%s, seed %llu] " __VA_ARGS__)
#define FAIL_PREFIX g_case, (unsigned long long)g_seed
#define CK_CUDA(call)                                                                                        \
    do {                                                                                                     \
        cudaError_t e_ = (call);                                                                             \
        CHECK(e_ == cudaSuccess, "%s: %s", FAIL_PREFIX, #call, cudaGetErrorString(e_));                      \
    } while (0)
/* An op: LR_OK, then the stream drains without error (an illegal address shows here). */
#define RUN(call)                                                                                            \
    do {                                                                                                     \
        int rc_ = (call);                                                                                    \
        CHECK(rc_ == LR_OK, "%s returned %s: %s", FAIL_PREFIX, #call, lr_status_name(rc_), lr_last_error()); \
        CK_CUDA(cudaStreamSynchronize(g_stream));                                                            \
    } while (0)
#define EXPECT_STATUS(call, want)                                                                            \
    do {                                                                                                     \
        int rc_ = (call);                                                                                    \
        ck_assert_msg(rc_ == (want), "%s returned %s, expected %s (%s)", #call, lr_status_name(rc_),         \
                      lr_status_name(want), lr_last_error());                                                \
    } while (0)

static void set_case(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Starts a case: what failure messages name, and (planted) what a verdict counts against. */
static void set_case(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_case, sizeof g_case, fmt, ap);
    va_end(ap);
    g_case_failed = 0;
    g_case_why[0] = '\0';
}

/* Ends a case: for a planted target, whether the sweep saw the bug in it. */
static void case_end(void) {
    if (!g_planted) return;
    g_cases++;
    if (g_case_failed) {
        g_caught++;
        printf("  caught   %s: %s\n", g_case, g_case_why);
    } else {
        printf("  MISSED   %s\n", g_case);
        if (!g_missed[0]) snprintf(g_missed, sizeof g_missed, "%s", g_case);
    }
}

/* A verdict on one output of the current case: asserted for a real variant, recorded
 * for a planted one. */
static void verdict(bool pass, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void verdict(bool pass, const char *fmt, ...) {
    if (pass) return;
    char msg[sizeof g_case_why];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!g_planted) ck_abort_msg("[%s, seed %llu] %s", FAIL_PREFIX, msg);
    if (!g_case_failed++) snprintf(g_case_why, sizeof g_case_why, "%s", msg);
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A test's stream of numbers depends only on the seed, its name and its loop index, so
 * LR_TEST_SEED replays any one test alone (CK_RUN_CASE) or within the suite. */
static void rng_start(const char *test, int i) {
    uint64_t h = g_seed ^ (uint64_t)i * 0x2545f4914f6cdd1dull;
    for (const char *p = test; *p; p++)
        h = (h ^ (uint64_t)(unsigned char)*p) * 0x100000001b3ull;
    g_rng = h;
}

static double uniform(double lo, double hi) {
    return lo + (hi - lo) * (double)(splitmix64(&g_rng) >> 11) * 0x1p-53;
}

static int64_t irand(int64_t lo, int64_t hi) { /* [lo, hi) */
    return lo + (int64_t)(splitmix64(&g_rng) % (uint64_t)(hi - lo));
}

/* ---- Host values in a dtype ------------------------------------------------------------
 * Rounding and encoding here are the suite's own (round to nearest even through frexp
 * and nearbyint), independent of both the library and CUDA's conversions. Values stay
 * far from overflow. */

static double round_to(lr_dtype dt, double x) {
    int p, emin;
    switch (dt) {
    case LR_F64:
        return x;
    case LR_F32:
        p = 24, emin = -126;
        break;
    case LR_F16:
        p = 11, emin = -14;
        break;
    case LR_BF16:
        p = 8, emin = -126;
        break;
    default:
        ck_abort_msg("round_to: dtype %s", lr_dtype_name(dt));
        return 0;
    }
    if (x == 0 || !isfinite(x)) return x;
    int e;
    frexp(x, &e); /* |x| in [2^(e-1), 2^e) */
    int E = e - 1 < emin ? emin : e - 1;
    return ldexp(nearbyint(ldexp(x, p - 1 - E)), E - (p - 1));
}

/* x must be representable in dt (round_to first). */
static void encode(lr_dtype dt, void *raw, int64_t i, double x) {
    switch (dt) {
    case LR_F64:
        ((double *)raw)[i] = x;
        break;
    case LR_F32:
        ((float *)raw)[i] = (float)x;
        break;
    case LR_BF16: {
        float f = (float)x;
        uint32_t u;
        memcpy(&u, &f, sizeof u);
        ((uint16_t *)raw)[i] = (uint16_t)(u >> 16);
        break;
    }
    case LR_F16: {
        uint16_t sign = signbit(x) ? 0x8000u : 0, bits;
        double a = fabs(x);
        int e;
        frexp(a, &e);
        if (a == 0)
            bits = 0;
        else if (e - 1 < -14)
            bits = (uint16_t)(a * 0x1p24); /* subnormal: a multiple of 2^-24 */
        else
            bits = (uint16_t)(((e - 1 + 15) << 10) | (int)((ldexp(a, 1 - e) - 1) * 1024));
        ((uint16_t *)raw)[i] = sign | bits;
        break;
    }
    default:
        ck_abort_msg("encode: dtype %s", lr_dtype_name(dt));
    }
}

/* A host tensor: exact values (what the reference reads) and the same in dt (uploaded). */
typedef struct {
    lr_dtype dt;
    int64_t n;
    double *v;
    void *raw;
} htensor;

static htensor h_new(lr_dtype dt, int64_t n) {
    htensor t = {dt, n, calloc((size_t)(n > 0 ? n : 1), sizeof(double)),
                 calloc((size_t)(n > 0 ? n : 1), lr_dtype_size(dt))};
    ck_assert(t.v && t.raw);
    return t;
}

static void h_set(htensor *t, int64_t i, double x) {
    t->v[i] = round_to(t->dt, x);
    encode(t->dt, t->raw, i, t->v[i]);
}

static htensor h_random(lr_dtype dt, int64_t n, double lo, double hi) {
    htensor t = h_new(dt, n);
    for (int64_t i = 0; i < n; i++)
        h_set(&t, i, uniform(lo, hi));
    return t;
}

static size_t h_bytes(const htensor *t) { return (size_t)t->n * lr_dtype_size(t->dt); }

static void h_free(htensor *t) {
    free(t->v);
    free(t->raw);
}

static double *dcopy(const double *v, int64_t n) {
    double *c = malloc((size_t)(n > 0 ? n : 1) * sizeof *c);
    ck_assert_ptr_nonnull(c);
    memcpy(c, v, (size_t)n * sizeof *c);
    return c;
}

/* ---- Device buffers with guards --------------------------------------------------------
 * guard | data | guard. Guards hold SENTINEL; data starts as a copy of the input or, for
 * outputs, POISON (0xff bytes are NaN in F32, F16 and BF16, so an element the kernel
 * never writes fails the NaN check). */
#define GUARD 4096
#define SENTINEL 0xa5
#define POISON 0xff

typedef struct {
    unsigned char *base;
    size_t bytes;
} dbuf;

static void *dp(const dbuf *b) { return b->base + GUARD; }

static dbuf d_new(size_t bytes, const void *init) {
    dbuf b = {NULL, bytes};
    CK_CUDA(cudaMalloc((void **)&b.base, bytes + 2 * GUARD));
    CK_CUDA(cudaMemset(b.base, SENTINEL, GUARD));
    CK_CUDA(cudaMemset(b.base + GUARD + bytes, SENTINEL, GUARD));
    if (init)
        CK_CUDA(cudaMemcpy(b.base + GUARD, init, bytes, cudaMemcpyHostToDevice));
    else
        CK_CUDA(cudaMemset(b.base + GUARD, POISON, bytes));
    return b;
}

static dbuf d_upload(const htensor *t) { return d_new(h_bytes(t), t->raw); }

/* The data, after checking that both guards are intact; the caller frees it. */
static void *d_fetch(const dbuf *b, const char *what) {
    unsigned char *h = malloc(b->bytes + 2 * GUARD);
    ck_assert_ptr_nonnull(h);
    CK_CUDA(cudaMemcpy(h, b->base, b->bytes + 2 * GUARD, cudaMemcpyDeviceToHost));
    size_t before = 0, after = 0; /* distance of the farthest bad byte */
    for (size_t i = 0; i < GUARD; i++) {
        if (h[i] != SENTINEL && !before) before = GUARD - i;
        if (h[GUARD + b->bytes + i] != SENTINEL) after = i + 1;
    }
    CHECK(!before, "%s: written up to %zu bytes before its start", FAIL_PREFIX, what, before);
    CHECK(!after, "%s: written up to %zu bytes past its end", FAIL_PREFIX, what, after);
    memmove(h, h + GUARD, b->bytes);
    return h;
}

/* Frees b after checking its guards and, for an input (orig not NULL), that it is
 * unchanged. */
static void d_free(dbuf *b, const char *what, const void *orig) {
    void *h = d_fetch(b, what);
    if (orig) CHECK(memcmp(h, orig, b->bytes) == 0, "%s: an input was modified", FAIL_PREFIX, what);
    free(h);
    CK_CUDA(cudaFree(b->base));
    b->base = NULL;
}

/* ---- Comparison ------------------------------------------------------------------------ */

static int64_t first_nonfinite(const lr_tensor *t) {
    for (int64_t i = 0; i < t->shape[0]; i++)
        if (!isfinite(lr_tensor_get(t, i))) return i;
    return -1;
}

/* Exact values (representable in float32: inputs are rounded to the dtype, F32 at the
 * widest) as floats, for the emulated reference. */
static float *fcopy(const double *v, int64_t n) {
    float *c = malloc((size_t)(n > 0 ? n : 1) * sizeof *c);
    ck_assert_ptr_nonnull(c);
    for (int64_t i = 0; i < n; i++)
        c[i] = (float)v[i];
    return c;
}

static double *dcopy_f(const float *v, int64_t n) {
    double *c = malloc((size_t)(n > 0 ? n : 1) * sizeof *c);
    ck_assert_ptr_nonnull(c);
    for (int64_t i = 0; i < n; i++)
        c[i] = v[i];
    return c;
}

/* An emulated output in place: the twin's float32 result rounded once to the dtype, as
 * the CUDA path stores it (nothing at F32). */
static void emulate_store(float *x, int64_t n, lr_dtype dt) { lr_round_f32_n(x, (size_t)n, dt); }

/* Judges raw (T, W; dt) from the GPU as the model-level verdict judges a stage of this
 * kind: finite; against ref (T, W; float64) by relative L2, the worst token and every
 * element (op_criteria); and at F16 and BF16 against twin (T, W; float32 values already
 * in the dtype: the emulated reference) in ulps, within sb (same_budget()). A NaN is
 * asserted whatever the target; the criteria are verdicts (see verdict()). */
static void judge(const char *what, const void *raw, lr_dtype dt, int64_t T, int64_t W, const double *ref,
                  lr_stage_kind kind, const float *twin, lr_same_budget sb) {
    lr_tensor a = {.dtype = dt, .ndim = 2, .shape = {T, W}, .data = raw};
    lr_tensor b = {.dtype = LR_F64, .ndim = 2, .shape = {T, W}, .data = ref};
    lr_criteria c = op_criteria(kind, dt);
    lr_metrics m;
    ck_assert_int_eq(lr_compare_stage(&a, &b, &c, &m), LR_OK);
    CHECK(m.nan_b == 0 && m.inf_b == 0, "%s: the reference has NaN/Inf", FAIL_PREFIX, what);
    CHECK(m.nan_a == 0 && m.inf_a == 0,
          "%s: %lld NaN and %lld Inf among %lld outputs, the first at %lld (NaN: never written?)",
          FAIL_PREFIX, what, (long long)m.nan_a, (long long)m.inf_a, (long long)(T * W),
          (long long)first_nonfinite(&a));
    unsigned f = lr_metrics_failures(&m, c.rel_l2);
    int64_t e = m.elem_index >= 0 ? m.elem_index : 0, tw = m.token_rel_l2_row;
    verdict(
        f == 0,
        "%s against float64:%s%s%s relative L2 %.3g (budget %.3g); worst token %lld at %.3g (budget %.3g); "
        "%lld elements outside %.3g rms + %.3g |ref|, the worst [%lld, %lld] %.9g against %.9g (%.3g of "
        "its allowance)",
        what, f & LR_FAILS_REL_L2 ? " [relative L2]" : "", f & LR_FAILS_TOKEN ? " [token]" : "",
        f & LR_FAILS_ELEMENT ? " [element]" : "", m.rel_l2, c.rel_l2, (long long)tw, m.token_rel_l2, c.token,
        (long long)m.elem_fail, c.atol, c.rtol, (long long)(e / W), (long long)(e % W), lr_tensor_get(&a, e),
        ref[e], m.elem_ratio);
    if (!lowp(dt)) return;
    if (!twin) { /* none in ref/cpu/ops: said, not pretended */
        printf("test_gpu_ops: %s: %s has no emulated twin; judged against float64 only\n", g_case, what);
        return;
    }
    lr_tensor r = {.dtype = LR_F32, .ndim = 2, .shape = {T, W}, .data = twin};
    lr_same_metrics sm;
    ck_assert_int_eq(lr_same_compare(&a, &r, dt, sb, &sm), LR_OK);
    int64_t wt = sm.worst_token >= 0 ? sm.worst_token : 0, wf = sm.worst_feature >= 0 ? sm.worst_feature : 0;
    verdict(
        sm.pass,
        "%s against the emulated %s reference: relative L2 %.3g (budget %.3g); %lld elements over %g ulps "
        "(%lld allowed, none over %g), the worst [%lld, %lld] %.2f ulps: %.9g against %.9g; %lld non-finite",
        what, lr_dtype_name(dt), sm.rel_l2, sm.budget, (long long)sm.over, sb.ulps, (long long)sb.spare,
        sb.cap, (long long)wt, (long long)wf, sm.max_ulps, lr_tensor_get(&a, wt * W + wf),
        (double)twin[wt * W + wf], (long long)sm.nonfinite);
}

/* The same, for outputs that must equal the reference exactly (copies, conversions). */
static void expect_exact(const char *what, const void *raw, lr_dtype dt, const double *ref, int64_t n) {
    lr_tensor a = {.dtype = dt, .ndim = 1, .shape = {n}, .data = raw};
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        double x = lr_tensor_get(&a, i);
        if (x == ref[i] && signbit(x) == signbit(ref[i])) continue;
        if (first < 0) first = i;
        bad++;
    }
    CHECK(bad == 0, "%s: %lld of %lld elements differ, the first at %lld: %.9g, expected exactly %.9g",
          FAIL_PREFIX, what, (long long)bad, (long long)n, (long long)first,
          first >= 0 ? lr_tensor_get(&a, first) : 0.0, first >= 0 ? ref[first] : 0.0);
}

/* Columns [c0, c0 + w) of rows (T, ld) of elements of size es, packed. */
static void *take_cols(const void *src, size_t es, int64_t T, int64_t ld, int64_t c0, int64_t w) {
    unsigned char *out = malloc((size_t)(T * w > 0 ? T * w : 1) * es);
    ck_assert_ptr_nonnull(out);
    for (int64_t t = 0; t < T; t++)
        memcpy(out + (size_t)(t * w) * es, (const unsigned char *)src + (size_t)(t * ld + c0) * es,
               (size_t)w * es);
    return out;
}

static double *take_cols_d(const double *src, int64_t T, int64_t ld, int64_t c0, int64_t w) {
    return take_cols(src, sizeof(double), T, ld, c0, w);
}

/* Random magnitudes in [lo, hi], each of either sign. */
static htensor h_random_signed(lr_dtype dt, int64_t n, double lo, double hi) {
    htensor t = h_new(dt, n);
    for (int64_t i = 0; i < n; i++)
        h_set(&t, i, (splitmix64(&g_rng) & 1 ? -1 : 1) * uniform(lo, hi));
    return t;
}

/* ---- What a sweep runs -----------------------------------------------------------------
 * A registered variant, through the library's entry points, or a planted one
 * (gpu_planted.h) through the test's own, which have the same signatures. The families
 * that have a planted variant call through these pointers; the others call the library. */
typedef struct {
    const char *family, *name;
    int (*rms_norm)(const char *variant, void *y, const void *x, const void *w, int64_t T, int64_t H,
                    float eps, lr_dtype dt, cudaStream_t s);
    int (*fused_add_rms_norm)(const char *variant, void *y, float *residual, const void *x, const void *w,
                              int64_t T, int64_t H, float eps, lr_dtype dt, cudaStream_t s);
    int (*rotary)(const char *variant, void *x, int64_t ld, int64_t T, int64_t nheads, int64_t hd,
                  const int64_t *positions, const double *inv_freq, lr_dtype dt, cudaStream_t s);
} target;

static target registered(const lr_gpu_variant *v) {
    return (target){v->family, v->name, lr_gpu_rms_norm, lr_gpu_fused_add_rms_norm, lr_gpu_rotary};
}

/* ---- embedding ------------------------------------------------------------------------- */

static void sweep_embedding(const target *v, lr_dtype dt) {
    static const struct {
        int64_t T, H, start, shard;
    } shapes[] = {{1, 48, 0, 100}, {7, 576, 64, 64}, {33, 130, 1000, 50}, {64, 4096, 128, 256}};
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        int64_t T = shapes[c].T, H = shapes[c].H, start = shapes[c].start, shard = shapes[c].shard;
        set_case("embedding/%s %s T %lld H %lld shard [%lld, +%lld)", v->name, lr_dtype_name(dt),
                 (long long)T, (long long)H, (long long)start, (long long)shard);
        htensor w = h_random(dt, shard * H, -1, 1);
        int64_t *ids = malloc((size_t)T * sizeof *ids);
        /* About a third of the tokens fall outside the shard, on either side. */
        for (int64_t t = 0; t < T; t++)
            ids[t] = irand(start - shard / 2 - 1, start + shard + shard / 2);
        ids[0] = start + shard - 1; /* the shard's last row */
        double *ref = malloc((size_t)(T * H) * sizeof *ref);
        lr_ref_vocab_parallel_embedding_f64(ref, ids, T, w.v, start, shard, H);

        dbuf d_ids = d_new((size_t)T * sizeof *ids, ids), d_w = d_upload(&w);
        dbuf d_out = d_new((size_t)(T * H) * lr_dtype_size(dt), NULL);
        RUN(lr_gpu_embedding(v->name, dp(&d_out), dp(&d_ids), T, dp(&d_w), start, shard, H, dt, g_stream));
        void *out = d_fetch(&d_out, "out");
        expect_exact("out", out, dt, ref, T * H);
        case_end();
        free(out);
        d_free(&d_out, "out", NULL);
        d_free(&d_ids, "ids", ids);
        d_free(&d_w, "w", w.raw);
        h_free(&w);
        free(ids);
        free(ref);
    }
}

/* ---- rmsnorm --------------------------------------------------------------------------- */

/* 70000 rows pass the kernels' grid cap (65535), so the row loop comes around; rows of
 * 4096 and more, where one element is a small share of the row. */
static const struct {
    int64_t T, H;
} rms_shapes[] = {{1, 48}, {5, 576}, {3, 1000}, {64, 4096}, {9, 8192}, {2, 16384}, {70000, 48}};
#define N_RMS_SHAPES (sizeof rms_shapes / sizeof rms_shapes[0])

/* One case: its inputs, and the float64 and emulated outputs of rms_norm or (fused)
 * fused_add_rms_norm. */
typedef struct {
    int64_t T, H, n;
    double eps;
    htensor x, w, r;   /* x, w in the dtype; r the float32 residual stream */
    double *ref, *res; /* float64: y, and (fused) the residual after */
    float *emul;       /* the emulated reference's y, in the dtype's values */
    double *res_emul;  /* (fused) its float32 residual after */
} rms_case;

/* Inputs an element-level bug cannot hide in: magnitudes bounded away from zero (x in
 * [0.25, 1.5]; the float32 residual in [2, 3], so residual + x is at least 0.5) and
 * weights 1 +- [0.1, 0.3], either sign, so that leaving any one element's weight out
 * moves that element by at least a tenth (RMSNorm's rounding never cancels: the values'
 * size does not matter to a correct kernel). */
static rms_case rms_case_new(lr_dtype dt, size_t c, bool fused) {
    rms_case k = {.T = rms_shapes[c].T, .H = rms_shapes[c].H, .eps = c % 2 ? 1e-6 : 1e-5};
    int64_t T = k.T, H = k.H, n = k.n = T * H;
    k.x = h_random_signed(dt, n, 0.25, 1.5);
    k.w = h_new(dt, H);
    for (int64_t i = 0; i < H; i++)
        h_set(&k.w, i, 1 + (splitmix64(&g_rng) & 1 ? -1 : 1) * uniform(0.1, 0.3));
    k.r = h_random_signed(LR_F32, n, 2, 3);
    k.ref = malloc((size_t)n * sizeof *k.ref);
    ck_assert_ptr_nonnull(k.ref);
    /* The emulated reference (--backend cpu --precision bf16|fp16): float32 arithmetic on
     * the dtype's values (ref/cpu/ops/rmsnorm.c), y rounded once. */
    float *xf = fcopy(k.x.v, n), *wf = fcopy(k.w.v, H);
    k.emul = malloc((size_t)n * sizeof *k.emul);
    ck_assert_ptr_nonnull(k.emul);
    if (fused) {
        k.res = dcopy(k.r.v, n);
        float *resf = fcopy(k.r.v, n);
        lr_ref_fused_add_rms_norm_f64(k.ref, k.res, k.x.v, k.w.v, T, H, k.eps);
        lr_ref_fused_add_rms_norm_f32(k.emul, resf, xf, wf, T, H, k.eps);
        k.res_emul = dcopy_f(resf, n);
        free(resf);
    } else {
        lr_ref_rms_norm_f64(k.ref, k.x.v, k.w.v, T, H, k.eps);
        lr_ref_rms_norm_f32(k.emul, xf, wf, T, H, k.eps);
    }
    emulate_store(k.emul, n, dt);
    free(xf), free(wf);
    return k;
}

static void rms_case_free(rms_case *k) {
    h_free(&k->x), h_free(&k->w), h_free(&k->r);
    free(k->ref), free(k->res), free(k->emul), free(k->res_emul);
}

/* Judges one case's outputs: y (dt) and, fused, the float32 residual rout. */
static void rms_case_judge(const rms_case *k, lr_dtype dt, const void *y, const void *rout) {
    judge("y", y, dt, k->T, k->H, k->ref, LR_STAGE_NORM, k->emul, same_budget(dt, k->H));
    if (!rout) return;
    judge("residual", rout, LR_F32, k->T, k->H, k->res, LR_STAGE_LAYER, NULL, same_budget(dt, 1));
    /* residual + x: one float32 addition on both sides */
    expect_exact("residual (against the emulated reference)", rout, LR_F32, k->res_emul, k->n);
}

static void sweep_rmsnorm(const target *v, lr_dtype dt) {
    for (size_t c = 0; c < N_RMS_SHAPES; c++) {
        for (int fused = 0; fused <= 1; fused++) {
            rms_case k = rms_case_new(dt, c, fused);
            set_case("%s/%s %s T %lld H %lld", fused ? "fused_add_rms_norm" : "rms_norm", v->name,
                     lr_dtype_name(dt), (long long)k.T, (long long)k.H);
            dbuf d_x = d_upload(&k.x), d_w = d_upload(&k.w), d_r = {NULL, 0};
            dbuf d_y = d_new((size_t)k.n * lr_dtype_size(dt), NULL);
            if (fused) {
                d_r = d_upload(&k.r);
                RUN(v->fused_add_rms_norm(v->name, dp(&d_y), dp(&d_r), dp(&d_x), dp(&d_w), k.T, k.H,
                                          (float)k.eps, dt, g_stream));
            } else {
                RUN(v->rms_norm(v->name, dp(&d_y), dp(&d_x), dp(&d_w), k.T, k.H, (float)k.eps, dt, g_stream));
            }
            void *y = d_fetch(&d_y, "y"), *rout = fused ? d_fetch(&d_r, "residual") : NULL;
            rms_case_judge(&k, dt, y, rout);
            case_end();
            free(y), free(rout);
            d_free(&d_y, "y", NULL);
            if (fused) d_free(&d_r, "residual", NULL);
            d_free(&d_x, "x", k.x.raw);
            d_free(&d_w, "w", k.w.raw);
            rms_case_free(&k);
        }
    }
}

/* ---- rotary ---------------------------------------------------------------------------- */

/* Rows as the backend has them: q heads (rotated), then k and v heads; q and k are
 * rotated in one call when they are adjacent, so nheads spans both. */
static const struct {
    int64_t T, nheads, hd, extra; /* extra: unrotated columns after the heads */
} rot_shapes[] = {{1, 4, 8, 16}, {7, 6, 16, 32}, {40, 12, 64, 128}, {3, 5, 128, 128}, {2, 3, 256, 256}};
#define N_ROT_SHAPES (sizeof rot_shapes / sizeof rot_shapes[0])

/* One case: x (T, ldx) in the dtype with nheads heads of hd at the start of each row
 * (w columns), positions, inverse frequencies, and the rotated heads (T, w) of the
 * float64 and the emulated reference. */
typedef struct {
    int64_t T, nheads, hd, w, ldx, half;
    htensor x;
    int64_t *pos;
    double *inv_freq;
    double *ref; /* (T, w) */
    float *emul; /* (T, w), the dtype's values */
} rot_case;

static rot_case rot_case_new(lr_dtype dt, size_t c) {
    rot_case k = {.T = rot_shapes[c].T, .nheads = rot_shapes[c].nheads, .hd = rot_shapes[c].hd};
    int64_t T = k.T, hd = k.hd;
    k.w = k.nheads * hd, k.ldx = k.w + rot_shapes[c].extra, k.half = hd / 2;
    k.x = h_random(dt, T * k.ldx, -2, 2);
    k.pos = malloc((size_t)T * sizeof *k.pos);
    k.inv_freq = malloc((size_t)k.half * sizeof *k.inv_freq);
    double *cs = malloc((size_t)hd * sizeof *cs);
    float *csf = malloc((size_t)hd * sizeof *csf);
    ck_assert(k.pos && k.inv_freq && cs && csf);
    /* Positions up to 2^20, where a float32 angle is off by hundredths of a radian. */
    for (int64_t t = 0; t < T; t++)
        k.pos[t] = t == 0 ? 0 : t == 1 ? (1 << 20) - 1 : irand(0, 8192);
    for (int64_t i = 0; i < k.half; i++)
        k.inv_freq[i] = pow(500000.0, -2.0 * (double)i / (double)hd);
    double *ref = dcopy(k.x.v, T * k.ldx);
    lr_ref_rotary_embedding_f64(ref, k.ldx, T, k.nheads, hd, k.pos, k.inv_freq, cs);
    k.ref = take_cols_d(ref, T, k.ldx, 0, k.w);
    /* The emulated reference: cos and sin of the float64 angle rounded to float32, the
     * rotation in float32, rounded once (ref/cpu/ops/rotary.c). */
    float *emul = fcopy(k.x.v, T * k.ldx);
    lr_ref_rotary_embedding_f32(emul, k.ldx, T, k.nheads, hd, k.pos, k.inv_freq, csf);
    emulate_store(emul, T * k.ldx, dt);
    k.emul = take_cols(emul, sizeof *emul, T, k.ldx, 0, k.w);
    free(cs), free(csf), free(ref), free(emul);
    return k;
}

static void rot_case_free(rot_case *k) {
    h_free(&k->x);
    free(k->pos), free(k->inv_freq), free(k->ref), free(k->emul);
}

/* Judges x after the op (T, ldx; dt): the rotated heads, and the columns after them
 * unchanged. */
static void rot_case_judge(const rot_case *k, lr_dtype dt, const void *out) {
    size_t es = lr_dtype_size(dt);
    void *rot = take_cols(out, es, k->T, k->ldx, 0, k->w);
    /* No stage holds q and k after RoPE; the model judges them at o_proj.input, an
     * attention stage. No reduction: each output is two products and a sum. */
    judge("rotated heads", rot, dt, k->T, k->w, k->ref, LR_STAGE_ATTENTION, k->emul, same_budget(dt, 1));
    void *rest = take_cols(out, es, k->T, k->ldx, k->w, k->ldx - k->w),
         *rest0 = take_cols(k->x.raw, es, k->T, k->ldx, k->w, k->ldx - k->w);
    CHECK(memcmp(rest, rest0, (size_t)(k->T * (k->ldx - k->w)) * es) == 0,
          "columns after the rotated heads changed", FAIL_PREFIX);
    free(rot), free(rest), free(rest0);
}

static void sweep_rotary(const target *v, lr_dtype dt) {
    for (size_t c = 0; c < N_ROT_SHAPES; c++) {
        rot_case k = rot_case_new(dt, c);
        set_case("rotary/%s %s T %lld nheads %lld hd %lld ld %lld", v->name, lr_dtype_name(dt),
                 (long long)k.T, (long long)k.nheads, (long long)k.hd, (long long)k.ldx);
        dbuf d_x = d_upload(&k.x), d_pos = d_new((size_t)k.T * sizeof *k.pos, k.pos);
        dbuf d_f = d_new((size_t)k.half * sizeof *k.inv_freq, k.inv_freq);
        RUN(v->rotary(v->name, dp(&d_x), k.ldx, k.T, k.nheads, k.hd, dp(&d_pos), dp(&d_f), dt, g_stream));
        void *out = d_fetch(&d_x, "x");
        rot_case_judge(&k, dt, out);
        case_end();
        free(out);
        d_free(&d_x, "x", NULL);
        d_free(&d_pos, "positions", k.pos);
        d_free(&d_f, "inv_freq", k.inv_freq);
        rot_case_free(&k);
    }
}

/* ---- activation ------------------------------------------------------------------------ */

static void sweep_activation(const target *v, lr_dtype dt) {
    static const struct { int64_t T, NI; } shapes[] = {{1, 48}, {3, 576}, {37, 1000}, {8, 14336}};
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        int64_t T = shapes[c].T, NI = shapes[c].NI, n = T * NI;
        htensor gu = h_new(dt, T * 2 * NI);
        /* Gates far into both tails of silu; up around 1. */
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < 2 * NI; i++)
                h_set(&gu, t * 2 * NI + i, i < NI ? uniform(-12, 12) : uniform(-2, 2));
        dbuf d_gu = d_upload(&gu);
        double *ref = malloc((size_t)n * sizeof *ref);
        /* The emulated reference: g / (1 + expf(-g)) (* up) in float32, rounded once
         * (ref/cpu/ops/activation.c). */
        float *guf = fcopy(gu.v, T * 2 * NI), *emul = malloc((size_t)n * sizeof *emul);
        ck_assert_ptr_nonnull(emul);
        for (int mul = 1; mul >= 0; mul--) {
            set_case("%s/%s %s T %lld NI %lld", mul ? "silu_and_mul" : "silu", v->name, lr_dtype_name(dt),
                     (long long)T, (long long)NI);
            dbuf d_out = d_new((size_t)n * lr_dtype_size(dt), NULL);
            if (mul) {
                lr_ref_silu_and_mul_f64(ref, gu.v, T, NI);
                lr_ref_silu_and_mul_f32(emul, guf, T, NI);
                RUN(lr_gpu_silu_and_mul(v->name, dp(&d_out), dp(&d_gu), T, NI, dt, g_stream));
            } else { /* silu has no variants: the family default */
                lr_ref_silu_f64(ref, gu.v, T, NI);
                lr_ref_silu_f32(emul, guf, T, NI);
                RUN(lr_gpu_silu(dp(&d_out), dp(&d_gu), T, NI, dt, g_stream));
            }
            emulate_store(emul, n, dt);
            void *out = d_fetch(&d_out, "out");
            judge("out", out, dt, T, NI, ref, LR_STAGE_ACTIVATION, emul, same_budget(dt, 1));
            case_end();
            free(out);
            d_free(&d_out, "out", NULL);
        }
        d_free(&d_gu, "gate_up", gu.raw);
        h_free(&gu);
        free(ref), free(guf), free(emul);
    }
}

/* ---- cache ----------------------------------------------------------------------------- */

static void sweep_cache(const target *v, lr_dtype dt) {
    static const struct {
        int64_t T, nkv, hd, block_size, num_blocks;
    } shapes[] = {
        {1, 1, 8, 16, 4}, {20, 2, 64, 16, 8}, {37, 4, 128, 16, 6}, {12, 8, 16, 5, 3}, {3, 1, 256, 16, 2}};
    size_t es = lr_dtype_size(dt);
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        int64_t T = shapes[c].T, nkv = shapes[c].nkv, hd = shapes[c].hd, bs = shapes[c].block_size;
        int64_t nslots = shapes[c].num_blocks * bs, width = nkv * hd;
        int64_t nh = 2 * nkv, ldx = (nh + 2 * nkv) * hd, k_col = nh * hd, v_col = k_col + width;
        set_case("reshape_and_cache/%s %s T %lld nkv %lld hd %lld block_size %lld", v->name,
                 lr_dtype_name(dt), (long long)T, (long long)nkv, (long long)hd, (long long)bs);
        htensor qkv = h_random(dt, T * ldx, -1, 1);
        /* Distinct random slots; with more than one token, the last is padding (-1). */
        int64_t *slots = malloc((size_t)nslots * sizeof *slots);
        for (int64_t i = 0; i < nslots; i++)
            slots[i] = i;
        for (int64_t i = nslots - 1; i > 0; i--) {
            int64_t j = irand(0, i + 1), tmp = slots[i];
            slots[i] = slots[j], slots[j] = tmp;
        }
        if (T > 1) slots[T - 1] = -1;
        /* Expected caches: poison everywhere but the written slots. */
        size_t cache_bytes = (size_t)(nslots * width) * es;
        unsigned char *k_want = malloc(cache_bytes), *v_want = malloc(cache_bytes);
        memset(k_want, POISON, cache_bytes), memset(v_want, POISON, cache_bytes);
        for (int64_t t = 0; t < T; t++) {
            if (slots[t] < 0) continue;
            const unsigned char *row = (const unsigned char *)qkv.raw + (size_t)(t * ldx) * es;
            memcpy(k_want + (size_t)(slots[t] * width) * es, row + (size_t)k_col * es, (size_t)width * es);
            memcpy(v_want + (size_t)(slots[t] * width) * es, row + (size_t)v_col * es, (size_t)width * es);
        }
        dbuf d_qkv = d_upload(&qkv), d_slots = d_new((size_t)T * sizeof *slots, slots);
        dbuf d_k = d_new(cache_bytes, NULL), d_v = d_new(cache_bytes, NULL);
        RUN(lr_gpu_reshape_and_cache(v->name, dp(&d_k), dp(&d_v), dp(&d_qkv), ldx, k_col, v_col, T, nkv, hd,
                                     bs, dp(&d_slots), dt, g_stream));
        void *k = d_fetch(&d_k, "k_cache"), *vc = d_fetch(&d_v, "v_cache");
        CHECK(memcmp(k, k_want, cache_bytes) == 0, "k_cache differs from the expected slots", FAIL_PREFIX);
        CHECK(memcmp(vc, v_want, cache_bytes) == 0, "v_cache differs from the expected slots", FAIL_PREFIX);
        case_end();
        free(k), free(vc), free(k_want), free(v_want);
        d_free(&d_k, "k_cache", NULL);
        d_free(&d_v, "v_cache", NULL);
        d_free(&d_qkv, "qkv", qkv.raw);
        d_free(&d_slots, "slot_mapping", slots);
        h_free(&qkv);
        free(slots);
    }
}

/* ---- attention ------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int64_t block_size;
    int nseqs;
    int64_t past[8], len[8];
} attn_batch;

/* Prefill with and without a past, decode, block boundaries crossed inside a sequence
 * and at its start, sequences longer than one 16-row query tile, and an odd block size. */
static const attn_batch attn_batches[] = {
    {"mixed", 16, 6, {0, 5, 20, 33, 0, 15}, {37, 1, 16, 3, 1, 17}},
    {"decode", 16, 4, {100, 0, 31, 64}, {1, 1, 1, 1}},
    {"long", 16, 2, {300, 0}, {40, 70}},
    {"odd-blocks", 7, 3, {6, 0, 13}, {9, 15, 1}},
};

static const struct { int64_t nh, nkv; } attn_heads[] = {{4, 4}, {8, 2}, {4, 1}}; /* MHA, GQA, MQA */

static const int64_t attn_hds[] = {8, 16, 64, 128, 256};

/* One case: the batch's sizes, its queries (packed qkv rows) and each sequence's keys and
 * values (contiguous), and the context (T, qw) of the float64 and (F16, BF16) the
 * emulated reference for `variant`. */
typedef struct {
    const attn_batch *B;
    int S;
    int64_t nh, nkv, hd, T, max_len, max_keys, kvw, ldq, qw, start[8];
    htensor q, k[8], v[8];
    double *ref;
    float *emul; /* NULL at F32 */
    bool tiled;  /* the variant's kernel rounds P for this batch (lr_attention_rounds_p) */
    double X;    /* where tiled, the largest |score * scale * log2 e| a query sees */
} attn_case;

static attn_case attn_case_new(const char *variant, lr_dtype dt, const attn_batch *B, int64_t nh, int64_t nkv,
                               int64_t hd) {
    attn_case c = {.B = B, .S = B->nseqs, .nh = nh, .nkv = nkv, .hd = hd};
    for (int s = 0; s < c.S; s++) {
        c.start[s] = c.T;
        c.T += B->len[s];
        int64_t keys = B->past[s] + B->len[s];
        c.max_len = B->len[s] > c.max_len ? B->len[s] : c.max_len;
        c.max_keys = keys > c.max_keys ? keys : c.max_keys;
    }
    int64_t T = c.T, kvw = c.kvw = nkv * hd, ldq = c.ldq = (nh + 2 * nkv) * hd, qw = c.qw = nh * hd;
    c.q = h_random(dt, T * ldq, -2, 2);
    for (int s = 0; s < c.S; s++) {
        c.k[s] = h_random(dt, (B->past[s] + B->len[s]) * kvw, -2, 2);
        c.v[s] = h_random(dt, (B->past[s] + B->len[s]) * kvw, -1, 1);
    }

    /* The reference, one sequence at a time on contiguous K/V. */
    c.ref = calloc((size_t)(T * qw), sizeof *c.ref);
    int64_t score_rows = c.max_len > nh / nkv ? c.max_len : nh / nkv;
    double *scores = malloc((size_t)(score_rows * c.max_keys) * sizeof *scores);
    ck_assert(c.ref && scores);
    for (int s = 0; s < c.S; s++)
        lr_ref_attention_f64(c.ref + c.start[s] * qw, qw, c.q.v + c.start[s] * ldq, ldq, c.k[s].v, c.v[s].v, kvw,
                             B->len[s], B->past[s], nh, nkv, hd, scores);
    free(scores);
    if (!lowp(dt)) return c;

    /* The emulated reference (ref/cpu/ops/attention.c): float32 arithmetic, P rounded to
     * the dtype before P V where this variant's kernel rounds it for this batch
     * (lr_attention_rounds_p: a variant that rounds elsewhere must say so there), the
     * context rounded once. */
    c.tiled = lr_attention_rounds_p(variant, dt, hd, c.max_len);
    for (int s = 0; c.tiled && s < c.S; s++)
        for (int64_t j = 0; j < B->len[s]; j++)
            for (int64_t h = 0; h < nh; h++)
                for (int64_t key = 0; key <= B->past[s] + j; key++) {
                    const double *qr = c.q.v + (c.start[s] + j) * ldq + h * hd,
                                 *kr = c.k[s].v + key * kvw + h / (nh / nkv) * hd;
                    double dot = 0;
                    for (int64_t d = 0; d < hd; d++)
                        dot += qr[d] * kr[d];
                    dot = fabs(dot) / sqrt((double)hd) * 1.4426950408889634;
                    c.X = dot > c.X ? dot : c.X;
                }
    float *qf = fcopy(c.q.v, T * ldq), *scores_f = malloc((size_t)(score_rows * c.max_keys) * sizeof *scores_f);
    c.emul = calloc((size_t)(T * qw), sizeof *c.emul);
    ck_assert(scores_f && c.emul);
    for (int s = 0; s < c.S; s++) {
        int64_t keys = B->past[s] + B->len[s];
        float *kf = fcopy(c.k[s].v, keys * kvw), *vf = fcopy(c.v[s].v, keys * kvw);
        if (c.tiled)
            lr_ref_attention_tiled_f32(c.emul + c.start[s] * qw, qw, qf + c.start[s] * ldq, ldq, kf, vf, kvw,
                                       B->len[s], B->past[s], nh, nkv, hd, LR_ATTN_P_TILE, dt, scores_f);
        else
            lr_ref_attention_f32(c.emul + c.start[s] * qw, qw, qf + c.start[s] * ldq, ldq, kf, vf, kvw, B->len[s],
                                 B->past[s], nh, nkv, hd, scores_f);
        free(kf), free(vf);
    }
    emulate_store(c.emul, T * qw, dt);
    free(qf), free(scores_f);
    return c;
}

static void attn_case_free(attn_case *c) {
    h_free(&c->q);
    for (int s = 0; s < c->S; s++)
        h_free(&c->k[s]), h_free(&c->v[s]);
    free(c->ref), free(c->emul);
}

/* Judges the context's heads (T, qw; dt). */
static void attn_case_judge(const attn_case *c, lr_dtype dt, const void *heads) {
    judge("ctx", heads, dt, c->T, c->qw, c->ref, LR_STAGE_ATTENTION, c->emul,
          attention_same_budget(dt, c->hd, c->max_keys, c->tiled, c->X));
}

static void attention_case(const target *tgt, lr_dtype dt, const attn_batch *B, int64_t nh, int64_t nkv,
                           int64_t hd) {
    const char *variant = tgt->name;
    set_case("attention/%s %s batch %s nh %lld nkv %lld hd %lld", variant, lr_dtype_name(dt), B->name,
             (long long)nh, (long long)nkv, (long long)hd);
    attn_case c = attn_case_new(variant, dt, B, nh, nkv, hd);
    int S = c.S;
    int64_t bs = B->block_size, T = c.T, max_blocks = 0, nblocks = 3, nb[8];
    for (int s = 0; s < S; s++) {
        nb[s] = (B->past[s] + B->len[s] + bs - 1) / bs;
        nblocks += nb[s];
        max_blocks = nb[s] > max_blocks ? nb[s] : max_blocks;
    }
    max_blocks += 1; /* a spare column of -1: reading it would be an illegal address */
    int64_t kvw = c.kvw, ldq = c.ldq, qw = c.qw, ldc = qw + 4;
    size_t es = lr_dtype_size(dt);

    /* The paged cache: physical blocks handed out in a random order, the rest of the cache
     * random (stale) values that a wrong block lookup would pick up. */
    int64_t *perm = malloc((size_t)nblocks * sizeof *perm);
    for (int64_t i = 0; i < nblocks; i++)
        perm[i] = i;
    for (int64_t i = nblocks - 1; i > 0; i--) {
        int64_t j = irand(0, i + 1), tmp = perm[i];
        perm[i] = perm[j], perm[j] = tmp;
    }
    int32_t *tables = malloc((size_t)(S * max_blocks) * sizeof *tables);
    htensor kc = h_random(dt, nblocks * bs * kvw, -2, 2), vc = h_random(dt, nblocks * bs * kvw, -1, 1);
    int64_t next = 0;
    for (int s = 0; s < S; s++) {
        for (int64_t b = 0; b < max_blocks; b++)
            tables[s * max_blocks + b] = b < nb[s] ? (int32_t)perm[next++] : -1;
        for (int64_t j = 0; j < B->past[s] + B->len[s]; j++) {
            int64_t slot = (int64_t)tables[s * max_blocks + j / bs] * bs + j % bs;
            memcpy((char *)kc.raw + (size_t)(slot * kvw) * es, (char *)c.k[s].raw + (size_t)(j * kvw) * es,
                   (size_t)kvw * es);
            memcpy((char *)vc.raw + (size_t)(slot * kvw) * es, (char *)c.v[s].raw + (size_t)(j * kvw) * es,
                   (size_t)kvw * es);
        }
    }
    int32_t *token_seq = malloc((size_t)T * sizeof(int32_t)), *token_keys = malloc((size_t)T * sizeof(int32_t));
    int32_t seq_start[8], seq_len[8], seq_past[8];
    for (int s = 0; s < S; s++) {
        seq_start[s] = (int32_t)c.start[s], seq_len[s] = (int32_t)B->len[s], seq_past[s] = (int32_t)B->past[s];
        for (int64_t j = 0; j < B->len[s]; j++) {
            token_seq[c.start[s] + j] = s;
            token_keys[c.start[s] + j] = (int32_t)(B->past[s] + j + 1);
        }
    }

    dbuf d_q = d_upload(&c.q), d_kc = d_upload(&kc), d_vc = d_upload(&vc);
    dbuf d_tab = d_new((size_t)(S * max_blocks) * sizeof(int32_t), tables);
    dbuf d_tseq = d_new((size_t)T * sizeof(int32_t), token_seq),
         d_tkeys = d_new((size_t)T * sizeof(int32_t), token_keys);
    dbuf d_start = d_new((size_t)S * sizeof(int32_t), seq_start),
         d_len = d_new((size_t)S * sizeof(int32_t), seq_len);
    dbuf d_past = d_new((size_t)S * sizeof(int32_t), seq_past);
    dbuf d_ctx = d_new((size_t)(T * ldc) * es, NULL);
    lr_gpu_attn_meta meta = {
        .block_tables = dp(&d_tab),
        .token_seq = dp(&d_tseq),
        .token_keys = dp(&d_tkeys),
        .seq_start = dp(&d_start),
        .seq_len = dp(&d_len),
        .seq_past = dp(&d_past),
        .num_seqs = S,
        .max_blocks = max_blocks,
        .block_size = bs,
        .max_seq_len = c.max_len,
        .max_keys = c.max_keys,
    };
    RUN(lr_gpu_attention(variant, dp(&d_ctx), ldc, dp(&d_q), ldq, dp(&d_kc), dp(&d_vc), &meta, T, nh, nkv, hd,
                         (float)(1.0 / sqrt((double)hd)), dt, g_ws, g_stream));
    void *ctx = d_fetch(&d_ctx, "ctx");
    void *heads = take_cols(ctx, es, T, ldc, 0, qw), *pad = take_cols(ctx, es, T, ldc, qw, ldc - qw);
    attn_case_judge(&c, dt, heads);
    size_t pad_bytes = (size_t)(T * (ldc - qw)) * es, pad_ok = 0;
    while (pad_ok < pad_bytes && ((unsigned char *)pad)[pad_ok] == POISON)
        pad_ok++;
    CHECK(pad_ok == pad_bytes, "ctx: padding columns after the heads written", FAIL_PREFIX);
    case_end();
    free(ctx), free(heads), free(pad);

    d_free(&d_ctx, "ctx", NULL);
    d_free(&d_q, "q", c.q.raw);
    d_free(&d_kc, "k_cache", kc.raw);
    d_free(&d_vc, "v_cache", vc.raw);
    d_free(&d_tab, "block_tables", tables);
    d_free(&d_tseq, "token_seq", token_seq);
    d_free(&d_tkeys, "token_keys", token_keys);
    d_free(&d_start, "seq_start", seq_start);
    d_free(&d_len, "seq_len", seq_len);
    d_free(&d_past, "seq_past", seq_past);
    h_free(&kc), h_free(&vc);
    attn_case_free(&c);
    free(perm), free(tables), free(token_seq), free(token_keys);
}

static void sweep_attention(const target *v, lr_dtype dt) {
    for (size_t b = 0; b < sizeof attn_batches / sizeof attn_batches[0]; b++)
        for (size_t h = 0; h < sizeof attn_heads / sizeof attn_heads[0]; h++)
            for (size_t d = 0; d < sizeof attn_hds / sizeof attn_hds[0]; d++)
                attention_case(v, dt, &attn_batches[b], attn_heads[h].nh, attn_heads[h].nkv, attn_hds[d]);
}

/* ---- Every variant of every family ------------------------------------------------------ */

/* By family (gpu_ops.h's LR_GPU_FAMILY_MAP); a family left out here has a NULL sweep. */
static void (*const sweeps[LR_GPU_NUM_FAMILIES])(const target *v, lr_dtype dt) = {
    [LR_GPU_FAM_EMBEDDING] = sweep_embedding, [LR_GPU_FAM_RMSNORM] = sweep_rmsnorm,
    [LR_GPU_FAM_ROTARY] = sweep_rotary,       [LR_GPU_FAM_ACTIVATION] = sweep_activation,
    [LR_GPU_FAM_CACHE] = sweep_cache,         [LR_GPU_FAM_ATTENTION] = sweep_attention,
};

/* A test that judges real kernels asserts every verdict (a planted run that stopped on
 * an assertion may have left g_planted set). */
static void real_kernels(void) { g_planted = false; }

/* Loop index: registry entry * N_DTYPES + dtype. A variant of a family without a sweep
 * fails, so a new family cannot go untested. */
START_TEST(test_variant) {
    const lr_gpu_variant *v = lr_gpu_variant_at((size_t)(_i / N_DTYPES));
    lr_dtype dt = dtypes[_i % N_DTYPES];
    ck_assert_ptr_nonnull(v);
    rng_start(v->family, _i);
    int f = lr_gpu_family_find(v->family);
    ck_assert_msg(f >= 0 && sweeps[f], "family %s (variant %s) has no sweep in tests/test_gpu_ops.c",
                  v->family, v->name);
    target t = registered(v);
    sweeps[f](&t, dt);
}
END_TEST

/* ---- Planted bugs: the sweep must fail them ---------------------------------------------
 * The kernels of gpu_planted.h, run through the same sweeps as the registered variants
 * (a family's sweep, its shapes and inputs, judge()). That the sweep fails them is the
 * test, and it shows what the sweep can see: the last-unweighted RMSNorm changes one
 * element of a row by a tenth of it or more, 1/16384 of the widest row, which the old
 * single relative L2 per case missed at bf16 on every shape (issue 15). */
static const struct {
    target t;
    bool every_case; /* the sweep must fail every case at every dtype; else some case at each */
} planted_kernels[] = {
    {{"rmsnorm", "last-unweighted", lr_test_planted_rms_norm, lr_test_planted_fused_add_rms_norm,
      lr_gpu_rotary},
     true},
    /* Its error shows only at large positions: in every case but the one-token one, whose
     * one position is 0, the second token is at 2^20 - 1. */
    {{"rotary", "f32-angle", lr_gpu_rms_norm, lr_gpu_fused_add_rms_norm, lr_test_planted_rotary}, false},
};
#define N_PLANTED (int)(sizeof planted_kernels / sizeof planted_kernels[0])

/* Loop index: planted variant * N_DTYPES + dtype. */
START_TEST(test_planted) {
    const target *t = &planted_kernels[_i / N_DTYPES].t;
    bool every = planted_kernels[_i / N_DTYPES].every_case;
    lr_dtype dt = dtypes[_i % N_DTYPES];
    int f = lr_gpu_family_find(t->family);
    ck_assert_msg(f >= 0 && sweeps[f], "planted %s/%s: no such family or sweep", t->family, t->name);
    rng_start(t->name, _i);
    printf("test_gpu_ops: planted %s/%s at %s, which the sweep must fail in %s:\n", t->family, t->name,
           lr_dtype_name(dt), every ? "every case" : "some case");
    g_planted = true;
    g_cases = g_caught = 0;
    g_missed[0] = '\0';
    sweeps[f](t, dt);
    g_planted = false;
    printf("test_gpu_ops: planted %s/%s at %s: failed in %d of %d cases\n", t->family, t->name,
           lr_dtype_name(dt), g_caught, g_cases);
    ck_assert_msg(g_cases > 0, "planted %s/%s: the sweep ran no case", t->family, t->name);
    if (every)
        ck_assert_msg(g_caught == g_cases,
                      "planted %s/%s at %s passed the sweep in %d of %d cases, the first: %s (seed %llu)",
                      t->family, t->name, lr_dtype_name(dt), g_cases - g_caught, g_cases, g_missed,
                      (unsigned long long)g_seed);
    else
        ck_assert_msg(g_caught > 0, "planted %s/%s at %s passed the sweep in all %d cases (seed %llu)",
                      t->family, t->name, lr_dtype_name(dt), g_cases, (unsigned long long)g_seed);
}
END_TEST

/* ---- The verdicts, checked on the CPU (no device needed) ---------------------------------
 * The planted kernels and a correct one, simulated on the CPU in their kernels' own
 * float32 order, judged on the sweep's own shapes and inputs: the verdicts must pass the
 * correct one in every case and fail the planted ones as the GPU run asserts. This checks
 * the criteria themselves where CI runs (the GPU run checks the kernels). */

/* RMSNorm as the "block" kernel (and the planted one) computes it: 256 threads' strided
 * partial sums of squares by fused multiply-add, a butterfly within each warp of 32, the
 * warps' sums in order, then (v * inv) * w rounded once; planted: the last element's
 * weight left out. residual (or NULL) is updated in place. */
static void sim_rmsnorm(float *y, float *residual, const float *x, const float *w, int64_t T, int64_t H,
                        float eps, lr_dtype dt, bool planted) {
    enum { THREADS = 256 };
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * H;
        float *rr = residual ? residual + t * H : NULL, *yr = y + t * H;
        float part[THREADS], next[THREADS];
        for (int j = 0; j < THREADS; j++) {
            float ss = 0;
            for (int64_t i = j; i < H; i += THREADS) {
                float v = xr[i];
                if (rr) v = rr[i] = v + rr[i];
                ss = fmaf(v, v, ss);
            }
            part[j] = ss;
        }
        for (int o = 16; o > 0; o >>= 1) {
            for (int j = 0; j < THREADS; j++)
                next[j] = part[j] + part[j ^ o];
            memcpy(part, next, sizeof part);
        }
        float ss = 0;
        for (int j = 0; j < THREADS; j += 32)
            ss += part[j];
        float inv = 1.0f / sqrtf(ss / (float)H + eps);
        for (int64_t i = 0; i < H; i++) {
            float v = rr ? rr[i] : xr[i];
            yr[i] = planted && i == H - 1 ? v * inv : v * inv * w[i];
        }
    }
    lr_round_f32_n(y, (size_t)(T * H), dt);
}

/* RoPE as a kernel computes it, the rotation by fused multiply-adds (as nvcc contracts
 * x1 c - x2 s); the angle's cos and sin from float64, or (planted f32-angle) the angle
 * formed and its cos and sin taken in float32. In place on x (T, ldx). */
static void sim_rotary(float *x, const rot_case *k, lr_dtype dt, bool planted) {
    for (int64_t t = 0; t < k->T; t++)
        for (int64_t i = 0; i < k->half; i++) {
            float c, sn;
            if (planted) {
                float a = (float)k->pos[t] * (float)k->inv_freq[i];
                c = cosf(a), sn = sinf(a);
            } else {
                double a = (double)k->pos[t] * k->inv_freq[i];
                c = (float)cos(a), sn = (float)sin(a);
            }
            for (int64_t h = 0; h < k->nheads; h++) {
                float *v = x + t * k->ldx + h * k->hd, x1 = v[i], x2 = v[k->half + i];
                v[i] = fmaf(x1, c, -(x2 * sn));
                v[k->half + i] = fmaf(x2, c, x1 * sn);
            }
        }
    lr_round_f32_n(x, (size_t)(k->T * k->ldx), dt);
}

/* Attention as a flash kernel computes it, per query row and (sequence, head): keys in
 * tiles (of 64, P rounded to the dtype, where the case's variant rounds P; else of 32,
 * P in float32), the scores' dot products by fused multiply-adds from the last dimension
 * down (an order unlike the reference's BLAS), an online softmax in log2 units with
 * exp2f, O rescaled as the maximum grows, O / l rounded once. ctx: (T, qw). */
static void sim_attention(float *ctx, const attn_case *c, lr_dtype dt) {
    int64_t hd = c->hd, group = c->nh / c->nkv, tile = c->tiled ? LR_ATTN_P_TILE : 32;
    float sl2 = (float)(1.0 / sqrt((double)hd)) * 1.4426950408889634f;
    float *s = malloc((size_t)tile * sizeof *s), *o = malloc((size_t)hd * sizeof *o);
    ck_assert(s && o);
    for (int sq = 0; sq < c->S; sq++) {
        int64_t keys = c->B->past[sq] + c->B->len[sq];
        float *kf = fcopy(c->k[sq].v, keys * c->kvw), *vf = fcopy(c->v[sq].v, keys * c->kvw);
        for (int64_t j = 0; j < c->B->len[sq]; j++)
            for (int64_t h = 0; h < c->nh; h++) {
                const double *qd = c->q.v + (c->start[sq] + j) * c->ldq + h * hd;
                int64_t g = h / group, vis = c->B->past[sq] + j + 1;
                float m = -INFINITY, l = 0;
                memset(o, 0, (size_t)hd * sizeof *o);
                for (int64_t k0 = 0; k0 < vis; k0 += tile) {
                    int64_t kt = vis - k0 < tile ? vis - k0 : tile;
                    float tmax = -INFINITY;
                    for (int64_t i = 0; i < kt; i++) {
                        const float *kr = kf + (k0 + i) * c->kvw + g * hd;
                        float a = 0;
                        for (int64_t d = hd - 1; d >= 0; d--)
                            a = fmaf((float)qd[d], kr[d], a);
                        s[i] = a * sl2;
                        tmax = s[i] > tmax ? s[i] : tmax;
                    }
                    float mn = tmax > m ? tmax : m, corr = m == -INFINITY ? 1 : exp2f(m - mn), sum = 0;
                    for (int64_t i = 0; i < kt; i++) {
                        s[i] = exp2f(s[i] - mn);
                        if (c->tiled) s[i] = lr_round_f32(s[i], dt);
                        sum += s[i];
                    }
                    l = l * corr + sum;
                    m = mn;
                    for (int64_t d = 0; d < hd; d++) {
                        float a = o[d] * corr;
                        for (int64_t i = 0; i < kt; i++)
                            a = fmaf(s[i], vf[(k0 + i) * c->kvw + g * hd + d], a);
                        o[d] = a;
                    }
                }
                for (int64_t d = 0; d < hd; d++)
                    ctx[(c->start[sq] + j) * c->qw + h * hd + d] = o[d] / l;
            }
        free(kf), free(vf);
    }
    lr_round_f32_n(ctx, (size_t)(c->T * c->qw), dt);
    free(s), free(o);
}

/* Loop index: dtype. */
START_TEST(test_verdicts_cpu) {
    lr_dtype dt = dtypes[_i];
    rng_start("verdicts_cpu", _i);
    size_t es = lr_dtype_size(dt);

    /* rmsnorm: the planted one fails every case (as asserted of the GPU run) */
    g_cases = g_caught = 0;
    g_missed[0] = '\0';
    printf("test_gpu_ops: on the CPU, simulated rmsnorm/last-unweighted at %s:\n", lr_dtype_name(dt));
    int rms_cases = 0;
    for (size_t c = 0; c < N_RMS_SHAPES; c++) {
        /* The 70000-row shape is there for the kernels' grid cap; here it adds only time
         * (under valgrind, minutes), and its rows are the first shape's width. */
        if (rms_shapes[c].T * rms_shapes[c].H > (1 << 20)) continue;
        for (int fused = 0; fused <= 1; fused++, rms_cases++) {
            rms_case k = rms_case_new(dt, c, fused);
            float *xf = fcopy(k.x.v, k.n), *wf = fcopy(k.w.v, k.H), *y = malloc((size_t)k.n * sizeof *y);
            void *raw = malloc((size_t)k.n * es);
            ck_assert(y && raw);
            for (int planted = 0; planted <= 1; planted++) {
                float *rf = fused ? fcopy(k.r.v, k.n) : NULL;
                sim_rmsnorm(y, rf, xf, wf, k.T, k.H, (float)k.eps, dt, planted);
                lr_convert(raw, dt, y, LR_F32, (size_t)k.n);
                g_planted = planted;
                set_case("simulated %s%s %s T %lld H %lld", fused ? "fused_add_rms_norm" : "rms_norm",
                         planted ? "/last-unweighted" : "", lr_dtype_name(dt), (long long)k.T,
                         (long long)k.H);
                rms_case_judge(&k, dt, raw, rf);
                case_end();
                g_planted = false;
                free(rf);
            }
            free(xf), free(wf), free(y), free(raw);
            rms_case_free(&k);
        }
    }
    ck_assert_int_eq(g_cases, rms_cases);
    ck_assert_msg(g_caught == g_cases,
                  "simulated rmsnorm/last-unweighted at %s passed %d of %d cases, the first: %s",
                  lr_dtype_name(dt), g_cases - g_caught, g_cases, g_missed);

    /* rotary: the planted one fails some case */
    g_cases = g_caught = 0;
    g_missed[0] = '\0';
    printf("test_gpu_ops: on the CPU, simulated rotary/f32-angle at %s:\n", lr_dtype_name(dt));
    for (size_t c = 0; c < N_ROT_SHAPES; c++) {
        rot_case k = rot_case_new(dt, c);
        void *raw = malloc((size_t)(k.T * k.ldx) * es);
        ck_assert_ptr_nonnull(raw);
        for (int planted = 0; planted <= 1; planted++) {
            float *x = fcopy(k.x.v, k.T * k.ldx);
            sim_rotary(x, &k, dt, planted);
            lr_convert(raw, dt, x, LR_F32, (size_t)(k.T * k.ldx));
            g_planted = planted;
            set_case("simulated rotary%s %s T %lld nheads %lld hd %lld", planted ? "/f32-angle" : "",
                     lr_dtype_name(dt), (long long)k.T, (long long)k.nheads, (long long)k.hd);
            rot_case_judge(&k, dt, raw);
            case_end();
            g_planted = false;
            free(x);
        }
        free(raw);
        rot_case_free(&k);
    }
    ck_assert_msg(g_caught > 0, "simulated rotary/f32-angle at %s passed all %d cases", lr_dtype_name(dt),
                  g_cases);

    /* attention: a simulated kernel that rounds P (as fa2 and tc do, where they do) and
     * one that does not (flash) pass every case, against their own emulated twins (at F32
     * neither rounds P: one is enough) */
    static const char *const attn_variants[] = {"fa2", "flash"};
    for (size_t b = 0; b < sizeof attn_batches / sizeof attn_batches[0]; b++)
        for (size_t h = 0; h < sizeof attn_heads / sizeof attn_heads[0]; h++)
            for (size_t d = 0; d < sizeof attn_hds / sizeof attn_hds[0]; d++)
                for (size_t a = 0; a < (lowp(dt) ? 2u : 1u); a++) {
                    /* head sizes where fa2 and tc round P, and the smallest: the others
                     * add minutes under valgrind, not a case of another kind */
                    if (attn_hds[d] != 8 && attn_hds[d] != 64 && attn_hds[d] != 128) continue;
                    attn_case c = attn_case_new(attn_variants[a], dt, &attn_batches[b], attn_heads[h].nh,
                                                attn_heads[h].nkv, attn_hds[d]);
                    set_case("simulated attention/%s %s batch %s nh %lld nkv %lld hd %lld%s", attn_variants[a],
                             lr_dtype_name(dt), attn_batches[b].name, (long long)c.nh, (long long)c.nkv,
                             (long long)c.hd, c.tiled ? " (P rounded)" : "");
                    float *ctx = malloc((size_t)(c.T * c.qw) * sizeof *ctx);
                    void *raw = malloc((size_t)(c.T * c.qw) * es);
                    ck_assert(ctx && raw);
                    sim_attention(ctx, &c, dt);
                    lr_convert(raw, dt, ctx, LR_F32, (size_t)(c.T * c.qw));
                    attn_case_judge(&c, dt, raw);
                    free(ctx), free(raw);
                    attn_case_free(&c);
                }
}
END_TEST

/* ---- Helpers without variants ---------------------------------------------------------- */

START_TEST(test_sum) {
    lr_dtype dt = dtypes[_i];
    rng_start("sum", _i);
    static const int nparts[] = {1, 2, 3, 8, 11, 17}; /* > 8: several passes */
    static const int64_t ns[] = {1, 1000, 4099};
    for (size_t a = 0; a < sizeof nparts / sizeof nparts[0]; a++) {
        for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++) {
            int np = nparts[a];
            int64_t n = ns[b];
            for (int inplace = 0; inplace <= 1; inplace++) {
                set_case("sum %s parts %d n %lld%s", lr_dtype_name(dt), np, (long long)n,
                         inplace ? " in place" : "");
                htensor parts[17];
                dbuf d_parts[17];
                const void *ptrs[17];
                double *ref = calloc((size_t)n, sizeof *ref);
                /* Positive parts: with cancellation the float32 sum's error is bounded
                 * relative to the sum of magnitudes, not to the result (n = 1 shows it). */
                for (int p = 0; p < np; p++) {
                    parts[p] = h_random(dt, n, 0.25, 1);
                    d_parts[p] = d_upload(&parts[p]);
                    ptrs[p] = dp(&d_parts[p]);
                    for (int64_t i = 0; i < n; i++)
                        ref[i] += parts[p].v[i];
                }
                /* The emulated all-reduce (ref/cpu/ops/model.c's all_reduce, inline there):
                 * the float32 sum in part order, rounded once. */
                float *emul = calloc((size_t)n, sizeof *emul);
                ck_assert_ptr_nonnull(emul);
                for (int64_t i = 0; i < n; i++) {
                    float acc = (float)parts[0].v[i];
                    for (int p = 1; p < np; p++)
                        acc += (float)parts[p].v[i];
                    emul[i] = acc;
                }
                emulate_store(emul, n, dt);
                dbuf d_out = inplace ? d_parts[0] : d_new((size_t)n * lr_dtype_size(dt), NULL);
                RUN(lr_gpu_sum(dp(&d_out), ptrs, np, n, dt, g_stream));
                void *out = d_fetch(&d_out, "out");
                judge("out", out, dt, 1, n, ref, LR_STAGE_BLOCK, emul, same_budget(dt, np));
                free(out), free(emul);
                if (!inplace) d_free(&d_out, "out", NULL);
                for (int p = 0; p < np; p++) {
                    d_free(&d_parts[p], "part", inplace && p == 0 ? NULL : parts[p].raw);
                    h_free(&parts[p]);
                }
                free(ref);
            }
        }
    }
}
END_TEST

START_TEST(test_add_bias) {
    lr_dtype dt = dtypes[_i];
    rng_start("add_bias", _i);
    int64_t T = 5, N = 333;
    set_case("add_bias %s T %lld N %lld", lr_dtype_name(dt), (long long)T, (long long)N);
    htensor y = h_random(dt, T * N, -2, 2), b = h_random(dt, N, -0.5, 0.5);
    double *ref = malloc((size_t)(T * N) * sizeof *ref);
    float *emul = malloc((size_t)(T * N) * sizeof *emul); /* model.c's bias add: float32, rounded once */
    ck_assert(ref && emul);
    for (int64_t i = 0; i < T * N; i++) {
        ref[i] = y.v[i] + b.v[i % N];
        emul[i] = (float)y.v[i] + (float)b.v[i % N];
    }
    emulate_store(emul, T * N, dt);
    dbuf d_y = d_upload(&y), d_b = d_upload(&b);
    RUN(lr_gpu_add_bias(dp(&d_y), dp(&d_b), T, N, dt, g_stream));
    void *out = d_fetch(&d_y, "y");
    judge("y", out, dt, T, N, ref, LR_STAGE_PROJECTION, emul, same_budget(dt, 1));
    free(out), free(ref), free(emul);
    d_free(&d_y, "y", NULL);
    d_free(&d_b, "b", b.raw);
    h_free(&y), h_free(&b);
}
END_TEST

START_TEST(test_add_residual) {
    lr_dtype dt = dtypes[_i];
    rng_start("add_residual", _i);
    int64_t n = 2000;
    set_case("add_residual %s n %lld", lr_dtype_name(dt), (long long)n);
    htensor a = h_random(dt, n, -2, 2), r = h_random(LR_F32, n, -4, 4);
    double *ref = malloc((size_t)n * sizeof *ref), *emul = malloc((size_t)n * sizeof *emul);
    ck_assert(ref && emul);
    for (int64_t i = 0; i < n; i++) {
        ref[i] = a.v[i] + r.v[i];
        emul[i] = (float)a.v[i] + (float)r.v[i]; /* model.c's residual sum: one float32 addition */
    }
    dbuf d_a = d_upload(&a), d_r = d_upload(&r), d_out = d_new((size_t)n * sizeof(float), NULL);
    RUN(lr_gpu_add_residual(dp(&d_out), dp(&d_a), dp(&d_r), n, dt, g_stream));
    void *out = d_fetch(&d_out, "out");
    judge("out", out, LR_F32, 1, n, ref, LR_STAGE_LAYER, NULL, same_budget(dt, 1));
    expect_exact("out (against the emulated reference)", out, LR_F32, emul, n);
    free(out), free(ref), free(emul);
    d_free(&d_out, "out", NULL);
    d_free(&d_a, "a", a.raw);
    d_free(&d_r, "r", r.raw);
    h_free(&a), h_free(&r);
}
END_TEST

/* Loop index: source (F64, F32, F16, BF16) * 3 + destination (F32, F16, BF16). Each value
 * must come out as the source value rounded once, to nearest even, to the destination. */
START_TEST(test_convert) {
    static const lr_dtype srcs[] = {LR_F64, LR_F32, LR_F16, LR_BF16};
    lr_dtype sdt = srcs[_i / N_DTYPES], ddt = dtypes[_i % N_DTYPES];
    rng_start("convert", _i);
    int64_t n = 3001;
    set_case("convert %s -> %s n %lld", lr_dtype_name(sdt), lr_dtype_name(ddt), (long long)n);
    htensor src = h_new(sdt, n);
    /* Every seventh value tiny, to reach F16's subnormals; one exact tie. */
    for (int64_t i = 0; i < n; i++)
        h_set(&src, i, uniform(-3, 3) * (i % 7 == 3 ? 1e-6 : 1));
    if (sdt == LR_F64 || sdt == LR_F32) h_set(&src, 0, 1.0 + 0x1p-11); /* halfway between F16s */
    double *ref = malloc((size_t)n * sizeof *ref);
    for (int64_t i = 0; i < n; i++)
        ref[i] = round_to(ddt, src.v[i]);
    dbuf d_src = d_upload(&src), d_dst = d_new((size_t)n * lr_dtype_size(ddt), NULL);
    RUN(lr_gpu_convert(dp(&d_dst), ddt, dp(&d_src), sdt, n, g_stream));
    void *out = d_fetch(&d_dst, "dst");
    expect_exact("dst", out, ddt, ref, n);
    free(out), free(ref);
    d_free(&d_dst, "dst", NULL);
    d_free(&d_src, "src", src.raw);
    h_free(&src);
}
END_TEST

/* ---- Registry and arguments (no device needed) ----------------------------------------- */

START_TEST(test_registry) {
    for (int f = 0; f < LR_GPU_NUM_FAMILIES; f++) {
        const char *name = lr_gpu_family_name((lr_gpu_family)f);
        ck_assert_msg(name && lr_gpu_family_find(name) == f, "family %d: name %s does not find it", f,
                      name ? name : "(null)");
    }
    ck_assert_ptr_null(lr_gpu_family_name(LR_GPU_NUM_FAMILIES));
    ck_assert_ptr_null(lr_gpu_family_name((lr_gpu_family)-1));
    ck_assert_int_eq(lr_gpu_family_find("nope"), -1);
    ck_assert_int_eq(lr_gpu_family_find(NULL), -1);
    size_t n = lr_gpu_variant_count();
    ck_assert_uint_gt(n, 0);
    ck_assert_ptr_null(lr_gpu_variant_at(n));
    for (size_t i = 0; i < n; i++) {
        const lr_gpu_variant *v = lr_gpu_variant_at(i);
        ck_assert_ptr_nonnull(v);
        ck_assert_msg(v->family && v->name && v->description && v->description[0],
                      "registry entry %zu is incomplete", i);
        ck_assert_msg(lr_gpu_family_find(v->family) >= 0, "registry entry %zu: family %s is not in the table",
                      i, v->family);
        EXPECT_STATUS(lr_gpu_variant_check(v->family, v->name), LR_OK);
        for (size_t j = 0; j < i; j++) {
            const lr_gpu_variant *u = lr_gpu_variant_at(j);
            ck_assert_msg(strcmp(u->family, v->family) != 0 || strcmp(u->name, v->name) != 0,
                          "%s/%s is registered twice", v->family, v->name);
        }
    }
    for (int f = 0; f < LR_GPU_NUM_FAMILIES; f++) {
        const char *family = lr_gpu_family_name((lr_gpu_family)f);
        int defaults = 0;
        for (size_t i = 0; i < n; i++) {
            const lr_gpu_variant *v = lr_gpu_variant_at(i);
            defaults += strcmp(v->family, family) == 0 && v->is_default;
        }
        ck_assert_msg(defaults == 1, "family %s has %d defaults", family, defaults);
        EXPECT_STATUS(lr_gpu_variant_check(family, NULL), LR_OK);
    }
    EXPECT_STATUS(lr_gpu_variant_check("rmsnorm", "nope"), LR_E_INVAL);
    const char *msg = lr_last_error();
    ck_assert_msg(strstr(msg, "rmsnorm") && strstr(msg, "nope") && strstr(msg, "block") &&
                      strstr(msg, "warp"),
                  "unhelpful message: %s", msg);
    EXPECT_STATUS(lr_gpu_variant_check("nope", NULL), LR_E_INVAL);
    msg = lr_last_error();
    ck_assert_msg(strstr(msg, "nope"), "unhelpful message: %s", msg);
    for (int f = 0; f < LR_GPU_NUM_FAMILIES; f++) /* every family named */
        ck_assert_msg(strstr(msg, lr_gpu_family_name((lr_gpu_family)f)), "unhelpful message: %s", msg);
    EXPECT_STATUS(lr_gpu_variant_check(NULL, NULL), LR_E_INVAL);
}
END_TEST

/* Every entry point rejects an unknown variant and bad sizes before touching the device
 * (the pointers here are NULL). */
START_TEST(test_bad_arguments) {
    lr_gpu_attn_meta meta = {
        .num_seqs = 1, .max_blocks = 1, .block_size = 16, .max_seq_len = 1, .max_keys = 1};
    cudaStream_t s = 0;
    lr_gpu_attn_ws *ws = NULL; /* no device memory until a kernel needs it */
    EXPECT_STATUS(lr_gpu_attn_ws_create(&ws), LR_OK);
    EXPECT_STATUS(lr_gpu_attn_ws_create(NULL), LR_E_INVAL);
    /* unknown variants */
    EXPECT_STATUS(lr_gpu_embedding("nope", NULL, NULL, 1, NULL, 0, 1, 8, LR_F32, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_rms_norm("nope", NULL, NULL, NULL, 1, 8, 1e-5f, LR_F32, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_fused_add_rms_norm("nope", NULL, NULL, NULL, NULL, 1, 8, 1e-5f, LR_F32, s),
                  LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_rotary("nope", NULL, 8, 1, 1, 8, NULL, NULL, LR_F32, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_silu_and_mul("nope", NULL, NULL, 1, 8, LR_F32, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_reshape_and_cache("nope", NULL, NULL, NULL, 24, 8, 16, 1, 1, 8, 16, NULL, LR_F32, s),
                  LR_E_INVAL);
    EXPECT_STATUS(
        lr_gpu_attention("nope", NULL, 8, NULL, 24, NULL, NULL, &meta, 1, 1, 1, 8, 1.0f, LR_F32, ws, s),
        LR_E_INVAL);
    ck_assert_msg(strstr(lr_last_error(), "flash") && strstr(lr_last_error(), "simple"),
                  "unhelpful message: %s", lr_last_error());
    /* sizes and dtypes */
    EXPECT_STATUS(lr_gpu_embedding(NULL, NULL, NULL, -1, NULL, 0, 1, 8, LR_F32, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_embedding(NULL, NULL, NULL, 1, NULL, 0, 1, 8, LR_I64, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_rms_norm(NULL, NULL, NULL, NULL, -1, 8, 1e-5f, LR_F32, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_rms_norm(NULL, NULL, NULL, NULL, 1, 8, 1e-5f, LR_F64, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_fused_add_rms_norm(NULL, NULL, NULL, NULL, NULL, 1, 8, 1e-5f, LR_F32, s),
                  LR_E_INVAL); /* NULL residual */
    EXPECT_STATUS(lr_gpu_rotary(NULL, NULL, 8, 1, 1, 7, NULL, NULL, LR_F32, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_rotary(NULL, NULL, 8, 1, 2, 8, NULL, NULL, LR_F32, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_silu_and_mul(NULL, NULL, NULL, 1, -8, LR_F32, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_silu(NULL, NULL, 1, 8, LR_I32, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_reshape_and_cache(NULL, NULL, NULL, NULL, 24, 8, 20, 1, 1, 8, 16, NULL, LR_F32, s),
                  LR_E_INVAL); /* values pass the row */
    EXPECT_STATUS(lr_gpu_reshape_and_cache(NULL, NULL, NULL, NULL, 24, 8, 16, 1, 1, 8, 0, NULL, LR_F32, s),
                  LR_E_INVAL);
    EXPECT_STATUS(
        lr_gpu_attention(NULL, NULL, 48, NULL, 80, NULL, NULL, &meta, 1, 6, 4, 8, 1.0f, LR_F32, ws, s),
        LR_E_INVAL); /* 6 heads over 4 kv heads */
    EXPECT_STATUS(
        lr_gpu_attention(NULL, NULL, 8, NULL, 24, NULL, NULL, &meta, 1, 1, 1, 7, 1.0f, LR_F32, ws, s),
        LR_E_INVAL); /* odd head_dim */
    EXPECT_STATUS(
        lr_gpu_attention(NULL, NULL, 258, NULL, 774, NULL, NULL, &meta, 1, 1, 1, 258, 1.0f, LR_F32, ws, s),
        LR_E_INVAL); /* head_dim above 256 */
    EXPECT_STATUS(
        lr_gpu_attention(NULL, NULL, 4, NULL, 24, NULL, NULL, &meta, 1, 1, 1, 8, 1.0f, LR_F32, ws, s),
        LR_E_INVAL); /* ctx row too short */
    EXPECT_STATUS(
        lr_gpu_attention(NULL, NULL, 8, NULL, 24, NULL, NULL, NULL, 1, 1, 1, 8, 1.0f, LR_F32, ws, s),
        LR_E_INVAL);
    EXPECT_STATUS(
        lr_gpu_attention(NULL, NULL, 8, NULL, 24, NULL, NULL, &meta, 1, 1, 1, 8, 1.0f, LR_F64, ws, s),
        LR_E_INVAL);
    EXPECT_STATUS(
        lr_gpu_attention(NULL, NULL, 8, NULL, 24, NULL, NULL, &meta, 1, 1, 1, 8, 1.0f, LR_F32, NULL, s),
        LR_E_INVAL); /* no workspace */
    meta.block_size = 0;
    EXPECT_STATUS(
        lr_gpu_attention(NULL, NULL, 8, NULL, 24, NULL, NULL, &meta, 1, 1, 1, 8, 1.0f, LR_F32, ws, s),
        LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_sum(NULL, NULL, 0, 8, LR_F32, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_add_bias(NULL, NULL, 1, 8, LR_F64, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_convert(NULL, LR_F64, NULL, LR_F32, 8, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_convert(NULL, LR_F32, NULL, LR_I32, 8, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_add_residual(NULL, NULL, NULL, -1, LR_F32, s), LR_E_INVAL);
    /* empty ops do nothing, successfully, without a device */
    EXPECT_STATUS(lr_gpu_rms_norm(NULL, NULL, NULL, NULL, 0, 8, 1e-5f, LR_F32, s), LR_OK);
    EXPECT_STATUS(
        lr_gpu_attention(NULL, NULL, 8, NULL, 24, NULL, NULL, &meta, 0, 1, 1, 8, 1.0f, LR_F32, ws, s),
        LR_E_INVAL); /* still block_size 0 */
    meta.block_size = 16;
    EXPECT_STATUS(
        lr_gpu_attention(NULL, NULL, 8, NULL, 24, NULL, NULL, &meta, 0, 1, 1, 8, 1.0f, LR_F32, ws, s), LR_OK);
    EXPECT_STATUS(lr_gpu_convert(NULL, LR_F16, NULL, LR_F64, 0, s), LR_OK);
    lr_gpu_attn_ws_free(ws);
    lr_gpu_attn_ws_free(NULL);
}
END_TEST

/* ---- Main ------------------------------------------------------------------------------- */

static int run(Suite *s) {
    SRunner *sr = srunner_create(s);
    /* No fork: CUDA does not survive a fork after the parent has initialised it. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed;
}

int main(void) {
    const char *env = getenv("LR_TEST_SEED");
    g_seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
    printf("test_gpu_ops: seed %llu (LR_TEST_SEED=%llu repeats this run)\n", (unsigned long long)g_seed,
           (unsigned long long)g_seed);

    Suite *contract = suite_create("gpu_ops_contract");
    TCase *tc = tcase_create("registry_and_arguments");
    tcase_add_test(tc, test_registry);
    tcase_add_test(tc, test_bad_arguments);
    suite_add_tcase(contract, tc);
    tc = tcase_create("verdicts_cpu");
    tcase_add_loop_test(tc, test_verdicts_cpu, 0, N_DTYPES);
    suite_add_tcase(contract, tc);
    if (run(contract)) return 1;

    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) {
        printf("test_gpu_ops: no CUDA device (%s); skipping the kernel sweep\n",
               e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return 77;
    }
    if (cudaStreamCreate(&g_stream) != cudaSuccess) {
        printf("test_gpu_ops: cannot create a stream; skipping\n");
        return 77;
    }
    if (lr_gpu_attn_ws_create(&g_ws) != LR_OK) {
        printf("test_gpu_ops: %s\n", lr_last_error());
        return 1;
    }

    Suite *ops = suite_create("gpu_ops");
    tc = tcase_create("variants");
    tcase_add_checked_fixture(tc, real_kernels, NULL);
    tcase_add_loop_test(tc, test_variant, 0, (int)lr_gpu_variant_count() * N_DTYPES);
    suite_add_tcase(ops, tc);
    tc = tcase_create("planted");
    tcase_add_loop_test(tc, test_planted, 0, N_PLANTED * N_DTYPES);
    suite_add_tcase(ops, tc);
    tc = tcase_create("helpers");
    tcase_add_checked_fixture(tc, real_kernels, NULL);
    tcase_add_loop_test(tc, test_sum, 0, N_DTYPES);
    tcase_add_loop_test(tc, test_add_bias, 0, N_DTYPES);
    tcase_add_loop_test(tc, test_add_residual, 0, N_DTYPES);
    tcase_add_loop_test(tc, test_convert, 0, 4 * N_DTYPES);
    suite_add_tcase(ops, tc);
    int failed = run(ops);
    cudaStreamSynchronize(g_stream);
    lr_gpu_attn_ws_free(g_ws);
    cudaStreamDestroy(g_stream);
    if (failed) printf("test_gpu_ops: %d failed; seed %llu\n", failed, (unsigned long long)g_seed);
    return failed ? 1 : 0;
}

#endif /* LR_HAVE_CUDA */
