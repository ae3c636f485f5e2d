/* gpu_testutil.h: what the GPU Check suites (test_gpu_ops, test_gpu_linear) share: the
 * run's seed (LR_TEST_SEED, or from the clock; printed so that a run can be repeated),
 * running a suite in the test's own process, and the GEMVs' arithmetic order simulated on
 * the CPU (test_gpu_ops sweeps the simulations as variants; test_gpu_linear holds the
 * device's bits to them). */
#ifndef LLAMAREF_GPU_TESTUTIL_H
#define LLAMAREF_GPU_TESTUTIL_H

#include "llamaref.h"

#include <check.h>
#include <stdbool.h>
#include <stdint.h>

/* The seed for this run: LR_TEST_SEED where set, else from the clock and the process id;
 * prints "<test>: seed N (LR_TEST_SEED=N repeats this run)". */
uint64_t tu_gpu_seed(const char *test);
/* Runs s without forking (CUDA does not survive a fork after the parent has initialised
 * it); returns the number of failed checks. */
int tu_gpu_run_suite(Suite *s);

/* n values of dt as float32 (exact); a malloc'd array the caller frees. */
float *tu_to_f32(const void *raw, lr_dtype dt, int64_t n);
/* y (T x N, dt) = x (T x K) w^T in gpu/linear.cu's gemv order (element: one element at a
 * time whatever the alignment; planted: the last input feature left out). */
void tu_sim_gemv(void *y, const void *x, const void *w, int64_t T, int64_t N, int64_t K, lr_dtype dt,
                 bool element, bool planted);
/* The same in gemv2's order (TU_GEMV2_THREADS threads a block split K). */
#define TU_GEMV2_THREADS 128
void tu_sim_gemv2(void *y, const void *x, const void *w, int64_t T, int64_t N, int64_t K, lr_dtype dt);

#endif /* LLAMAREF_GPU_TESTUTIL_H */
