/* attention.cuh: what the attention variants share (private to gpu/attention*.cu): the
 * device helpers (warp reductions, the paged cache's key offset, a tile's key count), the
 * head_dim ladder, the launchers (so that one variant can hand a call it has no kernel
 * for to another: fa2 -> tc -> flash) and the workspace.
 *
 *   attention.cu         lr_gpu_attention (argument checks), the workspace
 *   attention_simple.cu  "simple": one warp per (token, head), one key at a time
 *   attention_flash.cu   "flash": 16 query rows per block, K/V tiles in shared memory
 *   attention_tc.cu      "tc": split-key decode, wmma tensor-core prefill, else flash
 *   attention_fa2.cu     "fa2": FlashAttention-2 on mma.sync, else tc
 *   attention_fa3.cu     "fa3": prefill on Hopper's warpgroup MMA (sm_90a), else fa2;
 *                        "fa3p": fa3's prefill with the softmax under the next P V;
 *                        "fa3w": fa3's prefill warp-specialised (a producer warpgroup);
 *                        "fa3wp": fa3p's warpgroups fed by fa3w's producer;
 *                        "fa3wt": fa3w with its producer's K/V tiles copied by TMA
 *   attention_fd.cu      "fd" (default): fa3's prefill; decode split over keys, a pair of
 *                        threads a key
 *   attention_fdt.cu     "fdt": fa3's prefill; decode split over keys on mma.sync, a warp
 *                        16 keys at a time through a cp.async ring of its own;
 *                        "fdtc": fdt's bits, its chunks merged inside a thread-block
 *                        cluster through distributed shared memory (no merge kernel)
 *
 * Threads of a warp split the head dimension: lane l owns dimensions l, l + 32, ... (or
 * l DPL .. l DPL + DPL - 1 in tc's decode); DPL (dimensions per lane, hd <= 32 DPL) is a
 * template parameter so those slices live in registers. */
#ifndef LLAMAREF_GPU_ATTENTION_CUH
#define LLAMAREF_GPU_ATTENTION_CUH

#include "common.cuh"
#include "tensorcore.cuh"

/* Every attention launcher receives an lr_gpu_attention_args (llamaref_kernels.h). */

#define ATTN_MAX_HD 256 /* 32 lanes x DPL 8 */

/* F<E, DPL>(a, s) with the fewest dimensions per lane (1, 2, 4 or 8) that cover a->hd
 * (at most ATTN_MAX_HD: the entry point checks). */
#define ATTN_DPL_LADDER(F, E, a, s)                                                                          \
    ((a)->hd <= 32    ? F<E, 1>(a, s)                                                                        \
     : (a)->hd <= 64  ? F<E, 2>(a, s)                                                                        \
     : (a)->hd <= 128 ? F<E, 4>(a, s)                                                                        \
                      : F<E, 8>(a, s))

/* Defines the registry's launcher NAME of a variant whose host side is F<E>, E the element
 * type of a->dt. */
#define ATTN_LAUNCHER(NAME, F)                                                                               \
    int NAME(const void *args, cudaStream_t s) {                                                             \
        const lr_gpu_attention_args *a = (const lr_gpu_attention_args *)args;                                              \
        return LR_DISPATCH_DTYPE(a->dt, F, a, s);                                                            \
    }

/* The variants' launchers (args: an lr_gpu_attention_args; the registry names them). A variant
 * without a kernel for a call passes it on through these with the same args, so the
 * dtype dispatch picks the same element type again. */
int lr_gpu_attention_simple(const void *args, cudaStream_t s);
int lr_gpu_attention_flash(const void *args, cudaStream_t s);
int lr_gpu_attention_tc(const void *args, cudaStream_t s);
int lr_gpu_attention_fa2(const void *args, cudaStream_t s);
int lr_gpu_attention_fa3(const void *args, cudaStream_t s);
int lr_gpu_attention_fa3p(const void *args, cudaStream_t s);
int lr_gpu_attention_fa3w(const void *args, cudaStream_t s);
int lr_gpu_attention_fa3wp(const void *args, cudaStream_t s);
int lr_gpu_attention_fa3wt(const void *args, cudaStream_t s);
int lr_gpu_attention_fa3wts(const void *args, cudaStream_t s);
/* The default's prefill: fa3wt or fa3 (the same bits) by how many blocks the call makes
 * against the card's SMs (gpu/attention_fa3.cu). */
int lr_gpu_attention_fa3_prefill(const void *args, cudaStream_t s);
int lr_gpu_attention_fd(const void *args, cudaStream_t s);
int lr_gpu_attention_fdt(const void *args, cudaStream_t s);
int lr_gpu_attention_fdtc(const void *args, cudaStream_t s);

/* *out = at least bytes of ws's device memory on the current device, valid until the
 * next call with ws. Growing it first waits for s, whose earlier kernels may still read
 * the old buffer (a workspace serves one stream). (attention.cu) */
int lr_gpu_attn_ws_reserve(lr_gpu_attn_ws *ws, size_t bytes, cudaStream_t s, void **out);

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Element offset of key j of a sequence in a cache, at kv head g. */
static __device__ __forceinline__ int64_t key_offset(const int32_t *table, int64_t block_size, int64_t j,
                                                     int64_t nkv, int64_t hd, int64_t g) {
    int64_t slot = (int64_t)table[j / block_size] * block_size + j % block_size;
    return (slot * nkv + g) * hd;
}

/* key_offset with 32-bit division, for the tiled kernels' inner loops (fa2, fa3, fd),
 * whose launchers check that keys and the block size fit in an int. */
static __device__ __forceinline__ int64_t key_offset32(const int32_t *table, int bsz, int j, int64_t nkv,
                                                       int64_t hd, int64_t g) {
    int b = j / bsz;
    return (((int64_t)table[b] * bsz + (j - b * bsz)) * nkv + g) * hd;
}

/* A thread's walk through the paged cache, key after key in order, without a division: the
 * next key, its block-table index and slot in its block, and the thread's chunk's offset in
 * a slot (kv head g's row, a column); a kv_stride is a step of n keys split once into whole
 * blocks and slots, taken with one conditional subtraction. fa3's fetch and fdt's loader
 * walk their keys this way: a division a chunk, and 64-bit offsets built from scratch, had
 * been most of their instructions, which every thread issues every tile. Keys and the block
 * size fit in an int (the launchers check it, as for key_offset32). */
struct kv_stride {
    int n, q, r; /* n keys = q blocks + r slots */
};
static __device__ __forceinline__ kv_stride kv_stride_of(int n, int bsz) { return {n, n / bsz, n % bsz}; }
struct kv_walk {
    const int32_t *table; /* the sequence's block table */
    int key, blk, rem, bsz;
    int64_t rows, col; /* elements between consecutive slots (nkv x head_dim); the chunk's in a slot */
};
static __device__ __forceinline__ kv_walk kv_walk_at(const int32_t *table, int bsz, int key, int64_t nkv,
                                                     int64_t hd, int64_t g, int column) {
    kv_walk w;
    w.table = table, w.key = key, w.blk = key / bsz, w.rem = key - w.blk * bsz, w.bsz = bsz;
    w.rows = nkv * hd, w.col = g * hd + column;
    return w;
}
/* The walk's key's element offset in either cache; its block-table entry read (only where
 * the key is one of the sequence's: past it the entry may be -1 or past the table). */
static __device__ __forceinline__ int64_t kv_walk_offset(const kv_walk &w) {
    return ((int64_t)w.table[w.blk] * w.bsz + w.rem) * w.rows + w.col;
}
static __device__ __forceinline__ void kv_walk_step(kv_walk &w, const kv_stride &s) {
    w.key += s.n, w.blk += s.q, w.rem += s.r;
    if (w.rem >= w.bsz) w.rem -= w.bsz, w.blk++;
}

/* Whether a call is one that fa2's and fa3's 16-bit prefill kernels take: a sequence of
 * more than one new token, head_dim 64 or 128, 16-byte copies of K, V and Q rows, 4-byte
 * stores of ctx pairs, a block size that fits in an int (the dtype is the caller's). */
static inline bool fa_prefill_takes(const lr_gpu_attention_args *a) {
    const lr_gpu_attn_meta *m = &a->meta;
    bool aligned = ((uintptr_t)a->k_cache & 15) == 0 && ((uintptr_t)a->v_cache & 15) == 0 &&
                   ((uintptr_t)a->q & 15) == 0 && a->ldq % 8 == 0 && ((uintptr_t)a->ctx & 3) == 0 &&
                   a->ldc % 2 == 0;
    return m->max_seq_len > 1 && (a->hd == 64 || a->hd == 128) && aligned && m->block_size <= INT32_MAX;
}

/* The most keys any of a tile's nrows query rows (tokens tok0 ..) sees: the end of its key
 * loop. Every thread of the block calls it: thread 0 counts into *kmax_s (shared memory)
 * and the barrier publishes it, with whatever the block staged in shared memory before. */
static __device__ __forceinline__ int tile_kmax(const int32_t *token_keys, int64_t tok0, int nrows,
                                                int *kmax_s) {
    if (threadIdx.x == 0) {
        int km = 0;
        for (int r = 0; r < nrows; r++)
            km = max(km, token_keys[tok0 + r]);
        *kmax_s = km;
    }
    __syncthreads();
    return *kmax_s;
}

/* Two elements stored at once (tc's P rows and fa2's output pairs start 4-byte aligned). */
template <typename E> struct __align__(4) E2 { E a, b; };

/* ---- Split decode: what tc's and fd's decode kernels share -------------------------- */

#ifndef SP_MIN_CHUNK
#define SP_MIN_CHUNK 32 /* keys: no chunk smaller (64 gave a batch-1 step 17 chunks of 8 blocks) */
#endif
#ifndef SP_BLOCKS
#define SP_BLOCKS 1056 /* a split decode's blocks to aim for: eight an SM of 132 */
#endif
static_assert(SP_BLOCKS >= 1 && 2 * SP_BLOCKS * 4 <= 48 * 1024, "the merge's factors and sums in 48 KB");
/* SP_FIT (a build-time knob for run 25's trial): 1 aims fd's split kernel at the blocks the
 * card holds at once, rounded down to whole chunks of the batch, so that its grid is one
 * wave (at most SP_BLOCKS chunks, for the merge's shared memory), as fdt's always is; 0
 * aims fd's and tc's at SP_BLOCKS rounded up, which for fd at batch 32 (256 blocks a
 * chunk, 9 resident an SM of 132) is 1280 blocks: a wave and 92 more. */
#ifndef SP_FIT
#define SP_FIT 0
#endif
#define SPLIT_UNHANDLED 1 /* not a status: no instance for the group size; the caller hands the call on */

/* Whether a call is one that fd's and fdt's 16-bit decode kernels take: one new token a
 * sequence, head_dim 64 or 128, 16-byte aligned caches, a block size that fits in an int
 * (the dtype is the caller's). */
static inline bool split16_decode_takes(const lr_gpu_attention_args *a) {
    return a->meta.max_seq_len == 1 && (a->hd == 64 || a->hd == 128) && ((uintptr_t)a->k_cache & 15) == 0 &&
           ((uintptr_t)a->v_cache & 15) == 0 && a->meta.block_size <= INT32_MAX;
}

/* The body of a split decode's dispatch on the group size G = nh / nkv: return F<E, G,
 * HD>(a, s) for G 1, 2, 3, 4 or 8, else SPLIT_UNHANDLED. */
#define SPLIT_GROUP_DISPATCH(F, E, HD, a, s)                                                                 \
    switch ((a)->nh / (a)->nkv) {                                                                            \
    case 1:                                                                                                  \
        return F<E, 1, HD>(a, s);                                                                            \
    case 2:                                                                                                  \
        return F<E, 2, HD>(a, s);                                                                            \
    case 3:                                                                                                  \
        return F<E, 3, HD>(a, s);                                                                            \
    case 4:                                                                                                  \
        return F<E, 4, HD>(a, s);                                                                            \
    case 8:                                                                                                  \
        return F<E, 8, HD>(a, s);                                                                            \
    default:                                                                                                 \
        return SPLIT_UNHANDLED;                                                                              \
    }
/* META_EARLY (a build-time knob for a trial; the bits are the same): 1 has fd's split kernel
 * and the merge kernel read the step's metadata (the keys each sequence sees, its first
 * token, its block table's place) and plan their chunks before their PDL wait, not after:
 * the host uploads the metadata before the step and no kernel writes it, which common.cuh's
 * contract allows before the wait; a mask fault's keys are uploaded synchronously. At batch
 * 1 each of the two kernels is a chain of dependent loads a few microseconds long, and this
 * takes one or two of its links off the path after the kernel before. 0: after the wait. */
#ifndef META_EARLY
#define META_EARLY 0
#endif

/* How a decode batch's keys are split: at most want chunks (want: enough blocks to fill
 * the card), none under min_chunk keys (SP_MIN_CHUNK, or a kernel's own: fdt's 64, a key
 * group for each of its warps), from the most keys any sequence sees. The host
 * sizes the grid and the workspace with it from meta.max_keys, an upper bound (the exact
 * most eagerly; the cache's capacity in a CUDA graph, where the step's lengths are only
 * in device memory); the kernels plan again from the exact most, read from the device,
 * so a graph's replay splits exactly as an eager step of the same lengths does. */
static __host__ __device__ __forceinline__ void split_plan(int64_t want, int64_t maxk, int *nsplit,
                                                           int64_t *chunk, int64_t min_chunk = SP_MIN_CHUNK) {
    int64_t most = (maxk + min_chunk - 1) / min_chunk;
    int n = (int)(want < most ? want : most);
    if (n < 1) n = 1;
    *nsplit = n;
    *chunk = (maxk + n - 1) / n;
}

/* The most keys any sequence of a decode batch sees (each has one token, its first),
 * read by every thread of the block, published through *s (shared); never above
 * meta.max_keys, so the plan never has more chunks than the grid (a mask fault's keys
 * past it are not seen, as before). */
static __device__ __forceinline__ int64_t batch_max_keys(const lr_gpu_attn_meta &m, int *s) {
    if (threadIdx.x == 0) *s = 0;
    __syncthreads();
    int km = 0;
    for (int64_t q = threadIdx.x; q < m.num_seqs; q += blockDim.x)
        km = max(km, m.token_keys[m.seq_start[q]]);
    atomicMax(s, km);
    __syncthreads();
    return *s < m.max_keys ? *s : m.max_keys;
}

/* Grid (num_seqs * nh): merges a (sequence, head)'s chunks into ctx (nothing when the
 * step's split is 1: the split kernel wrote ctx). The chunks' maxima and sums are staged
 * in shared memory first (dynamic, 2 * grid_split floats, all loads in flight at once) and
 * each chunk's factor exp(m_c - M) computed once there; then each output sums its chunks
 * in order c = 0, 1, ... (the same float32 order as a sequential merge), its loads of
 * part_o issued MERGE_UNROLL at a time. The sums are written as fused multiply-adds, the
 * form nvcc contracted them to anyway, so that fdtc's merge inside a cluster
 * (attention_fdt.cu), which must give these bits, is held to the same operations rather
 * than to the compiler making the same choice in two kernels. */
#define MERGE_UNROLL 8
template <typename E>
static __global__ void attention_merge_kernel(E *ctx, int64_t ldc, lr_gpu_attn_meta m, int64_t nh, int64_t hd,
                                              int grid_split, int64_t want, int64_t min_chunk,
                                              const float *part_o, const float *part_ml) {
    extern __shared__ float mf[]; /* [grid_split] factors, then [grid_split] sums */
    __shared__ int maxk_s;
    __shared__ float red[32];
    pdl_trigger(); /* launched with programmatic dependent launch (common.cuh) */
    if (!META_EARLY) pdl_wait();
    int nsplit;
    int64_t chunk;
    split_plan(want, batch_max_keys(m, &maxk_s), &nsplit, &chunk, min_chunk); /* the split kernel's plan */
    if (META_EARLY) pdl_wait(); /* part_o and part_ml: the split kernel's */
    if (nsplit == 1) return;
    int64_t seq = blockIdx.x / nh, h = blockIdx.x % nh;
    int64_t t = m.seq_start[seq];
    int64_t base = (seq * nh + h) * grid_split;
    float *sl = mf + grid_split;
    float mloc = -INFINITY;
    for (int c = threadIdx.x; c < nsplit; c += blockDim.x) {
        float mc = part_ml[2 * (base + c)];
        mf[c] = mc;
        sl[c] = part_ml[2 * (base + c) + 1];
        mloc = fmaxf(mloc, mc);
    }
    for (int o = 16; o > 0; o >>= 1)
        mloc = fmaxf(mloc, __shfl_xor_sync(0xffffffffu, mloc, o));
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = mloc;
    __syncthreads();
    float M = -INFINITY;
    for (int w = 0; w < (int)(blockDim.x + 31) / 32; w++)
        M = fmaxf(M, red[w]);
    if (M == -INFINITY) { /* no chunk saw a key */
        for (int64_t d = threadIdx.x; d < hd; d += blockDim.x)
            st(ctx + t * ldc + h * hd + d, 0.0f);
        return;
    }
    for (int c = threadIdx.x; c < nsplit; c += blockDim.x)
        mf[c] = expf(mf[c] - M);
    __syncthreads();
    float L = 0.0f;
    for (int c = 0; c < nsplit; c++)
        L = __fmaf_rn(mf[c], sl[c], L);
    for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
        const float *po = part_o + base * hd + d;
        float O = 0.0f;
        int c = 0;
        for (; c + MERGE_UNROLL <= nsplit; c += MERGE_UNROLL) {
            float v[MERGE_UNROLL];
#pragma unroll
            for (int u = 0; u < MERGE_UNROLL; u++)
                v[u] = po[(int64_t)(c + u) * hd];
#pragma unroll
            for (int u = 0; u < MERGE_UNROLL; u++)
                O = __fmaf_rn(mf[c + u], v[u], O);
        }
        for (; c < nsplit; c++)
            O = __fmaf_rn(mf[c], po[(int64_t)c * hd], O);
        st(ctx + t * ldc + h * hd + d, L > 0.0f ? O / L : 0.0f);
    }
}

/* The host side of a split decode (tc's split kernel, fd's, fdt's): the plan from
 * meta.max_keys (about eight blocks per SM of 132, or the resident blocks the caller gives,
 * when it knows them (> 0: fdt's, fd's with SP_FIT); no chunk under min_chunk keys (as the
 * kernel's split_plan); max_keys is an upper bound, so
 * nsplit is the most chunks the kernels use), the grid's limits, and the workspace of the
 * chunks' partial outputs (po, pml: NULL with one chunk). split_plan_host is the plan and
 * the limits alone, split_reserve the workspace: fdtc plans as fdt does and needs no
 * workspace where its chunks merge inside a cluster. */
struct split_decode {
    int64_t want, min_chunk; /* the plan's inputs, which the merge plans with again */
    int nsplit;
    float *po, *pml;
};

static inline int split_plan_host(const lr_gpu_attention_args *a, const char *who, int64_t resident,
                                  split_decode *sd, int64_t min_chunk = SP_MIN_CHUNK) {
    const lr_gpu_attn_meta *m = &a->meta;
    int64_t B = m->num_seqs, chunk;
    if (resident > 0) {
        int64_t w = resident / (B * a->nkv);
        sd->want = w < 1 ? 1 : w < SP_BLOCKS ? w : SP_BLOCKS;
    } else {
        sd->want = (SP_BLOCKS + B * a->nkv - 1) / (B * a->nkv);
    }
    sd->min_chunk = min_chunk;
    split_plan(sd->want, m->max_keys, &sd->nsplit, &chunk, min_chunk);
    sd->po = sd->pml = NULL;
    if (B * sd->nsplit > INT32_MAX || a->nkv > 65535 || B * a->nh > INT32_MAX)
        return lr_fail(LR_E_INVAL, "gpu attention (%s): %lld sequences or %lld kv heads exceed the grid", who,
                       (long long)B, (long long)a->nkv);
    return LR_OK;
}

static inline int split_reserve(const lr_gpu_attention_args *a, split_decode *sd, cudaStream_t s) {
    if (sd->nsplit > 1) {
        size_t n = (size_t)(a->meta.num_seqs * a->nh * sd->nsplit);
        void *ws;
        int rc = lr_gpu_attn_ws_reserve(a->ws, n * (size_t)(a->hd + 2) * sizeof(float), s, &ws);
        if (rc) return rc;
        sd->po = (float *)ws;
        sd->pml = sd->po + n * (size_t)a->hd;
    }
    return LR_OK;
}

static inline int split_begin(const lr_gpu_attention_args *a, const char *who, int64_t resident,
                              split_decode *sd, cudaStream_t s, int64_t min_chunk = SP_MIN_CHUNK) {
    int rc = split_plan_host(a, who, resident, sd, min_chunk);
    return rc ? rc : split_reserve(a, sd, s);
}

/* After the split kernel: the merge of the chunks (nothing to do with one). */
template <typename E> static int split_finish(const lr_gpu_attention_args *a, const split_decode *sd,
                                              cudaStream_t s) {
    if (sd->nsplit == 1) return LR_OK;
    size_t smem = 2 * (size_t)sd->nsplit * sizeof(float); /* nsplit <= want <= SP_BLOCKS */
    LR_LAUNCH(attention_merge_kernel<E>, (unsigned int)(a->meta.num_seqs * a->nh), 128, smem, s, (E *)a->ctx,
              a->ldc, a->meta, a->nh, a->hd, sd->nsplit, sd->want, sd->min_chunk, sd->po, sd->pml);
    return LR_OK;
}

#endif
