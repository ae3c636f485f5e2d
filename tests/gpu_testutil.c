/* gpu_testutil.c: the GPU Check suites' seed and suite runner (gpu_testutil.h). */
#include "gpu_testutil.h"

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
