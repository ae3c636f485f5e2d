/* attention_fd.cu: the "fd" attention variant (flash-decoding's shape): fa3 for prefill
 * (fa2 where fa3 has no kernel: a card other than compute capability 9.0, F32, ...);
 * for decode in bf16/f16 at head_dim 64 or 128 (16-byte aligned caches), a split-key kernel
 * shaped for bandwidth, where tc's gives each key's dot product to the 32 lanes of a warp
 * (5 shuffles per key and query head) and holds few keys in flight.
 *
 * As tc's: one block per (sequence, kv head, key chunk), the chunks planned by split_plan
 * and merged by attention_merge_kernel (attention.cuh), float32 throughout (P is not
 * rounded), the G query heads of the kv head together. Here a block of 128 threads takes
 * its chunk in tiles of 64 keys (FD_LPK, below), each tile in three phases:
 *  1. scores: the two threads of a pair take key i of the tile, one its even and one its
 *     odd 16-byte vectors of K, all in flight at once, against the G query rows (float32,
 *     in shared memory, read as broadcasts), each summing its vectors in order, then the
 *     pair's two sums added (one shuffle), times the scale; the key's row of V goes to
 *     shared memory by cp.async meanwhile, half by each thread;
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
/* Threads a key when scoring (a build-time knob). 2, the default since run 24: the two
 * threads of a pair take a key's even and odd 16-byte vectors, so a warp's load covers 16
 * whole 32-byte sectors, and add their partial scores (one shuffle a query head): tiles of
 * 64 keys, half the V tile's shared memory and the K registers of 1 (ptxas: 54 registers
 * and 19.5 KiB a block, against 90 and 36 KiB). A batch-32 decode step with CUDA graphs
 * took 7.161 ms against 7.473 (docs/performance.md, run 24). 1: thread i takes key i
 * whole, so one load instruction of a warp touches 32 rows of K 16 bytes each, half of
 * each sector (run 20's ncu: L2 hit rate 48%, DRAM throughput 39% at batch 32); its sums
 * are taken in another order (a key's vectors in order, no pair). */
#ifndef FD_LPK
#define FD_LPK 2
#endif
static_assert(FD_LPK == 1 || FD_LPK == 2, "fd: 1 or 2 threads a key");
#define FD_TILE (FD_THREADS / FD_LPK) /* keys per tile */
/* Two build-time knobs from run 25's trial, neither of which changes a bit of the output:
 * FD_HEAD_MINOR 1 numbers the blocks with the kv head fastest, so that the nkv blocks of a
 * (sequence, chunk) are dispatched together and read the nkv rows of hd elements that
 * make up each key's cache slot (2 KB at Llama-3-8B) at about the same time; 0, the tree's
 * order, dispatches every block of kv head 0 first (the first wave of a batch-32 step reads
 * 256 bytes of every 2 KB). FD_PIPE 1 issues the next tile's K loads and V copies (into a
 * second V buffer) as soon as this tile's scores are taken, so that a block has loads in
 * flight through its softmax and P V phases; 0 issues them at the top of each tile.
 * Run 25's call D (H200, decode with graphs, batch 1 / 32): the tree 4.647 / 6.949 ms,
 * FD_HEAD_MINOR 4.665 / 7.053, with FD_PIPE (FD_MINB 5) 4.552 / 6.842, with SP_FIT 4.665 /
 * 6.916 (docs/performance.md). A third, the last block of a (sequence, kv head) merging
 * the chunks in place of the merge kernel, lost (4.735 / 7.149) and was removed. */
#ifndef FD_HEAD_MINOR
#define FD_HEAD_MINOR 0
#endif
#ifndef FD_PIPE
#define FD_PIPE 0
#endif
static_assert((FD_HEAD_MINOR == 0 || FD_HEAD_MINOR == 1) && (FD_PIPE == 0 || FD_PIPE == 1),
              "fd: knobs are 0 or 1");
static_assert(!(FD_PIPE && FD_LPK == 1), "fd: FD_PIPE's two V tiles of 128 keys would pass 48 KB");
#define FD_VBUFS (FD_PIPE + 1) /* V tiles in shared memory */
/* Blocks an SM that ptxas is asked to leave room for (a knob: 1 lets it take the registers
 * it likes: 54 at bf16, 4 query heads, head_dim 128; 86 with FD_PIPE, 5 blocks an SM). */
#ifndef FD_MINB
#define FD_MINB 1
#endif
#if FD_MINB > 1
#define FD_BOUNDS __launch_bounds__(FD_THREADS, FD_MINB)
#else /* no minimum at all (ptxas allocates otherwise with one) */
#define FD_BOUNDS __launch_bounds__(FD_THREADS)
#endif

/* The bytes of fd's V tiles and of its warps' o; the larger is V's room (the tiles, then
 * the warps' o). */
template <typename E, int HD> static constexpr size_t fd_vbytes() {
    return (size_t)FD_VBUFS * FD_TILE * HD * sizeof(E);
}
template <int G, int HD> static constexpr size_t fd_obytes() {
    return (size_t)FD_WARPS * G * HD * sizeof(float);
}

/* Issue the loads of key j (keys < 2^31: checked at the entry) for this thread, the part-th
 * of its FD_LPK: its vectors of the key's K row into kv, its share of the key's V row to
 * row kt of the V tile vt by cp.async (uncommitted). */
template <typename E, int HD, int NK>
static __device__ __forceinline__ void fd_load(uint4 (&kv)[NK], E *vt, const E *k_cache, const E *v_cache,
                                               const int32_t *table, int bsz, int64_t nkv, int64_t g, int j,
                                               int kt, int part) {
    constexpr int NV = HD * (int)sizeof(E) / 16;
    const int64_t off = key_offset32(table, bsz, j, nkv, HD, g);
    const uint4 *kr = (const uint4 *)(k_cache + off), *vr = (const uint4 *)(v_cache + off);
    const uint32_t vdst = smem_u32(vt + (size_t)kt * HD);
#pragma unroll
    for (int v = part; v < NV; v += FD_LPK)
        cp_async16(vdst + 16 * v, vr + v, 16);
#pragma unroll
    for (int u = 0; u < NK; u++)
        kv[u] = __ldg(kr + part + u * FD_LPK);
}

/* Grid (num_seqs * grid_split, nkv), as tc's split kernel; with FD_HEAD_MINOR (nkv,
 * num_seqs * grid_split) (that in y and z where it passes 65535). */
template <typename E, int G, int HD>
static __global__ void FD_BOUNDS attention_fd_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq,
                                                     const E *k_cache, const E *v_cache, lr_gpu_attn_meta m,
                                                     int64_t nh, int64_t nkv, float scale, int grid_split,
                                                     int64_t want, float *part_o, float *part_ml) {
    constexpr int NV = HD * (int)sizeof(E) / 16; /* 16-byte vectors per row */
    constexpr int EPV = 16 / (int)sizeof(E);     /* elements per vector */
    constexpr int DPL = HD / 32;                 /* dims per lane in P V */
    static_assert(HD % 32 == 0 && DPL * (int)sizeof(E) <= 16, "fd: head_dim 64 or 128 at 16 bits");
    constexpr size_t VBYTES = fd_vbytes<E, HD>(), OBYTES = fd_obytes<G, HD>();
    __shared__ __align__(16) float qs[G][HD];
    /* the V tiles; at the end the warps' o */
    __shared__ __align__(16) unsigned char vraw[VBYTES > OBYTES ? VBYTES : OBYTES];
    __shared__ float ps[G][FD_TILE];
    __shared__ float msh[G], lsh[G], csh[G];
    __shared__ int maxk_s;
    E *vs = (E *)vraw;
    pdl_trigger(); /* launched with programmatic dependent launch (common.cuh) */
    if (!META_EARLY) pdl_wait();

    int nsplit;
    int64_t chunk;
    split_plan(want, batch_max_keys(m, &maxk_s), &nsplit, &chunk);
#if FD_HEAD_MINOR /* grid (nkv, up to 65535, more): the (sequence, chunk) in y and z */
    const unsigned int bx = blockIdx.z * gridDim.y + blockIdx.y;
    const int64_t g = blockIdx.x;
    const bool in_grid = bx < (unsigned int)(m.num_seqs * grid_split);
#else
    const unsigned int bx = blockIdx.x;
    const int64_t g = blockIdx.y;
    const bool in_grid = true;
#endif
    const int64_t seq = bx / (unsigned int)grid_split, c = bx % (unsigned int)grid_split;
    const bool runs = in_grid && c < nsplit; /* block-uniform, after the last barrier of batch_max_keys */
    const int64_t t = runs ? m.seq_start[seq] : 0, nk = runs ? m.token_keys[t] : 0;
    if (META_EARLY) pdl_wait(); /* q, the cache, part_o: kernels' */
    if (!runs) return;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int64_t kbeg = c * chunk, kend = kbeg + chunk < nk ? kbeg + chunk : nk;
    const int32_t *table = m.block_tables + seq * m.max_blocks;
    const int bsz = (int)m.block_size;
    /* A key's FD_LPK threads: kt, and this thread's vectors part, part + FD_LPK, ... */
    const int kt = tid / FD_LPK, part = tid % FD_LPK;
#if FD_PIPE
    uint4 kv[NV / FD_LPK]; /* K vectors of the tile being scored, then of the next */
    if (kt < kend - kbeg)  /* the first tile's loads, before q is staged */
        fd_load<E, HD>(kv, vs, k_cache, v_cache, table, bsz, nkv, g, (int)(kbeg + kt), kt, part);
    cp_async_commit();
#endif

    for (int i = tid; i < G * HD; i += FD_THREADS)
        qs[i / HD][i % HD] = ld(q + t * ldq + (g * G + i / HD) * HD + i % HD);
    if (tid < G) msh[tid] = -INFINITY, lsh[tid] = 0.0f;
    float o[G][DPL];
#pragma unroll
    for (int gi = 0; gi < G; gi++)
#pragma unroll
        for (int dd = 0; dd < DPL; dd++)
            o[gi][dd] = 0.0f;
    __syncthreads();

    int buf = 0; /* the V tile of this tile's keys */
    for (int64_t k0 = kbeg; k0 < kend; k0 += FD_TILE, buf ^= FD_PIPE) {
        const int n = (int)(kend - k0 < FD_TILE ? kend - k0 : FD_TILE);
        const E *vt = vs + (size_t)buf * FD_TILE * HD;
        /* 1. scores, and this key's V row to shared memory */
#if !FD_PIPE
        uint4 kv[NV / FD_LPK];
#endif
        const bool active = kt < n; /* the same for both threads of a key */
        float sc[G];
#pragma unroll
        for (int gi = 0; gi < G; gi++)
            sc[gi] = 0.0f;
        if (active) {
#if !FD_PIPE
            fd_load<E, HD>(kv, vs, k_cache, v_cache, table, bsz, nkv, g, (int)(k0 + kt), kt, part);
            cp_async_commit();
#endif
#pragma unroll
            for (int u = 0; u < NV / FD_LPK; u++) {
                const int v = part + u * FD_LPK;
                const E *ke = (const E *)&kv[u];
#pragma unroll
                for (int e = 0; e < EPV; e++) {
                    const float kf = elem<E>::load(ke[e]);
#pragma unroll
                    for (int gi = 0; gi < G; gi++)
                        sc[gi] = fmaf(qs[gi][v * EPV + e], kf, sc[gi]);
                }
            }
        }
#if FD_PIPE
        /* kv is free: the next tile's loads, its V into the other buffer (last read by the
         * P V before this tile's final barrier); a group committed even when empty, so that
         * the wait below leaves exactly the next tile's in flight */
        if (kt < kend - (k0 + FD_TILE))
            fd_load<E, HD>(kv, vs + (size_t)(buf ^ 1) * FD_TILE * HD, k_cache, v_cache, table, bsz, nkv, g,
                           (int)(k0 + FD_TILE + kt), kt, part);
        cp_async_commit();
#endif
        if (FD_LPK == 2) /* every lane: a pair is active or idle together */
#pragma unroll
            for (int gi = 0; gi < G; gi++)
                sc[gi] += __shfl_xor_sync(0xffffffffu, sc[gi], 1);
        if (active && part == 0)
#pragma unroll
            for (int gi = 0; gi < G; gi++)
                ps[gi][kt] = sc[gi] * scale;
        cp_async_wait<FD_PIPE>(); /* this tile's V (with FD_PIPE the next tile's group may still run) */
        __syncthreads();
        /* 2. the tile's softmax, per query head */
        for (int gi = warp; gi < G; gi += FD_WARPS) {
            float tmax = -INFINITY;
            for (int i = lane; i < n; i += 32)
                tmax = fmaxf(tmax, ps[gi][i]);
            tmax = warp_max(tmax);
            /* n >= 1 keys, so mnew is finite; corr is 0 on the first tile (max -inf). */
            const float mold = msh[gi], mnew = fmaxf(mold, tmax), corr = expf(mold - mnew);
            float psum = 0.0f;
            for (int i = lane; i < n; i += 32) {
                const float p = expf(ps[gi][i] - mnew);
                ps[gi][i] = p;
                psum += p;
            }
            psum = warp_sum(psum);
            __syncwarp();
            if (lane == 0) lsh[gi] = lsh[gi] * corr + psum, msh[gi] = mnew, csh[gi] = corr;
        }
        __syncthreads();
        /* 3. P V from shared memory */
#pragma unroll
        for (int gi = 0; gi < G; gi++) {
            const float corr = csh[gi];
#pragma unroll
            for (int dd = 0; dd < DPL; dd++)
                o[gi][dd] *= corr;
        }
        for (int jj = warp; jj < n; jj += FD_WARPS) {
            const E *vrow = vt + (size_t)jj * HD + lane * DPL;
            float vf[DPL];
#pragma unroll
            for (int dd = 0; dd < DPL; dd++)
                vf[dd] = elem<E>::load(vrow[dd]);
#pragma unroll
            for (int gi = 0; gi < G; gi++) {
                const float p = ps[gi][jj];
#pragma unroll
                for (int dd = 0; dd < DPL; dd++)
                    o[gi][dd] = fmaf(p, vf[dd], o[gi][dd]);
            }
        }
        __syncthreads(); /* before the next tile's scores and V rows overwrite these */
    }
    if (FD_PIPE) cp_async_wait<0>(); /* the last (empty) group, before V's room is reused */

    /* The warps' outputs, summed in order; V's room holds them. */
    float *os = (float *)vraw; /* [FD_WARPS][G][HD] */
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
    auto kernel = attention_fd_kernel<E, G, HD>;
    static int per_sm = -1; /* asked once an instance: the cards of a process are alike */
    if (SP_FIT && per_sm < 0) {
        int n = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, FD_THREADS, 0) != cudaSuccess)
            n = 0, (void)cudaGetLastError(); /* unknown: the SP_BLOCKS plan */
        per_sm = n;
    }
    split_decode sd;
    int rc = split_begin(a, "fd", SP_FIT ? (int64_t)per_sm * lr_gpu_sm_count() : 0, &sd, s);
    if (rc) return rc;
    const int64_t blocks = m->num_seqs * sd.nsplit;
#if FD_HEAD_MINOR /* the kv heads of a (sequence, chunk) numbered together: x fastest */
    const int64_t ny = blocks < 65535 ? blocks : 65535;
    dim3 grid((unsigned int)a->nkv, (unsigned int)ny, (unsigned int)((blocks + ny - 1) / ny));
#else
    dim3 grid((unsigned int)blocks, (unsigned int)a->nkv);
#endif
    LR_LAUNCH(kernel, grid, FD_THREADS, 0, s, (E *)a->ctx, a->ldc, (const E *)a->q, a->ldq,
              (const E *)a->k_cache, (const E *)a->v_cache, *m, a->nh, a->nkv, a->scale, sd.nsplit, sd.want,
              sd.po, sd.pml);
    return split_finish<E>(a, &sd, s);
}

template <typename E, int HD> static int fd_group(const lr_gpu_attention_args *a, cudaStream_t s) {
    SPLIT_GROUP_DISPATCH(fd_launch, E, HD, a, s)
}

template <typename E> static int attention_fd(const lr_gpu_attention_args *a, cudaStream_t s) {
    if (split16_decode_takes(a)) {
        int rc = a->hd == 64 ? fd_group<E, 64>(a, s) : fd_group<E, 128>(a, s);
        if (rc != SPLIT_UNHANDLED) return rc;
    }
    return lr_gpu_attention_fa3(a, s); /* prefill; fa3 hands what it has no kernel for to fa2 */
}

/* 16-bit caches only (a float32 row of 128 is 512 bytes: the V tile would not fit). */
template <> int attention_fd<float>(const lr_gpu_attention_args *a, cudaStream_t s) {
    return lr_gpu_attention_fa2(a, s);
}

ATTN_LAUNCHER(lr_gpu_attention_fd, attention_fd)
