/* attention_fa2.cu: the "fa2" attention variant, FlashAttention-2 on mma.sync for long
 * prefill (the default, fd, runs it there too); tc (attention_tc.cu) takes the rest.
 * Shared pieces: attention.cuh.
 *
 * For prefill in bf16/f16 at head_dim 64 or 128. A block takes 128 query rows of one
 * (sequence, head), 32 per warp in two blocks of 16 (FA_MT 2; 1: 64 and 16, below); each
 * warp reads its Q rows back from shared memory as mma A fragments a k-step at a time
 * (FA_MT 1: held in registers for the whole key loop). Keys and values come in
 * tiles of FA_BK = 64 from the paged cache into shared memory with cp.async,
 * double-buffered (tile t + 1 is fetched while tile t is used). Per tile and warp: S =
 * Q K^T with mma.m16n8k16 (K fragments by ldmatrix), scores kept in the accumulator
 * registers, scaled by scale * log2(e), masked per row (the row's token_keys), online
 * softmax in float32 with exp2f; P is rounded to the dtype in registers and used directly
 * as the A operand of O += P V (V fragments by ldmatrix.trans). As in tc, P is the one
 * rounded intermediate and the row sum is taken over the rounded P. O stays in float32
 * registers and is rounded once at the end.
 *
 * mma.m16n8k16 fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16"), for lane l with
 * gr = l / 4, tq = l % 4; each .b32 register holds two 16-bit elements, the lower column
 * (or k) in the low half:
 *   A (16 x 16, row): a0 (gr, 2tq..+1)  a1 (gr+8, 2tq..+1)  a2 (gr, 2tq+8..+9)  a3 (gr+8, 2tq+8..+9)
 *   B (16 x 8, col):  b0 (k 2tq..+1, n gr)  b1 (k 2tq+8..+9, n gr)
 *   C (16 x 8, f32):  c0, c1 (gr, 2tq..+1)  c2, c3 (gr+8, 2tq..+1)
 * so the C tiles of keys 16kk..16kk+7 and 16kk+8..+15, rounded and packed in pairs, are
 * the A fragment of keys 16kk..16kk+15 for P V without any shuffle.
 *
 * Anything else (F32, other head sizes, one token per sequence, unaligned pointers or odd
 * strides, a grid too large) goes to tc, which picks its own path as always. */
#include "attention.cuh"

#include <limits.h>

#define FA_BK 64 /* keys per tile */
#define FA_WARPS 4
/* Query row blocks of 16 a warp (FA_MT, a build-time knob). 2, the default since run 24:
 * 32 rows a warp and 128 a block, each K and V fragment read from shared memory once for
 * both row blocks (half the shared-memory traffic per FLOP, as FlashAttention-2 lays out
 * hd 128) and Q read back from shared memory a k-step at a time instead of held (its
 * registers go to the second block's accumulators); ptxas: 254 registers at hd 128, no
 * spills. 1: Q in registers for the whole key loop, 64 rows a block. Every row's
 * arithmetic is the same in both, so are the bits. On the H200 (docs/performance.md, run
 * 24) 2 took 217.7 us against 292.2 for 1 x 2048 at 32/8 heads, hd 128, causal, and 151.8
 * against 187.9 for 8 x 512. */
#ifndef FA_MT
#define FA_MT 2
#endif
static_assert(FA_MT == 1 || FA_MT == 2, "fa2: 1 or 2 row blocks of 16 a warp");
static_assert(FA_BK % 16 == 0, "a key tile is whole 16-key k-steps of P V");

/* Shared memory, elements of E: K0 | V0 | K1 | V1, each FA_BK rows of LD = HD + 8, then
 * (MT 2) the block's 128 Q rows. The 16-byte pad makes a row an odd number of 16-byte
 * units, so the 8 rows one ldmatrix phase reads fall in 8 different bank quads. MT 1: Q
 * waits in K1 until every warp holds its fragments (tile 1 is fetched only after that).
 * The output rows are staged in K0 (and V0, MT 2) after the last tile. hd 128, MT 1:
 * 4 x 64 x 136 x 2 B = 68 KiB per block (two blocks per SM: the 188 registers a thread
 * needs bound it before shared memory does); hd 64: 4 x 64 x 72 x 2 B = 36 KiB; MT 2 adds
 * 128 Q rows (34 KiB at hd 128). */
template <int HD, int MT> struct fa_layout {
    static constexpr int LD = HD + 8;
    static constexpr int BQ = 16 * MT * FA_WARPS;  /* query rows per block */
    static constexpr int tile = FA_BK * LD;        /* elements of one K or V buffer */
    static constexpr int qrows = MT == 1 ? 0 : BQ; /* Q's own rows (MT 1: Q in K1) */
    static constexpr size_t bytes = (4 * (size_t)tile + (size_t)qrows * LD) * 2;
    static_assert(HD % 32 == 0, "one ldmatrix.x4 of K covers two 16-wide k-steps");
    static_assert((LD * 2) % 16 == 0 && (LD * 2 / 16) % 2 == 1,
                  "rows 16-byte aligned, an odd number of 16 B");
    static_assert(BQ <= 2 * FA_BK, "the output rows are staged in K0 and V0");
    static_assert(MT > 1 || BQ <= FA_BK, "MT 1 stages Q in one K buffer");
    static_assert(bytes <= 227 * 1024, "within sm_90's shared memory per block");
};

/* Issue the copies of key tile t (keys t FA_BK ..) into buffer kd (K) / kd + tile (V):
 * thread i takes 16-byte column i % CH of rows i / CH, + RS, ...; keys at or past kmax
 * (whose block-table entries may be -1) are zero-filled without a read, so that P V
 * never meets stale shared memory (0 * NaN). */
template <typename E, int HD>
static __device__ __forceinline__ void fa_fetch(E *kd, const E *k_cache, const E *v_cache,
                                                const int32_t *table, int bsz, int64_t nkv, int64_t g, int t,
                                                int kmax) {
    constexpr int LD = HD + 8, CH = HD / 8, RS = FA_WARPS * 32 / CH;
    static_assert((FA_WARPS * 32) % CH == 0 && FA_BK % RS == 0, "the threads cover the tile exactly");
    E *vd = kd + FA_BK * LD;
    const int c = threadIdx.x % CH;
#pragma unroll
    for (int j = threadIdx.x / CH; j < FA_BK; j += RS) {
        int key = t * FA_BK + j, n = 0;
        int64_t off = 0;
        if (key < kmax) {
            off = key_offset32(table, bsz, key, nkv, HD, g) + c * 8;
            n = 16;
        }
        cp_async16(smem_u32(kd + j * LD + c * 8), k_cache + off, n);
        cp_async16(smem_u32(vd + j * LD + c * 8), v_cache + off, n);
    }
}

/* Grid: one dimension over (head, sequence, query tile), heads fastest (the query heads
 * of a kv head run side by side and share its K/V in L2), and the last (heaviest, causal)
 * query tiles of every sequence first. Warp w owns rows 16 (MT w + mt) + 0..15 of the
 * block's, mt < MT; lane l's are gr = l / 4 and gr + 8 of each. */
template <typename E, int HD, int MT>
static __global__ void __launch_bounds__(FA_WARPS * 32, 2)
    attention_fa2_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq, const E *k_cache, const E *v_cache,
                         lr_gpu_attn_meta m, int64_t nh, int64_t nkv, float scale, int64_t qtiles) {
    typedef fa_layout<HD, MT> Ly;
    constexpr int LD = Ly::LD, CH = HD / 8, NS = FA_BK / 8 /* S tiles of 8 keys */, NO = HD / 8, BQ = Ly::BQ;
    extern __shared__ __align__(128) unsigned char fa_smem[];
    E *const sm = (E *)fa_smem; /* K0 | V0 | K1 | V1 (| Q) */
    __shared__ int kmax_w[FA_WARPS];

    const int64_t bid = blockIdx.x, h = bid % nh, rest = bid / nh;
    const int64_t seq = rest % m.num_seqs, tile = rest / m.num_seqs;
    const int64_t row0 = (qtiles - 1 - tile) * BQ, len = m.seq_len[seq];
    if (row0 >= len) return; /* block-uniform, before any barrier */
    const int64_t g = h / (nh / nkv), tok0 = m.seq_start[seq] + row0;
    const int nrows = (int)(len - row0 < BQ ? len - row0 : BQ);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, tq = lane & 3;
    const int32_t *table = m.block_tables + seq * m.max_blocks;
    const int bsz = (int)m.block_size; /* <= INT32_MAX (checked by the launcher) */

    /* This lane's rows, ra[mt] and rb[mt] = ra[mt] + 8, and the keys each sees (0 for rows
     * past the sequence: every score masked). wmax, wmin: the most and fewest keys over
     * the warp's rows (warp-uniform). */
    int ra[MT], rb[MT], nka[MT], nkb[MT], wmax = 0, wmin = INT_MAX;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        ra[mt] = (warp * MT + mt) * 16 + gr, rb[mt] = ra[mt] + 8;
        nka[mt] = ra[mt] < nrows ? m.token_keys[tok0 + ra[mt]] : 0;
        nkb[mt] = rb[mt] < nrows ? m.token_keys[tok0 + rb[mt]] : 0;
        wmax = max(wmax, max(nka[mt], nkb[mt])), wmin = min(wmin, min(nka[mt], nkb[mt]));
    }
#pragma unroll
    for (int o_ = 16; o_ > 0; o_ >>= 1) {
        wmax = max(wmax, __shfl_xor_sync(0xffffffffu, wmax, o_));
        wmin = min(wmin, __shfl_xor_sync(0xffffffffu, wmin, o_));
    }
    if (lane == 0) kmax_w[warp] = wmax;
    __syncthreads();
    int kmax = kmax_w[0];
#pragma unroll
    for (int w = 1; w < FA_WARPS; w++)
        kmax = max(kmax, kmax_w[w]);
    const int ntiles = kmax / FA_BK + (kmax % FA_BK != 0);

    /* Q (rows past the sequence zero-filled) into K1 (MT 1) or its own rows, tile 0 into
     * K0/V0: one group. */
    E *const qs = MT == 1 ? sm + 2 * Ly::tile : sm + 4 * Ly::tile;
    for (int i = threadIdx.x; i < BQ * CH; i += FA_WARPS * 32) {
        int r = i / CH, c = i % CH;
        const E *src = r < nrows ? q + (tok0 + r) * ldq + h * HD + c * 8 : q;
        cp_async16(smem_u32(qs + r * LD + c * 8), src, r < nrows ? 16 : 0);
    }
    if (ntiles > 0) fa_fetch<E, HD>(sm, k_cache, v_cache, table, bsz, nkv, g, 0, kmax);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    /* The warp's Q rows as A fragments, k-step kk = dims 16kk..16kk+15: matrices (rows
     * 0-7, dims 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15) = a0..a3; lane l addresses
     * row l % 16, dims + 8 (l / 16). MT 1 holds them all (and frees K1 for tile 1); MT 2
     * reads each k-step's back when it is used. */
    const uint32_t qrow = smem_u32(qs + (warp * MT * 16 + (lane & 15)) * LD + (lane >> 4) * 8);
    uint32_t qa[MT == 1 ? HD / 16 : 1][4];
    if (MT == 1) {
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++)
            ldsm_x4(qa[kk], qrow + kk * 16 * 2);
        __syncthreads(); /* K1 is free for tile 1 */
    }

    float o[MT][NO][4]; /* O (16 x HD) of each row block: tile d holds dims 8d..8d+7 */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int d = 0; d < NO; d++)
            o[mt][d][0] = o[mt][d][1] = o[mt][d][2] = o[mt][d][3] = 0.0f;
    /* Running max (in units of log2, like the scaled scores) and this lane's part of the
     * row sums (its 2 columns of every 8); the 4 lanes of a row share the max. */
    float ma[MT], mb[MT], la[MT], lb[MT];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
        ma[mt] = mb[mt] = -INFINITY, la[mt] = lb[mt] = 0.0f;
    const float sl2 = scale * 1.4426950408889634f;

    for (int t = 0; t < ntiles; t++) {
        if (t + 1 < ntiles) {
            fa_fetch<E, HD>(sm + ((t + 1) & 1) * 2 * Ly::tile, k_cache, v_cache, table, bsz, nkv, g, t + 1,
                            kmax);
            cp_async_commit();
            cp_async_wait<1>(); /* tile t has landed, t + 1 may be in flight */
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const int k0 = t * FA_BK;
        if (k0 < wmax) { /* warp-uniform: some row of the warp sees a key of the tile */
            const E *ks = sm + (t & 1) * 2 * Ly::tile, *vs = ks + Ly::tile;

            /* S (16 x 64) of each row block: tile j holds keys k0 + 8j .. + 7. B fragments
             * of keys 8j..8j+7: matrices (keys, dims 32kp + 0-7 | 8-15 | 16-23 | 24-31) =
             * b0, b1 of k-step 2kp and b0, b1 of 2kp + 1; lane l addresses key l % 8, dims
             * + 8 (l / 8). Key groups no row of the warp sees are skipped (left 0, masked
             * below). Each K fragment meets every row block. */
            float s[MT][NS][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int j = 0; j < NS; j++)
                    s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.0f;
#pragma unroll
            for (int kp = 0; kp < HD / 32; kp++) {
                uint32_t qf[MT][2][4]; /* k-steps 2kp, 2kp + 1 of each row block */
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        if (MT == 1) {
#pragma unroll
                            for (int r = 0; r < 4; r++)
                                qf[mt][e][r] = qa[MT == 1 ? 2 * kp + e : 0][r];
                        } else {
                            ldsm_x4(qf[mt][e], qrow + (mt * 16 * LD + (2 * kp + e) * 16) * 2);
                        }
                    }
#pragma unroll
                for (int j = 0; j < NS; j++) {
                    if (k0 + 8 * j < wmax) {
                        uint32_t kb[4];
                        ldsm_x4(kb, smem_u32(ks + (8 * j + (lane & 7)) * LD + kp * 32 + (lane >> 3) * 8));
#pragma unroll
                        for (int mt = 0; mt < MT; mt++) {
                            mma16816<E>::mma(s[mt][j], qf[mt][0], kb[0], kb[1]);
                            mma16816<E>::mma(s[mt][j], qf[mt][1], kb[2], kb[3]);
                        }
                    }
                }
            }

            /* Per row block: scale to log2 units; mask keys a row may not see
             * (s[mt][j][0..1]: row ra, keys k0 + 8j + 2tq + 0/1; s[mt][j][2..3]: row rb,
             * the same keys); the online softmax; P, rounded, straight into A fragments:
             * S tile j is keys 16 (j/2) + 8 (j%2) .. of k-step j / 2, i.e. registers a0, a1
             * (j even) or a2, a3 (j odd). */
            const bool full = wmin - k0 >= FA_BK; /* warp-uniform: every row sees the whole tile */
            uint32_t pa[MT][FA_BK / 16][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                float mxa = -INFINITY, mxb = -INFINITY;
#pragma unroll
                for (int j = 0; j < NS; j++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int key = k0 + 8 * j + 2 * tq + e;
                        float va = s[mt][j][e] * sl2, vb = s[mt][j][2 + e] * sl2;
                        if (!full) {
                            va = key < nka[mt] ? va : -INFINITY;
                            vb = key < nkb[mt] ? vb : -INFINITY;
                        }
                        s[mt][j][e] = va, s[mt][j][2 + e] = vb;
                        mxa = fmaxf(mxa, va), mxb = fmaxf(mxb, vb);
                    }
                mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, 1));
                mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, 2));
                mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, 1));
                mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, 2));
                /* A row that has seen no key yet keeps max -inf: its weights are exp2(-inf) =
                 * 0 against base 0, and corr 1 leaves its zeros alone (no -inf - -inf). */
                const float mna = fmaxf(ma[mt], mxa), mnb = fmaxf(mb[mt], mxb);
                const float ca = mna == -INFINITY ? 1.0f : exp2f(ma[mt] - mna),
                            cb = mnb == -INFINITY ? 1.0f : exp2f(mb[mt] - mnb);
                const float ba = mna == -INFINITY ? 0.0f : mna, bb = mnb == -INFINITY ? 0.0f : mnb;
                ma[mt] = mna, mb[mt] = mnb;
                float sa = 0.0f, sb = 0.0f;
#pragma unroll
                for (int j = 0; j < NS; j++) {
                    float r0, r1, r2, r3;
                    pa[mt][j >> 1][(j & 1) * 2] =
                        mma16816<E>::pack(exp2f(s[mt][j][0] - ba), exp2f(s[mt][j][1] - ba), r0, r1);
                    pa[mt][j >> 1][(j & 1) * 2 + 1] =
                        mma16816<E>::pack(exp2f(s[mt][j][2] - bb), exp2f(s[mt][j][3] - bb), r2, r3);
                    sa += r0 + r1, sb += r2 + r3;
                }
                la[mt] = la[mt] * ca + sa, lb[mt] = lb[mt] * cb + sb;
#pragma unroll
                for (int d = 0; d < NO; d++) {
                    o[mt][d][0] *= ca, o[mt][d][1] *= ca;
                    o[mt][d][2] *= cb, o[mt][d][3] *= cb;
                }
            }

            /* O += P V. B fragments of k-step kk (keys 16kk..) and dims 16dp..16dp+15 by
             * ldmatrix.trans of V rows: matrices (keys 0-7, dims 0-7), (8-15, 0-7),
             * (0-7, 8-15), (8-15, 8-15) = b0, b1 of O tile 2dp and b0, b1 of 2dp + 1; lane
             * l addresses key l % 16, dims + 8 (l / 16). Each V fragment meets every row
             * block. */
#pragma unroll
            for (int kk = 0; kk < FA_BK / 16; kk++) {
                if (k0 + 16 * kk >= wmax) continue; /* warp-uniform: P is 0 there */
#pragma unroll
                for (int dp = 0; dp < HD / 16; dp++) {
                    uint32_t vb[4];
                    ldsm_x4_t(vb, smem_u32(vs + (16 * kk + (lane & 15)) * LD + dp * 16 + (lane >> 4) * 8));
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        mma16816<E>::mma(o[mt][2 * dp], pa[mt][kk], vb[0], vb[1]);
                        mma16816<E>::mma(o[mt][2 * dp + 1], pa[mt][kk], vb[2], vb[3]);
                    }
                }
            }
        }
        __syncthreads(); /* the buffer is refetched next iteration (or takes the output) */
    }

    /* Normalise, round once, stage the warp's rows in K0 (and V0) (its own rows: no block
     * barrier needed, the loop's last one has passed), then write whole rows out in pairs
     * (the launcher checked ctx and ldc for 4-byte alignment). */
    E *os = sm;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float a_ = la[mt], b_ = lb[mt];
        a_ += __shfl_xor_sync(0xffffffffu, a_, 1);
        a_ += __shfl_xor_sync(0xffffffffu, a_, 2);
        b_ += __shfl_xor_sync(0xffffffffu, b_, 1);
        b_ += __shfl_xor_sync(0xffffffffu, b_, 2);
        const float ia = a_ > 0.0f ? 1.0f / a_ : 0.0f, ib = b_ > 0.0f ? 1.0f / b_ : 0.0f;
#pragma unroll
        for (int d = 0; d < NO; d++) {
            E2<E> pa2, pb2;
            pa2.a = elem<E>::store(o[mt][d][0] * ia), pa2.b = elem<E>::store(o[mt][d][1] * ia);
            pb2.a = elem<E>::store(o[mt][d][2] * ib), pb2.b = elem<E>::store(o[mt][d][3] * ib);
            *(E2<E> *)(os + ra[mt] * LD + 8 * d + 2 * tq) = pa2;
            *(E2<E> *)(os + rb[mt] * LD + 8 * d + 2 * tq) = pb2;
        }
    }
    __syncwarp();
    for (int i = lane; i < MT * 16 * (HD / 2); i += 32) {
        const int r = warp * MT * 16 + i / (HD / 2), c = 2 * (i % (HD / 2));
        if (r < nrows) *(E2<E> *)(ctx + (tok0 + r) * ldc + h * HD + c) = *(const E2<E> *)(os + r * LD + c);
    }
}

template <typename E, int HD> static int fa2_launch(const lr_gpu_attention_args *a, cudaStream_t s) {
    typedef fa_layout<HD, FA_MT> Ly;
    const lr_gpu_attn_meta *m = &a->meta;
    int64_t qtiles = (m->max_seq_len + Ly::BQ - 1) / Ly::BQ;
    if (qtiles == 0 || m->num_seqs == 0) return LR_OK;
    if (m->num_seqs * qtiles > INT32_MAX / a->nh) return lr_gpu_attention_tc(a, s);
    size_t smem = Ly::bytes;
    CUDA_CHECK(cudaFuncSetAttribute(attention_fa2_kernel<E, HD, FA_MT>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    unsigned int grid = (unsigned int)(a->nh * m->num_seqs * qtiles);
    attention_fa2_kernel<E, HD, FA_MT><<<grid, FA_WARPS * 32, smem, s>>>(
        (E *)a->ctx, a->ldc, (const E *)a->q, a->ldq, (const E *)a->k_cache, (const E *)a->v_cache, *m, a->nh,
        a->nkv, a->scale, qtiles);
    LAUNCH_CHECK();
    return LR_OK;
}

template <typename E> static int attention_fa2(const lr_gpu_attention_args *a, cudaStream_t s) {
    if (fa_prefill_takes(a)) return a->hd == 64 ? fa2_launch<E, 64>(a, s) : fa2_launch<E, 128>(a, s);
    return lr_gpu_attention_tc(a, s);
}

/* mma has no float32 operands: F32 takes tc's paths. */
template <> int attention_fa2<float>(const lr_gpu_attention_args *a, cudaStream_t s) {
    return lr_gpu_attention_tc(a, s);
}

ATTN_LAUNCHER(lr_gpu_attention_fa2, attention_fa2)
