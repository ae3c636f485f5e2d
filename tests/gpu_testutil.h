/* gpu_testutil.h: what the GPU Check suites (test_gpu_ops, test_gpu_linear) share: the
 * run's seed (LR_TEST_SEED, or from the clock; printed so that a run can be repeated) and
 * running a suite in the test's own process. */
#ifndef LLAMAREF_GPU_TESTUTIL_H
#define LLAMAREF_GPU_TESTUTIL_H

#include <check.h>
#include <stdint.h>

/* The seed for this run: LR_TEST_SEED where set, else from the clock and the process id;
 * prints "<test>: seed N (LR_TEST_SEED=N repeats this run)". */
uint64_t tu_gpu_seed(const char *test);
/* Runs s without forking (CUDA does not survive a fork after the parent has initialised
 * it); returns the number of failed checks. */
int tu_gpu_run_suite(Suite *s);

#endif /* LLAMAREF_GPU_TESTUTIL_H */
