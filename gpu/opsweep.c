/* opsweep.c: the op sweep (opsweep.h): every kernel variant of every family against the
 * reference op it mirrors, op by op, in the spirit of llama.cpp's test-backend-ops. What
 * each family sweeps and why each budget is so: docs/adding-a-kernel.md ("Testing it",
 * "How a kernel is judged"); the budgets themselves: lr_op_budget (ref/check/opbudget.c).
 *
 * A case runs inside setjmp: a check that cannot go on (the op's status, a CUDA error,
 * guard bytes overwritten, an input modified, NaN in an output, host memory) longjmps to
 * the case's end, which then reports it; what the case allocated until then is not
 * freed (a failing kernel, or no memory, ends the useful part of a sweep anyway). The
 * criteria (float64 and same-precision verdicts) are recorded and the case goes on. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "opsweep.h"

#include "internal.h"
#include "llamaref_ops.h"

#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- The running sweep ----------------------------------------------------------------- */

typedef struct {
    const lr_opsweep_opts *o;
    lr_opsweep_cb cb;
    void *user;
    lr_opsweep_summary *sum;
    uint64_t rng;        /* per case: the seed, the case's names and index */
    cudaStream_t stream; /* ops run on a stream of their own */
    lr_gpu_attn_ws *ws;  /* attention's workspace for it */
    cublasHandle_t blas; /* linear's cuBLAS handle (NULL in host mode) */
    struct {             /* linear: the last weight drawn, kept for the next case of its key */
        bool held;
        uint64_t key;
        int64_t n;
        double *v;
        void *raw;
        float *f;
    } lw;
    struct { /* --perf: the last copy at a case's size (copy_at_size) */
        double bytes, seconds;
    } cs;
    lr_opsweep_case c; /* the current case */
    jmp_buf jb;
} sweep;

static _Thread_local sweep *S;

static void case_fail(bool hard, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A failure of the current case: the first is kept as its why. */
static void case_fail(bool hard, const char *fmt, ...) {
    lr_opsweep_case *c = &S->c;
    if (!c->failures++) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->why, sizeof c->why, fmt, ap);
        va_end(ap);
    }
    c->hard |= hard;
    if (c->status == LR_CASE_PASS) c->status = LR_CASE_FAIL;
}

/* A check the case cannot go on after: recorded, then to the case's end. */
#define HARD(cond, ...)                                                                                      \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            case_fail(true, __VA_ARGS__);                                                                    \
            longjmp(S->jb, 1);                                                                               \
        }                                                                                                    \
    } while (0)

/* The harness itself failed (host memory, cudaMalloc): the case is an ERROR. */
static void harness_error(const char *what) {
    lr_opsweep_case *c = &S->c;
    c->status = LR_CASE_ERROR;
    c->hard = true;
    if (!c->failures++) snprintf(c->why, sizeof c->why, "%s", what);
    longjmp(S->jb, 1);
}

static void *need(void *p) {
    if (!p) harness_error("out of host memory");
    return p;
}
#define NEW(n, type) ((type *)need(calloc((size_t)((n) > 0 ? (n) : 1), sizeof(type))))

#define CK_CUDA(call)                                                                                        \
    do {                                                                                                     \
        cudaError_t e_ = (call);                                                                             \
        HARD(e_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(e_));                                    \
    } while (0)

/* An op: LR_OK, then (on a device) the stream drains without error. */
#define RUN(call)                                                                                            \
    do {                                                                                                     \
        int rc_ = (call);                                                                                    \
        HARD(rc_ == LR_OK, "%s returned %s: %s", #call, lr_status_name(rc_), lr_last_error());               \
        if (!S->o->host) CK_CUDA(cudaStreamSynchronize(S->stream));                                          \
    } while (0)

static void set_shape(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_shape(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(S->c.shape, sizeof S->c.shape, fmt, ap);
    va_end(ap);
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A case's numbers depend only on the seed and the case (family, variant, op, dtype,
 * index), so --seed replays any case alone or within a sweep. */
static void rng_start(const char *a, const char *b, const char *c, int i) {
    uint64_t h = S->o->seed ^ (uint64_t)i * 0x2545f4914f6cdd1dull;
    const char *parts[] = {a, b, c};
    for (int k = 0; k < 3; k++)
        for (const char *p = parts[k]; p && *p; p++)
            h = (h ^ (uint64_t)(unsigned char)*p) * 0x100000001b3ull;
    S->rng = h;
}

static double uniform(double lo, double hi) {
    return lo + (hi - lo) * (double)(splitmix64(&S->rng) >> 11) * 0x1p-53;
}

static int64_t irand(int64_t lo, int64_t hi) { /* [lo, hi) */
    return lo + (int64_t)(splitmix64(&S->rng) % (uint64_t)(hi - lo));
}

/* ---- Host values in a dtype ------------------------------------------------------------
 * Rounding and encoding here are the sweep's own (round to nearest even through frexp
 * and nearbyint), independent of both the library's conversions and CUDA's. Values stay
 * far from overflow. */

static double round_to(lr_dtype dt, double x) {
    int p, emin;
    switch (dt) {
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
        return x; /* F64 */
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
    default: { /* F16 */
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
    htensor t = {dt, n, NEW(n, double), need(calloc((size_t)(n > 0 ? n : 1), lr_dtype_size(dt)))};
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

/* Random magnitudes in [lo, hi], each of either sign. */
static htensor h_random_signed(lr_dtype dt, int64_t n, double lo, double hi) {
    htensor t = h_new(dt, n);
    for (int64_t i = 0; i < n; i++)
        h_set(&t, i, (splitmix64(&S->rng) & 1 ? -1 : 1) * uniform(lo, hi));
    return t;
}

static size_t h_bytes(const htensor *t) { return (size_t)t->n * lr_dtype_size(t->dt); }

static void h_free(htensor *t) {
    free(t->v);
    free(t->raw);
}

static double *dcopy(const double *v, int64_t n) {
    double *c = NEW(n, double);
    memcpy(c, v, (size_t)n * sizeof *c);
    return c;
}

/* Exact values (representable in float32: inputs are rounded to the dtype, F32 at the
 * widest) as floats, for the emulated reference. */
static float *fcopy(const double *v, int64_t n) {
    float *c = NEW(n, float);
    for (int64_t i = 0; i < n; i++)
        c[i] = (float)v[i];
    return c;
}

static double *dcopy_f(const float *v, int64_t n) {
    double *c = NEW(n, double);
    for (int64_t i = 0; i < n; i++)
        c[i] = v[i];
    return c;
}

/* ---- Buffers with guards (device memory, or host memory in host mode) ------------------
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
    if (S->o->host) {
        b.base = need(malloc(bytes + 2 * GUARD));
        memset(b.base, SENTINEL, GUARD);
        memset(b.base + GUARD + bytes, SENTINEL, GUARD);
        if (init)
            memcpy(b.base + GUARD, init, bytes);
        else
            memset(b.base + GUARD, POISON, bytes);
        return b;
    }
    cudaError_t e = cudaMalloc((void **)&b.base, bytes + 2 * GUARD);
    if (e != cudaSuccess) {
        char msg[200];
        snprintf(msg, sizeof msg, "cudaMalloc of %zu bytes: %s", bytes + 2 * GUARD, cudaGetErrorString(e));
        harness_error(msg);
    }
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
    unsigned char *h = need(malloc(b->bytes + 2 * GUARD));
    if (S->o->host)
        memcpy(h, b->base, b->bytes + 2 * GUARD);
    else
        CK_CUDA(cudaMemcpy(h, b->base, b->bytes + 2 * GUARD, cudaMemcpyDeviceToHost));
    size_t before = 0, after = 0; /* distance of the farthest bad byte */
    for (size_t i = 0; i < GUARD; i++) {
        if (h[i] != SENTINEL && !before) before = GUARD - i;
        if (h[GUARD + b->bytes + i] != SENTINEL) after = i + 1;
    }
    HARD(!before, "%s: written up to %zu bytes before its start", what, before);
    HARD(!after, "%s: written up to %zu bytes past its end", what, after);
    memmove(h, h + GUARD, b->bytes);
    return h;
}

/* Frees b after checking its guards and, for an input (orig not NULL), that it is
 * unchanged. */
static void d_free(dbuf *b, const char *what, const void *orig) {
    void *h = d_fetch(b, what);
    int same = !orig || memcmp(h, orig, b->bytes) == 0;
    free(h);
    HARD(same, "%s: an input was modified", what);
    if (S->o->host)
        free(b->base);
    else
        CK_CUDA(cudaFree(b->base));
    b->base = NULL;
}

/* ---- Timing (--perf) ------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    cudaEvent_t e0, e1;
    double t[256];
    int i, n, warm;
} timer;

static bool timing(void) { return S->o->perf && !S->o->host; }

static void timer_start(timer *tm) {
    tm->warm = S->o->warmup > 0 ? S->o->warmup : 3;
    tm->n = S->o->repeats > 0 ? S->o->repeats : 20;
    if (tm->n > 256) tm->n = 256;
    tm->i = 0;
    CK_CUDA(cudaEventCreate(&tm->e0));
    CK_CUDA(cudaEventCreate(&tm->e1));
}

static bool timer_more(timer *tm) { return tm->i < tm->warm + tm->n; }

static void timer_before(timer *tm) { CK_CUDA(cudaEventRecord(tm->e0, S->stream)); }

static void timer_after(timer *tm) {
    CK_CUDA(cudaEventRecord(tm->e1, S->stream));
    CK_CUDA(cudaEventSynchronize(tm->e1));
    float ms;
    CK_CUDA(cudaEventElapsedTime(&ms, tm->e0, tm->e1));
    if (tm->i >= tm->warm) tm->t[tm->i - tm->warm] = ms * 1e-3;
    tm->i++;
}

/* The ceiling at the case's own size: lr_gpu_copy_bandwidth's device-to-device copy of
 * bytes / 2 (so bytes read plus written, as the case's bytes count), timed launch by launch
 * with the case's warm-ups and repeats, so that it pays what one of the case's launches
 * pays (the launch, the ramp to full bandwidth, the drain); the 2 GiB copy of the summary
 * has none of those costs. Its median seconds, kept for the next case of the same bytes (a
 * shape's variants); 0 where it could not be measured. */
static double copy_at_size(const timer *tm, double bytes) {
    if (S->cs.bytes == bytes) return S->cs.seconds;
    const size_t half = ((size_t)(bytes / 2) + 15) & ~(size_t)15;
    double bw = 0;
    S->cs.bytes = bytes;
    S->cs.seconds = half > 0 && lr_gpu_copy_bandwidth(half, tm->warm, tm->n, &bw) == LR_OK && bw > 0
                        ? 2.0 * (double)half / bw
                        : 0;
    return S->cs.seconds;
}

static void timer_end(timer *tm, double bytes, double flops) {
    cudaEventDestroy(tm->e0);
    cudaEventDestroy(tm->e1);
    qsort(tm->t, (size_t)tm->n, sizeof tm->t[0], cmp_double);
    S->c.seconds = tm->n % 2 ? tm->t[tm->n / 2] : 0.5 * (tm->t[tm->n / 2 - 1] + tm->t[tm->n / 2]);
    S->c.bytes = bytes;
    S->c.flops = flops;
    S->c.copy_seconds = bytes > 0 ? copy_at_size(tm, bytes) : 0;
}

/* Times call (an op's launch, status checked) as --perf asks, after the case's checks:
 * each run on the case's buffers, the median of the repeats. */
#define TIME(bytes, flops, call)                                                                             \
    do {                                                                                                     \
        if (timing()) {                                                                                      \
            timer tm_;                                                                                       \
            timer_start(&tm_);                                                                               \
            while (timer_more(&tm_)) {                                                                       \
                timer_before(&tm_);                                                                          \
                int rc_ = (call);                                                                            \
                HARD(rc_ == LR_OK, "timing: %s returned %s: %s", #call, lr_status_name(rc_),                 \
                     lr_last_error());                                                                       \
                timer_after(&tm_);                                                                           \
            }                                                                                                \
            timer_end(&tm_, (double)(bytes), (double)(flops));                                               \
        }                                                                                                    \
    } while (0)

int lr_gpu_copy_bandwidth(size_t bytes, int warmup, int repeats, double *out) {
    if (!out || bytes == 0 || warmup < 0 || repeats < 1 || repeats > 1000)
        return lr_fail(LR_E_INVAL, "lr_gpu_copy_bandwidth: bytes %zu, warmup %d, repeats %d", bytes, warmup,
                       repeats);
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double *t = calloc((size_t)repeats, sizeof *t);
    int rc = LR_OK;
    cudaError_t e;
    if (!t) return lr_fail(LR_E_NOMEM, "lr_gpu_copy_bandwidth: out of memory");
    if ((e = cudaMalloc(&a, bytes)) != cudaSuccess || (e = cudaMalloc(&b, bytes)) != cudaSuccess ||
        (e = cudaMemset(a, 1, bytes)) != cudaSuccess || (e = cudaEventCreate(&e0)) != cudaSuccess ||
        (e = cudaEventCreate(&e1)) != cudaSuccess)
        goto fail;
    for (int i = 0; i < warmup + repeats; i++) {
        float ms;
        if ((e = cudaEventRecord(e0, 0)) != cudaSuccess ||
            (e = cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0)) != cudaSuccess ||
            (e = cudaEventRecord(e1, 0)) != cudaSuccess || (e = cudaEventSynchronize(e1)) != cudaSuccess ||
            (e = cudaEventElapsedTime(&ms, e0, e1)) != cudaSuccess)
            goto fail;
        if (i >= warmup) t[i - warmup] = ms * 1e-3;
    }
    qsort(t, (size_t)repeats, sizeof *t, cmp_double);
    double med = repeats % 2 ? t[repeats / 2] : 0.5 * (t[repeats / 2 - 1] + t[repeats / 2]);
    *out = 2.0 * (double)bytes / med;
    goto done;
fail:
    rc = lr_fail(LR_E_DEVICE, "copy bandwidth (%zu bytes): %s", bytes, cudaGetErrorString(e));
done:
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    free(t);
    return rc;
}

/* ---- Comparison ------------------------------------------------------------------------ */

static int64_t first_nonfinite(const lr_tensor *t) {
    for (int64_t i = 0; i < t->shape[0] * (t->ndim > 1 ? t->shape[1] : 1); i++)
        if (!isfinite(lr_tensor_get(t, i))) return i;
    return -1;
}

/* An emulated output in place: the twin's float32 result rounded once to the dtype, as
 * the CUDA path stores it (nothing at F32). */
static void emulate_store(float *x, int64_t n, lr_dtype dt) { lr_round_f32_n(x, (size_t)n, dt); }

static lr_op_criteria budget_of(const char *op, lr_dtype dt, int64_t reduction) {
    lr_op_criteria c;
    if (lr_op_budget(op, dt, reduction, &c) != LR_OK) harness_error(lr_last_error());
    return c;
}

/* Judges raw (T, W; dt) as the model-level verdict judges a stage: finite; against ref
 * (T, W; float64) by relative L2, the worst token and every element (c.f64); and where
 * c.has_same, against twin (T, W; float32 values already in the dtype: the emulated
 * reference) in ulps within c.same. NaN is a hard failure; the criteria are verdicts. */
/* Attention that rounds P, against its emulated reference: a flip of one weight P_j
 * (float32 order moving a score across one of its rounding boundaries) moves one (token,
 * head) row, all of its head_dim outputs by ulp(P_j) |v_j - O| / l: in a sharp row up to
 * every element of the row past one ulp, more than the share a small case allows (the CPU's
 * simulated fa2 at "long", hd 64, BF16: 11 elements of one row over one ulp, 1 of about
 * 10 seeds). So where the ulps verdict fails with no element over the cap, the case is
 * judged again with the worst element's row of seg outputs taken as the reference's; it
 * passes if the rest does. A fault that moves more than one row, or any element past the
 * cap, still fails. 0: no such row (every other op). */
static void same_judge(const lr_tensor *a, const lr_tensor *r, const lr_tensor *jump, lr_dtype dt,
                       const lr_same_budget *b, lr_same_metrics *m) {
    int rc = jump ? lr_same_compare_flips(a, r, jump, dt, *b, m) : lr_same_compare(a, r, dt, *b, m);
    if (rc != LR_OK) harness_error(lr_last_error());
}

static bool passes_but_one_row(const lr_tensor *a, const lr_tensor *r, const lr_tensor *jump, lr_dtype dt,
                               const lr_same_budget *b, const lr_same_metrics *sm, int64_t seg) {
    if (seg <= 0 || sm->nonfinite || sm->max_ulps > b->cap || sm->worst_token < 0) return false;
    int64_t T = a->shape[0], W = a->shape[1];
    float *x = malloc((size_t)(T * W) * sizeof *x);
    if (!x) harness_error("out of memory");
    for (int64_t i = 0; i < T * W; i++) x[i] = (float)lr_tensor_get(a, i);
    int64_t row = sm->worst_token * W + sm->worst_feature / seg * seg;
    for (int64_t i = row; i < row + seg && i < (sm->worst_token + 1) * W; i++) x[i] = (float)lr_tensor_get(r, i);
    lr_tensor c = {.dtype = LR_F32, .ndim = 2, .shape = {T, W}, .data = x};
    lr_same_metrics m2;
    same_judge(&c, r, jump, dt, b, &m2);
    free(x);
    return m2.pass;
}

static void judge_rows(const char *what, const void *raw, lr_dtype dt, int64_t T, int64_t W, const double *ref,
                       const lr_op_criteria *oc, const float *twin, int64_t seg, const double *flips) {
    lr_tensor a = {.dtype = dt, .ndim = 2, .shape = {T, W}, .data = raw};
    lr_tensor b = {.dtype = LR_F64, .ndim = 2, .shape = {T, W}, .data = ref};
    const lr_criteria *c = &oc->f64;
    lr_metrics m;
    if (lr_compare_stage(&a, &b, c, &m) != LR_OK) harness_error(lr_last_error());
    HARD(m.nan_b == 0 && m.inf_b == 0, "%s: the reference has NaN/Inf", what);
    HARD(m.nan_a == 0 && m.inf_a == 0,
         "%s: %lld NaN and %lld Inf among %lld outputs, the first at %lld (NaN: never written?)", what,
         (long long)m.nan_a, (long long)m.inf_a, (long long)(T * W), (long long)first_nonfinite(&a));
    unsigned f = lr_metrics_failures(&m, c->rel_l2);
    double used = m.rel_l2 / c->rel_l2;
    if (m.token_rel_l2 / c->token > used) used = m.token_rel_l2 / c->token;
    if (m.elem_ratio > used) used = m.elem_ratio;
    if (used > S->c.f64_used) S->c.f64_used = used;
    int64_t e = m.elem_index >= 0 ? m.elem_index : 0, tw = m.token_rel_l2_row;
    if (f)
        case_fail(
            false,
            "%s against float64:%s%s%s relative L2 %.3g (budget %.3g); worst token %lld at %.3g (budget "
            "%.3g); "
            "%lld elements outside %.3g rms + %.3g |ref|, the worst [%lld, %lld] %.9g against %.9g (%.3g of "
            "its allowance)",
            what, f & LR_FAILS_REL_L2 ? " [relative L2]" : "", f & LR_FAILS_TOKEN ? " [token]" : "",
            f & LR_FAILS_ELEMENT ? " [element]" : "", m.rel_l2, c->rel_l2, (long long)tw, m.token_rel_l2,
            c->token, (long long)m.elem_fail, c->atol, c->rtol, (long long)(e / W), (long long)(e % W),
            lr_tensor_get(&a, e), ref[e], m.elem_ratio);
    if (!oc->has_same || !twin) return;
    lr_tensor r = {.dtype = LR_F32, .ndim = 2, .shape = {T, W}, .data = twin};
    lr_tensor jt = {.dtype = LR_F64, .ndim = 2, .shape = {T, W}, .data = flips};
    const lr_tensor *jump = flips ? &jt : NULL;
    lr_same_metrics sm;
    same_judge(&a, &r, jump, dt, &oc->same, &sm);
    if (sm.max_ulps > S->c.max_ulps) S->c.max_ulps = sm.max_ulps;
    int64_t wt = sm.worst_token >= 0 ? sm.worst_token : 0, wf = sm.worst_feature >= 0 ? sm.worst_feature : 0;
    if (!sm.pass && !passes_but_one_row(&a, &r, jump, dt, &oc->same, &sm, seg))
        case_fail(false,
                  "%s against the emulated %s reference: relative L2 %.3g (budget %.3g); %lld elements over "
                  "%g ulps "
                  "(%lld allowed, none over %g), the worst [%lld, %lld] %.2f ulps: %.9g against %.9g; %lld "
                  "non-finite",
                  what, lr_dtype_name(dt), sm.rel_l2, sm.budget, (long long)sm.over, oc->same.ulps,
                  (long long)oc->same.spare, oc->same.cap, (long long)wt, (long long)wf, sm.max_ulps,
                  lr_tensor_get(&a, wt * W + wf), (double)twin[wt * W + wf], (long long)sm.nonfinite);
}

static void judge(const char *what, const void *raw, lr_dtype dt, int64_t T, int64_t W, const double *ref,
                  const lr_op_criteria *oc, const float *twin) {
    judge_rows(what, raw, dt, T, W, ref, oc, twin, 0, NULL);
}

/* Outputs that must equal the reference exactly (copies, conversions): a verdict. */
static void expect_exact(const char *what, const void *raw, lr_dtype dt, const double *ref, int64_t n) {
    lr_tensor a = {.dtype = dt, .ndim = 1, .shape = {n}, .data = raw};
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        double x = lr_tensor_get(&a, i);
        if (x == ref[i] && signbit(x) == signbit(ref[i])) continue;
        if (first < 0) first = i;
        bad++;
    }
    if (bad)
        case_fail(false, "%s: %lld of %lld elements differ, the first at %lld: %.9g, expected exactly %.9g",
                  what, (long long)bad, (long long)n, (long long)first, lr_tensor_get(&a, first), ref[first]);
}

/* Columns [c0, c0 + w) of rows (T, ld) of elements of size es, packed. */
static void *take_cols(const void *src, size_t es, int64_t T, int64_t ld, int64_t c0, int64_t w) {
    unsigned char *out = need(malloc((size_t)(T * w > 0 ? T * w : 1) * es));
    for (int64_t t = 0; t < T; t++)
        memcpy(out + (size_t)(t * w) * es, (const unsigned char *)src + (size_t)(t * ld + c0) * es,
               (size_t)w * es);
    return out;
}

/* The launcher a target gives, or the library's entry point. */
#define LAUNCH(t, slot, lib) ((t)->slot ? (t)->slot : (lib))

/* ---- embedding ------------------------------------------------------------------------- */

static void case_embedding(const lr_opsweep_target *v, lr_dtype dt, const lr_opsweep_shape *s, int sub) {
    (void)sub;
    int64_t T = s->T, H = s->H, start = s->start, shard = s->shard;
    set_shape("T %lld H %lld shard [%lld, +%lld)", (long long)T, (long long)H, (long long)start,
              (long long)shard);
    htensor w = h_random(dt, shard * H, -1, 1);
    int64_t *ids = NEW(T, int64_t);
    /* About a third of the tokens fall outside the shard, on either side. */
    for (int64_t t = 0; t < T; t++)
        ids[t] = irand(start - shard / 2 - 1, start + shard + shard / 2);
    ids[0] = start + shard - 1; /* the shard's last row */
    double *ref = NEW(T * H, double);
    lr_ref_vocab_parallel_embedding_f64(ref, ids, T, w.v, start, shard, H);
    dbuf d_ids = d_new((size_t)T * sizeof *ids, ids), d_w = d_upload(&w);
    dbuf d_out = d_new((size_t)(T * H) * lr_dtype_size(dt), NULL);
    int (*f)(const char *, void *, const int64_t *, int64_t, const void *, int64_t, int64_t, int64_t,
             lr_dtype, cudaStream_t) = LAUNCH(v, embedding, lr_gpu_embedding);
    RUN(f(v->name, dp(&d_out), dp(&d_ids), T, dp(&d_w), start, shard, H, dt, S->stream));
    void *out = d_fetch(&d_out, "out");
    expect_exact("out", out, dt, ref, T * H);
    /* bytes: the ids, the rows read (at most T) and the output */
    TIME(T * 8 + 2 * T * H * (int64_t)lr_dtype_size(dt), 0,
         f(v->name, dp(&d_out), dp(&d_ids), T, dp(&d_w), start, shard, H, dt, S->stream));
    free(out);
    d_free(&d_out, "out", NULL);
    d_free(&d_ids, "ids", ids);
    d_free(&d_w, "w", w.raw);
    h_free(&w);
    free(ids);
    free(ref);
}

/* ---- rmsnorm --------------------------------------------------------------------------- */

/* Inputs an element-level bug cannot hide in: magnitudes bounded away from zero (x in
 * [0.25, 1.5]; the float32 residual in [2, 3], so residual + x is at least 0.5) and
 * weights 1 +- [0.1, 0.3], either sign, so that leaving any one element's weight out
 * moves that element by at least a tenth (RMSNorm's rounding never cancels: the values'
 * size does not matter to a correct kernel). sub 1: fused_add_rms_norm. */
static void case_rmsnorm(const lr_opsweep_target *v, lr_dtype dt, const lr_opsweep_shape *s, int fused) {
    int64_t T = s->T, H = s->H, n = T * H;
    double eps = (T + H) % 2 ? 1e-6 : 1e-5;
    set_shape("T %lld H %lld", (long long)T, (long long)H);
    htensor x = h_random_signed(dt, n, 0.25, 1.5), w = h_new(dt, H),
            r = h_random_signed(LR_F32, fused ? n : 0, 2, 3);
    for (int64_t i = 0; i < H; i++)
        h_set(&w, i, 1 + (splitmix64(&S->rng) & 1 ? -1 : 1) * uniform(0.1, 0.3));
    double *ref = NEW(n, double), *res = NULL, *res_emul = NULL;
    /* The emulated reference (--backend cpu --precision bf16|fp16): float32 arithmetic on
     * the dtype's values (ref/cpu/ops/rmsnorm.c), y rounded once. */
    float *xf = fcopy(x.v, n), *wf = fcopy(w.v, H), *emul = NEW(n, float);
    if (fused) {
        res = dcopy(r.v, n);
        float *resf = fcopy(r.v, n);
        lr_ref_fused_add_rms_norm_f64(ref, res, x.v, w.v, T, H, eps);
        lr_ref_fused_add_rms_norm_emulated(emul, resf, xf, wf, T, H, eps, dt);
        res_emul = dcopy_f(resf, n);
        free(resf);
    } else {
        lr_ref_rms_norm_f64(ref, x.v, w.v, T, H, eps);
        lr_ref_rms_norm_emulated(emul, xf, wf, T, H, eps, dt);
    }
    free(xf), free(wf);

    dbuf d_x = d_upload(&x), d_w = d_upload(&w), d_r = {NULL, 0};
    dbuf d_y = d_new((size_t)n * lr_dtype_size(dt), NULL);
    int (*plain)(const char *, void *, const void *, const void *, int64_t, int64_t, float, lr_dtype,
                 cudaStream_t) = LAUNCH(v, rms_norm, lr_gpu_rms_norm);
    int (*fadd)(const char *, void *, float *, const void *, const void *, int64_t, int64_t, float, lr_dtype,
                cudaStream_t) = LAUNCH(v, fused_add_rms_norm, lr_gpu_fused_add_rms_norm);
    if (fused) {
        d_r = d_upload(&r);
        RUN(fadd(v->name, dp(&d_y), dp(&d_r), dp(&d_x), dp(&d_w), T, H, (float)eps, dt, S->stream));
    } else {
        RUN(plain(v->name, dp(&d_y), dp(&d_x), dp(&d_w), T, H, (float)eps, dt, S->stream));
    }
    void *y = d_fetch(&d_y, "y"), *rout = fused ? d_fetch(&d_r, "residual") : NULL;
    lr_op_criteria c = budget_of(fused ? "fused_add_rms_norm" : "rms_norm", dt, H);
    judge("y", y, dt, T, H, ref, &c, emul);
    if (fused) {
        lr_op_criteria cr = budget_of("add_residual", LR_F32, 1);
        judge("residual", rout, LR_F32, T, H, res, &cr, NULL);
        /* residual + x: one float32 addition on both sides */
        expect_exact("residual (against the emulated reference)", rout, LR_F32, res_emul, n);
    }
    size_t es = lr_dtype_size(dt);
    if (fused)
        TIME(n * (2 * (int64_t)es + 8) + H * (int64_t)es, 0,
             fadd(v->name, dp(&d_y), dp(&d_r), dp(&d_x), dp(&d_w), T, H, (float)eps, dt, S->stream));
    else
        TIME(2 * n * (int64_t)es + H * (int64_t)es, 0,
             plain(v->name, dp(&d_y), dp(&d_x), dp(&d_w), T, H, (float)eps, dt, S->stream));
    free(y), free(rout);
    d_free(&d_y, "y", NULL);
    if (fused) d_free(&d_r, "residual", NULL);
    d_free(&d_x, "x", x.raw);
    d_free(&d_w, "w", w.raw);
    h_free(&x), h_free(&w), h_free(&r);
    free(ref), free(res), free(emul), free(res_emul);
}

/* ---- rotary ---------------------------------------------------------------------------- */

/* Rows as the backend has them: q heads (rotated), then k and v heads; q and k are
 * rotated in one call when they are adjacent, so heads spans both; extra columns after
 * them stay untouched (checked bit for bit). */
static void case_rotary(const lr_opsweep_target *v, lr_dtype dt, const lr_opsweep_shape *s, int sub) {
    (void)sub;
    int64_t T = s->T, nheads = s->heads, hd = s->hd, w = nheads * hd, ldx = w + s->extra, half = hd / 2;
    size_t es = lr_dtype_size(dt);
    set_shape("T %lld heads %lld hd %lld ld %lld", (long long)T, (long long)nheads, (long long)hd,
              (long long)ldx);
    htensor x = h_random(dt, T * ldx, -2, 2);
    int64_t *pos = NEW(T, int64_t);
    double *inv_freq = NEW(half, double), *cs = NEW(hd, double);
    float *csf = NEW(hd, float);
    /* Positions up to 2^20, where a float32 angle is off by hundredths of a radian. */
    for (int64_t t = 0; t < T; t++)
        pos[t] = t == 0 ? 0 : t == 1 ? (1 << 20) - 1 : irand(0, 8192);
    for (int64_t i = 0; i < half; i++)
        inv_freq[i] = pow(500000.0, -2.0 * (double)i / (double)hd);
    double *full = dcopy(x.v, T * ldx);
    lr_ref_rotary_embedding_f64(full, ldx, T, nheads, hd, pos, inv_freq, cs);
    double *ref = take_cols(full, sizeof(double), T, ldx, 0, w);
    /* The emulated reference: cos and sin of the float64 angle rounded to float32, the
     * rotation in float32, rounded once (ref/cpu/ops/rotary.c). */
    float *emul_full = fcopy(x.v, T * ldx);
    lr_ref_rotary_embedding_emulated(emul_full, ldx, T, nheads, hd, pos, inv_freq, csf, dt);
    float *emul = take_cols(emul_full, sizeof(float), T, ldx, 0, w);
    free(cs), free(csf), free(full), free(emul_full);

    dbuf d_x = d_upload(&x), d_pos = d_new((size_t)T * sizeof *pos, pos);
    dbuf d_f = d_new((size_t)half * sizeof *inv_freq, inv_freq);
    int (*f)(const char *, void *, int64_t, int64_t, int64_t, int64_t, const int64_t *, const double *,
             lr_dtype, cudaStream_t) = LAUNCH(v, rotary, lr_gpu_rotary);
    RUN(f(v->name, dp(&d_x), ldx, T, nheads, hd, dp(&d_pos), dp(&d_f), dt, S->stream));
    void *out = d_fetch(&d_x, "x");
    void *rot = take_cols(out, es, T, ldx, 0, w);
    /* No stage holds q and k after RoPE; the model judges them at o_proj.input, an
     * attention stage. No reduction: each output is two products and a sum. */
    lr_op_criteria c = budget_of("rotary", dt, 1);
    judge("rotated heads", rot, dt, T, w, ref, &c, emul);
    void *rest = take_cols(out, es, T, ldx, w, ldx - w), *rest0 = take_cols(x.raw, es, T, ldx, w, ldx - w);
    if (memcmp(rest, rest0, (size_t)(T * (ldx - w)) * es) != 0)
        case_fail(true, "columns after the rotated heads changed");
    TIME(2 * T * w * (int64_t)es + T * 8, 0,
         f(v->name, dp(&d_x), ldx, T, nheads, hd, dp(&d_pos), dp(&d_f), dt, S->stream));
    free(out), free(rot), free(rest), free(rest0);
    d_free(&d_x, "x", NULL);
    d_free(&d_pos, "positions", pos);
    d_free(&d_f, "inv_freq", inv_freq);
    h_free(&x);
    free(pos), free(inv_freq), free(ref), free(emul);
}

/* ---- activation ------------------------------------------------------------------------ */

/* sub 0: silu_and_mul; 1: silu (no variants: the family default). Gates far into both
 * tails of silu; up around 1. */
static void case_activation(const lr_opsweep_target *v, lr_dtype dt, const lr_opsweep_shape *s, int sub) {
    int64_t T = s->T, NI = s->H, n = T * NI;
    bool mul = sub == 0;
    set_shape("T %lld NI %lld", (long long)T, (long long)NI);
    htensor gu = h_new(dt, T * 2 * NI);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < 2 * NI; i++)
            h_set(&gu, t * 2 * NI + i, i < NI ? uniform(-12, 12) : uniform(-2, 2));
    double *ref = NEW(n, double);
    /* The emulated reference: g / (1 + expf(-g)) (* up) in float32, rounded once
     * (ref/cpu/ops/activation.c). */
    float *guf = fcopy(gu.v, T * 2 * NI), *emul = NEW(n, float);
    if (mul) {
        lr_ref_silu_and_mul_f64(ref, gu.v, T, NI);
        lr_ref_silu_and_mul_emulated(emul, guf, T, NI, dt);
    } else {
        lr_ref_silu_f64(ref, gu.v, T, NI);
        lr_ref_silu_emulated(emul, guf, T, NI, dt);
    }
    dbuf d_gu = d_upload(&gu), d_out = d_new((size_t)n * lr_dtype_size(dt), NULL);
    int (*fm)(const char *, void *, const void *, int64_t, int64_t, lr_dtype, cudaStream_t) =
        LAUNCH(v, silu_and_mul, lr_gpu_silu_and_mul);
    int (*fs)(void *, const void *, int64_t, int64_t, lr_dtype, cudaStream_t) = LAUNCH(v, silu, lr_gpu_silu);
    if (mul)
        RUN(fm(v->name, dp(&d_out), dp(&d_gu), T, NI, dt, S->stream));
    else
        RUN(fs(dp(&d_out), dp(&d_gu), T, NI, dt, S->stream));
    void *out = d_fetch(&d_out, "out");
    lr_op_criteria c = budget_of(mul ? "silu_and_mul" : "silu", dt, 1);
    judge("out", out, dt, T, NI, ref, &c, emul);
    int64_t es = (int64_t)lr_dtype_size(dt);
    if (mul)
        TIME(3 * n * es, 0, fm(v->name, dp(&d_out), dp(&d_gu), T, NI, dt, S->stream));
    else
        TIME(2 * n * es, 0, fs(dp(&d_out), dp(&d_gu), T, NI, dt, S->stream));
    free(out);
    d_free(&d_out, "out", NULL);
    d_free(&d_gu, "gate_up", gu.raw);
    h_free(&gu);
    free(ref), free(guf), free(emul);
}

/* ---- linear ---------------------------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const char *p) {
    for (; p && *p; p++)
        h = (h ^ (uint64_t)(unsigned char)*p) * 0x100000001b3ull;
    return h;
}

/* The weight (skew + N K values of dt, magnitudes in [0.25, 2) of either sign, so that no
 * term of a product hides), drawn from the seed, the variant, the dtype and the shape
 * alone, not the case: the cases of one weight at each T share it, drawn once (a Llama
 * LM head is 10^9 values). */
static void linear_weight(const char *variant, lr_dtype dt, int64_t N, int64_t K, int64_t skew) {
    uint64_t key = fnv(fnv(S->o->seed ^ 0x6c696e656172ull, variant), lr_dtype_name(dt));
    key = (key ^ (uint64_t)N) * 0x100000001b3ull;
    key = (key ^ (uint64_t)K) * 0x100000001b3ull;
    key = (key ^ (uint64_t)skew) * 0x100000001b3ull;
    if (S->lw.held && S->lw.key == key) return;
    free(S->lw.v), free(S->lw.raw), free(S->lw.f);
    S->lw.held = false;
    uint64_t case_rng = S->rng;
    S->rng = key;
    htensor w = h_random_signed(dt, skew + N * K, 0.25, 2);
    S->rng = case_rng;
    S->lw.v = w.v, S->lw.raw = w.raw, S->lw.n = w.n, S->lw.f = fcopy(w.v + skew, N * K);
    S->lw.key = key, S->lw.held = true;
}

/* y (T, N) = x (T, K) w (N, K)^T; x and w start extra elements past a 16-byte boundary
 * (the GEMV's element-by-element path). The emulated reference: lr_ref_linear_f32 on the
 * same values, rounded once (lr_ref_linear_emulated without a bias: the bias is
 * lr_gpu_add_bias, a helper); the reduction is K terms long. */
static void case_linear(const lr_opsweep_target *v, lr_dtype dt, const lr_opsweep_shape *s, int sub) {
    (void)sub;
    int64_t T = s->T, N = s->N, K = s->K, skew = s->extra;
    size_t es = lr_dtype_size(dt);
    set_shape("T %lld N %lld K %lld%s", (long long)T, (long long)N, (long long)K,
              skew ? " (x, w off 16 bytes)" : "");
    linear_weight(v->name, dt, N, K, skew);
    htensor x = h_random_signed(dt, skew + T * K, 0.25, 2);
    double *ref = NEW(T * N, double);
    lr_ref_linear_f64(ref, x.v + skew, S->lw.v + skew, NULL, T, N, K);
    float *emul = NULL;
    if (dt != LR_F32) {
        float *xf = fcopy(x.v + skew, T * K);
        emul = NEW(T * N, float);
        lr_ref_linear_emulated(emul, xf, S->lw.f, NULL, T, N, K, dt);
        free(xf);
    }
    dbuf d_x = d_upload(&x), d_w = d_new((size_t)S->lw.n * es, S->lw.raw);
    dbuf d_y = d_new((size_t)(T * N) * es, NULL);
    char *px = (char *)dp(&d_x) + skew * (int64_t)es, *pw = (char *)dp(&d_w) + skew * (int64_t)es;
    int (*f)(const char *, void *, const void *, const void *, int64_t, int64_t, int64_t, lr_dtype,
             cublasHandle_t, cudaStream_t) = LAUNCH(v, linear, lr_gpu_linear);
    RUN(f(v->name, dp(&d_y), px, pw, T, N, K, dt, S->blas, S->stream));
    void *y = d_fetch(&d_y, "y");
    lr_op_criteria c = budget_of("linear", dt, K);
    judge("y", y, dt, T, N, ref, &c, emul);
    TIME((T * K + N * K + T * N) * (int64_t)es, 2 * T * N * K,
         f(v->name, dp(&d_y), px, pw, T, N, K, dt, S->blas, S->stream));
    free(y);
    d_free(&d_y, "y", NULL);
    d_free(&d_x, "x", x.raw);
    d_free(&d_w, "w", S->lw.raw);
    h_free(&x);
    free(ref), free(emul);
}

/* ---- cache ----------------------------------------------------------------------------- */

/* Random distinct slots; with more than one token, the last is padding (-1); the caches
 * compared byte for byte (unwritten slots keep their poison). */
static void case_cache(const lr_opsweep_target *v, lr_dtype dt, const lr_opsweep_shape *s, int sub) {
    (void)sub;
    int64_t T = s->T, nkv = s->kv, hd = s->hd, bs = s->bs;
    int64_t nslots = s->blocks * bs, width = nkv * hd;
    int64_t nh = 2 * nkv, ldx = (nh + 2 * nkv) * hd, k_col = nh * hd, v_col = k_col + width;
    size_t es = lr_dtype_size(dt);
    set_shape("T %lld kv %lld hd %lld bs %lld blocks %lld", (long long)T, (long long)nkv, (long long)hd,
              (long long)bs, (long long)s->blocks);
    htensor qkv = h_random(dt, T * ldx, -1, 1);
    int64_t *slots = NEW(nslots, int64_t);
    for (int64_t i = 0; i < nslots; i++)
        slots[i] = i;
    for (int64_t i = nslots - 1; i > 0; i--) {
        int64_t j = irand(0, i + 1), tmp = slots[i];
        slots[i] = slots[j], slots[j] = tmp;
    }
    if (T > 1) slots[T - 1] = -1;
    size_t cache_bytes = (size_t)(nslots * width) * es;
    unsigned char *k_want = need(malloc(cache_bytes)), *v_want = need(malloc(cache_bytes));
    memset(k_want, POISON, cache_bytes), memset(v_want, POISON, cache_bytes);
    for (int64_t t = 0; t < T; t++) {
        if (slots[t] < 0) continue;
        const unsigned char *row = (const unsigned char *)qkv.raw + (size_t)(t * ldx) * es;
        memcpy(k_want + (size_t)(slots[t] * width) * es, row + (size_t)k_col * es, (size_t)width * es);
        memcpy(v_want + (size_t)(slots[t] * width) * es, row + (size_t)v_col * es, (size_t)width * es);
    }
    dbuf d_qkv = d_upload(&qkv), d_slots = d_new((size_t)T * sizeof *slots, slots);
    dbuf d_k = d_new(cache_bytes, NULL), d_v = d_new(cache_bytes, NULL);
    int (*f)(const char *, void *, void *, const void *, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
             int64_t, const int64_t *, lr_dtype, cudaStream_t) =
        LAUNCH(v, reshape_and_cache, lr_gpu_reshape_and_cache);
    RUN(f(v->name, dp(&d_k), dp(&d_v), dp(&d_qkv), ldx, k_col, v_col, T, nkv, hd, bs, dp(&d_slots), dt,
          S->stream));
    void *k = d_fetch(&d_k, "k_cache"), *vc = d_fetch(&d_v, "v_cache");
    if (memcmp(k, k_want, cache_bytes) != 0) case_fail(false, "k_cache differs from the expected slots");
    if (memcmp(vc, v_want, cache_bytes) != 0) case_fail(false, "v_cache differs from the expected slots");
    TIME(4 * T * width * (int64_t)es + T * 8, 0,
         f(v->name, dp(&d_k), dp(&d_v), dp(&d_qkv), ldx, k_col, v_col, T, nkv, hd, bs, dp(&d_slots), dt,
           S->stream));
    free(k), free(vc), free(k_want), free(v_want);
    d_free(&d_k, "k_cache", NULL);
    d_free(&d_v, "v_cache", NULL);
    d_free(&d_qkv, "qkv", qkv.raw);
    d_free(&d_slots, "slot_mapping", slots);
    h_free(&qkv);
    free(slots);
}

/* ---- attention ------------------------------------------------------------------------- */

/* A case's emulated reference with P rounded, and the flip bounds (case_attention), one job
 * per (sequence, kv head) on the host's cores: each job's heads, rows and scratch are its
 * own, every output element is computed by the same operations as in one pass over the
 * batch (a head's arithmetic does not depend on the others'), and X is a maximum, so the
 * results do not depend on the threads. */
typedef struct {
    float *qf, *kf[LR_OPSWEEP_MAX_SEQS], *vf[LR_OPSWEEP_MAX_SEQS]; /* copies, freed by the case */
    const double *q, *k[LR_OPSWEEP_MAX_SEQS], *v[LR_OPSWEEP_MAX_SEQS], *ref;
    float *emul;
    double *flips;
    int nseqs;
    int64_t start[LR_OPSWEEP_MAX_SEQS], len[LR_OPSWEEP_MAX_SEQS], past[LR_OPSWEEP_MAX_SEQS];
    int64_t nh, nkv, hd, ldq, kvw, max_keys, score_rows;
    lr_dtype dt;
    int next;    /* the next job (atomic) */
    double X;    /* under lock */
    bool failed; /* a thread's scratch could not be had (under lock) */
    pthread_mutex_t lock;
} attn_refs;

static void *attn_refs_worker(void *p) {
    attn_refs *r = p;
    const int64_t G = r->nh / r->nkv, qw = r->nh * r->hd;
    float *scores = malloc((size_t)(r->score_rows * r->max_keys) * sizeof *scores);
    double *w = malloc((size_t)r->max_keys * sizeof *w), X = 0;
    bool ok = scores && w;
    for (int job; ok && (job = __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED)) < r->nseqs * r->nkv;) {
        const int s = job / (int)r->nkv;
        const int64_t g = job % r->nkv, col = g * G * r->hd, kcol = g * r->hd;
        lr_ref_attention_emulated(r->emul + r->start[s] * qw + col, qw, r->qf + r->start[s] * r->ldq + col,
                                  r->ldq, r->kf[s] + kcol, r->vf[s] + kcol, r->kvw, r->len[s], r->past[s], G,
                                  1, r->hd, true, r->dt, scores);
        for (int64_t j = 0; j < r->len[s]; j++)
            for (int64_t h = g * G; h < (g + 1) * G; h++) {
                const int64_t t = r->start[s] + j, row = t * qw + h * r->hd;
                const double far = lr_same_flip_row(r->flips + row, r->q + t * r->ldq + h * r->hd,
                                                    r->k[s] + kcol, r->v[s] + kcol, r->kvw, r->ref + row,
                                                    r->past[s] + j + 1, r->hd, true, r->dt, w) *
                                   1.4426950408889634; /* log2 e */
                X = far > X ? far : X;
            }
    }
    free(scores), free(w);
    pthread_mutex_lock(&r->lock);
    r->X = X > r->X ? X : r->X;
    r->failed |= !ok;
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* Runs every job of r on up to 16 threads (the host's cores; this thread among them). */
static void attn_refs_run(attn_refs *r) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int jobs = r->nseqs * (int)r->nkv, n = cores < 1 ? 1 : cores < 16 ? (int)cores : 16;
    n = n < jobs ? n : jobs;
    pthread_t tid[16];
    int started = 0;
    r->next = 0, r->X = 0, r->failed = false;
    pthread_mutex_init(&r->lock, NULL);
    for (int i = 1; i < n; i++)
        if (pthread_create(&tid[started], NULL, attn_refs_worker, r) == 0) started++;
    attn_refs_worker(r); /* with no thread started, this one takes every job */
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    pthread_mutex_destroy(&r->lock);
    HARD(!r->failed, "attention references: out of host memory for a thread's scratch");
}

/* One case: the batch's sequences (past[s] cached, len[s] new), queries in packed qkv
 * rows, each sequence's keys and values (contiguous) for the references, the paged cache
 * built from them on the host: physical blocks in a random order, stale random values in
 * every slot not in use, a -1 column in each block table. The reference runs per
 * sequence on contiguous K/V. */
static void case_attention(const lr_opsweep_target *tgt, lr_dtype dt, const lr_opsweep_shape *B, int sub) {
    (void)sub;
    const char *variant = tgt->name, *like = tgt->rounds_p_like ? tgt->rounds_p_like : tgt->name;
    int S_ = B->nseqs;
    int64_t nh = B->heads, nkv = B->kv, hd = B->hd, bs = B->bs;
    set_shape("batch %s heads %lld kv %lld hd %lld", B->label, (long long)nh, (long long)nkv, (long long)hd);
    int64_t T = 0, max_len = 0, max_keys = 0, start[LR_OPSWEEP_MAX_SEQS], flops = 0;
    for (int s = 0; s < S_; s++) {
        start[s] = T;
        T += B->len[s];
        int64_t keys = B->past[s] + B->len[s];
        max_len = B->len[s] > max_len ? B->len[s] : max_len;
        max_keys = keys > max_keys ? keys : max_keys;
        for (int64_t j = 0; j < B->len[s]; j++) /* Q K^T and P V: 2 FLOPs per term each */
            flops += 4 * nh * hd * (B->past[s] + j + 1);
    }
    int64_t kvw = nkv * hd, ldq = (nh + 2 * nkv) * hd, qw = nh * hd, ldc = qw + 4;
    size_t es = lr_dtype_size(dt);
    htensor q = h_random(dt, T * ldq, -2, 2), k[LR_OPSWEEP_MAX_SEQS], vv[LR_OPSWEEP_MAX_SEQS];
    for (int s = 0; s < S_; s++) {
        k[s] = h_random(dt, (B->past[s] + B->len[s]) * kvw, -2, 2);
        vv[s] = h_random(dt, (B->past[s] + B->len[s]) * kvw, -1, 1);
    }
    double *ref = NEW(T * qw, double);
    int64_t score_rows = max_len > nh / nkv ? max_len : nh / nkv;
    double *scores = NEW(score_rows * max_keys, double);
    for (int s = 0; s < S_; s++)
        lr_ref_attention_f64(ref + start[s] * qw, qw, q.v + start[s] * ldq, ldq, k[s].v, vv[s].v, kvw,
                             B->len[s], B->past[s], nh, nkv, hd, scores);
    free(scores);

    /* The emulated reference (ref/cpu/ops/attention.c): float32 arithmetic, P rounded to
     * the dtype before P V where this variant's kernel rounds it for this batch
     * (lr_attention_rounds_p: a variant that rounds elsewhere must say so there), the
     * context rounded once. Where P is rounded: each output's largest move from one flip of
     * one weight's rounding, max_j ulp(P_j) |v_j - O| / l (P from the float64 scores, O the
     * float64 output; the row's max is 1 in any order and never flips), counted beyond each
     * element's cap as the model-level verdict counts it (lr_same_compare_flips,
     * docs/detection.md); and X, the largest |score| in log2 units (the budget's range of
     * P = 2^x), from the same scores: a row's largest |score| times log2 e is its largest
     * product, as rounding is monotonic. Where P is rounded both are loops of float32 and
     * float64 arithmetic, for Llama-3-8B's 1 x 2048 prefill tens of seconds on one core, so
     * they run per (sequence, kv head) on the host's cores (attn_refs_run); elsewhere the
     * emulated reference is OpenBLAS's GEMMs (threaded already) and runs here. */
    bool lowp = dt == LR_F16 || dt == LR_BF16, tiled = lowp && lr_attention_rounds_p(like, dt, hd, max_len);
    float *emul = NULL;
    double *flips = NULL, X = 0;
    if (lowp) {
        emul = NEW(T * qw, float);
        attn_refs r = {.qf = fcopy(q.v, T * ldq),
                       .q = q.v,
                       .ref = ref,
                       .emul = emul,
                       .nseqs = S_,
                       .nh = nh,
                       .nkv = nkv,
                       .hd = hd,
                       .ldq = ldq,
                       .kvw = kvw,
                       .max_keys = max_keys,
                       .score_rows = score_rows,
                       .dt = dt};
        for (int s = 0; s < S_; s++) {
            int64_t keys = B->past[s] + B->len[s];
            r.kf[s] = fcopy(k[s].v, keys * kvw), r.vf[s] = fcopy(vv[s].v, keys * kvw);
            r.k[s] = k[s].v, r.v[s] = vv[s].v, r.start[s] = start[s], r.len[s] = B->len[s];
            r.past[s] = B->past[s];
        }
        if (tiled) {
            r.flips = flips = NEW(T * qw, double);
            attn_refs_run(&r);
            X = r.X;
        } else {
            float *scores_f = NEW(score_rows * max_keys, float);
            for (int s = 0; s < S_; s++)
                lr_ref_attention_emulated(emul + start[s] * qw, qw, r.qf + start[s] * ldq, ldq, r.kf[s],
                                          r.vf[s], kvw, B->len[s], B->past[s], nh, nkv, hd, false, dt,
                                          scores_f);
            free(scores_f);
        }
        for (int s = 0; s < S_; s++)
            free(r.kf[s]), free(r.vf[s]);
        free(r.qf);
    }

    int64_t max_blocks = 0, nblocks = 3, nb[LR_OPSWEEP_MAX_SEQS];
    for (int s = 0; s < S_; s++) {
        nb[s] = (B->past[s] + B->len[s] + bs - 1) / bs;
        nblocks += nb[s];
        max_blocks = nb[s] > max_blocks ? nb[s] : max_blocks;
    }
    max_blocks += 1; /* a spare column of -1: reading it would be an illegal address */
    int64_t *perm = NEW(nblocks, int64_t);
    for (int64_t i = 0; i < nblocks; i++)
        perm[i] = i;
    for (int64_t i = nblocks - 1; i > 0; i--) {
        int64_t j = irand(0, i + 1), tmp = perm[i];
        perm[i] = perm[j], perm[j] = tmp;
    }
    int32_t *tables = NEW(S_ * max_blocks, int32_t);
    htensor kc = h_random(dt, nblocks * bs * kvw, -2, 2), vc = h_random(dt, nblocks * bs * kvw, -1, 1);
    int64_t next = 0;
    for (int s = 0; s < S_; s++) {
        for (int64_t b = 0; b < max_blocks; b++)
            tables[s * max_blocks + b] = b < nb[s] ? (int32_t)perm[next++] : -1;
        for (int64_t j = 0; j < B->past[s] + B->len[s]; j++) {
            int64_t slot = (int64_t)tables[s * max_blocks + j / bs] * bs + j % bs;
            memcpy((char *)kc.raw + (size_t)(slot * kvw) * es, (char *)k[s].raw + (size_t)(j * kvw) * es,
                   (size_t)kvw * es);
            memcpy((char *)vc.raw + (size_t)(slot * kvw) * es, (char *)vv[s].raw + (size_t)(j * kvw) * es,
                   (size_t)kvw * es);
        }
    }
    int32_t *token_seq = NEW(T, int32_t), *token_keys = NEW(T, int32_t);
    int32_t seq_start[LR_OPSWEEP_MAX_SEQS], seq_len[LR_OPSWEEP_MAX_SEQS], seq_past[LR_OPSWEEP_MAX_SEQS];
    for (int s = 0; s < S_; s++) {
        seq_start[s] = (int32_t)start[s], seq_len[s] = (int32_t)B->len[s], seq_past[s] = (int32_t)B->past[s];
        for (int64_t j = 0; j < B->len[s]; j++) {
            token_seq[start[s] + j] = s;
            token_keys[start[s] + j] = (int32_t)(B->past[s] + j + 1);
        }
    }
    dbuf d_q = d_upload(&q), d_kc = d_upload(&kc), d_vc = d_upload(&vc);
    dbuf d_tab = d_new((size_t)(S_ * max_blocks) * sizeof(int32_t), tables);
    dbuf d_tseq = d_new((size_t)T * sizeof(int32_t), token_seq),
         d_tkeys = d_new((size_t)T * sizeof(int32_t), token_keys);
    dbuf d_start = d_new((size_t)S_ * sizeof(int32_t), seq_start),
         d_len = d_new((size_t)S_ * sizeof(int32_t), seq_len);
    dbuf d_past = d_new((size_t)S_ * sizeof(int32_t), seq_past);
    dbuf d_ctx = d_new((size_t)(T * ldc) * es, NULL);
    lr_gpu_attn_meta meta = {
        .block_tables = dp(&d_tab),
        .token_seq = dp(&d_tseq),
        .token_keys = dp(&d_tkeys),
        .seq_start = dp(&d_start),
        .seq_len = dp(&d_len),
        .seq_past = dp(&d_past),
        .num_seqs = S_,
        .max_blocks = max_blocks,
        .block_size = bs,
        .max_seq_len = max_len,
        .max_keys = max_keys,
    };
    int (*f)(const char *, void *, int64_t, const void *, int64_t, const void *, const void *,
             const lr_gpu_attn_meta *, int64_t, int64_t, int64_t, int64_t, float, lr_dtype, lr_gpu_attn_ws *,
             cudaStream_t) = LAUNCH(tgt, attention, lr_gpu_attention);
    float scale = (float)(1.0 / sqrt((double)hd));
    RUN(f(variant, dp(&d_ctx), ldc, dp(&d_q), ldq, dp(&d_kc), dp(&d_vc), &meta, T, nh, nkv, hd, scale, dt,
          S->ws, S->stream));
    void *ctx = d_fetch(&d_ctx, "ctx");
    void *heads = take_cols(ctx, es, T, ldc, 0, qw), *pad = take_cols(ctx, es, T, ldc, qw, ldc - qw);
    lr_op_criteria c;
    if (lr_op_attention_budget(dt, hd, max_keys, tiled, X, &c) != LR_OK) harness_error(lr_last_error());
    judge_rows("ctx", heads, dt, T, qw, ref, &c, emul, tiled ? hd : 0, flips);
    size_t pad_bytes = (size_t)(T * (ldc - qw)) * es, pad_ok = 0;
    while (pad_ok < pad_bytes && ((unsigned char *)pad)[pad_ok] == POISON)
        pad_ok++;
    if (pad_ok != pad_bytes) case_fail(true, "ctx: padding columns after the heads written");
    /* bytes: q, every sequence's keys and values read once, the context written */
    int64_t kv_read = 0;
    for (int s = 0; s < S_; s++)
        kv_read += 2 * (B->past[s] + B->len[s]) * kvw;
    TIME((T * qw * 2 + kv_read) * (int64_t)es, flops,
         f(variant, dp(&d_ctx), ldc, dp(&d_q), ldq, dp(&d_kc), dp(&d_vc), &meta, T, nh, nkv, hd, scale, dt,
           S->ws, S->stream));
    free(ctx), free(heads), free(pad);
    d_free(&d_ctx, "ctx", NULL);
    d_free(&d_q, "q", q.raw);
    d_free(&d_kc, "k_cache", kc.raw);
    d_free(&d_vc, "v_cache", vc.raw);
    d_free(&d_tab, "block_tables", tables);
    d_free(&d_tseq, "token_seq", token_seq);
    d_free(&d_tkeys, "token_keys", token_keys);
    d_free(&d_start, "seq_start", seq_start);
    d_free(&d_len, "seq_len", seq_len);
    d_free(&d_past, "seq_past", seq_past);
    h_free(&kc), h_free(&vc), h_free(&q);
    for (int s = 0; s < S_; s++)
        h_free(&k[s]), h_free(&vv[s]);
    free(ref), free(emul), free(flips), free(perm), free(tables), free(token_seq), free(token_keys);
}

/* ---- helpers (no variants) ------------------------------------------------------------- */

/* sum: parts positive (with cancellation the float32 sum's error is bounded relative to
 * the sum of magnitudes, not to the result); the emulated all-reduce (ref/cpu/ops/model.c,
 * inline there): the float32 sum in part order, rounded once. */
static void case_sum(lr_dtype dt, const lr_opsweep_shape *s) {
    int np = (int)s->parts;
    int64_t n = s->n;
    bool inplace = s->extra != 0;
    set_shape("parts %d n %lld%s", np, (long long)n, inplace ? " in place" : "");
    htensor parts[17];
    dbuf d_parts[17];
    const void *ptrs[17];
    double *ref = NEW(n, double);
    for (int p = 0; p < np; p++) {
        parts[p] = h_random(dt, n, 0.25, 1);
        d_parts[p] = d_upload(&parts[p]);
        ptrs[p] = dp(&d_parts[p]);
        for (int64_t i = 0; i < n; i++)
            ref[i] += parts[p].v[i];
    }
    float *emul = NEW(n, float);
    for (int64_t i = 0; i < n; i++) {
        float acc = (float)parts[0].v[i];
        for (int p = 1; p < np; p++)
            acc += (float)parts[p].v[i];
        emul[i] = acc;
    }
    emulate_store(emul, n, dt);
    dbuf d_out = inplace ? d_parts[0] : d_new((size_t)n * lr_dtype_size(dt), NULL);
    RUN(lr_gpu_sum(dp(&d_out), ptrs, np, n, dt, S->stream));
    void *out = d_fetch(&d_out, "out");
    lr_op_criteria c = budget_of("sum", dt, np);
    judge("out", out, dt, 1, n, ref, &c, emul);
    if (!inplace)
        TIME((np + 1) * n * (int64_t)lr_dtype_size(dt), 0,
             lr_gpu_sum(dp(&d_out), ptrs, np, n, dt, S->stream));
    free(out), free(emul), free(ref);
    if (!inplace) d_free(&d_out, "out", NULL);
    for (int p = 0; p < np; p++) {
        d_free(&d_parts[p], "part", inplace && p == 0 ? NULL : parts[p].raw);
        h_free(&parts[p]);
    }
}

static void case_add_bias(lr_dtype dt, const lr_opsweep_shape *s) {
    int64_t T = s->T, N = s->H;
    set_shape("T %lld N %lld", (long long)T, (long long)N);
    htensor y = h_random(dt, T * N, -2, 2), b = h_random(dt, N, -0.5, 0.5);
    double *ref = NEW(T * N, double);
    float *emul = NEW(T * N, float); /* model.c's bias add: float32, rounded once */
    for (int64_t i = 0; i < T * N; i++) {
        ref[i] = y.v[i] + b.v[i % N];
        emul[i] = (float)y.v[i] + (float)b.v[i % N];
    }
    emulate_store(emul, T * N, dt);
    dbuf d_y = d_upload(&y), d_b = d_upload(&b);
    RUN(lr_gpu_add_bias(dp(&d_y), dp(&d_b), T, N, dt, S->stream));
    void *out = d_fetch(&d_y, "y");
    lr_op_criteria c = budget_of("add_bias", dt, 1);
    judge("y", out, dt, T, N, ref, &c, emul);
    TIME((2 * T * N + N) * (int64_t)lr_dtype_size(dt), 0,
         lr_gpu_add_bias(dp(&d_y), dp(&d_b), T, N, dt, S->stream));
    free(out), free(ref), free(emul);
    d_free(&d_y, "y", NULL);
    d_free(&d_b, "b", b.raw);
    h_free(&y), h_free(&b);
}

static void case_add_residual(lr_dtype dt, const lr_opsweep_shape *s) {
    int64_t n = s->n;
    set_shape("n %lld", (long long)n);
    htensor a = h_random(dt, n, -2, 2), r = h_random(LR_F32, n, -4, 4);
    double *ref = NEW(n, double), *emul = NEW(n, double);
    for (int64_t i = 0; i < n; i++) {
        ref[i] = a.v[i] + r.v[i];
        emul[i] = (float)a.v[i] + (float)r.v[i]; /* model.c's residual sum: one float32 addition */
    }
    dbuf d_a = d_upload(&a), d_r = d_upload(&r), d_out = d_new((size_t)n * sizeof(float), NULL);
    RUN(lr_gpu_add_residual(dp(&d_out), dp(&d_a), dp(&d_r), n, dt, S->stream));
    void *out = d_fetch(&d_out, "out");
    lr_op_criteria c = budget_of("add_residual", LR_F32, 1);
    judge("out", out, LR_F32, 1, n, ref, &c, NULL);
    expect_exact("out (against the emulated reference)", out, LR_F32, emul, n);
    TIME(n * ((int64_t)lr_dtype_size(dt) + 8), 0,
         lr_gpu_add_residual(dp(&d_out), dp(&d_a), dp(&d_r), n, dt, S->stream));
    free(out), free(ref), free(emul);
    d_free(&d_out, "out", NULL);
    d_free(&d_a, "a", a.raw);
    d_free(&d_r, "r", r.raw);
    h_free(&a), h_free(&r);
}

/* Each value must come out as the source value (s->kv: its lr_dtype) rounded once, to
 * nearest even, to the destination dt. Every seventh value tiny, to reach F16's
 * subnormals; one exact tie. */
static void case_convert(lr_dtype ddt, const lr_opsweep_shape *s) {
    lr_dtype sdt = (lr_dtype)s->kv;
    int64_t n = s->n;
    set_shape("%s -> %s n %lld", lr_dtype_name(sdt), lr_dtype_name(ddt), (long long)n);
    htensor src = h_new(sdt, n);
    for (int64_t i = 0; i < n; i++)
        h_set(&src, i, uniform(-3, 3) * (i % 7 == 3 ? 1e-6 : 1));
    if (sdt == LR_F64 || sdt == LR_F32) h_set(&src, 0, 1.0 + 0x1p-11); /* halfway between F16s */
    double *ref = NEW(n, double);
    for (int64_t i = 0; i < n; i++)
        ref[i] = round_to(ddt, src.v[i]);
    dbuf d_src = d_upload(&src), d_dst = d_new((size_t)n * lr_dtype_size(ddt), NULL);
    RUN(lr_gpu_convert(dp(&d_dst), ddt, dp(&d_src), sdt, n, S->stream));
    void *out = d_fetch(&d_dst, "dst");
    expect_exact("dst", out, ddt, ref, n);
    TIME(n * (int64_t)(lr_dtype_size(ddt) + lr_dtype_size(sdt)), 0,
         lr_gpu_convert(dp(&d_dst), ddt, dp(&d_src), sdt, n, S->stream));
    free(out), free(ref);
    d_free(&d_dst, "dst", NULL);
    d_free(&d_src, "src", src.raw);
    h_free(&src);
}

/* The helper a shape names (label). */
static void case_helpers(const lr_opsweep_target *v, lr_dtype dt, const lr_opsweep_shape *s, int sub) {
    (void)v, (void)sub;
    if (strcmp(s->label, "sum") == 0)
        case_sum(dt, s);
    else if (strcmp(s->label, "add_bias") == 0)
        case_add_bias(dt, s);
    else if (strcmp(s->label, "add_residual") == 0)
        case_add_residual(dt, s);
    else
        case_convert(dt, s);
}

/* ---- Shapes ---------------------------------------------------------------------------- */

#define MAX_SHAPES 256
#define LR_OPSWEEP_HELPERS_FAM LR_GPU_NUM_FAMILIES /* the helpers, after the registry's families */

typedef struct {
    lr_opsweep_shape *v;
    size_t n;
} shape_list;

static void add(shape_list *l, lr_opsweep_shape s) {
    if (l->n < MAX_SHAPES) l->v[l->n++] = s;
}

enum { SET_FIXTURES, SET_8B, SET_70B, N_SETS };
static const char *const set_names[] = {
#define SET_NAME(name, what) name,
    LR_OPSWEEP_SHAPE_SETS(SET_NAME)
#undef SET_NAME
};

/* A model's shapes at tokens T of Ts: H hidden, heads/kv of hd, I intermediate; its
 * vocabulary shard at tp 8 (128256 / 8). */
typedef struct {
    int64_t H, heads, kv, hd, I, Ts[3];
} model_dims;
static const model_dims dims_8b = {4096, 32, 8, 128, 14336, {1, 32, 2048}};
static const model_dims dims_70b = {8192, 64, 8, 128, 28672, {1, 32, 1024}};

static lr_opsweep_shape attn_batch(const char *label, int64_t bs, int nseqs, const int64_t *past,
                                   const int64_t *len) {
    lr_opsweep_shape s = {.bs = bs, .nseqs = nseqs};
    snprintf(s.label, sizeof s.label, "%s", label);
    for (int i = 0; i < nseqs; i++)
        s.past[i] = past[i], s.len[i] = len[i];
    return s;
}

static void fixture_shapes(int fam, shape_list *l) {
    switch (fam) {
    case LR_GPU_FAM_EMBEDDING: {
        static const int64_t v[][4] = {
            {1, 48, 0, 100}, {7, 576, 64, 64}, {33, 130, 1000, 50}, {64, 4096, 128, 256}};
        for (size_t i = 0; i < 4; i++)
            add(l, (lr_opsweep_shape){.T = v[i][0], .H = v[i][1], .start = v[i][2], .shard = v[i][3]});
        break;
    }
    case LR_GPU_FAM_RMSNORM: { /* 70000 rows pass the kernels' grid cap (65535) */
        static const int64_t v[][2] = {{1, 48},   {5, 576},   {3, 1000},  {64, 4096},
                                       {9, 8192}, {2, 16384}, {70000, 48}};
        for (size_t i = 0; i < 7; i++)
            add(l, (lr_opsweep_shape){.T = v[i][0], .H = v[i][1]});
        break;
    }
    case LR_GPU_FAM_ROTARY: {
        static const int64_t v[][4] = {
            {1, 4, 8, 16}, {7, 6, 16, 32}, {40, 12, 64, 128}, {3, 5, 128, 128}, {2, 3, 256, 256}};
        for (size_t i = 0; i < 5; i++)
            add(l, (lr_opsweep_shape){.T = v[i][0], .heads = v[i][1], .hd = v[i][2], .extra = v[i][3]});
        break;
    }
    case LR_GPU_FAM_ACTIVATION: {
        static const int64_t v[][2] = {{1, 48}, {3, 576}, {37, 1000}, {8, 14336}};
        for (size_t i = 0; i < 4; i++)
            add(l, (lr_opsweep_shape){.T = v[i][0], .H = v[i][1]});
        break;
    }
    case LR_GPU_FAM_CACHE: {
        static const int64_t v[][5] = {
            {1, 1, 8, 16, 4}, {20, 2, 64, 16, 8}, {37, 4, 128, 16, 6}, {12, 8, 16, 5, 3}, {3, 1, 256, 16, 2}};
        for (size_t i = 0; i < 5; i++)
            add(l, (lr_opsweep_shape){
                       .T = v[i][0], .kv = v[i][1], .hd = v[i][2], .bs = v[i][3], .blocks = v[i][4]});
        break;
    }
    case LR_GPU_FAM_ATTENTION: {
        /* Prefill with and without a past, decode, block boundaries crossed inside a
         * sequence and at its start, sequences longer than one 16-row query tile (and,
         * 150 rows, than one of fa2's 64- or 128-row blocks, the last part empty), and an
         * odd block size; MHA, GQA, MQA; head sizes 8 to 256. */
        lr_opsweep_shape batches[4] = {
            attn_batch("mixed", 16, 6, (int64_t[]){0, 5, 20, 33, 0, 15}, (int64_t[]){37, 1, 16, 3, 1, 17}),
            attn_batch("decode", 16, 4, (int64_t[]){100, 0, 31, 64}, (int64_t[]){1, 1, 1, 1}),
            attn_batch("long", 16, 3, (int64_t[]){300, 0, 0}, (int64_t[]){40, 70, 150}),
            attn_batch("odd-blocks", 7, 3, (int64_t[]){6, 0, 13}, (int64_t[]){9, 15, 1}),
        };
        static const int64_t heads[][2] = {{4, 4}, {8, 2}, {4, 1}}, hds[] = {8, 16, 64, 128, 256};
        for (size_t b = 0; b < 4; b++)
            for (size_t h = 0; h < 3; h++)
                for (size_t d = 0; d < 5; d++) {
                    lr_opsweep_shape s = batches[b];
                    s.heads = heads[h][0], s.kv = heads[h][1], s.hd = hds[d];
                    add(l, s);
                }
        /* Decode whose key chunks span several of a split kernel's tiles (fd's: 128 keys):
         * one sequence long enough that even 8 x kv (sequence, kv head) pairs leave chunks
         * of 129 to 516 keys, others short (chunks past their keys empty), one with a
         * single key; query groups of 1, 3, 4 and 8 heads. */
        lr_opsweep_shape many = attn_batch("decode-long", 16, 8, (int64_t[]){17000, 5, 4300, 0, 130, 9000, 257, 1},
                                           (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1});
        static const int64_t mheads[][2] = {{4, 4}, {8, 2}, {6, 2}, {8, 1}}, mhds[] = {64, 128};
        for (size_t h = 0; h < 4; h++)
            for (size_t d = 0; d < 2; d++) {
                lr_opsweep_shape s = many;
                s.heads = mheads[h][0], s.kv = mheads[h][1], s.hd = mhds[d];
                add(l, s);
            }
        /* Block size 1: a sequence of 300 keys has 300 block-table entries, past what fa3
         * copies to shared memory (FA3_TABLE_SMEM, 256), so its fetch reads them from
         * global memory; a prefill (fa3's), GQA, the head sizes fa3 takes. */
        lr_opsweep_shape one = attn_batch("many-blocks", 1, 2, (int64_t[]){290, 0}, (int64_t[]){10, 3});
        one.heads = 8, one.kv = 2;
        for (int64_t hd = 64; hd <= 128; hd *= 2) {
            one.hd = hd;
            add(l, one);
        }
        break;
    }
    case LR_GPU_FAM_LINEAR: {
        /* (N, K, skew, largest T): the fixtures' projections (tp 4 where K gets short),
         * SmolLM2-135M's, then tails: K odd, K not a multiple of the 16-byte vector, three
         * outputs, x and w one element off 16 bytes; a long reduction with few outputs
         * (Llama-3-8B down_proj's K) at T <= 2, where one accumulation-order flip weighs
         * most against the same-precision budget. T: the GEMV range (1 to 8), mma's (to 32:
         * 20 leaves its last tile of 8 tokens part empty) and beyond. */
        static const int64_t v[][4] = {
            {96, 64, 0, 64},    {64, 16, 0, 64},    {256, 48, 0, 64},  {32, 24, 0, 64},
            {48, 128, 0, 64},   {128, 48, 0, 64},   {960, 576, 0, 64}, {576, 576, 0, 16},
            {3072, 576, 0, 16}, {576, 1536, 0, 16}, {97, 33, 0, 64},   {37, 4100, 0, 64},
            {3, 8, 0, 64},      {64, 64, 1, 64},    {40, 4096, 1, 8},  {64, 14336, 0, 2}};
        static const int64_t Ts[] = {1, 2, 3, 4, 7, 8, 16, 20, 32, 64};
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
            for (size_t t = 0; t < sizeof Ts / sizeof Ts[0] && Ts[t] <= v[i][3]; t++)
                add(l, (lr_opsweep_shape){.T = Ts[t], .N = v[i][0], .K = v[i][1], .extra = v[i][2]});
        break;
    }
    case LR_OPSWEEP_HELPERS_FAM: {
        static const int nparts[] = {1, 2, 3, 8, 11, 17}; /* > 8: several passes */
        static const int64_t ns[] = {1, 1000, 4099};
        for (size_t a = 0; a < 6; a++)
            for (size_t b = 0; b < 3; b++)
                for (int inplace = 0; inplace <= 1; inplace++)
                    add(l,
                        (lr_opsweep_shape){.label = "sum", .parts = nparts[a], .n = ns[b], .extra = inplace});
        add(l, (lr_opsweep_shape){.label = "add_bias", .T = 5, .H = 333});
        add(l, (lr_opsweep_shape){.label = "add_residual", .n = 2000});
        static const lr_dtype srcs[] = {LR_F64, LR_F32, LR_F16, LR_BF16};
        for (size_t i = 0; i < 4; i++)
            add(l, (lr_opsweep_shape){.label = "convert", .kv = srcs[i], .n = 3001});
        break;
    }
    default:
        break;
    }
}

/* A model's shapes: every family at its widths, T from the model's list. */
static void model_shapes(int fam, const model_dims *m, shape_list *l) {
    for (int i = 0; i < 3; i++) {
        int64_t T = m->Ts[i];
        switch (fam) {
        case LR_GPU_FAM_EMBEDDING:
            add(l, (lr_opsweep_shape){.T = T, .H = m->H, .start = 16032, .shard = 16032});
            break;
        case LR_GPU_FAM_RMSNORM:
            add(l, (lr_opsweep_shape){.T = T, .H = m->H});
            break;
        case LR_GPU_FAM_ROTARY: /* q and k heads rotated in one call, v after them */
            add(l,
                (lr_opsweep_shape){.T = T, .heads = m->heads + m->kv, .hd = m->hd, .extra = m->kv * m->hd});
            break;
        case LR_GPU_FAM_ACTIVATION:
            add(l, (lr_opsweep_shape){.T = T, .H = m->I});
            break;
        case LR_GPU_FAM_CACHE:
            add(l,
                (lr_opsweep_shape){.T = T, .kv = m->kv, .hd = m->hd, .bs = 16, .blocks = (T + 15) / 16 + 4});
            break;
        case LR_GPU_FAM_ATTENTION:
            break; /* below */
        case LR_OPSWEEP_HELPERS_FAM:
            add(l, (lr_opsweep_shape){.label = "sum", .parts = 2, .n = T * m->H});
            add(l, (lr_opsweep_shape){.label = "sum", .parts = 8, .n = T * m->H});
            add(l, (lr_opsweep_shape){.label = "add_bias", .T = T, .H = (m->heads + 2 * m->kv) * m->hd});
            add(l, (lr_opsweep_shape){.label = "add_residual", .n = T * m->H});
            break;
        default:
            break;
        }
    }
    if (fam == LR_GPU_FAM_ATTENTION) {
        /* prefill of the longest T; a chunk of a quarter after the rest cached; decode of
         * one, eight and 32 sequences (the decode rows' batches) after T - 1 cached */
        int64_t T = m->Ts[2], q = T / 4, past[LR_OPSWEEP_MAX_SEQS], one[LR_OPSWEEP_MAX_SEQS];
        for (int i = 0; i < LR_OPSWEEP_MAX_SEQS; i++)
            past[i] = T - 1, one[i] = 1;
        lr_opsweep_shape b[5] = {
            attn_batch("prefill", 16, 1, (int64_t[]){0}, (int64_t[]){T}),
            attn_batch("chunk", 16, 1, (int64_t[]){T - q}, (int64_t[]){q}),
            attn_batch("decode-1", 16, 1, past, one),
            attn_batch("decode-8", 16, 8, past, one),
            attn_batch("decode-32", 16, 32, past, one),
        };
        for (int i = 0; i < 5; i++) {
            b[i].heads = m->heads, b[i].kv = m->kv, b[i].hd = m->hd;
            add(l, b[i]);
        }
    }
    if (fam == LR_GPU_FAM_LINEAR) {
        /* The five projections at tp 1 (qkv, o, gate_up, down, the LM head over a
         * vocabulary of 128256) at T 1, 2, 4, 8 (the GEMV's range), 32 and the model's
         * longest prefill where the float64 reference takes seconds (Llama-3-8B's 2048); the
         * LM head at T <= 8 only (a decode step's logits; 10^9 weights at 70B). Grouped by
         * weight, so that each is drawn once. */
        const int64_t proj[5][2] = {{(m->heads + 2 * m->kv) * m->hd, m->H},
                                    {m->H, m->heads * m->hd},
                                    {2 * m->I, m->H},
                                    {m->H, m->I},
                                    {128256, m->H}};
        const int64_t Ts[] = {1, 2, 4, 8, 32, m->Ts[2]};
        for (int p = 0; p < 5; p++)
            for (int t = 0; t < 6; t++) {
                if ((p == 4 && Ts[t] > 8) || (t == 5 && m->H > 4096)) continue;
                add(l, (lr_opsweep_shape){.T = Ts[t], .N = proj[p][0], .K = proj[p][1]});
            }
    }
    if (fam == LR_OPSWEEP_HELPERS_FAM) {
        static const lr_dtype srcs[] = {LR_F64, LR_F32, LR_F16, LR_BF16};
        for (size_t i = 0; i < 4; i++) /* a weight matrix converted at load */
            add(l, (lr_opsweep_shape){.label = "convert", .kv = srcs[i], .n = m->H * m->H});
    }
}

/* ---- Families ------------------------------------------------------------------------- */

typedef void (*case_fn)(const lr_opsweep_target *t, lr_dtype dt, const lr_opsweep_shape *s, int sub);

/* The --shape keys of a family: "T=32,H=4096" (docs/llama-diff.md, "ops"). A key with
 * dflt -1 is required. */
typedef struct {
    const char *key;
    int64_t dflt, lo, hi;
} shape_key;

#define MAXK 8
static const struct {
    const char *family; /* NULL: the registry's name at this index */
    int nsub;
    const char *ops[2];
    case_fn run;
    shape_key keys[MAXK];
} fams[LR_GPU_NUM_FAMILIES + 1] = {
    [LR_GPU_FAM_EMBEDDING] = {NULL,
                              1,
                              {"embedding"},
                              case_embedding,
                              {{"T", -1, 1, 1 << 20},
                               {"H", -1, 1, 1 << 16},
                               {"start", 0, 0, 1 << 24},
                               {"shard", 1000, 1, 1 << 20}}},
    [LR_GPU_FAM_RMSNORM] = {NULL,
                            2,
                            {"rms_norm", "fused_add_rms_norm"},
                            case_rmsnorm,
                            {{"T", -1, 1, 1 << 20}, {"H", -1, 1, 1 << 16}}},
    [LR_GPU_FAM_ROTARY] =
        {NULL,
         1,
         {"rotary"},
         case_rotary,
         {{"T", -1, 1, 1 << 20}, {"heads", -1, 1, 1024}, {"hd", -1, 2, 1024}, {"extra", 0, 0, 1 << 16}}},
    [LR_GPU_FAM_ACTIVATION] =
        {NULL, 2, {"silu_and_mul", "silu"}, case_activation, {{"T", -1, 1, 1 << 20}, {"I", -1, 1, 1 << 17}}},
    [LR_GPU_FAM_CACHE] = {NULL,
                          1,
                          {"reshape_and_cache"},
                          case_cache,
                          {{"T", -1, 1, 1 << 20},
                           {"kv", -1, 1, 256},
                           {"hd", -1, 1, 1024},
                           {"bs", 16, 1, 1024},
                           {"blocks", 0, 0, 1 << 20}}},
    [LR_GPU_FAM_ATTENTION] = {NULL,
                              1,
                              {"attention"},
                              case_attention,
                              {{"heads", -1, 1, 256},
                               {"kv", -1, 1, 256},
                               {"hd", -1, 2, 256},
                               {"past", 0, 0, 1 << 17},
                               {"len", 1, 1, 1 << 16},
                               {"seqs", 1, 1, LR_OPSWEEP_MAX_SEQS},
                               {"bs", 16, 1, 1024}}},
    [LR_GPU_FAM_LINEAR] =
        {NULL,
         1,
         {"linear"},
         case_linear,
         {{"T", -1, 1, 1 << 20}, {"N", -1, 1, 1 << 20}, {"K", -1, 1, 1 << 20}, {"skew", 0, 0, 7}}},
    [LR_OPSWEEP_HELPERS_FAM] = {LR_OPSWEEP_HELPERS, 1, {"helpers"}, case_helpers, {{NULL, 0, 0, 0}}},
};

static const char *fam_name(int f) {
    return fams[f].family ? fams[f].family : lr_gpu_family_name((lr_gpu_family)f);
}

/* The sweep's index of a family name; -1 when it has no sweep (or no such family). */
static int fam_find(const char *family) {
    if (!family) return -1;
    if (strcmp(family, LR_OPSWEEP_HELPERS) == 0) return LR_OPSWEEP_HELPERS_FAM;
    int f = lr_gpu_family_find(family);
    return f >= 0 && f < LR_GPU_NUM_FAMILIES && fams[f].run ? f : -1;
}

bool lr_opsweep_has_sweep(const char *family) { return fam_find(family) >= 0; }

/* Parses a --shape spec for family f into *s. */
static int parse_shape(int f, const char *spec, lr_opsweep_shape *s) {
    const char *fam = fam_name(f);
    char keys[200] = "";
    size_t used = 0;
    int nk = 0;
    for (int k = 0; k < MAXK && fams[f].keys[k].key; k++, nk++)
        used += (size_t)snprintf(keys + used, sizeof keys - used, "%s%s%s", k ? "," : "", fams[f].keys[k].key,
                                 fams[f].keys[k].dflt < 0 ? "" : "?");
    if (!nk) return lr_fail(LR_E_INVAL, "--shape: %s takes no --shape (its own cases are its shapes)", fam);
    int64_t val[MAXK];
    bool set[MAXK] = {0};
    const char *p = spec;
    while (*p) {
        const char *eq = strchr(p, '='), *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        if (!eq || eq > end)
            return lr_fail(LR_E_INVAL, "--shape: \"%.*s\" is not KEY=N (%s keys: %s; ? optional)",
                           (int)(end - p), p, fam, keys);
        int k = 0;
        while (k < nk && (strlen(fams[f].keys[k].key) != (size_t)(eq - p) ||
                          strncmp(fams[f].keys[k].key, p, (size_t)(eq - p)) != 0))
            k++;
        if (k == nk)
            return lr_fail(LR_E_INVAL, "--shape: %s has no key \"%.*s\" (keys: %s; ? optional)", fam,
                           (int)(eq - p), p, keys);
        char *e;
        long long v = strtoll(eq + 1, &e, 10);
        if (e != end || eq + 1 == end || v < fams[f].keys[k].lo || v > fams[f].keys[k].hi)
            return lr_fail(LR_E_INVAL, "--shape: %s=%.*s: not an integer in [%lld, %lld]",
                           fams[f].keys[k].key, (int)(end - eq - 1), eq + 1, (long long)fams[f].keys[k].lo,
                           (long long)fams[f].keys[k].hi);
        if (set[k]) return lr_fail(LR_E_INVAL, "--shape: %s given twice", fams[f].keys[k].key);
        val[k] = v, set[k] = true;
        p = *end ? end + 1 : end;
    }
    for (int k = 0; k < nk; k++) {
        if (!set[k] && fams[f].keys[k].dflt < 0)
            return lr_fail(LR_E_INVAL, "--shape: %s needs %s (keys: %s; ? optional)", fam,
                           fams[f].keys[k].key, keys);
        if (!set[k]) val[k] = fams[f].keys[k].dflt;
    }
    memset(s, 0, sizeof *s);
    snprintf(s->label, sizeof s->label, "custom");
    switch (f) {
    case LR_GPU_FAM_EMBEDDING:
        s->T = val[0], s->H = val[1], s->start = val[2], s->shard = val[3];
        break;
    case LR_GPU_FAM_RMSNORM:
        s->T = val[0], s->H = val[1];
        break;
    case LR_GPU_FAM_ROTARY:
        s->T = val[0], s->heads = val[1], s->hd = val[2], s->extra = val[3];
        if (s->hd % 2) return lr_fail(LR_E_INVAL, "--shape: rotary: hd %lld is odd", (long long)s->hd);
        break;
    case LR_GPU_FAM_ACTIVATION:
        s->T = val[0], s->H = val[1];
        break;
    case LR_GPU_FAM_CACHE:
        s->T = val[0], s->kv = val[1], s->hd = val[2], s->bs = val[3];
        s->blocks = val[4] ? val[4] : (s->T + s->bs - 1) / s->bs + 1;
        if (s->blocks * s->bs < s->T)
            return lr_fail(LR_E_INVAL, "--shape: cache: blocks x bs (%lld) holds fewer slots than T (%lld)",
                           (long long)(s->blocks * s->bs), (long long)s->T);
        break;
    case LR_GPU_FAM_ATTENTION:
        s->heads = val[0], s->kv = val[1], s->hd = val[2], s->nseqs = (int)val[5], s->bs = val[6];
        for (int i = 0; i < s->nseqs; i++)
            s->past[i] = val[3], s->len[i] = val[4];
        if (s->heads % s->kv)
            return lr_fail(LR_E_INVAL, "--shape: attention: heads %lld is not a multiple of kv %lld",
                           (long long)s->heads, (long long)s->kv);
        if (s->hd % 2) return lr_fail(LR_E_INVAL, "--shape: attention: hd %lld is odd", (long long)s->hd);
        break;
    case LR_GPU_FAM_LINEAR:
        s->T = val[0], s->N = val[1], s->K = val[2], s->extra = val[3];
        break;
    default:
        break;
    }
    int64_t elems = f == LR_GPU_FAM_LINEAR ? (s->T + s->N) * s->K + s->T * s->N
                                           : s->T * (s->H + s->heads * s->hd + s->extra) + s->shard * s->H;
    if (elems > ((int64_t)1 << 31))
        return lr_fail(LR_E_INVAL, "--shape: %s: %lld elements is more than this sweep holds (2^31)", fam,
                       (long long)elems);
    return LR_OK;
}

static int shapes_for(const lr_opsweep_opts *o, int f, shape_list *l) {
    l->n = 0;
    if (o->shape) {
        lr_opsweep_shape s;
        int rc = parse_shape(f, o->shape, &s);
        if (rc) return rc;
        add(l, s);
        return LR_OK;
    }
    const char *set = o->shapes ? o->shapes : "fixtures";
    if (strcmp(set, set_names[SET_FIXTURES]) == 0)
        fixture_shapes(f, l);
    else
        model_shapes(f, strcmp(set, set_names[SET_8B]) == 0 ? &dims_8b : &dims_70b, l);
    return LR_OK;
}

/* ---- Options, targets ------------------------------------------------------------------ */

void lr_opsweep_opts_init(lr_opsweep_opts *o) {
    memset(o, 0, sizeof *o);
    o->dtype = -1;
    o->shapes = "fixtures";
    o->registered = true;
}

const char *lr_case_status_name(lr_case_status s) {
    static const char *const names[] = {"PASS", "FAIL", "ERROR", "NOT RUN", "SKIP"};
    return (unsigned)s < 5 ? names[s] : "?";
}

static const lr_dtype all_dtypes[] = {LR_F32, LR_F16, LR_BF16};

/* The LR_KERNEL_<dtype> bit of dt (0 for a dtype no kernel takes). */
static uint32_t dtype_bit(lr_dtype dt) {
    return dt == LR_F32 ? LR_KERNEL_F32 : dt == LR_F16 ? LR_KERNEL_F16 : dt == LR_BF16 ? LR_KERNEL_BF16 : 0;
}

static int known_family(const char *family) {
    if (strcmp(family, LR_OPSWEEP_HELPERS) == 0 || lr_gpu_family_find(family) >= 0) return LR_OK;
    char list[400] = "";
    size_t used = 0;
    for (int f = 0; f < LR_GPU_NUM_FAMILIES; f++)
        used +=
            (size_t)snprintf(list + used, sizeof list - used, "%s, ", lr_gpu_family_name((lr_gpu_family)f));
    return lr_fail(LR_E_INVAL, "--op: no family \"%s\" (families: %s%s)", family, list, LR_OPSWEEP_HELPERS);
}

/* Whether the registry (or the helpers' "builtin") has variant `name` of family (NULL:
 * any family). */
static bool has_variant(const char *family, const char *name) {
    if ((!family || strcmp(family, LR_OPSWEEP_HELPERS) == 0) && strcmp(name, "builtin") == 0) return true;
    for (size_t i = 0; i < lr_gpu_variant_count(); i++) {
        const lr_gpu_variant *v = lr_gpu_variant_at(i);
        if ((!family || strcmp(v->family, family) == 0) && strcmp(v->name, name) == 0) return true;
    }
    return false;
}

int lr_opsweep_check(const lr_opsweep_opts *o) {
    if (!o) return lr_fail(LR_E_INVAL, "lr_opsweep: no options");
    int rc;
    if (o->family && (rc = known_family(o->family))) return rc;
    bool extra_named = false;
    for (size_t i = 0; o->variant && i < o->nextra; i++)
        extra_named |= strcmp(o->extra[i].name, o->variant) == 0 &&
                       (!o->family || strcmp(o->extra[i].family, o->family) == 0);
    if (o->variant && !extra_named && !(o->registered && has_variant(o->family, o->variant))) {
        char list[1024] = "";
        size_t used = 0;
        for (size_t i = 0; i < lr_gpu_variant_count() && used < sizeof list; i++) {
            const lr_gpu_variant *v = lr_gpu_variant_at(i);
            if (!o->family || strcmp(v->family, o->family) == 0)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s/%s", used ? ", " : "",
                                         v->family, v->name);
        }
        if ((!o->family || strcmp(o->family, LR_OPSWEEP_HELPERS) == 0) && used < sizeof list)
            snprintf(list + used, sizeof list - used, "%s" LR_OPSWEEP_HELPERS "/builtin", used ? ", " : "");
        return lr_fail(LR_E_INVAL, "--variant: no variant \"%s\"%s%s (variants: %s)", o->variant,
                       o->family ? " of " : "", o->family ? o->family : "", list);
    }
    if (o->dtype != -1 && o->dtype != LR_F32 && o->dtype != LR_F16 && o->dtype != LR_BF16)
        return lr_fail(LR_E_INVAL, "--dtype: %s is not swept (dtypes: f32, f16, bf16)",
                       lr_dtype_name((lr_dtype)o->dtype));
    /* A variant named at a dtype it does not declare would sweep nothing. */
    if (o->variant && o->dtype != -1 && !extra_named && o->registered) {
        bool takes = false;
        const lr_gpu_variant *named = NULL;
        for (size_t i = 0; i < lr_gpu_variant_count(); i++) {
            const lr_gpu_variant *v = lr_gpu_variant_at(i);
            if ((o->family && strcmp(v->family, o->family) != 0) || strcmp(v->name, o->variant) != 0)
                continue;
            named = v;
            takes |= (v->dtypes & dtype_bit((lr_dtype)o->dtype)) != 0;
        }
        if (named && !takes && lr_gpu_variant_check_dtype(named->family, named->name, (lr_dtype)o->dtype))
            return lr_fail(LR_E_INVAL, "--dtype: %s", lr_last_error());
    }
    if (o->shapes) {
        int s = 0;
        while (s < N_SETS && strcmp(set_names[s], o->shapes) != 0)
            s++;
        if (s == N_SETS)
            return lr_fail(LR_E_INVAL,
                           "--shapes: no shape set \"%s\" (sets: fixtures, llama3-8b, llama3-70b)",
                           o->shapes);
    }
    if (o->shape) {
        if (!o->family)
            return lr_fail(LR_E_INVAL, "--shape: needs --op FAMILY (each family has its own keys)");
        int f = fam_find(o->family);
        if (f < 0) return lr_fail(LR_E_INVAL, "--shape: family %s has no sweep", o->family);
        lr_opsweep_shape s;
        if ((rc = parse_shape(f, o->shape, &s))) return rc;
    }
    if (o->host && o->registered)
        return lr_fail(LR_E_INVAL,
                       "lr_opsweep: host mode sweeps extra targets only (registered must be false)");
    if (o->warmup < 0 || o->repeats < 0 || o->repeats > 256)
        return lr_fail(LR_E_INVAL, "lr_opsweep: warmup %d, repeats %d (0 to 256)", o->warmup, o->repeats);
    return LR_OK;
}

/* ---- The sweep ------------------------------------------------------------------------- */

static void emit(void) {
    lr_opsweep_summary *m = S->sum;
    if (S->c.status == LR_CASE_SKIPPED) {
        m->skipped++;
        if (S->cb) S->cb(&S->c, S->user);
        return;
    }
    m->planned++;
    switch (S->c.status) {
    case LR_CASE_PASS:
        m->run++, m->passed++;
        break;
    case LR_CASE_FAIL:
        m->run++, m->failed++;
        break;
    case LR_CASE_ERROR:
        m->run++, m->errors++;
        break;
    default:
        m->not_run++;
    }
    if (S->cb) S->cb(&S->c, S->user);
}

static void case_init(const lr_opsweep_target *t, const char *op, lr_dtype dt) {
    memset(&S->c, 0, sizeof S->c);
    S->c.family = t->family, S->c.variant = t->name, S->c.op = op, S->c.dt = dt;
    S->c.status = LR_CASE_PASS;
    S->c.max_ulps = -1;
}

/* One case inside setjmp (a function of its own: nothing of the caller's lives across it). */
static __attribute__((noinline)) void run_one(const lr_opsweep_target *t, int f, lr_dtype dt,
                                              const lr_opsweep_shape *s, int sub) {
    if (setjmp(S->jb) == 0) fams[f].run(t, dt, s, sub);
}

static void sweep_target(const lr_opsweep_target *t) {
    const lr_opsweep_opts *o = S->o;
    int f = fam_find(t->family);
    for (int d = 0; d < 3; d++) {
        lr_dtype dt = all_dtypes[d];
        if (o->dtype != -1 && (lr_dtype)o->dtype != dt) continue;
        if (t->dtypes && !(t->dtypes & dtype_bit(dt))) {
            char have[32];
            case_init(t, t->family, dt);
            S->c.status = LR_CASE_SKIPPED;
            snprintf(S->c.why, sizeof S->c.why,
                     "%s/%s does not declare %s (it takes %s): its entry point refuses it", t->family,
                     t->name, lr_dtype_name(dt), lr_gpu_dtypes_name(t->dtypes, have, sizeof have));
            emit();
            continue;
        }
        if (f < 0) {
            case_init(t, t->family, dt);
            S->c.status = LR_CASE_NOT_RUN;
            snprintf(S->c.why, sizeof S->c.why, "family %s has no sweep in gpu/opsweep.c", t->family);
            emit();
            continue;
        }
        lr_opsweep_shape v[MAX_SHAPES];
        shape_list l = {v, 0};
        if (shapes_for(o, f, &l) != LR_OK) continue; /* checked before */
        for (size_t i = 0; i < l.n; i++) {
            if (o->keep && !o->keep(fam_name(f), &l.v[i], S->user)) continue;
            for (int sub = 0; sub < fams[f].nsub; sub++) {
                const char *op = f == LR_OPSWEEP_HELPERS_FAM ? l.v[i].label : fams[f].ops[sub];
                case_init(t, op, dt);
                rng_start(t->name, op, lr_dtype_name(dt), (int)i);
                run_one(t, f, dt, &l.v[i], sub);
                emit();
            }
        }
    }
}

static bool matches(const lr_opsweep_opts *o, const char *family, const char *name) {
    return (!o->family || strcmp(o->family, family) == 0) && (!o->variant || strcmp(o->variant, name) == 0);
}

int lr_opsweep_run(const lr_opsweep_opts *o, lr_opsweep_cb cb, void *user, lr_opsweep_summary *sum) {
    int rc = lr_opsweep_check(o);
    if (rc) return rc;
    lr_opsweep_summary local;
    if (!sum) sum = &local;
    memset(sum, 0, sizeof *sum);
    sweep sw = {.o = o, .cb = cb, .user = user, .sum = sum};
    if (!o->host) {
        int ndev = 0;
        cudaError_t e = cudaGetDeviceCount(&ndev);
        if (e != cudaSuccess || ndev == 0)
            return lr_fail(LR_E_DEVICE, "no CUDA device (%s)",
                           e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        if ((e = cudaStreamCreate(&sw.stream)) != cudaSuccess)
            return lr_fail(LR_E_DEVICE, "cudaStreamCreate: %s", cudaGetErrorString(e));
        if ((rc = lr_gpu_attn_ws_create(&sw.ws))) {
            cudaStreamDestroy(sw.stream);
            return rc;
        }
        int bs = lr_gpu_blas_create(&sw.blas);
        if (bs != LR_OK || cublasSetStream(sw.blas, sw.stream) != CUBLAS_STATUS_SUCCESS) {
            if (bs == LR_OK) cublasDestroy(sw.blas);
            lr_gpu_attn_ws_free(sw.ws);
            cudaStreamDestroy(sw.stream);
            return bs != LR_OK ? bs : lr_fail(LR_E_DEVICE, "cublasSetStream failed");
        }
        if (o->perf && (rc = lr_gpu_copy_bandwidth((size_t)2 << 30, 3, 20, &sum->copy_bandwidth))) {
            cublasDestroy(sw.blas);
            lr_gpu_attn_ws_free(sw.ws);
            cudaStreamDestroy(sw.stream);
            return rc;
        }
    }
    sweep *outer = S;
    S = &sw;
    if (o->registered) {
        for (size_t i = 0; i < lr_gpu_variant_count(); i++) {
            const lr_gpu_variant *v = lr_gpu_variant_at(i);
            if (!matches(o, v->family, v->name)) continue;
            lr_opsweep_target t = {.family = v->family, .name = v->name, .dtypes = v->dtypes};
            sweep_target(&t);
        }
        if (matches(o, LR_OPSWEEP_HELPERS, "builtin")) {
            lr_opsweep_target t = {.family = LR_OPSWEEP_HELPERS, .name = "builtin"};
            sweep_target(&t);
        }
    }
    for (size_t i = 0; i < o->nextra; i++)
        if (matches(o, o->extra[i].family, o->extra[i].name)) sweep_target(&o->extra[i]);
    S = outer;
    free(sw.lw.v), free(sw.lw.raw), free(sw.lw.f);
    if (!o->host) {
        cudaStreamSynchronize(sw.stream);
        cublasDestroy(sw.blas);
        lr_gpu_attn_ws_free(sw.ws);
        cudaStreamDestroy(sw.stream);
    }
    return LR_OK;
}
