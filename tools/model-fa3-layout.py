#!/usr/bin/env python3
"""model-fa3-layout.py: a CPU model of the data movement of attention variants fa3 and fa3p
(gpu/attention_fa3.cu), for checking their index arithmetic and fa3p's schedule without a
GPU.

It repeats, in float64 and thread by thread, what the kernel's code does with addresses
and registers: the cp.async copies of Q and of each K/V tile from a paged cache into
shared memory at fa3_sw's swizzled offsets; the matrix descriptors (fa3_desc, and the
offsets the kernel adds to them, >> 4 into the start-address field); each wgmma reading
its operands from shared memory through a descriptor; the accumulator fragments of S and
O; P's A fragments made from S's; the output staged in shared memory and written out.
What it does not repeat from the kernel, it takes from the PTX ISA's description of
wgmma, written here independently of the kernel's code:

  - K-major operand with the 128-byte swizzle (Q, K): element (row r, k) of a k16 step
    at descriptor start S, stride byte offset SBO: address S + (r / 8) SBO + (r % 8) 128
    + 2k;
  - MN-major operand with the 128-byte swizzle (V, transpose bit set): element (k, n) at
    S + (n / 64) LBO + 2 (n % 64) + (k / 8) SBO + (k % 8) 128;
  - the swizzle: address bits 4-6 XOR bits 7-9;
  - the m64nN accumulator fragment: thread t, warp w = t / 32, gr = (t % 32) / 4,
    tq = t % 4: d[4j + e] is (row 16w + gr + 8 (e / 2), column 8j + 2tq + e % 2);
  - the A register fragment of a k16 step: a0 (gr, 2tq..+1), a1 (gr + 8, 2tq..+1),
    a2 (gr, 2tq + 8..+9), a3 (gr + 8, 2tq + 8..+9) in warp w's 16 rows.

So it checks that the kernel's layout, offsets and fragment bookkeeping agree with one
another and with that description, not the hardware: a misreading of the ISA in both
would pass here. The kernel itself is judged on a GPU by its op sweep (tests/test_gpu_ops)
and the model-level checks. It prints the largest difference from a direct float64
softmax(Q K^T) V over a few shapes (paged caches with block sizes 16 and 7, a past,
sequences shorter than a block's 128 rows) and exits 1 above 1e-12. fa3p is run by its own
schedule (K and V rings of two; iteration t issues S_t and P_{t-1} V_{t-1}, then the copies
of K_{t+1} and V_t; every warpgroup takes every tile), which must read only tiles that have
landed, never a buffer a copy in flight writes, and give fa3's output exactly (in float64:
the same operations in the same order, masked tiles changing nothing). It also checks fdt's
loader's walk through the block table (gpu/attention_fdt.cu) against a direct division, its
first stages split at the batch's first new key (FDT_KV_EARLY: every slot written once, with
its key, nothing new before the wait; three planted faults caught),
and fa3w's hand-over (ws_schedule: a producer warpgroup, three consumers, a ring of three
stages, named barriers; written before the kernel, which follows it) and fa3wp's (two
consumers that hold a stage over two iterations, K at t and V at t + 1, a ring of four, the
producer draining the last releases; with two stages it deadlocks; and with its consumers
taking turns to issue their MMAs, FA3WP_PINGPONG) in random interleavings, with three
planted protocols each that it must catch; and fa3wt's TMA copies (check_tma_placement: a
box of K and of V a page and 64 dims, in the 128-byte swizzle taken from the shared
address, lands each key where fa3_sw puts it and the consumers' descriptors read it, for
block sizes 8 to 64 and head_dim 64 and 128, the mbarrier armed with the bytes the copies
write; the same with the swizzle taken from the row within the box; block sizes 12 and 24
misplace keys; five planted faults caught); and fa3wt's hand-over (ws_schedule_tma: each
stage's "full" an mbarrier, armed with the tile's bytes and completed by its TMA copies, or,
for a last partial tile, arrived on once every producer thread's cp.async copies landed; the
consumers waiting on its phase's parity) in random interleavings, copies landing in any
order at any time, with five planted faults it must catch.
Usage: tools/model-fa3-layout.py [--seed N]
"""
import argparse
import sys

import numpy as np

BQ, BN, WGS = 128, 64, 2  # FA3_BQ, FA3_BN (LR_ATTN_P_TILE), FA3_WGS
THREADS = 128 * WGS  # FA3_THREADS


def fa3_sw(R, r, c):
    """Byte offset of 16-byte chunk c of row r in a swizzled region of R rows (the kernel's fa3_sw)."""
    return (c >> 3) * (R * 128) + r * 128 + (((c & 7) ^ (r & 7)) << 4)


def fa3_desc(addr, lbo, sbo):
    return ((addr >> 4) & 0x3FFF) | (((lbo >> 4) & 0x3FFF) << 16) | (((sbo >> 4) & 0x3FFF) << 32) | (1 << 62)


def desc_fields(d):
    assert d >> 62 == 1, "not the 128-byte swizzle"
    return (d & 0x3FFF) << 4, ((d >> 16) & 0x3FFF) << 4, ((d >> 32) & 0x3FFF) << 4


def swz(addr):
    return addr ^ (((addr >> 7) & 7) << 4)


class Smem:
    """Shared memory of one block as 16-bit elements (float64 values), by byte address."""

    def __init__(self, nbytes):
        self.e = np.full(nbytes // 2, np.nan)

    def cp16(self, addr, src):  # cp.async of 16 bytes (8 elements); src None: zero-fill
        assert addr % 16 == 0
        self.e[addr // 2: addr // 2 + 8] = 0.0 if src is None else src

    def at(self, addr):
        return self.e[addr // 2]


def read_kmajor(sm, desc, rows):
    """The (rows x 16) operand of one k16 step, K-major, per the ISA's layout."""
    S, _, SBO = desc_fields(desc)
    return np.array([[sm.at(swz(S + (r // 8) * SBO + (r % 8) * 128 + 2 * k)) for k in range(16)]
                     for r in range(rows)])


def read_mnmajor(sm, desc, n):
    """The (16 x n) operand of one k16 step, MN-major, per the ISA's layout."""
    S, LBO, SBO = desc_fields(desc)
    return np.array([[sm.at(swz(S + (c // 64) * LBO + 2 * (c % 64) + (k // 8) * SBO + (k % 8) * 128))
                      for c in range(n)] for k in range(16)])


def frag_to_matrix(d, ncols):
    """Accumulator fragments d[t][4j + e] of a warpgroup -> the 64 x ncols matrix."""
    M = np.full((64, ncols), np.nan)
    for t in range(128):
        w, gr, tq = t // 32, (t % 32) // 4, t % 4
        for j in range(ncols // 8):
            for e in range(4):
                M[16 * w + gr + 8 * (e // 2), 8 * j + 2 * tq + e % 2] = d[t][4 * j + e]
    return M


def matrix_to_frag(M):
    ncols = M.shape[1]
    d = np.zeros((128, ncols // 2))
    for t in range(128):
        w, gr, tq = t // 32, (t % 32) // 4, t % 4
        for j in range(ncols // 8):
            for e in range(4):
                d[t][4 * j + e] = M[16 * w + gr + 8 * (e // 2), 8 * j + 2 * tq + e % 2]
    return d


def afrag_to_matrix(a):
    """A fragments a[t][r] (r = 0..3, each two elements lo, hi) of one k16 step -> 64 x 16."""
    M = np.full((64, 16), np.nan)
    for t in range(128):
        w, gr, tq = t // 32, (t % 32) // 4, t % 4
        for r, (row, col) in enumerate(((gr, 2 * tq), (gr + 8, 2 * tq), (gr, 2 * tq + 8), (gr + 8, 2 * tq + 8))):
            M[16 * w + row, col], M[16 * w + row, col + 1] = a[t][r]
    return M


def kv_stride_of(n, bsz):
    """attention.cuh's kv_stride: a step of n keys split once into whole blocks and slots."""
    return n, n // bsz, n % bsz


def kv_walk_step(w, stride, bsz):
    """attention.cuh's kv_walk_step on (key, block-table index, slot): one conditional
    subtraction, no division."""
    (key, blk, rem), (n, q, r) = w, stride
    key, blk, rem = key + n, blk + q, rem + r
    return (key, blk + 1, rem - bsz) if rem >= bsz else (key, blk, rem)


def s_tile(sm, dq, dk, HD):
    """S = Q K^T of a warpgroup's 64 rows, read through descriptors, as accumulator fragments."""
    Smat = np.zeros((64, BN))
    for ks in range(HD // 16):
        da = dq + ((((ks >> 2) * BQ * 128) + (ks & 3) * 32) >> 4)
        db = dk + ((((ks >> 2) * BN * 128) + (ks & 3) * 32) >> 4)
        Smat += read_kmajor(sm, da, 64) @ read_kmajor(sm, db, BN).T
    return matrix_to_frag(Smat)


def softmax_tile(s, wg, k0, nk, sl2, m, lsum):
    """fa3_softmax on S tile (keys k0 ..) of warpgroup wg: masks, updates the running maxima
    m and sums lsum (per thread, rows ra / rb), returns P's A fragments and O's factors."""
    pa = np.zeros((BN // 16, 128, 4, 2))
    corr = np.ones((128, 2))
    for t_ in range(128):
        w, gr, tq = t_ // 32, (t_ % 32) // 4, t_ % 4
        ra, rb = 64 * wg + 16 * w + gr, 64 * wg + 16 * w + gr + 8
        for j in range(BN // 8):
            for e in range(2):
                key = k0 + 8 * j + 2 * tq + e
                s[t_][4 * j + e] = s[t_][4 * j + e] * sl2 if key < nk[ra] else -np.inf
                s[t_][4 * j + 2 + e] = s[t_][4 * j + 2 + e] * sl2 if key < nk[rb] else -np.inf
    for t_ in range(128):  # the row max over the 4 lanes of a row (the shuffles)
        grp = (t_ // 4) * 4
        for half in range(2):
            mx = max(s[u][4 * j + 2 * half + e] for u in range(grp, grp + 4) for j in range(BN // 8) for e in range(2))
            mn = max(m[t_][half], mx)
            corr[t_][half] = 1.0 if mn == -np.inf else 2.0 ** (m[t_][half] - mn)
            bias = 0.0 if mn == -np.inf else mn
            m[t_][half] = mn
            tot = 0.0
            for j in range(BN // 8):
                p = [2.0 ** (s[t_][4 * j + 2 * half + e] - bias) for e in range(2)]
                pa[j >> 1, t_, (j & 1) * 2 + half] = p
                tot += p[0] + p[1]
            lsum[t_][half] = lsum[t_][half] * corr[t_][half] + tot
    return pa, corr


def rescale(o, corr, HD):
    for t_ in range(128):
        for half in range(2):
            for d in range(HD // 8):
                o[t_][4 * d + 2 * half] *= corr[t_][half]
                o[t_][4 * d + 2 * half + 1] *= corr[t_][half]


def pv_tile(sm, o, pa, dv, HD):
    """O += P V, P from A fragments, V through its descriptor."""
    Omat = frag_to_matrix(o, HD)
    for kk in range(BN // 16):
        Omat += afrag_to_matrix(pa[kk]) @ read_mnmajor(sm, dv + ((kk * 2048) >> 4), HD)
    return matrix_to_frag(Omat)


def normalise(o, lsum, wg, HD, out):
    """Each lane's rows ra, rb over the quad's sum, into out (the staged rows, read back)."""
    for t_ in range(128):
        w, gr, tq = t_ // 32, (t_ % 32) // 4, t_ % 4
        grp = (t_ // 4) * 4
        for half, row in ((0, 64 * wg + 16 * w + gr), (1, 64 * wg + 16 * w + gr + 8)):
            tot = sum(lsum[u][half] for u in range(grp, grp + 4))
            inv = 1.0 / tot if tot > 0 else 0.0
            for d in range(HD // 8):
                for e in range(2):
                    out[row, 8 * d + 2 * tq + e] = o[t_][4 * d + 2 * half + e] * inv


def run_block(q, kc, vc, table, bsz, nkv, g, h, HD, tok0, nrows, token_keys, scale, raw, pipelined=False):
    """One block of the kernel (fa3, or fa3p where pipelined): its nrows output rows (HD
    each) of head h."""
    CH = HD // 8
    QB, TB = BQ * HD * 2, BN * HD * 2
    base = (raw + 1023) & ~1023
    qs, kbuf = base, base + QB
    vbuf = kbuf + 2 * TB
    sm = Smem(vbuf + 2 * TB + 1024)
    for i in range(BQ * CH):  # Q
        r, c = divmod(i, CH)
        sm.cp16(qs + fa3_sw(BQ, r, c), q[tok0 + r, h * HD + 8 * c: h * HD + 8 * c + 8] if r < nrows else None)
    nk = [token_keys[tok0 + r] if r < nrows else 0 for r in range(BQ)]
    kmax = max(nk)
    ntiles = -(-kmax // BN)

    step = THREADS // CH  # a thread's chunks: column c of keys j0, j0 + step, ... through the tiles

    def walk_begin():  # fa3_walk_begin: each thread's first key, its table index and slot
        return [(tid // CH, (tid // CH) // bsz, (tid // CH) % bsz) for tid in range(THREADS)]

    stride = kv_stride_of(step, bsz)

    def fetch(t, kd, vd, walk):  # fa3_fetch: tile t's K rows to kd, V rows to vd (either None), the walk on
        for tid in range(THREADS):
            c, j0 = tid % CH, tid // CH
            for k in range(BN // step):
                j = j0 + k * step
                key, blk, rem = walk[tid]
                assert key == t * BN + j and (blk, rem) == divmod(key, bsz), "fa3_fetch's walk lost its key"
                src = None
                if key < kmax:
                    slot = table[blk] * bsz + rem
                    src = (kc[slot, g, 8 * c: 8 * c + 8], vc[slot, g, 8 * c: 8 * c + 8])
                o = fa3_sw(BN, j0, c) + k * step * 128  # the kernel's place + k STEP rows
                assert o == fa3_sw(BN, j, c), "a chunk's place in the swizzle"
                if kd is not None:
                    sm.cp16(kd + o, None if src is None else src[0])
                if vd is not None:
                    sm.cp16(vd + o, None if src is None else src[1])
                walk[tid] = kv_walk_step(walk[tid], stride, bsz)

    out = np.full((BQ, HD), np.nan)
    sl2 = scale * 1.4426950408889634
    o = [np.zeros((128, HD // 2)) for _ in range(WGS)]
    m = [np.full((128, 2), -np.inf) for _ in range(WGS)]
    lsum = [np.zeros((128, 2)) for _ in range(WGS)]
    dq = [fa3_desc(qs + wg * 64 * 128, 16, 1024) for wg in range(WGS)]
    if not pipelined:
        walk = walk_begin()
        for t in range(ntiles):
            fetch(t, kbuf + (t & 1) * TB, vbuf + (t & 1) * TB, walk)  # a tile ahead in the kernel; the same bytes
            for wg in range(WGS):
                if t * BN >= max(nk[64 * wg: 64 * wg + 64]):
                    continue  # the warpgroup's rows see no key of the tile
                cur = (t & 1) * TB
                s = s_tile(sm, dq[wg], fa3_desc(kbuf + cur, 16, 1024), HD)
                pa, corr = softmax_tile(s, wg, t * BN, nk, sl2, m[wg], lsum[wg])
                rescale(o[wg], corr, HD)
                o[wg] = pv_tile(sm, o[wg], pa, fa3_desc(vbuf + cur, BN * 128, 1024), HD)
    else:
        # fa3p's schedule, iteration by iteration: the copies issued in an iteration land at
        # the next one's barrier (applied then); a wgmma reads shared memory any time between
        # its issue and its wait. Checked: each read finds the tile the kernel means, and no
        # copy in flight in an iteration writes a buffer a wgmma of that iteration reads.
        ntiles = max(ntiles, 1)
        kslot, vslot = [None, None], [None, None]  # the tile each ring slot holds
        kwalk, vwalk = walk_begin(), walk_begin()  # K's a tile ahead of V's
        pend = [("K", 0)]  # with Q
        pa = [None] * WGS
        for t in range(ntiles + 1):
            for buf, tile in pend:  # FA3P_LANDED: the copies have landed
                (kslot if buf == "K" else vslot)[tile & 1] = tile
                fetch(tile, kbuf + (tile & 1) * TB if buf == "K" else None,
                      vbuf + (tile & 1) * TB if buf == "V" else None, kwalk if buf == "K" else vwalk)
            reads = set()
            if t < ntiles:
                assert kslot[t & 1] == t, f"S_{t} reads K slot {t & 1} holding tile {kslot[t & 1]}"
                reads.add(("K", t & 1))
            if t >= 1:
                assert vslot[(t - 1) & 1] == t - 1, f"P V_{t - 1} reads V slot {(t - 1) & 1}"
                reads.add(("V", (t - 1) & 1))
            pend = ([("K", t + 1)] if t + 1 < ntiles else []) + ([("V", t)] if t < ntiles else [])
            clash = reads & {(b, tile & 1) for b, tile in pend}
            assert not clash, f"iteration {t}: copies in flight into {clash}, which its wgmmas read"
            for wg in range(WGS):  # every warpgroup takes every tile (masked where it sees no key)
                s = s_tile(sm, dq[wg], fa3_desc(kbuf + (t & 1) * TB, 16, 1024), HD) if t < ntiles else None
                if t >= 1:
                    o[wg] = pv_tile(sm, o[wg], pa[wg], fa3_desc(vbuf + ((t - 1) & 1) * TB, BN * 128, 1024), HD)
                if t < ntiles:
                    pa[wg], corr = softmax_tile(s, wg, t * BN, nk, sl2, m[wg], lsum[wg])
                    rescale(o[wg], corr, HD)
        assert not pend, "copies left in flight"
    for wg in range(WGS):
        normalise(o[wg], lsum[wg], wg, HD, out)
    return out[:nrows]


def reference(q, kc, vc, table, bsz, g, h, HD, tok0, nrows, token_keys, scale):
    out = np.zeros((nrows, HD))
    for r in range(nrows):
        n = token_keys[tok0 + r]
        keys = np.array([table[k // bsz] * bsz + k % bsz for k in range(n)])
        K, V = kc[keys, g], vc[keys, g]
        sc = K @ q[tok0 + r, h * HD:(h + 1) * HD] * scale
        p = np.exp(sc - sc.max())
        out[r] = p @ V / p.sum()
    return out


def check_fdt_walk():
    """fdt's loader (gpu/attention_fdt.cu, fdt_walk): lane l copies chunk l % CPR of rows
    l / CPR, + RSTEP, ... of each 16-key group, a warp's groups 64 keys apart; its walk steps
    (key, block-table index, slot) by RSTEP inside a group and by 64 - 16 + RSTEP to the next,
    each step split once into whole blocks and slots. Against a direct division: block sizes
    1 to 100, chunks of 16 (hd 128) and 8 (hd 64) a row. Returns the steps checked."""
    n = 0
    for cpr in (16, 8):
        rstep = 32 // cpr
        per, nxt = 16 // rstep, 64 - 16 + rstep
        for bsz in (1, 2, 3, 5, 7, 16, 32, 100):
            inside, to_next = kv_stride_of(rstep, bsz), kv_stride_of(nxt, bsz)
            for first in (0, 5, 16, 48, 1000):
                for lane in range(32):
                    key0 = first + lane // cpr
                    w = (key0, key0 // bsz, key0 % bsz)
                    for grp in range(5):
                        for k in range(per):
                            key, blk, rem = w
                            assert key == key0 + 64 * grp + k * rstep and (blk, rem) == divmod(key, bsz), \
                                f"fdt_walk lost its key (chunks {cpr} a row, block size {bsz}, lane {lane})"
                            n += 1
                            w = kv_walk_step(w, inside if k + 1 < per else to_next, bsz)
    return n


def fdt_early_split(kbeg, kend, kold, cpr, stages=3, planted=None):
    """fdt's first stages under FDT_KV_EARLY (gpu/attention_fdt.cu): fdt_load's copies before
    the PDL wait (keys under kold; keys at or past kend zero-filled) and fdt_fill_new's after
    it (keys kold to kend, the same walk begun again), as (stage, row, chunk) slots of each
    warp's ring. Returns {slot: ("early"|"late"|"zero", key)}; raises AssertionError where a
    slot is written twice. planted: "late>" (the fill takes keys past kold, not from it),
    "early<=" (the copies take kold too), "rewalk" (the fill's walk begun at the chunk's
    first key, not the warp's)."""
    rstep = 32 // cpr
    per = 16 // rstep
    slots = {}

    def walk(first, lane):
        key = first + lane // cpr
        for grp in range(stages - 1):
            for k in range(per):
                yield grp, lane // cpr + k * rstep, key + 64 * grp + k * rstep

    def put(warp, stage, r, c, what, key):
        slot = (warp, stage, r, c ^ (r & 7))
        assert slot not in slots, f"slot {slot} written twice ({slots[slot]}, then {what} key {key})"
        slots[slot] = (what, key)

    for warp in range(4):
        first = kbeg + 16 * warp
        ngroups = -(-(kend - first) // 64) if first < kend else 0
        for lane in range(32):
            c = lane % cpr
            for grp, r, key in walk(first, lane):  # before the wait
                if grp >= ngroups:
                    continue
                ok = key < kend
                early = key <= kold if planted == "early<=" else key < kold
                if not ok:
                    put(warp, grp, r, c, "zero", key)
                elif early:
                    put(warp, grp, r, c, "early", key)
            start = kbeg if planted == "rewalk" else first
            for grp, r, key in walk(start, lane):  # after the wait
                if grp >= ngroups:
                    continue
                new = key > kold if planted == "late>" else key >= kold
                if new and key < kend:
                    put(warp, grp, r, c, "late", key)
    return slots


def check_fdt_early():
    """FDT_KV_EARLY's split of fdt's first stages, against fdt_load without it: every slot the
    loads without the split write is written exactly once, with the same key; no key at or
    past kold (written in this batch) is copied before the wait. Chunks of 64 keys and
    shorter, kold before, inside and after each, both row widths; then the three planted
    faults, each of which must be caught. Returns (cases, planted faults caught)."""
    n = 0
    for cpr in (16, 8):
        for kbeg, kend in ((0, 64), (64, 128), (960, 1025), (1024, 1025), (0, 40), (128, 150)):
            for kold in sorted({kbeg, kbeg + 1, kend - 1, kend, kend + 5, (kbeg + kend) // 2, 1 << 40}):
                want = fdt_early_split(kbeg, kend, 1 << 62, cpr)  # no split: every copy before
                got = fdt_early_split(kbeg, kend, kold, cpr)
                assert set(got) == set(want), f"slots differ (chunk {kbeg}-{kend}, kold {kold}, cpr {cpr})"
                for slot, (what, key) in got.items():
                    assert key == want[slot][1], f"slot {slot} holds key {key}, not {want[slot][1]}"
                    assert what != "early" or key < kold, f"key {key} >= kold {kold} copied before the wait"
                    assert what != "late" or kold <= key < kend, f"key {key} filled after the wait"
                n += 1
    caught = 0
    for planted in ("late>", "early<=", "rewalk"):
        try:
            for cpr in (16, 8):
                for kold in (960, 1000, 1024):
                    want = fdt_early_split(960, 1025, 1 << 62, cpr)
                    got = fdt_early_split(960, 1025, kold, cpr, planted=planted)
                    assert set(got) == set(want), "slots differ"
                    for slot, (what, key) in got.items():
                        assert key == want[slot][1] and (what != "early" or key < kold), "wrong key"
        except AssertionError:
            caught += 1
        else:
            print(f"fdt's early split: the planted fault '{planted}' was not caught")
    return n, caught


class NamedBarriers:
    """Named barriers (bar.arrive / bar.sync) of a modelled block: bars[id] = [generation,
    threads arrived in it]; a generation completes when count(id) threads have arrived."""

    def __init__(self, count):
        self.bars, self.count = {}, count

    def bar(self, i):
        return self.bars.setdefault(i, [0, set()])

    def arrive(self, a, i):  # bar.arrive; a generator step: True, progress
        b = self.bar(i)
        if a in b[1]:
            raise AssertionError(f"barrier {i} generation {b[0]}: {a} arrives twice")
        b[1].add(a)
        gen = b[0]
        if len(b[1]) == self.count(i):
            b[0], b[1] = b[0] + 1, set()
        yield True
        return gen

    def sync(self, a, i):  # bar.sync: arrive, then park (False) until the generation completes
        gen = yield from self.arrive(a, i)
        while self.bar(i)[0] <= gen:
            yield False

    def waiting(self):  # the arrivals of generations not completed
        return {i: sorted(b[1]) for i, b in self.bars.items() if b[1]}


def interleave(progs, rng, land, nb, state=lambda: ""):
    """Runs the agents' generators (progs: name -> generator; a step yields True where it made
    progress) in a random interleaving, land() first at each step (True where a copy landed),
    until all end; raises on a deadlock (state(): more to say of it, then) or arrivals left at
    exit."""
    live, idle = list(progs), 0
    while live:
        moved = land()
        a = live[rng.integers(len(live))]
        try:
            moved = next(progs[a]) or moved
        except StopIteration:
            live.remove(a)
            moved = True
        idle = 0 if moved else idle + 1
        if idle > 50 * len(progs):
            raise AssertionError(f"deadlock: {live} parked; arrivals {nb.waiting()}{state()}")
    if nb.waiting():
        raise AssertionError(f"arrivals left at exit: {nb.waiting()}")


def ws_schedule(ntiles, tiles_seen, rng, planted=None, NS=3, lag=0, pingpong=False):
    """fa3w's hand-over (gpu/attention_fa3.cu, attention_fa3w_kernel): a
    producer warpgroup P fills a ring of NS stages by cp.async, three consumer warpgroups
    read them, through named barriers full[s] and empty[s] of all four warpgroups (512
    threads). One run in a random interleaving, at warpgroup granularity:

      P: for t: (t >= NS) bar.sync empty[t % NS]; issue tile t's copies, commit;
               (t >= 1) wait_group 1, fence, bar.arrive full[(t - 1) % NS]
         then wait_group 0, fence, bar.arrive full[(ntiles - 1) % NS]
      C: for t: bar.sync full[t % NS]; read stage t % NS where t < tiles_seen[c] (its rows
               see a key of the tile); (t + NS < ntiles) bar.arrive empty[t % NS]
      all: the block barrier, then the output staged in the stages' memory.

    A copy group lands at any moment between its commit and the wait that needs it.
    Returns None, or what went wrong: a read of a stage not holding its tile's landed
    copies, copies issued into a stage a consumer has not released, a barrier generation
    that sees a warpgroup twice, arrivals left at exit, a deadlock, copies in flight at the
    staging. planted: "arrive-skip" (a consumer past its keys bar.arrives on full[s]
    without waiting), "empty-always" (empty[s] arrived on for every tile), "no-wait" (the
    producer arrives on full[s] without waiting for the copies): each must fail.

    lag=1 is fa3wp's hand-over (attention_fa3wp_kernel): len(tiles_seen) consumers, each
    taking every tile, whose iteration t reads K of tile t (S_t) and V of tile t - 1
    (P_{t-1} V_{t-1}) after bar.sync full[t % NS], and only then releases tile t - 1
    (bar.arrive empty[(t - 1) % NS], for every tile); the last tile's V is read, and the
    tile released, after the loop; the producer, after its last arrival, bar.syncs on the
    empty of the last NS tiles (its drain). Planted there: "release-early" (tile t released
    in its own iteration, before its V is read), "no-drain" (the producer leaves without
    its drain).

    pingpong (with lag=1 and two consumers: fa3wp's FA3WP_PINGPONG): the consumers take
    turns to issue their MMAs, through two named barriers of theirs alone, sched[w]: C_w
    bar.syncs on sched[w] before issuing (C0 not at tile 0) and bar.arrives on
    sched[1 - w] after; C0 bar.syncs on sched[0] once more after its loop (its drain of
    C1's last arrival). The MMAs must then be issued in turn, C0, C1, C0, ... Planted:
    "pp-unordered" (C1 not waiting at tile 0), "pp-no-drain" (C0 without its drain)."""
    agents = ["P"] + [f"C{c}" for c in range(len(tiles_seen))]
    stage = [None] * NS  # (tile, landed) the stage holds
    released = [set(agents[1:]) for _ in range(NS)]  # consumers done with the stage's tile
    pending = []  # committed copy groups not yet landed (their tiles, in order)
    SCHED = 100  # sched[w] is SCHED + w: the consumers' own (two warpgroups)
    nb = NamedBarriers(lambda i: 2 if i >= SCHED else len(agents))  # 0 the block barrier
    arrive, sync = nb.arrive, nb.sync
    issued = []  # the consumers' MMA issues, in order

    def land():  # the oldest committed group lands
        t = pending.pop(0)
        stage[t % NS] = (t, True)

    def land_until(n):  # wait_group n: all but the newest n groups have landed
        while len(pending) > n:
            land()

    def producer():
        for t in range(ntiles):
            if t >= NS:
                yield from sync("P", 1 + NS + t % NS)
            if released[t % NS] != set(agents[1:]):
                raise AssertionError(f"tile {t}'s copies into stage {t % NS} before every consumer "
                                     f"released tile {t - NS}")
            released[t % NS] = set()
            stage[t % NS] = (t, False)
            pending.append(t)
            yield True
            if t >= 1:
                if planted != "no-wait":
                    land_until(1)
                yield from arrive("P", 1 + (t - 1) % NS)
        if planted != "no-wait":
            land_until(0)
        yield from arrive("P", 1 + (ntiles - 1) % NS)
        if lag and planted != "no-drain":
            for t in range(max(ntiles - NS, 0), ntiles):
                yield from sync("P", 1 + NS + t % NS)
        yield from sync("P", 0)

    def read(a, t, what):  # a consumer's wgmmas read stage t % NS between their issue and their wait
        if stage[t % NS] != (t, True):
            raise AssertionError(f"{a} reads {what} of tile {t} in stage {t % NS}: it holds {stage[t % NS]}")
        yield True
        if stage[t % NS] != (t, True):
            raise AssertionError(f"stage {t % NS} overwritten while {a} reads {what} of tile {t}")

    def release(a, t):  # done with tile t: bar.arrive empty[t % NS] where the producer waits on it
        released[t % NS].add(a)
        if t + NS < ntiles or lag or planted == "empty-always":
            yield from arrive(a, 1 + NS + t % NS)

    def consumer(c):
        a = agents[1 + c]
        for t in range(ntiles):
            seen = t < tiles_seen[c]
            if seen or planted != "arrive-skip":
                yield from sync(a, 1 + t % NS)
            else:
                yield from arrive(a, 1 + t % NS)
            if lag == 0:
                if seen:
                    yield from read(a, t, "K and V")
                yield from release(a, t)
            else:  # S_t and P_{t-1} V_{t-1} in flight together
                if pingpong and (c, t) != (0, 0) and (planted != "pp-unordered" or c == 0):
                    yield from sync(a, SCHED + c)
                issued.append(c)
                if pingpong:
                    yield from arrive(a, SCHED + 1 - c)
                yield from read(a, t, "K")
                if planted == "release-early":
                    yield from release(a, t)
                if t >= 1:
                    yield from read(a, t - 1, "V")
                    if planted != "release-early":
                        yield from release(a, t - 1)
        if lag:
            if pingpong and c == 0 and planted != "pp-no-drain":
                yield from sync(a, SCHED)  # C1's last pass, before the last P V as in the kernel
            yield from read(a, ntiles - 1, "V")  # the last P V
            if planted != "release-early":
                yield from release(a, ntiles - 1)
        yield from sync(a, 0)
        if pending:
            raise AssertionError(f"copies of tiles {pending} in flight at the output's staging")

    progs = {"P": producer(), **{agents[1 + c]: consumer(c) for c in range(len(tiles_seen))}}
    def land_early():  # a group may land early
        if pending and rng.random() < 0.2:
            land()
            return True
        return False

    try:
        interleave(progs, rng, land_early, nb)
        if pingpong and issued != [k % 2 for k in range(len(issued))]:
            raise AssertionError(f"the consumers' MMAs issued out of turn: {issued}")
    except AssertionError as e:
        return str(e)
    return None


def check_ws_schedule(rng, runs=300):
    """ws_schedule over ntiles 1 to 9. fa3w's (three consumers, three stages): the
    consumers' last tiles on the causal diagonal (192 rows: the first warpgroup's see up to
    two tiles fewer than the last's) and a block's last rows past its sequence (a warpgroup
    of them sees no key at all). fa3wp's (two consumers, four stages, the release a tile
    behind): every consumer takes every tile. Each in `runs` random interleavings; and the
    planted protocols of each, every one of which must fail somewhere. Returns
    (interleavings checked, the first failure or None)."""
    n = 0
    kinds = (  # name, stages, lag, planted protocols, the consumers' spreads of tiles seen
        ("fa3w", 3, 0, ("arrive-skip", "empty-always", "no-wait"),
         ((0, 0, 0), (1, 0, 0), (2, 1, 0), (1, 1, 0), (1, 0, None), (0, None, None))),
        ("fa3wp", 4, 1, ("release-early", "no-drain", "no-wait"), ((0, 0),)),
        ("fa3wp ping-pong", 4, 1, ("pp-unordered", "pp-no-drain", "release-early"), ((0, 0),)),
    )
    missed = []
    for name, NS, lag, planted, spreads in kinds:
        pp = name.endswith("ping-pong")
        caught = dict.fromkeys(planted, False)
        for ntiles in range(1, 10):
            # tiles fewer than ntiles a warpgroup's rows see; None: none (rows past the sequence)
            for spread in spreads:
                seen = tuple(0 if lg is None else max(ntiles - lg, 1) for lg in spread)  # some warpgroup sees all
                for _ in range(runs):
                    err = ws_schedule(ntiles, seen, rng, NS=NS, lag=lag, pingpong=pp)
                    n += 1
                    if err:
                        return n, f"{name}: ntiles {ntiles}, tiles seen {seen}: {err}"
                for pl in caught:
                    if not caught[pl]:
                        for _ in range(runs):
                            if ws_schedule(ntiles, seen, rng, planted=pl, NS=NS, lag=lag, pingpong=pp):
                                caught[pl] = True
                                break
        missed += [f"{name} {pl}" for pl, c in caught.items() if not c]
    return n, (f"planted protocol(s) {missed} passed: the check cannot see them" if missed else None)


WST_FAULTS = ("parity-t", "expect-k", "no-empty", "no-pbar", "empty-always")


def ws_schedule_tma(work, rng, planted=None, NS=3, NP=2, boxes=2, persist=False):
    """fa3wt's hand-over (gpu/attention_fa3.cu, attention_fa3wt_kernel and fa3_tma_produce):
    fa3w's consumers and "empty" named barriers, each stage's "full" an mbarrier of arrival
    count 1. One run in a random interleaving; the producer warpgroup as NP threads (P0 its
    thread 0, the others standing for the rest), the consumers as warpgroups. work: the
    block's work tiles, each (ntiles, partial, tiles_seen); fa3wt has one:

      P: for t: (t >= NS) bar.sync empty[t % NS]; a whole tile (t < ntiles - partial): P0
           mbarrier.arrive.expect_tx(full[t % NS], the tile's bytes), then the tile's TMA
           copies, boxes of K and boxes of V, each completing on full[t % NS] with its
           bytes; the tile past the last whole one (partial): every thread cp.async's its
           share of K and V, wait_group 0, fence, bar.sync among the producer's threads,
           then P0 mbarrier.arrive
      C: for t: mbarrier.try_wait.parity(full[t % NS], (t / NS) & 1); read the stage where
           t < tiles_seen[c]; (t + NS < ntiles) bar.arrive empty[t % NS]
         then bar.sync among the consumers (the store's), the output staged in the stages.

    persist: fa3wts' hand-over (attention_fa3wts_kernel: fa3wt made persistent, a block an SM
    taking several work tiles, the next one's Q and first K/V tiles loaded under the current
    one's last tiles and store; modelled here before the kernel was written). The stages
    are one ring over all the block's key tiles (g counts them across work tiles: stage
    g % NS, parity (g / NS) & 1), Q has two buffers,
    each with a "full" and an "empty" named barrier of the whole block, and the output is
    staged in its work tile's Q buffer, not in the stages (which may hold the next work
    tile's copies):

      P: for work tile j: (j >= 2) bar.sync qempty[j % 2]; every thread cp.async's its share
           of Q into buffer j % 2, wait_group 0, fence, bar.arrive qfull[j % 2]; then its key
           tiles as above, g for t; after the last work tile, bar.sync on the empty of the
           last NS key tiles and on the qempty of the last two work tiles (the drains: the
           consumers arrive on every tile's empty and every work tile's qempty, so that
           neither side needs to know how many work tiles the block has)
      C: for work tile j: bar.sync qfull[j % 2]; its key tiles as above (reading Q and the
           stage), bar.arrive empty[g % NS] for every tile; bar.sync store (the consumers: all
           their wgmmas done with Q); its rows of the output staged in Q buffer j % 2 and
           copied out by the same warp (fa3_store); bar.arrive qempty[j % 2]

    The mbarrier as the PTX ISA has it: a phase number (from 0), a pending arrival count
    (the expected count, 1, at each phase's start) and a tx-count (0 there); arrive.expect_tx
    adds its bytes, then arrives; a copy's completion subtracts its bytes; the phase
    completes when both are 0; try_wait.parity(p) succeeds once the phase of parity p has
    completed ((phase & 1) != p). A stage is 2 boxes NP cells (K's, then V's; boxes: a
    tile's TMA boxes of K), a TMA box NP of them, a producer thread's cp.async copy one (its
    rows); each copy lands (and a TMA box then completes its bytes) at a random moment after
    its issue, a tile's in any order.

    Returns None, or what went wrong: a read of a stage where a cell of the tile has not
    landed or holds another tile's; a phase completing before every cell of its tile (phase
    k of full[st] is key tile st + NS k's) has landed, or a copy or an arrival of one tile
    made in another tile's phase (an early completion's remainder); an arrival past the
    expected count; copies into a stage before every consumer released the tile it held; a
    named barrier's generation that sees a thread twice, arrivals left at exit; an mbarrier
    left mid-phase or short of its fills; a deadlock; copies in flight at the staging.
    persist, besides: Q read where a cell of it is not its work tile's landed Q, or
    overwritten while read; the output staged while another consumer's wgmmas still read
    that Q, or copied out (each consumer its own rows) while the buffer is refilled; Q
    copies into a buffer before every consumer copied out what it held.
    planted (WST_FAULTS): "parity-t" (the consumers wait parity t & 1), "expect-k" (the
    mbarrier armed with K's bytes alone), "no-empty" (the producer skips the empty wait),
    "no-pbar" (thread 0 arrives after its own cp.async copies, not the other threads'),
    "empty-always" (the consumers arrive on empty for every tile): each must fail.
    persist's (WSTP_FAULTS): "parity-local" (the parity of the work tile's own t, not g),
    "no-qempty" (Q loaded without waiting for qempty), "qempty-early" (qempty arrived before
    the copy-out), "one-store" (the output staged after no store barrier), "no-drain" (the
    producer leaves without the stages' drain), "no-qdrain" (nor Q's)."""
    cons = [f"C{c}" for c in range(len(work[0][2]))]
    prods = [f"P{i}" for i in range(NP)]
    U = boxes * NP  # cells of K (and of V) a stage
    first = [sum(w[0] for w in work[:j]) for j in range(len(work))]  # each work tile's first g
    total = sum(w[0] for w in work)
    stage = [[None] * (2 * U) for _ in range(NS)]  # the key tile (g) whose copy landed in each cell
    filled = [None] * NS  # the key tile last issued into the stage
    released = [set(cons) for _ in range(NS)]  # consumers done with that tile
    qbuf = [[None] * NP for _ in range(2)]  # the work tile whose Q landed in each cell
    qheld = [None, None]  # the work tile last issued into each Q buffer
    qdone = [set(cons), set(cons)]  # consumers done with it (copied out)
    staged = [set(), set()]  # consumers whose output of qheld sits in the buffer
    qreading = [set(), set()]  # consumers whose wgmmas read the buffer now

    inflight = []  # copies issued, not landed: (g, cells, on the mbarrier, issuing thread; "q" for Q's)
    mbar = [[0, 1, 0] for _ in range(NS)]  # full[st]: phase, pending arrivals, tx-count
    # fa3wt's ids: ws_empty, ws_store, + 1; then the persistent kernel's Q barriers
    EMPTY, STORE, PBAR, QFULL, QEMPTY = 1 + NS, 1 + 2 * NS, 2 + 2 * NS, 3 + 2 * NS, 5 + 2 * NS
    count = {STORE: len(cons), PBAR: NP}  # the others': every thread of the block
    nb = NamedBarriers(lambda i: count.get(i, NP + len(cons)))
    arrive, sync = nb.arrive, nb.sync

    def phase_tile(st):  # the key tile whose fill the current phase of full[st] is
        return st + NS * mbar[st][0]

    def complete(st):
        m = mbar[st]
        if m[1] == 0 and m[2] == 0:
            g = phase_tile(st)
            if any(c != g for c in stage[st]):
                raise AssertionError(f"full[{st}]'s phase of tile {g} completes with its stage holding {stage[st]}")
            m[:] = [m[0] + 1, 1, 0]

    def mbar_arrive(st, g, tx):  # arrive.expect_tx(tx); a plain arrive where tx is 0
        m = mbar[st]
        if phase_tile(st) != g:
            raise AssertionError(f"tile {g}'s arrival on full[{st}] in tile {phase_tile(st)}'s phase")
        if m[1] == 0:
            raise AssertionError(f"tile {g}'s arrival on full[{st}] past its expected count")
        m[1], m[2] = m[1] - 1, m[2] + tx
        complete(st)
        yield True

    def issue(a, g, cells, tma):
        st = g % NS
        if filled[st] != g:
            if released[st] != set(cons):
                raise AssertionError(f"tile {g}'s copies into stage {st} before every consumer released "
                                     f"tile {filled[st]}")
            filled[st], released[st] = g, set()
        inflight.append((g, cells, tma, a))

    def land(copy):
        g, cells, tma, _ = copy
        if tma == "q":  # Q's cp.async: g is the work tile, cells its buffer's
            b = g % 2
            if qreading[b] or staged[b]:
                raise AssertionError(f"Q of work tile {g} lands in buffer {b} while it is read: "
                                     f"{sorted(qreading[b])} reading, {sorted(staged[b])} staged")
            for c in cells:
                qbuf[b][c] = g
            return
        st = g % NS
        for c in cells:
            stage[st][c] = g
        if tma:  # complete_tx: the bytes, a cell a unit
            if phase_tile(st) != g:
                raise AssertionError(f"a copy of tile {g} completes on full[{st}] in tile {phase_tile(st)}'s phase")
            mbar[st][2] -= len(cells)
            complete(st)

    def wait_own(a):  # wait_group 0: this thread's cp.async copies land, in any order (not its TMA's)
        mine = [cp for cp in inflight if cp[3] == a and cp[2] is not True]
        for k in rng.permutation(len(mine)):
            inflight.remove(mine[k])
            land(mine[k])
        yield True

    def producer(i):
        a = prods[i]
        for j, (ntiles, partial, _) in enumerate(work):
            if persist:
                b = j % 2
                if j >= 2 and planted != "no-qempty":
                    yield from sync(a, QEMPTY + b)
                if qheld[b] != j:
                    if qdone[b] != set(cons):
                        raise AssertionError(f"Q of work tile {j} issued into buffer {b} before every consumer "
                                             f"copied out work tile {qheld[b]}")
                    qheld[b], qdone[b], staged[b] = j, set(), set()
                inflight.append((j, [i], "q", a))
                yield True
                yield from wait_own(a)
                yield from arrive(a, QFULL + b)
            for t in range(ntiles):
                g = first[j] + t
                st = g % NS
                if g >= NS and planted != "no-empty":
                    yield from sync(a, EMPTY + st)
                if t < ntiles - partial:
                    if i == 0:
                        yield from mbar_arrive(st, g, U if planted == "expect-k" else 2 * U)
                        for bx in range(2 * boxes):  # K's boxes, then V's
                            issue(a, g, list(range(bx * NP, bx * NP + NP)), True)
                            yield True
                else:
                    for c in range(i, 2 * U, NP):
                        issue(a, g, [c], False)
                    yield True
                    yield from wait_own(a)
                    if planted != "no-pbar":
                        yield from sync(a, PBAR)
                    if i == 0:
                        yield from mbar_arrive(st, g, 0)
        if persist and planted != "no-drain":
            for g in range(max(total - NS, 0), total):
                yield from sync(a, EMPTY + g % NS)
        if persist and planted != "no-qdrain":
            for j in range(max(len(work) - 2, 0), len(work)):
                yield from sync(a, QEMPTY + j % 2)

    def read(a, g, j):  # a consumer's wgmmas read stage g % NS (and Q) between their issue and their wait
        st, b = g % NS, j % 2
        if any(c != g for c in stage[st]):
            raise AssertionError(f"{a} reads tile {g} in stage {st}: it holds {stage[st]}")
        if persist:
            if any(c != j for c in qbuf[b]):
                raise AssertionError(f"{a} reads Q of work tile {j} in buffer {b}: it holds {qbuf[b]}")
            qreading[b].add(a)
        yield True
        if any(c != g for c in stage[st]):
            raise AssertionError(f"stage {st} overwritten while {a} reads tile {g}: {stage[st]}")
        if persist:
            qreading[b].discard(a)
            if any(c != j for c in qbuf[b]) or staged[b]:
                raise AssertionError(f"Q buffer {b} overwritten while {a} reads work tile {j}: {qbuf[b]}, "
                                     f"{sorted(staged[b])} staged")

    def consumer(c):
        a = cons[c]
        for j, (ntiles, _, seen) in enumerate(work):
            b = j % 2
            if persist:
                yield from sync(a, QFULL + b)
            for t in range(ntiles):
                g = first[j] + t
                st = g % NS
                parity = (t & 1 if planted == "parity-t" else
                          (t // NS) & 1 if planted == "parity-local" else (g // NS) & 1)
                while mbar[st][0] & 1 == parity:  # try_wait.parity
                    yield False
                if t < seen[c]:
                    yield from read(a, g, j)
                released[st].add(a)
                if (persist or g + NS < total or planted == "empty-always"):
                    yield from arrive(a, EMPTY + st)
            if planted != "one-store":
                yield from sync(a, STORE)
            if not persist:
                if inflight:
                    raise AssertionError(f"copies of tiles {sorted({cp[0] for cp in inflight})} in flight at "
                                         f"the output's staging")
                continue
            if qreading[b]:
                raise AssertionError(f"{a} stages work tile {j}'s output in Q buffer {b} while "
                                     f"{sorted(qreading[b])} read it, {sorted(staged[b])} staged")
            staged[b].add(a)  # its warps' rows, each copied out by the warp that staged it
            if planted == "qempty-early":
                yield from arrive(a, QEMPTY + b)
            yield True  # the copy-out's reads
            if a not in staged[b] or qheld[b] != j:
                raise AssertionError(f"buffer {b} refilled while {a} copies out work tile {j}")
            qdone[b].add(a)
            if planted != "qempty-early":
                yield from arrive(a, QEMPTY + b)

    progs = {**{prods[i]: producer(i) for i in range(NP)}, **{cons[c]: consumer(c) for c in range(len(cons))}}
    def land_any():  # any copy in flight may land now
        if inflight and rng.random() < 0.3:
            land(inflight.pop(rng.integers(len(inflight))))
            return True
        return False

    try:
        interleave(progs, rng, land_any, nb, lambda: f"; full's (phase, pending, tx) {mbar}")
        for st in range(NS):
            if mbar[st] != [len(range(st, total, NS)), 1, 0]:
                raise AssertionError(f"full[{st}] at exit (phase, pending, tx) {mbar[st]}: "
                                     f"{len(range(st, total, NS))} fills")
    except AssertionError as e:
        return str(e)
    return None


def check_schedules(cases, faults, rng, runs, what, persist=False):
    """ws_schedule_tma over cases ((work, boxes) each), each in `runs` random interleavings,
    and each planted fault of faults on the cases until it fails somewhere. Returns
    (interleavings checked, the first failure or None, planted faults caught); prints the
    faults not caught (what: whose hand-over)."""
    n = 0
    caught = dict.fromkeys(faults, False)
    for work, boxes in cases:
        for _ in range(runs):
            err = ws_schedule_tma(work, rng, boxes=boxes, persist=persist)
            n += 1
            if err:
                return n, f"work tiles (key tiles, partial, seen) {work}, {boxes} boxes: {err}", 0
        for pl in caught:
            caught[pl] = caught[pl] or any(
                ws_schedule_tma(work, rng, planted=pl, boxes=boxes, persist=persist)
                for _ in range(runs))
    for pl, c in caught.items():
        if not c:
            print(f"{what}: the planted fault '{pl}' was not caught")
    return n, None, sum(caught.values())


def seen_of(ntiles, spread):
    """The consumers' key tiles seen: all (0), the causal diagonal's spread (2, 1, 0 fewer),
    or one warpgroup's rows past the sequence (None: none)."""
    return tuple(0 if lg is None else max(ntiles - lg, 1) for lg in spread)


SPREADS = ((0, 0, 0), (2, 1, 0), (0, 0, None))


def check_ws_schedule_tma(rng, runs=60):
    """ws_schedule_tma over ntiles 1 to 8 (fewer than the three stages, as many, more than
    twice as many), the last tile whole (every tile by TMA) and partial (the last by
    cp.async), one to four boxes of K a tile (pages times 64-dim halves), the consumers' tiles
    seen as fa3w's (SPREADS). Each in `runs` random interleavings; and the planted faults,
    each of which must fail somewhere. Returns (interleavings checked, the first failure or
    None, planted faults caught)."""
    cases = [([(ntiles, partial, seen_of(ntiles, spread))], 1 << ((ntiles + partial) % 3))
             for ntiles in range(1, 9) for partial in (False, True) for spread in SPREADS]
    return check_schedules(cases, WST_FAULTS, rng, runs, "fa3wt's hand-over")


WSTP_FAULTS = ("parity-local", "no-qempty", "qempty-early", "one-store", "no-drain", "no-qdrain")
WSTP_ALSO = tuple(f for f in WST_FAULTS if f != "empty-always")  # persist arrives on every empty anyway


def check_ws_schedule_persist(rng, runs=40):
    """ws_schedule_tma with persist: a block taking one to five work tiles of 1 to 5 key
    tiles each (fewer than the three stages and more), the last whole or partial, the
    consumers' tiles seen as fa3w's (SPREADS), drawn at random, 12 blocks of each number of
    work tiles, each in `runs` random interleavings; and the planted faults (WSTP_FAULTS and
    fa3wt's that apply, WSTP_ALSO), each of which must fail somewhere.
    Returns (interleavings checked, the first failure or None, planted faults caught)."""
    cases = []
    for nwork in range(1, 6):
        for _ in range(12):
            work = []
            for _ in range(nwork):
                ntiles = int(rng.integers(1, 6))
                work.append((ntiles, bool(rng.integers(2)), seen_of(ntiles, SPREADS[rng.integers(3)])))
            cases.append((work, 1 << int(rng.integers(3))))
    return check_schedules(cases, WSTP_FAULTS + WSTP_ALSO, rng, runs, "the persistent hand-over", persist=True)


FA3W_BQ, FA3W_NS = 192, 3  # fa3w's (and fa3wt's) query rows a block and K/V stages
TMA_FAULTS = ("page-not-advanced", "half-at-column", "base-unaligned", "row-unscaled", "expect-tx-one")


def tma_box(sm, dst, tensor, dims, coords, box, swizzle="address"):
    """cp.async.bulk.tensor.3d with CU_TENSOR_MAP_SWIZZLE_128B, written here independently of
    the kernel: the box {box[0] elements, box[1], box[2] rows} at coords of the tensor of
    dims {d0, d1, d2} (dim 0 innermost, 2-byte elements) lands in shared memory from dst a
    128-byte row per (i1, i2), its 16-byte chunk index XORed with bits 7-9 of that row's
    shared address (the pattern taken from the address, repeating every 1024 bytes: the
    wgmma descriptors' swizzle, swz); elements past the tensor's dims read as zero and
    count. tensor(i2, i1, i0) is the element's value (here an id). swizzle "box-row": the
    XOR taken from the row's index within the box instead, the other way to read the
    hardware. Returns the bytes written."""
    assert box[0] * 2 <= 128, "the box's inner dimension within the 128-byte swizzle span"
    assert dst % 128 == 0, "a swizzled box's destination on a 128-byte boundary"
    n = 0
    for i2 in range(box[2]):
        for i1 in range(box[1]):
            i = i2 * box[1] + i1
            row = dst + i * 128
            sw = ((row >> 7) & 7) if swizzle == "address" else (i & 7)
            for e in range(box[0]):
                b = 2 * e
                c = (coords[0] + e, coords[1] + i1, coords[2] + i2)
                inside = all(0 <= c[k] < dims[k] for k in range(3))
                sm.e[(row + ((((b >> 4) ^ sw) << 4) | (b & 15))) // 2] = tensor(c[2], c[1], c[0]) if inside else 0
                n += 2
    return n


def tma_produce(sm, kd, vd, table, t, bsz, g, nkv, nrows, HD, planted=None, swizzle="address", follow=False):
    """fa3wt's producer (gpu/attention_fa3.cu, fa3_tma_produce) on whole tile t: for page p
    of the tile (pages = FA3_BN / block size, block table entry t pages + p) and each 64-dim
    half h, a box {64, 1, bsz} of K and of V at {64 h, g, table[..] bsz} into the stage at
    + h FA3_BN 128 + p bsz 128. follow (for block sizes that do not divide a tile): the
    pages as the keys fall instead, a box per block the tile's keys touch, at the row of its
    first key in the tile. Returns (bytes the copies write, bytes the mbarrier is armed with:
    2 TB, expect_tx, the boxes' destinations)."""
    TB = BN * HD * 2
    dims = (HD, nkv, nrows)

    def kid(row, gg, d):  # an element's id: 1 + its place in the cache (V's negated)
        return 1 + (row * nkv + gg) * HD + d

    def vid(row, gg, d):
        return -kid(row, gg, d)

    pages = BN // bsz
    boxes = []
    if not follow:
        for p in range(pages):
            row = table[t * pages + p] * (1 if planted == "row-unscaled" else bsz)
            boxes.append((p * bsz, row))
    else:
        for blk in range(t * BN // bsz, -(-(t + 1) * BN // bsz)):
            boxes.append((blk * bsz - t * BN, table[blk] * bsz))
    n, dsts = 0, []
    for r0, row in boxes:
        for h in range(HD // 64):
            o = h * (64 * 2 if planted == "half-at-column" else BN * 128) + \
                (0 if planted == "page-not-advanced" else r0 * 128)
            if not 0 <= o < TB:
                raise AssertionError(f"a box at byte {o} of a stage of {TB}")
            n += tma_box(sm, kd + o, kid, dims, (64 * h, g, row), (64, 1, bsz), swizzle)
            n += tma_box(sm, vd + o, vid, dims, (64 * h, g, row), (64, 1, bsz), swizzle)
            dsts += [kd + o, vd + o]
    return n, (TB if planted == "expect-tx-one" else 2 * TB), dsts


def tma_block(rng, HD, bsz, ntiles, planted=None, swizzle="address", follow=False, descriptors=False):
    """One fa3wt block's whole tiles 0 .. ntiles - 1 (the ring of FA3W_NS stages taken round
    more than once) from a paged cache in a random block table and kv head. After each
    tile's copies: every (key, dim) of K and V where fa3_sw puts it (the layout of fa3w's
    cp.async copies, which the last tile keeps, and of Q), its value the cache's element of
    that key, nothing written outside the tile's K and V buffers, the bytes the copies write
    the bytes the mbarrier was armed with, every box's destination 1024-byte aligned (so
    the placement holds whether the hardware wants the swizzle's period aligned or only 128
    bytes); with descriptors, K and V read back through the
    consumers' descriptors (s_tile's and pv_tile's offsets, the ISA's layouts) equal to the
    tile's keys. Raises AssertionError at the first difference."""
    TB, QB = BN * HD * 2, FA3W_BQ * HD * 2
    nkv = int(rng.choice((1, 2, 8)))
    g = int(rng.integers(nkv))
    nblocks = ntiles * -(-BN // bsz) + 4
    table = rng.permutation(nblocks + 3)[:nblocks]
    nrows = (nblocks + 3) * bsz
    raw = 16 * int(rng.integers(64))
    base = ((raw + 1023) & ~1023) + (512 if planted == "base-unaligned" else 0)
    kbuf = base + QB
    vbuf = kbuf + FA3W_NS * TB
    sm = Smem(vbuf + FA3W_NS * TB + 1024)
    for t in range(ntiles):
        st = t % FA3W_NS
        kd, vd = kbuf + st * TB, vbuf + st * TB
        sm.e[kd // 2: (kd + TB) // 2] = np.nan  # what a tile leaves unwritten shows
        sm.e[vd // 2: (vd + TB) // 2] = np.nan
        before = sm.e.copy()
        wrote, armed, dsts = tma_produce(sm, kd, vd, table, t, bsz, g, nkv, nrows, HD, planted, swizzle, follow)
        outside = np.ones(len(sm.e), bool)
        outside[kd // 2: (kd + TB) // 2] = outside[vd // 2: (vd + TB) // 2] = False
        same = (sm.e[outside] == before[outside]) | (np.isnan(sm.e[outside]) & np.isnan(before[outside]))
        assert same.all(), f"tile {t}: a copy wrote outside stage {st}'s K and V"
        want = np.zeros((BN, HD))
        for j in range(BN):
            key = t * BN + j
            row = table[key // bsz] * bsz + key % bsz
            want[j] = 1 + (row * nkv + g) * HD + np.arange(HD)
        for buf, sign, what in ((kd, 1, "K"), (vd, -1, "V")):
            got = np.array([[sm.at(buf + fa3_sw(BN, j, d // 8) + 2 * (d % 8)) for d in range(HD)] for j in range(BN)])
            bad = ~(got == sign * want)
            if bad.any():
                j, d = np.argwhere(bad)[0]
                raise AssertionError(f"tile {t}: {what} of key {t * BN + j}, dim {d} not where fa3_sw puts it "
                                     f"({int(bad.sum())} of {BN * HD} elements misplaced)")
        assert wrote == armed, f"tile {t}: the copies write {wrote} bytes, the mbarrier expects {armed}"
        off = [d for d in dsts if d % 1024]
        assert not off, f"tile {t}: a box's destination {off[0]} off the swizzle's 1024-byte period"
        if descriptors:
            dk, dv = fa3_desc(kd, 16, 1024), fa3_desc(vd, BN * 128, 1024)
            for ks in range(HD // 16):
                got = read_kmajor(sm, dk + ((((ks >> 2) * BN * 128) + (ks & 3) * 32) >> 4), BN)
                assert np.array_equal(got, want[:, 16 * ks: 16 * ks + 16]), f"tile {t}: K's descriptor, step {ks}"
            for kk in range(BN // 16):
                got = read_mnmajor(sm, dv + ((kk * 2048) >> 4), HD)
                assert np.array_equal(got, -want[16 * kk: 16 * kk + 16]), f"tile {t}: V's descriptor, step {kk}"


def check_tma_placement(rng):
    """fa3wt's TMA copies (gpu/attention_fa3.cu, fa3_tma_produce) against the layout the
    consumers read: tma_block for head_dim 64 and 128, block sizes 8, 16, 32 and 64 (eight
    to one pages a tile), a few random block tables and kv heads, five tiles (the ring of
    three stages taken round again), the first run of each read back through the
    descriptors too. Then: the same placement where the hardware took the swizzle from the
    row's index within the box, not its address (every page starts on a multiple of 8 rows
    from a 1024-byte aligned stage, where the two agree: the kernel does not hinge on
    which); block sizes 12 and 24, which the launcher refuses, misplace keys both as the
    kernel's code would copy them (FA3_BN / block size pages) and as the keys fall (a
    page's box crossing the tile's end); and the planted faults (TMA_FAULTS: the page's
    destination not advanced by p bsz 128, the half placed as a row-major tile's column,
    the stage 512 bytes off its 1024-byte alignment, the block's row not scaled by the
    block size, the mbarrier armed with one tensor's bytes), each of which must be caught.
    Returns (tiles checked, the first failure or None, refused block sizes that misplaced,
    planted faults caught)."""
    n, NT = 0, 5
    try:
        for HD in (64, 128):
            for bsz in (8, 16, 32, 64):
                for rep in range(3):
                    tma_block(rng, HD, bsz, NT, descriptors=rep == 0)
                    tma_block(rng, HD, bsz, NT, swizzle="box-row")
                    n += 2 * NT
    except AssertionError as e:
        return n, f"hd {HD}, block size {bsz}: {e}", 0, 0
    refused = 0
    for bsz in (12, 24):
        broke = True
        for follow in (False, True):
            try:
                tma_block(rng, 128, bsz, NT, follow=follow)
                broke = False
            except AssertionError:
                pass
        refused += broke
    caught = 0
    for planted in TMA_FAULTS:
        try:
            for HD in (64, 128):
                for bsz in (8, 16, 64):
                    tma_block(rng, HD, bsz, 3, planted=planted)
        except AssertionError:
            caught += 1
        else:
            print(f"fa3wt's TMA placement: the planted fault '{planted}' was not caught")
    return n, None, refused, caught


def main():
    ap = argparse.ArgumentParser(description="CPU model of fa3's index arithmetic (see the file's comment)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    worst = 0.0
    # (head_dim, block size, past, new tokens, query tile, nh, nkv, h, raw smem offset)
    # the first: the causal diagonal, where the first warpgroup's rows see one tile less;
    # then a block of one key tile, one of seven tiles and two rows, and block size 3
    # (fa3_fetch's steps cross several blocks of the table)
    cases = [(128, 16, 0, 200, 0, 4, 2, 3, 16), (128, 7, 90, 150, 1, 2, 1, 1, 0), (64, 16, 37, 70, 0, 8, 2, 5, 528),
             (64, 16, 0, 40, 0, 2, 2, 1, 0), (128, 32, 300, 130, 1, 4, 1, 2, 0), (64, 3, 20, 100, 0, 2, 1, 0, 0)]
    same = True
    for HD, bsz, past, new, qtile, nh, nkv, h, raw in cases:
        total = past + new
        nblocks = -(-total // bsz)
        table = rng.permutation(nblocks + 5)[:nblocks]
        nslots = (nblocks + 5) * bsz
        kc, vc = rng.standard_normal((nslots, nkv, HD)), rng.standard_normal((nslots, nkv, HD))
        q = rng.standard_normal((new, nh * HD))
        token_keys = [past + i + 1 for i in range(new)]
        g = h // (nh // nkv)
        row0 = qtile * BQ
        nrows = min(new - row0, BQ)
        scale = HD ** -0.5
        want = reference(q, kc, vc, table, bsz, g, h, HD, row0, nrows, token_keys, scale)
        got = {}
        for name, pipelined in (("fa3", False), ("fa3p", True)):
            got[name] = run_block(q, kc, vc, table, bsz, nkv, g, h, HD, row0, nrows, token_keys, scale, raw,
                                  pipelined)
            err = float(np.max(np.abs(got[name] - want)))  # nan where any output is (np.max propagates it)
            if not np.isfinite(err):
                err = np.inf
            worst = max(worst, err)
            print(f"hd {HD}, block size {bsz}, past {past}, {new} new tokens, query tile {qtile} ({nrows} rows), "
                  f"head {h} of {nh} (kv {g} of {nkv}): max |{name} model - softmax(QK^T)V| = {err:.2e}")
        if not np.array_equal(got["fa3"], got["fa3p"]):  # the same operations in the same order
            print("fa3p's model differs from fa3's")
            same = False
    print(f"fdt's walk through the block table: {check_fdt_walk()} steps against a direct division")
    ne, ncaught = check_fdt_early()
    print(f"fdt's first stages split at the batch's first new key (FDT_KV_EARLY): {ne} cases, every slot "
          f"written once with its key, none new before the wait; planted faults caught: {ncaught} of 3")
    nws, ws_err = check_ws_schedule(rng)
    held = ("every stage read after its copies landed and refilled after its readers released it; "
            "the planted protocols caught (three each)")
    print(f"fa3w's and fa3wp's hand-overs: {nws} interleavings, {ws_err or held}")
    nwt, wt_err, wcaught = check_ws_schedule_tma(rng)
    handed = ("every stage read after every byte of its tile landed, no phase completed early, none refilled "
              "before its readers released it, no deadlock, no arrival left")
    print(f"fa3wt's hand-over (mbarriers a stage, TMA and the cp.async last tile): {nwt} interleavings, "
          f"{wt_err or handed}; planted faults caught: {wcaught} of {len(WST_FAULTS)}")
    npw, pw_err, pcaught = check_ws_schedule_persist(rng)
    held_p = ("the stages one ring over the work tiles, Q in two buffers read only as landed, the output "
              "staged in Q after every consumer's reads and copied out before Q's refill, no deadlock, "
              "no arrival left")
    nfaults = len(WSTP_FAULTS) + len(WSTP_ALSO)
    print(f"fa3wts' hand-over (fa3wt persistent: several work tiles a block): {npw} interleavings, "
          f"{pw_err or held_p}; planted faults caught: {pcaught} of {nfaults}")
    nt, tma_err, refused, tcaught = check_tma_placement(rng)
    placed = ("every key and dim of K and V where fa3_sw puts it and the descriptors read it, every box "
              "1024-byte aligned, the mbarrier armed with the bytes the copies write; the same with the "
              "swizzle from the box's row")
    print(f"fa3wt's TMA placement (hd 64 and 128, block sizes 8 to 64): {nt} tiles, {tma_err or placed}; "
          f"block sizes 12 and 24 misplace: {refused} of 2; planted faults caught: {tcaught} of {len(TMA_FAULTS)}")
    ok = (worst <= 1e-12 and same and ws_err is None and ncaught == 3 and tma_err is None and refused == 2
          and tcaught == len(TMA_FAULTS) and wt_err is None and wcaught == len(WST_FAULTS)
          and pw_err is None and pcaught == nfaults)
    print(f"worst {worst:.2e}, fa3p {'equal to' if same else 'NOT equal to'} fa3: {'agree' if ok else 'DISAGREE'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
