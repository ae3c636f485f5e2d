/* test_fa3wts_sched.c: attention fa3wts' longest-first list schedule (gpu/fa3wts_sched.h,
 * FA3WTS_LPT) without a GPU. At the shapes the default's prefill gives fa3wts (32 heads,
 * 132 blocks) and at small grids (the 3 blocks test_gpu_ops caps fa3wts at): every work
 * tile goes to exactly one block, each block's heaviest first; each tile went to a block
 * that had the least work when it was given (the schedule's rule, checked by replaying
 * it); the busiest block has at most the snake order's work (fa3wts_index) and at
 * 1 x 2048 at most 0.95 of it (tools/fa3wts-balance.py: 0.947 at run 42's fit); and where
 * the grid or the work tiles exceed the parameters' room the schedule is off (the kernel
 * takes the snake order). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "../gpu/fa3wts_sched.h"

typedef struct {
    int64_t seqs, len, grid;
} shape;

static int64_t qtiles_of(int64_t len) { return (len + FA3WTS_SCHED_ROWS - 1) / FA3WTS_SCHED_ROWS; }

/* The busiest block's work when block b takes tiles b, 2 grid - 1 - b, 2 grid + b, ...
 * (fa3wts_index in gpu/attention_fa3.cu). */
static int64_t snake_busiest(int64_t grid, int64_t nh, int64_t nseq, int64_t len) {
    const int64_t items = nh * nseq * qtiles_of(len);
    int64_t most = 0;
    for (int64_t b = 0; b < grid; b++) {
        int64_t load = 0;
        for (int64_t r = 0; r * grid < items; r++) {
            const int64_t i = r * grid + (r % 2 == 0 ? b : grid - 1 - b);
            if (i < items) load += fa3wts_sched_work(len, i / (nh * nseq));
        }
        most = load > most ? load : most;
    }
    return most;
}

/* Checks sc against its rule and returns its busiest block's work. */
static int64_t check_schedule(const fa3wts_sched *sc, int64_t grid, int64_t nh, int64_t nseq, int64_t len) {
    const int64_t items = nh * nseq * qtiles_of(len), per_tile = nh * nseq;
    ck_assert_msg(sc->on, "%lld x %lld on %lld blocks: the schedule is off", (long long)nseq, (long long)len,
                  (long long)grid);
    ck_assert_int_eq(sc->first[0], 0);
    ck_assert_int_eq(sc->first[grid], items);
    int *owner = malloc((size_t)items * sizeof *owner);
    ck_assert_ptr_nonnull(owner);
    for (int64_t i = 0; i < items; i++)
        owner[i] = -1;
    int64_t most = 0;
    for (int64_t b = 0; b < grid; b++) {
        ck_assert_int_le(sc->first[b], sc->first[b + 1]);
        int64_t load = 0, prev = -1;
        for (int r = sc->first[b]; r < sc->first[b + 1]; r++) {
            const int64_t i = sc->item[r];
            ck_assert_msg(i >= 0 && i < items, "block %lld: work tile %lld of %lld", (long long)b,
                          (long long)i, (long long)items);
            ck_assert_msg(owner[i] < 0, "work tile %lld to blocks %d and %lld", (long long)i, owner[i],
                          (long long)b);
            ck_assert_msg(i > prev, "block %lld: work tile %lld after %lld (heaviest first)", (long long)b,
                          (long long)i, (long long)prev);
            owner[i] = (int)b, prev = i;
            load += fa3wts_sched_work(len, i / per_tile);
        }
        most = load > most ? load : most;
    }
    /* replayed: when tile i was given, its block had the least work (the lowest among equals) */
    int64_t *load = calloc((size_t)grid, sizeof *load);
    ck_assert_ptr_nonnull(load);
    for (int64_t i = 0; i < items; i++) {
        ck_assert_msg(owner[i] >= 0, "work tile %lld given to no block", (long long)i);
        for (int64_t b = 0; b < grid; b++)
            ck_assert_msg(load[b] > load[owner[i]] || (load[b] == load[owner[i]] && b >= owner[i]),
                          "work tile %lld to block %d (work %lld), block %lld had %lld", (long long)i,
                          owner[i], (long long)load[owner[i]], (long long)b, (long long)load[b]);
        load[owner[i]] += fa3wts_sched_work(len, i / per_tile);
    }
    free(load);
    free(owner);
    return most;
}

static const shape shapes[] = {{1, 512, 96},   {1, 1024, 132}, {1, 1536, 132}, {1, 2048, 132}, {2, 1024, 132},
                               {4, 1024, 132}, {8, 512, 132},  {16, 512, 132}, {5, 700, 3},    {1, 2048, 3}};

START_TEST(test_schedule) {
    const shape *s = &shapes[_i];
    const int64_t nh = 32;
    fa3wts_sched *sc = malloc(sizeof *sc);
    ck_assert_ptr_nonnull(sc);
    fa3wts_sched_build(sc, s->grid, nh, s->seqs, qtiles_of(s->len), s->len);
    const int64_t most = check_schedule(sc, s->grid, nh, s->seqs, s->len);
    const int64_t snake = snake_busiest(s->grid, nh, s->seqs, s->len);
    printf("%lld x %lld on %lld blocks: busiest block's work %lld against the snake order's %lld (%.3f)\n",
           (long long)s->seqs, (long long)s->len, (long long)s->grid, (long long)most, (long long)snake,
           (double)most / (double)snake);
    ck_assert_msg(most <= snake, "the schedule's busiest block %lld above the snake order's %lld",
                  (long long)most, (long long)snake);
    if (s->seqs == 1 && s->len == 2048 && s->grid == 132)
        ck_assert_msg(100 * most <= 95 * snake, "1 x 2048: %lld against the snake order's %lld, above 0.95",
                      (long long)most, (long long)snake);
    free(sc);
}
END_TEST

/* Past the parameters' room, and no work, the schedule is off. */
START_TEST(test_off) {
    fa3wts_sched *sc = malloc(sizeof *sc);
    ck_assert_ptr_nonnull(sc);
    fa3wts_sched_build(sc, FA3WTS_SCHED_G + 1, 32, 1, qtiles_of(2048), 2048); /* too many blocks */
    ck_assert_int_eq(sc->on, 0);
    fa3wts_sched_build(sc, 132, 32, 32, qtiles_of(512), 512); /* 3072 work tiles */
    ck_assert_int_eq(sc->on, 0);
    fa3wts_sched_build(sc, 132, 32, 0, 0, 0);
    ck_assert_int_eq(sc->on, 0);
    fa3wts_sched_build(sc, FA3WTS_SCHED_G, 32, 16, qtiles_of(512), 512); /* 1536: fits */
    ck_assert_int_eq(sc->on, 1);
    free(sc);
}
END_TEST

int main(void) {
    Suite *s = suite_create("fa3wts_sched");
    TCase *tc = tcase_create("schedule");
    tcase_add_loop_test(tc, test_schedule, 0, (int)(sizeof shapes / sizeof shapes[0]));
    tcase_add_test(tc, test_off);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
