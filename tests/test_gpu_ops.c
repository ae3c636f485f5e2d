/* test_gpu_ops.c: every registered CUDA kernel variant against the CPU reference op it
 * mirrors, through the op sweep in the library (gpu/opsweep.c, which `llama-diff ops`
 * runs too): for each variant of each family, each dtype (F32, F16, BF16) and the
 * fixtures' shapes, fresh random inputs rounded to the dtype on the host, outputs
 * poisoned, guard bytes, unchanged inputs, NaN/Inf, and each output judged as the
 * model-level verdict judges a stage (against float64 with op-level criteria; at F16 and
 * BF16 against the emulated reference in ulps; lr_op_budget). This file asserts:
 *   - every registered variant (and the helpers) passes every case;
 *   - the kernels with planted bugs (tests/gpu_planted.cu, compiled into this test only,
 *     swept as extra targets) fail: the RMSNorm that leaves the last weight out, the GEMV
 *     that drops the last term and the embedding that drops the shard's last row on every
 *     case at every dtype; the RoPE with a float32 angle, the silu_and_mul that leaves one
 *     element ungated, the cache write that skips a block's last slot and the attention
 *     with an off-by-one mask or a stale key on some case at each;
 *   - without a device, first: the registry's shape, unknown variants and bad arguments
 *     (LR_E_INVAL), and the verdicts themselves, on kernels simulated on the CPU in their
 *     own float32 order swept in the library's host mode: correct ones pass every case,
 *     their planted versions fail as the GPU run asserts.
 * Skips (77) without CUDA or without a device once the device-free checks pass. The seed
 * is printed; LR_TEST_SEED=<seed> repeats a run. */
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
#include "gpu_testutil.h"
#include "internal.h" /* lr_fail */
#include "llamaref_ops.h"
#include "opsweep.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const lr_dtype dtypes[] = {LR_F32, LR_F16, LR_BF16};
#define N_DTYPES (int)(sizeof dtypes / sizeof dtypes[0])

static uint64_t g_seed; /* LR_TEST_SEED, or from the clock */

#define EXPECT_STATUS(call, want)                                                                            \
    do {                                                                                                     \
        int rc_ = (call);                                                                                    \
        ck_assert_msg(rc_ == (want), "%s returned %s, expected %s (%s)", #call, lr_status_name(rc_),         \
                      lr_status_name(want), lr_last_error());                                                \
    } while (0)

/* ---- What a sweep reported, per target ------------------------------------------------- */

typedef struct {
    const char *name;
    int cases, failed, hard, not_run;
    char first_fail[1400], first_pass[300];
} tally;

#define MAX_TALLIES 24 /* targets in one sweep */
typedef struct {
    tally t[MAX_TALLIES];
    int n;
    bool verbose; /* print each failing case as it ends (planted: "caught") */
} tallies;

static tally *tally_of(tallies *ts, const char *name) {
    for (int i = 0; i < ts->n; i++)
        if (strcmp(ts->t[i].name, name) == 0) return &ts->t[i];
    ck_assert_int_lt(ts->n, MAX_TALLIES);
    tally *t = &ts->t[ts->n++];
    memset(t, 0, sizeof *t);
    t->name = name;
    return t;
}

static void on_case(const lr_opsweep_case *c, void *user) {
    tallies *ts = user;
    tally *t = tally_of(ts, c->variant);
    t->cases++;
    char line[1400];
    snprintf(line, sizeof line, "%s/%s %s %s %s: %s", c->family, c->variant, c->op, lr_dtype_name(c->dt),
             c->shape, c->why);
    if (c->status == LR_CASE_NOT_RUN) t->not_run++;
    if (c->status == LR_CASE_FAIL || c->status == LR_CASE_ERROR) {
        t->failed++;
        t->hard += c->hard;
        if (t->failed == 1) snprintf(t->first_fail, sizeof t->first_fail, "%s", line);
        if (ts->verbose) printf("  caught   %s\n", line);
    } else if (c->status == LR_CASE_PASS && !t->first_pass[0]) {
        snprintf(t->first_pass, sizeof t->first_pass, "%s/%s %s %s %s", c->family, c->variant, c->op,
                 lr_dtype_name(c->dt), c->shape);
    }
}

/* Every case of the target named passed (and some ran). */
static void expect_all_pass(const tallies *ts, const char *what) {
    ck_assert_msg(ts->n > 0 && ts->t[0].cases > 0, "%s: the sweep ran no case", what);
    for (int i = 0; i < ts->n; i++)
        ck_assert_msg(ts->t[i].failed == 0 && ts->t[i].not_run == 0,
                      "%s: %d of %d cases of %s failed (%d not run), the first: %s (seed %llu)", what,
                      ts->t[i].failed, ts->t[i].cases, ts->t[i].name, ts->t[i].not_run, ts->t[i].first_fail,
                      (unsigned long long)g_seed);
}

/* The planted target named failed every case (every) or some case, by a verdict (not an
 * error of the op or the harness). */
static void expect_caught(const tallies *ts, const char *name, bool every, const char *where) {
    const tally *t = NULL;
    for (int i = 0; i < ts->n; i++)
        if (strcmp(ts->t[i].name, name) == 0) t = &ts->t[i];
    ck_assert_msg(t && t->cases > 0, "planted %s (%s): the sweep ran no case", name, where);
    printf("test_gpu_ops: planted %s %s: failed in %d of %d cases\n", name, where, t->failed, t->cases);
    ck_assert_msg(t->hard == 0, "planted %s (%s): %d cases failed other than by a verdict, the first: %s",
                  name, where, t->hard, t->first_fail);
    if (every)
        ck_assert_msg(t->failed == t->cases,
                      "planted %s (%s) passed the sweep in %d of %d cases, the first: %s (seed %llu)", name,
                      where, t->cases - t->failed, t->cases, t->first_pass, (unsigned long long)g_seed);
    else
        ck_assert_msg(t->failed > 0, "planted %s (%s) passed the sweep in all %d cases (seed %llu)", name,
                      where, t->cases, (unsigned long long)g_seed);
}

static void sweep(lr_opsweep_opts *o, tallies *ts) {
    o->seed = g_seed;
    int rc = lr_opsweep_run(o, on_case, ts, NULL);
    ck_assert_msg(rc == LR_OK, "lr_opsweep_run: %s: %s", lr_status_name(rc), lr_last_error());
}

/* ---- Registered variants: every case passes -------------------------------------------- */

/* Loop index: registry entry * N_DTYPES + dtype. A variant of a family without a sweep
 * fails (its cases are NOT RUN), so a new family cannot go untested. */
START_TEST(test_variant) {
    const lr_gpu_variant *v = lr_gpu_variant_at((size_t)(_i / N_DTYPES));
    ck_assert_ptr_nonnull(v);
    ck_assert_msg(lr_opsweep_has_sweep(v->family), "family %s (variant %s) has no sweep in gpu/opsweep.c",
                  v->family, v->name);
    lr_opsweep_opts o;
    lr_opsweep_opts_init(&o);
    o.family = v->family, o.variant = v->name, o.dtype = dtypes[_i % N_DTYPES];
    tallies ts = {.n = 0};
    sweep(&o, &ts);
    expect_all_pass(&ts, v->family);
}
END_TEST

/* lr_gpu_argmax (greedy decoding) on rows built to hold its rule: a tie (the lower index
 * wins; the two in different chunks where the row has several), a NaN (it wins, the first
 * of two), all -inf (index 0), +inf against 1e30, the largest in the last column, a larger
 * value past n in the row's padding (not seen), one column, widths and chunks that are not
 * multiples of the block; random rows besides. Each chunk's pair against the rule on the
 * host over the chunk, and the best of the chunks (by the rule) against the rule over the
 * row. Loop index: dtype. */
START_TEST(test_argmax) {
    lr_dtype dt = dtypes[_i];
    size_t es = lr_dtype_size(dt);
    const int64_t widths[] = {1, 7, 256, 1000, 128256 / 2 + 3};
    uint64_t rng = g_seed ^ 0xa5a5a5a5ull * (uint64_t)(_i + 1);
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
        int64_t n = widths[wi], ld = n + 5, T = 9, chunk = wi % 2 ? 4096 : 300, nch = (n + chunk - 1) / chunk;
        float *x = malloc((size_t)(T * ld) * sizeof *x);
        ck_assert_ptr_nonnull(x);
        for (int64_t i = 0; i < T * ld; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            x[i] = (float)((double)(rng >> 11) * 0x1p-53 * 8 - 4);
        }
        for (int64_t t = 0; t < T; t++)
            x[t * ld + n] = 1e4f; /* padding past n: never the answer */
        if (n > 3) {
            x[1 * ld + 1] = x[1 * ld + n - 1] = 100.0f; /* a tie: 1 */
            x[2 * ld + 2] = NAN, x[2 * ld + 3] = NAN;   /* NaNs: 2 */
            for (int64_t j = 0; j < n; j++)
                x[3 * ld + j] = -INFINITY;                       /* all -inf: 0 */
            x[4 * ld + n - 1] = 50.0f;                           /* the last column */
            x[5 * ld + 0] = 1e30f, x[5 * ld + n / 2] = INFINITY; /* inf beats 1e30 (f16: a tie) */
        }
        void *raw = malloc((size_t)(T * ld) * es), *d;
        lr_convert(raw, dt, x, LR_F32, (size_t)(T * ld)); /* the specials exact; the rest rounded */
        lr_convert(x, LR_F32, raw, dt, (size_t)(T * ld));
        float *val, *hv = malloc((size_t)(T * nch) * sizeof *hv);
        int32_t *idx, *hi = malloc((size_t)(T * nch) * sizeof *hi);
        ck_assert_int_eq(cudaMalloc(&d, (size_t)(T * ld) * es), cudaSuccess);
        ck_assert_int_eq(cudaMalloc((void **)&val, (size_t)(T * nch) * 8), cudaSuccess);
        idx = (int32_t *)(val + T * nch);
        ck_assert_int_eq(cudaMemcpy(d, raw, (size_t)(T * ld) * es, cudaMemcpyHostToDevice), cudaSuccess);
        ck_assert_msg(lr_gpu_argmax(val, idx, d, ld, T, n, chunk, dt, 0) == LR_OK, "%s", lr_last_error());
        ck_assert_int_eq(cudaMemcpy(hv, val, (size_t)(T * nch) * 4, cudaMemcpyDeviceToHost), cudaSuccess);
        ck_assert_int_eq(cudaMemcpy(hi, idx, (size_t)(T * nch) * 4, cudaMemcpyDeviceToHost), cudaSuccess);
        for (int64_t t = 0; t < T; t++) {
            const float *r = x + t * ld;
            int64_t best = -1;
            for (int64_t c = 0; c <= nch; c++) { /* c < nch: chunk c; c == nch: the row, from the chunks */
                int64_t j0 = c < nch ? c * chunk : 0, j1 = c < nch && j0 + chunk < n ? j0 + chunk : n,
                        at = -1;
                for (int64_t j = j0; j < j1 && at < 0; j++)
                    if (isnan(r[j])) at = j;
                if (at < 0) {
                    at = j0;
                    for (int64_t j = j0 + 1; j < j1; j++)
                        if (r[j] > r[at]) at = j;
                }
                int64_t got = c < nch ? hi[t * nch + c] : best;
                float gv = c < nch ? hv[t * nch + c] : r[best];
                ck_assert_msg(got == at &&
                                  (memcmp(&gv, &r[at], sizeof gv) == 0 || (isnan(gv) && isnan(r[at]))),
                              "argmax %s, n %lld, row %lld, %s %lld: column %lld (%g), the rule's %lld (%g)",
                              lr_dtype_name(dt), (long long)n, (long long)t, c < nch ? "chunk" : "all chunks",
                              (long long)c, (long long)got, (double)gv, (long long)at, (double)r[at]);
                if (c <
                    nch) { /* the rule between chunks: a NaN first, then the larger, then the lower column */
                    bool nb = best >= 0 && isnan(r[best]), nc = isnan(r[at]);
                    if (best < 0 || (nc && !nb) || (!nc && !nb && r[at] > r[best])) best = at;
                }
            }
        }
        cudaFree(d), cudaFree(val);
        free(x), free(raw), free(hv), free(hi);
    }
    EXPECT_STATUS(lr_gpu_argmax(NULL, NULL, NULL, 4, 1, 0, 256, dt, 0), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_argmax(NULL, NULL, NULL, 4, 1, 5, 256, dt, 0), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_argmax(NULL, NULL, NULL, 4, 1, 4, 0, dt, 0), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_argmax(NULL, NULL, NULL, 4, 1, 4, 256, LR_F64, 0), LR_E_INVAL);
}
END_TEST

/* fa3's sweep checks its own kernel, not fa2's, wherever that kernel can run: a build for
 * sm_90 (configure's default) on a card of compute capability 9.0 (H100, H200) must run
 * it; an sm_90a image cannot run anywhere else, and there fa3 says so. */
START_TEST(test_fa3_native) {
    int dev = 0, major = 0, minor = 0;
    ck_assert_int_eq(cudaGetDevice(&dev), cudaSuccess);
    ck_assert_int_eq(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), cudaSuccess);
    ck_assert_int_eq(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev), cudaSuccess);
    bool built = false, native = lr_gpu_attention_fa3_native(&built);
    ck_assert_int_eq(cudaGetLastError(), cudaSuccess); /* the probe left no error behind */
    if (built && major == 9 && minor == 0)
        ck_assert_msg(native, "fa3: built for sm_90a, but its kernel does not run on this compute capability "
                              "9.0 device, so its sweep would check fa2");
    else
        ck_assert_msg(!native, "fa3: its kernel reported runnable without an sm_90a build on 9.0");
    printf("fa3: wgmma kernel %s (build %s sm_90a, device compute capability %d.%d)\n",
           native ? "runs here: its sweep checks it" : "does not run here: fa3's sweep checks fa2",
           built ? "with" : "without", major, minor);
}
END_TEST

/* ---- Variants that must give another's bits --------------------------------------------
 * fa3p is fa3's arithmetic pipelined inside a warpgroup, fa3w the same arithmetic a
 * warpgroup in a warp-specialised block, fa3wp fa3p's warpgroups in one, fa3wt fa3w's block
 * with its K/V tiles copied by TMA (gpu/attention_fa3.cu); fdtc is
 * fdt's plan and kernel with each (sequence, kv head)'s chunks merged inside a thread-block
 * cluster, in the order and with the operations of fdt's merge kernel (gpu/attention_fdt.cu).
 * Each value sees the same operations in the same order, so the bits are the other's.
 * same_bits runs variant va into the case's output, then vb into a copy of it (the padding
 * alike), and fails the case, naming the first element that differs, unless the two are
 * bitwise equal; the sweep judges va's output as any variant's besides. With graph, a
 * decode runs va once more as a decode step's CUDA graph plans it: meta.max_keys is then
 * the cache's capacity, not the most keys a sequence sees, here GRAPH_KEYS (Llama-3's
 * context) or the tables' capacity if more. The host plans for that many (the grid, the
 * clusters) and the kernels from the keys they find, so for fdtc a cluster's blocks have
 * fewer chunks than it was sized for, or none, or the plan has one chunk. That run goes to
 * a buffer of 0xff bytes (NaN in F16 and BF16: an element it leaves unwritten differs) and
 * must give vb's bits too. */
#define GRAPH_KEYS 8192

/* LR_OK if rows 0 .. T - 1 of x and y (row elements of es bytes at a stride of ldc) are
 * bitwise equal, else LR_E_DEVICE naming the first element that differs. */
static int first_difference(const unsigned char *x, const unsigned char *y, int64_t T, int64_t ldc,
                            int64_t nh, int64_t hd, size_t es, const char *what, const char *vb) {
    const size_t row = (size_t)(nh * hd) * es;
    for (int64_t t = 0; t < T; t++) {
        const size_t at = (size_t)(t * ldc) * es;
        if (memcmp(x + at, y + at, row) != 0) {
            size_t e = 0;
            while (memcmp(x + at + e * es, y + at + e * es, es) == 0)
                e++;
            return lr_fail(LR_E_DEVICE, "%s differs from %s at token %lld, head %lld, dim %lld", what, vb,
                           (long long)t, (long long)(e / (size_t)hd), (long long)(e % (size_t)hd));
        }
    }
    return LR_OK;
}

static int same_bits(const char *va, const char *vb, bool graph, void *ctx, int64_t ldc, const void *q,
                     int64_t ldq, const void *k_cache, const void *v_cache, const lr_gpu_attn_meta *meta,
                     int64_t T, int64_t nh, int64_t nkv, int64_t hd, float scale, lr_dtype dt,
                     lr_gpu_attn_ws *ws, cudaStream_t s) {
    const size_t es = lr_dtype_size(dt), bytes = (size_t)(T * ldc) * es;
    int rc = lr_gpu_attention(va, ctx, ldc, q, ldq, k_cache, v_cache, meta, T, nh, nkv, hd, scale, dt, ws, s);
    if (rc != LR_OK || T == 0) return rc;
    void *other = NULL;
    unsigned char *a = malloc(bytes), *b = malloc(bytes);
    if (!a || !b || cudaMalloc(&other, bytes) != cudaSuccess) {
        free(a), free(b);
        return lr_fail(LR_E_NOMEM, "%s against %s: %zu bytes", va, vb, bytes);
    }
    rc = cudaMemcpyAsync(other, ctx, bytes, cudaMemcpyDeviceToDevice, s) == cudaSuccess
             ? lr_gpu_attention(vb, other, ldc, q, ldq, k_cache, v_cache, meta, T, nh, nkv, hd, scale, dt, ws,
                                s)
             : lr_fail(LR_E_DEVICE, "%s against %s: a copy failed", va, vb);
    if (rc == LR_OK && (cudaStreamSynchronize(s) != cudaSuccess ||
                        cudaMemcpy(a, ctx, bytes, cudaMemcpyDeviceToHost) != cudaSuccess ||
                        cudaMemcpy(b, other, bytes, cudaMemcpyDeviceToHost) != cudaSuccess))
        rc = lr_fail(LR_E_DEVICE, "%s against %s: %s", va, vb, cudaGetErrorString(cudaGetLastError()));
    if (rc == LR_OK) rc = first_difference(a, b, T, ldc, nh, hd, es, va, vb);
    if (rc == LR_OK && graph && meta->max_seq_len == 1) {
        lr_gpu_attn_meta g = *meta;
        g.max_keys = meta->max_blocks * meta->block_size > GRAPH_KEYS ? meta->max_blocks * meta->block_size
                                                                      : GRAPH_KEYS;
        char what[64];
        snprintf(what, sizeof what, "%s planned for %lld keys", va, (long long)g.max_keys);
        rc = cudaMemsetAsync(other, 0xff, bytes, s) == cudaSuccess
                 ? lr_gpu_attention(va, other, ldc, q, ldq, k_cache, v_cache, &g, T, nh, nkv, hd, scale, dt,
                                    ws, s)
                 : lr_fail(LR_E_DEVICE, "%s: a memset failed", what);
        if (rc == LR_OK && (cudaStreamSynchronize(s) != cudaSuccess ||
                            cudaMemcpy(a, other, bytes, cudaMemcpyDeviceToHost) != cudaSuccess))
            rc = lr_fail(LR_E_DEVICE, "%s: %s", what, cudaGetErrorString(cudaGetLastError()));
        if (rc == LR_OK) rc = first_difference(a, b, T, ldc, nh, hd, es, what, vb);
    }
    cudaFree(other), free(a), free(b);
    return rc;
}

/* fa3p's, fa3w's, fa3wp's and fa3wt's: variant is the target's name, "<variant>-is-fa3". */
static int is_fa3(const char *variant, void *ctx, int64_t ldc, const void *q, int64_t ldq,
                  const void *k_cache, const void *v_cache, const lr_gpu_attn_meta *meta, int64_t T,
                  int64_t nh, int64_t nkv, int64_t hd, float scale, lr_dtype dt, lr_gpu_attn_ws *ws,
                  cudaStream_t s) {
    char va[32];
    snprintf(va, sizeof va, "%.*s", (int)strcspn(variant, "-"), variant);
    return same_bits(va, "fa3", false, ctx, ldc, q, ldq, k_cache, v_cache, meta, T, nh, nkv, hd, scale, dt,
                     ws, s);
}

static int fdtc_is_fdt(const char *variant, void *ctx, int64_t ldc, const void *q, int64_t ldq,
                       const void *k_cache, const void *v_cache, const lr_gpu_attn_meta *meta, int64_t T,
                       int64_t nh, int64_t nkv, int64_t hd, float scale, lr_dtype dt, lr_gpu_attn_ws *ws,
                       cudaStream_t s) {
    (void)variant;
    return same_bits("fdtc", "fdt", true, ctx, ldc, q, ldq, k_cache, v_cache, meta, T, nh, nkv, hd, scale, dt,
                     ws, s);
}

/* The attention sweep of target t (its bits against another variant's) over the sweep's
 * own shapes (head_dim 64 and 128 among them), Llama-3-8B's, or the custom shapes given
 * (NULL-terminated), those keep keeps (NULL: all). Loop index i: {fixtures, llama3-8b,
 * custom} x {f16, bf16} (float32 goes to fa2 in every variant here). */
static void sweep_same_bits(const lr_opsweep_target *t, int i, const char *const *custom,
                            bool (*keep)(const char *, const lr_opsweep_shape *, void *), const char *what) {
    static const char *sets[] = {"fixtures", "llama3-8b"};
    lr_opsweep_opts o;
    lr_opsweep_opts_init(&o);
    o.registered = false, o.extra = t, o.nextra = 1, o.family = "attention", o.keep = keep;
    o.dtype = i % 2 ? LR_BF16 : LR_F16;
    tallies ts = {.n = 0};
    if (i < 4) {
        o.shapes = sets[i / 2];
        sweep(&o, &ts);
    }
    for (; i >= 4 && *custom; custom++) {
        o.shape = *custom;
        sweep(&o, &ts);
    }
    expect_all_pass(&ts, what);
}

/* fa3p's bits are fa3's: Llama-3-8B's shapes are its prefill (1 x 2048 causal). */
START_TEST(test_fa3p_is_fa3) {
    const lr_opsweep_target t = {
        .family = "attention", .name = "fa3p-is-fa3", .attention = is_fa3, .rounds_p_like = "fa3"};
    sweep_same_bits(&t, _i, NULL, NULL, "attention fa3p against fa3");
}
END_TEST

/* The warp-specialised ones' bits are fa3's, over the same shapes: fa3w's (loop index 0-3),
 * fa3wp's (4-7) and fa3wt's (8-13). fa3wt copies K/V by TMA only where the block size is
 * 8, 16, 32 or 64, else it runs fa3w's kernel, so its loops cover both paths: the
 * fixtures' prefills at head_dim 64 and 128 and block size 16 ("mixed", "long") and
 * Llama-3-8B's (16) take the TMA, "odd-blocks" (7) and "many-blocks" (1) fa3w's kernel;
 * its custom shapes (12-13) add the TMA's other block sizes (8, 32, 64: eight, two and one
 * pages a tile) and two that it refuses (12, not a multiple of 8; 24, one that does not
 * divide a tile of 64). The default's prefill (fdt's hand-off to fa3wts or fa3, by fa3wt's
 * blocks against the card's SMs) gives fa3's bits too (14-15), over shapes that take each
 * side on any card of fewer than 512 SMs (FA3WT_MAX_WAVES, 12 waves): fa3wts one sequence of
 * 300 tokens (16 blocks) and Llama-3-8B's 1 x 2048 where the card has at least 30 SMs (352
 * blocks), fa3 32 sequences of 200 tokens at 128 heads (8192 blocks) and block size 12 (not
 * one fa3wts copies). */
static const char *const block_sizes[] = {"heads=8,kv=2,hd=128,len=300,bs=8",
                                          "heads=8,kv=1,hd=64,past=37,len=200,seqs=2,bs=32",
                                          "heads=4,kv=4,hd=128,past=100,len=170,seqs=2,bs=64",
                                          "heads=8,kv=2,hd=64,len=300,bs=12",
                                          "heads=8,kv=2,hd=128,past=20,len=250,bs=24",
                                          NULL};
START_TEST(test_fa3w_is_fa3) {
    static const char *const by_blocks[] = {"heads=8,kv=2,hd=128,len=300", "heads=32,kv=8,hd=128,len=2048",
                                            "heads=128,kv=8,hd=64,len=200,seqs=32",
                                            "heads=8,kv=2,hd=64,past=30,len=100,bs=12", NULL};
    static const char *const names[] = {"fa3w-is-fa3", "fa3wp-is-fa3", "fa3wt-is-fa3", "fdt-is-fa3"};
    static const char *const whats[] = {"attention fa3w against fa3", "attention fa3wp against fa3",
                                        "attention fa3wt against fa3", "the default's prefill against fa3"};
    /* fa3w, fa3wp: the fixtures' and Llama-3-8B's shapes; fa3wt: those and block_sizes; fdt: by_blocks */
    const int v = _i < 8 ? _i / 4 : _i < 14 ? 2 : 3, set = v < 2 ? _i % 4 : v == 2 ? _i - 8 : _i - 10;
    const lr_opsweep_target t = {
        .family = "attention", .name = names[v], .attention = is_fa3, .rounds_p_like = "fa3"};
    sweep_same_bits(&t, set, v == 2 ? block_sizes : by_blocks, NULL, whats[v]);
}
END_TEST

/* fa3wts' bits are fa3's (its work tiles are fa3wt's, computed alike): loops 0-3 the
 * fixtures' and Llama-3-8B's shapes at its own grid (a block an SM: one or two work tiles a
 * block on the fixtures' shapes, up to three at Llama-3-8B's 1 x 2048 on 132 SMs), 4-5
 * block_sizes (fa3wt's: the TMA's block sizes and two it refuses), 6-9 the fixtures' and
 * Llama-3-8B's shapes with the grid capped at 3 blocks, so that every block takes many work
 * tiles: the Q buffers and the ring of stages wrap many times, and the mixed batches'
 * shorter sequences leave work tiles that every role skips alike. */
START_TEST(test_fa3wts_is_fa3) {
    const lr_opsweep_target t = {
        .family = "attention", .name = "fa3wts-is-fa3", .attention = is_fa3, .rounds_p_like = "fa3"};
    lr_gpu_attention_fa3wts_grid_set(_i >= 6 ? 3 : 0);
    sweep_same_bits(&t, _i < 6 ? _i : _i - 6, block_sizes, NULL,
                    _i >= 6 ? "attention fa3wts (3 blocks) against fa3" : "attention fa3wts against fa3");
    lr_gpu_attention_fa3wts_grid_set(0);
}
END_TEST

/* The decodes of a shape set (one new token a sequence): the calls fdtc's own kernel may
 * take. fdtc hands the others to fa3 as fdt does, the same code. */
static bool keep_decode(const char *family, const lr_opsweep_shape *s, void *user) {
    (void)family, (void)user;
    for (int i = 0; i < s->nseqs; i++)
        if (s->len[i] != 1) return false;
    return true;
}

/* fdtc's bits are fdt's, eager and as a graph plans: the fixtures' decodes (decode-long's
 * one sequence of 17000 keys among short ones), Llama-3-8B's decodes of 1, 8 and 32
 * sequences at 2047 cached keys (at batch 1 a block of a cluster takes two chunks, three
 * planned in the graph), and decodes of no more than 64 keys (one chunk: eager, fdt's
 * kernel alone; in the graph, the cluster's first block). Loop index as sweep_same_bits'. */
START_TEST(test_fdtc_is_fdt) {
    static const char *const few_keys[] = {"heads=32,kv=8,hd=128,past=40",
                                           "heads=8,kv=2,hd=64,past=63,seqs=3", NULL};
    const lr_opsweep_target t = {
        .family = "attention", .name = "fdtc-is-fdt", .attention = fdtc_is_fdt, .rounds_p_like = "fdt"};
    sweep_same_bits(&t, _i, few_keys, keep_decode, "attention fdtc against fdt");
}
END_TEST

/* The helpers without variants (lr_gpu_sum, add_bias, add_residual, convert). */
START_TEST(test_helpers) {
    lr_opsweep_opts o;
    lr_opsweep_opts_init(&o);
    o.family = LR_OPSWEEP_HELPERS, o.dtype = dtypes[_i];
    tallies ts = {.n = 0};
    sweep(&o, &ts);
    expect_all_pass(&ts, LR_OPSWEEP_HELPERS);
}
END_TEST

/* ---- Planted bugs: the sweep must fail them ---------------------------------------------
 * The kernels of gpu_planted.h, swept as extra targets through the same cases as the
 * registered variants. That the sweep fails them is the test, and it shows what the sweep
 * can see: the last-unweighted RMSNorm changes one element of a row by a tenth of it or
 * more, 1/16384 of the widest row, which the old single relative L2 per case missed at
 * bf16 on every shape (issue 15). The f32-angle RoPE shows only at large positions: in
 * every case but the one-token one, whose one position is 0, the second token is at
 * 2^20 - 1.
 * The embedding's cases each hold the shard's last row (the sweep draws ids[0] =
 * start + shard - 1), so shard-edge fails them all. last-ungated changes one element of
 * each silu_and_mul row, by up * (1 - silu(gate)); the silu cases run the library's silu
 * and pass, and a one-row case can hide it where up is within an ulp or two of 0 or
 * silu(gate) of 1. block-edge shows only where a token lands on a block's last slot: the
 * fixtures' slots are random (their one-token case does in 1 of 16 draws), so
 * CACHE_FULL below fills every slot of a cache. mask-off-by-one changes nothing in a decode
 * batch (no key after a query's own); stale-key shows where a query sees two keys or more. */
static const lr_opsweep_target planted_kernels[] = {
    {.family = "rmsnorm",
     .name = "last-unweighted",
     .rms_norm = lr_test_planted_rms_norm,
     .fused_add_rms_norm = lr_test_planted_fused_add_rms_norm},
    {.family = "rotary", .name = "f32-angle", .rotary = lr_test_planted_rotary},
    {.family = "linear", .name = "gemv-drop-last", .linear = lr_test_planted_linear},
    {.family = "embedding", .name = "shard-edge", .embedding = lr_test_planted_embedding},
    /* silu (the family's second op) is the library's: its cases pass */
    {.family = "activation", .name = "last-ungated", .silu_and_mul = lr_test_planted_silu_and_mul},
    {.family = "cache", .name = "block-edge", .reshape_and_cache = lr_test_planted_reshape_and_cache},
    /* P in float32, as flash keeps it: the emulated verdict takes flash's rounding */
    {.family = "attention",
     .name = "mask-off-by-one",
     .attention = lr_test_planted_attention_mask,
     .rounds_p_like = "flash"},
    {.family = "attention",
     .name = "stale-key",
     .attention = lr_test_planted_attention_stale,
     .rounds_p_like = "flash"},
};
#define N_PLANTED (sizeof planted_kernels / sizeof planted_kernels[0])

/* The planted GEMV leaves one of K terms out, which moves each output by 1 to 4 bf16 ulps
 * at K 14336: over 32 outputs or more the emulated verdict's relative L2 (about 0.1 ulps)
 * sees it; in a case of a few outputs its allowance (4 / sqrt(n) ulps) may not, so the
 * planted sweeps keep the linear cases of 32 outputs or more. */
#define PLANTED_MIN_OUT 32
static bool keep_planted(const char *family, const lr_opsweep_shape *s, void *user) {
    (void)user;
    return strcmp(family, "linear") != 0 || s->T * s->N >= PLANTED_MIN_OUT;
}

/* A cache case with every slot in use (the sweep makes its last token padding): 63 tokens in
 * 4 blocks of 16, so at least 3 land on a block's last slot. */
#define CACHE_FULL "T=64,kv=2,hd=16,bs=16,blocks=4"

/* Loop index: dtype. */
START_TEST(test_planted) {
    lr_dtype dt = dtypes[_i];
    lr_opsweep_opts o;
    lr_opsweep_opts_init(&o);
    o.registered = false, o.extra = planted_kernels, o.nextra = N_PLANTED, o.dtype = dt,
    o.keep = keep_planted;
    tallies ts = {.verbose = true};
    printf("test_gpu_ops: planted kernels at %s, which the sweep must fail:\n", lr_dtype_name(dt));
    sweep(&o, &ts);
    o.family = "cache", o.shape = CACHE_FULL;
    sweep(&o, &ts);
    char where[32];
    snprintf(where, sizeof where, "at %s", lr_dtype_name(dt));
    expect_caught(&ts, "last-unweighted", true, where);
    expect_caught(&ts, "f32-angle", false, where);
    expect_caught(&ts, "gemv-drop-last", true, where);
    expect_caught(&ts, "shard-edge", true, where);
    expect_caught(&ts, "last-ungated", false, where);    /* silu's cases pass */
    expect_caught(&ts, "block-edge", false, where);      /* where a token lands on a block's last slot */
    expect_caught(&ts, "mask-off-by-one", false, where); /* not in decode batches */
    expect_caught(&ts, "stale-key", false, where);
}
END_TEST

/* ---- The verdicts, checked on the CPU (no device needed) ---------------------------------
 * Kernels simulated on the CPU in their kernels' own float32 order, with gpu_ops.h's
 * signatures over host memory, swept in the library's host mode on the sweep's own
 * shapes and inputs: the correct ones must pass every case and the planted ones fail as
 * the GPU run asserts. This checks the criteria themselves where CI runs (the GPU run
 * checks the kernels). */

/* RMSNorm as the "block" kernel (and the planted one) computes it: 256 threads' strided
 * partial sums of squares by fused multiply-add, a butterfly within each warp of 32, the
 * warps' sums in order, then (v * inv) * w rounded once; planted: the last element's
 * weight left out. residual (or NULL) is updated in place. */
static void sim_rmsnorm(void *y_raw, float *residual, const void *x_raw, const void *w_raw, int64_t T,
                        int64_t H, float eps, lr_dtype dt, bool planted) {
    enum { THREADS = 256 };
    float *x = tu_to_f32(x_raw, dt, T * H), *w = tu_to_f32(w_raw, dt, H),
          *y = malloc((size_t)(T * H) * sizeof *y);
    ck_assert_ptr_nonnull(y);
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
    lr_convert(y_raw, dt, y, LR_F32, (size_t)(T * H));
    free(x), free(w), free(y);
}

static int sim_rms_ok(const char *variant, void *y, const void *x, const void *w, int64_t T, int64_t H,
                      float eps, lr_dtype dt, cudaStream_t s) {
    (void)variant, (void)s;
    sim_rmsnorm(y, NULL, x, w, T, H, eps, dt, false);
    return LR_OK;
}
static int sim_fused_ok(const char *variant, void *y, float *r, const void *x, const void *w, int64_t T,
                        int64_t H, float eps, lr_dtype dt, cudaStream_t s) {
    (void)variant, (void)s;
    sim_rmsnorm(y, r, x, w, T, H, eps, dt, false);
    return LR_OK;
}
static int sim_rms_planted(const char *variant, void *y, const void *x, const void *w, int64_t T, int64_t H,
                           float eps, lr_dtype dt, cudaStream_t s) {
    (void)variant, (void)s;
    sim_rmsnorm(y, NULL, x, w, T, H, eps, dt, true);
    return LR_OK;
}
static int sim_fused_planted(const char *variant, void *y, float *r, const void *x, const void *w, int64_t T,
                             int64_t H, float eps, lr_dtype dt, cudaStream_t s) {
    (void)variant, (void)s;
    sim_rmsnorm(y, r, x, w, T, H, eps, dt, true);
    return LR_OK;
}

/* RoPE as a kernel computes it, the rotation by fused multiply-adds (as nvcc contracts
 * x1 c - x2 s); the angle's cos and sin from float64, or (planted f32-angle) the angle
 * formed and its cos and sin taken in float32. In place on x (T, ld). */
static void sim_rotary(void *x_raw, int64_t ld, int64_t T, int64_t nheads, int64_t hd, const int64_t *pos,
                       const double *inv_freq, lr_dtype dt, bool planted) {
    float *x = tu_to_f32(x_raw, dt, T * ld);
    int64_t half = hd / 2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < half; i++) {
            float c, sn;
            if (planted) {
                float a = (float)pos[t] * (float)inv_freq[i];
                c = cosf(a), sn = sinf(a);
            } else {
                double a = (double)pos[t] * inv_freq[i];
                c = (float)cos(a), sn = (float)sin(a);
            }
            for (int64_t h = 0; h < nheads; h++) {
                float *v = x + t * ld + h * hd, x1 = v[i], x2 = v[half + i];
                v[i] = fmaf(x1, c, -(x2 * sn));
                v[half + i] = fmaf(x2, c, x1 * sn);
            }
        }
    lr_round_f32_n(x, (size_t)(T * ld), dt); /* the untouched columns are already in the dtype */
    lr_convert(x_raw, dt, x, LR_F32, (size_t)(T * ld));
    free(x);
}

static int sim_rot_ok(const char *variant, void *x, int64_t ld, int64_t T, int64_t nheads, int64_t hd,
                      const int64_t *pos, const double *inv_freq, lr_dtype dt, cudaStream_t s) {
    (void)variant, (void)s;
    sim_rotary(x, ld, T, nheads, hd, pos, inv_freq, dt, false);
    return LR_OK;
}
static int sim_rot_planted(const char *variant, void *x, int64_t ld, int64_t T, int64_t nheads, int64_t hd,
                           const int64_t *pos, const double *inv_freq, lr_dtype dt, cudaStream_t s) {
    (void)variant, (void)s;
    sim_rotary(x, ld, T, nheads, hd, pos, inv_freq, dt, true);
    return LR_OK;
}

/* One (token, head) of a decode as fdt's split kernel computes it (gpu/attention_fdt.cu),
 * into o (hd floats, divided by the sum, not rounded): the keys split into chunks of at
 * least 64 (at most 16 of them, as a batch of one plans on a large card), each chunk's 4
 * warps taking 16 keys at a time (keys w 16, + 64, ...), each with its own online softmax
 * in natural units (scores times the scale, expf), P V with p as two terms, its rounding to
 * the dtype and the rounding of what is left (the second added first), the warps merged in
 * order, then the chunks as attention_merge_kernel merges them. The tensor cores' order of
 * a dot product's sums is not the CPU's; a plain ascending sum stands for it. */
static void sim_fdt_head(float *o, const float *qd, const float *kc, const float *vc, const int32_t *tab,
                         int64_t bs, int64_t kvw, int64_t g, int64_t hd, int64_t vis, float scale,
                         lr_dtype dt) {
    enum { WARPS = 4, KEYS = 16, MAX_SPLIT = 16 };
    int64_t nsplit = (vis + 63) / 64 < MAX_SPLIT ? (vis + 63) / 64 : MAX_SPLIT;
    if (nsplit < 1) nsplit = 1;
    int64_t chunk = (vis + nsplit - 1) / nsplit;
    float cm[MAX_SPLIT], cl[MAX_SPLIT], *co = calloc((size_t)(MAX_SPLIT * hd), sizeof *co),
                                        *wo = calloc((size_t)(WARPS * hd), sizeof *wo);
    ck_assert(co && wo);
    for (int64_t c = 0; c < nsplit; c++) {
        int64_t kbeg = c * chunk, kend = kbeg + chunk < vis ? kbeg + chunk : vis;
        float wm[WARPS], wl[WARPS];
        memset(wo, 0, (size_t)(WARPS * hd) * sizeof *wo);
        for (int w = 0; w < WARPS; w++) {
            float m = -INFINITY, l = 0, sc[KEYS], hi[KEYS], lo[KEYS];
            float *ow = wo + w * hd;
            for (int64_t j0 = kbeg + KEYS * w; j0 < kend; j0 += WARPS * KEYS) {
                int64_t n = kend - j0 < KEYS ? kend - j0 : KEYS;
                float tmax = -INFINITY;
                for (int64_t i = 0; i < n; i++) {
                    int64_t key = j0 + i, slot = (int64_t)tab[key / bs] * bs + key % bs;
                    float a = 0;
                    for (int64_t d = 0; d < hd; d++)
                        a += qd[d] * kc[slot * kvw + g * hd + d];
                    sc[i] = a * scale;
                    tmax = sc[i] > tmax ? sc[i] : tmax;
                }
                float mn = tmax > m ? tmax : m, corr = expf(m - mn);
                m = mn;
                l *= corr;
                for (int64_t i = 0; i < n; i++) {
                    float p = expf(sc[i] - mn);
                    l += p;
                    hi[i] = lr_round_f32(p, dt), lo[i] = lr_round_f32(p - hi[i], dt);
                }
                for (int64_t d = 0; d < hd; d++) {
                    float a = ow[d] * corr, b = 0, e = 0;
                    for (int64_t i = 0; i < n; i++) {
                        int64_t key = j0 + i, slot = (int64_t)tab[key / bs] * bs + key % bs;
                        float v = vc[slot * kvw + g * hd + d];
                        b = fmaf(lo[i], v, b), e = fmaf(hi[i], v, e);
                    }
                    ow[d] = (a + b) + e;
                }
            }
            wm[w] = m, wl[w] = l;
        }
        float M = -INFINITY, L = 0;
        for (int w = 0; w < WARPS; w++)
            M = wm[w] > M ? wm[w] : M;
        for (int64_t d = 0; d < hd; d++)
            co[c * hd + d] = 0;
        for (int w = 0; w < WARPS && M > -INFINITY; w++) {
            float f = expf(wm[w] - M);
            L += f * wl[w];
            for (int64_t d = 0; d < hd; d++)
                co[c * hd + d] += f * wo[w * hd + d];
        }
        cm[c] = M, cl[c] = L;
    }
    float M = -INFINITY, L = 0, f[MAX_SPLIT];
    for (int64_t c = 0; c < nsplit; c++)
        M = cm[c] > M ? cm[c] : M;
    for (int64_t c = 0; c < nsplit; c++)
        f[c] = expf(cm[c] - M), L += f[c] * cl[c];
    for (int64_t d = 0; d < hd; d++) {
        float a = 0;
        for (int64_t c = 0; c < nsplit; c++)
            a += f[c] * co[c * hd + d];
        o[d] = L > 0 ? a / L : 0;
    }
    free(co), free(wo);
}

/* Attention as a flash kernel computes it, per query token and head, through the paged
 * cache: keys in tiles (of 64, P rounded to the dtype, where the kernel it stands for
 * rounds P; else of 32, P in float32), the scores' dot products by fused multiply-adds
 * from the last dimension down (an order unlike the reference's BLAS), an online softmax
 * in log2 units with exp2f, O rescaled as the maximum grows, O / l rounded once. */
/* Planted structural bugs of attention kernels (issue 15): an off-by-one causal mask
 * (each query also sees the key after its own, where the sequence has one in the cache), a
 * stale key (the newest visible key read from the slot before it, as a cache write that
 * lands one step late leaves it). */
typedef enum { ATTN_CORRECT, ATTN_MASK_OFF_BY_ONE, ATTN_STALE_KEY } attn_plant;

static void sim_attention(void *ctx_raw, int64_t ldc, const void *q_raw, int64_t ldq, const void *kc_raw,
                          const void *vc_raw, const lr_gpu_attn_meta *m, int64_t T, int64_t nh, int64_t nkv,
                          int64_t hd, float scale, lr_dtype dt, const char *like, attn_plant plant) {
    bool tiled = lr_attention_rounds_p(like, dt, hd, m->max_seq_len);
    /* fdt's own decode kernel (fdtc's too: its bits): 16-bit, head_dim 64 or 128, one new
     * token a sequence */
    bool fdt = (strcmp(like, "fdt") == 0 || strcmp(like, "fdtc") == 0) && m->max_seq_len == 1 &&
               (dt == LR_BF16 || dt == LR_F16) && (hd == 64 || hd == 128) && plant == ATTN_CORRECT;
    int64_t group = nh / nkv, tile = tiled ? LR_ATTN_P_TILE : 32, kvw = nkv * hd, bs = m->block_size;
    int64_t nslots = 0;
    for (int64_t i = 0; i < m->num_seqs * m->max_blocks; i++)
        nslots = m->block_tables[i] + 1 > nslots ? m->block_tables[i] + 1 : nslots;
    float *q = tu_to_f32(q_raw, dt, T * ldq), *kc = tu_to_f32(kc_raw, dt, nslots * bs * kvw),
          *vc = tu_to_f32(vc_raw, dt, nslots * bs * kvw);
    float sl2 = scale * 1.4426950408889634f;
    float *s = malloc((size_t)tile * sizeof *s), *o = malloc((size_t)hd * sizeof *o);
    ck_assert(s && o);
    for (int64_t t = 0; t < T; t++) {
        int64_t seq = m->token_seq[t], vis = m->token_keys[t];
        const int32_t *tab = m->block_tables + seq * m->max_blocks;
        if (plant == ATTN_MASK_OFF_BY_ONE && vis < m->seq_past[seq] + m->seq_len[seq]) vis++;
        for (int64_t h = 0; h < nh; h++) {
            const float *qd = q + t * ldq + h * hd;
            int64_t g = h / group;
            float mx = -INFINITY, l = 0;
            memset(o, 0, (size_t)hd * sizeof *o);
            if (fdt) {
                sim_fdt_head(o, qd, kc, vc, tab, bs, kvw, g, hd, vis, scale, dt);
                for (int64_t d = 0; d < hd; d++)
                    o[d] = lr_round_f32(o[d], dt);
                lr_convert((char *)ctx_raw + (size_t)(t * ldc + h * hd) * lr_dtype_size(dt), dt, o, LR_F32,
                           (size_t)hd);
                continue;
            }
            for (int64_t k0 = 0; k0 < vis; k0 += tile) {
                int64_t kt = vis - k0 < tile ? vis - k0 : tile;
                float tmax = -INFINITY;
                for (int64_t i = 0; i < kt; i++) {
                    int64_t key = k0 + i;
                    if (plant == ATTN_STALE_KEY && key == vis - 1 && key > 0) key--;
                    int64_t slot = (int64_t)tab[key / bs] * bs + key % bs;
                    const float *kr = kc + slot * kvw + g * hd;
                    float a = 0;
                    for (int64_t d = hd - 1; d >= 0; d--)
                        a = fmaf(qd[d], kr[d], a);
                    s[i] = a * sl2;
                    tmax = s[i] > tmax ? s[i] : tmax;
                }
                float mn = tmax > mx ? tmax : mx, corr = mx == -INFINITY ? 1 : exp2f(mx - mn), sum = 0;
                for (int64_t i = 0; i < kt; i++) {
                    s[i] = exp2f(s[i] - mn);
                    if (tiled) s[i] = lr_round_f32(s[i], dt);
                    sum += s[i];
                }
                l = l * corr + sum;
                mx = mn;
                for (int64_t d = 0; d < hd; d++) {
                    float a = o[d] * corr;
                    for (int64_t i = 0; i < kt; i++) {
                        int64_t key = k0 + i, slot = (int64_t)tab[key / bs] * bs + key % bs;
                        a = fmaf(s[i], vc[slot * kvw + g * hd + d], a);
                    }
                    o[d] = a;
                }
            }
            for (int64_t d = 0; d < hd; d++)
                o[d] = lr_round_f32(o[d] / l, dt);
            lr_convert((char *)ctx_raw + (size_t)(t * ldc + h * hd) * lr_dtype_size(dt), dt, o, LR_F32,
                       (size_t)hd);
        }
    }
    free(q), free(kc), free(vc), free(s), free(o);
}

/* The attention launchers: sim_attention as the variant LIKE rounds, with PLANT. */
#define SIM_ATTN(fn, like, plant)                                                                             \
    static int fn(const char *variant, void *ctx, int64_t ldc, const void *q, int64_t ldq, const void *kc,   \
                  const void *vc, const lr_gpu_attn_meta *m, int64_t T, int64_t nh, int64_t nkv, int64_t hd, \
                  float scale, lr_dtype dt, lr_gpu_attn_ws *ws, cudaStream_t s) {                           \
        (void)variant, (void)ws, (void)s;                                                                     \
        sim_attention(ctx, ldc, q, ldq, kc, vc, m, T, nh, nkv, hd, scale, dt, like, plant);                   \
        return LR_OK;                                                                                         \
    }
SIM_ATTN(sim_attn_fa2, "fa2", ATTN_CORRECT)
SIM_ATTN(sim_attn_flash, "flash", ATTN_CORRECT)
SIM_ATTN(sim_attn_fdt, "fdt", ATTN_CORRECT)
SIM_ATTN(sim_attn_mask, "flash", ATTN_MASK_OFF_BY_ONE)
SIM_ATTN(sim_attn_stale, "flash", ATTN_STALE_KEY)

/* The linear launchers: CALL (on y, x, w, T, N, K, dt) on the host. */
#define SIM_LINEAR(fn, call)                                                                                  \
    static int fn(const char *variant, void *y, const void *x, const void *w, int64_t T, int64_t N, int64_t K, \
                  lr_dtype dt, cublasHandle_t blas, cudaStream_t s) {                                         \
        (void)variant, (void)blas, (void)s;                                                                   \
        call;                                                                                                 \
        return LR_OK;                                                                                         \
    }
SIM_LINEAR(sim_gemv_ok, tu_sim_gemv(y, x, w, T, N, K, dt, false, false))
SIM_LINEAR(sim_gemv_element, tu_sim_gemv(y, x, w, T, N, K, dt, true, false))
SIM_LINEAR(sim_gemv_planted, tu_sim_gemv(y, x, w, T, N, K, dt, false, true))
SIM_LINEAR(sim_gemv2_ok, tu_sim_gemv2(y, x, w, T, N, K, dt))

/* The embedding lookup as gpu/embedding.cu's gather does it: each row copied byte for
 * byte, a zero row for a token outside [start, start + shard); planted (shard-edge, as
 * tests/gpu_planted.cu's): the range test stops one row short. */
static void sim_embedding(void *out, const int64_t *ids, int64_t T, const void *w, int64_t start,
                          int64_t shard, int64_t H, lr_dtype dt, bool planted) {
    size_t row = (size_t)H * lr_dtype_size(dt);
    for (int64_t t = 0; t < T; t++) {
        int64_t local = ids[t] - start;
        char *o = (char *)out + (size_t)t * row;
        if (local >= 0 && local < shard - (planted ? 1 : 0))
            memcpy(o, (const char *)w + (size_t)local * row, row);
        else
            memset(o, 0, row); /* +0 in all three dtypes */
    }
}

#define SIM_EMBEDDING(fn, planted)                                                                           \
    static int fn(const char *variant, void *out, const int64_t *ids, int64_t T, const void *w,              \
                  int64_t start, int64_t shard, int64_t H, lr_dtype dt, cudaStream_t s) {                    \
        (void)variant, (void)s;                                                                              \
        sim_embedding(out, ids, T, w, start, shard, H, dt, planted);                                         \
        return LR_OK;                                                                                        \
    }
SIM_EMBEDDING(sim_embedding_ok, false)
SIM_EMBEDDING(sim_embedding_planted, true)

/* silu_and_mul (mul) or silu as gpu/activation.cu computes each element: g / (1 + expf(-g))
 * in float32, times up, rounded once; planted (last-ungated): each row's last element is
 * up alone. */
static void sim_activation(void *out_raw, const void *gu_raw, int64_t T, int64_t NI, lr_dtype dt, bool mul,
                           bool planted) {
    float *gu = tu_to_f32(gu_raw, dt, T * 2 * NI),
          *out = malloc((size_t)(T * NI > 0 ? T * NI : 1) * sizeof *out);
    ck_assert_ptr_nonnull(out);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < NI; i++) {
            float g = gu[t * 2 * NI + i], up = gu[t * 2 * NI + NI + i], a = g / (1.0f + expf(-g));
            out[t * NI + i] = !mul ? a : planted && i == NI - 1 ? up : a * up;
        }
    lr_round_f32_n(out, (size_t)(T * NI), dt);
    lr_convert(out_raw, dt, out, LR_F32, (size_t)(T * NI));
    free(gu), free(out);
}

static int sim_silu_and_mul_ok(const char *variant, void *out, const void *gu, int64_t T, int64_t NI,
                               lr_dtype dt, cudaStream_t s) {
    (void)variant, (void)s;
    sim_activation(out, gu, T, NI, dt, true, false);
    return LR_OK;
}
static int sim_silu_and_mul_planted(const char *variant, void *out, const void *gu, int64_t T, int64_t NI,
                                    lr_dtype dt, cudaStream_t s) {
    (void)variant, (void)s;
    sim_activation(out, gu, T, NI, dt, true, true);
    return LR_OK;
}
static int sim_silu_ok(void *out, const void *gu, int64_t T, int64_t NI, lr_dtype dt, cudaStream_t s) {
    (void)s;
    sim_activation(out, gu, T, NI, dt, false, false);
    return LR_OK;
}

/* reshape_and_cache as gpu/cache.cu does it: each token's key and value rows copied byte
 * for byte to its slot, none for slot -1; planted (block-edge): a token on the last slot of
 * its block is not written. sim_edge_cases counts the calls of the planted one that had such
 * a token (the cases that can show it). */
static int sim_edge_cases;

static void sim_cache(void *kc, void *vc, const void *qkv, int64_t ld, int64_t k_col, int64_t v_col,
                      int64_t T, int64_t nkv, int64_t hd, int64_t bs, const int64_t *slots, lr_dtype dt,
                      bool planted) {
    size_t es = lr_dtype_size(dt), width = (size_t)(nkv * hd) * es;
    bool edge = false;
    for (int64_t t = 0; t < T; t++) {
        int64_t slot = slots[t];
        if (slot < 0) continue;
        if (planted && slot % bs == bs - 1) {
            edge = true;
            continue;
        }
        const char *row = (const char *)qkv + (size_t)(t * ld) * es;
        memcpy((char *)kc + (size_t)slot * width, row + (size_t)k_col * es, width);
        memcpy((char *)vc + (size_t)slot * width, row + (size_t)v_col * es, width);
    }
    sim_edge_cases += edge;
}

#define SIM_CACHE(fn, planted)                                                                               \
    static int fn(const char *variant, void *kc, void *vc, const void *qkv, int64_t ld, int64_t k_col,       \
                  int64_t v_col, int64_t T, int64_t nkv, int64_t hd, int64_t bs, const int64_t *slots,       \
                  lr_dtype dt, cudaStream_t s) {                                                             \
        (void)variant, (void)s;                                                                              \
        sim_cache(kc, vc, qkv, ld, k_col, v_col, T, nkv, hd, bs, slots, dt, planted);                        \
        return LR_OK;                                                                                        \
    }
SIM_CACHE(sim_cache_ok, false)
SIM_CACHE(sim_cache_planted, true)

static const lr_opsweep_target simulated[] = {
    {.family = "rmsnorm", .name = "sim-block", .rms_norm = sim_rms_ok, .fused_add_rms_norm = sim_fused_ok},
    {.family = "rmsnorm",
     .name = "sim-last-unweighted",
     .rms_norm = sim_rms_planted,
     .fused_add_rms_norm = sim_fused_planted},
    {.family = "rotary", .name = "sim-fma", .rotary = sim_rot_ok},
    {.family = "rotary", .name = "sim-f32-angle", .rotary = sim_rot_planted},
    /* P rounded as fa2 rounds it (where it does), and in float32 as flash keeps it */
    {.family = "attention", .name = "sim-fa2", .attention = sim_attn_fa2, .rounds_p_like = "fa2"},
    {.family = "attention", .name = "sim-flash", .attention = sim_attn_flash, .rounds_p_like = "flash"},
    /* fdt's decode: P V with p as two 16-bit terms, against the float32 P the map declares */
    {.family = "attention", .name = "sim-fdt", .attention = sim_attn_fdt, .rounds_p_like = "fdt"},
    /* gemv in the kernel's order (vector or element, as it would choose) and one element at
     * a time everywhere; its planted twin */
    {.family = "linear", .name = "sim-gemv", .linear = sim_gemv_ok},
    {.family = "linear", .name = "sim-gemv-element", .linear = sim_gemv_element},
    {.family = "linear", .name = "sim-gemv-drop-last", .linear = sim_gemv_planted},
    /* gemv2 in its order (gemv's where it hands the call to gemv) */
    {.family = "linear", .name = "sim-gemv2", .linear = sim_gemv2_ok},
    /* families the model shape sets leave out (after N_SIM_CORE; the embedding's shard
     * there is 16032 rows of H, drawn per case): the embedding, the activation and the
     * cache write, each correct and planted as tests/gpu_planted.cu's (silu correct in both) */
    {.family = "embedding", .name = "sim-embedding", .embedding = sim_embedding_ok},
    {.family = "embedding", .name = "sim-shard-edge", .embedding = sim_embedding_planted},
    {.family = "activation",
     .name = "sim-silu-and-mul",
     .silu_and_mul = sim_silu_and_mul_ok,
     .silu = sim_silu_ok},
    {.family = "activation",
     .name = "sim-last-ungated",
     .silu_and_mul = sim_silu_and_mul_planted,
     .silu = sim_silu_ok},
    {.family = "cache", .name = "sim-cache", .reshape_and_cache = sim_cache_ok},
    {.family = "cache", .name = "sim-block-edge", .reshape_and_cache = sim_cache_planted},
    /* structural attention bugs: last, so that the sweeps that leave them out (the model
     * shape sets, which take the first N_SIM_CORE; valgrind, where they add minutes, the
     * first N_SIM_FAST) take a prefix */
    {.family = "attention",
     .name = "sim-mask-off-by-one",
     .attention = sim_attn_mask,
     .rounds_p_like = "flash"},
    {.family = "attention", .name = "sim-stale-key", .attention = sim_attn_stale, .rounds_p_like = "flash"},
};
#define N_SIM (sizeof simulated / sizeof simulated[0])
#define N_SIM_FAST (N_SIM - 2)      /* all but the structural attention bugs */
#define N_SIM_CORE (N_SIM_FAST - 6) /* those, less the embedding, activation and cache ones */

/* The 70000-row RMSNorm is there for the kernels' grid cap; attention's head sizes 16
 * and 256 add minutes under valgrind and no case of another kind. */
static bool keep_on_cpu(const char *family, const lr_opsweep_shape *s, void *user) {
    (void)user;
    if (strcmp(family, "rmsnorm") == 0) return s->T * s->H <= (1 << 20);
    if (strcmp(family, "attention") == 0) /* decode-long: 31 000 keys, for the GPU's split kernels */
        return (s->hd == 8 || s->hd == 64 || s->hd == 128) && strcmp(s->label, "decode-long") != 0;
    if (strcmp(family, "linear") == 0) return s->T <= 8 && keep_planted(family, s, user); /* gemv's range */
    return true;
}

typedef struct {
    int skipped;
    char why[1100];
} skips;

static void on_skip_case(const lr_opsweep_case *c, void *user) {
    skips *sk = user;
    if (c->status != LR_CASE_SKIPPED) return;
    if (!sk->skipped++) snprintf(sk->why, sizeof sk->why, "%s", c->why);
}

/* Loop index: dtype. */
START_TEST(test_verdicts_cpu) {
    lr_opsweep_opts o;
    lr_opsweep_opts_init(&o);
    bool valgrind = getenv("LR_VALGRIND") != NULL;
    o.registered = false, o.host = true, o.extra = simulated, o.nextra = valgrind ? N_SIM_FAST : N_SIM;
    o.dtype = dtypes[_i], o.keep = keep_on_cpu;
    tallies ts = {.n = 0};
    sim_edge_cases = 0;
    sweep(&o, &ts);
    o.family = "cache", o.shape = CACHE_FULL;
    sweep(&o, &ts);
    char where[48];
    snprintf(where, sizeof where, "simulated on the CPU at %s", lr_dtype_name(dtypes[_i]));
    static const char *const correct[] = {
        "sim-block",        "sim-fma",   "sim-fa2",       "sim-flash",        "sim-fdt",  "sim-gemv",
        "sim-gemv-element", "sim-gemv2", "sim-embedding", "sim-silu-and-mul", "sim-cache"};
    for (size_t i = 0; i < sizeof correct / sizeof correct[0]; i++) {
        tally *t = tally_of(&ts, correct[i]);
        ck_assert_msg(t->cases > 0 && t->failed == 0,
                      "%s %s: %d of %d cases failed, the first: %s (seed %llu)", correct[i], where, t->failed,
                      t->cases, t->first_fail, (unsigned long long)g_seed);
    }
    expect_caught(&ts, "sim-last-unweighted", true, where);
    expect_caught(&ts, "sim-gemv-drop-last", true, where);
    expect_caught(&ts, "sim-f32-angle", false, where);
    expect_caught(&ts, "sim-shard-edge", true, where);
    expect_caught(&ts, "sim-last-ungated", false, where); /* its silu cases pass */
    /* block-edge: exactly the cases in which a token landed on a block's last slot */
    expect_caught(&ts, "sim-block-edge", false, where);
    const tally *edge = tally_of(&ts, "sim-block-edge");
    ck_assert_msg(edge->failed == sim_edge_cases,
                  "sim-block-edge %s: %d cases failed, %d had a token on a block's last slot (seed %llu)",
                  where, edge->failed, sim_edge_cases, (unsigned long long)g_seed);
    /* the mask only where a sequence has a key after a query's own (prefill), the stale key
     * wherever a query sees two keys or more (make check; not under valgrind) */
    if (valgrind) return;
    expect_caught(&ts, "sim-mask-off-by-one", false, where);
    expect_caught(&ts, "sim-stale-key", false, where);
}
END_TEST

/* The model shape sets and a custom --shape run too (the fixtures' are above): the
 * simulated kernels over Llama-3-8B's and 70B's widths at T up to 32 and attention's decode
 * batches of 1 and 8 sequences (2048 and 1024 keys; the prefills would take minutes on the
 * CPU, and the 32 sequences' batch, the same kernels' paths as 8, doubles the test's time),
 * and one custom shape per family; the correct ones pass, the planted RMSNorm fails every
 * case. */
static bool keep_small(const char *family, const lr_opsweep_shape *s, void *user) {
    (void)user;
    if (strcmp(family, "attention") == 0) return strncmp(s->label, "decode", 6) == 0 && s->nseqs <= 8;
    /* linear: one token through the projections narrower than the LM head (seconds) */
    if (strcmp(family, "linear") == 0) return s->T == 1 && s->N < 128256 && s->N * s->K <= (int64_t)1 << 26;
    return s->T <= 32;
}

/* Loop index: set (llama3-8b, llama3-70b, then the custom shapes). */
START_TEST(test_shape_sets_cpu) {
    static const char *const sets[] = {"llama3-8b", "llama3-70b"};
    static const struct {
        const char *family, *shape;
    } custom[] = {
        {"rmsnorm", "T=3,H=4100"},
        {"rotary", "T=5,heads=3,hd=96,extra=7"},
        {"attention", "heads=12,kv=4,hd=64,past=70,len=9,seqs=2,bs=5"},
        {"linear", "T=3,N=50,K=300,skew=1"},
    };
    lr_opsweep_opts o;
    lr_opsweep_opts_init(&o);
    o.registered = false, o.host = true, o.extra = simulated,
    o.nextra = N_SIM_CORE; /* the structural attention bugs and the families after them: the fixtures' */
    o.dtype = LR_BF16;
    tallies ts = {.n = 0};
    if (_i < 2 && getenv("LR_VALGRIND")) {
        /* make check-valgrind: Llama-3's sizes, simulated on the CPU, would take hours
         * under valgrind; the plain make check sweeps them, valgrind the smaller shapes */
        printf("test_gpu_ops: %s's shapes not simulated under valgrind (make check runs them)\n", sets[_i]);
        return;
    }
    if (_i < 2) {
        o.shapes = sets[_i], o.keep = keep_small;
        sweep(&o, &ts);
    } else {
        for (size_t i = 0; i < sizeof custom / sizeof custom[0]; i++) {
            o.family = custom[i].family, o.shape = custom[i].shape;
            sweep(&o, &ts);
        }
    }
    const char *where = _i == 0 ? "llama3-8b" : _i == 1 ? "llama3-70b" : "custom shapes";
    static const char *const correct[] = {"sim-block", "sim-fma",  "sim-fa2",          "sim-flash",
                                          "sim-fdt",   "sim-gemv", "sim-gemv-element", "sim-gemv2"};
    for (size_t i = 0; i < sizeof correct / sizeof correct[0]; i++) {
        tally *t = tally_of(&ts, correct[i]);
        ck_assert_msg(t->cases > 0 && t->failed == 0,
                      "%s at %s: %d of %d cases failed, the first: %s (seed %llu)", correct[i], where,
                      t->failed, t->cases, t->first_fail, (unsigned long long)g_seed);
    }
    expect_caught(&ts, "sim-last-unweighted", true, where);
    expect_caught(&ts, "sim-gemv-drop-last", true, where);
}
END_TEST

/* A variant that declares fewer dtypes (a plugin's, lr_gpu_variant.dtypes) is not run at
 * the others, whose entry point would refuse them: one SKIPPED case per such dtype, said so,
 * neither failed nor silent; the dtype it takes is swept as usual. */
START_TEST(test_skip_undeclared) {
    lr_opsweep_target t = {
        .family = "rotary", .name = "sim-fma-bf16", .rotary = sim_rot_ok, .dtypes = LR_KERNEL_BF16};
    lr_opsweep_opts o;
    lr_opsweep_opts_init(&o);
    o.registered = false, o.host = true, o.extra = &t, o.nextra = 1;
    o.family = "rotary", o.shape = "T=3,heads=2,hd=16";
    skips sk = {0};
    lr_opsweep_summary sum;
    o.seed = g_seed;
    ck_assert_int_eq(lr_opsweep_run(&o, on_skip_case, &sk, &sum), LR_OK);
    ck_assert_msg(sum.skipped == 2 && sk.skipped == 2 && sum.planned == 1 && sum.passed == 1,
                  "skipped %lld (callback %d), planned %lld, passed %lld", (long long)sum.skipped, sk.skipped,
                  (long long)sum.planned, (long long)sum.passed);
    ck_assert_msg(strstr(sk.why, "does not declare F32") && strstr(sk.why, "it takes BF16"), "why: %s",
                  sk.why);
    ck_assert_str_eq(lr_case_status_name(LR_CASE_SKIPPED), "SKIP");
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

int main(void) {
    g_seed = tu_gpu_seed("test_gpu_ops");

    Suite *contract = suite_create("gpu_ops_contract");
    TCase *tc = tcase_create("registry_and_arguments");
    tcase_add_test(tc, test_registry);
    tcase_add_test(tc, test_bad_arguments);
    suite_add_tcase(contract, tc);
    tc = tcase_create("verdicts_cpu");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_verdicts_cpu, 0, N_DTYPES);
    tcase_add_loop_test(tc, test_shape_sets_cpu, 0, 3);
    tcase_add_test(tc, test_skip_undeclared);
    suite_add_tcase(contract, tc);
    if (tu_gpu_run_suite(contract)) return 1;

    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) {
        printf("test_gpu_ops: no CUDA device (%s); skipping the kernel sweep\n",
               e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return 77;
    }

    Suite *ops = suite_create("gpu_ops");
    tc = tcase_create("variants");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_variant, 0, (int)lr_gpu_variant_count() * N_DTYPES);
    suite_add_tcase(ops, tc);
    tc = tcase_create("planted");
    tcase_add_loop_test(tc, test_planted, 0, N_DTYPES);
    suite_add_tcase(ops, tc);
    tc = tcase_create("helpers");
    tcase_add_test(tc, test_fa3_native);
    tcase_add_loop_test(tc, test_fa3p_is_fa3, 0, 4);
    tcase_add_loop_test(tc, test_argmax, 0, N_DTYPES);
    tcase_add_loop_test(tc, test_helpers, 0, N_DTYPES);
    suite_add_tcase(ops, tc);
    /* a case of its own, so that a run can take it alone (CK_RUN_CASE=fdtc): the helpers
     * case's fa3p loops take minutes of the CPU's float64 reference */
    tc = tcase_create("fdtc");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_fdtc_is_fdt, 0, 6);
    suite_add_tcase(ops, tc);
    /* a case of its own too (CK_RUN_CASE=fa3w): fa3w, fa3wp, fa3wt and the default's prefill */
    tc = tcase_create("fa3w");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_fa3w_is_fa3, 0, 16);
    suite_add_tcase(ops, tc);
    tc = tcase_create("fa3wts"); /* a case of its own (CK_RUN_CASE=fa3wts) */
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_fa3wts_is_fa3, 0, 10);
    suite_add_tcase(ops, tc);
    int failed = tu_gpu_run_suite(ops);
    if (failed) printf("test_gpu_ops: %d failed; seed %llu\n", failed, (unsigned long long)g_seed);
    return failed ? 1 : 0;
}

#endif /* LR_HAVE_CUDA */
