#!/usr/bin/env python3
"""fa3wts' work balance, counted in key tiles (64 keys each).

A persistent grid of one block an SM (132, an H100's) takes the work tiles of causal
attention at 32 heads: 192 query rows of one (sequence, head), heaviest first, heads fastest
(fa3's order). For each of run 39's shapes this prints the mean key tiles a block and the
busiest block's, with what share of it the mean is, when each block takes
  - rr:      work tiles a grid apart (blockIdx.x, + gridDim.x, ...);
  - snake:   one from each row of the grid, every other row backwards (fa3wts_index in
             gpu/attention_fa3.cu);
  - dynamic: the next work tile to whichever block has the least so far;
and, with each sequence's work tiles ending at its last row, the short one its first rows
(fa3wts' layout since run 43; session 35's FA3WTS_ALIGN_END), the key tiles of all work
tiles and the busiest block's, snake (with its work tiles) and dynamic. Then, in time (run
42's fit, docs/performance.md: about 1.89 us a key tile and 3.2 us a work tile of a block),
the end-aligned tiles' longest block under snake, under dynamic (a block claims its next
work tile when it finishes one: the longest-first list schedule, which FA3WTS_LPT computes
before the launch) and under dynamic one ahead (a block claims its next work tile when it
starts one, as a producer that loads the next work tile's Q under the current one's must),
each with its TFLOP/s at 128 dims (4 x len^2 / 2 x 128 x 32 heads a sequence), and the bound
no schedule of these work tiles passes: the whole work spread evenly over the blocks, or the
heaviest work tile where that is longer.
Usage: python3 tools/fa3wts-balance.py
"""
import heapq
import math

SMS, HEADS, BQ, BN = 132, 32, 192, 64
SHAPES = [(1, 512), (1, 768), (1, 1024), (1, 1536), (1, 2048), (2, 1024), (4, 1024), (8, 512), (16, 512)]


def work_tiles(seqs, length, end=False):
    """Key tiles of each work tile (its last row's keys), in the grid's order: tiles from a
    sequence's first row (the short one its last rows), or with end from its last row."""
    out = []
    for t in range(math.ceil(length / BQ)):
        keys = length - t * BQ if end else min(length, (math.ceil(length / BQ) - t) * BQ)
        out += [math.ceil(keys / BN)] * (seqs * HEADS)
    return out


KEY_US, WORK_US = 1.89, 3.2  # run 42's fit: a key tile, a work tile of a block


def keys(k):
    return k


def us(k):
    return KEY_US * k + WORK_US


def static(tiles, snake, cost=keys):
    """The busiest block's work (cost of each work tile's key tiles: the key tiles, or us),
    the mean a block, and the busiest block's work tiles (the most of any block among those
    with the busiest's work)."""
    grid = min(SMS, len(tiles))
    load, n = [0] * grid, [0] * grid
    for blk in range(grid):
        for r in range(math.ceil(len(tiles) / grid)):
            i = r * grid + (grid - 1 - blk if snake and r % 2 else blk)
            if i < len(tiles):
                load[blk] += cost(tiles[i])
                n[blk] += 1
    return max(load), sum(map(cost, tiles)) / grid, max(n[k] for k in range(grid) if load[k] == max(load))


def dynamic(tiles, cost=keys, ahead=False):
    """The busiest block's work when blocks claim work tiles in the grid's order from a shared
    counter: each its first at the start, then the next when it finishes one (the
    longest-first list schedule) or, with ahead, holding one claimed beyond the one it runs,
    when it starts one."""
    grid = min(SMS, len(tiles))
    nxt = grid
    held = [None] * grid
    if ahead:
        for blk in range(grid):
            held[blk], nxt = (tiles[nxt], nxt + 1) if nxt < len(tiles) else (None, nxt)
    running = [(cost(tiles[blk]), blk) for blk in range(grid)]
    heapq.heapify(running)
    last = 0
    while running:
        t, blk = heapq.heappop(running)
        if ahead:
            w = held[blk]
            held[blk], nxt = (tiles[nxt], nxt + 1) if nxt < len(tiles) and w is not None else (None, nxt)
        else:
            w, nxt = (tiles[nxt], nxt + 1) if nxt < len(tiles) else (None, nxt)
        if w is None:
            last = max(last, t)
        else:
            heapq.heappush(running, (t + cost(w), blk))
    return last


for seqs, length in SHAPES:
    tiles = work_tiles(seqs, length)
    rr, mean, _ = static(tiles, False)
    sn, _, _ = static(tiles, True)
    dy = dynamic(tiles)
    ends = work_tiles(seqs, length, end=True)
    esn, _, ework = static(ends, True)
    print(f"{seqs} x {length}: {len(tiles)} work tiles, mean {mean:.1f} key tiles a block; busiest: "
          f"rr {rr} ({mean / rr:.2f}), snake {sn} ({mean / sn:.2f}), dynamic {dy} ({mean / dy:.2f}); "
          f"end-aligned: {sum(ends)} key tiles against {sum(tiles)} ({sum(ends) / sum(tiles):.3f}), "
          f"busiest snake {esn} ({ework} work tiles), dynamic {dynamic(ends)}")
print(f"the end-aligned tiles' longest block at {KEY_US} us a key tile and {WORK_US} a work tile:")
for seqs, length in SHAPES:
    ends = work_tiles(seqs, length, end=True)
    s_us, d_us, a_us = static(ends, True, us)[0], dynamic(ends, us), dynamic(ends, us, ahead=True)
    bound = max(sum(map(us, ends)) / SMS, us(max(ends)))
    flop = seqs * 4 * length * length / 2 * 128 * HEADS
    tf = lambda t: flop / (t * 1e-6) / 1e12
    print(f"{seqs} x {length}: snake {s_us:.1f} us ({tf(s_us):.0f} TFLOP/s), dynamic {d_us:.1f} "
          f"({d_us / s_us:.3f}; {tf(d_us):.0f}), dynamic one ahead {a_us:.1f} ({a_us / s_us:.3f}), "
          f"balanced bound {bound:.1f} ({bound / s_us:.3f}; {tf(bound):.0f})")
