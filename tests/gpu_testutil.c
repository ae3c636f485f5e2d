/* gpu_testutil.c: the GPU Check suites' seed, suite runner and simulated GEMVs (gpu_testutil.h). */
#include "gpu_testutil.h"

#include "llamaref_ops.h"

#include <math.h>
#include <string.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

uint64_t tu_gpu_seed(const char *test) {
    const char *env = getenv("LR_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
    printf("%s: seed %llu (LR_TEST_SEED=%llu repeats this run)\n", test, (unsigned long long)seed,
           (unsigned long long)seed);
    return seed;
}

int tu_gpu_run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    /* No fork: CUDA does not survive a fork after the parent has initialised it. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed;
}

float *tu_to_f32(const void *raw, lr_dtype dt, int64_t n) {
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
    ck_assert_ptr_nonnull(f);
    lr_convert(f, LR_F32, raw, dt, (size_t)n);
    return f;
}

/* gpu/linear.cu's gemv, per output (t, n): lane l of 32 accumulates with fmaf, in the
 * vector order (16-byte vectors i = l, l + 32, ..., each of V elements in order) where the
 * kernel takes it (K a multiple of V, x and w 16-byte aligned: the same test as the
 * kernel's) or one element at a time (k = l, l + 32, ...); then the xor butterfly
 * (offsets 16 to 1); rounded once. element: always one element at a time. planted: the
 * last input feature left out, one element at a time, as tests/gpu_planted.cu's
 * gemv-drop-last. Any T (the kernel's own range is T <= 8). */
void tu_sim_gemv(void *y_raw, const void *x_raw, const void *w_raw, int64_t T, int64_t N, int64_t K,
                 lr_dtype dt, bool element, bool planted) {
    int V = 16 / (int)lr_dtype_size(dt);
    bool vec =
        !element && !planted && K % V == 0 && ((uintptr_t)x_raw & 15) == 0 && ((uintptr_t)w_raw & 15) == 0;
    int64_t terms = planted ? K - 1 : K;
    float *x = tu_to_f32(x_raw, dt, T * K), *w = tu_to_f32(w_raw, dt, N * K),
          *y = malloc((size_t)(T * N) * sizeof *y);
    ck_assert_ptr_nonnull(y);
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) {
            const float *xr = x + t * K, *wr = w + n * K;
            float acc[32], nx[32];
            for (int l = 0; l < 32; l++) {
                float a = 0.0f;
                if (vec)
                    for (int64_t i = l; i < terms / V; i += 32)
                        for (int j = 0; j < V; j++)
                            a = fmaf(wr[i * V + j], xr[i * V + j], a);
                else
                    for (int64_t k = l; k < terms; k += 32)
                        a = fmaf(wr[k], xr[k], a);
                acc[l] = a;
            }
            for (int o = 16; o > 0; o >>= 1) {
                for (int l = 0; l < 32; l++)
                    nx[l] = acc[l] + acc[l ^ o];
                memcpy(acc, nx, sizeof acc);
            }
            y[t * N + n] = acc[0];
        }
    lr_round_f32_n(y, (size_t)(T * N), dt);
    lr_convert(y_raw, dt, y, LR_F32, (size_t)(T * N));
    free(x), free(w), free(y);
}

/* gpu/linear.cu's gemv2, per output (t, n), where its vector path applies (else it runs
 * gemv, simulated as above): thread p of 128 accumulates with fmaf the 16-byte vectors
 * i = p, p + 128, ... (each of V elements in order); each warp of 32 threads sums them in
 * the xor tree (offsets 16 to 1); the 4 warps' sums are added in order; rounded once. */
void tu_sim_gemv2(void *y_raw, const void *x_raw, const void *w_raw, int64_t T, int64_t N, int64_t K,
                  lr_dtype dt) {
    int V = 16 / (int)lr_dtype_size(dt);
    if (K % V != 0 || ((uintptr_t)x_raw & 15) != 0 || ((uintptr_t)w_raw & 15) != 0) {
        tu_sim_gemv(y_raw, x_raw, w_raw, T, N, K, dt, false, false);
        return;
    }
    float *x = tu_to_f32(x_raw, dt, T * K), *w = tu_to_f32(w_raw, dt, N * K),
          *y = malloc((size_t)(T * N) * sizeof *y);
    ck_assert_ptr_nonnull(y);
    int64_t nv = K / V;
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) {
            const float *xr = x + t * K, *wr = w + n * K;
            float acc[TU_GEMV2_THREADS], nx[32], sum = 0.0f;
            for (int p = 0; p < TU_GEMV2_THREADS; p++) {
                float a = 0.0f;
                for (int64_t i = p; i < nv; i += TU_GEMV2_THREADS)
                    for (int j = 0; j < V; j++)
                        a = fmaf(wr[i * V + j], xr[i * V + j], a);
                acc[p] = a;
            }
            for (int warp = 0; warp < TU_GEMV2_THREADS / 32; warp++) {
                float *l = acc + 32 * warp;
                for (int o = 16; o > 0; o >>= 1) {
                    for (int q = 0; q < 32; q++)
                        nx[q] = l[q] + l[q ^ o];
                    memcpy(l, nx, sizeof nx);
                }
                sum = warp == 0 ? l[0] : sum + l[0];
            }
            y[t * N + n] = sum;
        }
    lr_round_f32_n(y, (size_t)(T * N), dt);
    lr_convert(y_raw, dt, y, LR_F32, (size_t)(T * N));
    free(x), free(w), free(y);
}
