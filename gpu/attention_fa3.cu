/* attention_fa3.cu: the "fa3" attention variant, prefill attention on Hopper's
 * warpgroup MMA (wgmma.mma_async, sm_90a), as FlashAttention-3 computes it; "fa3p", the
 * same arithmetic pipelined inside a warpgroup, "fa3w", the same arithmetic in a
 * warp-specialised block, and "fa3wp", fa3p's pipelined warpgroups in a warp-specialised
 * block (their kernels' comments, below); fa2
 * (attention_fa2.cu) takes everything else: a card other than compute capability 9.0, a
 * build without sm_90a (configure's CUDA_ARCH other than sm_90), F32, other head sizes,
 * one token per sequence, unaligned pointers or odd strides, a grid too large.
 *
 * For prefill in bf16/f16 at head_dim 64 or 128. A block takes FA3_BQ = 128 query rows of
 * one (sequence, head) with two warpgroups of 128 threads, 64 rows each (warp w of a
 * warpgroup: its rows 16w..16w+15, as mma.sync's m16 tiles). Q, and the K and V tiles of
 * FA3_BN keys (double-buffered, cp.async from the paged cache, as fa2 fetches them), sit
 * in shared memory in wgmma's 128-byte-swizzle canonical layout (fa3_sw below). Per tile
 * and warpgroup: S (64 x FA3_BN, float32 registers) = Q K^T by HD/16 wgmma m64nBNk16 with
 * both operands read from shared memory through matrix descriptors; the online softmax in
 * registers exactly as fa2 does it (scores scaled by scale * log2(e), masked per row by
 * the row's token_keys, exp2f, P rounded to the dtype and the row sum taken over the
 * rounded P); then O (64 x HD, float32 registers) += P V by FA3_BN/16 wgmma m64nHDk16, P
 * from registers (the accumulator layout of S is the A-fragment layout, as with
 * mma.sync), V from shared memory as an MN-major (transposed) operand. O is rounded once
 * at the end. The rounding is fa2's (P the one rounded intermediate); only the order of
 * the MMAs' float32 sums differs, so the bits may.
 *
 * wgmma facts used here (PTX ISA, "Asynchronous Warpgroup Level Matrix Multiply-
 * Accumulate"): the accumulator fragment of m64nN for thread t of the warpgroup, warp w =
 * t / 32, gr = (t % 32) / 4, tq = t % 4: d[4j + e] is row 16w + gr + 8 (e / 2), column 8j +
 * 2tq + e % 2; the A register fragment of a k16 step is mma.m16n8k16's on the warp's 16
 * rows. A shared-memory operand is described by a 64-bit descriptor (start address,
 * leading and stride byte offsets, each >> 4; bits 62-63 the swizzle, 1 = 128 bytes). In
 * the 128-byte swizzle a row of 64 16-bit elements is 128 bytes, 8 rows make a 1024-byte
 * atom, and 16-byte chunk c of row r sits at chunk c ^ (r % 8) (the hardware applies the
 * XOR to address bits 4-6 from bits 7-9, so every region is 1024-byte aligned).
 * K-major (Q and K: the reduction dimension, head_dim, contiguous): atoms of 8 rows at
 * the stride byte offset (1024), the leading byte offset unused; a k16 step inside the 64
 * dims of an atom is a start address 32 bytes further, dims 64..127 another region.
 * MN-major (V, with the transpose bit: head_dim contiguous, keys the reduction): 8 keys an
 * atom, the next 8 keys at the stride byte offset (1024), the next 64 dims at the leading
 * byte offset. The accumulators and P's registers are read and written asynchronously
 * between a wgmma and its wait: wgmma.fence before each batch, and an empty asm on every
 * accumulator after the wait so the compiler cannot move their use above it. Shared
 * memory written by cp.async (the generic proxy) is made visible to wgmma (the async
 * proxy) by fence.proxy.async before the block barrier. */
#include "attention.cuh"
#include "llamaref_ops.h" /* LR_ATTN_P_TILE */

#include <cuda.h>         /* CUtensorMap */
#include <cudaTypedefs.h> /* PFN_cuTensorMapEncodeTiled */

#include <limits.h>
#include <string.h>
#include <type_traits>

#include "fa3wts_sched.h" /* FA3WTS_LPT's schedule */

/* Keys per tile: the emulated reference's LR_ATTN_P_TILE, since the tile is where P is
 * rounded (each tile's weights against the running max after it); fa2's FA_BK too. */
#define FA3_BN LR_ATTN_P_TILE
#define FA3_WGS 2 /* warpgroups a block */
/* Blocks an SM that the registers must allow (a build-time knob). 2, the default since run
 * 25 (two blocks of 96 KiB fit in shared memory): ptxas holds a thread to 127 registers at
 * hd 128 (16 bytes spilled at f16), and a block's softmax is covered by the other's MMAs:
 * 166.6 us (206 TFLOP/s) at 1 x 2048, 32/8 heads, hd 128, causal, against 197.2 with 1
 * (159 registers, no spills) and fa2's 217.9, on the H200 (docs/performance.md, run 25). */
#ifndef FA3_MINB
#define FA3_MINB 2
#endif
#define FA3_THREADS (FA3_WGS * 128)
#define FA3_BQ (64 * FA3_WGS) /* query rows a block */
static_assert(FA3_BN == 64, "fa3: S is one wgmma n64 a k-step (P V's n is head_dim: 64 or 128)");
static_assert(FA3_THREADS / 32 <= 32, "kmax_w holds a warp's count each");

/* Shared memory, bytes from a 1024-aligned base: Q (BQ rows) | K0 .. K(NS-1) | V0 ..
 * V(NS-1) (FA3_BN rows each; fa3 and fa3p: BQ = FA3_BQ, NS = 2 stages), every region in the
 * swizzled layout, head_dim in blocks of 64 (a region of R rows holds dims 0-63 of every
 * row, then dims 64-127). The output rows are staged in K0.. after the last tile, rows of
 * HD + 8 (fa2's padded layout). hd 128: 32 + 4 x 16 KiB = 96 KiB a block. */
template <int HD, int BQ = FA3_BQ, int NS = 2> struct fa3_layout {
    static constexpr uint32_t QB = BQ * HD * 2, TB = FA3_BN * HD * 2;
    static constexpr size_t bytes = QB + 2 * NS * (size_t)TB + 1024; /* + the base's alignment */
    static_assert(HD == 64 || HD == 128, "head_dim in one or two 64-wide swizzle atoms");
    static_assert(QB % 1024 == 0 && TB % 1024 == 0, "regions 1024-byte aligned");
    static_assert(BQ * (HD + 8) * 2 <= 2 * NS * TB, "the output rows are staged in the K and V buffers");
    static_assert(bytes <= 227 * 1024, "within sm_90's shared memory per block");
};

/* Byte offset of 16-byte chunk c (elements 8c..8c+7 of head_dim) of row r in a swizzled
 * region of R rows. */
template <int R> static __device__ __forceinline__ uint32_t fa3_sw(int r, int c) {
    return (uint32_t)((c >> 3) * (R * 128) + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FA3_DEVICE_CODE 1
#endif

#ifdef FA3_DEVICE_CODE
/* A shared-memory matrix descriptor with the 128-byte swizzle. */
static __device__ __forceinline__ uint64_t fa3_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((addr >> 4) & 0x3FFF) | ((uint64_t)((lbo >> 4) & 0x3FFF) << 16) |
           ((uint64_t)((sbo >> 4) & 0x3FFF) << 32) | (1ull << 62);
}

static __device__ __forceinline__ void wg_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
static __device__ __forceinline__ void wg_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
/* Until at most N of this thread's committed groups are pending (the older done). */
template <int N> static __device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
static __device__ __forceinline__ void fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
/* The compiler may not move a use of r across this point (see the file comment). */
template <int N> static __device__ __forceinline__ void reg_fence(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++)
        asm volatile("" : "+f"(r[i])::"memory");
}
/* The same for an A operand in registers: a wgmma reads it until its wait, so it stays
 * live (its registers not reused for other values) up to here. */
template <int N> static __device__ __forceinline__ void reg_fence(uint32_t (&r)[N][4]) {
#pragma unroll
    for (int i = 0; i < N; i++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            asm volatile("" : "+r"(r[i][e])::"memory");
}

#define FA3_D32                                                                                              \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                                \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define FA3_D64                                                                                              \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                                \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "                       \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "                       \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define FA3_O8(d, i)                                                                                         \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]),              \
        "+f"(d[i + 6]), "+f"(d[i + 7])
#define FA3_O32(d) FA3_O8(d, 0), FA3_O8(d, 8), FA3_O8(d, 16), FA3_O8(d, 24)
#define FA3_O64(d) FA3_O32(d), FA3_O8(d, 32), FA3_O8(d, 40), FA3_O8(d, 48), FA3_O8(d, 56)

/* wg_mma<E, N>::ss (N 64: S): d (64 x N) = (acc ? d : 0) + A B, A (64 x 16) and B (16 x N)
 * both K-major in shared memory (descriptors a, b). ::rs (N head_dim, 64 or 128: P V):
 * d += A B, A from registers (the mma.m16n8k16 fragment of each warp's 16 rows), B
 * MN-major in shared memory. */
template <typename E, int N> struct wg_mma;
#define FA3_WG_MMA(ET, TY)                                                                                   \
    template <> struct wg_mma<ET, 64> {                                                                      \
        static __device__ __forceinline__ void ss(float (&d)[32], uint64_t a, uint64_t b, int acc) {         \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                        \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " " FA3_D32                 \
                         ", %32, %33, p, 1, 1, 0, 0;\n}\n"                                                   \
                         : FA3_O32(d)                                                                        \
                         : "l"(a), "l"(b), "r"(acc));                                                        \
        }                                                                                                    \
        static __device__ __forceinline__ void rs(float (&d)[32], const uint32_t (&a)[4], uint64_t b) {      \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                        \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " " FA3_D32                 \
                         ", {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"                                     \
                         : FA3_O32(d)                                                                        \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));                      \
        }                                                                                                    \
    };                                                                                                       \
    template <> struct wg_mma<ET, 128> {                                                                     \
        static __device__ __forceinline__ void rs(float (&d)[64], const uint32_t (&a)[4], uint64_t b) {      \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                        \
                         "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " " FA3_D64                \
                         ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"                                     \
                         : FA3_O64(d)                                                                        \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));                      \
        }                                                                                                    \
    };
FA3_WG_MMA(__nv_bfloat16, "bf16")
FA3_WG_MMA(__half, "f16")
#endif /* FA3_DEVICE_CODE */

/* A thread's walk through the paged cache for fa3_fetch (kv_walk, attention.cuh), tile after
 * tile. Consecutive threads take consecutive 16-byte chunks of a key row, so a thread's
 * chunks are one column c of keys STEP apart (STEP = FA3_THREADS / (HD / 8): 16 at head_dim
 * 128, 32 at 64), FA3_BN / STEP of them a tile, and its keys run j0, j0 + STEP, ... through
 * the tiles in order. */
struct fa3_walk {
    kv_walk kv;
    kv_stride step;
    uint32_t place; /* the first chunk's byte offset in a swizzled tile buffer */
};

template <int HD, int NT = FA3_THREADS> /* NT threads fetch; this one is tid of them */
static __device__ __forceinline__ fa3_walk fa3_walk_begin(const int32_t *table, int bsz, int64_t nkv,
                                                          int64_t g, unsigned tid) {
    constexpr int CH = HD / 8, STEP = NT / CH;
    const int c = tid % CH, j0 = tid / CH;
    return {kv_walk_at(table, bsz, j0, nkv, HD, g, c * 8), kv_stride_of(STEP, bsz), fa3_sw<FA3_BN>(j0, c)};
}

/* Issue the copies of the walk's next key tile (keys t FA3_BN .., tiles taken in order) into
 * the K and V buffers at shared addresses kd and vd, and step the walk past it; FA3_NO_BUF
 * for either skips that buffer (fa3p walks K one tile ahead of V, each with its own walk).
 * Keys at or past kmax (whose block-table entries may be -1) are zero-filled without a
 * read, so that P V never meets stale shared memory (0 * NaN). */
#define FA3_NO_BUF 0xFFFFFFFFu
/* FA3_FETCH_STEP (a build-time knob for one trial, the same bits): 0 builds the fetch as it
 * was before session 22 (a loop over the thread's chunks, each key taken apart with its own
 * division), to time the walk against in the same run. */
#ifndef FA3_FETCH_STEP
#define FA3_FETCH_STEP 1
#endif
template <typename E, int HD, int NT = FA3_THREADS>
static __device__ __forceinline__ void fa3_fetch(uint32_t kd, uint32_t vd, const E *k_cache, const E *v_cache,
                                                 fa3_walk &w, int kmax) {
    constexpr int CH = HD / 8, STEP = NT / CH;
    static_assert(NT % CH == 0 && FA3_BN % STEP == 0, "the threads cover the tile exactly");
#if !FA3_FETCH_STEP
    static_assert(NT == FA3_THREADS, "the old fetch: fa3's and fa3p's threads");
    const int t = w.kv.key / FA3_BN, g = (int)((w.kv.col - (int)(threadIdx.x % CH) * 8) / HD);
#pragma unroll
    for (int i = threadIdx.x; i < FA3_BN * CH; i += FA3_THREADS) {
        const int j = i / CH, c = i % CH, key = t * FA3_BN + j, n = key < kmax ? 16 : 0;
        const int64_t off =
            key < kmax ? key_offset32(w.kv.table, w.kv.bsz, key, w.kv.rows / HD, HD, g) + c * 8 : 0;
        if (kd != FA3_NO_BUF) cp_async16(kd + fa3_sw<FA3_BN>(j, c), k_cache + off, n);
        if (vd != FA3_NO_BUF) cp_async16(vd + fa3_sw<FA3_BN>(j, c), v_cache + off, n);
    }
    w.kv.key += FA3_BN;
#else
#pragma unroll
    for (int k = 0; k < FA3_BN / STEP; k++) {
        const bool ok = w.kv.key < kmax;
        const int64_t off = ok ? kv_walk_offset(w.kv) : 0;
        const uint32_t o =
            w.place + (uint32_t)(k * STEP * 128); /* STEP rows on: a multiple of 8 keeps the swizzle */
        if (kd != FA3_NO_BUF) cp_async16(kd + o, k_cache + off, ok ? 16 : 0);
        if (vd != FA3_NO_BUF) cp_async16(vd + o, v_cache + off, ok ? 16 : 0);
        kv_walk_step(w.kv, w.step);
    }
#endif
}

/* A block of either kernel: 128 query rows of one (sequence, head) (fa2's grid: heads
 * fastest, the heaviest causal query tiles first); warpgroup wg owns rows 64 wg .. + 63,
 * lane l of warp w (4 wg + wq) rows ra = 64 wg + 16 wq + gr and rb = ra + 8. */
struct fa3_block {
    int64_t h, g, tok0;
    const int32_t *table;
    int bsz, nrows, warp, wg, lane, tq, ra, rb;
    int nka, nkb; /* the keys row ra, rb sees (0 past the sequence: every score masked) */
    int wmin;     /* the fewest over the warp's rows */
    int wgmax; /* the most over the warpgroup's (the wgmma's are warpgroup-wide, so its tile skip is too) */
    int kmax;  /* the most over the block's: the end of its key loop */
    uint32_t raw, qs, kbuf,
        vbuf; /* shared memory: as allocated, then Q, K0 K1, V0 V1 from a 1024-byte base */
};

/* The block's rows, and its Q (rows past the sequence zero-filled) issued (uncommitted) to
 * shared memory; false for a block past its sequence (block-uniform, before any barrier).
 * Every thread calls it: kmax_w (shared, NT / 32 entries) gathers the warps' maxima
 * through a barrier. BQ query rows a block, NT threads (a warp past BQ / 16 has no rows),
 * NS stages (fa3_layout). */
template <typename E, int HD, int BQ = FA3_BQ, int NT = FA3_THREADS, int NS = 2>
static __device__ __forceinline__ bool fa3_begin(fa3_block &b, const E *q, int64_t ldq,
                                                 const lr_gpu_attn_meta &m, int64_t nh, int64_t nkv,
                                                 int64_t qtiles, unsigned char *smem, int *kmax_w) {
    typedef fa3_layout<HD, BQ, NS> Ly;
    constexpr int CH = HD / 8;
    const int64_t bid = blockIdx.x, h = bid % nh, rest = bid / nh;
    const int64_t seq = rest % m.num_seqs, tile = rest / m.num_seqs;
    const int64_t row0 = (qtiles - 1 - tile) * BQ, len = m.seq_len[seq];
    if (row0 >= len) return false;
    b.h = h, b.g = h / (nh / nkv), b.tok0 = m.seq_start[seq] + row0;
    b.nrows = (int)(len - row0 < BQ ? len - row0 : BQ);
    b.warp = threadIdx.x >> 5, b.wg = b.warp >> 2, b.lane = threadIdx.x & 31, b.tq = b.lane & 3;
    b.table = m.block_tables + seq * m.max_blocks;
    b.bsz = (int)m.block_size; /* <= INT32_MAX (checked by the launcher) */

    /* The base, rounded up to 1024 bytes (the swizzle is taken from address bits). */
    b.raw = smem_u32(smem);
    const uint32_t base = (b.raw + 1023u) & ~1023u;
    b.qs = base, b.kbuf = base + Ly::QB, b.vbuf = b.kbuf + NS * Ly::TB;

    b.ra = b.warp * 16 + (b.lane >> 2), b.rb = b.ra + 8;
    b.nka = b.ra < b.nrows ? m.token_keys[b.tok0 + b.ra] : 0;
    b.nkb = b.rb < b.nrows ? m.token_keys[b.tok0 + b.rb] : 0;
    int wmax = max(b.nka, b.nkb), wmin = min(b.nka, b.nkb);
#pragma unroll
    for (int o_ = 16; o_ > 0; o_ >>= 1) {
        wmax = max(wmax, __shfl_xor_sync(0xffffffffu, wmax, o_));
        wmin = min(wmin, __shfl_xor_sync(0xffffffffu, wmin, o_));
    }
    b.wmin = wmin;
    if (b.lane == 0) kmax_w[b.warp] = wmax;

    for (int i = threadIdx.x; i < BQ * CH; i += NT) {
        const int r = i / CH, c = i % CH;
        const E *src = r < b.nrows ? q + (b.tok0 + r) * ldq + b.h * HD + c * 8 : q;
        cp_async16(b.qs + fa3_sw<BQ>(r, c), src, r < b.nrows ? 16 : 0);
    }
    __syncthreads(); /* kmax_w */
    b.kmax = 0, b.wgmax = 0;
#pragma unroll
    for (int w = 0; w < NT / 32; w++) {
        b.kmax = max(b.kmax, kmax_w[w]);
        if (w / 4 == b.wg) b.wgmax = max(b.wgmax, kmax_w[w]);
    }
    return true;
}

#ifdef FA3_DEVICE_CODE
/* S (64 x FA3_BN) = Q K^T of the warpgroup's rows, issued (uncommitted): k-step ks is dims
 * 16ks..; within a 64-dim block a start 32 bytes further, the next block a region further
 * (BQ or FA3_BN rows). dq, dk: descriptors of the warpgroup's Q rows and the K buffer. */
template <typename E, int HD, int BQ = FA3_BQ>
static __device__ __forceinline__ void fa3_qk(float (&s)[FA3_BN / 2], uint64_t dq, uint64_t dk) {
#pragma unroll
    for (int ks = 0; ks < HD / 16; ks++) {
        const uint64_t da = dq + (uint64_t)((((ks >> 2) * BQ * 128) + (ks & 3) * 32) >> 4),
                       db = dk + (uint64_t)((((ks >> 2) * FA3_BN * 128) + (ks & 3) * 32) >> 4);
        wg_mma<E, FA3_BN>::ss(s, da, db, ks > 0);
    }
}

/* O += P V, issued (uncommitted): k-step kk is keys 16kk.., two 8-key atoms, 2048 bytes
 * further. dv: the V buffer's descriptor. */
template <typename E, int HD>
static __device__ __forceinline__ void fa3_pv(float (&o)[HD / 2], const uint32_t (&pa)[FA3_BN / 16][4],
                                              uint64_t dv) {
#pragma unroll
    for (int kk = 0; kk < FA3_BN / 16; kk++)
        wg_mma<E, HD>::rs(o, pa[kk], dv + (uint64_t)((kk * 2048) >> 4));
}
#endif

/* 2^x on the special-function unit alone (ex2.approx.ftz): what exp2f gives wherever 2^x is
 * a normal float (x >= -126), and 0 below, where exp2f spends a test and two multiplies on
 * every element to make a subnormal. A weight under 2^-126, beside the running max's weight
 * of 1, is under the rounding of the row's sum and of every O element but one that is
 * itself about as small. FA3_EXP2_FTZ 0 (a build-time knob for one trial) keeps exp2f. */
#ifndef FA3_EXP2_FTZ
#define FA3_EXP2_FTZ 1
#endif
template <typename F>
static __device__ __forceinline__ F fa3_exp2(F x) { /* a template: unused, not a warning */
    static_assert(std::is_same<F, float>::value, "fa3_exp2: float32");
#if FA3_EXP2_FTZ
    F y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
#else
    return exp2f(x);
#endif
}

/* fa2's softmax on the S tile of keys k0 .. (s[4j + 0..1] row ra, s[4j + 2..3] row rb:
 * keys k0 + 8j + 2tq, + 1): scores scaled by sl2 = scale log2(e) and masked per row (none
 * where full: every row of the warp sees the whole tile), the running maxima m and sums l
 * updated, and P rounded straight into the A fragments of P V (tile j is keys 16 (j/2) +
 * 8 (j%2) .. of k-step j / 2: registers a0, a1 (j even) or a2, a3 (j odd)); the row sums
 * are taken over the rounded P. ca, cb: the factors of O's rows. */
template <typename E>
static __device__ __forceinline__ void fa3_softmax(float (&s)[FA3_BN / 2], uint32_t (&pa)[FA3_BN / 16][4],
                                                   const fa3_block &b, int k0, float sl2, float &ma,
                                                   float &mb, float &la, float &lb, float &ca, float &cb) {
    constexpr int NS = FA3_BN / 8;           /* S tiles of 8 keys */
    const bool full = b.wmin - k0 >= FA3_BN; /* warp-uniform */
    float mxa = -INFINITY, mxb = -INFINITY;
#pragma unroll
    for (int j = 0; j < NS; j++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int key = k0 + 8 * j + 2 * b.tq + e;
            float va = s[4 * j + e] * sl2, vb = s[4 * j + 2 + e] * sl2;
            if (!full) {
                va = key < b.nka ? va : -INFINITY;
                vb = key < b.nkb ? vb : -INFINITY;
            }
            s[4 * j + e] = va, s[4 * j + 2 + e] = vb;
            mxa = fmaxf(mxa, va), mxb = fmaxf(mxb, vb);
        }
    mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, 1));
    mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, 2));
    mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, 1));
    mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, 2));
    const float mna = fmaxf(ma, mxa), mnb = fmaxf(mb, mxb);
    ca = mna == -INFINITY ? 1.0f : fa3_exp2(ma - mna), cb = mnb == -INFINITY ? 1.0f : fa3_exp2(mb - mnb);
    const float ba = mna == -INFINITY ? 0.0f : mna, bb = mnb == -INFINITY ? 0.0f : mnb;
    ma = mna, mb = mnb;
    float sa = 0.0f, sb = 0.0f;
#pragma unroll
    for (int j = 0; j < NS; j++) {
        float r0, r1, r2, r3;
        pa[j >> 1][(j & 1) * 2] =
            mma16816<E>::pack(fa3_exp2(s[4 * j] - ba), fa3_exp2(s[4 * j + 1] - ba), r0, r1);
        pa[j >> 1][(j & 1) * 2 + 1] =
            mma16816<E>::pack(fa3_exp2(s[4 * j + 2] - bb), fa3_exp2(s[4 * j + 3] - bb), r2, r3);
        sa += r0 + r1, sb += r2 + r3;
    }
    la = la * ca + sa, lb = lb * cb + sb;
}

/* O's rows times their factors (o[4d + e]: row ra for e < 2, rb else). */
template <int HD> static __device__ __forceinline__ void fa3_rescale(float (&o)[HD / 2], float ca, float cb) {
#pragma unroll
    for (int d = 0; d < HD / 8; d++) {
        o[4 * d] *= ca, o[4 * d + 1] *= ca;
        o[4 * d + 2] *= cb, o[4 * d + 3] *= cb;
    }
}

/* The end of either kernel: O's rows over their sums, rounded once, staged at b.kbuf by the
 * warp for its own rows, then written out whole in pairs (the launcher checked ctx and ldc
 * for 4-byte alignment). The staging: rows of HD + 8, fa2's padded layout, in buffers the
 * caller has freed (the K and V buffers, or fa3wts' Q buffer). o[4d + e]: dims 8d + 2tq +
 * e % 2 of row ra (e < 2) or rb. */
template <typename E, int HD>
static __device__ __forceinline__ void fa3_store(E *ctx, int64_t ldc, const fa3_block &b,
                                                 const float (&o)[HD / 2], float la, float lb,
                                                 unsigned char *smem) {
    constexpr int LD = HD + 8;
    E *const os = (E *)(smem + (b.kbuf - b.raw));
    la += __shfl_xor_sync(0xffffffffu, la, 1);
    la += __shfl_xor_sync(0xffffffffu, la, 2);
    lb += __shfl_xor_sync(0xffffffffu, lb, 1);
    lb += __shfl_xor_sync(0xffffffffu, lb, 2);
    const float ia = la > 0.0f ? 1.0f / la : 0.0f, ib = lb > 0.0f ? 1.0f / lb : 0.0f;
#pragma unroll
    for (int d = 0; d < HD / 8; d++) {
        E2<E> pa2, pb2;
        pa2.a = elem<E>::store(o[4 * d] * ia), pa2.b = elem<E>::store(o[4 * d + 1] * ia);
        pb2.a = elem<E>::store(o[4 * d + 2] * ib), pb2.b = elem<E>::store(o[4 * d + 3] * ib);
        *(E2<E> *)(os + b.ra * LD + 8 * d + 2 * b.tq) = pa2;
        *(E2<E> *)(os + b.rb * LD + 8 * d + 2 * b.tq) = pb2;
    }
    __syncwarp();
    for (int i = b.lane; i < 16 * (HD / 2); i += 32) {
        const int r = b.warp * 16 + i / (HD / 2), c = 2 * (i % (HD / 2));
        if (r >= b.nrows) continue;
        *(E2<E> *)(ctx + (b.tok0 + r) * ldc + b.h * HD + c) = *(const E2<E> *)(os + r * LD + c);
    }
}

#ifdef FA3_DEVICE_CODE
/* FA3_TABLE_SMEM (256 by default; 0 leaves it out; the same addresses, so the same bits):
 * a block whose keys' block-table entries number at most that many copies them to shared
 * memory first, and its fetches read them there; a longer one reads them from global
 * memory as before (the op sweep's "many-blocks" shape takes that path). Run 31's profile
 * of 1 x 2048 put a tenth of the stall samples on the fetch's waits for those entries (a
 * load a key, then the address arithmetic that needs it, in front of each tile's copies).
 * 256 entries (1 KB a block, two blocks still an SM) cover 4096 keys at block size 16.
 * Run 33 (H100): fa3 at 1 x 2048 124.5 -> 119.1 us, 8 x 512 88.7 -> 83.6, the row's
 * logits bit for bit the same. */
#ifndef FA3_TABLE_SMEM
#define FA3_TABLE_SMEM 256
#endif
/* The block table the block's fetches read: table_s (FA3_TABLE_SMEM entries of shared
 * memory), filled by the block's NT threads behind a barrier, where the entries of its keys
 * fit; else the table in global memory. Every thread calls it. */
template <int NT>
static __device__ __forceinline__ const int32_t *fa3_table(const fa3_block &b, int32_t *table_s) {
#if FA3_TABLE_SMEM > 0
    const int nblk = b.kmax > 0 ? (b.kmax - 1) / b.bsz + 1 : 0; /* the entries of keys below kmax */
    if (nblk <= FA3_TABLE_SMEM) {                               /* block-uniform */
        for (int i = threadIdx.x; i < nblk; i += NT)
            table_s[i] = b.table[i];
        __syncthreads();
        return table_s; /* a generic pointer: the walk's loads go to shared memory */
    }
#endif
    (void)table_s;
    return b.table;
}

/* O += P V of a warpgroup's rows and the value tile at vt, issued, committed and waited for. */
template <typename E, int HD>
static __device__ __forceinline__ void fa3_pv_wait(float (&o)[HD / 2], const uint32_t (&pa)[FA3_BN / 16][4],
                                                   uint32_t vt) {
    wg_fence();
    fa3_pv<E, HD>(o, pa, fa3_desc(vt, FA3_BN * 128, 1024));
    wg_commit();
    wg_wait<0>();
    reg_fence(o);
}

/* S = Q K^T of a warpgroup's rows and the key tile at kt, from zero, issued and committed. */
template <typename E, int HD, int BQ>
static __device__ __forceinline__ void fa3_s_issue(float (&s)[FA3_BN / 2], uint64_t dq, uint32_t kt) {
#pragma unroll
    for (int i = 0; i < FA3_BN / 2; i++)
        s[i] = 0.0f;
    wg_fence();
    fa3_qk<E, HD, BQ>(s, dq, fa3_desc(kt, 16, 1024));
    wg_commit();
}

/* A warpgroup's key tile k0.. (K and V at shared addresses kt, vt, landed and fenced): S =
 * Q K^T, its wait, the softmax, O's rescale, O += P V and its wait. fa3's and fa3w's. */
template <typename E, int HD, int BQ>
static __device__ __forceinline__ void fa3_tile(float (&o)[HD / 2], float &ma, float &mb, float &la,
                                                float &lb, const fa3_block &b, int k0, float sl2, uint64_t dq,
                                                uint32_t kt, uint32_t vt) {
    float s[FA3_BN / 2];
    fa3_s_issue<E, HD, BQ>(s, dq, kt);
    wg_wait<0>();
    reg_fence(s);
    uint32_t pa[FA3_BN / 16][4];
    float ca, cb;
    fa3_softmax<E>(s, pa, b, k0, sl2, ma, mb, la, lb, ca, cb);
    fa3_rescale<HD>(o, ca, cb);
    fa3_pv_wait<E, HD>(o, pa, vt);
}

/* Iteration t of fa3p's loop, a warpgroup's (fa3p's and fa3wp's): S_t = Q K_t^T (K at kt;
 * its keys from k0) and O += P_{t-1} V_{t-1} (V at vt, P_{t-1} in pa) issued together, then
 * issue() (the caller's copies, behind the MMAs); S_t's wait and softmax while P V runs; P
 * V's wait, then released() (the caller's hand-over of what P V read), O's rescale by tile
 * t's factors, and pa = P_t. FIRST (t = 0): S_0 alone, its softmax into pa, O's rescale. */
template <typename E, int HD, int BQ, bool FIRST, typename I, typename R>
static __device__ __forceinline__ void
fa3p_step(float (&o)[HD / 2], uint32_t (&pa)[FA3_BN / 16][4], float &ma, float &mb, float &la, float &lb,
          const fa3_block &b, int k0, float sl2, uint64_t dq, uint32_t kt, uint32_t vt, I issue, R released) {
    float s[FA3_BN / 2], ca, cb;
    fa3_s_issue<E, HD, BQ>(s, dq, kt);
    if constexpr (FIRST) {
        issue();
        wg_wait<0>();
        reg_fence(s);
        fa3_softmax<E>(s, pa, b, k0, sl2, ma, mb, la, lb, ca, cb);
        fa3_rescale<HD>(o, ca, cb);
        return;
    }
    fa3_pv<E, HD>(o, pa, fa3_desc(vt, FA3_BN * 128, 1024));
    wg_commit();
    issue();
    wg_wait<1>(); /* S_t; P_{t-1} V_{t-1} may still run */
    reg_fence(s);
    uint32_t pn[FA3_BN / 16][4];
    fa3_softmax<E>(s, pn, b, k0, sl2, ma, mb, la, lb, ca, cb);
    wg_wait<0>();
    reg_fence(o);
    reg_fence(pa); /* read by P V up to its wait: its registers are not pn's */
    released();
    fa3_rescale<HD>(o, ca, cb);
#pragma unroll
    for (int kk = 0; kk < FA3_BN / 16; kk++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            pa[kk][e] = pn[kk][e];
}
#endif

/* fa3: per key tile, the block's copies of the next tile out, then per warpgroup S = Q K^T,
 * its wait, the softmax, O += P V and its wait, between two block barriers; two blocks an
 * SM (FA3_MINB) cover one's softmax with the other's MMAs. (One barrier a tile, the next
 * tile's copies sent after it, was 3% slower: run 31.) */
template <typename E, int HD>
static __global__ void __launch_bounds__(FA3_THREADS, FA3_MINB)
    attention_fa3_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq, const E *k_cache, const E *v_cache,
                         lr_gpu_attn_meta m, int64_t nh, int64_t nkv, float scale, int64_t qtiles) {
#ifdef FA3_DEVICE_CODE
    typedef fa3_layout<HD> Ly;
    extern __shared__ __align__(1024) unsigned char fa3_smem[];
    __shared__ int kmax_w[FA3_THREADS / 32];
    fa3_block b;
    if (!fa3_begin<E, HD>(b, q, ldq, m, nh, nkv, qtiles, fa3_smem, kmax_w)) return;
    const int ntiles = b.kmax / FA3_BN + (b.kmax % FA3_BN != 0);
    __shared__ int32_t table_s[FA3_TABLE_SMEM > 0 ? FA3_TABLE_SMEM : 1];
    const int32_t *table = fa3_table<FA3_THREADS>(b, table_s);
    /* Q and tile 0: one group */
    fa3_walk walk = fa3_walk_begin<HD>(table, b.bsz, nkv, b.g, threadIdx.x);
    if (ntiles > 0) fa3_fetch<E, HD>(b.kbuf, b.vbuf, k_cache, v_cache, walk, b.kmax);
    cp_async_commit();

    float o[HD / 2]; /* O (64 x HD) of the warpgroup: o[4d + e] row ra / rb, dims 8d + 2tq + e % 2 */
#pragma unroll
    for (int i = 0; i < HD / 2; i++)
        o[i] = 0.0f;
    float ma = -INFINITY, mb = -INFINITY, la = 0.0f, lb = 0.0f; /* as fa2's */
    const float sl2 = scale * 1.4426950408889634f;
    const uint64_t dq = fa3_desc(b.qs + b.wg * 64 * 128, 16, 1024);

    for (int t = 0; t < ntiles; t++) {
        if (t + 1 < ntiles) {
            const uint32_t nb = ((t + 1) & 1) * Ly::TB;
            fa3_fetch<E, HD>(b.kbuf + nb, b.vbuf + nb, k_cache, v_cache, walk, b.kmax); /* tile t + 1 */
            cp_async_commit();
            cp_async_wait<1>(); /* tile t (and Q) have landed, t + 1 may be in flight */
        } else {
            cp_async_wait<0>();
        }
        fence_proxy_async();
        __syncthreads();
        const int k0 = t * FA3_BN;
        if (k0 < b.wgmax) { /* warpgroup-uniform: some row of the warpgroup sees a key of the tile */
            const uint32_t cur = (t & 1) * Ly::TB;
            fa3_tile<E, HD, FA3_BQ>(o, ma, mb, la, lb, b, k0, sl2, dq, b.kbuf + cur, b.vbuf + cur);
        }
        __syncthreads(); /* the buffer is refetched next iteration (or takes the output) */
    }
    cp_async_wait<0>(); /* nothing in flight past here (there is always a tile: a row sees its own key) */
    fa3_store<E, HD>(ctx, ldc, b, o, la, lb, fa3_smem); /* the loop's last barrier has freed the buffers */
#else
    __trap(); /* never launched: the host runs it only where fa3_runs_here says so */
#endif
}

/* fa3p: fa3's arithmetic with FlashAttention-3's overlap inside a warpgroup. Iteration t
 * issues S_t = Q K_t^T and then O += P_{t-1} V_{t-1}, sends the copies of K_{t+1} and V_t
 * behind them, waits for S_t alone and takes its softmax while the tensor cores run
 * P_{t-1} V_{t-1}, then waits for that and scales O by tile t's factors. Each O sees the
 * same operations in the same order as in fa3 (O scaled by tile t-1's factors, plus
 * P_{t-1} V_{t-1}, then by tile t's), so the bits are fa3's. The price: P of two tiles
 * live at once (the one P V reads until its wait, the one the softmax writes), and K and V
 * of different tiles in use together (K and V each a ring of two; Q, K0 K1, V0 V1 as
 * fa3's 96 KiB), one barrier a tile; at about 160 to 200 registers, one block an SM.
 *
 * Both warpgroups run every tile of the block, the first tile and the last P V peeled,
 * so that no wgmma sits in a branch: ptxas serialises the wgmmas of a function where one
 * does (its warning C7520). A warpgroup whose rows see no key of a tile (the first one's,
 * on the causal diagonal) takes it masked, which changes no value (at most the sign of an
 * O element that is exactly 0): its scores are all -inf, so the maxima stay, O and the sums
 * are scaled by exp2(0) = 1 and P is 0. fa3 skips such a tile, but the other warpgroup
 * holds both at the tile's barrier anyway. */
template <typename E, int HD>
static __global__ void __launch_bounds__(FA3_THREADS, 1)
    attention_fa3p_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq, const E *k_cache, const E *v_cache,
                          lr_gpu_attn_meta m, int64_t nh, int64_t nkv, float scale, int64_t qtiles) {
#ifdef FA3_DEVICE_CODE
    typedef fa3_layout<HD> Ly;
    extern __shared__ __align__(1024) unsigned char fa3_smem[];
    __shared__ int kmax_w[FA3_THREADS / 32];
    fa3_block b;
    if (!fa3_begin<E, HD>(b, q, ldq, m, nh, nkv, qtiles, fa3_smem, kmax_w)) return;
    /* at least one (a row sees its own key; with none, every tile is zero-filled) */
    const int ntiles = b.kmax > FA3_BN ? b.kmax / FA3_BN + (b.kmax % FA3_BN != 0) : 1;
    const float sl2 = scale * 1.4426950408889634f;
    const uint64_t dq = fa3_desc(b.qs + b.wg * 64 * 128, 16, 1024);
#define FA3P_KBUF(t) (b.kbuf + ((t)&1) * Ly::TB)
#define FA3P_VBUF(t) (b.vbuf + ((t)&1) * Ly::TB)
    /* K's walk runs a tile ahead of V's */
    fa3_walk kwalk = fa3_walk_begin<HD>(b.table, b.bsz, nkv, b.g, threadIdx.x), vwalk = kwalk;
#define FA3P_FETCH_K(t) fa3_fetch<E, HD>(FA3P_KBUF(t), FA3_NO_BUF, k_cache, v_cache, kwalk, b.kmax)
#define FA3P_FETCH_V(t) fa3_fetch<E, HD>(FA3_NO_BUF, FA3P_VBUF(t), k_cache, v_cache, vwalk, b.kmax)
    /* every thread's copies of the last group have landed (K_t and V_{t-1}); both
     * warpgroups are past iteration t - 1, whose waits ended the last reads of K slot t + 1
     * (S_{t-1}) and V slot t (P_{t-2} V) */
#define FA3P_LANDED()                                                                                        \
    do {                                                                                                     \
        cp_async_wait<0>();                                                                                  \
        fence_proxy_async();                                                                                 \
        __syncthreads();                                                                                     \
    } while (0)

    FA3P_FETCH_K(0); /* with Q: one group */
    cp_async_commit();
    float o[HD / 2]; /* as fa3's */
#pragma unroll
    for (int i = 0; i < HD / 2; i++)
        o[i] = 0.0f;
    float ma = -INFINITY, mb = -INFINITY, la = 0.0f, lb = 0.0f;
    uint32_t pa[FA3_BN / 16][4]; /* P_{t-1}, P V's A operand */

    /* t = 0: S_0 alone */
    FA3P_LANDED();
    fa3p_step<E, HD, FA3_BQ, true>(
        o, pa, ma, mb, la, lb, b, 0, sl2, dq, FA3P_KBUF(0), 0,
        [&] {
            if (ntiles > 1) FA3P_FETCH_K(1);
            FA3P_FETCH_V(0);
            cp_async_commit();
        },
        [] {});

    for (int t = 1; t < ntiles; t++) {
        FA3P_LANDED();
        fa3p_step<E, HD, FA3_BQ, false>(
            o, pa, ma, mb, la, lb, b, t * FA3_BN, sl2, dq, FA3P_KBUF(t), FA3P_VBUF(t - 1),
            [&] { /* the next copies go out behind the MMAs */
                  if (t + 1 < ntiles) FA3P_FETCH_K(t + 1);
                  FA3P_FETCH_V(t);
                  cp_async_commit();
            },
            [] {});
    }

    /* the last P V */
    FA3P_LANDED();
    fa3_pv_wait<E, HD>(o, pa, FA3P_VBUF(ntiles - 1));
    __syncthreads(); /* both warpgroups' last P V done: the buffers take the output */
    fa3_store<E, HD>(ctx, ldc, b, o, la, lb, fa3_smem);
#undef FA3P_KBUF
#undef FA3P_VBUF
#undef FA3P_FETCH_K
#undef FA3P_FETCH_V
#undef FA3P_LANDED
#else
    __trap();
#endif
}

/* fa3w: fa3 warp-specialised, as FlashAttention-3 splits its blocks (docs/performance.md,
 * run 33). A block of 512 threads takes FA3W_BQ = 192 query rows: warpgroups 0 to 2 are
 * consumers, each with fa3's 64 rows and fa3's arithmetic tile by tile (fa3_tile), so
 * fa3's bits; warpgroup 3 is the producer, which walks the block table and copies the K/V
 * tiles into a ring of FA3W_NS stages (stage t % FA3W_NS for tile t) and does nothing
 * else, so the consumers issue no fetch instructions. Registers: launched at 128 a thread
 * (the most 512 threads may hold), the producer gives its warpgroup's down to
 * FA3W_REG_PRODUCER and the consumers take theirs up to FA3W_REG_CONSUMER (setmaxnreg);
 * fa3's consumer loop takes 141 registers left free. Shared memory: Q (192 rows) and three
 * stages of K and V, 144 KB at head_dim 128: one block an SM. The hand-over, by named
 * barriers of all 512 threads, two a stage (the protocol tools/model-fa3-layout.py checks
 * in random interleavings, ws_schedule):
 *   producer, tile t: (t >= NS) bar.sync empty[t % NS]; the copies, committed; (t >= 1)
 *     wait for tile t - 1's, fence the async proxy, bar.arrive full[(t - 1) % NS]; after
 *     the last tile, the same for it;
 *   consumer, tile t: bar.sync full[t % NS]; the tile where its rows see a key of it (a
 *     consumer past its keys still waits: arriving alone would let it run a ring ahead and
 *     arrive twice in one generation); bar.arrive empty[t % NS] where t + NS < ntiles.
 * Then the consumers alone (a barrier of 384) before the output is staged in the stages:
 * every wgmma has read its stage, and the producer's last copies landed before the last
 * full. Written in session 27 without a GPU; not a default. */
#define FA3W_CWGS 3                          /* consumer warpgroups */
#define FA3W_BQ (64 * FA3W_CWGS)             /* query rows a block */
#define FA3W_THREADS (128 * (FA3W_CWGS + 1)) /* and the producer's */
#define FA3W_NS 3                            /* K/V stages */
#define FA3W_REG_PRODUCER 56
#define FA3W_REG_CONSUMER 152
static_assert((FA3W_CWGS * FA3W_REG_CONSUMER + FA3W_REG_PRODUCER) * 128 <= 65536 &&
                  FA3W_REG_PRODUCER % 8 == 0 && FA3W_REG_CONSUMER % 8 == 0,
              "fa3w: the warpgroups' registers within the SM's 64K, in steps of 8");

#ifdef FA3_DEVICE_CODE
/* bar.sync / bar.arrive on named barrier id for n threads (a multiple of 32). */
static __device__ __forceinline__ void bar_sync_n(int id, int n) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
static __device__ __forceinline__ void bar_arrive_n(int id, int n) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
/* A warpgroup's registers a thread down to, or up to, R (every thread of it executes it). */
template <int R> static __device__ __forceinline__ void setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R> static __device__ __forceinline__ void setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}

/* A warp-specialised block's producer warpgroup (the last of BQ / 64 + 1): walks the block
 * table and copies tile t's K and V into stage t % NS, after bar.sync on the stage's
 * "empty" from t = NS on; once tile t - 1's copies have landed (its own; every producer
 * thread arrives), fences the async proxy and bar.arrives on that stage's "full"; then the
 * same for the last tile. DRAIN: then bar.sync on "empty" for the tiles it did not refill
 * (the last NS), so that the consumers may arrive on every tile's: fa3wp's, whose arrival
 * sits in its loop of wgmmas, where a condition on it has ptxas serialise them (C7513).
 * fa3w's (no DRAIN) and fa3wp's (tools/model-fa3-layout.py, ws_schedule). */
/* A warp-specialised block's start, after fa3_begin, every thread: its block table
 * (fa3_table), and Q, every thread's part, landed and fenced before the roles split. */
template <int NT>
static __device__ __forceinline__ const int32_t *fa3_ws_table(const fa3_block &b, int32_t *table_s) {
    const int32_t *table = fa3_table<NT>(b, table_s);
    cp_async_commit();
    cp_async_wait<0>();
    fence_proxy_async();
    __syncthreads();
    return table;
}

/* The named barriers (0 is __syncthreads'): full and empty a stage, then the store's. */
static constexpr __device__ int ws_full(int st) { return 1 + st; }
template <int NS> static constexpr __device__ int ws_empty(int st) { return 1 + NS + st; }
template <int NS> static constexpr __device__ int ws_store() { return 1 + 2 * NS; }
template <typename E, int HD, int BQ, int NS, bool DRAIN>
static __device__ __forceinline__ void fa3_ws_produce(const fa3_block &b, const int32_t *table,
                                                      const E *k_cache, const E *v_cache, int64_t nkv,
                                                      int ntiles) {
    typedef fa3_layout<HD, BQ, NS> Ly;
    constexpr int NT = 2 * BQ + 128; /* the block's threads: two a consumer row, and the producer's */
    static_assert(1 + 2 * NS < 16, "sixteen named barriers a block: full and empty a stage, and the store's");
    setmaxnreg_dec<FA3W_REG_PRODUCER>();
    fa3_walk walk = fa3_walk_begin<HD, 128>(table, b.bsz, nkv, b.g, threadIdx.x - 2 * BQ);
    for (int t = 0; t < ntiles; t++) {
        const int st = t % NS;
        if (t >= NS) bar_sync_n(ws_empty<NS>(st), NT); /* tile t - NS read by all */
        fa3_fetch<E, HD, 128>(b.kbuf + st * Ly::TB, b.vbuf + st * Ly::TB, k_cache, v_cache, walk, b.kmax);
        cp_async_commit();
        if (t >= 1) {
            cp_async_wait<1>(); /* tile t - 1's copies (this thread's) have landed */
            fence_proxy_async();
            bar_arrive_n(ws_full((t - 1) % NS), NT);
        }
    }
    cp_async_wait<0>();
    fence_proxy_async();
    if (ntiles > 0) bar_arrive_n(ws_full((ntiles - 1) % NS), NT);
    if (DRAIN)
        for (int t = max(ntiles - NS, 0); t < ntiles; t++)
            bar_sync_n(ws_empty<NS>(t % NS), NT);
}
#endif

template <typename E, int HD>
static __global__ void __launch_bounds__(FA3W_THREADS, 1)
    attention_fa3w_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq, const E *k_cache, const E *v_cache,
                          lr_gpu_attn_meta m, int64_t nh, int64_t nkv, float scale, int64_t qtiles) {
#ifdef FA3_DEVICE_CODE
    typedef fa3_layout<HD, FA3W_BQ, FA3W_NS> Ly;
    extern __shared__ __align__(1024) unsigned char fa3_smem[];
    __shared__ int kmax_w[FA3W_THREADS / 32];
    __shared__ int32_t table_s[FA3_TABLE_SMEM > 0 ? FA3_TABLE_SMEM : 1];
    fa3_block b;
    if (!fa3_begin<E, HD, FA3W_BQ, FA3W_THREADS, FA3W_NS>(b, q, ldq, m, nh, nkv, qtiles, fa3_smem, kmax_w))
        return;
    const int ntiles = b.kmax / FA3_BN + (b.kmax % FA3_BN != 0);
    const int32_t *table = fa3_ws_table<FA3W_THREADS>(b, table_s);

    if (b.wg == FA3W_CWGS) { /* the producer */
        fa3_ws_produce<E, HD, FA3W_BQ, FA3W_NS, false>(b, table, k_cache, v_cache, nkv, ntiles);
        return;
    }

    setmaxnreg_inc<FA3W_REG_CONSUMER>();
    float o[HD / 2]; /* as fa3's */
#pragma unroll
    for (int i = 0; i < HD / 2; i++)
        o[i] = 0.0f;
    float ma = -INFINITY, mb = -INFINITY, la = 0.0f, lb = 0.0f;
    const float sl2 = scale * 1.4426950408889634f;
    const uint64_t dq = fa3_desc(b.qs + b.wg * 64 * 128, 16, 1024);
    for (int t = 0; t < ntiles; t++) {
        const int st = t % FA3W_NS, k0 = t * FA3_BN;
        bar_sync_n(ws_full(st), FA3W_THREADS);
        if (k0 < b.wgmax) /* warpgroup-uniform, as fa3's */
            fa3_tile<E, HD, FA3W_BQ>(o, ma, mb, la, lb, b, k0, sl2, dq, b.kbuf + st * Ly::TB,
                                     b.vbuf + st * Ly::TB);
        if (t + FA3W_NS < ntiles) bar_arrive_n(ws_empty<FA3W_NS>(st), FA3W_THREADS);
    }
    bar_sync_n(ws_store<FA3W_NS>(), 128 * FA3W_CWGS); /* every consumer's wgmmas are done with the stages */
    fa3_store<E, HD>(ctx, ldc, b, o, la, lb, fa3_smem);
#else
    __trap();
#endif
}

/* fa3wp: FlashAttention-3's block, fa3p's consumers fed by fa3w's producer. A block of 384
 * threads takes fa3's 128 query rows: warpgroups 0 and 1 are consumers, each with fa3p's
 * loop (iteration t issues S_t = Q K_t^T and then O += P_{t-1} V_{t-1}, takes S_t's softmax
 * while the tensor cores run P_{t-1} V_{t-1}; every tile taken, masked where its rows see
 * no key of it, so fa3p's bits, which are fa3's); warpgroup 2 is fa3w's producer
 * (fa3_ws_produce) over a ring of FA3WP_NS stages. A consumer holds a stage over two
 * iterations (K at t, V at t + 1), so it releases tile t - 1 in iteration t, after P_{t-1}
 * V_{t-1}'s wait; with two stages that would deadlock (the producer's tile t + 1 waits for
 * tile t - 1's release, which waits for tile t + 1's arrival), with three the producer
 * runs one tile ahead, with four two. Registers: launched at 168 (384 threads), the
 * producer down to FA3W_REG_PRODUCER, the consumers up to FA3WP_REG_CONSUMER, where fa3p
 * took 160 to 200 in a block that also fetched. Shared memory: Q and four stages, 160 KB
 * at head_dim 128, one block an SM. The hand-over (ws_schedule with lag=1 in
 * tools/model-fa3-layout.py, which also shows the two-stage deadlock):
 *   consumer, iteration t: bar.sync full[t % NS]; S_t and P_{t-1} V_{t-1}; their waits;
 *     bar.arrive empty[(t - 1) % NS]; after the loop the last P V and bar.arrive on its
 *     stage's empty: every tile's, unconditionally (a condition there serialises the
 *     wgmmas: ptxas' C7513), the producer draining the last NS (fa3_ws_produce's DRAIN).
 * Written in session 28 without a GPU; not a default. */
#define FA3WP_CWGS 2
#define FA3WP_BQ (64 * FA3WP_CWGS)             /* fa3's */
#define FA3WP_THREADS (128 * (FA3WP_CWGS + 1)) /* and the producer's */
#define FA3WP_NS 4
#define FA3WP_REG_CONSUMER 224
static_assert(FA3WP_BQ == FA3_BQ, "fa3wp: fa3's rows a block (its grid is fa3's)");
static_assert((FA3WP_CWGS * FA3WP_REG_CONSUMER + FA3W_REG_PRODUCER) * 128 <= 65536 &&
                  FA3WP_REG_CONSUMER % 8 == 0,
              "fa3wp: the warpgroups' registers within the SM's 64K, in steps of 8");
static_assert(FA3WP_NS >= 3, "fa3wp: a consumer holds two stages at once");
static_assert(1 + 2 * FA3WP_NS + 2 < 16, "fa3wp: full and empty a stage, the store's and two turns'");
/* FA3WP_PINGPONG (a build-time knob, 0 by default): the two consumers take turns to issue
 * their MMAs, as FlashAttention-3's warpgroups do (its "ping-pong"), through two named
 * barriers of their own: warpgroup w bar.syncs on sched[w] before issuing (warpgroup 0 not
 * at tile 0) and bar.arrives on sched[1 - w] after; warpgroup 0 takes warpgroup 1's last
 * arrival after its loop. Checked on the CPU (ws_schedule, pingpong): the MMAs issued in
 * turn, no deadlock with the stages' barriers, no arrival left. */
#ifndef FA3WP_PINGPONG
#define FA3WP_PINGPONG 0
#endif

template <typename E, int HD>
static __global__ void __launch_bounds__(FA3WP_THREADS, 1)
    attention_fa3wp_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq, const E *k_cache, const E *v_cache,
                           lr_gpu_attn_meta m, int64_t nh, int64_t nkv, float scale, int64_t qtiles) {
#ifdef FA3_DEVICE_CODE
    typedef fa3_layout<HD, FA3WP_BQ, FA3WP_NS> Ly;
    constexpr int NS = FA3WP_NS, NT = FA3WP_THREADS;
    extern __shared__ __align__(1024) unsigned char fa3_smem[];
    __shared__ int kmax_w[NT / 32];
    __shared__ int32_t table_s[FA3_TABLE_SMEM > 0 ? FA3_TABLE_SMEM : 1];
    fa3_block b;
    if (!fa3_begin<E, HD, FA3WP_BQ, NT, NS>(b, q, ldq, m, nh, nkv, qtiles, fa3_smem, kmax_w)) return;
    /* at least one, as fa3p's */
    const int ntiles = b.kmax > FA3_BN ? b.kmax / FA3_BN + (b.kmax % FA3_BN != 0) : 1;
    const int32_t *table = fa3_ws_table<NT>(b, table_s);

    if (b.wg == FA3WP_CWGS) {
        fa3_ws_produce<E, HD, FA3WP_BQ, NS, true>(b, table, k_cache, v_cache, nkv, ntiles);
        return;
    }

    setmaxnreg_inc<FA3WP_REG_CONSUMER>();
    const float sl2 = scale * 1.4426950408889634f;
    const uint64_t dq = fa3_desc(b.qs + b.wg * 64 * 128, 16, 1024);
    float o[HD / 2]; /* as fa3's */
#pragma unroll
    for (int i = 0; i < HD / 2; i++)
        o[i] = 0.0f;
    float ma = -INFINITY, mb = -INFINITY, la = 0.0f, lb = 0.0f;
    uint32_t pa[FA3_BN / 16][4]; /* P_{t-1}, P V's A operand */

    /* FA3WP_PINGPONG: the two consumers issue their MMAs in turn (sched[w]: warpgroup w's
     * turn), so that one's softmax runs under the other's MMAs */
    constexpr int SCHED = ws_store<NS>() + 1;
    auto pass = [&] { /* after issuing: the other's turn */
                      if (FA3WP_PINGPONG) bar_arrive_n(SCHED + 1 - b.wg, 128 * FA3WP_CWGS);
    };
    /* t = 0: S_0 alone (warpgroup 0 first) */
    bar_sync_n(ws_full(0), NT);
    if (FA3WP_PINGPONG && b.wg == 1) bar_sync_n(SCHED + 1, 128 * FA3WP_CWGS);
    fa3p_step<E, HD, FA3WP_BQ, true>(o, pa, ma, mb, la, lb, b, 0, sl2, dq, b.kbuf, 0, pass, [] {});

    for (int t = 1; t < ntiles; t++) {
        const int st = t % NS, sp = (t - 1) % NS;
        bar_sync_n(ws_full(st), NT);
        if (FA3WP_PINGPONG) bar_sync_n(SCHED + b.wg, 128 * FA3WP_CWGS); /* this warpgroup's turn */
        fa3p_step<E, HD, FA3WP_BQ, false>(
            o, pa, ma, mb, la, lb, b, t * FA3_BN, sl2, dq, b.kbuf + st * Ly::TB, b.vbuf + sp * Ly::TB, pass,
            [&] { bar_arrive_n(ws_empty<NS>(sp), NT); }); /* K_{t-1} and V_{t-1} read */
    }
    /* warpgroup 0 takes warpgroup 1's last pass */
    if (FA3WP_PINGPONG && b.wg == 0) bar_sync_n(SCHED, 128 * FA3WP_CWGS);

    /* the last P V */
    fa3_pv_wait<E, HD>(o, pa, b.vbuf + ((ntiles - 1) % NS) * Ly::TB);
    bar_arrive_n(ws_empty<NS>((ntiles - 1) % NS), NT);
    bar_sync_n(ws_store<NS>(), 128 * FA3WP_CWGS); /* both consumers' wgmmas are done with the stages */
    fa3_store<E, HD>(ctx, ldc, b, o, la, lb, fa3_smem);
#else
    __trap();
#endif
}

/* fa3wt: fa3w's block (its consumers, its ring of FA3W_NS stages, its empty barriers) whose
 * producer copies K and V by the tensor memory accelerator (TMA), as FlashAttention-3 does:
 * run 37's Nsight Compute put fa3w's first stall on its consumers' wait for the producer's
 * hand-over and the next on the producer's own loads, 128 threads issuing 16-byte copies
 * and stepping through the block table key by key. Here one thread of the producer issues,
 * for each page (block_size keys, one physical block) of a tile and each 64 dims of
 * head_dim, one 3-D tensor copy of K and one of V: the box {64 dims, 1 kv head, block_size
 * rows} of the cache viewed as (rows, nkv, head_dim), written by the copy engine in the
 * 128-byte swizzle, which is fa3_sw's layout where a page starts on a multiple of 8 rows
 * (the swizzle is taken from address bits 7-9; tools/model-fa3-layout.py,
 * check_tma_placement). Each stage's "full" is an mbarrier: the thread arms it with the
 * tile's bytes (expect_tx) and the copies complete it; the consumers wait on its phase.
 * The tile that holds the block's last key, where keys past it must read as zeros, is
 * copied as fa3w copies (cp.async, zero-filled, every producer thread), and the producer's
 * thread arrives on the mbarrier once every thread's copies have landed. So the consumers,
 * and the bits, are fa3w's, which are fa3's. The launcher takes block sizes 8, 16, 32 and
 * 64 (whole pages a tile, each 8-row aligned); others, and a driver without
 * cuTensorMapEncodeTiled, go to fa3w. The consumers' loop is fa3w's written out again: one
 * function for both changed fa3w's machine code (its .text section in nvcc -cubin's
 * output), which GPUs have validated. Written in session 32 without a GPU; run 38 (H100):
 * fa3's bits, 107 us at 1 x 2048 against fa3's 121, 97 at 8 x 512 against 84
 * (docs/performance.md); not a default. */
#ifdef FA3_DEVICE_CODE
static __device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
/* This thread's arrival, with bytes more to come from copies that complete on the barrier. */
static __device__ __forceinline__ void mbar_arrive_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
                 : "memory");
}
static __device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/* Until the barrier's phase of this parity has completed. */
static __device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    asm volatile("{\n"
                 ".reg .pred done;\n"
                 "WAIT:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
                 "@!done bra WAIT;\n"
                 "}\n" ::"r"(bar),
                 "r"(parity)
                 : "memory");
}
/* The box at (c0, c1, c2) of the tensor map into shared memory at dst, completing on bar. */
static __device__ __forceinline__ void tma_load3(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2,
                                                 uint32_t bar) {
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
                 : "memory");
}

/* Key tile t of a block (b's kv head, block size and kmax; its block table) into the stage
 * at kd, vd whose full mbarrier is bar: a whole tile (t < whole) by TMA from producer
 * thread 0 (tid), a page and 64 dims a box; the last, keys past kmax among its rows, by
 * fa3w's copies from every producer thread, then thread 0's plain arrival once every
 * producer thread's copies landed (named barrier PBAR of the producer's 128). fa3wt's and
 * fa3wts'. */
template <typename E, int HD, int PBAR>
static __device__ __forceinline__ void
fa3_tma_tile(const fa3_block &b, const int32_t *table, const CUtensorMap *km, const CUtensorMap *vm,
             const E *k_cache, const E *v_cache, int64_t nkv, int t, int tid, int pages, int whole,
             uint32_t kd, uint32_t vd, uint32_t bar) {
    constexpr int CH = HD / 8, TB = FA3_BN * HD * 2;
    if (t < whole) {
        if (tid == 0) {
            mbar_arrive_tx(bar, 2 * TB);
            for (int p = 0; p < pages; p++) {
                const int row = table[t * pages + p] * b.bsz;
#pragma unroll
                for (int h = 0; h < HD / 64; h++) {
                    const uint32_t o = (uint32_t)(h * FA3_BN * 128 + p * b.bsz * 128);
                    tma_load3(kd + o, km, h * 64, (int)b.g, row, bar);
                    tma_load3(vd + o, vm, h * 64, (int)b.g, row, bar);
                }
            }
        }
    } else { /* the last tile, keys past kmax among its rows: fa3w's copies */
        const int c = tid % CH, j0 = tid / CH;
        fa3_walk w = {kv_walk_at(table, b.bsz, t * FA3_BN + j0, nkv, HD, b.g, c * 8),
                      kv_stride_of(128 / CH, b.bsz), fa3_sw<FA3_BN>(j0, c)};
        fa3_fetch<E, HD, 128>(kd, vd, k_cache, v_cache, w, b.kmax);
        cp_async_commit();
        cp_async_wait<0>();
        fence_proxy_async();
        bar_sync_n(PBAR, 128); /* every producer thread's copies landed */
        if (tid == 0) mbar_arrive(bar);
    }
}

/* fa3wt's producer warpgroup: fa3_ws_produce's schedule (bar.sync on a stage's "empty" from
 * tile NS on), each tile by TMA from its thread 0 but the one past the block's last whole
 * tile (cp.async from every thread, then thread 0's plain arrival); full: the stages'
 * mbarriers (8 bytes apart). */
template <typename E, int HD, int BQ, int NS>
static __device__ __forceinline__ void
fa3_tma_produce(const fa3_block &b, const int32_t *table, const CUtensorMap *km, const CUtensorMap *vm,
                const E *k_cache, const E *v_cache, int64_t nkv, int ntiles, uint32_t full) {
    typedef fa3_layout<HD, BQ, NS> Ly;
    constexpr int NT = 2 * BQ + 128;
    setmaxnreg_dec<FA3W_REG_PRODUCER>();
    static_assert(ws_store<NS>() + 1 < 16, "the producer's own named barrier after the store's");
    const int tid = threadIdx.x - 2 * BQ, pages = FA3_BN / b.bsz, whole = b.kmax / FA3_BN;
    for (int t = 0; t < ntiles; t++) {
        const int st = t % NS;
        const uint32_t kd = b.kbuf + st * Ly::TB, vd = b.vbuf + st * Ly::TB, bar = full + 8 * st;
        if (t >= NS) bar_sync_n(ws_empty<NS>(st), NT); /* tile t - NS read by all */
        fa3_tma_tile<E, HD, ws_store<NS>() + 1>(b, table, km, vm, k_cache, v_cache, nkv, t, tid, pages, whole,
                                                kd, vd, bar);
    }
}
#endif

template <typename E, int HD>
static __global__ void __launch_bounds__(FA3W_THREADS, 1)
    attention_fa3wt_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq, const E *k_cache, const E *v_cache,
                           lr_gpu_attn_meta m, int64_t nh, int64_t nkv, float scale, int64_t qtiles,
                           const __grid_constant__ CUtensorMap km, const __grid_constant__ CUtensorMap vm) {
#ifdef FA3_DEVICE_CODE
    typedef fa3_layout<HD, FA3W_BQ, FA3W_NS> Ly;
    extern __shared__ __align__(1024) unsigned char fa3_smem[];
    __shared__ int kmax_w[FA3W_THREADS / 32];
    __shared__ int32_t table_s[FA3_TABLE_SMEM > 0 ? FA3_TABLE_SMEM : 1];
    __shared__ __align__(8) uint64_t full_s[FA3W_NS];
    fa3_block b;
    if (!fa3_begin<E, HD, FA3W_BQ, FA3W_THREADS, FA3W_NS>(b, q, ldq, m, nh, nkv, qtiles, fa3_smem, kmax_w))
        return;
    const int ntiles = b.kmax / FA3_BN + (b.kmax % FA3_BN != 0);
    const uint32_t full = smem_u32(full_s);
    if (threadIdx.x == 0) {
        for (int st = 0; st < FA3W_NS; st++)
            mbar_init(full + 8 * st, 1); /* the producer's thread's one arrival a phase */
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    const int32_t *table = fa3_ws_table<FA3W_THREADS>(b, table_s); /* its barrier publishes the init */

    if (b.wg == FA3W_CWGS) {
        fa3_tma_produce<E, HD, FA3W_BQ, FA3W_NS>(b, table, &km, &vm, k_cache, v_cache, nkv, ntiles, full);
        return;
    }

    setmaxnreg_inc<FA3W_REG_CONSUMER>();
    float o[HD / 2]; /* as fa3w's */
#pragma unroll
    for (int i = 0; i < HD / 2; i++)
        o[i] = 0.0f;
    float ma = -INFINITY, mb = -INFINITY, la = 0.0f, lb = 0.0f;
    const float sl2 = scale * 1.4426950408889634f;
    const uint64_t dq = fa3_desc(b.qs + b.wg * 64 * 128, 16, 1024);
    for (int t = 0; t < ntiles; t++) {
        const int st = t % FA3W_NS, k0 = t * FA3_BN;
        mbar_wait(full + 8 * st, (uint32_t)(t / FA3W_NS) & 1u); /* the stage's (t / NS)-th fill */
        if (k0 < b.wgmax)
            fa3_tile<E, HD, FA3W_BQ>(o, ma, mb, la, lb, b, k0, sl2, dq, b.kbuf + st * Ly::TB,
                                     b.vbuf + st * Ly::TB);
        if (t + FA3W_NS < ntiles) bar_arrive_n(ws_empty<FA3W_NS>(st), FA3W_THREADS);
    }
    bar_sync_n(ws_store<FA3W_NS>(), 128 * FA3W_CWGS); /* every consumer's wgmmas are done with the stages */
    fa3_store<E, HD>(ctx, ldc, b, o, la, lb, fa3_smem);
#else
    __trap();
#endif
}

/* fa3wts: fa3wt made persistent, as FlashAttention-3's scheduler is. Run 39's wave model
 * (docs/performance.md) put about 5.5 us of fixed cost on each fa3wt block, its launch, Q and
 * first tiles' latency and its store, time its SM does no tile work, which the short
 * prefills (8 x 512: 5.8 waves of blocks) pay most. Here the grid is one block an SM (at most
 * the work tiles) and each block takes one work tile of each row of gridDim.x in fa3's
 * order (heads fastest, the heaviest causal query tiles first), every other row backwards
 * (fa3wts_index); a work tile is what an
 * fa3wt block takes, 192 query rows of one (sequence, head), and is computed with fa3wt's
 * operations in fa3wt's order, so fa3's bits. The producer loads the next work tile's Q
 * and first K/V tiles while the consumers finish the current one's last tiles and store:
 *   - the K/V stages are one ring over all the block's key tiles (g counts them across its
 *     work tiles: stage g % NS, mbarrier parity (g / NS) & 1);
 *   - Q has two buffers (work tile j in buffer j % 2), each with a "full" and an "empty"
 *     named barrier of the whole block; the producer's cp.async fill Q and its warps write
 *     their rows' key counts (pm) before it arrives on qfull; the consumers take their
 *     warpgroup's and the block's most keys from pm;
 *   - the output is staged in its work tile's Q buffer (sized for fa3_store's padded rows),
 *     since the stages may already hold the next work tile's copies: after the store
 *     barrier of the consumers (every wgmma done with that Q), each warp stages and copies
 *     out its rows, then every consumer arrives on the buffer's qempty;
 *   - the consumers arrive on every key tile's empty and every work tile's qempty, and the
 *     producer drains the last NS empties and the last two qempties, so that neither side
 *     needs the block's count of work tiles.
 * tools/model-fa3-layout.py's ws_schedule_tma with persist is this hand-over, in random
 * interleavings, with ten planted faults it must catch. The block table's entries for the
 * TMA's pages are copied to shared memory per Q buffer where they fit (FA3_TABLE_SMEM), by the
 * producer after the buffer's qempty (when thread 0 has issued every copy of the work tile
 * two before). Shared memory at head_dim 128: two Q buffers of 52 KB and three stages, 201
 * KB. Written in session 33 without a GPU; run 40 (H100): fa3's bits, 106 us at 1 x 2048
 * against fa3wt's 111 and fa3's 123, 87 at 8 x 512 against fa3's 85 (docs/performance.md);
 * run 41: its sanitizers and model-level checks pass, and since then the default's prefill
 * (attention_fa3_prefill, below) takes it where it took fa3wt. */
template <int HD> struct fa3wts_layout {
    static constexpr uint32_t QS = (FA3W_BQ * (HD + 8) * 2 + 1023) / 1024 * 1024, TB = FA3_BN * HD * 2;
    static constexpr size_t bytes = 2 * (size_t)QS + 2 * FA3W_NS * (size_t)TB + 1024;
    static_assert(FA3W_BQ * HD * 2 <= QS, "Q in its buffer");
    static_assert(bytes <= 220 * 1024, "within sm_90's shared memory per block, with the static arrays");
};
#ifdef FA3_DEVICE_CODE
static_assert(2 * 4 * FA3_TABLE_SMEM <= 6 * 1024, "fa3wts: the tables' copies within the static room");
/* The named barriers past fa3wt's (its empties, the store's, the producer's own): Q's. */
template <int NS> static constexpr __device__ int ws_qfull(int b) { return ws_store<NS>() + 2 + b; }
template <int NS> static constexpr __device__ int ws_qempty(int b) { return ws_store<NS>() + 4 + b; }
static_assert(FA3W_NS * 2 + 7 < 16, "fa3wts: sixteen named barriers a block");

/* The work tile a block takes r-th: rows of the grid's blocks in turn, every other one
 * backwards (r = 0: blockIdx.x; r = 1: 2 gridDim.x - 1 - blockIdx.x; ...), so that a block
 * whose first was among the heaviest takes among the lightest next. Counting key tiles
 * (tools/fa3wts-balance.py: run 39's shapes, 132 SMs), the busiest block takes 53 at
 * 1 x 2048 against 62 a grid apart (the mean 47.8; a dynamic scheduler's 51), 16 against 22
 * at 1 x 1024, and the same (within 3% of the mean) at 4 x 1024 and 8 x 512. */
static __device__ __forceinline__ int64_t fa3wts_index(int64_t r) {
    const int64_t row = r * gridDim.x;
    return r % 2 == 0 ? row + blockIdx.x : row + gridDim.x - 1 - blockIdx.x;
}
#endif

/* FA3WTS_LPT (0 by default; 1 gives the same bits, every work tile computed once by one
 * block whatever block takes it): the work tiles handed out by a longest-first list
 * schedule computed on the host at launch instead of the snake order (fa3wts_index): each
 * work tile in the grid's order (heaviest first) to the block with the least work so far,
 * the work a tile's key tiles at run 42's fit (1.89 us a key tile, 3.2 us a work tile:
 * weights 100 and 169), counted as if every sequence had max_seq_len new tokens and no
 * past (what the host knows: the lengths are in device memory), so the order is the best
 * list for equal lengths and a correct one for any (a tile past its sequence is skipped by
 * every role, as in the snake order). tools/fa3wts-balance.py's "dynamic" is this schedule:
 * 0.947 of the snake order's time at 1 x 2048 (100.3 us against 106.0 at the fit), level
 * elsewhere; a block claiming its next tile from a counter would have to claim a tile ahead
 * (its producer loads the next tile's Q under the current one) and gain only 0.988. The
 * schedule goes in the kernel's parameters (__grid_constant__, read where the block takes
 * its next tile), for grids of at most FA3WTS_SCHED_G blocks and FA3WTS_SCHED_N work tiles
 * (12 waves of 132 SMs: 1584), else the snake order. The schedule is gpu/fa3wts_sched.h's
 * (host C, tests/test_fa3wts_sched.c holds it to its properties without a GPU). Written in
 * session 37 without a GPU; not yet run (the queue's next-r43b.sh). */
#ifndef FA3WTS_LPT
#define FA3WTS_LPT 0
#endif
static_assert(FA3WTS_SCHED_ROWS == FA3W_BQ && FA3WTS_SCHED_KEYS == FA3_BN,
              "fa3wts_sched.h weighs fa3wts' work tiles and key tiles");
#if FA3WTS_LPT
#ifdef FA3_DEVICE_CODE
/* How many work tiles this block takes, and its r-th. */
static __device__ __forceinline__ int64_t fa3wts_rounds(const fa3wts_sched &sc, int64_t items) {
    return sc.on ? sc.first[blockIdx.x + 1] - sc.first[blockIdx.x] : (items + gridDim.x - 1) / gridDim.x;
}
static __device__ __forceinline__ int64_t fa3wts_at(const fa3wts_sched &sc, int64_t r) {
    return sc.on ? (int64_t)sc.item[sc.first[blockIdx.x] + r] : fa3wts_index(r);
}
#endif
#endif
#ifdef FA3_DEVICE_CODE

/* Work tile i of the grid's (fa3_begin's order): false where its rows are past its sequence
 * (every role skips it alike); else b's head, kv head, rows, table (every thread's). A
 * sequence's work tiles end at its last row and every 192 rows before it, so that the one
 * short tile, where the length is not a multiple of 192, is its first rows (the fewest
 * keys), and the tile at the causal diagonal's far end has all three warpgroups' rows: at
 * 512 tokens the tiles' longest rows see 512, 320 and 128 keys (15 key tiles) where tiles
 * from the first row would see 512, 384 and 192 (17); tools/fa3wts-balance.py counts the
 * busiest block's key tiles at 30 instead of 34 at 8 x 512, 51 instead of 61 at 4 x 1024, 51
 * instead of 53 at 1 x 2048. Either layout gives the same bits (a row's output depends on
 * its own keys alone). Session 35's knob FA3WTS_ALIGN_END, the default since run 43 (an
 * H100: 0.93-0.99 of the tiles from the first row's time at six shapes, three alternating
 * samples each) and no longer a knob. Two other knobs of fa3wts were timed and removed:
 * FA3WTS_WG_STORE (session 35: each consumer warpgroup staging its output in its own rows
 * of Q, in Q's layout, and going on to its next work tile without the store barrier; run
 * 42, an H200: correct, no faster) and FA3WTS_PIPE (session 36: fa3p's step in each
 * consumer, which then holds two of the three stages; run 43: correct, 4-7% slower);
 * docs/performance.md has both. */
static __device__ __forceinline__ bool fa3wts_item(fa3_block &b, int64_t i, const lr_gpu_attn_meta &m,
                                                   int64_t nh, int64_t nkv) {
    const int64_t h = i % nh, rest = i / nh, seq = rest % m.num_seqs, tile = rest / m.num_seqs;
    const int64_t end = m.seq_len[seq] - tile * FA3W_BQ, row0 = end > FA3W_BQ ? end - FA3W_BQ : 0;
    if (end <= 0) return false;
    b.h = h, b.g = h / (nh / nkv), b.tok0 = m.seq_start[seq] + row0;
    b.nrows = (int)(end - row0);
    b.table = m.block_tables + seq * m.max_blocks;
    return true;
}

/* The most keys any row of the work tile sees, from its Q buffer's pm (every producer warp's
 * two row ranges). */
static __device__ __forceinline__ int fa3wts_kmax(const int (&pm)[4][2]) {
    int k = 0;
#pragma unroll
    for (int v = 0; v < 8; v++)
        k = max(k, pm[v >> 1][v & 1]);
    return k;
}
#endif

template <typename E, int HD>
static __global__ void __launch_bounds__(FA3W_THREADS, 1)
    attention_fa3wts_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq, const E *k_cache, const E *v_cache,
                            lr_gpu_attn_meta m, int64_t nh, int64_t nkv, float scale, int64_t qtiles,
                            const __grid_constant__ CUtensorMap km, const __grid_constant__ CUtensorMap vm
#if FA3WTS_LPT
                            ,
                            const __grid_constant__ fa3wts_sched sc
#endif
    ) {
#ifdef FA3_DEVICE_CODE
    typedef fa3wts_layout<HD> Ly;
    constexpr int NS = FA3W_NS, BQ = FA3W_BQ, NT = FA3W_THREADS, CH = HD / 8, PBAR = ws_store<NS>() + 1;
    extern __shared__ __align__(1024) unsigned char fa3_smem[];
    __shared__ __align__(8) uint64_t full_s[NS];
    __shared__ int
        pm[2][4][2]; /* a Q buffer's work tile: the producer warps' most keys, rows 32w.. and 128 + 32w.. */
    __shared__ int32_t table_s[2][FA3_TABLE_SMEM > 0 ? FA3_TABLE_SMEM : 1];
    const int64_t items = nh * m.num_seqs * qtiles;
    fa3_block b;
    b.warp = threadIdx.x >> 5, b.wg = b.warp >> 2, b.lane = threadIdx.x & 31, b.tq = b.lane & 3;
    b.bsz = (int)m.block_size;
    b.raw = smem_u32(fa3_smem);
    const uint32_t base = (b.raw + 1023u) & ~1023u, kst = base + 2 * Ly::QS, vst = kst + NS * Ly::TB;
    const uint32_t full = smem_u32(full_s);
    if (threadIdx.x == 0) {
        for (int st = 0; st < NS; st++)
            mbar_init(full + 8 * st, 1);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (b.wg == FA3W_CWGS) { /* the producer */
        setmaxnreg_dec<FA3W_REG_PRODUCER>();
        const int tid = threadIdx.x - 2 * BQ, w = tid >> 5, pages = FA3_BN / b.bsz;
        int j = 0, g0 = 0;
#if FA3WTS_LPT
        for (int64_t r = 0; r < fa3wts_rounds(sc, items); r++) {
            const int64_t i = fa3wts_at(sc, r);
#else
        for (int64_t r = 0; r * gridDim.x < items; r++) {
            const int64_t i = fa3wts_index(r);
#endif
            if (i >= items || !fa3wts_item(b, i, m, nh, nkv)) continue;
            const int qb = j & 1;
            const uint32_t qs = base + qb * Ly::QS;
            if (j >= 2) bar_sync_n(ws_qempty<NS>(qb), NT); /* work tile j - 2 copied out, its copies issued */
            for (int x = tid; x < BQ * CH; x += 128) {
                const int r = x / CH, c = x % CH;
                const E *src = r < b.nrows ? q + (b.tok0 + r) * ldq + b.h * HD + c * 8 : q;
                cp_async16(qs + fa3_sw<BQ>(r, c), src, r < b.nrows ? 16 : 0);
            }
            cp_async_commit();
            int ka = tid < b.nrows ? m.token_keys[b.tok0 + tid] : 0;
            int kb = tid + 128 < b.nrows ? m.token_keys[b.tok0 + tid + 128] : 0;
#pragma unroll
            for (int o_ = 16; o_ > 0; o_ >>= 1) {
                ka = max(ka, __shfl_xor_sync(0xffffffffu, ka, o_));
                kb = max(kb, __shfl_xor_sync(0xffffffffu, kb, o_));
            }
            if (b.lane == 0) pm[qb][w][0] = ka, pm[qb][w][1] = kb;
            bar_sync_n(PBAR, 128); /* pm */
            b.kmax = fa3wts_kmax(pm[qb]);
            const int32_t *table = b.table;
#if FA3_TABLE_SMEM > 0
            const int nblk = b.kmax > 0 ? (b.kmax - 1) / b.bsz + 1 : 0;
            if (nblk <= FA3_TABLE_SMEM) {
                for (int e = tid; e < nblk; e += 128)
                    table_s[qb][e] = b.table[e];
                table = table_s[qb];
            }
#endif
            cp_async_wait<0>();
            fence_proxy_async();
            bar_sync_n(PBAR, 128);              /* the table's copy, every thread's Q landed */
            bar_arrive_n(ws_qfull<NS>(qb), NT); /* Q and pm to the consumers */
            const int ntiles = b.kmax / FA3_BN + (b.kmax % FA3_BN != 0), whole = b.kmax / FA3_BN;
            for (int t = 0; t < ntiles; t++) {
                const int gt = g0 + t, st = gt % NS;
                if (gt >= NS) bar_sync_n(ws_empty<NS>(st), NT); /* key tile gt - NS read by all */
                fa3_tma_tile<E, HD, PBAR>(b, table, &km, &vm, k_cache, v_cache, nkv, t, tid, pages, whole,
                                          kst + st * Ly::TB, vst + st * Ly::TB, full + 8 * st);
            }
            g0 += ntiles, j++;
        }
        for (int gt = max(g0 - NS, 0); gt < g0; gt++) /* the drains: the consumers arrive on every one */
            bar_sync_n(ws_empty<NS>(gt % NS), NT);
        for (int x = max(j - 2, 0); x < j; x++)
            bar_sync_n(ws_qempty<NS>(x & 1), NT);
        return;
    }

    setmaxnreg_inc<FA3W_REG_CONSUMER>();
    const float sl2 = scale * 1.4426950408889634f;
    b.ra = b.warp * 16 + (b.lane >> 2), b.rb = b.ra + 8;
    int j = 0, g0 = 0;
#if FA3WTS_LPT
    for (int64_t r = 0; r < fa3wts_rounds(sc, items); r++) {
        const int64_t i = fa3wts_at(sc, r);
#else
    for (int64_t r = 0; r * gridDim.x < items; r++) {
        const int64_t i = fa3wts_index(r);
#endif
        if (i >= items || !fa3wts_item(b, i, m, nh, nkv)) continue;
        const int qb = j & 1;
        const uint32_t qs = base + qb * Ly::QS;
        b.nka = b.ra < b.nrows ? m.token_keys[b.tok0 + b.ra] : 0;
        b.nkb = b.rb < b.nrows ? m.token_keys[b.tok0 + b.rb] : 0;
        int wmin = min(b.nka, b.nkb);
#pragma unroll
        for (int o_ = 16; o_ > 0; o_ >>= 1)
            wmin = min(wmin, __shfl_xor_sync(0xffffffffu, wmin, o_));
        b.wmin = wmin;
        bar_sync_n(ws_qfull<NS>(qb), NT);
        /* the warpgroup's rows: producer warps 0-1's first (WG 0), 2-3's first (WG 1), 0-1's second (WG 2) */
        const int pw = b.wg == 1 ? 2 : 0, pr = b.wg == 2 ? 1 : 0;
        b.wgmax = max(pm[qb][pw][pr], pm[qb][pw + 1][pr]);
        b.kmax = fa3wts_kmax(pm[qb]);
        const int ntiles = b.kmax / FA3_BN + (b.kmax % FA3_BN != 0);
        float o[HD / 2]; /* as fa3wt's */
#pragma unroll
        for (int x = 0; x < HD / 2; x++)
            o[x] = 0.0f;
        float ma = -INFINITY, mb = -INFINITY, la = 0.0f, lb = 0.0f;
        const uint64_t dq = fa3_desc(qs + b.wg * 64 * 128, 16, 1024);
        for (int t = 0; t < ntiles; t++) {
            const int gt = g0 + t, st = gt % NS, k0 = t * FA3_BN;
            mbar_wait(full + 8 * st, (uint32_t)(gt / NS) & 1u); /* the stage's (gt / NS)-th fill */
            if (k0 < b.wgmax)
                fa3_tile<E, HD, BQ>(o, ma, mb, la, lb, b, k0, sl2, dq, kst + st * Ly::TB, vst + st * Ly::TB);
            bar_arrive_n(ws_empty<NS>(st), NT);
        }
        b.kbuf = qs;                                 /* fa3_store stages its rows at b.kbuf: in Q's buffer */
        bar_sync_n(ws_store<NS>(), 128 * FA3W_CWGS); /* every consumer's wgmmas are done with this Q */
        fa3_store<E, HD>(ctx, ldc, b, o, la, lb, fa3_smem);
        bar_arrive_n(ws_qempty<NS>(qb), NT);
        g0 += ntiles, j++;
    }
#else
    __trap();
#endif
}

/* Whether this build has fa3's sm_90a kernel (LR_FA3_WGMMA, set by the makefile when it
 * compiles this file for sm_90a) and the current device can run it (an sm_90a image runs
 * on compute capability 9.0 alone); asked once per device. */
static bool fa3_runs_here(const void *kernel) {
#ifdef LR_FA3_WGMMA
    static signed char known[64]; /* 0 not asked, 1 yes, -1 no */
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
        (void)cudaGetLastError();
        return false;
    }
    if (known[dev] == 0) {
        int major = 0, minor = 0;
        cudaFuncAttributes fa;
        bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
                  major == 9 && minor == 0 && cudaFuncGetAttributes(&fa, kernel) == cudaSuccess;
        if (!ok) (void)cudaGetLastError();
        known[dev] = ok ? 1 : -1;
    }
    return known[dev] > 0;
#else
    (void)kernel;
    return false;
#endif
}

extern "C" bool lr_gpu_attention_fa3_native(bool *built) {
#ifdef LR_FA3_WGMMA
    *built = true;
#else
    *built = false;
#endif
    return fa3_runs_here((const void *)attention_fa3_kernel<__nv_bfloat16, 128>);
}

/* The kernels of this file: fa3's, fa3p's, fa3w's, fa3wp's, fa3wt's, fa3wts'. */
enum fa3_kind { FA3_PLAIN, FA3_PIPELINED, FA3_WS, FA3_WSP, FA3_WST, FA3_WSTS };

/* Whether fa3wt's (and fa3wts') TMA copies pages of this block size: whole pages a tile of
 * FA3_BN keys, each starting on a multiple of 8 rows (tools/model-fa3-layout.py's
 * check_tma_placement). */
static bool fa3_tma_pages(int64_t bsz) { return bsz > 0 && bsz % 8 == 0 && FA3_BN % bsz == 0; }

/* fa3wts' grid at most this many blocks where > 0 (lr_gpu_attention_fa3wts_grid_set). */
static int fa3wts_grid;
extern "C" void lr_gpu_attention_fa3wts_grid_set(int blocks) { fa3wts_grid = blocks > 0 ? blocks : 0; }

/* Each kind's query rows a block, threads and K/V stages. */
template <fa3_kind K> struct fa3_shape {
    static constexpr int BQ = FA3_BQ, THREADS = FA3_THREADS, NS = 2; /* fa3's and fa3p's */
};
template <> struct fa3_shape<FA3_WS> {
    static constexpr int BQ = FA3W_BQ, THREADS = FA3W_THREADS, NS = FA3W_NS;
};
template <> struct fa3_shape<FA3_WST> { /* fa3w's block */
    static constexpr int BQ = FA3W_BQ, THREADS = FA3W_THREADS, NS = FA3W_NS;
};
template <> struct fa3_shape<FA3_WSTS> { /* fa3w's block, persistent */
    static constexpr int BQ = FA3W_BQ, THREADS = FA3W_THREADS, NS = FA3W_NS;
};
template <> struct fa3_shape<FA3_WSP> {
    static constexpr int BQ = FA3WP_BQ, THREADS = FA3WP_THREADS, NS = FA3WP_NS;
};

/* cuTensorMapEncodeTiled, the driver's, through the runtime's entry point (no link to
 * libcuda); looked up once, NULL where the driver has none. */
static PFN_cuTensorMapEncodeTiled_v12000 fa3_map_encoder(void) {
    static PFN_cuTensorMapEncodeTiled_v12000 fn;
    static bool asked;
    if (!asked) {
        void *p = nullptr;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) ==
                cudaSuccess &&
            q == cudaDriverEntryPointSuccess)
            fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
        else
            (void)cudaGetLastError();
        asked = true;
    }
    return fn;
}

/* fa3wt's view of a cache (num_blocks, bsz, nkv, hd) of 16-bit E: a tensor of (rows, nkv,
 * hd), hd contiguous, copied in boxes of {64 dims, 1 kv head, bsz rows} (a page of one kv
 * head, half its head_dim at hd 128) in the 128-byte swizzle. The call does not say how
 * many blocks the cache has; the rows are bounded by the device's memory (what a cache on
 * it can hold, and within the copy's 32-bit coordinates), and the producer only asks for
 * pages of its sequence's keys. False where the encoder is missing or refuses. */
template <typename E>
static bool fa3_tensor_map(CUtensorMap *map, const void *cache, int64_t nkv, int64_t hd, int64_t bsz) {
    static size_t total[64]; /* each device's memory, asked once */
    int dev = 0;
    PFN_cuTensorMapEncodeTiled_v12000 encode = fa3_map_encoder();
    if (!encode || cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
        (void)cudaGetLastError();
        return false;
    }
    if (total[dev] == 0) {
        cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
            (void)cudaGetLastError();
            return false;
        }
        total[dev] = prop.totalGlobalMem;
    }
    const uint64_t row = (uint64_t)(nkv * hd) * sizeof(E), rows = total[dev] / row;
    const cuuint64_t dims[3] = {(cuuint64_t)hd, (cuuint64_t)nkv, rows < INT32_MAX ? rows : INT32_MAX};
    const cuuint64_t strides[2] = {(cuuint64_t)hd * sizeof(E), row};
    const cuuint32_t box[3] = {64, 1, (cuuint32_t)bsz}, step[3] = {1, 1, 1};
    const CUtensorMapDataType type = std::is_same<E, __nv_bfloat16>::value ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                                           : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
    return encode(map, type, 3, const_cast<void *>(cache), dims, strides, box, step,
                  CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                  CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

#if FA3WTS_LPT
/* FA3WTS_LPT's schedule (fa3wts_sched.h) for the launch's shape, built again only when the
 * shape changes (the last one kept, a host thread's). */
static const fa3wts_sched *fa3wts_lpt(int64_t grid, int64_t nh, int64_t nseq, int64_t qtiles, int64_t len) {
    static thread_local int64_t key[5] = {-1, -1, -1, -1, -1};
    static thread_local fa3wts_sched sc;
    const int64_t k[5] = {grid, nh, nseq, qtiles, len};
    if (memcmp(k, key, sizeof k) != 0) {
        fa3wts_sched_build(&sc, grid, nh, nseq, qtiles, len);
        memcpy(key, k, sizeof k);
    }
    return &sc;
}
#endif

/* The kernel of kind K, its grid of BQ-row blocks, its threads and shared memory. */
template <typename E, int HD, fa3_kind K>
static int fa3_launch(const lr_gpu_attention_args *a, cudaStream_t s) {
    typedef fa3_shape<K> Sh;
    const lr_gpu_attn_meta *m = &a->meta;
    auto kernel = K == FA3_WSP ? attention_fa3wp_kernel<E, HD>
                  : K == FA3_WS || K == FA3_WST || K == FA3_WSTS
                      ? attention_fa3w_kernel<E, HD> /* fa3wt's and fa3wts': fa3w's where they cannot */
                  : K == FA3_PIPELINED ? attention_fa3p_kernel<E, HD>
                                       : attention_fa3_kernel<E, HD>;
    constexpr int bq = Sh::BQ, threads = Sh::THREADS;
    int64_t qtiles = (m->max_seq_len + bq - 1) / bq;
    if (qtiles == 0 || m->num_seqs == 0) return LR_OK;
    if (m->num_seqs * qtiles > INT32_MAX / a->nh || !fa3_runs_here((const void *)kernel))
        return lr_gpu_attention_fa2(a, s);
    size_t smem = fa3_layout<HD, Sh::BQ, Sh::NS>::bytes;
    unsigned int grid = (unsigned int)(a->nh * m->num_seqs * qtiles);
    if constexpr (K == FA3_WST ||
                  K == FA3_WSTS) { /* whole pages a tile, each on a multiple of 8 rows; else fa3w */
        CUtensorMap km, vm;
        if (!fa3_tma_pages(m->block_size) || !fa3_tensor_map<E>(&km, a->k_cache, a->nkv, HD, m->block_size) ||
            !fa3_tensor_map<E>(&vm, a->v_cache, a->nkv, HD, m->block_size))
            return fa3_launch<E, HD, FA3_WS>(a, s);
        const void *tma = K == FA3_WST ? (const void *)attention_fa3wt_kernel<E, HD>
                                       : (const void *)attention_fa3wts_kernel<E, HD>;
        if (!fa3_runs_here(tma)) return lr_gpu_attention_fa2(a, s);
        if constexpr (K == FA3_WSTS) { /* a block an SM, each taking a work tile a row of the grid */
            const int most = fa3wts_grid > 0 ? fa3wts_grid : lr_gpu_sm_count();
            smem = fa3wts_layout<HD>::bytes;
            if (most > 0 && grid > (unsigned int)most) grid = (unsigned int)most;
        }
        CUDA_CHECK(cudaFuncSetAttribute(tma, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        if constexpr (K == FA3_WST) {
            attention_fa3wt_kernel<E, HD><<<grid, threads, smem, s>>>(
                (E *)a->ctx, a->ldc, (const E *)a->q, a->ldq, (const E *)a->k_cache, (const E *)a->v_cache,
                *m, a->nh, a->nkv, a->scale, qtiles, km, vm);
        } else {
#if FA3WTS_LPT
            const fa3wts_sched *sc = fa3wts_lpt(grid, a->nh, m->num_seqs, qtiles, m->max_seq_len);
#endif
            attention_fa3wts_kernel<E, HD><<<grid, threads, smem, s>>>(
                (E *)a->ctx, a->ldc, (const E *)a->q, a->ldq, (const E *)a->k_cache, (const E *)a->v_cache,
                *m, a->nh, a->nkv, a->scale, qtiles, km, vm
#if FA3WTS_LPT
                ,
                *sc
#endif
            );
        }
    } else {
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        kernel<<<grid, threads, smem, s>>>((E *)a->ctx, a->ldc, (const E *)a->q, a->ldq,
                                           (const E *)a->k_cache, (const E *)a->v_cache, *m, a->nh, a->nkv,
                                           a->scale, qtiles);
    }
    LAUNCH_CHECK();
    return LR_OK;
}

template <typename E, fa3_kind K> static int attention_fa3_t(const lr_gpu_attention_args *a, cudaStream_t s) {
    if constexpr (std::is_same<E, float>::value) /* wgmma has no float32 operands: fa2's (tc's) paths */
        return lr_gpu_attention_fa2(a, s);
    else if (fa_prefill_takes(a))
        return a->hd == 64 ? fa3_launch<E, 64, K>(a, s) : fa3_launch<E, 128, K>(a, s);
    return lr_gpu_attention_fa2(a, s);
}
template <typename E> static int attention_fa3(const lr_gpu_attention_args *a, cudaStream_t s) {
    return attention_fa3_t<E, FA3_PLAIN>(a, s);
}
template <typename E> static int attention_fa3p(const lr_gpu_attention_args *a, cudaStream_t s) {
    return attention_fa3_t<E, FA3_PIPELINED>(a, s);
}
template <typename E> static int attention_fa3w(const lr_gpu_attention_args *a, cudaStream_t s) {
    return attention_fa3_t<E, FA3_WS>(a, s);
}
template <typename E> static int attention_fa3wp(const lr_gpu_attention_args *a, cudaStream_t s) {
    return attention_fa3_t<E, FA3_WSP>(a, s);
}
template <typename E> static int attention_fa3wt(const lr_gpu_attention_args *a, cudaStream_t s) {
    return attention_fa3_t<E, FA3_WST>(a, s);
}
template <typename E> static int attention_fa3wts(const lr_gpu_attention_args *a, cudaStream_t s) {
    return attention_fa3_t<E, FA3_WSTS>(a, s);
}

/* The default's prefill (fdt's and fdtc's hand-off): fa3wts where fa3wt's grid, one 192-row
 * block a work tile, is at most FA3WT_MAX_WAVES times the card's SMs and the block size is
 * one its TMA copies (8, 16, 32, 64); fa3 otherwise, whose 128-row blocks fit two an SM. Both
 * give fa3's bits, so the choice moves only time. Run 39 (an H100, bf16, 32/8 heads,
 * head_dim 128, causal; docs/performance.md): fa3wt 6-15% faster for one sequence of 768 to
 * 2048 tokens (2.67 waves at 2048), level at 2 x 1024 (2.9 waves) and at one of 512, and
 * 7-19% slower at 4 x 1024 (5.8 waves), 8 x 512 (5.8) and 16 x 512 (11.6), where fa3's
 * second block an SM hides more of each block's start and finish. Run 41 (an H100): fa3wts,
 * persistent, at most fa3wt's time at every one of those shapes (1 x 2048 105.4 us against
 * fa3wt's 109.1 and fa3's 122.6; 2 x 1024 70.0 against 72.0 and 72.2) and within 1% of fa3's
 * at 8 x 512 and 16 x 512; 2.5% below fa3's at 4 x 1024, one sample, so the bound stayed 3.
 * Run 43 (an H100, three alternating samples each, medians), fa3wts with FA3WTS_ALIGN_END
 * against fa3: 0.92 of fa3's time at 4 x 1024 (115.4 us against 125.2; 5.8 waves), 0.96 at
 * 8 x 512 (80.7 against 83.9; 5.8) and 0.98 at 16 x 512 (152.0 against 155.5; 11.6), the
 * gain shrinking as the grid grows; so the bound is 12 waves, the largest grid timed, and
 * fa3 keeps the grids past it, untimed. A build may set it (-DFA3WT_MAX_WAVES=N, as
 * gpu-trial.sh passes knobs) to time the rows with the bound elsewhere. */
#ifndef FA3WT_MAX_WAVES
#define FA3WT_MAX_WAVES 12
#endif
template <typename E> static int attention_fa3_prefill(const lr_gpu_attention_args *a, cudaStream_t s) {
    const lr_gpu_attn_meta *m = &a->meta;
    const int64_t blocks = a->nh * m->num_seqs * ((m->max_seq_len + FA3W_BQ - 1) / FA3W_BQ);
    if (fa3_tma_pages(m->block_size) && blocks <= (int64_t)FA3WT_MAX_WAVES * lr_gpu_sm_count())
        return attention_fa3wts<E>(a, s);
    return attention_fa3<E>(a, s);
}

ATTN_LAUNCHER(lr_gpu_attention_fa3, attention_fa3)
ATTN_LAUNCHER(lr_gpu_attention_fa3_prefill, attention_fa3_prefill)
ATTN_LAUNCHER(lr_gpu_attention_fa3p, attention_fa3p)
ATTN_LAUNCHER(lr_gpu_attention_fa3w, attention_fa3w)
ATTN_LAUNCHER(lr_gpu_attention_fa3wp, attention_fa3wp)
ATTN_LAUNCHER(lr_gpu_attention_fa3wt, attention_fa3wt)
ATTN_LAUNCHER(lr_gpu_attention_fa3wts, attention_fa3wts)
