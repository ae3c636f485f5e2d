/* test_gpu_linear.c: what the linear family promises beyond the op sweep. The sweep
 * (gpu/opsweep.c, run by tests/test_gpu_ops and llama-diff ops) judges every registered
 * linear variant case by case against the float64 and the emulated reference, with the
 * planted GEMV and gemv's order simulated on the CPU (test_gpu_ops); this test adds:
 *   - the family in the registry (auto the default, gemv and gemv2 saying they hand
 *     large T to cublas), bad arguments refused (LR_E_INVAL) before any device work;
 *   - on a device, every variant repeating its output bit for bit, gemv and gemv2 at
 *     T <= 8 equal bit for bit to their arithmetic order simulated on the CPU (gemv staged
 *     through shared memory or not), at T > 8 to cublas (their fallback), and mma and mmr equal
 *     to cublas where they hand the call on (T > 32, F32, K not a multiple of 8), at F32, F16
 *     and BF16 over a few shapes;
 *   - gate_up_proj with the activation in one call (lr_gpu_linear_silu) equal bit for bit
 *     to auto's product then the activation, and qkv_proj with RoPE and the cache write
 *     (lr_gpu_linear_rope_cache) to auto's then lr_gpu_rotary_cache, fused (T <= 2) and not;
 *     the same two with the layer's norm before them (lr_gpu_norm_linear_silu, _rope_cache)
 *     to rmsnorm vec then those, in the outputs and the stream, with a residual and without;
 *   - lr_gpu_rotary_cache's kernel for many tokens (lr_gpu_rope_wide) equal bit for bit to
 *     its kernel for few, with padding slots and large positions;
 *   - without a device, that the order check above can fail: on its own shapes and data, a
 *     sum in another order (gemv's terms one element at a time instead of by vector, or
 *     gemv2's order) gives other bits for at least half the outputs, at F32 and at BF16.
 *     On random data alone a 16-bit output's rounding hid almost every such difference
 *     (0 to 4 outputs of hundreds differed at BF16); the data now carries a pair of large
 *     terms that cancel (plant_cancelling_pair), which makes the low bits of every sum
 *     depend on its order.
 * Skips (77) without CUDA or without a device; the registry, argument and order-power
 * checks run first either way. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <math.h>
#include <stdio.h>

#ifndef LR_HAVE_CUDA
int main(void) {
    puts("test_gpu_linear: built without CUDA; skipping");
    return 77;
}
#else

#include "gpu_ops.h"
#include "gpu_testutil.h"

#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- Registry and arguments (no device needed) ---------------------------------------------- */

START_TEST(test_registry) {
    int f = lr_gpu_family_find("linear");
    ck_assert_int_eq(f, LR_GPU_FAM_LINEAR);
    int n = 0, defaults = 0;
    bool is_auto = false, gemv = false, gemv2 = false, autov = false;
    for (size_t i = 0; i < lr_gpu_variant_count(); i++) {
        const lr_gpu_variant *v = lr_gpu_variant_at(i);
        if (strcmp(v->family, "linear") != 0) continue;
        n++;
        defaults += v->is_default;
        if (!strcmp(v->name, "gemv")) gemv = strstr(v->description, "cublas") != NULL;
        if (!strcmp(v->name, "gemv2")) gemv2 = strstr(v->description, "cublas") != NULL;
        if (!strcmp(v->name, "auto"))
            autov = strstr(v->description, "gemv") && strstr(v->description, "cublas"), is_auto = v->is_default;
        ck_assert_int_eq(lr_gpu_variant_check("linear", v->name), LR_OK);
    }
    ck_assert_msg(n >= 3 && defaults == 1, "linear: %d variants, %d defaults", n, defaults);
    ck_assert_msg(is_auto, "linear: auto (gemv at decode, cublas above) is not the default");
    ck_assert_msg(gemv,
                  "linear: no gemv variant, or its description does not say it hands large T to cublas");
    ck_assert_msg(gemv2,
                  "linear: no gemv2 variant, or its description does not say it hands large T to cublas");
    ck_assert_msg(autov, "linear: no auto variant, or its description does not name gemv and cublas");
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
    /* gate_up_proj with the activation: sizes, dtype, and gu where the two kernels must run */
    EXPECT_STATUS(lr_gpu_linear_silu(NULL, NULL, NULL, NULL, -1, 8, 8, LR_BF16, NULL, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_linear_silu(NULL, NULL, NULL, NULL, 1, -8, 8, LR_BF16, NULL, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_linear_silu(NULL, NULL, NULL, NULL, 1, (int64_t)1 << 30, 8, LR_BF16, NULL, s),
                  LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_linear_silu(NULL, NULL, NULL, NULL, 1, 8, 8, LR_F64, NULL, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_linear_silu(NULL, NULL, NULL, NULL, 3, 8, 8, LR_BF16, NULL, s),
                  LR_E_INVAL); /* T 3: gu */
    EXPECT_STATUS(lr_gpu_linear_silu(NULL, NULL, NULL, NULL, 0, 8, 8, LR_BF16, NULL, s), LR_OK);
    EXPECT_STATUS(lr_gpu_linear_rope_cache(NULL, NULL, NULL, 1, -1, 1, 8, 8, NULL, NULL, NULL, NULL, NULL,
                                           LR_BF16, NULL, s),
                  LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_linear_rope_cache(NULL, NULL, NULL, 1, 1, 1, 7, 8, NULL, NULL, NULL, NULL, NULL,
                                           LR_BF16, NULL, s),
                  LR_E_INVAL); /* odd head_dim */
    EXPECT_STATUS(lr_gpu_linear_rope_cache(NULL, NULL, NULL, 1, 1, 1, 8, 8, NULL, NULL, NULL, NULL, NULL,
                                           LR_I32, NULL, s),
                  LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_linear_rope_cache(NULL, NULL, NULL, 1, (int64_t)1 << 28, 0, 16, 8, NULL, NULL, NULL,
                                           NULL, NULL, LR_BF16, NULL, s),
                  LR_E_INVAL); /* (nh + 2 nkv) hd over INT_MAX */
    EXPECT_STATUS(lr_gpu_linear_rope_cache(NULL, NULL, NULL, 0, 1, 1, 8, 8, NULL, NULL, NULL, NULL, NULL,
                                           LR_BF16, NULL, s),
                  LR_OK);
    /* with the norm before them: the norm's buffers required; sizes and dtype refused before
     * the norm runs (the pointers here are not device memory: any work would fail) */
    EXPECT_STATUS(lr_gpu_norm_linear_silu(NULL, NULL, NULL, NULL, 1, 8, 8, LR_BF16, NULL, s), LR_E_INVAL);
    static char fake[64] __attribute__((aligned(16)));
    lr_gpu_norm_in n = {fake, (const float *)fake, (float *)(fake + 32), fake, 1e-5f, fake};
    EXPECT_STATUS(lr_gpu_norm_linear_silu(NULL, NULL, &n, NULL, 1, -8, 8, LR_BF16, NULL, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_norm_linear_silu(NULL, NULL, &n, NULL, 1, 8, 8, LR_F64, NULL, s), LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_norm_linear_rope_cache(NULL, NULL, NULL, 1, 1, 1, 8, 8, NULL, NULL, NULL, NULL, NULL,
                                                LR_BF16, NULL, s),
                  LR_E_INVAL);
    EXPECT_STATUS(lr_gpu_norm_linear_rope_cache(NULL, &n, NULL, 1, 1, 1, 7, 8, NULL, NULL, NULL, NULL, NULL,
                                                LR_BF16, NULL, s),
                  LR_E_INVAL); /* odd head_dim */
    EXPECT_STATUS(lr_gpu_norm_linear_rope_cache(NULL, &n, NULL, -1, 1, 1, 8, 8, NULL, NULL, NULL, NULL, NULL,
                                                LR_BF16, NULL, s),
                  LR_E_INVAL);
    ck_assert(!lr_gpu_norm_linear_fuses(1, 64, NULL, NULL, LR_BF16));
    lr_gpu_norm_in same = n;
    same.residual_out = (float *)same.residual_in; /* every block reads it while block 0 writes it */
    ck_assert(!lr_gpu_norm_linear_fuses(1, 8, &same, fake, LR_BF16));
    ck_assert(lr_gpu_norm_linear_fuses(1, 8, &n, fake, LR_BF16));
    ck_assert(!lr_gpu_norm_linear_fuses(3, 8, &n, fake, LR_BF16)); /* T 3 */
    ck_assert(!lr_gpu_linear_fuses(3, 64, NULL, NULL, LR_BF16));
    ck_assert(!lr_gpu_linear_fuses(1, 60, NULL, NULL, LR_BF16)); /* K not whole vectors */
    ck_assert(lr_gpu_linear_fuses(1, 60, NULL, NULL, LR_F32));
    ck_assert(lr_gpu_linear_fuses(2, 64, NULL, NULL, LR_F16));
}
END_TEST

/* ---- On the device ----------------------------------------------------------------------------- */

static const lr_dtype dtypes[] = {LR_F32, LR_F16, LR_BF16};
#define N_DTYPES (int)(sizeof dtypes / sizeof dtypes[0])
#define GEMV_T 8 /* the largest T of gemv's and gemv2's own kernels (gpu/linear.cu); cublas beyond */
#define AUTO_T 2 /* the largest T that auto hands to gemv (gpu/linear.cu, AUTO_GEMV_MAX_T) */
/* gpu/linear.cu's bounds of auto's mid range (a trial sets them for both by CPPFLAGS) */
#ifndef AUTO_GEMV_MID_N
#define AUTO_GEMV_MID_N 8192 /* also gemv from T 3 where N is at most this */
#endif
#ifndef AUTO_GEMV_MID_K
#define AUTO_GEMV_MID_K 4096 /* and K at most this (0: any K) */
#endif
#ifndef AUTO_GEMV_MID_T
#define AUTO_GEMV_MID_T 3 /* and T at most this */
#endif
#define MMA_T 32 /* the largest T of mma's and mmr's kernels (gpu/linear.cu, MM_MAX_T); cublas beyond */

/* (N, K), and T: the GEMVs' range and beyond it. N 1027: gemv2's last block has 3 rows; K 33, and 4100 at
 * 16 bits: not a multiple of the 16-byte vector (gemv steps by element, gemv2 hands it to gemv). N 40000:
 * 5000 blocks of gemv, more than any card holds at once, so gemv runs without staging its first vectors
 * in shared memory (the narrower shapes are staged: one wave); K 136 leaves lanes without a vector. */
static const int64_t shapes[][2] = {{96, 64},   {97, 33},     {960, 576},  {576, 1536},
                                    {37, 4100}, {1027, 4096}, {40000, 136}};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])
static const int64_t Ts[] = {1, 2, 3, 8, 9, 16, 32, 64};

static cudaStream_t g_stream;
static cublasHandle_t g_blas;
static uint64_t g_seed;

#define CK_CUDA(call)                                                                                        \
    do {                                                                                                     \
        cudaError_t e_ = (call);                                                                             \
        ck_assert_msg(e_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(e_));                           \
    } while (0)

/* The test's generator: splitmix64's next value of *rng. */
static uint64_t next_random(uint64_t *rng) {
    uint64_t z = (*rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* n random 16-bit or 32-bit patterns of finite values of dt in [-2, 2). */
static void *random_values(lr_dtype dt, int64_t n, uint64_t *rng) {
    float *f = malloc((size_t)n * sizeof *f);
    void *raw = malloc((size_t)n * lr_dtype_size(dt));
    ck_assert(f && raw);
    for (int64_t i = 0; i < n; i++)
        f[i] = (float)((double)(next_random(rng) >> 11) * 0x1p-53 * 4 - 2);
    lr_convert(raw, dt, f, LR_F32, (size_t)n);
    free(f);
    return raw;
}

/* A pair of terms that cancel in every output, planted in random_values' data so that the
 * exact order check sees a change of order at F16 and BF16 too: x[t][0] = x[t][K-1] = 2^11
 * for every token, w[n][0] = 2^10 and w[n][K-1] = -2^10 (signs alternating over n). Their
 * products, +-2^21, are exact and cancel in any order, but the accumulator that holds one
 * of them keeps only the bits of the other terms above its ulp (2^-2), so which terms
 * share it with the big one (the order) decides the low bits of a result whose own size
 * is that of the random terms, and the 16-bit rounding no longer hides them. Exact in all
 * three dtypes. x_raw (T, K) or w_raw (N, K) may be NULL: the other's half alone. */
static void plant_cancelling_pair(void *x_raw, void *w_raw, int64_t T, int64_t N, int64_t K, lr_dtype dt) {
    if (K < 2) return;
    if (x_raw) {
        float *x = tu_to_f32(x_raw, dt, T * K);
        for (int64_t t = 0; t < T; t++)
            x[t * K] = x[t * K + K - 1] = 0x1p11f;
        lr_convert(x_raw, dt, x, LR_F32, (size_t)(T * K));
        free(x);
    }
    if (w_raw) {
        float *w = tu_to_f32(w_raw, dt, N * K);
        for (int64_t n = 0; n < N; n++) {
            w[n * K] = n % 2 ? -0x1p10f : 0x1p10f;
            w[n * K + K - 1] = -w[n * K];
        }
        lr_convert(w_raw, dt, w, LR_F32, (size_t)(N * K));
        free(w);
    }
}

static uint32_t dtype_bit(lr_dtype dt) {
    return dt == LR_F32 ? LR_KERNEL_F32 : dt == LR_F16 ? LR_KERNEL_F16 : LR_KERNEL_BF16;
}

/* Outputs (of n, es bytes each) where a and b differ. */
static int64_t count_differences(const void *a, const void *b, int64_t n, size_t es) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++)
        c += memcmp((const char *)a + (size_t)i * es, (const char *)b + (size_t)i * es, es) != 0;
    return c;
}

/* No device: the exact order check of test_repeat_and_fallback can fail. For each shape
 * (where K is a multiple of the dtype's 16-byte vector, so that gemv sums by vector), at
 * T 2, gemv's simulated order against two other orders of the same terms, on the device
 * test's data (random_values with the cancelling pair), at F32 and BF16. Loop index: shape. */
START_TEST(test_order_check_power) {
    int64_t N = shapes[_i][0], K = shapes[_i][1], T = 2;
    uint64_t rng = g_seed ^ (uint64_t)_i * 0x9e3779b97f4a7c15ull;
    int64_t n = T * N;
    const lr_dtype dts[] = {LR_F32, LR_BF16};
    for (int d = 0; d < 2; d++) {
        lr_dtype dt = dts[d];
        size_t es = lr_dtype_size(dt);
        int64_t V = 16 / (int64_t)es;
        if (K % V != 0) continue; /* gemv sums element by element there, as the other order would */
        void *x = random_values(dt, T * K, &rng), *w = random_values(dt, N * K, &rng);
        plant_cancelling_pair(x, w, T, N, K, dt);
        void *ref = malloc((size_t)n * es), *elem = malloc((size_t)n * es), *g2 = malloc((size_t)n * es);
        ck_assert(ref && elem && g2);
        tu_sim_gemv(ref, x, w, T, N, K, dt, false, false);
        tu_sim_gemv(elem, x, w, T, N, K, dt, true, false);
        tu_sim_gemv2(g2, x, w, T, N, K, dt);
        int64_t de = count_differences(ref, elem, n, es), d2 = count_differences(ref, g2, n, es);
        printf("order check power, %s N %lld K %lld T %lld: element order differs at %lld of %lld outputs, "
               "gemv2's at %lld\n",
               lr_dtype_name(dt), (long long)N, (long long)K, (long long)T, (long long)de, (long long)n,
               (long long)d2);
        /* Most outputs, not just some: with the pair, a change of order shows in the bits of
         * at least half of them at either dtype. */
        ck_assert_msg(2 * de >= n,
                      "%s N %lld K %lld: gemv's order and the element order differ at only %lld of %lld "
                      "outputs, so the order check could miss that change (seed %llu)",
                      lr_dtype_name(dt), (long long)N, (long long)K, (long long)de, (long long)n,
                      (unsigned long long)g_seed);
        if (K / V > 32) /* with 32 vectors or fewer, gemv2's order is gemv's */
            ck_assert_msg(2 * d2 >= n,
                          "%s N %lld K %lld: gemv's and gemv2's orders differ at only %lld of %lld outputs "
                          "(seed %llu)",
                          lr_dtype_name(dt), (long long)N, (long long)K, (long long)d2, (long long)n,
                          (unsigned long long)g_seed);
        free(x), free(w), free(ref), free(elem), free(g2);
    }
}
END_TEST

/* y (host, dt) of variant on the device buffers. */
static void *run(const char *variant, const void *x, const void *w, int64_t T, int64_t N, int64_t K,
                 lr_dtype dt) {
    size_t bytes = (size_t)(T * N) * lr_dtype_size(dt);
    void *y, *h = malloc(bytes);
    ck_assert_ptr_nonnull(h);
    CK_CUDA(cudaMalloc(&y, bytes));
    int rc = lr_gpu_linear(variant, y, x, w, T, N, K, dt, g_blas, g_stream);
    ck_assert_msg(rc == LR_OK, "linear/%s: %s: %s", variant, lr_status_name(rc), lr_last_error());
    CK_CUDA(cudaStreamSynchronize(g_stream));
    CK_CUDA(cudaMemcpy(h, y, bytes, cudaMemcpyDeviceToHost));
    CK_CUDA(cudaFree(y));
    return h;
}

/* The first of n elements of es bytes where a and b differ, or -1. */
static int64_t first_difference(const void *a, const void *b, int64_t n, size_t es) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp((const char *)a + (size_t)i * es, (const char *)b + (size_t)i * es, es) != 0) return i;
    return -1;
}

/* Loop index: shape * N_DTYPES + dtype. */
START_TEST(test_repeat_and_fallback) {
    int64_t N = shapes[_i / N_DTYPES][0], K = shapes[_i / N_DTYPES][1];
    lr_dtype dt = dtypes[_i % N_DTYPES];
    size_t es = lr_dtype_size(dt);
    uint64_t rng = g_seed ^ (uint64_t)_i * 0x2545f4914f6cdd1dull;
    void *wh = random_values(dt, N * K, &rng), *w;
    plant_cancelling_pair(NULL, wh, 0, N, K, dt); /* each x gets its half below */
    CK_CUDA(cudaMalloc(&w, (size_t)(N * K) * es));
    CK_CUDA(cudaMemcpy(w, wh, (size_t)(N * K) * es, cudaMemcpyHostToDevice));
    for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
        int64_t T = Ts[ti];
        void *xh = random_values(dt, T * K, &rng), *x;
        plant_cancelling_pair(xh, NULL, T, 0, K, dt);
        CK_CUDA(cudaMalloc(&x, (size_t)(T * K) * es));
        CK_CUDA(cudaMemcpy(x, xh, (size_t)(T * K) * es, cudaMemcpyHostToDevice));
        void *def = run("cublas", x, w, T, N, K, dt);
        for (size_t i = 0; i < lr_gpu_variant_count(); i++) {
            const lr_gpu_variant *v = lr_gpu_variant_at(i);
            if (strcmp(v->family, "linear") != 0 || !(v->dtypes & dtype_bit(dt))) continue;
            void *a = run(v->name, x, w, T, N, K, dt), *b = run(v->name, x, w, T, N, K, dt);
            ck_assert_msg(memcmp(a, b, (size_t)(T * N) * es) == 0,
                          "linear/%s %s T %lld (N %lld, K %lld): a second run differs (seed %llu)", v->name,
                          lr_dtype_name(dt), (long long)T, (long long)N, (long long)K,
                          (unsigned long long)g_seed);
            /* at T <= 8, the GEMVs' bits are their documented order's, simulated on the CPU */
            bool g1 = !strcmp(v->name, "gemv"), g2 = !strcmp(v->name, "gemv2");
            if ((g1 || g2) && T <= GEMV_T) {
                void *want = malloc((size_t)(T * N) * es);
                ck_assert_ptr_nonnull(want);
                if (g1)
                    tu_sim_gemv(want, xh, wh, T, N, K, dt, false, false);
                else
                    tu_sim_gemv2(want, xh, wh, T, N, K, dt);
                int64_t at = first_difference(a, want, T * N, es);
                ck_assert_msg(
                    at < 0,
                    "linear/%s %s T %lld (N %lld, K %lld): output %lld is not its simulated order's "
                    "bits (seed %llu)",
                    v->name, lr_dtype_name(dt), (long long)T, (long long)N, (long long)K, (long long)at,
                    (unsigned long long)g_seed);
                free(want);
            }
            if ((g1 || g2) && T > GEMV_T)
                ck_assert_msg(memcmp(a, def, (size_t)(T * N) * es) == 0,
                              "linear/%s %s T %lld (N %lld, K %lld) is not cublas's result (seed %llu)",
                              v->name, lr_dtype_name(dt), (long long)T, (long long)N, (long long)K,
                              (unsigned long long)g_seed);
            if ((!strcmp(v->name, "mma") || !strcmp(v->name, "mmr")) &&
                (T > MMA_T || dt == LR_F32 || K % 8 != 0))
                ck_assert_msg(memcmp(a, def, (size_t)(T * N) * es) == 0,
                              "linear/%s %s T %lld (N %lld, K %lld) is not cublas's result (seed %llu)",
                              v->name, lr_dtype_name(dt), (long long)T, (long long)N, (long long)K,
                              (unsigned long long)g_seed);
            if (!strcmp(v->name, "auto")) { /* gemv's bits at T <= 2 and in the mid range */
                bool by_gemv = T <= AUTO_T || (T <= AUTO_GEMV_MID_T && N <= AUTO_GEMV_MID_N &&
                                               (AUTO_GEMV_MID_K == 0 || K <= AUTO_GEMV_MID_K));
                void *want = by_gemv ? run("gemv", x, w, T, N, K, dt) : NULL;
                ck_assert_msg(memcmp(a, want ? want : def, (size_t)(T * N) * es) == 0,
                              "linear/auto %s T %lld (N %lld, K %lld) is not %s's result (seed %llu)",
                              lr_dtype_name(dt), (long long)T, (long long)N, (long long)K,
                              want ? "gemv" : "cublas", (unsigned long long)g_seed);
                free(want);
            }
            free(a), free(b);
        }
        free(def), free(xh);
        CK_CUDA(cudaFree(x));
    }
    free(wh);
    CK_CUDA(cudaFree(w));
}
END_TEST

/* A device copy of n bytes of host data. */
static void *to_device(const void *h, size_t n) {
    void *d;
    CK_CUDA(cudaMalloc(&d, n));
    CK_CUDA(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice));
    return d;
}

/* Where the two host copies of n elements of es bytes first differ (-1: nowhere). */
static int64_t device_difference(const void *a_d, const void *b_d, int64_t n, size_t es) {
    void *a = malloc((size_t)n * es), *b = malloc((size_t)n * es);
    ck_assert(a && b);
    CK_CUDA(cudaMemcpy(a, a_d, (size_t)n * es, cudaMemcpyDeviceToHost));
    CK_CUDA(cudaMemcpy(b, b_d, (size_t)n * es, cudaMemcpyDeviceToHost));
    int64_t at = first_difference(a, b, n, es);
    free(a), free(b);
    return at;
}

/* Bytes past an output that a kernel must not touch (filled with 0x5a). */
#define GUARD 256

static void guard_intact(const void *tail_d, const char *what, lr_dtype dt, int64_t T) {
    unsigned char tail[GUARD];
    CK_CUDA(cudaMemcpy(tail, tail_d, GUARD, cudaMemcpyDeviceToHost));
    for (int i = 0; i < GUARD; i++)
        ck_assert_msg(tail[i] == 0x5a, "%s %s T %lld: byte %d past the output was written (seed %llu)", what,
                      lr_dtype_name(dt), (long long)T, i, (unsigned long long)g_seed);
}

/* gate_up_proj with the activation in one call (lr_gpu_linear_silu) against auto's product
 * then the activation's default, bit for bit: the fused kernel at T 1 and 2 where the rows
 * are whole vectors, the two kernels otherwise (T 3, K 33 or 4100 at 16 bits). The packed
 * weight is (2 NI, K) with NI half of the shape's N (odd NI: the last block's warps idle
 * in part). Loop index: shape * N_DTYPES + dtype. */
START_TEST(test_linear_silu) {
    int64_t NI = shapes[_i / N_DTYPES][0] / 2, K = shapes[_i / N_DTYPES][1], N = 2 * NI;
    lr_dtype dt = dtypes[_i % N_DTYPES];
    size_t es = lr_dtype_size(dt);
    int64_t V = 16 / (int64_t)es;
    uint64_t rng = g_seed ^ (uint64_t)_i * 0x94d049bb133111ebull;
    void *wh = random_values(dt, N * K, &rng), *gu, *act, *want;
    plant_cancelling_pair(NULL, wh, 0, N, K, dt);
    void *w = to_device(wh, (size_t)(N * K) * es);
    for (int64_t T = 1; T <= 3; T++) {
        void *xh = random_values(dt, T * K, &rng);
        plant_cancelling_pair(xh, NULL, T, 0, K, dt);
        size_t ab = (size_t)(T * NI) * es;
        void *x = to_device(xh, (size_t)(T * K) * es);
        CK_CUDA(cudaMalloc(&gu, 2 * ab));
        CK_CUDA(cudaMalloc(&act, ab + GUARD));
        CK_CUDA(cudaMemset(act, 0x5a, ab + GUARD)); /* the tail must stay so */
        CK_CUDA(cudaMalloc(&want, ab));
        ck_assert_int_eq(lr_gpu_linear(NULL, gu, x, w, T, N, K, dt, g_blas, g_stream), LR_OK);
        ck_assert_int_eq(lr_gpu_silu_and_mul(NULL, want, gu, T, NI, dt, g_stream), LR_OK);
        CK_CUDA(cudaMemset(gu, 0xff, 2 * ab)); /* the fused kernel must not need it */
        bool fuses = lr_gpu_linear_fuses(T, K, x, w, dt);
        ck_assert_int_eq(fuses, T <= LR_GPU_LINEAR_FUSED_MAX_T && K % V == 0);
        int rc = lr_gpu_linear_silu(act, fuses ? NULL : gu, x, w, T, NI, K, dt, g_blas, g_stream);
        ck_assert_msg(rc == LR_OK, "linear_silu: %s", lr_last_error());
        CK_CUDA(cudaStreamSynchronize(g_stream));
        guard_intact((char *)act + ab, "linear_silu", dt, T);
        int64_t at = device_difference(act, want, T * NI, es);
        ck_assert_msg(at < 0,
                      "linear_silu %s T %lld (NI %lld, K %lld, %s): output %lld is not auto then the "
                      "activation's bits (seed %llu)",
                      lr_dtype_name(dt), (long long)T, (long long)NI, (long long)K,
                      fuses ? "fused" : "two kernels", (long long)at, (unsigned long long)g_seed);
        free(xh);
        CK_CUDA(cudaFree(x));
        CK_CUDA(cudaFree(gu));
        CK_CUDA(cudaFree(act));
        CK_CUDA(cudaFree(want));
    }
    free(wh);
    CK_CUDA(cudaFree(w));
}
END_TEST

/* (nh, nkv, hd, K): small heads; K 33, unaligned at every dtype (the two kernels); Llama-3-8B's
 * 32/8 heads of 128 on 4096 (one wave of staged blocks on an H200); kv heads as many as q. */
static const int64_t rope_shapes[][4] = {{4, 2, 16, 64}, {3, 1, 8, 33}, {32, 8, 128, 4096}, {8, 8, 64, 136}};
#define ROPE_SLOTS 8 /* slots of the rope cases' caches */
#define N_ROPE_SHAPES (int)(sizeof rope_shapes / sizeof rope_shapes[0])

/* A rope case on the device: the positions and slots of up to 3 tokens (token 1's slot -1:
 * padding, no cache entry) and the frequencies of hd; for T tokens the expected qkv and caches
 * (want, kw, vw) and the call's (got, with GUARD bytes after it, kg, vg), both caches filled
 * alike from cache_h beforehand, so that a stray or missing write shows. */
typedef struct {
    int64_t nh, nkv, hd, K, N, T, ncache; /* ncache: elements of a cache */
    size_t es;
    void *pos, *slots, *inv;
    void *want, *got, *kw, *vw, *kg, *vg;
} rope_case;

static void rope_case_make(rope_case *c, const int64_t *sh, int64_t T, lr_dtype dt, const void *cache_h) {
    const int64_t pos_h[3] = {17, 1000, 3}, slots_h[3] = {5, -1, 2};
    double inv_h[64];
    *c = (rope_case){.nh = sh[0], .nkv = sh[1], .hd = sh[2], .K = sh[3], .T = T, .es = lr_dtype_size(dt)};
    c->N = (c->nh + 2 * c->nkv) * c->hd, c->ncache = ROPE_SLOTS * c->nkv * c->hd;
    ck_assert_int_le(c->hd / 2, 64);
    for (int64_t i = 0; i < c->hd / 2; i++)
        inv_h[i] = pow(10000.0, -2.0 * (double)i / (double)c->hd);
    c->pos = to_device(pos_h, sizeof pos_h), c->slots = to_device(slots_h, sizeof slots_h);
    c->inv = to_device(inv_h, (size_t)(c->hd / 2) * sizeof *inv_h);
    size_t cb = (size_t)c->ncache * c->es, qb = (size_t)(T * c->N) * c->es;
    c->kw = to_device(cache_h, cb), c->vw = to_device(cache_h, cb);
    c->kg = to_device(cache_h, cb), c->vg = to_device(cache_h, cb);
    CK_CUDA(cudaMalloc(&c->want, qb));
    CK_CUDA(cudaMalloc(&c->got, qb + GUARD));
    CK_CUDA(cudaMemset(c->got, 0x5a, qb + GUARD));
}

/* The call's qkv and caches equal the expected ones bit for bit; then the case is freed. how:
 * the call and its case, for the message. */
static void rope_case_check(rope_case *c, const char *how, lr_dtype dt) {
    CK_CUDA(cudaStreamSynchronize(g_stream));
    guard_intact((char *)c->got + (size_t)(c->T * c->N) * c->es, how, dt, c->T);
    const char *part[3] = {"qkv", "k cache", "v cache"};
    int64_t at[3] = {device_difference(c->got, c->want, c->T * c->N, c->es),
                     device_difference(c->kg, c->kw, c->ncache, c->es),
                     device_difference(c->vg, c->vw, c->ncache, c->es)};
    for (int k = 0; k < 3; k++)
        ck_assert_msg(
            at[k] < 0, "%s %s T %lld (%lld/%lld heads of %lld, K %lld): %s element %lld differs (seed %llu)",
            how, lr_dtype_name(dt), (long long)c->T, (long long)c->nh, (long long)c->nkv, (long long)c->hd,
            (long long)c->K, part[k], (long long)at[k], (unsigned long long)g_seed);
    void *p[] = {c->pos, c->slots, c->inv, c->want, c->got, c->kw, c->vw, c->kg, c->vg};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        CK_CUDA(cudaFree(p[i]));
}

/* qkv_proj with RoPE and the cache write in one call (lr_gpu_linear_rope_cache) against auto's
 * product then lr_gpu_rotary_cache, bit for bit in qkv and in both caches: fused at T 1 and 2
 * where the rows are whole vectors, the two kernels otherwise. Loop index: shape * N_DTYPES +
 * dtype. */
START_TEST(test_linear_rope_cache) {
    const int64_t *sh = rope_shapes[_i / N_DTYPES];
    int64_t N = (sh[0] + 2 * sh[1]) * sh[2], K = sh[3];
    lr_dtype dt = dtypes[_i % N_DTYPES];
    size_t es = lr_dtype_size(dt);
    uint64_t rng = g_seed ^ (uint64_t)_i * 0xd6e8feb86659fd93ull;
    void *wh = random_values(dt, N * K, &rng), *ch = random_values(dt, ROPE_SLOTS * sh[1] * sh[2], &rng);
    void *w = to_device(wh, (size_t)(N * K) * es);
    for (int64_t T = 1; T <= 3; T++) {
        rope_case c;
        rope_case_make(&c, sh, T, dt, ch);
        void *xh = random_values(dt, T * K, &rng);
        void *x = to_device(xh, (size_t)(T * K) * es);
        ck_assert_int_eq(lr_gpu_linear(NULL, c.want, x, w, T, N, K, dt, g_blas, g_stream), LR_OK);
        ck_assert_int_eq(lr_gpu_rotary_cache(c.want, N, T, c.nh, c.nkv, c.hd, c.pos, c.inv, c.kw, c.vw,
                                             c.slots, dt, g_stream),
                         LR_OK);
        bool fuses = lr_gpu_linear_fuses(T, K, x, w, dt);
        ck_assert_int_eq(fuses, T <= LR_GPU_LINEAR_FUSED_MAX_T && K % (16 / (int64_t)es) == 0);
        int rc = lr_gpu_linear_rope_cache(c.got, x, w, T, c.nh, c.nkv, c.hd, K, c.pos, c.inv, c.kg, c.vg,
                                          c.slots, dt, g_blas, g_stream);
        ck_assert_msg(rc == LR_OK, "linear_rope_cache: %s", lr_last_error());
        rope_case_check(&c,
                        fuses ? "linear_rope_cache (fused) against auto then rotary_cache"
                              : "linear_rope_cache (two kernels) against auto then rotary_cache",
                        dt);
        free(xh);
        CK_CUDA(cudaFree(x));
    }
    free(wh), free(ch);
    CK_CUDA(cudaFree(w));
}
END_TEST

/* lr_gpu_rotary_cache's kernel for many tokens (lr_gpu_rope_wide) against its kernel for few,
 * bit for bit in qkv (with GUARD bytes after it) and in both caches: positions up to 8191
 * (the float64 angles' large arguments), every seventh token padding (slot -1), the slots
 * otherwise a shuffle of the cache's; at T 64 (ROT_WIDE_MIN_T, one round of a block's
 * tasks at 16 bits), 131 and 300; at F32 Llama-3-8B's row takes two rounds. The shapes'
 * hd / 2 are multiples of every dtype's vector, so the wide kernel takes each call, which
 * its launch count confirms. Loop index: shape * N_DTYPES + dtype. */
static const int64_t wide_shapes[][3] = {{32, 8, 128}, {4, 2, 16}, {5, 3, 64}};
#define N_WIDE_SHAPES (int)(sizeof wide_shapes / sizeof wide_shapes[0])

START_TEST(test_rotary_cache_wide) {
    const int64_t nh = wide_shapes[_i / N_DTYPES][0], nkv = wide_shapes[_i / N_DTYPES][1],
                  hd = wide_shapes[_i / N_DTYPES][2], N = (nh + 2 * nkv) * hd;
    lr_dtype dt = dtypes[_i % N_DTYPES];
    size_t es = lr_dtype_size(dt);
    uint64_t rng = g_seed ^ (uint64_t)_i * 0x2545f4914f6cdd1dull;
    double inv_h[64];
    ck_assert_int_le(hd / 2, 64);
    for (int64_t i = 0; i < hd / 2; i++)
        inv_h[i] = pow(500000.0, -2.0 * (double)i / (double)hd);
    void *inv = to_device(inv_h, (size_t)(hd / 2) * sizeof *inv_h);
    const int64_t tokens[] = {64, 131, 300};
    for (size_t k = 0; k < sizeof tokens / sizeof tokens[0]; k++) {
        const int64_t T = tokens[k], nslots = T + 5, ncache = nslots * nkv * hd;
        int64_t *pos_h = malloc((size_t)T * sizeof *pos_h), *slot_h = malloc((size_t)T * sizeof *slot_h),
                *perm = malloc((size_t)nslots * sizeof *perm);
        ck_assert(pos_h && slot_h && perm);
        for (int64_t i = 0; i < nslots; i++)
            perm[i] = i;
        for (int64_t i = nslots - 1; i > 0; i--) { /* Fisher-Yates */
            int64_t j = (int64_t)(next_random(&rng) % (uint64_t)(i + 1)), tmp = perm[i];
            perm[i] = perm[j], perm[j] = tmp;
        }
        for (int64_t t = 0; t < T; t++) {
            pos_h[t] = (int64_t)(next_random(&rng) % 8192);
            slot_h[t] = t % 7 == 3 ? -1 : perm[t];
        }
        void *pos = to_device(pos_h, (size_t)T * sizeof *pos_h),
             *slots = to_device(slot_h, (size_t)T * sizeof *slot_h);
        void *qh = random_values(dt, T * N, &rng), *ch = random_values(dt, ncache, &rng);
        size_t qb = (size_t)(T * N) * es, cb = (size_t)ncache * es;
        void *want = to_device(qh, qb), *kw = to_device(ch, cb), *vw = to_device(ch, cb);
        void *got, *kg = to_device(ch, cb), *vg = to_device(ch, cb);
        CK_CUDA(cudaMalloc(&got, qb + GUARD));
        CK_CUDA(cudaMemset(got, 0x5a, qb + GUARD));
        CK_CUDA(cudaMemcpy(got, qh, qb, cudaMemcpyHostToDevice));
        lr_gpu_rope_wide_set(0);
        ck_assert_int_eq(lr_gpu_rotary_cache(want, N, T, nh, nkv, hd, pos, inv, kw, vw, slots, dt, g_stream),
                         LR_OK);
        uint64_t before = lr_gpu_rope_wide_launches();
        lr_gpu_rope_wide_set(1);
        int rc = lr_gpu_rotary_cache(got, N, T, nh, nkv, hd, pos, inv, kg, vg, slots, dt, g_stream);
        lr_gpu_rope_wide_set(-1);
        ck_assert_msg(rc == LR_OK, "rotary_cache (wide): %s", lr_last_error());
        ck_assert_msg(lr_gpu_rope_wide_launches() == before + 1,
                      "rotary_cache %s T %lld (%lld/%lld heads of %lld): the wide kernel did not run",
                      lr_dtype_name(dt), (long long)T, (long long)nh, (long long)nkv, (long long)hd);
        CK_CUDA(cudaStreamSynchronize(g_stream));
        guard_intact((char *)got + qb, "rotary_cache (wide)", dt, T);
        const char *part[3] = {"qkv", "k cache", "v cache"};
        int64_t at[3] = {device_difference(got, want, T * N, es), device_difference(kg, kw, ncache, es),
                         device_difference(vg, vw, ncache, es)};
        for (int p = 0; p < 3; p++)
            ck_assert_msg(
                at[p] < 0,
                "rotary_cache (wide) against its kernel for few tokens, %s T %lld (%lld/%lld heads of "
                "%lld): %s element %lld differs (seed %llu)",
                lr_dtype_name(dt), (long long)T, (long long)nh, (long long)nkv, (long long)hd, part[p],
                (long long)at[p], (unsigned long long)g_seed);
        void *d[] = {pos, slots, want, kw, vw, got, kg, vg};
        for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
            CK_CUDA(cudaFree(d[i]));
        free(pos_h), free(slot_h), free(perm), free(qh), free(ch);
    }
    CK_CUDA(cudaFree(inv));
}
END_TEST

/* The norm before the fused GEMVs (lr_gpu_norm_in) on T rows of K, with a residual (add) or
 * starting the stream, its weight not all ones; and what the two kernels give: the
 * residual_out and normed of rmsnorm vec on a residual that held residual_in (or zeros). */
typedef struct {
    lr_gpu_norm_in in;
    void *res_in, *res_out, *hidden, *weight, *normed; /* device; res_out with GUARD bytes after it */
    void *want_res, *want_normed, *orig_res;
    size_t rb; /* T K float32 bytes */
} norm_case;

static void norm_case_make(norm_case *c, int64_t T, int64_t K, bool add, lr_dtype dt, uint64_t *rng) {
    size_t es = lr_dtype_size(dt);
    c->rb = (size_t)(T * K) * sizeof(float);
    void *hh = random_values(dt, T * K, rng), *rh = random_values(LR_F32, T * K, rng),
         *wh = random_values(dt, K, rng);
    c->hidden = to_device(hh, (size_t)(T * K) * es), c->weight = to_device(wh, (size_t)K * es);
    c->res_in = to_device(rh, c->rb), c->want_res = to_device(rh, c->rb), c->orig_res = to_device(rh, c->rb);
    if (!add) CK_CUDA(cudaMemset(c->want_res, 0, c->rb));
    CK_CUDA(cudaMalloc(&c->res_out, c->rb + GUARD));
    CK_CUDA(cudaMemset(c->res_out, 0x5a, c->rb + GUARD));
    CK_CUDA(cudaMalloc(&c->normed, (size_t)(T * K) * es));
    CK_CUDA(cudaMalloc(&c->want_normed, (size_t)(T * K) * es));
    ck_assert_int_eq(lr_gpu_fused_add_rms_norm("vec", c->want_normed, c->want_res, c->hidden, c->weight, T, K,
                                               1e-5f, dt, g_stream),
                     LR_OK);
    c->in = (lr_gpu_norm_in){c->hidden, add ? c->res_in : NULL, c->res_out, c->weight, 1e-5f, c->normed};
    free(hh), free(rh), free(wh);
}

/* The stream written as the two kernels write it, residual_in untouched, nothing past it. */
static void norm_case_check(norm_case *c, const char *what, lr_dtype dt, int64_t T, bool fused) {
    CK_CUDA(cudaStreamSynchronize(g_stream));
    int64_t at = device_difference(c->res_out, c->want_res, (int64_t)(c->rb / 4), 4);
    ck_assert_msg(at < 0,
                  "%s %s T %lld (%s): residual_out element %lld is not the vec norm's stream (seed %llu)",
                  what, lr_dtype_name(dt), (long long)T, fused ? "fused" : "apart", (long long)at,
                  (unsigned long long)g_seed);
    guard_intact((char *)c->res_out + c->rb, what, dt, T);
    at = device_difference(c->res_in, c->orig_res, (int64_t)(c->rb / 4), 4);
    ck_assert_msg(at < 0, "%s %s T %lld: residual_in element %lld was written (seed %llu)", what,
                  lr_dtype_name(dt), (long long)T, (long long)at, (unsigned long long)g_seed);
    void *p[] = {c->res_in, c->res_out,  c->hidden,      c->weight,
                 c->normed, c->want_res, c->want_normed, c->orig_res};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        CK_CUDA(cudaFree(p[i]));
}

/* gate_up_proj with the activation and the norm before them (lr_gpu_norm_linear_silu) against
 * the vec norm, then lr_gpu_linear_silu on its output, bit for bit (act and the stream): the
 * one kernel where lr_gpu_norm_linear_fuses (T <= 2, whole vectors, the rows within its
 * shared memory), the kernels apart otherwise; with a residual and starting the stream.
 * Loop index: shape * N_DTYPES + dtype. */
START_TEST(test_norm_linear_silu) {
    int64_t NI = shapes[_i / N_DTYPES][0] / 2, K = shapes[_i / N_DTYPES][1], N = 2 * NI;
    lr_dtype dt = dtypes[_i % N_DTYPES];
    size_t es = lr_dtype_size(dt);
    uint64_t rng = g_seed ^ (uint64_t)_i * 0xbf58476d1ce4e5b9ull;
    void *wh = random_values(dt, N * K, &rng);
    void *w = to_device(wh, (size_t)(N * K) * es);
    for (int64_t T = 1; T <= 3; T++)
        for (int add = 0; add < 2; add++) {
            norm_case c;
            norm_case_make(&c, T, K, add, dt, &rng);
            size_t ab = (size_t)(T * NI) * es;
            void *gu, *act, *want;
            CK_CUDA(cudaMalloc(&gu, 2 * ab));
            CK_CUDA(cudaMalloc(&act, ab + GUARD));
            CK_CUDA(cudaMemset(act, 0x5a, ab + GUARD));
            CK_CUDA(cudaMalloc(&want, ab));
            ck_assert_int_eq(lr_gpu_linear_silu(want, gu, c.want_normed, w, T, NI, K, dt, g_blas, g_stream),
                             LR_OK);
            bool fuses = lr_gpu_norm_linear_fuses(T, K, &c.in, w, dt);
            ck_assert_int_eq(fuses, T <= LR_GPU_LINEAR_FUSED_MAX_T && K % (16 / (int64_t)es) == 0 &&
                                        K <= 8192 && (size_t)(T * K) * es <= 32 * 1024);
            int rc = lr_gpu_norm_linear_silu(act, gu, &c.in, w, T, NI, K, dt, g_blas, g_stream);
            ck_assert_msg(rc == LR_OK, "norm_linear_silu: %s", lr_last_error());
            CK_CUDA(cudaStreamSynchronize(g_stream));
            guard_intact((char *)act + ab, "norm_linear_silu", dt, T);
            int64_t at = device_difference(act, want, T * NI, es);
            ck_assert_msg(
                at < 0,
                "norm_linear_silu %s T %lld (NI %lld, K %lld, %s, %s): output %lld is not the vec norm "
                "then linear_silu's bits (seed %llu)",
                lr_dtype_name(dt), (long long)T, (long long)NI, (long long)K, fuses ? "fused" : "apart",
                add ? "a residual" : "the stream starting", (long long)at, (unsigned long long)g_seed);
            norm_case_check(&c, "norm_linear_silu", dt, T, fuses);
            CK_CUDA(cudaFree(gu));
            CK_CUDA(cudaFree(act));
            CK_CUDA(cudaFree(want));
        }
    free(wh);
    CK_CUDA(cudaFree(w));
}
END_TEST

/* qkv_proj, RoPE and the cache write with the norm before them (lr_gpu_norm_linear_rope_cache)
 * against the vec norm then lr_gpu_linear_rope_cache on its output, bit for bit in qkv, both
 * caches and the stream. Loop index: shape * N_DTYPES + dtype. */
START_TEST(test_norm_linear_rope_cache) {
    const int64_t *sh = rope_shapes[_i / N_DTYPES];
    int64_t N = (sh[0] + 2 * sh[1]) * sh[2], K = sh[3];
    lr_dtype dt = dtypes[_i % N_DTYPES];
    size_t es = lr_dtype_size(dt);
    uint64_t rng = g_seed ^ (uint64_t)_i * 0x9e3779b97f4a7c15ull;
    void *wh = random_values(dt, N * K, &rng), *ch = random_values(dt, ROPE_SLOTS * sh[1] * sh[2], &rng);
    void *w = to_device(wh, (size_t)(N * K) * es);
    for (int64_t T = 1; T <= 3; T++)
        for (int add = 0; add < 2; add++) {
            norm_case n;
            rope_case c;
            norm_case_make(&n, T, K, add, dt, &rng);
            rope_case_make(&c, sh, T, dt, ch);
            ck_assert_int_eq(lr_gpu_linear_rope_cache(c.want, n.want_normed, w, T, c.nh, c.nkv, c.hd, K,
                                                      c.pos, c.inv, c.kw, c.vw, c.slots, dt, g_blas,
                                                      g_stream),
                             LR_OK);
            bool fuses = lr_gpu_norm_linear_fuses(T, K, &n.in, w, dt);
            int rc = lr_gpu_norm_linear_rope_cache(c.got, &n.in, w, T, c.nh, c.nkv, c.hd, K, c.pos, c.inv,
                                                   c.kg, c.vg, c.slots, dt, g_blas, g_stream);
            ck_assert_msg(rc == LR_OK, "norm_linear_rope_cache: %s", lr_last_error());
            char how[160];
            snprintf(how, sizeof how, "norm_linear_rope_cache (%s, %s) against vec then linear_rope_cache",
                     fuses ? "fused" : "apart", add ? "a residual" : "the stream starting");
            rope_case_check(&c, how, dt);
            norm_case_check(&n, "norm_linear_rope_cache", dt, T, fuses);
        }
    free(wh), free(ch);
    CK_CUDA(cudaFree(w));
}
END_TEST

/* ---- Main ---------------------------------------------------------------------------------------- */

int main(void) {
    g_seed = tu_gpu_seed("test_gpu_linear");

    Suite *contract = suite_create("gpu_linear_contract");
    TCase *tc = tcase_create("registry_and_arguments");
    tcase_add_test(tc, test_registry);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_loop_test(tc, test_order_check_power, 0, N_SHAPES);
    suite_add_tcase(contract, tc);
    if (tu_gpu_run_suite(contract)) return 1;

    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) {
        printf("test_gpu_linear: no CUDA device (%s); skipping the device checks (the op sweep judges the "
               "cases: test_gpu_ops)\n",
               e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return 77;
    }
    if (cudaStreamCreate(&g_stream) != cudaSuccess || lr_gpu_blas_create(&g_blas) != LR_OK) {
        printf("test_gpu_linear: cannot create a stream or a cuBLAS handle; skipping\n");
        return 77;
    }
    Suite *dev = suite_create("gpu_linear");
    tc = tcase_create("repeat_and_fallback");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_repeat_and_fallback, 0, N_SHAPES * N_DTYPES);
    suite_add_tcase(dev, tc);
    tc = tcase_create("fused"); /* the fused GEMVs apart, for a sanitizer: CK_RUN_CASE=fused */
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_linear_silu, 0, N_SHAPES * N_DTYPES);
    tcase_add_loop_test(tc, test_linear_rope_cache, 0, N_ROPE_SHAPES * N_DTYPES);
    tcase_add_loop_test(tc, test_norm_linear_silu, 0, N_SHAPES * N_DTYPES);
    tcase_add_loop_test(tc, test_norm_linear_rope_cache, 0, N_ROPE_SHAPES * N_DTYPES);
    suite_add_tcase(dev, tc);
    tc = tcase_create("rotary_cache_wide"); /* CK_RUN_CASE=rotary_cache_wide */
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_rotary_cache_wide, 0, N_WIDE_SHAPES * N_DTYPES);
    suite_add_tcase(dev, tc);
    int failed = tu_gpu_run_suite(dev);
    cudaStreamSynchronize(g_stream);
    cublasDestroy(g_blas);
    cudaStreamDestroy(g_stream);
    if (failed) printf("test_gpu_linear: %d failed; seed %llu\n", failed, (unsigned long long)g_seed);
    return failed ? 1 : 0;
}

#endif /* LR_HAVE_CUDA */
