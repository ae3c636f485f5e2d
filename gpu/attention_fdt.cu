/* attention_fdt.cu: the "fdt" attention variant: fd's decode on tensor cores. fa3 for
 * prefill, as fd (fa2 where fa3 has no kernel); for decode in bf16/f16 at head_dim 64 or 128
 * (16-byte aligned caches), a split-key kernel whose products run on mma.sync.
 *
 * Why: fd takes its products as float32 FMAs, 2 per key, dimension and query head (1024
 * FMA instructions of a warp for a 64-key tile at Llama-3-8B's 4 heads of 128), with three
 * barriers a tile; run 20's Nsight Compute put it at 39% of DRAM and 28% of compute with
 * the loads issued only between those phases. Here the same products are 32 mma.sync a
 * warp for 16 keys, and each warp runs alone: no barrier in the key loop.
 *
 * As fd: one block per (sequence, kv head, key chunk), the chunks merged by
 * attention_merge_kernel (attention.cuh); the chunks are planned for the blocks the card
 * holds at once (one wave where the batch allows), none under 64 keys. Each of the 4 warps
 * of a block takes 16 keys at a time (keys kbeg + 16 w, + 64, ...), its own online softmax
 * over them, with its own ring of FDT_STAGES stages in shared memory (each the 16 keys' K
 * and V rows, cp.async, 16-byte chunks swizzled by row so ldmatrix reads without bank
 * conflicts), so a warp's loads run FDT_STAGES - 1 groups ahead of its arithmetic:
 *  - S = Q K^T: A the group's query heads (rows 0 .. G-1 of 16, the rest zero; Q's own
 *    16-bit values, loaded once), B K^T by ldmatrix, 2 n-tiles of 8 keys, HD/16 k-steps;
 *    scores times the scale, keys past the chunk -inf;
 *  - the softmax of each head over the 16 keys in the 4 lanes that hold its row (a quad's
 *    shuffles): the running max, the factor exp(old - new), p = exp(s - max), float32;
 *  - O^T += V^T P^T: A V^T by ldmatrix.trans (16 dims), B the group's P^T straight from S's
 *    accumulators (rows of S are the heads, so a lane's S values are its B operand), in two
 *    terms: p's 16-bit rounding and the rounding of what it left (hi + lo carries 16 (bf16)
 *    or 22 (f16) significant bits of p, against float32's 24), each an mma with float32
 *    accumulators. P is not rounded to the dtype, as the rounding map (fd's decode,
 *    float32) says; the sum of the weights is taken over the float32 p.
 * At the end the warps' maxima, sums and O are merged in order (w = 0..3, each scaled by
 * exp(m_w - M)) and written as fd's: the chunk's unnormalised output, max and sum, or with
 * one chunk O / L to ctx.
 *
 * "fdtc": fdt's plan and kernel, its bits, without the merge kernel. At batch 1 (Llama-3-8B:
 * 1024 keys, 8 kv heads) fdt's plan is 16 chunks a kv head, and the merge a second launch
 * of about 6 us on the H100 whose inputs make a round trip through global memory. Here the
 * blocks of a (sequence, kv head)'s chunks are one thread-block cluster (sm_90) of cs = min(
 * the host's most chunks, 16) blocks, block r taking chunks r, r + cs, ... (up to FDTC_SETS)
 * and keeping each one's O, max and sum in its shared memory; after the cluster's barrier
 * each block merges a share of the G x HD outputs, reading every chunk's partials through
 * distributed shared memory, with attention_merge_kernel's operations in its order (both
 * written as __fmaf_rn): the same bits as fdt. Where the plan has one chunk or more than the
 * sets hold, or the card cannot hold such a cluster, fdtc runs fdt's kernel and merge. */
#include "attention.cuh"

#include <atomic>
#include <cooperative_groups.h>

#define FDT_WARPS 4
#define FDT_THREADS (32 * FDT_WARPS)
#define FDT_KEYS 16                          /* keys a warp takes at a time */
#define FDT_MIN_CHUNK (FDT_WARPS * FDT_KEYS) /* a key group for each warp */
/* The split's least chunk is FDT_MIN_CHUNK: a batch-1 decode of 1024 keys takes 16 chunks of
 * each kv head (a key group for each warp of 128 blocks), which a second kernel merges.
 * Longer chunks (256 keys, or 1024: one a head and no merge) were slower at 1 and 8
 * sequences (run 31, H100). */
/* Stages of a warp's ring (a build-time knob): 3, two groups of loads in flight while one
 * is used: 8 KB a stage at head_dim 128, 96 KB a block, 2 blocks an SM. 4 was slower at 8
 * and 32 sequences (run 31, H100). */
#ifndef FDT_STAGES
#define FDT_STAGES 3
#endif
static_assert(FDT_STAGES >= 2 && FDT_STAGES <= 8, "fdt: 2 to 8 stages");
/* FDT_KV_EARLY (a build-time knob for a trial; the bits are the same): 1 has fdt issue the
 * first stages' copies of the keys and values cached before this batch (below seq_past:
 * written by earlier forwards, each of which ended with the stream synchronised, and
 * behind the step's metadata upload in the stream) before its PDL wait, with the metadata
 * that locates them (META_EARLY), so that at batch 1 the chunk's DRAM reads overlap the
 * kernels before it; the rows of keys written in this batch (the step's own token, which
 * qkv_proj's epilogue writes) are copied after the wait, by plain loads into the same
 * slots (fdt_fill_new). Off (0): every copy after the wait. Run 37's trace (H100): fdt's
 * own 7.5 us a layer at batch 1, a chain of dependent loads behind qkv_proj. */
#ifndef FDT_KV_EARLY
#define FDT_KV_EARLY 0
#endif
static_assert(!FDT_KV_EARLY || META_EARLY, "fdt: FDT_KV_EARLY reads the step's metadata before the wait (META_EARLY)");
/* fdtc: at most FDTC_SETS chunks a block, each kept in its shared memory (a set: the
 * chunk's O, G x HD floats, after the ring) until the cluster's merge; a plan with more
 * chunks per block of a cluster runs as fdt. Clusters of at most 16 blocks, Hopper's most
 * (above 8 a non-portable size, which a card may refuse). */
#define FDTC_SETS 4
#define FDTC_MAX_CLUSTER 16
/* A warp's stage: the group's K rows, then its V rows. */
template <typename E, int HD> static constexpr int fdt_stage_bytes() {
    return 2 * FDT_KEYS * HD * (int)sizeof(E);
}
/* The ring; after the key loop it holds the warps' O (FDT_WARPS x G x HD floats). */
template <typename E, int G, int HD> static constexpr size_t fdt_smem_bytes() {
    return (size_t)FDT_WARPS * FDT_STAGES * fdt_stage_bytes<E, HD>() >
                   (size_t)FDT_WARPS * G * HD * sizeof(float)
               ? (size_t)FDT_WARPS * FDT_STAGES * fdt_stage_bytes<E, HD>()
               : (size_t)FDT_WARPS * G * HD * sizeof(float);
}

/* A lane's walk through the paged cache for fdt_load (kv_walk, attention.cuh), group after
 * group of its warp. Lane l copies 16-byte chunk c = l % CPR of rows r0 = l / CPR, + RSTEP,
 * ... of each 16-key group (RSTEP = 32 / CPR rows a warp's copy instruction covers), and a
 * warp's groups are 64 keys apart, so a lane's keys step by RSTEP inside a group and by
 * 64 - 16 + RSTEP to the next. */
struct fdt_walk {
    kv_walk kv;
    kv_stride in, next;
};

template <typename E, int HD>
static __device__ __forceinline__ fdt_walk fdt_walk_begin(const int32_t *table, int bsz, int64_t nkv,
                                                          int64_t g, int64_t first, int lane) {
    constexpr int CPR = HD * (int)sizeof(E) / 16, EPC = 16 / (int)sizeof(E), RSTEP = 32 / CPR;
    return {kv_walk_at(table, bsz, (int)first + lane / CPR, nkv, HD, g, (lane % CPR) * EPC),
            kv_stride_of(RSTEP, bsz), kv_stride_of(FDT_MIN_CHUNK - FDT_KEYS + RSTEP, bsz)};
}

/* Issue (uncommitted) the cp.async of the walk's next group of 16 keys into the stage at st,
 * and step the walk to the group after it: each key's K row at row r, its V row at row r of
 * the V half; a key at or past kend is zeros (nothing read). Chunk c of row r lands at
 * c ^ (r & 7). A key from kold to kend is not copied (its slot left for fdt_fill_new):
 * kold is the first key written in this batch where the copies go out before the PDL wait
 * (FDT_KV_EARLY), else INT64_MAX. */
template <typename E, int HD>
static __device__ __forceinline__ void fdt_load(uint32_t st, const E *k_cache, const E *v_cache, fdt_walk &w,
                                                int64_t kend, int lane, int64_t kold = INT64_MAX) {
    constexpr int CPR = HD * (int)sizeof(E) / 16; /* 16-byte chunks a row */
    constexpr int RSTEP = 32 / CPR, PER = FDT_KEYS / RSTEP;
    static_assert(32 % CPR == 0 && FDT_KEYS % RSTEP == 0, "fdt: a row in whole warps' chunks");
    const int c = lane % CPR, r0 = lane / CPR;
#pragma unroll
    for (int k = 0; k < PER; k++) {
        const int r = r0 + k * RSTEP;
        const bool ok = w.kv.key < kend;
        const int64_t off = ok ? kv_walk_offset(w.kv) : 0;
        const uint32_t d = st + (uint32_t)(r * CPR + (c ^ (r & 7))) * 16;
        if (!ok || w.kv.key < kold) {
            cp_async16(d, k_cache + off, ok ? 16 : 0);
            cp_async16(d + FDT_KEYS * CPR * 16, v_cache + off, ok ? 16 : 0);
        }
        kv_walk_step(w.kv, k + 1 < PER ? w.in : w.next);
    }
}

/* After the PDL wait: the rows fdt_load left (keys kold to kend of the walk's next group,
 * written in this batch) into their slots of the stage at smem + st_off, by plain 16-byte
 * loads and shared-memory stores (the warp's __syncwarp before the group is read makes them
 * visible to its lanes); the walk steps as fdt_load's does. */
template <typename E, int HD>
static __device__ __forceinline__ void fdt_fill_new(unsigned char *st, const E *k_cache, const E *v_cache,
                                                    fdt_walk &w, int64_t kend, int64_t kold, int lane) {
    constexpr int CPR = HD * (int)sizeof(E) / 16;
    constexpr int RSTEP = 32 / CPR, PER = FDT_KEYS / RSTEP;
    const int c = lane % CPR, r0 = lane / CPR;
#pragma unroll
    for (int k = 0; k < PER; k++) {
        const int r = r0 + k * RSTEP;
        if (w.kv.key >= kold && w.kv.key < kend) {
            const int64_t off = kv_walk_offset(w.kv);
            uint4 *d = (uint4 *)(st + (size_t)(r * CPR + (c ^ (r & 7))) * 16);
            d[0] = *(const uint4 *)(k_cache + off);
            d[FDT_KEYS * CPR] = *(const uint4 *)(v_cache + off);
        }
        kv_walk_step(w.kv, k + 1 < PER ? w.in : w.next);
    }
}

/* A 16-bit element's bits. */
template <typename E> static __device__ __forceinline__ uint32_t e_bits(E v);
template <> __device__ __forceinline__ uint32_t e_bits<__nv_bfloat16>(__nv_bfloat16 v) {
    return __bfloat16_as_ushort(v);
}
template <> __device__ __forceinline__ uint32_t e_bits<__half>(__half v) { return __half_as_ushort(v); }

/* Chunk c (keys c chunk .. c chunk + chunk - 1, those under nk) of sequence seq, whose
 * token t sees nk keys, at kv head g, as a block of fdt computes it: each warp's groups
 * through its ring, then the warps merged in order. out(gi, d, O, M, L) takes each of the
 * chunk's G x HD outputs (query head g G + gi, dimension d): the unnormalised O, the
 * chunk's max M and sum L (a thread's calls have ascending gi HD + d, those with d == 0
 * among them). smem: the block's dynamic shared memory (the ring, then the warps' O); ms,
 * ls: the warps' maxima and sums. Both are read until out's last call: a block that takes
 * another chunk passes a barrier first. */
template <typename E, int G, int HD, typename Out>
static __device__ __forceinline__ void
fdt_chunk(const E *q, int64_t ldq, const E *k_cache, const E *v_cache, const lr_gpu_attn_meta &m, int64_t nkv,
          float scale, int64_t seq, int64_t t, int64_t nk, int64_t g, int64_t c, int64_t chunk,
          unsigned char *smem, float (&ms)[FDT_WARPS][G], float (&ls)[FDT_WARPS][G], Out out,
          int64_t kold = INT64_MAX) {
    constexpr int KS = HD / 16;                   /* k-steps of Q K^T; 16-dim tiles of P V */
    constexpr int CPR = HD * (int)sizeof(E) / 16; /* 16-byte chunks a row */
    constexpr int STAGE = fdt_stage_bytes<E, HD>();
    typedef mma16816<E> MMA;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int64_t kbeg = c * chunk, kend = kbeg + chunk < nk ? kbeg + chunk : nk;
    const int32_t *table = m.block_tables + seq * m.max_blocks;
    const int bsz = (int)m.block_size;

    /* This warp's groups: keys kbeg + 16 warp + 64 i, i < ngroups; the first stages' loads
     * go out before Q is read. A group is committed even when empty, so that the wait in
     * the loop leaves exactly the later groups in flight. With kold (FDT_KV_EARLY: the
     * caller has not waited yet), the first stages' keys below kold go out before the PDL
     * wait, and those from kold on after it (fdt_fill_new). */
    const int64_t first = kbeg + FDT_KEYS * warp;
    const int ngroups = first < kend ? (int)((kend - first + FDT_MIN_CHUNK - 1) / FDT_MIN_CHUNK) : 0;
    const uint32_t ring = smem_u32(smem) + (uint32_t)(warp * FDT_STAGES * STAGE);
    fdt_walk walk = fdt_walk_begin<E, HD>(table, bsz, nkv, g, first, lane); /* groups loaded in order */
#pragma unroll
    for (int s = 0; s < FDT_STAGES - 1; s++) {
        if (s < ngroups) fdt_load<E, HD>(ring + s * STAGE, k_cache, v_cache, walk, kend, lane, kold);
        cp_async_commit();
    }
    if (kold != INT64_MAX) {
        pdl_wait(); /* q, the rows written in this batch, ctx, part_o: kernels' */
        if (kold < kend) {
            fdt_walk w2 = fdt_walk_begin<E, HD>(table, bsz, nkv, g, first, lane);
            unsigned char *r2 = smem + (size_t)warp * FDT_STAGES * STAGE;
#pragma unroll
            for (int s = 0; s < FDT_STAGES - 1; s++)
                if (s < ngroups) fdt_fill_new<E, HD>(r2 + s * STAGE, k_cache, v_cache, w2, kend, kold, lane);
        }
    }

    /* Q as the A operand of S = Q K^T: lane l holds head l / 4's dims 2 (l % 4), + 1 and
     * + 8, + 9 of each k-step (rows 8..15, a[1] and a[3], are zero). */
    const int hq = lane >> 2, tq = lane & 3;
    uint32_t qa[KS][4];
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
        qa[kk][0] = qa[kk][1] = qa[kk][2] = qa[kk][3] = 0u;
        if (hq < G) {
            const E *qr = q + t * ldq + (g * G + hq) * HD + 16 * kk + 2 * tq;
            qa[kk][0] = e_bits<E>(qr[0]) | e_bits<E>(qr[1]) << 16;
            qa[kk][2] = e_bits<E>(qr[8]) | e_bits<E>(qr[9]) << 16;
        }
    }

    /* O^T, 16 dims by 8 heads a tile: o[mt][0] (dim 16 mt + l / 4, head 2 (l % 4)), [1] the
     * next head, [2] and [3] dim + 8. The running max and sum of head l / 4 (the sum this
     * lane's share of it, the quad's added at the end). */
    float o[KS][4];
#pragma unroll
    for (int mt = 0; mt < KS; mt++)
        o[mt][0] = o[mt][1] = o[mt][2] = o[mt][3] = 0.0f;
    float mrun = -INFINITY, lrun = 0.0f;
    /* ldmatrix's row of this lane: matrices 0..3 are (keys 0-7, chunk 2k), (0-7, 2k+1),
     * (8-15, 2k), (8-15, 2k+1). */
    const int lr = ((lane >> 4) << 3) + (lane & 7), lc = (lane >> 3) & 1;

    for (int i = 0; i < ngroups; i++) {
        const int nx = i + FDT_STAGES - 1;
        if (nx < ngroups)
            fdt_load<E, HD>(ring + (nx % FDT_STAGES) * STAGE, k_cache, v_cache, walk, kend, lane);
        cp_async_commit();
        cp_async_wait<FDT_STAGES - 1>(); /* group i's own copies */
        __syncwarp();                    /* and the other lanes' */
        const uint32_t kb = ring + (i % FDT_STAGES) * STAGE, vb = kb + FDT_KEYS * CPR * 16;
        const int64_t j0 = first + (int64_t)i * FDT_MIN_CHUNK;

        /* S = Q K^T: s[nt] (head l / 4, keys 8 nt + 2 (l % 4), + 1) in [0], [1] */
        float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
            uint32_t b[4];
            ldsm_x4(b, kb + (uint32_t)(lr * CPR + ((2 * kk + lc) ^ (lr & 7))) * 16);
            MMA::mma(s[0], qa[kk], b[0], b[1]);
            MMA::mma(s[1], qa[kk], b[2], b[3]);
        }
        float tmax = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < 2; nt++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const float v = j0 + 8 * nt + 2 * tq + e < kend ? s[nt][e] * scale : -INFINITY;
                s[nt][e] = v;
                tmax = fmaxf(tmax, v);
            }
        tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
        tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 2));
        /* key j0 < kend is in every quad's row, so mnew is finite; corr is 0 on the first
         * group (max -inf) */
        const float mnew = fmaxf(mrun, tmax), corr = expf(mrun - mnew);
        mrun = mnew;
        lrun *= corr;
        uint32_t ph[2], pl[2]; /* P^T's B operand: p's 16-bit rounding, then its remainder */
#pragma unroll
        for (int nt = 0; nt < 2; nt++) {
            const float p0 = expf(s[nt][0] - mnew), p1 = expf(s[nt][1] - mnew);
            lrun += p0 + p1;
            float r0, r1, d0, d1;
            ph[nt] = MMA::pack(p0, p1, r0, r1);
            pl[nt] = MMA::pack(p0 - r0, p1 - r1, d0, d1);
        }
        /* O^T's columns are heads 2 (l % 4) and + 1: their factors from the quads that
         * hold those rows */
        const float ca = __shfl_sync(0xffffffffu, corr, 8 * tq),
                    cb = __shfl_sync(0xffffffffu, corr, 8 * tq + 4);
#pragma unroll
        for (int mt = 0; mt < KS; mt++) {
            o[mt][0] *= ca, o[mt][1] *= cb, o[mt][2] *= ca, o[mt][3] *= cb;
            uint32_t a[4];
            ldsm_x4_t(a, vb + (uint32_t)(lr * CPR + ((2 * mt + lc) ^ (lr & 7))) * 16);
            MMA::mma(o[mt], a, pl[0], pl[1]);
            MMA::mma(o[mt], a, ph[0], ph[1]);
        }
        __syncwarp(); /* every lane's reads of this stage before the next group's copies refill it */
    }
    lrun += __shfl_xor_sync(0xffffffffu, lrun, 1);
    lrun += __shfl_xor_sync(0xffffffffu, lrun, 2);

    /* The warps' results, merged in order; the ring holds their O. */
    cp_async_wait<0>(); /* the empty groups, before the ring is reused */
    __syncthreads();
    float *os = (float *)smem; /* [FDT_WARPS][G][HD] */
    if (tq == 0 && hq < G) ms[warp][hq] = mrun, ls[warp][hq] = lrun;
#pragma unroll
    for (int mt = 0; mt < KS; mt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int h = 2 * tq + (e & 1), d = 16 * mt + hq + (e >> 1) * 8;
            if (h < G) os[((size_t)warp * G + h) * HD + d] = o[mt][e];
        }
    __syncthreads();
    for (int i = tid; i < G * HD; i += FDT_THREADS) {
        const int gi = i / HD, d = i % HD;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < FDT_WARPS; w++)
            M = fmaxf(M, ms[w][gi]);
        float O = 0.0f, L = 0.0f;
        if (M > -INFINITY) /* some key in the chunk */
#pragma unroll
            for (int w = 0; w < FDT_WARPS; w++) {
                const float f = expf(ms[w][gi] - M); /* 0 for a warp without keys */
                O += f * os[((size_t)w * G + gi) * HD + d];
                L += f * ls[w][gi];
            }
        out(gi, d, O, M, L);
    }
}

/* fdtc's block (attention_fdt_kernel, CL): the one of rank `rank` in the cluster of cs
 * blocks that holds sequence seq's chunks at kv head g (nsplit of chunk keys, the step's
 * plan). Its chunks rank, rank + cs, ... go to sets 0, 1, ... of its shared memory, each
 * set the chunk's O (so, after the ring) with its max and sum (sml). A block without a
 * chunk still takes its share of the merge and both of the cluster's barriers. */
template <typename E, int G, int HD>
static __device__ __forceinline__ void
fdtc_cluster_body(E *ctx, int64_t ldc, const E *q, int64_t ldq, const E *k_cache, const E *v_cache,
                  const lr_gpu_attn_meta &m, int64_t nkv, float scale, int cs, int rank, int64_t seq,
                  int64_t g, int nsplit, int64_t chunk, unsigned char *smem, float (&ms)[FDT_WARPS][G],
                  float (&ls)[FDT_WARPS][G]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    namespace cg = cooperative_groups;
    static_assert((size_t)FDTC_SETS * FDTC_MAX_CLUSTER * G * 2 * sizeof(float) <= fdt_smem_bytes<E, G, HD>(),
                  "fdtc: the merge's copy of every chunk's max and sum fits in the ring");
    __shared__ float sml[FDTC_SETS][G][2];
    float *so = (float *)(smem + fdt_smem_bytes<E, G, HD>()); /* [set][G][HD] */
    const int64_t t = m.seq_start[seq], nk = m.token_keys[t];
    if (META_EARLY) pdl_wait(); /* q, the cache, ctx: kernels' */

    E *out = ctx + t * ldc + g * G * HD; /* (G, HD): the kv head's query heads */
    for (int cc = rank; cc < nsplit; cc += cs) {
        if (cc != rank) __syncthreads(); /* the last chunk's reads of the ring, ms and ls done */
        const int j = cc / cs;
        fdt_chunk<E, G, HD>(q, ldq, k_cache, v_cache, m, nkv, scale, seq, t, nk, g, cc, chunk, smem, ms, ls,
                            [&](int gi, int d, float O, float M, float L) {
                                if (nsplit == 1) {
                                    st(out + gi * HD + d, L > 0.0f ? O / L : 0.0f); /* as fdt's block */
                                } else {
                                    so[(j * G + gi) * HD + d] = O;
                                    if (d == 0) sml[j][gi][0] = M, sml[j][gi][1] = L;
                                }
                            });
    }
    /* One chunk: block 0 wrote ctx. Every block planned alike, so none waits at a barrier. */
    if (nsplit == 1) return;
    cg::cluster_group cluster = cg::this_cluster();
    cluster.sync(); /* every chunk's partials written, and visible to the cluster */

    /* The merge, attention_merge_kernel's operations in its order: block rank takes outputs
     * i = gi HD + d in [lo, hi). The maxima and sums of every chunk of its heads g0 ..
     * g0 + ng - 1 are copied first to its ring (free now: its chunks are done), fm[c][gi -
     * g0], so that each output reads only its chunks' O across the cluster. */
    constexpr int N = G * HD;
    const int per = (N + cs - 1) / cs, lo = min(rank * per, N), hi = min(lo + per, N);
    const int g0 = lo / HD, ng = lo < hi ? (hi - 1) / HD + 1 - g0 : 0;
    float *fm = (float *)smem; /* [nsplit][ng][2] */
    for (int i = threadIdx.x; i < nsplit * ng; i += FDT_THREADS) {
        const int cc = i / ng, gi = g0 + i % ng;
        const float *r = cluster.map_shared_rank(&sml[0][0][0], cc % cs) + ((cc / cs) * G + gi) * 2;
        fm[2 * i] = r[0], fm[2 * i + 1] = r[1];
    }
    __syncthreads();
    for (int i = lo + (int)threadIdx.x; i < hi; i += FDT_THREADS) {
        const int gi = i / HD, d = i % HD;
        const float *ml = fm + 2 * (gi - g0); /* chunk cc's max at ml[2 cc ng], its sum after it */
        float M = -INFINITY;
        for (int cc = 0; cc < nsplit; cc++)
            M = fmaxf(M, ml[2 * cc * ng]);
        float v = 0.0f; /* no chunk saw a key */
        if (M != -INFINITY) {
            float O = 0.0f, L = 0.0f;
#pragma unroll 4
            for (int cc = 0; cc < nsplit; cc++) {
                const float f = expf(ml[2 * cc * ng] - M);
                L = __fmaf_rn(f, ml[2 * cc * ng + 1], L);
                O = __fmaf_rn(f, cluster.map_shared_rank(so, cc % cs)[((cc / cs) * G + gi) * HD + d], O);
            }
            v = L > 0.0f ? O / L : 0.0f;
        }
        st(out + i, v);
    }
    cluster.sync(); /* no block leaves while another reads its shared memory */
#else
    /* no clusters before sm_90: fdtc's launcher runs fdt's kernel and merge (fdtc_cluster) */
    (void)ctx, (void)ldc, (void)q, (void)ldq, (void)k_cache, (void)v_cache, (void)m, (void)nkv, (void)scale;
    (void)cs, (void)rank, (void)seq, (void)g, (void)nsplit, (void)chunk, (void)smem;
    (void)ms, (void)ls;
#endif
}

/* Grid (num_seqs * grid_split, nkv). CL false (fdt), as fd's split kernel: block (seq
 * grid_split + c, g) takes chunk c of the step's plan (none past it), and writes ctx where
 * the plan has one chunk, else the chunk's partials for attention_merge_kernel. CL (fdtc):
 * grid_split is the size of a cluster along x, which holds (seq, g)'s chunks: the block of
 * rank r takes chunks r, r + grid_split, ... (at most FDTC_SETS), each as fdt does, and
 * leaves their partials in its shared memory; then the cluster merges them as
 * attention_merge_kernel does, reading them through distributed shared memory (part_o
 * and part_ml are not used). */
template <typename E, int G, int HD, bool CL>
static __global__ void __launch_bounds__(FDT_THREADS, 2)
    attention_fdt_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq, const E *k_cache, const E *v_cache,
                         lr_gpu_attn_meta m, int64_t nh, int64_t nkv, float scale, int grid_split,
                         int64_t want, float *part_o, float *part_ml) {
    static_assert(G >= 1 && G <= 8, "fdt: up to 8 query heads a kv head (the n of an mma)");
    static_assert(HD == 64 || HD == 128, "fdt: head_dim 64 or 128");
    extern __shared__ __align__(128) unsigned char fdt_smem[];
    __shared__ float ms[FDT_WARPS][G], ls[FDT_WARPS][G];
    __shared__ int maxk_s;
    pdl_trigger(); /* launched with programmatic dependent launch (common.cuh) */
    if (!META_EARLY) pdl_wait();

    int nsplit;
    int64_t chunk;
    split_plan(want, batch_max_keys(m, &maxk_s), &nsplit, &chunk, FDT_MIN_CHUNK);
    const unsigned int bx = blockIdx.x;
    const int64_t g = blockIdx.y;
    const int64_t seq = bx / (unsigned int)grid_split, c = bx % (unsigned int)grid_split;
    if constexpr (!CL) {
        const bool runs = c < nsplit; /* block-uniform, after the last barrier of batch_max_keys */
        const int64_t t = runs ? m.seq_start[seq] : 0, nk = runs ? m.token_keys[t] : 0;
        /* FDT_KV_EARLY: fdt_chunk waits, after its first copies of the keys cached before
         * this batch (those below seq_past) */
        const bool early = FDT_KV_EARLY && runs;
        if (META_EARLY && !early) pdl_wait(); /* q, the cache, part_o: kernels' */
        if (!runs) return;
        fdt_chunk<E, G, HD>(q, ldq, k_cache, v_cache, m, nkv, scale, seq, t, nk, g, c, chunk, fdt_smem, ms,
                            ls, [&](int gi, int d, float O, float M, float L) {
                                const int64_t h = g * G + gi;
                                if (nsplit == 1) {
                                    st(ctx + t * ldc + h * HD + d, L > 0.0f ? O / L : 0.0f);
                                } else {
                                    const int64_t pi = (seq * nh + h) * grid_split + c;
                                    part_o[pi * HD + d] = O;
                                    if (d == 0) part_ml[2 * pi] = M, part_ml[2 * pi + 1] = L;
                                }
                            },
                            early ? (int64_t)m.seq_past[seq] : INT64_MAX);
    } else {
        (void)nh, (void)part_o, (void)part_ml;
        fdtc_cluster_body<E, G, HD>(ctx, ldc, q, ldq, k_cache, v_cache, m, nkv, scale, grid_split, (int)c,
                                    seq, g, nsplit, chunk, fdt_smem, ms, ls);
    }
}

/* Whether a cluster of cs blocks of fdtc's kernel, each with smem bytes of dynamic shared
 * memory, can be resident on the current device: the kernel compiled for sm_90 or later
 * (its cluster code; below, its body is empty), its shared memory limit set (and, above 8
 * blocks, the non-portable cluster sizes allowed), then at least one such cluster active
 * at once. SPLIT_UNHANDLED where not. */
template <typename K> static int fdtc_schedulable(K kernel, int cs, size_t smem) {
    cudaFuncAttributes fa;
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed; /* not stream work: see fdt_run */
    CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
    bool ok =
        cudaFuncGetAttributes(&fa, kernel) == cudaSuccess && fa.ptxVersion >= 90 &&
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) == cudaSuccess &&
        (cs <= 8 ||
         cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) == cudaSuccess);
    int n = 0;
    if (ok) {
        cudaLaunchAttribute at[1];
        at[0].id = cudaLaunchAttributeClusterDimension;
        at[0].val.clusterDim.x = (unsigned int)cs, at[0].val.clusterDim.y = 1, at[0].val.clusterDim.z = 1;
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3((unsigned int)cs), cfg.blockDim = dim3(FDT_THREADS), cfg.dynamicSmemBytes = smem;
        cfg.attrs = at, cfg.numAttrs = 1;
        ok = cudaOccupancyMaxActiveClusters(&n, kernel, &cfg) == cudaSuccess && n >= 1;
    }
    if (!ok) (void)cudaGetLastError();
    CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode)); /* back to the caller's */
    return ok ? LR_OK : SPLIT_UNHANDLED;
}

/* fdtc's launch of fdt's plan sd: the chunks of each (sequence, kv head) in one cluster of
 * cs = min(nsplit, FDTC_MAX_CLUSTER) blocks, at most FDTC_SETS chunks a block (sd->nsplit is
 * the most chunks the kernel's own plan may have: a graph plans from the cache's capacity,
 * and its kernel from the step's keys, so a block may have fewer chunks, or none). No
 * workspace and no merge kernel. SPLIT_UNHANDLED where the plan has one chunk, or more than
 * the sets hold, or the card cannot hold such a cluster (checked once a device and size):
 * the caller then runs fdt's kernel and merge, which give the same bits. */
template <typename E, int G, int HD>
static int fdtc_cluster(const lr_gpu_attention_args *a, const split_decode *sd, cudaStream_t s) {
    const lr_gpu_attn_meta *m = &a->meta;
    const int cs = sd->nsplit < FDTC_MAX_CLUSTER ? sd->nsplit : FDTC_MAX_CLUSTER;
    const int nsets = (sd->nsplit + cs - 1) / cs;
    if (sd->nsplit < 2 || nsets > FDTC_SETS) return SPLIT_UNHANDLED;
    auto kernel = attention_fdt_kernel<E, G, HD, true>;
    constexpr size_t ring = fdt_smem_bytes<E, G, HD>(), set = (size_t)G * HD * sizeof(float);
    static_assert(ring % 16 == 0, "fdtc: the sets start 16-byte aligned");
    /* a bit a device (0..63; others each call) for each cluster size, as fdt_run's */
    static std::atomic<unsigned long long> ready[FDTC_MAX_CLUSTER + 1], refused[FDTC_MAX_CLUSTER + 1];
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    const unsigned long long bit = dev >= 0 && dev < 64 ? 1ull << dev : 0;
    if (refused[cs].load() & bit) return SPLIT_UNHANDLED;
    if (!(ready[cs].load() & bit)) {
        int rc = fdtc_schedulable(kernel, cs, ring + FDTC_SETS * set);
        if (rc == SPLIT_UNHANDLED) refused[cs].fetch_or(bit);
        if (rc) return rc;
        ready[cs].fetch_or(bit);
    }
    cudaLaunchAttribute at[2] = {lr_pdl_attribute()};
    at[1].id = cudaLaunchAttributeClusterDimension;
    at[1].val.clusterDim.x = (unsigned int)cs, at[1].val.clusterDim.y = 1, at[1].val.clusterDim.z = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned int)(m->num_seqs * cs), (unsigned int)a->nkv);
    cfg.blockDim = dim3(FDT_THREADS), cfg.dynamicSmemBytes = ring + (size_t)nsets * set;
    cfg.stream = s, cfg.attrs = at, cfg.numAttrs = 2;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, (E *)a->ctx, a->ldc, (const E *)a->q, a->ldq,
                                  (const E *)a->k_cache, (const E *)a->v_cache, *m, a->nh, a->nkv, a->scale,
                                  cs, sd->want, (float *)NULL, (float *)NULL));
    return LR_OK;
}

/* fdt's host side (CL: fdtc's, which plans exactly as fdt does, then merges in a cluster
 * where fdtc_cluster can). */
template <typename E, int G, int HD, bool CL>
static int fdt_run(const lr_gpu_attention_args *a, cudaStream_t s) {
    const lr_gpu_attn_meta *m = &a->meta;
    if (m->num_seqs == 0 || m->max_keys == 0) return LR_OK;
    auto kernel = attention_fdt_kernel<E, G, HD, false>;
    constexpr size_t smem = fdt_smem_bytes<E, G, HD>();
    /* The kernel's shared memory limit, set once a device (devices 0..63; others each call)
     * and the blocks an SM it then has (the cards of a process are alike); a card that
     * cannot give a block that much shared memory hands the call on (SPLIT_UNHANDLED). The
     * first call may come inside a CUDA graph's capture (a decode step's): the thread's
     * capture mode is relaxed around the calls, which are not stream work. */
    static std::atomic<unsigned long long> ready{0}, refused{0}; /* a bit a device; threads may race */
    static std::atomic<int> per_sm{0};
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    const unsigned long long bit = dev >= 0 && dev < 64 ? 1ull << dev : 0;
    if (refused.load() & bit) return SPLIT_UNHANDLED;
    if (!(ready.load() & bit)) {
        cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
        CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
        cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        int n = 0;
        if (e == cudaSuccess &&
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, FDT_THREADS, smem) != cudaSuccess)
            n = 0, (void)cudaGetLastError();                    /* unknown: the SP_BLOCKS plan */
        CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode)); /* back to the caller's */
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            refused.fetch_or(bit);
            return SPLIT_UNHANDLED;
        }
        per_sm.store(n);
        ready.fetch_or(bit);
    }
    split_decode sd;
    int rc = split_plan_host(a, CL ? "fdtc" : "fdt", (int64_t)per_sm.load() * lr_gpu_sm_count(), &sd,
                             FDT_MIN_CHUNK);
    if (rc) return rc;
    if constexpr (CL) {
        rc = fdtc_cluster<E, G, HD>(a, &sd, s);
        if (rc != SPLIT_UNHANDLED) return rc;
    }
    rc = split_reserve(a, &sd, s);
    if (rc) return rc;
    dim3 grid((unsigned int)(m->num_seqs * sd.nsplit), (unsigned int)a->nkv);
    LR_LAUNCH(kernel, grid, FDT_THREADS, smem, s, (E *)a->ctx, a->ldc, (const E *)a->q, a->ldq,
              (const E *)a->k_cache, (const E *)a->v_cache, *m, a->nh, a->nkv, a->scale, sd.nsplit, sd.want,
              sd.po, sd.pml);
    return split_finish<E>(a, &sd, s);
}

template <typename E, int G, int HD> static int fdt_launch(const lr_gpu_attention_args *a, cudaStream_t s) {
    return fdt_run<E, G, HD, false>(a, s);
}
template <typename E, int G, int HD> static int fdtc_launch(const lr_gpu_attention_args *a, cudaStream_t s) {
    return fdt_run<E, G, HD, true>(a, s);
}

template <typename E, int HD> static int fdt_group(const lr_gpu_attention_args *a, cudaStream_t s) {
    SPLIT_GROUP_DISPATCH(fdt_launch, E, HD, a, s)
}
template <typename E, int HD> static int fdtc_group(const lr_gpu_attention_args *a, cudaStream_t s) {
    SPLIT_GROUP_DISPATCH(fdtc_launch, E, HD, a, s)
}

template <typename E> static int attention_fdt(const lr_gpu_attention_args *a, cudaStream_t s) {
    if (split16_decode_takes(a)) {
        int rc = a->hd == 64 ? fdt_group<E, 64>(a, s) : fdt_group<E, 128>(a, s);
        if (rc != SPLIT_UNHANDLED) return rc;
    }
    /* prefill: fa3wts or fa3, each giving fa2 what it has no kernel for */
    return lr_gpu_attention_fa3_prefill(a, s);
}
template <typename E> static int attention_fdtc(const lr_gpu_attention_args *a, cudaStream_t s) {
    if (split16_decode_takes(a)) {
        int rc = a->hd == 64 ? fdtc_group<E, 64>(a, s) : fdtc_group<E, 128>(a, s);
        if (rc != SPLIT_UNHANDLED) return rc;
    }
    return lr_gpu_attention_fa3_prefill(a, s);
}

/* mma has no float32 operands. */
template <> int attention_fdt<float>(const lr_gpu_attention_args *a, cudaStream_t s) {
    return lr_gpu_attention_fa2(a, s);
}
template <> int attention_fdtc<float>(const lr_gpu_attention_args *a, cudaStream_t s) {
    return lr_gpu_attention_fa2(a, s);
}

ATTN_LAUNCHER(lr_gpu_attention_fdt, attention_fdt)
ATTN_LAUNCHER(lr_gpu_attention_fdtc, attention_fdtc)
