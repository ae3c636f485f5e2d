#!/usr/bin/env python3
"""model-fa3-layout.py: a CPU model of the data movement of attention variant fa3
(gpu/attention_fa3.cu), for checking its index arithmetic without a GPU.

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
sequences shorter than a block's 128 rows) and exits 1 above 1e-12.
Usage: tools/model-fa3-layout.py [--seed N]
"""
import argparse
import sys

import numpy as np

BQ, BN, WGS = 128, 64, 2  # FA3_BQ, FA3_BN (LR_ATTN_P_TILE), FA3_WGS


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


def run_block(q, kc, vc, table, bsz, nkv, g, h, HD, tok0, nrows, token_keys, scale, raw):
    """One block of the kernel: returns its nrows output rows (HD each) of head h."""
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

    def fetch(t, buf):
        for i in range(BN * CH):
            j, c = divmod(i, CH)
            key = t * BN + j
            src = None
            if key < kmax:
                b = key // bsz
                slot = table[b] * bsz + key - b * bsz
                src = (kc[slot, g, 8 * c: 8 * c + 8], vc[slot, g, 8 * c: 8 * c + 8])
            o = fa3_sw(BN, j, c)
            sm.cp16(kbuf + buf * TB + o, None if src is None else src[0])
            sm.cp16(vbuf + buf * TB + o, None if src is None else src[1])

    out = np.full((BQ, HD), np.nan)
    sl2 = scale * 1.4426950408889634
    for wg in range(WGS):
        rows = [64 * wg + r for r in range(64)]
        wgmax = max(nk[r] for r in rows)
        o = np.zeros((128, HD // 2))
        m = np.full((128, 2), -np.inf)
        lsum = np.zeros((128, 2))
        dq = fa3_desc(qs + wg * 64 * 128, 16, 1024)
        for t in range(ntiles):
            fetch(t, t & 1)  # the kernel fetches tile t one iteration ahead; the same bytes
            k0 = t * BN
            if k0 >= wgmax:
                continue
            cur = (t & 1) * TB
            dk, dv = fa3_desc(kbuf + cur, 16, 1024), fa3_desc(vbuf + cur, BN * 128, 1024)
            Smat = np.zeros((64, BN))
            for ks in range(HD // 16):
                da = dq + ((((ks >> 2) * BQ * 128) + (ks & 3) * 32) >> 4)
                db = dk + ((((ks >> 2) * BN * 128) + (ks & 3) * 32) >> 4)
                Smat += read_kmajor(sm, da, 64) @ read_kmajor(sm, db, BN).T
            s = matrix_to_frag(Smat)
            pa = np.zeros((BN // 16, 128, 4, 2))
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
                    mx = max(s[u][4 * j + 2 * half + e] for u in range(grp, grp + 4) for j in range(BN // 8)
                             for e in range(2))
                    mn = max(m[t_][half], mx)
                    corr = 1.0 if mn == -np.inf else 2.0 ** (m[t_][half] - mn)
                    bias = 0.0 if mn == -np.inf else mn
                    m[t_][half] = mn
                    tot = 0.0
                    for j in range(BN // 8):
                        p = [2.0 ** (s[t_][4 * j + 2 * half + e] - bias) for e in range(2)]
                        pa[j >> 1, t_, (j & 1) * 2 + half] = p
                        tot += p[0] + p[1]
                    lsum[t_][half] = lsum[t_][half] * corr + tot
                    for d in range(HD // 8):
                        o[t_][4 * d + 2 * half] *= corr
                        o[t_][4 * d + 2 * half + 1] *= corr
            Omat = frag_to_matrix(o, HD)
            for kk in range(BN // 16):
                Omat += afrag_to_matrix(pa[kk]) @ read_mnmajor(sm, dv + ((kk * 2048) >> 4), HD)
            o = matrix_to_frag(Omat)
        # normalise and stage rows ra, rb (each lane's 2 columns of every 8), then read back
        for t_ in range(128):
            w, gr, tq = t_ // 32, (t_ % 32) // 4, t_ % 4
            grp = (t_ // 4) * 4
            for half, row in ((0, 64 * wg + 16 * w + gr), (1, 64 * wg + 16 * w + gr + 8)):
                tot = sum(lsum[u][half] for u in range(grp, grp + 4))
                inv = 1.0 / tot if tot > 0 else 0.0
                for d in range(HD // 8):
                    for e in range(2):
                        out[row, 8 * d + 2 * tq + e] = o[t_][4 * d + 2 * half + e] * inv
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


def main():
    ap = argparse.ArgumentParser(description="CPU model of fa3's index arithmetic (see the file's comment)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    worst = 0.0
    # (head_dim, block size, past, new tokens, query tile, nh, nkv, h, raw smem offset)
    cases = [(128, 16, 0, 200, 0, 4, 2, 3, 16), (128, 7, 90, 150, 1, 2, 1, 1, 0), (64, 16, 37, 70, 0, 8, 2, 5, 528)]
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
        got = run_block(q, kc, vc, table, bsz, nkv, g, h, HD, row0, nrows, token_keys, scale, raw)
        want = reference(q, kc, vc, table, bsz, g, h, HD, row0, nrows, token_keys, scale)
        err = float(np.max(np.abs(got - want)))
        worst = max(worst, err)
        print(f"hd {HD}, block size {bsz}, past {past}, {new} new tokens, query tile {qtile} ({nrows} rows), "
              f"head {h} of {nh} (kv {g} of {nkv}): max |fa3 model - softmax(QK^T)V| = {err:.2e}")
    print(f"worst {worst:.2e}: {'agree' if worst <= 1e-12 else 'DISAGREE'}")
    return 0 if worst <= 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main())
