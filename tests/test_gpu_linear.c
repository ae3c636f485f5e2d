/* test_gpu_linear.c: every registered variant of the CUDA linear family (lr_gpu_linear:
 * y (T, N) = x (T, K) w (N, K)^T, float32 accumulation, rounded once) against the CPU
 * reference's linear op (ref/cpu/ref_ops.h), at F32, F16 and BF16, over the fixtures'
 * projection shapes, SmolLM2-135M's and Llama-3-8B's (qkv 4096 -> 6144, o 4096 -> 4096,
 * gate_up 4096 -> 28672, down 14336 -> 4096, lm_head 4096 -> 128256 at T 1 and 2), tails
 * (K odd, K not a multiple of the 16-byte vector, one output, unaligned x and w), each at
 * T in {1, 2, 3, 4, 7, 8, 16, 64}: the GEMV's decode range and the GEMMs beyond it.
 * Inputs are drawn on the dtype's grid (exact in it, so the references see what the GPU
 * reads); outputs are poisoned beforehand (an unwritten element reads as NaN); guard bytes
 * around every device buffer (out-of-bounds writes); inputs must come back unchanged; a
 * second run must repeat bit for bit. Each output is judged as tests/test_gpu_ops.c
 * judges an op (judge(), with the same op budgets):
 *   - against float64 (lr_ref_linear_f64): relative L2, the worst token and every element
 *     (lr_compare_stage with the projection stage's per-token and per-element factors);
 *   - at F16 and BF16, against the emulated reference at the same precision
 *     (lr_ref_linear_f32 on the same values, rounded once to the dtype, as
 *     --backend cpu --precision bf16|fp16 computes a projection) in ulps, within
 *     lr_same_precision_budget(dtype, K).
 * A GEMV with a planted bug (tests/gpu_linear_planted.cu, compiled into this test only:
 * the last input feature left out) runs through the same cases at T <= 8, and the test
 * asserts that the criteria fail it in every case of 32 outputs or more at every dtype,
 * bf16 and fp16 included.
 * The verdicts themselves are checked on the CPU, device or not (test_verdicts_cpu): the
 * gemv kernel simulated in its own float32 order passes, its planted twin fails.
 * Also: the family in the registry, bad arguments (LR_E_INVAL). Skips (77) without CUDA or
 * without a device; the registry, argument and verdict checks need no device and run
 * first either way. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>

#ifndef LR_HAVE_CUDA
int main(void) {
    puts("test_gpu_linear: built without CUDA; skipping");
    return 77;
}
#else

#include "gpu_linear_planted.h"
#include "gpu_ops.h"
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
 * Against float64, tests/test_gpu_ops.c's op budgets (the reasons are there; one table
 * to share once the op-sweep library holds it): the relative L2 of an op's output at
 * unit roundoff u times a factor, F32 128 u (the reductions dominate: sqrt(K) u32 for K
 * up to 16384 terms; K reaches 14336 here), F16 and BF16 8 u (the output's one rounding
 * dominates, about u / sqrt(3) in RMS). The worst token and every element are held as the
 * model holds a projection stage (lr_stage_criteria's factors for LR_STAGE_PROJECTION)
 * applied to that budget.
 * At F16 and BF16, against the emulated reference: lr_same_precision_budget for the op's
 * reduction, K terms; what is left there is the order of float32 operations. */
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

static lr_criteria op_criteria(lr_dtype dt) {
    lr_criteria s = lr_stage_criteria(LR_STAGE_PROJECTION, dt, -1);
    ck_assert_msg(s.rel_l2 > 0 && isfinite(s.token) && isfinite(s.atol) && isfinite(s.rtol),
                  "no projection criteria at %s", lr_dtype_name(dt));
    double b = budget(dt), k = b / s.rel_l2;
    return (lr_criteria){.rel_l2 = b, .token = s.token * k, .atol = s.atol * k, .rtol = s.rtol * k};
}

static bool lowp(lr_dtype dt) { return dt == LR_F16 || dt == LR_BF16; }

static const lr_dtype dtypes[] = {LR_F32, LR_F16, LR_BF16};
#define N_DTYPES (int)(sizeof dtypes / sizeof dtypes[0])

/* ---- Cases -------------------------------------------------------------------------------- */

static const int64_t Ts[] = {1, 2, 3, 4, 7, 8, 16, 64};
#define N_TS (int)(sizeof Ts / sizeof Ts[0])
#define GEMV_T 8 /* the largest T of gemv's own kernel (gpu/linear.cu); cublas beyond */
/* The planted GEMV must fail every case of at least this many outputs. Leaving one of K
 * terms out moves each output by |x w| of a sum of K such terms, 1 to 4 bf16 ulps at K
 * 14336, so over 32 outputs the emulated verdict's relative L2 (about 0.1 ulps; 4 / sqrt(n)
 * for a case of n outputs) sees it. In a case of a few outputs the allowance 4 / sqrt(n)
 * ulps is wide enough to miss it (the CPU simulation did at 5 outputs, K 4100): such
 * cases are run and reported, not asserted. */
#define PLANTED_MIN_OUT 32

/* (N, K) = a weight's (outputs, inputs). skew: x and w start that many elements past a
 * 16-byte boundary; max_t: the largest T run; cpu: also in test_verdicts_cpu (the CPU
 * simulation, kept to what runs in a few seconds). */
static const struct {
    const char *name;
    int64_t N, K;
    int skew;
    int64_t max_t;
    bool cpu;
} shapes[] = {
    /* the fixtures (tp 1; tp 4 where K gets short) */
    {"gqa-f32 qkv_proj", 96, 64, 0, 64, true},
    {"gqa-f32 o_proj", 64, 64, 0, 64, true},
    {"gqa-f32 gate_up_proj, lm_head", 256, 64, 0, 64, true},
    {"gqa-f32 down_proj", 64, 128, 0, 64, true},
    {"gqa-f32 tp 4 qkv_proj", 24, 64, 0, 64, true},
    {"gqa-f32 tp 4 o_proj", 64, 16, 0, 64, true},
    {"long-gqa-f32 qkv_proj", 64, 32, 0, 64, true},
    {"long-gqa-f32 o_proj", 32, 32, 0, 64, true},
    {"long-gqa-f32 gate_up_proj, lm_head", 128, 32, 0, 64, true},
    {"mha-bias-bf16 qkv_proj", 96, 32, 0, 64, true},
    {"mha-bias-bf16 gate_up_proj, lm_head", 192, 32, 0, 64, true},
    {"mha-bias-bf16 down_proj", 32, 96, 0, 64, true},
    {"mha-bias-bf16 tp 4 down_proj", 32, 24, 0, 64, true},
    {"mqa-hd-f16 qkv_proj", 96, 48, 0, 64, true},
    {"mqa-hd-f16 o_proj", 48, 64, 0, 64, true},
    {"mqa-hd-f16 gate_up_proj", 256, 48, 0, 64, true},
    {"mqa-hd-f16 down_proj", 48, 128, 0, 64, true},
    {"mqa-hd-f16 lm_head", 128, 48, 0, 64, true},
    /* SmolLM2-135M */
    {"SmolLM2-135M qkv_proj", 960, 576, 0, 64, true},
    {"SmolLM2-135M o_proj", 576, 576, 0, 64, true},
    {"SmolLM2-135M gate_up_proj", 3072, 576, 0, 64, true},
    {"SmolLM2-135M down_proj", 576, 1536, 0, 64, true},
    {"SmolLM2-135M lm_head", 49152, 576, 0, 64, false},
    /* tails and alignment: the kernels' other paths */
    {"K odd", 97, 33, 0, 64, true},
    {"K 4 mod 8 (16-byte vectors at F32 only)", 37, 4100, 0, 64, true},
    {"three outputs, K 8", 3, 8, 0, 64, true},
    {"x and w one element off 16 bytes", 64, 64, 1, 64, true},
    {"x and w one element off 16 bytes, K 4096", 40, 4096, 1, 8, true},
    /* A long reduction with few outputs, where one accumulation-order flip weighs most
     * against lr_same_precision_budget (its small-case term allows about one flip of an
     * element of the row's RMS; a flip of an element a binade above fails a correct kernel:
     * once in 46 runs of the CPU simulation at T 4, so T <= 2 here). */
    {"Llama-3-8B down_proj's K, 64 outputs", 64, 14336, 0, 2, true},
    /* Llama-3-8B */
    {"Llama-3-8B qkv_proj", 6144, 4096, 0, 64, false},
    {"Llama-3-8B o_proj", 4096, 4096, 0, 64, false},
    {"Llama-3-8B gate_up_proj", 28672, 4096, 0, 64, false},
    {"Llama-3-8B down_proj", 4096, 14336, 0, 64, false},
    {"Llama-3-8B lm_head", 128256, 4096, 0, 2, false},
};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])

/* ---- Seed and random values on the dtype's grid ----------------------------------------- */

static uint64_t g_seed; /* LR_TEST_SEED, or from the clock */
static uint64_t g_rng;  /* per test, from g_seed and the test's name and index */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_start(const char *test, int i) {
    uint64_t h = g_seed ^ (uint64_t)i * 0x2545f4914f6cdd1dull;
    for (const char *p = test; *p; p++)
        h = (h ^ (uint64_t)(unsigned char)*p) * 0x100000001b3ull;
    g_rng = h;
}

/* A host tensor: exact values (float64, for the float64 reference), the same as float32
 * (exact: for the emulated reference) and as dt (uploaded). */
typedef struct {
    lr_dtype dt;
    int64_t n;
    double *v;
    float *f;
    void *raw;
} htensor;

/* n values of either sign with magnitudes in [0.25, 2), each exactly a number of dt: the
 * significand's p - 1 stored bits and the exponent (-2, -1 or 0) drawn, the encoding
 * written from them (the suite's own, independent of the library and CUDA). Magnitudes
 * bounded away from zero keep every term of a product visible in it. */
static htensor h_grid(lr_dtype dt, int64_t n) {
    htensor t = {dt, n, malloc((size_t)(n > 0 ? n : 1) * sizeof(double)),
                 malloc((size_t)(n > 0 ? n : 1) * sizeof(float)),
                 malloc((size_t)(n > 0 ? n : 1) * lr_dtype_size(dt))};
    ck_assert_msg(t.v && t.f && t.raw, "out of host memory for %lld values", (long long)n);
    int p = dt == LR_F32 ? 24 : dt == LR_F16 ? 11 : 8; /* significand bits */
    uint64_t mmask = (1ull << (p - 1)) - 1;
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = splitmix64(&g_rng);
        unsigned sign = (unsigned)(r & 1);
        int e = (int)((r >> 1) % 3) - 2;
        uint64_t m = (r >> 8) & mmask;
        double x = ldexp((double)((1ull << (p - 1)) + m), e - (p - 1));
        t.v[i] = sign ? -x : x;
        t.f[i] = (float)t.v[i];
        switch (dt) {
        case LR_F32: {
            uint32_t u = (uint32_t)sign << 31 | (uint32_t)(e + 127) << 23 | (uint32_t)m;
            memcpy((uint32_t *)t.raw + i, &u, sizeof u);
            break;
        }
        case LR_BF16:
            ((uint16_t *)t.raw)[i] =
                (uint16_t)((unsigned)sign << 15 | (unsigned)(e + 127) << 7 | (unsigned)m);
            break;
        default: /* F16 */
            ((uint16_t *)t.raw)[i] =
                (uint16_t)((unsigned)sign << 15 | (unsigned)(e + 15) << 10 | (unsigned)m);
            break;
        }
    }
    return t;
}

static void h_free(htensor *t) {
    free(t->v), free(t->f), free(t->raw);
    memset(t, 0, sizeof *t);
}

static size_t h_bytes(const htensor *t) { return (size_t)t->n * lr_dtype_size(t->dt); }

/* ---- The references ------------------------------------------------------------------------ */

typedef struct {
    int64_t T, N, K;
    double *ref; /* (T, N) float64 */
    float *twin; /* (T, N) the emulated reference: float32, rounded once to dt */
} refs;

static refs refs_new(const htensor *x, const htensor *w, int64_t T, int64_t N, int64_t K, lr_dtype dt) {
    refs r = {T, N, K, malloc((size_t)(T * N) * sizeof(double)), malloc((size_t)(T * N) * sizeof(float))};
    ck_assert(r.ref && r.twin);
    lr_ref_linear_f64(r.ref, x->v, w->v, NULL, T, N, K);
    lr_ref_linear_f32(r.twin, x->f, w->f, NULL, T, N, K);
    lr_round_f32_n(r.twin, (size_t)(T * N), dt);
    return r;
}

static void refs_free(refs *r) { free(r->ref), free(r->twin); }

/* ---- The verdicts ---------------------------------------------------------------------------- */

typedef struct {
    bool pass;
    bool finite;
    double rel_l2, rel_l2_budget;              /* against float64 */
    double same_rel_l2, same_budget, max_ulps; /* against the emulated reference (lowp) */
    int64_t over;
    char why[768]; /* the failing verdicts, or "" */
} verdict;

/* Judges y (T, N; stored as ydt, holding values of dt) as test_gpu_ops judges an op: finite;
 * against float64 by relative L2, the worst token and every element; at F16 and BF16
 * against the emulated reference in ulps, within lr_same_precision_budget(dt, K). */
static verdict judge(const void *y, lr_dtype ydt, lr_dtype dt, const refs *r) {
    verdict v = {.pass = true, .finite = true};
    int64_t T = r->T, N = r->N;
    lr_tensor a = {.dtype = ydt, .ndim = 2, .shape = {T, N}, .data = y};
    lr_tensor b = {.dtype = LR_F64, .ndim = 2, .shape = {T, N}, .data = r->ref};
    lr_criteria c = op_criteria(dt);
    lr_metrics m;
    ck_assert_int_eq(lr_compare_stage(&a, &b, &c, &m), LR_OK);
    ck_assert_msg(m.nan_b == 0 && m.inf_b == 0, "the float64 reference has NaN/Inf");
    size_t used = 0;
#define WHY(...)                                                                                             \
    do {                                                                                                     \
        int n_ = snprintf(v.why + used, sizeof v.why - used, __VA_ARGS__);                                   \
        if (n_ > 0) used = used + (size_t)n_ < sizeof v.why ? used + (size_t)n_ : sizeof v.why - 1;          \
    } while (0)
    if (m.nan_a || m.inf_a) {
        v.pass = v.finite = false;
        WHY("%lld NaN and %lld Inf among %lld outputs (NaN: never written?); ", (long long)m.nan_a,
            (long long)m.inf_a, (long long)(T * N));
    }
    v.rel_l2 = m.rel_l2, v.rel_l2_budget = c.rel_l2;
    unsigned f = lr_metrics_failures(&m, c.rel_l2);
    if (f) {
        int64_t e = m.elem_index >= 0 ? m.elem_index : 0;
        v.pass = false;
        WHY("against float64:%s%s%s relative L2 %.3g (budget %.3g); worst token %lld at %.3g (budget %.3g); "
            "%lld elements outside %.3g rms + %.3g |ref|, the worst [%lld, %lld] %.9g against %.9g; ",
            f & LR_FAILS_REL_L2 ? " [relative L2]" : "", f & LR_FAILS_TOKEN ? " [token]" : "",
            f & LR_FAILS_ELEMENT ? " [element]" : "", m.rel_l2, c.rel_l2, (long long)m.token_rel_l2_row,
            m.token_rel_l2, c.token, (long long)m.elem_fail, c.atol, c.rtol, (long long)(e / N),
            (long long)(e % N), lr_tensor_get(&a, e), r->ref[e]);
    }
    if (lowp(dt)) {
        lr_tensor t = {.dtype = LR_F32, .ndim = 2, .shape = {T, N}, .data = r->twin};
        lr_same_budget sb = lr_same_precision_budget(dt, r->K);
        lr_same_metrics sm;
        ck_assert_int_eq(lr_same_compare(&a, &t, dt, sb, &sm), LR_OK);
        v.same_rel_l2 = sm.clipped, v.same_budget = sm.budget, v.max_ulps = sm.max_ulps, v.over = sm.over;
        if (!sm.pass) {
            int64_t wt = sm.worst_token >= 0 ? sm.worst_token : 0,
                    wf = sm.worst_feature >= 0 ? sm.worst_feature : 0;
            v.pass = false;
            WHY("against the emulated %s reference: relative L2 %.3g (budget %.3g); %lld elements over %g "
                "ulps "
                "(%lld allowed, none over %g), the worst [%lld, %lld] %.2f ulps: %.9g against %.9g; %lld "
                "non-finite",
                lr_dtype_name(dt), sm.clipped, sm.budget, (long long)sm.over, sb.ulps, (long long)sb.spare,
                sb.cap, (long long)wt, (long long)wf, sm.max_ulps, lr_tensor_get(&a, wt * N + wf),
                (double)r->twin[wt * N + wf], (long long)sm.nonfinite);
        }
    }
#undef WHY
    return v;
}

static void print_verdict(const char *what, lr_dtype dt, const char *shape, int64_t T, int64_t N, int64_t K,
                          const verdict *v) {
    printf("%-24s %-5s %-44s T %2lld (%lld x %lld): float64 rel L2 %.2e (%.2f of budget)", what,
           lr_dtype_name(dt), shape, (long long)T, (long long)N, (long long)K, v->rel_l2,
           v->rel_l2 / v->rel_l2_budget);
    if (lowp(dt))
        printf("; emulated rel L2 %.2e (%.2f of budget), max %.2f ulps, %lld over", v->same_rel_l2,
               v->same_rel_l2 / v->same_budget, v->max_ulps, (long long)v->over);
    printf("%s\n", v->pass ? "" : "  FAILS");
}

/* ---- The gemv kernel's float32 order, on the CPU ---------------------------------------------
 * gpu/linear.cu's gemv, per output (t, n): lane l of 32 accumulates with fmaf, in the
 * vector order (16-byte vectors i = l, l + 32, ..., each of V elements in order) or one
 * element at a time (k = l, l + 32, ...); then the xor butterfly (offsets 16 to 1) that
 * leaves lane 0 with the sum; rounded once to dt. terms < K: the planted twin (the last
 * input feature left out, one element at a time as tests/gpu_linear_planted.cu). */
static void sim_gemv(float *y, const float *x, const float *w, int64_t T, int64_t N, int64_t K, int V,
                     bool vec, int64_t terms, lr_dtype dt) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) {
            const float *xr = x + t * K, *wr = w + n * K;
            float acc[32];
            for (int l = 0; l < 32; l++) {
                float s = 0.0f;
                if (vec)
                    for (int64_t i = l; i < terms / V; i += 32)
                        for (int j = 0; j < V; j++)
                            s = fmaf(wr[i * V + j], xr[i * V + j], s);
                else
                    for (int64_t k = l; k < terms; k += 32)
                        s = fmaf(wr[k], xr[k], s);
                acc[l] = s;
            }
            for (int o = 16; o > 0; o >>= 1) {
                float nx[32];
                for (int l = 0; l < 32; l++)
                    nx[l] = acc[l] + acc[l ^ o];
                memcpy(acc, nx, sizeof acc);
            }
            y[t * N + n] = acc[0];
        }
    lr_round_f32_n(y, (size_t)(T * N), dt);
}

/* Loop index: dtype. On every CPU case at T <= 8 (the simulated kernel's range): gemv's
 * order passes judge(), in its vector order where the kernel takes it and one element at a
 * time (the order it takes otherwise) everywhere; the planted twin fails every case. */
START_TEST(test_verdicts_cpu) {
    lr_dtype dt = dtypes[_i];
    int V = 16 / (int)lr_dtype_size(dt);
    rng_start("verdicts_cpu", _i);
    int cases = 0, caught = 0;
    double worst[2] = {0, 0}; /* the largest share of a budget: float64, emulated */
    const char *all = getenv("LR_TEST_SIM_ALL"), *only = getenv("LR_TEST_SIM_SHAPE");
    for (int si = 0; si < N_SHAPES; si++) {
        if (!shapes[si].cpu && !(all && *all)) continue;
        if (only && *only && !strstr(shapes[si].name, only)) continue;
        int64_t N = shapes[si].N, K = shapes[si].K;
        htensor w = h_grid(dt, N * K);
        for (int ti = 0; ti < N_TS && Ts[ti] <= GEMV_T && Ts[ti] <= shapes[si].max_t; ti++) {
            int64_t T = Ts[ti];
            htensor x = h_grid(dt, T * K);
            refs r = refs_new(&x, &w, T, N, K, dt);
            float *y = malloc((size_t)(T * N) * sizeof *y);
            ck_assert_ptr_nonnull(y);
            bool kernel_vec = K % V == 0 && shapes[si].skew == 0;
            for (int order = 0; order < 2; order++) {
                if (order == 1 && !kernel_vec) continue;
                sim_gemv(y, x.f, w.f, T, N, K, V, order == 1, K, dt);
                verdict v = judge(y, LR_F32, dt, &r);
                ck_assert_msg(v.pass, "[seed %llu] simulated gemv (%s order) %s %s T %lld: %s",
                              (unsigned long long)g_seed, order ? "vector" : "element", lr_dtype_name(dt),
                              shapes[si].name, (long long)T, v.why);
                if (getenv("LR_TEST_VERBOSE"))
                    print_verdict(order ? "simulated gemv (vector)" : "simulated gemv (element)", dt,
                                  shapes[si].name, T, N, K, &v);
                worst[0] = fmax(worst[0], v.rel_l2 / v.rel_l2_budget);
                if (lowp(dt)) worst[1] = fmax(worst[1], v.same_rel_l2 / v.same_budget);
            }
            sim_gemv(y, x.f, w.f, T, N, K, V, false, K - 1, dt);
            verdict v = judge(y, LR_F32, dt, &r);
            if (T * N >= PLANTED_MIN_OUT) {
                cases++;
                caught += !v.pass;
            }
            if (v.pass)
                printf("test_gpu_linear: simulated planted gemv MISSED at %s %s T %lld (%lld outputs)\n",
                       lr_dtype_name(dt), shapes[si].name, (long long)T, (long long)(T * N));
            free(y);
            refs_free(&r);
            h_free(&x);
        }
        h_free(&w);
    }
    printf("test_gpu_linear: %s on the CPU: simulated gemv within at most %.2f of the float64 budget%s%.2f; "
           "the simulated planted gemv failed %d of %d cases of %d outputs or more\n",
           lr_dtype_name(dt), worst[0],
           lowp(dt) ? " and the emulated reference's relative L2 " : " (F32: no emulated verdict) ", worst[1],
           caught, cases, PLANTED_MIN_OUT);
    ck_assert_int_gt(cases, 0);
    ck_assert_msg(caught == cases, "[seed %llu] the simulated planted gemv passed %d of %d cases at %s",
                  (unsigned long long)g_seed, cases - caught, cases, lr_dtype_name(dt));
}
END_TEST

/* ---- Registry and arguments (no device needed) ---------------------------------------------- */

START_TEST(test_registry) {
    int f = lr_gpu_family_find("linear");
    ck_assert_int_eq(f, LR_GPU_FAM_LINEAR);
    int n = 0, defaults = 0;
    bool cublas = false, gemv = false;
    for (size_t i = 0; i < lr_gpu_variant_count(); i++) {
        const lr_gpu_variant *v = lr_gpu_variant_at(i);
        if (strcmp(v->family, "linear") != 0) continue;
        n++;
        defaults += v->is_default;
        if (!strcmp(v->name, "cublas")) cublas = v->is_default;
        if (!strcmp(v->name, "gemv")) gemv = strstr(v->description, "cublas") != NULL;
        ck_assert_int_eq(lr_gpu_variant_check("linear", v->name), LR_OK);
    }
    ck_assert_msg(n >= 2 && defaults == 1, "linear: %d variants, %d defaults", n, defaults);
    ck_assert_msg(cublas, "linear: cublas is not the default");
    ck_assert_msg(gemv,
                  "linear: no gemv variant, or its description does not say it hands large T to cublas");
    ck_assert_int_eq(lr_gpu_variant_check("linear", "nope"), LR_E_INVAL);
    ck_assert_msg(strstr(lr_last_error(), "gemv") && strstr(lr_last_error(), "cublas"),
                  "unhelpful message: %s", lr_last_error());
}
END_TEST

#define EXPECT_STATUS(call, want)                                                                            \
    do {                                                                                                     \
        int rc_ = (call);                                                                                    \
        ck_assert_msg(rc_ == (want), "%s returned %s, expected %s (%s)", #call, lr_status_name(rc_),         \
                      lr_status_name(want), lr_last_error());                                                \
    } while (0)

/* Rejected before any device work (NULL pointers, no handle). */
START_TEST(test_bad_arguments) {
    cudaStream_t s = 0;
    EXPECT_STATUS(lr_gpu_linear("nope", NULL, NULL, NULL, 1, 8, 8, LR_F32, NULL, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_linear(NULL, NULL, NULL, NULL, -1, 8, 8, LR_F32, NULL, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_linear(NULL, NULL, NULL, NULL, 1, -8, 8, LR_F32, NULL, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_linear(NULL, NULL, NULL, NULL, 1, 8, -8, LR_F32, NULL, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_linear(NULL, NULL, NULL, NULL, 1, 8, (int64_t)1 << 31, LR_F32, NULL, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_linear(NULL, NULL, NULL, NULL, 1, 8, 8, LR_F64, NULL, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_linear("gemv", NULL, NULL, NULL, 1, 8, 8, LR_I32, NULL, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_linear(NULL, NULL, NULL, NULL, 1, 8, 0, LR_F32, NULL, s),
                  LR_E_INVAL); /* no inputs */
    EXPECT_STATUS(lr_gpu_linear("gemv", NULL, NULL, NULL, 1, 8, 8, LR_BF16, NULL, s),
                  LR_E_INVAL); /* no handle */
    /* empty products do nothing, successfully, without a device */
    EXPECT_STATUS(lr_gpu_linear(NULL, NULL, NULL, NULL, 0, 8, 8, LR_F32, NULL, s), LR_OK);
    EXPECT_STATUS(lr_gpu_linear("gemv", NULL, NULL, NULL, 3, 0, 8, LR_F16, NULL, s), LR_OK);
}
END_TEST

/* ---- On the device ----------------------------------------------------------------------------- */

static cudaStream_t g_stream;
static cublasHandle_t g_blas;
static char g_case[256];

#define CHECK(cond, fmt, ...)                                                                                \
    ck_assert_msg(cond, "[%s, seed %llu] " fmt, g_case, (unsigned long long)g_seed, __VA_ARGS__)
#define CK_CUDA(call)                                                                                        \
    do {                                                                                                     \
        cudaError_t e_ = (call);                                                                             \
        CHECK(e_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(e_));                                   \
    } while (0)
#define RUN(call)                                                                                            \
    do {                                                                                                     \
        int rc_ = (call);                                                                                    \
        CHECK(rc_ == LR_OK, "%s returned %s: %s", #call, lr_status_name(rc_), lr_last_error());              \
        CK_CUDA(cudaStreamSynchronize(g_stream));                                                            \
    } while (0)

/* guard | skew | data | guard, guards and skew SENTINEL; data a copy of the input or, for
 * outputs, POISON (0xff bytes are NaN in F32, F16 and BF16). */
#define GUARD 4096
#define SENTINEL 0xa5
#define POISON 0xff

typedef struct {
    unsigned char *base;
    size_t bytes, skew;
} dbuf;

static void *dp(const dbuf *b) { return b->base + GUARD + b->skew; }

static dbuf d_new(size_t bytes, size_t skew, const void *init) {
    dbuf b = {NULL, bytes, skew};
    CK_CUDA(cudaMalloc((void **)&b.base, bytes + skew + 2 * GUARD));
    CK_CUDA(cudaMemset(b.base, SENTINEL, bytes + skew + 2 * GUARD));
    if (init)
        CK_CUDA(cudaMemcpy(dp(&b), init, bytes, cudaMemcpyHostToDevice));
    else
        CK_CUDA(cudaMemset(dp(&b), POISON, bytes));
    return b;
}

/* The data, after checking the guards; the caller frees it. */
static void *d_fetch(const dbuf *b, const char *what) {
    size_t head = GUARD + b->skew, all = head + b->bytes + GUARD;
    unsigned char *h = malloc(all);
    ck_assert_ptr_nonnull(h);
    CK_CUDA(cudaMemcpy(h, b->base, all, cudaMemcpyDeviceToHost));
    size_t before = 0, after = 0;
    for (size_t i = 0; i < head; i++)
        if (h[i] != SENTINEL && !before) before = head - i;
    for (size_t i = 0; i < GUARD; i++)
        if (h[head + b->bytes + i] != SENTINEL) after = i + 1;
    CHECK(!before, "%s: written up to %zu bytes before its start", what, before);
    CHECK(!after, "%s: written up to %zu bytes past its end", what, after);
    memmove(h, h + head, b->bytes);
    return h;
}

/* Frees b after checking its guards and, for an input (orig not NULL), that it is unchanged. */
static void d_free(dbuf *b, const char *what, const void *orig) {
    void *h = d_fetch(b, what);
    if (orig) CHECK(memcmp(h, orig, b->bytes) == 0, "%s: an input was modified", what);
    free(h);
    CK_CUDA(cudaFree(b->base));
    b->base = NULL;
}

typedef int (*linear_fn)(const char *variant, void *y, const void *x, const void *w, int64_t T, int64_t N,
                         int64_t K, lr_dtype dt, cublasHandle_t blas, cudaStream_t s);

/* Runs fn into a fresh poisoned buffer, twice; returns the first output (host, dt) after
 * checking guards and that the second is the same bit for bit. */
static void *run_twice(linear_fn fn, const char *variant, const dbuf *x, const dbuf *w, int64_t T, int64_t N,
                       int64_t K, lr_dtype dt) {
    size_t bytes = (size_t)(T * N) * lr_dtype_size(dt);
    void *out[2];
    for (int i = 0; i < 2; i++) {
        dbuf y = d_new(bytes, 0, NULL);
        RUN(fn(variant, dp(&y), dp(x), dp(w), T, N, K, dt, g_blas, g_stream));
        out[i] = d_fetch(&y, "y");
        d_free(&y, "y", NULL);
    }
    CHECK(memcmp(out[0], out[1], bytes) == 0, "%s: a second run differs", "y");
    free(out[1]);
    return out[0];
}

/* Loop index: shape * N_DTYPES + dtype. One weight per case, every T, every registered
 * linear variant (the default first), then the planted GEMV at T <= 8. */
START_TEST(test_linear) {
    int si = _i / N_DTYPES;
    lr_dtype dt = dtypes[_i % N_DTYPES];
    int64_t N = shapes[si].N, K = shapes[si].K;
    size_t es = lr_dtype_size(dt), skew = (size_t)shapes[si].skew * es;
    rng_start("linear", _i);
    snprintf(g_case, sizeof g_case, "%s %s", shapes[si].name, lr_dtype_name(dt));
    htensor w = h_grid(dt, N * K);
    dbuf d_w = d_new(h_bytes(&w), skew, w.raw);
    const lr_gpu_variant *vs[16];
    int nv = 0;
    for (size_t i = 0; i < lr_gpu_variant_count(); i++) {
        const lr_gpu_variant *v = lr_gpu_variant_at(i);
        if (strcmp(v->family, "linear") != 0) continue;
        ck_assert_int_lt(nv, 16);
        vs[nv++] = v;
        if (v->is_default && nv > 1) { /* the default first: others are compared with it */
            vs[nv - 1] = vs[0];
            vs[0] = v;
        }
    }
    int planted_cases = 0, planted_caught = 0;
    for (int ti = 0; ti < N_TS && Ts[ti] <= shapes[si].max_t; ti++) {
        int64_t T = Ts[ti];
        snprintf(g_case, sizeof g_case, "%s %s T %lld (N %lld, K %lld)", shapes[si].name, lr_dtype_name(dt),
                 (long long)T, (long long)N, (long long)K);
        htensor x = h_grid(dt, T * K);
        refs r = refs_new(&x, &w, T, N, K, dt);
        dbuf d_x = d_new(h_bytes(&x), skew, x.raw);
        void *def = NULL;
        for (int vi = 0; vi < nv; vi++) {
            void *y = run_twice(lr_gpu_linear, vs[vi]->name, &d_x, &d_w, T, N, K, dt);
            verdict v = judge(y, dt, dt, &r);
            char what[64];
            snprintf(what, sizeof what, "linear/%s", vs[vi]->name);
            print_verdict(what, dt, shapes[si].name, T, N, K, &v);
            CHECK(v.pass, "linear/%s: %s", vs[vi]->name, v.why);
            /* gemv hands T beyond its kernel to cublas: the same bits */
            if (!strcmp(vs[vi]->name, "gemv") && T > GEMV_T && def)
                CHECK(memcmp(y, def, (size_t)(T * N) * es) == 0,
                      "linear/gemv at T %lld is not cublas's result", (long long)T);
            if (vi == 0)
                def = y;
            else
                free(y);
        }
        free(def);
        if (T <= GEMV_T) {
            void *y = run_twice(lr_test_planted_linear, NULL, &d_x, &d_w, T, N, K, dt);
            verdict v = judge(y, dt, dt, &r);
            CHECK(v.finite, "planted gemv: %s", v.why);
            planted_cases += T * N >= PLANTED_MIN_OUT;
            if (!v.pass) {
                planted_caught += T * N >= PLANTED_MIN_OUT;
                printf("  planted gemv-drop-last caught at %s: %.200s\n", g_case, v.why);
            } else {
                print_verdict("planted gemv MISSED", dt, shapes[si].name, T, N, K, &v);
            }
            free(y);
        }
        d_free(&d_x, "x", x.raw);
        refs_free(&r);
        h_free(&x);
    }
    d_free(&d_w, "w", w.raw);
    h_free(&w);
    if (N * GEMV_T >= PLANTED_MIN_OUT) CHECK(planted_cases > 0, "%s", "no case for the planted gemv");
    CHECK(planted_caught == planted_cases,
          "the planted gemv (last input feature left out) passed %d of %d cases of %d outputs or more",
          planted_cases - planted_caught, planted_cases, PLANTED_MIN_OUT);
}
END_TEST

/* ---- Main ---------------------------------------------------------------------------------------- */

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
    printf("test_gpu_linear: seed %llu (LR_TEST_SEED=%llu repeats this run)\n", (unsigned long long)g_seed,
           (unsigned long long)g_seed);

    Suite *contract = suite_create("gpu_linear_contract");
    TCase *tc = tcase_create("registry_and_arguments");
    tcase_add_test(tc, test_registry);
    tcase_add_test(tc, test_bad_arguments);
    suite_add_tcase(contract, tc);
    tc = tcase_create("verdicts_cpu");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_verdicts_cpu, 0, N_DTYPES);
    suite_add_tcase(contract, tc);
    if (run(contract)) return 1;

    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) {
        printf("test_gpu_linear: no CUDA device (%s); skipping the kernel sweep\n",
               e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return 77;
    }
    if (cudaStreamCreate(&g_stream) != cudaSuccess || cublasCreate(&g_blas) != CUBLAS_STATUS_SUCCESS) {
        printf("test_gpu_linear: cannot create a stream or a cuBLAS handle; skipping\n");
        return 77;
    }

    Suite *ops = suite_create("gpu_linear");
    tc = tcase_create("variants");
    tcase_set_timeout(tc, 3600);
    tcase_add_loop_test(tc, test_linear, 0, N_SHAPES * N_DTYPES);
    suite_add_tcase(ops, tc);
    int failed = run(ops);
    cudaStreamSynchronize(g_stream);
    cublasDestroy(g_blas);
    cudaStreamDestroy(g_stream);
    if (failed) printf("test_gpu_linear: %d failed; seed %llu\n", failed, (unsigned long long)g_seed);
    return failed ? 1 : 0;
}

#endif /* LR_HAVE_CUDA */
