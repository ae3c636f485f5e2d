/* fa3wts_sched.h: attention fa3wts' longest-first list schedule (FA3WTS_LPT in
 * gpu/attention_fa3.cu), host code in C that the launcher and tests/test_fa3wts_sched.c
 * share. fa3wts runs one block an SM, each taking several work tiles (192 query rows of one
 * (sequence, head)) in the grid's order: heads fastest, then sequences, then tiles, a
 * sequence's tiles ending at its last row, so the order is heaviest first. The schedule
 * gives each work tile, in that order, to the block with the least work so far (the lowest
 * block among equals), a work tile's work at run 42's fit of fa3wts' time (1.89 us a key
 * tile of 64 keys, 3.2 us a work tile: 100 and 169 here), every sequence counted at len new
 * tokens and no past (the lengths themselves are in device memory). A block's work tiles
 * are item[first[b] .. first[b + 1]), heaviest first. */
#ifndef LR_FA3WTS_SCHED_H
#define LR_FA3WTS_SCHED_H

#include <stdint.h>

#define FA3WTS_SCHED_G 160  /* the most blocks a schedule has */
#define FA3WTS_SCHED_N 2048 /* the most work tiles (12 waves of 132 SMs: 1584) */
#define FA3WTS_SCHED_ROWS 192
#define FA3WTS_SCHED_KEYS 64

/* Passed by value in the kernel's parameters (4.4 KB). */
typedef struct {
    int on; /* 0: too many blocks or work tiles; the kernel takes the snake order */
    uint16_t first[FA3WTS_SCHED_G + 1];
    uint16_t item[FA3WTS_SCHED_N];
} fa3wts_sched;

/* The work of a sequence's tile t (0: its last rows) at len new tokens: 0 past its rows. */
static inline int64_t fa3wts_sched_work(int64_t len, int64_t t) {
    const int64_t end = len - t * FA3WTS_SCHED_ROWS;
    return end > 0 ? 100 * ((end + FA3WTS_SCHED_KEYS - 1) / FA3WTS_SCHED_KEYS) + 169 : 0;
}

/* The schedule of nh heads x nseq sequences x qtiles tiles over grid blocks; sc->on 0
 * where it does not fit (more than FA3WTS_SCHED_G blocks or FA3WTS_SCHED_N work tiles, or
 * none). */
static inline void fa3wts_sched_build(fa3wts_sched *sc, int64_t grid, int64_t nh, int64_t nseq,
                                      int64_t qtiles, int64_t len) {
    const int64_t items = nh * nseq * qtiles;
    int64_t load[FA3WTS_SCHED_G];
    uint8_t owner[FA3WTS_SCHED_N];
    sc->on = grid > 0 && grid <= FA3WTS_SCHED_G && items > 0 && items <= FA3WTS_SCHED_N;
    if (!sc->on) return;
    for (int64_t b = 0; b < grid; b++)
        load[b] = 0, sc->first[b + 1] = 0;
    for (int64_t i = 0; i < items; i++) { /* a scan for the least: at most 2048 x 160, once a shape */
        int64_t least = 0;
        for (int64_t b = 1; b < grid; b++)
            if (load[b] < load[least]) least = b;
        owner[i] = (uint8_t)least;
        load[least] += fa3wts_sched_work(len, i / (nh * nseq));
        sc->first[least + 1]++;
    }
    sc->first[0] = 0;
    for (int64_t b = 0; b < grid; b++)
        sc->first[b + 1] = (uint16_t)(sc->first[b + 1] + sc->first[b]);
    uint16_t next[FA3WTS_SCHED_G];
    for (int64_t b = 0; b < grid; b++)
        next[b] = sc->first[b];
    for (int64_t i = 0; i < items; i++)
        sc->item[next[owner[i]]++] = (uint16_t)i;
}

#endif
