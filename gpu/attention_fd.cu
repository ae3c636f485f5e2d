/* attention_fd.cu: the "fd" attention variant (flash-decoding's shape): fa2 for prefill;
 * for decode in bf16/f16 at head_dim 64 or 128 (16-byte aligned caches), a split-key kernel
 * shaped for bandwidth, where tc's gives each key's dot product to the 32 lanes of a warp
 * (5 shuffles per key and query head) and holds few keys in flight.
 *
 * As tc's: one block per (sequence, kv head, key chunk), the chunks planned by split_plan
 * and merged by attention_merge_kernel (attention.cuh), float32 throughout (P is not
 * rounded), the G query heads of the kv head together. Here a block of 128 threads takes
 * its chunk in tiles of 64 keys, through a two-stage pipeline: the tile's K and V rows go
 * to shared memory by cp.async while the block works on the tile before, in three phases:
 *  1. scores: thread i takes key i % 64 of the tile, half i / 64 of its dimensions (K read
 *     from shared memory in 16-byte pieces, swizzled so that 8 keys' pieces fall in 8
 *     banks), against the G query rows (float32, in shared memory, read as broadcasts),
 *     summed over its dimensions in order; a key's score is half 0's sum plus half 1's,
 *     times the scale;
 *  2. softmax: warp w takes query heads w, w + 4, ...: the tile's max (a warp max over the
 *     tile's scores), the running max and sum rescaled as the max grows, the weights
 *     p = exp(s - max) in place of the scores;
 *  3. P V: warp w takes keys w, w + 4, ... of the tile, lane l dims l*DPL .. + DPL - 1,
 *     o[head][dim] += p * v from shared memory, its running o scaled by the heads'
 *     correction first.
 * Then the four warps' o are summed in order (w = 0..3) and written as tc's are: the
 * chunk's unnormalised output, max and sum, or with one chunk o / sum to ctx. */
#include "attention.cuh"

#define FD_THREADS 128
#define FD_WARPS (FD_THREADS / 32)
#define FD_TILE 64 /* keys per tile: two threads per key when scoring */

/* The dynamic shared memory: [stage 0, 1][K, V][FD_TILE keys][HD] elements; after the loop
 * the warps' outputs, [FD_WARPS][G][HD] floats, in its room. */
template <typename E, int HD> struct fd_layout {
    static constexpr size_t tile = (size_t)FD_TILE * HD; /* elements of one tile of K (or V) */
    static constexpr size_t bytes = 4 * tile * sizeof(E);
};

/* Grid (num_seqs * grid_split, nkv), as tc's split kernel. */
template <typename E, int G, int HD>
static __global__ void __launch_bounds__(FD_THREADS)
    attention_fd_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq, const E *k_cache, const E *v_cache,
                        lr_gpu_attn_meta m, int64_t nh, int64_t nkv, float scale, int grid_split, int64_t want,
                        float *part_o, float *part_ml) {
    constexpr int NV = HD * (int)sizeof(E) / 16; /* 16-byte pieces per row */
    constexpr int EPV = 16 / (int)sizeof(E);     /* elements per piece */
    constexpr int DPL = HD / 32;                 /* dims per lane in P V */
    constexpr int RSTEP = FD_THREADS / NV;       /* rows between a thread's copies */
    constexpr int KPT = FD_TILE / RSTEP;         /* rows of K (and of V) a thread copies per tile */
    constexpr size_t TILE = fd_layout<E, HD>::tile;
    static_assert((HD == 64 || HD == 128) && sizeof(E) == 2, "fd: head_dim 64 or 128 at 16 bits");
    static_assert(FD_WARPS * G * HD * sizeof(float) <= fd_layout<E, HD>::bytes, "fd: the outputs' room");
    extern __shared__ __align__(16) unsigned char fd_smem[];
    __shared__ __align__(16) float qs[G][HD];
    __shared__ float sp[2][G][FD_TILE]; /* the halves' partial scores; half 0's row then holds p */
    __shared__ float msh[G], lsh[G], csh[G];
    __shared__ int maxk_s;
    E *kvs = (E *)fd_smem;

    int nsplit;
    int64_t chunk;
    split_plan(want, batch_max_keys(m, &maxk_s), &nsplit, &chunk);
    const int64_t seq = blockIdx.x / grid_split, c = blockIdx.x % grid_split, g = blockIdx.y;
    if (c >= nsplit) return; /* block-uniform, after the last barrier of batch_max_keys */
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int64_t t = m.seq_start[seq], nk = m.token_keys[t];
    /* keys < 2^31 (checked at the entry) */
    const int kbeg = (int)(c * chunk), kend = (int)(kbeg + chunk < nk ? kbeg + chunk : nk);
    const int ntiles = kend > kbeg ? (kend - kbeg + FD_TILE - 1) / FD_TILE : 0;
    const int32_t *table = m.block_tables + seq * m.max_blocks;
    const int bsz = (int)m.block_size;
    const int cv = tid % NV, crow = tid / NV; /* this thread copies piece cv of rows crow + r RSTEP */

    /* The cache blocks of this thread's rows of tile it (read ahead: they are needed only
     * when the tile's copies are issued). */
    int32_t blk[KPT];
    auto rows = [&](int it) {
#pragma unroll
        for (int r = 0; r < KPT; r++) {
            const int j = kbeg + it * FD_TILE + crow + r * RSTEP;
            blk[r] = j < kend ? table[j / bsz] : 0;
        }
    };
    /* Tile it's K and V rows to stage it & 1 (rows past the chunk as zeros), one commit group. */
    auto issue = [&](int it) {
        const uint32_t ks = smem_u32(kvs + (size_t)(it & 1) * 2 * TILE), vs = ks + (uint32_t)(TILE * sizeof(E));
#pragma unroll
        for (int r = 0; r < KPT; r++) {
            const int row = crow + r * RSTEP, j = kbeg + it * FD_TILE + row;
            const uint32_t soff = (uint32_t)((row * HD + (cv ^ (row & 7)) * EPV) * sizeof(E));
            const E *kp = k_cache, *vp = v_cache;
            int bytes = 0;
            if (j < kend) {
                const int64_t off = (((int64_t)blk[r] * bsz + j % bsz) * nkv + g) * HD + cv * EPV;
                kp = k_cache + off, vp = v_cache + off, bytes = 16;
            }
            cp_async16(ks + soff, kp, bytes);
            cp_async16(vs + soff, vp, bytes);
        }
        cp_async_commit();
    };

    if (ntiles > 0) {
        rows(0);
        issue(0);
        if (ntiles > 1) rows(1);
    }
    for (int i = tid; i < G * HD; i += FD_THREADS)
        qs[i / HD][i % HD] = ld(q + t * ldq + (g * G + i / HD) * HD + i % HD);
    if (tid < G) msh[tid] = -INFINITY, lsh[tid] = 0.0f;
    float o[G][DPL];
#pragma unroll
    for (int gi = 0; gi < G; gi++)
#pragma unroll
        for (int dd = 0; dd < DPL; dd++)
            o[gi][dd] = 0.0f;

    for (int it = 0; it < ntiles; it++) {
        const int n = kend - (kbeg + it * FD_TILE) < FD_TILE ? kend - (kbeg + it * FD_TILE) : FD_TILE;
        const E *ks = kvs + (size_t)(it & 1) * 2 * TILE, *vs = ks + TILE;
        cp_async_wait<0>();
        __syncthreads(); /* tile it in shared memory; tile it - 1's P V done with the other stage */
        if (it + 1 < ntiles) {
            issue(it + 1);
            if (it + 2 < ntiles) rows(it + 2);
        }
        /* 1. scores: key kk, half hf of the dimensions (zeros past the chunk: not used) */
        {
            const int kk = tid % FD_TILE, hf = tid / FD_TILE;
            float sc[G];
#pragma unroll
            for (int gi = 0; gi < G; gi++)
                sc[gi] = 0.0f;
#pragma unroll
            for (int i = 0; i < NV / 2; i++) {
                const int v = hf * (NV / 2) + i;
                const uint4 kv = *(const uint4 *)(ks + kk * HD + (v ^ (kk & 7)) * EPV);
                const E *ke = (const E *)&kv;
#pragma unroll
                for (int e = 0; e < EPV; e++) {
                    const float kf = elem<E>::load(ke[e]);
#pragma unroll
                    for (int gi = 0; gi < G; gi++)
                        sc[gi] = fmaf(qs[gi][v * EPV + e], kf, sc[gi]);
                }
            }
#pragma unroll
            for (int gi = 0; gi < G; gi++)
                sp[hf][gi][kk] = sc[gi];
        }
        __syncthreads();
        /* 2. the tile's softmax, per query head (a lane's elements are its own in both passes) */
        for (int gi = warp; gi < G; gi += FD_WARPS) {
            float tmax = -INFINITY;
            for (int i = lane; i < n; i += 32) {
                const float sv = (sp[0][gi][i] + sp[1][gi][i]) * scale;
                sp[0][gi][i] = sv;
                tmax = fmaxf(tmax, sv);
            }
            tmax = warp_max(tmax);
            /* n >= 1 keys, so mnew is finite; corr is 0 on the first tile (max -inf). */
            const float mold = msh[gi], mnew = fmaxf(mold, tmax), corr = expf(mold - mnew);
            float psum = 0.0f;
            for (int i = lane; i < n; i += 32) {
                const float p = expf(sp[0][gi][i] - mnew);
                sp[0][gi][i] = p;
                psum += p;
            }
            psum = warp_sum(psum);
            if (lane == 0) lsh[gi] = lsh[gi] * corr + psum, msh[gi] = mnew, csh[gi] = corr;
        }
        __syncthreads();
        /* 3. P V from shared memory: lane l's DPL dims are one piece's part, at its swizzled place */
#pragma unroll
        for (int gi = 0; gi < G; gi++) {
            const float corr = csh[gi];
#pragma unroll
            for (int dd = 0; dd < DPL; dd++)
                o[gi][dd] *= corr;
        }
        const int pv = lane * DPL / EPV, pe = lane * DPL % EPV;
        for (int jj = warp; jj < n; jj += FD_WARPS) {
            const E *vrow = vs + jj * HD + (pv ^ (jj & 7)) * EPV + pe;
            float vf[DPL];
            if constexpr (DPL == 4) {
                const uint2 u = *(const uint2 *)vrow;
                const E *ve = (const E *)&u;
#pragma unroll
                for (int dd = 0; dd < DPL; dd++)
                    vf[dd] = elem<E>::load(ve[dd]);
            } else {
                const uint32_t u = *(const uint32_t *)vrow;
                const E *ve = (const E *)&u;
#pragma unroll
                for (int dd = 0; dd < DPL; dd++)
                    vf[dd] = elem<E>::load(ve[dd]);
            }
#pragma unroll
            for (int gi = 0; gi < G; gi++) {
                const float p = sp[0][gi][jj];
#pragma unroll
                for (int dd = 0; dd < DPL; dd++)
                    o[gi][dd] = fmaf(p, vf[dd], o[gi][dd]);
            }
        }
    }
    __syncthreads(); /* the last tile's P V is done with the stages: the outputs go there */

    /* The warps' outputs, summed in order. */
    float *os = (float *)fd_smem; /* [FD_WARPS][G][HD] */
#pragma unroll
    for (int gi = 0; gi < G; gi++)
#pragma unroll
        for (int dd = 0; dd < DPL; dd++)
            os[((size_t)warp * G + gi) * HD + lane * DPL + dd] = o[gi][dd];
    __syncthreads();
    for (int i = tid; i < G * HD; i += FD_THREADS) {
        const int gi = i / HD, d = i % HD;
        float O = os[(size_t)gi * HD + d];
#pragma unroll
        for (int w = 1; w < FD_WARPS; w++)
            O += os[((size_t)w * G + gi) * HD + d];
        const float L = lsh[gi];
        const int64_t h = g * G + gi;
        if (nsplit == 1) {
            st(ctx + t * ldc + h * HD + d, L > 0.0f ? O / L : 0.0f);
        } else {
            const int64_t pi = (seq * nh + h) * grid_split + c;
            part_o[pi * HD + d] = O;
            if (d == 0) part_ml[2 * pi] = msh[gi], part_ml[2 * pi + 1] = L;
        }
    }
}

template <typename E, int G, int HD> static int fd_launch(const lr_gpu_attention_args *a, cudaStream_t s) {
    const lr_gpu_attn_meta *m = &a->meta;
    if (m->num_seqs == 0 || m->max_keys == 0) return LR_OK;
    split_decode sd;
    int rc = split_begin(a, "fd", &sd, s);
    if (rc) return rc;
    const size_t smem = fd_layout<E, HD>::bytes;
    CUDA_CHECK(cudaFuncSetAttribute(attention_fd_kernel<E, G, HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)smem));
    dim3 grid((unsigned int)(m->num_seqs * sd.nsplit), (unsigned int)a->nkv);
    attention_fd_kernel<E, G, HD><<<grid, FD_THREADS, smem, s>>>(
        (E *)a->ctx, a->ldc, (const E *)a->q, a->ldq, (const E *)a->k_cache, (const E *)a->v_cache, *m, a->nh,
        a->nkv, a->scale, sd.nsplit, sd.want, sd.po, sd.pml);
    LAUNCH_CHECK();
    return split_finish<E>(a, &sd, s);
}

template <typename E, int HD> static int fd_group(const lr_gpu_attention_args *a, cudaStream_t s) {
    switch (a->nh / a->nkv) {
    case 1: return fd_launch<E, 1, HD>(a, s);
    case 2: return fd_launch<E, 2, HD>(a, s);
    case 3: return fd_launch<E, 3, HD>(a, s);
    case 4: return fd_launch<E, 4, HD>(a, s);
    case 8: return fd_launch<E, 8, HD>(a, s);
    default: return SPLIT_UNHANDLED;
    }
}

template <typename E> static int attention_fd(const lr_gpu_attention_args *a, cudaStream_t s) {
    if (a->meta.max_seq_len == 1 && (a->hd == 64 || a->hd == 128) && ((uintptr_t)a->k_cache & 15) == 0 &&
        ((uintptr_t)a->v_cache & 15) == 0) {
        int rc = a->hd == 64 ? fd_group<E, 64>(a, s) : fd_group<E, 128>(a, s);
        if (rc != SPLIT_UNHANDLED) return rc;
    }
    return lr_gpu_attention_fa2(a, s);
}

/* 16-bit caches only (a float32 row of 128 is 512 bytes: the V tile would not fit). */
template <> int attention_fd<float>(const lr_gpu_attention_args *a, cudaStream_t s) {
    return lr_gpu_attention_fa2(a, s);
}

ATTN_LAUNCHER(lr_gpu_attention_fd, attention_fd)
