/* attention_tc.cu: the "tc" attention variant: tensor cores for prefill, split keys for
 * decode. Three paths, chosen per call:
 *  - decode (every sequence has one new token): attention_split_kernel. A block takes one
 *    (sequence, kv head, key chunk): its warps read each key and value of the chunk once
 *    for all G query heads of the group (GQA), several keys in flight, online softmax per
 *    head; the chunks (enough of them to fill the card at batch 1) are merged by
 *    attention_merge_kernel. float32 throughout, any dtype.
 *  - prefill in bf16/f16 with head_dim 64 or 128: attention_wmma_kernel, flash attention
 *    on the tensor cores (wmma 16x16x16, float32 accumulation): a block takes 64 query
 *    rows of one (sequence, head), 16 per warp; keys and values in tiles of 64 staged from
 *    the paged cache with 16-byte loads; S = Q K^T in float32, online softmax in float32,
 *    P rounded to the dtype for P V (as FlashAttention does: the one rounded
 *    intermediate, with the row sum taken over the rounded P so the weights still sum to
 *    one), O accumulated in float32 in shared memory.
 *  - anything else (F32, other head sizes, unaligned pointers): flash (attention_flash.cu).
 * Shared pieces: attention.cuh. */
#include "attention.cuh"

#include <mma.h>

/* Decode knobs, overridable for a trial build (make CPPFLAGS=-DSP_UNROLL=8); both change
 * the order in which a chunk's keys are summed, not what is summed. */
#ifndef SP_WARPS
#define SP_WARPS 4
#endif
#ifndef SP_UNROLL
#define SP_UNROLL 4   /* keys in flight per warp */
#endif
template <int N> struct sp_vec;
template <> struct sp_vec<4> { typedef unsigned int T; };
template <> struct sp_vec<8> { typedef uint2 T; };
template <> struct sp_vec<16> { typedef uint4 T; };

/* Grid (num_seqs * grid_split, nkv); the blocks of chunks past the step's own split
 * (split_plan from the device's lengths) return at once. Lane l owns dims l*DPL ..
 * l*DPL + DPL - 1 (those < hd). part_o (num_seqs * nh * grid_split, hd), part_ml
 * (num_seqs * nh * grid_split, 2): the chunk's unnormalised output, max and sum; with a
 * split of 1 the block writes ctx itself. */
template <typename E, int DPL, int G>
static __global__ void __launch_bounds__(SP_WARPS * 32)
    attention_split_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq, const E *k_cache, const E *v_cache,
                           lr_gpu_attn_meta m, int64_t nh, int64_t nkv, int64_t hd, float scale,
                           int grid_split, int64_t want, float *part_o, float *part_ml, bool vec) {
    __shared__ float so[SP_WARPS][G][DPL * 32];
    __shared__ float sm[SP_WARPS][G], sl[SP_WARPS][G];
    __shared__ int maxk_s;
    int nsplit;
    int64_t chunk;
    split_plan(want, batch_max_keys(m, &maxk_s), &nsplit, &chunk);
    int64_t seq = blockIdx.x / grid_split, c = blockIdx.x % grid_split, g = blockIdx.y;
    if (c >= nsplit) return; /* block-uniform, after the last barrier of batch_max_keys */
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t t = m.seq_start[seq];
    int64_t nk = m.token_keys[t];
    int64_t kbeg = c * chunk, kend = kbeg + chunk < nk ? kbeg + chunk : nk;
    const int32_t *table = m.block_tables + seq * m.max_blocks;
    int64_t d0 = (int64_t)lane * DPL;

    float qv[G][DPL], o[G][DPL], mx[G], l[G];
#pragma unroll
    for (int gi = 0; gi < G; gi++) {
        mx[gi] = -INFINITY;
        l[gi] = 0.0f;
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) {
            int64_t d = d0 + dd;
            qv[gi][dd] = d < hd ? ld(q + t * ldq + (g * G + gi) * hd + d) : 0.0f;
            o[gi][dd] = 0.0f;
        }
    }
    constexpr int VB = DPL * (int)sizeof(E);
    typedef typename sp_vec<(VB == 4 || VB == 8 || VB == 16) ? VB : 4>::T VT;
    const int bsz = (int)m.block_size;
    for (int64_t k0 = kbeg + warp * SP_UNROLL; k0 < kend; k0 += SP_WARPS * SP_UNROLL) {
        float kr[SP_UNROLL][DPL], vr[SP_UNROLL][DPL];
#pragma unroll
        for (int u = 0; u < SP_UNROLL; u++) {
            int j = (int)(k0 + u), b = j / bsz; /* keys < 2^31 (checked at the entry) */
            int64_t off = j < kend ? (((int64_t)table[b] * bsz + (j - b * bsz)) * nkv + g) * hd : 0;
            if (vec) { /* one load of DPL elements per lane; every lane's dims are live */
                VT kw = {}, vw = {};
                if (j < kend) {
                    kw = *(const VT *)(k_cache + off + d0);
                    vw = *(const VT *)(v_cache + off + d0);
                }
                const E *ke = (const E *)&kw, *ve = (const E *)&vw;
#pragma unroll
                for (int dd = 0; dd < DPL; dd++) {
                    kr[u][dd] = elem<E>::load(ke[dd]);
                    vr[u][dd] = elem<E>::load(ve[dd]);
                }
            } else {
#pragma unroll
                for (int dd = 0; dd < DPL; dd++) {
                    bool live = j < kend && d0 + dd < hd;
                    kr[u][dd] = live ? ld(k_cache + off + d0 + dd) : 0.0f;
                    vr[u][dd] = live ? ld(v_cache + off + d0 + dd) : 0.0f;
                }
            }
        }
#pragma unroll
        for (int gi = 0; gi < G; gi++) {
            float sc[SP_UNROLL], tmax = -INFINITY;
#pragma unroll
            for (int u = 0; u < SP_UNROLL; u++) {
                float dot = 0.0f;
#pragma unroll
                for (int dd = 0; dd < DPL; dd++)
                    dot += qv[gi][dd] * kr[u][dd];
                sc[u] = k0 + u < kend ? warp_sum(dot) * scale : -INFINITY;
                tmax = fmaxf(tmax, sc[u]);
            }
            /* Key k0 < kend is visible, so mnew is finite. */
            float mnew = fmaxf(mx[gi], tmax), corr = expf(mx[gi] - mnew), psum = 0.0f;
#pragma unroll
            for (int dd = 0; dd < DPL; dd++)
                o[gi][dd] *= corr;
#pragma unroll
            for (int u = 0; u < SP_UNROLL; u++) {
                float p = expf(sc[u] - mnew);
                psum += p;
#pragma unroll
                for (int dd = 0; dd < DPL; dd++)
                    o[gi][dd] += p * vr[u][dd];
            }
            l[gi] = l[gi] * corr + psum;
            mx[gi] = mnew;
        }
    }
#pragma unroll
    for (int gi = 0; gi < G; gi++) {
#pragma unroll
        for (int dd = 0; dd < DPL; dd++)
            so[warp][gi][d0 + dd] = o[gi][dd];
        if (lane == 0) sm[warp][gi] = mx[gi], sl[warp][gi] = l[gi];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < G * hd; i += SP_WARPS * 32) {
        int gi = i / (int)hd;
        int64_t d = i % hd;
        float M = -INFINITY;
        for (int w = 0; w < SP_WARPS; w++)
            M = fmaxf(M, sm[w][gi]);
        float L = 0.0f, O = 0.0f;
        if (M != -INFINITY)
            for (int w = 0; w < SP_WARPS; w++) {
                float f = expf(sm[w][gi] - M);
                L += f * sl[w][gi];
                O += f * so[w][gi][d];
            }
        int64_t h = g * G + gi;
        if (nsplit == 1) {
            st(ctx + t * ldc + h * hd + d, L > 0.0f ? O / L : 0.0f);
        } else {
            int64_t pi = (seq * nh + h) * grid_split + c;
            part_o[pi * hd + d] = O;
            if (d == 0) part_ml[2 * pi] = M, part_ml[2 * pi + 1] = L;
        }
    }
}

template <typename E, int DPL, int G> static int split_launch(const lr_gpu_attention_args *a, cudaStream_t s) {
    const lr_gpu_attn_meta *m = &a->meta;
    if (m->num_seqs == 0 || m->max_keys == 0) return LR_OK;
    split_decode sd;
    int rc = split_begin(a, "tc", 0, &sd, s);
    if (rc) return rc;
    /* Vector loads when each lane's DPL elements are 4, 8 or 16 aligned bytes. */
    int vb = DPL * (int)sizeof(E);
    bool vec = (vb == 4 || vb == 8 || vb == 16) && a->hd == 32 * DPL && ((uintptr_t)a->k_cache % 16) == 0 &&
               ((uintptr_t)a->v_cache % 16) == 0;
    dim3 grid((unsigned int)(m->num_seqs * sd.nsplit), (unsigned int)a->nkv);
    attention_split_kernel<E, DPL, G><<<grid, SP_WARPS * 32, 0, s>>>(
        (E *)a->ctx, a->ldc, (const E *)a->q, a->ldq, (const E *)a->k_cache, (const E *)a->v_cache, *m, a->nh,
        a->nkv, a->hd, a->scale, sd.nsplit, sd.want, sd.po, sd.pml, vec);
    LAUNCH_CHECK();
    return split_finish<E>(a, &sd, s);
}

template <typename E, int DPL> static int split_group(const lr_gpu_attention_args *a, cudaStream_t s) {
    switch (a->nh / a->nkv) {
    case 1: return split_launch<E, DPL, 1>(a, s);
    case 2: return split_launch<E, DPL, 2>(a, s);
    case 4: return split_launch<E, DPL, 4>(a, s);
    case 8: return split_launch<E, DPL, 8>(a, s);
    default: return SPLIT_UNHANDLED;
    }
}

/* ---- the wmma prefill kernel ---- */
#define TC_BQ 64 /* query rows per block, 16 per warp */
#define TC_BK 64 /* keys per tile */
#define TC_WARPS 4

/* Shared memory: K and V tiles, then a region that holds Q until every warp has its
 * fragments, and the scores S (float32) and probabilities P (dtype) after; at the end K
 * and V's room takes each warp's output rows for the final scaling. 60 KiB at hd 128:
 * three blocks per SM. */
template <int HD> struct tc_layout {
    static constexpr int QLD = HD + 8, KLD = HD + 8, SLD = TC_BK + 4, PLD = TC_BK + 8, OLD = HD + 4;
    static constexpr size_t k = 0, v = k + (size_t)TC_BK * KLD * 2, u = v + (size_t)TC_BK * KLD * 2, q = u, s = u,
                            p = s + (size_t)TC_BQ * SLD * 4, o = 0;
    static constexpr size_t qb = (size_t)TC_BQ * QLD * 2, spb = (size_t)TC_BQ * SLD * 4 + (size_t)TC_BQ * PLD * 2;
    static constexpr size_t bytes = u + (qb > spb ? qb : spb);
    static_assert((size_t)TC_BQ * OLD * 4 <= u, "output rows fit where K and V were");
};

/* Grid (nh, num_seqs * qtiles): heads vary fastest and the last (heaviest, causal) query
 * tiles of every sequence come first, so light tiles fill the tail. */
template <typename E, int HD>
static __global__ void __launch_bounds__(TC_WARPS * 32, 3)
    attention_wmma_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq, const E *k_cache, const E *v_cache,
                          lr_gpu_attn_meta m, int64_t nh, int64_t nkv, float scale, int64_t qtiles) {
    using namespace nvcuda;
    typedef tc_layout<HD> Ly;
    typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc_t;
    extern __shared__ __align__(128) unsigned char tc_smem[];
    E *qs = (E *)(tc_smem + Ly::q), *ks = (E *)(tc_smem + Ly::k), *vs = (E *)(tc_smem + Ly::v);
    float *ss = (float *)(tc_smem + Ly::s), *os = (float *)(tc_smem + Ly::o);
    E *ps = (E *)(tc_smem + Ly::p);
    __shared__ int kmax_s;
    __shared__ float corr_s[TC_WARPS][16];

    int64_t tile = blockIdx.y % qtiles, seq = blockIdx.y / qtiles;
    int64_t row0 = (qtiles - 1 - tile) * TC_BQ;
    int64_t h = blockIdx.x, g = h / (nh / nkv);
    int64_t len = m.seq_len[seq];
    if (row0 >= len) return; /* block-uniform, before any barrier */
    int64_t tok0 = m.seq_start[seq] + row0;
    int nrows = (int)(len - row0 < TC_BQ ? len - row0 : TC_BQ);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int32_t *table = m.block_tables + seq * m.max_blocks;

    /* Which row of the 16 each accumulator element of this lane holds: the fragment's
     * layout is the compiler's, so read it off a matrix whose entries are their rows. */
    int rowi[acc_t{}.num_elements];
    {
        float *sw = ss + warp * 16 * Ly::SLD;
        for (int i = lane; i < 256; i += 32)
            sw[(i / 16) * Ly::SLD + i % 16] = (float)(i / 16);
        __syncwarp();
        acc_t probe;
        wmma::load_matrix_sync(probe, sw, Ly::SLD, wmma::mem_row_major);
#pragma unroll
        for (int i = 0; i < probe.num_elements; i++)
            rowi[i] = (int)probe.x[i];
    }
    __syncthreads(); /* the probe's room becomes Q's */

    for (int i = threadIdx.x; i < TC_BQ * HD; i += TC_WARPS * 32) {
        int r = i / HD, d = i % HD;
        qs[r * Ly::QLD + d] = r < nrows ? q[(tok0 + r) * ldq + h * HD + d] : elem<E>::store(0.0f);
    }
    const int kmax = tile_kmax(m.token_keys, tok0, nrows, &kmax_s);

    /* This lane's row (of the warp's 16) and half of the tile's columns. */
    const int rl = lane >> 1, half = lane & 1, r = warp * 16 + rl;
    const int nk = r < nrows ? m.token_keys[tok0 + r] : 0;
    int wk = nk;
#pragma unroll
    for (int o_ = 16; o_ > 0; o_ >>= 1)
        wk = max(wk, __shfl_xor_sync(0xffffffffu, wk, o_));
    float mrow = -INFINITY, lhalf = 0.0f;

    wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major> qf[HD / 16];
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++)
        wmma::load_matrix_sync(qf[kk], qs + warp * 16 * Ly::QLD + kk * 16, Ly::QLD);
    acc_t of[HD / 16];
#pragma unroll
    for (int nb = 0; nb < HD / 16; nb++)
        wmma::fill_fragment(of[nb], 0.0f);

    for (int k0 = 0; k0 < kmax; k0 += TC_BK) {
        /* Stage the tile's keys and values, 16 bytes at a time; zeros past kmax. (The
         * barrier after it also tells every warp that all Q fragments are loaded.) */
        constexpr int CH = HD / 8;
        for (int i = threadIdx.x; i < TC_BK * CH; i += TC_WARPS * 32) {
            int j = i / CH, c = i % CH;
            uint4 kv4 = make_uint4(0, 0, 0, 0), vv4 = make_uint4(0, 0, 0, 0);
            if (k0 + j < kmax) {
                int64_t off = key_offset(table, m.block_size, k0 + j, nkv, HD, g);
                kv4 = *(const uint4 *)(k_cache + off + c * 8);
                vv4 = *(const uint4 *)(v_cache + off + c * 8);
            }
            *(uint4 *)(ks + j * Ly::KLD + c * 8) = kv4;
            *(uint4 *)(vs + j * Ly::KLD + c * 8) = vv4;
        }
        __syncthreads();
        if (k0 < wk) { /* warp-uniform: some row of this warp sees a key of the tile */
            float *srow0 = ss + warp * 16 * Ly::SLD;
#pragma unroll
            for (int n = 0; n < TC_BK / 16; n++) {
                acc_t acc;
                wmma::fill_fragment(acc, 0.0f);
#pragma unroll
                for (int kk = 0; kk < HD / 16; kk++) {
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::col_major> kf;
                    wmma::load_matrix_sync(kf, ks + n * 16 * Ly::KLD + kk * 16, Ly::KLD);
                    wmma::mma_sync(acc, qf[kk], kf, acc);
                }
                wmma::store_matrix_sync(srow0 + n * 16, acc, Ly::SLD, wmma::mem_row_major);
            }
            __syncwarp();
            /* Online softmax over this lane's 32 columns (two passes over S); the pair of
             * lanes shares a row. In base 2: the scores times scale * log2(e), so that each
             * weight is one FMA and one exp2 (mrow is kept in the same units). */
            const float *sr = ss + r * Ly::SLD + half * 32;
            E2<E> *pr2 = (E2<E> *)(ps + r * Ly::PLD + half * 32);
            const int vis = nk - (k0 + half * 32); /* visible columns of this half */
            const float sl2 = scale * 1.4426950408889634f;
            float tmax = -INFINITY;
            if (vis >= 32) {
#pragma unroll 8
                for (int j = 0; j < 32; j++)
                    tmax = fmaxf(tmax, sr[j] * sl2);
            } else {
#pragma unroll 8
                for (int j = 0; j < 32; j++)
                    if (j < vis) tmax = fmaxf(tmax, sr[j] * sl2);
            }
            tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
            float mnew = fmaxf(mrow, tmax);
            float corr = 1.0f, psum = 0.0f;
            if (mnew != -INFINITY) {
                corr = exp2f(mrow - mnew);
#pragma unroll 8
                for (int j = 0; j < 32; j += 2) {
                    E2<E> pe;
                    pe.a = elem<E>::store(j < vis ? exp2f(fmaf(sr[j], sl2, -mnew)) : 0.0f);
                    pe.b = elem<E>::store(j + 1 < vis ? exp2f(fmaf(sr[j + 1], sl2, -mnew)) : 0.0f);
                    pr2[j / 2] = pe;
                    psum += elem<E>::load(pe.a) + elem<E>::load(pe.b);
                }
            } else {
                E2<E> z;
                z.a = z.b = elem<E>::store(0.0f);
#pragma unroll 8
                for (int j = 0; j < 32; j += 2)
                    pr2[j / 2] = z;
            }
            mrow = mnew;
            lhalf = lhalf * corr + psum;
            if (__any_sync(0xffffffffu, corr != 1.0f)) {
                if (half == 0) corr_s[warp][rl] = corr;
                __syncwarp();
#pragma unroll
                for (int nb = 0; nb < HD / 16; nb++)
#pragma unroll
                    for (int i = 0; i < of[nb].num_elements; i++)
                        of[nb].x[i] *= corr_s[warp][rowi[i]];
            }
            __syncwarp();
            wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major> pf[TC_BK / 16];
#pragma unroll
            for (int kk = 0; kk < TC_BK / 16; kk++)
                wmma::load_matrix_sync(pf[kk], ps + warp * 16 * Ly::PLD + kk * 16, Ly::PLD);
#pragma unroll
            for (int nb = 0; nb < HD / 16; nb++)
#pragma unroll
                for (int kk = 0; kk < TC_BK / 16; kk++) {
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::row_major> vf;
                    wmma::load_matrix_sync(vf, vs + kk * 16 * Ly::KLD + nb * 16, Ly::KLD);
                    wmma::mma_sync(of[nb], pf[kk], vf, of[nb]);
                }
        }
        __syncthreads(); /* ks, vs are restaged for the next tile (or hold the output) */
    }
    float l = lhalf + __shfl_xor_sync(0xffffffffu, lhalf, 1);
    float *ow = os + warp * 16 * Ly::OLD;
#pragma unroll
    for (int nb = 0; nb < HD / 16; nb++)
        wmma::store_matrix_sync(ow + nb * 16, of[nb], Ly::OLD, wmma::mem_row_major);
    __syncwarp();
    if (r < nrows) {
        float inv = l > 0.0f ? 1.0f / l : 0.0f;
        const float *orow = ow + rl * Ly::OLD + half * (HD / 2);
        E *out = ctx + (tok0 + r) * ldc + h * HD + half * (HD / 2);
        for (int d = 0; d < HD / 2; d++)
            st(out + d, orow[d] * inv);
    }
}

template <typename E, int HD> static int wmma_launch(const lr_gpu_attention_args *a, cudaStream_t s) {
    const lr_gpu_attn_meta *m = &a->meta;
    int64_t qtiles = (m->max_seq_len + TC_BQ - 1) / TC_BQ;
    if (qtiles == 0 || m->num_seqs == 0) return LR_OK;
    if (m->num_seqs * qtiles > 65535 || a->nh > INT32_MAX) return lr_gpu_attention_flash(a, s);
    size_t smem = tc_layout<HD>::bytes;
    CUDA_CHECK(cudaFuncSetAttribute(attention_wmma_kernel<E, HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)smem));
    dim3 grid((unsigned int)a->nh, (unsigned int)(m->num_seqs * qtiles));
    attention_wmma_kernel<E, HD><<<grid, TC_WARPS * 32, smem, s>>>((E *)a->ctx, a->ldc, (const E *)a->q, a->ldq,
                                                                  (const E *)a->k_cache, (const E *)a->v_cache, *m,
                                                                  a->nh, a->nkv, a->scale, qtiles);
    LAUNCH_CHECK();
    return LR_OK;
}

template <typename E> static int attention_tc(const lr_gpu_attention_args *a, cudaStream_t s) {
    if (a->meta.max_seq_len == 1) {
        int rc = ATTN_DPL_LADDER(split_group, E, a, s);
        if (rc != SPLIT_UNHANDLED) return rc;
    } else if (sizeof(E) == 2 && (a->hd == 64 || a->hd == 128) && ((uintptr_t)a->k_cache & 15) == 0 &&
               ((uintptr_t)a->v_cache & 15) == 0) {
        return a->hd == 64 ? wmma_launch<E, 64>(a, s) : wmma_launch<E, 128>(a, s);
    }
    return lr_gpu_attention_flash(a, s);
}

/* wmma has no float32 operands (only tf32): F32 goes to flash. */
template <> int attention_tc<float>(const lr_gpu_attention_args *a, cudaStream_t s) {
    if (a->meta.max_seq_len == 1) {
        int rc = ATTN_DPL_LADDER(split_group, float, a, s);
        if (rc != SPLIT_UNHANDLED) return rc;
    }
    return lr_gpu_attention_flash(a, s);
}

ATTN_LAUNCHER(lr_gpu_attention_tc, attention_tc)
