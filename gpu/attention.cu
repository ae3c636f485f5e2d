/* attention.cu: causal attention of a batch of sequences through the paged KV cache, the
 * twin of lr_ref_attention in ref/ops/attention.c (which the test runs per sequence on
 * contiguous K/V). Query token t of sequence s sees the first token_keys[t] keys of s,
 * found through s's block table; query head h reads kv head h / (nh / nkv). Scores,
 * softmax and the weighted sum are float32, the softmax online (running max and sum,
 * rescaled as the max grows), so no score matrix is ever stored.
 *
 * Threads of a warp split the head dimension: lane l owns dimensions l, l + 32, ...; DPL
 * (dimensions per lane, hd <= 32 DPL) is a template parameter so those slices live in
 * registers. */
#include "common.cuh"

/* The registry's lookup (registry.cu). */
typedef int (*lr_gpu_launch)(const void *args, cudaStream_t s);
int lr_gpu_variant_find(const char *family, const char *name, lr_gpu_launch *out);

/* What every attention launcher receives. */
typedef struct {
    void *ctx; /* (T, ldc) */
    int64_t ldc;
    const void *q; /* (T, ldq) */
    int64_t ldq;
    const void *k_cache, *v_cache; /* (num_blocks, block_size, nkv, hd) */
    lr_gpu_attn_meta meta;
    int64_t T, nh, nkv, hd;
    float scale;
    lr_dtype dt;
} attention_args;

#define ATTN_MAX_HD 256 /* 32 lanes x DPL 8 */
#define MAX_BLOCKS 65535

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

/* ---- "flash" ------------------------------------------------------------------------
 * A block takes FL_BQ consecutive query rows of one (sequence, head): gridDim.x runs over
 * (sequence, query tile), gridDim.y over heads. Its FL_WARPS warps each own FL_ROWS of the
 * rows, interleaved (row = warp + FL_WARPS i) so that a short tile (decode: one row) still
 * gives each row its own warp. Keys come in tiles of FL_BK = 32, one per lane for the
 * scores; K and V of the tile are staged as float32 in shared memory:
 *   qs (FL_BQ, hd) | ks (FL_BK, hd + 1) | vs (FL_BK, hd) | ps (FL_BQ, FL_BK)
 * ks rows have an odd stride so that the 32 lanes, each reading its own key's row at the
 * same d, hit 32 different banks. */
#define FL_WARPS 4
#define FL_ROWS 4
#define FL_BQ (FL_WARPS * FL_ROWS)
#define FL_BK 32

static size_t flash_smem_bytes(int64_t hd) {
    return (size_t)(FL_BQ * hd + FL_BK * (hd + 1) + FL_BK * hd + FL_BQ * FL_BK) * sizeof(float);
}

template <typename E, int DPL>
static __global__ void __launch_bounds__(FL_WARPS * 32)
    attention_flash_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq, const E *k_cache, const E *v_cache,
                           lr_gpu_attn_meta m, int64_t nh, int64_t nkv, int64_t hd, float scale,
                           int64_t qtiles) {
    static_assert(FL_BK == 32, "one key per lane");
    extern __shared__ float smem[];
    float *qs = smem;
    float *ks = qs + FL_BQ * hd;
    float *vs = ks + FL_BK * (hd + 1);
    float *ps = vs + FL_BK * hd;
    __shared__ int kmax_s;

    int64_t seq = blockIdx.x / qtiles, row0 = (blockIdx.x % qtiles) * FL_BQ;
    int64_t h = blockIdx.y, g = h / (nh / nkv);
    int64_t len = m.seq_len[seq];
    if (row0 >= len) return; /* block-uniform, and before any barrier */
    int64_t tok0 = m.seq_start[seq] + row0;
    int nrows = (int)(len - row0 < FL_BQ ? len - row0 : FL_BQ);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int32_t *table = m.block_tables + seq * m.max_blocks;

    /* The tile's queries, and the most keys any of its rows sees (the key loop's end). */
    for (int r = warp; r < FL_BQ; r += FL_WARPS)
        for (int64_t d = lane; d < hd; d += 32)
            qs[r * hd + d] = r < nrows ? ld(q + (tok0 + r) * ldq + h * hd + d) : 0.0f;
    if (threadIdx.x == 0) {
        int km = 0;
        for (int r = 0; r < nrows; r++)
            km = max(km, m.token_keys[tok0 + r]);
        kmax_s = km;
    }
    __syncthreads();
    const int kmax = kmax_s;

    float mrow[FL_ROWS], lrow[FL_ROWS], o[FL_ROWS][DPL];
    int nk[FL_ROWS];
#pragma unroll
    for (int i = 0; i < FL_ROWS; i++) {
        int r = warp + FL_WARPS * i;
        nk[i] = r < nrows ? m.token_keys[tok0 + r] : 0;
        mrow[i] = -INFINITY;
        lrow[i] = 0.0f; /* this lane's share of the row's softmax denominator */
#pragma unroll
        for (int dd = 0; dd < DPL; dd++)
            o[i][dd] = 0.0f;
    }

    for (int k0 = 0; k0 < kmax; k0 += FL_BK) {
        /* Stage keys k0 .. k0 + 31 (zeros past kmax: nothing reads them as live, and zeros
         * keep 0 * garbage from making NaN). */
        for (int j = warp; j < FL_BK; j += FL_WARPS) {
            float *kd = ks + j * (hd + 1), *vd = vs + j * hd;
            if (k0 + j < kmax) {
                int64_t off = key_offset(table, m.block_size, k0 + j, nkv, hd, g);
                for (int64_t d = lane; d < hd; d += 32) {
                    kd[d] = ld(k_cache + off + d);
                    vd[d] = ld(v_cache + off + d);
                }
            } else {
                for (int64_t d = lane; d < hd; d += 32)
                    kd[d] = vd[d] = 0.0f;
            }
        }
        __syncthreads();
        const int nt = kmax - k0 < FL_BK ? kmax - k0 : FL_BK;
#pragma unroll
        for (int i = 0; i < FL_ROWS; i++) {
            int r = warp + FL_WARPS * i;
            if (r >= nrows || k0 >= nk[i]) continue; /* warp-uniform: r, nk[i] are */
            /* Lane j scores key k0 + j; keys the row may not see score -inf. */
            float sc = -INFINITY;
            if (k0 + lane < nk[i]) {
                const float *qr = qs + r * hd, *kr = ks + lane * (hd + 1);
                float acc = 0.0f;
                for (int64_t d = 0; d < hd; d++)
                    acc += qr[d] * kr[d];
                sc = acc * scale;
            }
            /* Key k0 is visible (k0 < nk[i]), so mnew is finite; on the row's first tile
             * mrow is -inf and corr is 0, which clears nothing but zeros. */
            float mnew = fmaxf(mrow[i], warp_max(sc));
            float corr = expf(mrow[i] - mnew);
            float p = expf(sc - mnew);
            mrow[i] = mnew;
            lrow[i] = lrow[i] * corr + p;
            ps[r * FL_BK + lane] = p;
            __syncwarp();
#pragma unroll
            for (int dd = 0; dd < DPL; dd++)
                o[i][dd] *= corr;
            for (int j = 0; j < nt; j++) {
                float pj = ps[r * FL_BK + j];
                const float *vr = vs + j * hd;
#pragma unroll
                for (int dd = 0; dd < DPL; dd++) {
                    int64_t d = lane + 32 * dd;
                    if (d < hd) o[i][dd] += pj * vr[d];
                }
            }
        }
        __syncthreads(); /* ks, vs are restaged for the next tile */
    }

#pragma unroll
    for (int i = 0; i < FL_ROWS; i++) {
        int r = warp + FL_WARPS * i;
        if (r >= nrows) continue;
        float l = warp_sum(lrow[i]);
        float inv = l > 0.0f ? 1.0f / l : 0.0f;
        E *out = ctx + (tok0 + r) * ldc + h * hd;
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) {
            int64_t d = lane + 32 * dd;
            if (d < hd) st(out + d, o[i][dd] * inv);
        }
    }
}

template <typename E, int DPL> static int flash_launch(const attention_args *a, cudaStream_t s) {
    const lr_gpu_attn_meta *m = &a->meta;
    int64_t qtiles = (m->max_seq_len + FL_BQ - 1) / FL_BQ;
    if (qtiles == 0 || m->num_seqs == 0) return LR_OK;
    if (m->num_seqs * qtiles > INT32_MAX || a->nh > 65535)
        return lr_fail(LR_E_INVAL,
                       "gpu attention (flash): %lld sequences x %lld query tiles or %lld heads "
                       "exceed the grid",
                       (long long)m->num_seqs, (long long)qtiles, (long long)a->nh);
    size_t smem = flash_smem_bytes(a->hd);
    /* Above 48 KiB (head_dim 256: 84 KiB) a kernel must opt in to dynamic shared memory;
     * sm_90 allows up to 227 KiB per block. */
    if (smem > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(attention_flash_kernel<E, DPL>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((unsigned int)(m->num_seqs * qtiles), (unsigned int)a->nh);
    attention_flash_kernel<E, DPL><<<grid, FL_WARPS * 32, smem, s>>>(
        (E *)a->ctx, a->ldc, (const E *)a->q, a->ldq, (const E *)a->k_cache, (const E *)a->v_cache, *m, a->nh,
        a->nkv, a->hd, a->scale, qtiles);
    LAUNCH_CHECK();
    return LR_OK;
}

template <typename E> static int attention_flash(const attention_args *a, cudaStream_t s) {
    if (a->hd <= 32) return flash_launch<E, 1>(a, s);
    if (a->hd <= 64) return flash_launch<E, 2>(a, s);
    if (a->hd <= 128) return flash_launch<E, 4>(a, s);
    return flash_launch<E, 8>(a, s);
}

int lr_gpu_attention_flash(const void *args, cudaStream_t s) {
    const attention_args *a = (const attention_args *)args;
    return LR_DISPATCH_DTYPE(a->dt, attention_flash, a, s);
}

/* ---- "simple" -----------------------------------------------------------------------
 * One warp per (token, head), keys one at a time: a dot product reduced over the warp,
 * then the online-softmax update of the running max, sum and weighted V. Slow, and
 * meant to be obviously right. */
#define SIMPLE_WARPS 4

template <typename E, int DPL>
static __global__ void __launch_bounds__(SIMPLE_WARPS * 32)
    attention_simple_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq, const E *k_cache, const E *v_cache,
                            lr_gpu_attn_meta m, int64_t T, int64_t nh, int64_t nkv, int64_t hd, float scale) {
    int lane = threadIdx.x & 31;
    int64_t stride = (int64_t)gridDim.x * SIMPLE_WARPS;
    for (int64_t w = (int64_t)blockIdx.x * SIMPLE_WARPS + (threadIdx.x >> 5); w < T * nh; w += stride) {
        int64_t t = w / nh, h = w - t * nh, g = h / (nh / nkv);
        const int32_t *table = m.block_tables + (int64_t)m.token_seq[t] * m.max_blocks;
        int64_t nk = m.token_keys[t];
        float qv[DPL], o[DPL];
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) {
            int64_t d = lane + 32 * dd;
            qv[dd] = d < hd ? ld(q + t * ldq + h * hd + d) : 0.0f;
            o[dd] = 0.0f;
        }
        float mx = -INFINITY, l = 0.0f;
        for (int64_t j = 0; j < nk; j++) {
            int64_t off = key_offset(table, m.block_size, j, nkv, hd, g);
            float dot = 0.0f;
#pragma unroll
            for (int dd = 0; dd < DPL; dd++) {
                int64_t d = lane + 32 * dd;
                if (d < hd) dot += qv[dd] * ld(k_cache + off + d);
            }
            float sc = warp_sum(dot) * scale; /* the same in every lane */
            float mnew = fmaxf(mx, sc);
            float corr = expf(mx - mnew), p = expf(sc - mnew);
            l = l * corr + p;
#pragma unroll
            for (int dd = 0; dd < DPL; dd++) {
                int64_t d = lane + 32 * dd;
                if (d < hd) o[dd] = o[dd] * corr + p * ld(v_cache + off + d);
            }
            mx = mnew;
        }
        float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) {
            int64_t d = lane + 32 * dd;
            if (d < hd) st(ctx + t * ldc + h * hd + d, o[dd] * inv);
        }
    }
}

template <typename E, int DPL> static int simple_launch(const attention_args *a, cudaStream_t s) {
    int64_t blocks = (a->T * a->nh + SIMPLE_WARPS - 1) / SIMPLE_WARPS;
    unsigned int grid = (unsigned int)(blocks < MAX_BLOCKS ? blocks : MAX_BLOCKS);
    attention_simple_kernel<E, DPL><<<grid, SIMPLE_WARPS * 32, 0, s>>>(
        (E *)a->ctx, a->ldc, (const E *)a->q, a->ldq, (const E *)a->k_cache, (const E *)a->v_cache, a->meta,
        a->T, a->nh, a->nkv, a->hd, a->scale);
    LAUNCH_CHECK();
    return LR_OK;
}

template <typename E> static int attention_simple(const attention_args *a, cudaStream_t s) {
    if (a->hd <= 32) return simple_launch<E, 1>(a, s);
    if (a->hd <= 64) return simple_launch<E, 2>(a, s);
    if (a->hd <= 128) return simple_launch<E, 4>(a, s);
    return simple_launch<E, 8>(a, s);
}

int lr_gpu_attention_simple(const void *args, cudaStream_t s) {
    const attention_args *a = (const attention_args *)args;
    return LR_DISPATCH_DTYPE(a->dt, attention_simple, a, s);
}

/* ---- "tc": tensor cores for prefill, split keys for decode ---------------------------
 * The default. Three paths, chosen per call:
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
 *  - anything else (F32, other head sizes, unaligned pointers): the flash kernel above. */
#include <mma.h>

#define SP_WARPS 4
#define SP_UNROLL 4   /* keys in flight per warp */
#define SP_MIN_CHUNK 64
#define SPLIT_UNHANDLED 1 /* not a status: the group size has no instance; flash takes it */

/* Scratch for the split partials, one per device, grown on demand (never during a
 * forward that a CUDA graph captures: the sizes are reached in its warm-up). */
static void *sp_ws[64];
static size_t sp_ws_cap[64];

static int split_workspace(size_t bytes, void **out) {
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    if (dev < 0 || dev >= 64) return lr_fail(LR_E_DEVICE, "gpu attention: device %d out of range", dev);
    if (sp_ws_cap[dev] < bytes) {
        cudaFree(sp_ws[dev]);
        sp_ws[dev] = NULL;
        sp_ws_cap[dev] = 0;
        CUDA_CHECK(cudaMalloc(&sp_ws[dev], bytes));
        sp_ws_cap[dev] = bytes;
    }
    *out = sp_ws[dev];
    return LR_OK;
}

template <int N> struct sp_vec;
template <> struct sp_vec<4> { typedef unsigned int T; };
template <> struct sp_vec<8> { typedef uint2 T; };
template <> struct sp_vec<16> { typedef uint4 T; };

/* Grid (num_seqs * nsplit, nkv). Lane l owns dims l*DPL .. l*DPL + DPL - 1 (those < hd).
 * part_o (num_seqs * nh * nsplit, hd), part_ml (num_seqs * nh * nsplit, 2): the chunk's
 * unnormalised output, max and sum; with nsplit 1 the block writes ctx itself. */
template <typename E, int DPL, int G>
static __global__ void __launch_bounds__(SP_WARPS * 32)
    attention_split_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq, const E *k_cache, const E *v_cache,
                           lr_gpu_attn_meta m, int64_t nh, int64_t nkv, int64_t hd, float scale, int nsplit,
                           int64_t chunk, float *part_o, float *part_ml, bool vec) {
    __shared__ float so[SP_WARPS][G][DPL * 32];
    __shared__ float sm[SP_WARPS][G], sl[SP_WARPS][G];
    int64_t seq = blockIdx.x / nsplit, c = blockIdx.x % nsplit, g = blockIdx.y;
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
            int64_t pi = (seq * nh + h) * nsplit + c;
            part_o[pi * hd + d] = O;
            if (d == 0) part_ml[2 * pi] = M, part_ml[2 * pi + 1] = L;
        }
    }
}

/* Grid (num_seqs * nh): merges a (sequence, head)'s chunks into ctx. */
template <typename E>
static __global__ void attention_merge_kernel(E *ctx, int64_t ldc, lr_gpu_attn_meta m, int64_t nh, int64_t hd,
                                              int nsplit, const float *part_o, const float *part_ml) {
    int64_t seq = blockIdx.x / nh, h = blockIdx.x % nh;
    int64_t t = m.seq_start[seq];
    int64_t base = (seq * nh + h) * nsplit;
    float M = -INFINITY;
    for (int c = 0; c < nsplit; c++)
        M = fmaxf(M, part_ml[2 * (base + c)]);
    for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
        float L = 0.0f, O = 0.0f;
        if (M != -INFINITY)
            for (int c = 0; c < nsplit; c++) {
                float f = expf(part_ml[2 * (base + c)] - M);
                L += f * part_ml[2 * (base + c) + 1];
                O += f * part_o[(base + c) * hd + d];
            }
        st(ctx + t * ldc + h * hd + d, L > 0.0f ? O / L : 0.0f);
    }
}

template <typename E, int DPL, int G> static int split_launch(const attention_args *a, cudaStream_t s) {
    const lr_gpu_attn_meta *m = &a->meta;
    int64_t B = m->num_seqs, maxk = m->max_keys;
    if (B == 0 || maxk == 0) return LR_OK;
    /* About eight blocks per SM (132 SMs on an H100), no chunk under SP_MIN_CHUNK keys. */
    int64_t want = (1056 + B * a->nkv - 1) / (B * a->nkv), most = (maxk + SP_MIN_CHUNK - 1) / SP_MIN_CHUNK;
    int nsplit = (int)(want < most ? want : most);
    if (nsplit < 1) nsplit = 1;
    int64_t chunk = (maxk + nsplit - 1) / nsplit;
    /* Vector loads when each lane's DPL elements are 4, 8 or 16 aligned bytes. */
    int vb = DPL * (int)sizeof(E);
    bool vec = (vb == 4 || vb == 8 || vb == 16) && a->hd == 32 * DPL && ((uintptr_t)a->k_cache % 16) == 0 &&
               ((uintptr_t)a->v_cache % 16) == 0;
    if (B * nsplit > INT32_MAX || a->nkv > 65535)
        return lr_fail(LR_E_INVAL, "gpu attention (tc): %lld sequences or %lld kv heads exceed the grid",
                       (long long)B, (long long)a->nkv);
    float *po = NULL, *pml = NULL;
    if (nsplit > 1) {
        size_t n = (size_t)(B * a->nh * nsplit);
        void *ws;
        int rc = split_workspace(n * (size_t)(a->hd + 2) * sizeof(float), &ws);
        if (rc) return rc;
        po = (float *)ws;
        pml = po + n * (size_t)a->hd;
    }
    dim3 grid((unsigned int)(B * nsplit), (unsigned int)a->nkv);
    attention_split_kernel<E, DPL, G><<<grid, SP_WARPS * 32, 0, s>>>(
        (E *)a->ctx, a->ldc, (const E *)a->q, a->ldq, (const E *)a->k_cache, (const E *)a->v_cache, *m, a->nh,
        a->nkv, a->hd, a->scale, nsplit, chunk, po, pml, vec);
    LAUNCH_CHECK();
    if (nsplit > 1) {
        if (B * a->nh > INT32_MAX) return lr_fail(LR_E_INVAL, "gpu attention (tc): grid too large");
        attention_merge_kernel<E><<<(unsigned int)(B * a->nh), 128, 0, s>>>((E *)a->ctx, a->ldc, *m, a->nh, a->hd,
                                                                             nsplit, po, pml);
        LAUNCH_CHECK();
    }
    return LR_OK;
}

template <typename E, int DPL> static int split_group(const attention_args *a, cudaStream_t s) {
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

/* Two elements stored at once (P's rows start 4-byte aligned). */
template <typename E> struct __align__(4) E2 { E a, b; };

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
    if (threadIdx.x == 0) {
        int km = 0;
        for (int r = 0; r < nrows; r++)
            km = max(km, m.token_keys[tok0 + r]);
        kmax_s = km;
    }
    __syncthreads();
    const int kmax = kmax_s;

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

template <typename E, int HD> static int wmma_launch(const attention_args *a, cudaStream_t s) {
    const lr_gpu_attn_meta *m = &a->meta;
    int64_t qtiles = (m->max_seq_len + TC_BQ - 1) / TC_BQ;
    if (qtiles == 0 || m->num_seqs == 0) return LR_OK;
    if (m->num_seqs * qtiles > 65535 || a->nh > INT32_MAX) return attention_flash<E>(a, s);
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

template <typename E> static int attention_tc(const attention_args *a, cudaStream_t s) {
    if (a->meta.max_seq_len == 1) {
        int rc = a->hd <= 32    ? split_group<E, 1>(a, s)
                 : a->hd <= 64  ? split_group<E, 2>(a, s)
                 : a->hd <= 128 ? split_group<E, 4>(a, s)
                                : split_group<E, 8>(a, s);
        if (rc != SPLIT_UNHANDLED) return rc;
    } else if (sizeof(E) == 2 && (a->hd == 64 || a->hd == 128) && ((uintptr_t)a->k_cache & 15) == 0 &&
               ((uintptr_t)a->v_cache & 15) == 0) {
        return a->hd == 64 ? wmma_launch<E, 64>(a, s) : wmma_launch<E, 128>(a, s);
    }
    return attention_flash<E>(a, s);
}

/* wmma has no float32 operands (only tf32): F32 goes to flash. */
template <> int attention_tc<float>(const attention_args *a, cudaStream_t s) {
    if (a->meta.max_seq_len == 1) {
        int rc = a->hd <= 32    ? split_group<float, 1>(a, s)
                 : a->hd <= 64  ? split_group<float, 2>(a, s)
                 : a->hd <= 128 ? split_group<float, 4>(a, s)
                                : split_group<float, 8>(a, s);
        if (rc != SPLIT_UNHANDLED) return rc;
    }
    return attention_flash<float>(a, s);
}

int lr_gpu_attention_tc(const void *args, cudaStream_t s) {
    const attention_args *a = (const attention_args *)args;
    return LR_DISPATCH_DTYPE(a->dt, attention_tc, a, s);
}

/* ---- "fa2": FlashAttention-2 on mma.sync for long prefill ------------------------------
 * For prefill in bf16/f16 at head_dim 64 or 128. A block takes FA_BQ = 64 query rows of
 * one (sequence, head), 16 per warp; each warp keeps its Q rows as mma A fragments in
 * registers for the whole key loop. Keys and values come in tiles of FA_BK = 64 from the
 * paged cache into shared memory with cp.async, double-buffered (tile t + 1 is fetched
 * while tile t is used). Per tile and warp: S = Q K^T with mma.m16n8k16 (K fragments by
 * ldmatrix), scores kept in the accumulator registers, scaled by scale * log2(e), masked
 * per row (the row's token_keys), online softmax in float32 with exp2f; P is rounded to
 * the dtype in registers and used directly as the A operand of O += P V (V fragments by
 * ldmatrix.trans). As in tc, P is the one rounded intermediate and the row sum is taken
 * over the rounded P. O stays in float32 registers and is rounded once at the end.
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
#define FA_BQ 64 /* query rows per block */
#define FA_BK 64 /* keys per tile */
#define FA_WARPS 4
static_assert(FA_BQ == 16 * FA_WARPS, "each warp owns the 16 rows of one mma row block");
static_assert(FA_BK % 16 == 0, "a key tile is whole 16-key k-steps of P V");
static_assert(FA_BQ <= FA_BK, "Q and the output rows are staged in one K buffer");

/* Shared memory, elements of E: K0 | V0 | K1 | V1, each FA_BK rows of LD = HD + 8. The
 * 16-byte pad makes a row an odd number of 16-byte units, so the 8 rows one ldmatrix
 * phase reads fall in 8 different bank quads. Q waits in K1 until every warp holds its
 * fragments (tile 1 is fetched only after that), the output rows are staged in K0 after
 * the last tile. hd 128: 4 x 64 x 136 x 2 B = 68 KiB per block (two blocks per SM: the
 * 188 registers a thread needs bound it before shared memory does); hd 64:
 * 4 x 64 x 72 x 2 B = 36 KiB. */
template <int HD> struct fa_layout {
    static constexpr int LD = HD + 8;
    static constexpr int tile = FA_BK * LD; /* elements of one K or V buffer */
    static constexpr size_t bytes = 4 * (size_t)tile * 2;
    static_assert(HD % 32 == 0, "one ldmatrix.x4 of K covers two 16-wide k-steps");
    static_assert((LD * 2) % 16 == 0 && (LD * 2 / 16) % 2 == 1,
                  "rows 16-byte aligned, an odd number of 16 B");
    static_assert(bytes <= 227 * 1024, "within sm_90's shared memory per block");
};

static __device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared, asynchronously; src_bytes 0 writes zeros and reads nothing. */
static __device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
                 : "memory");
}
static __device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N> static __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i, r[i] gets
 * element (l / 4, 2 (l % 4)..+1) of it (of its transpose with .trans). */
static __device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
static __device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* c (16x8, f32) += a (16x16) b (16x8), and the rounding of two floats into an A/B
 * register (lo in the low half) with the rounded values handed back. */
template <typename E> struct fa_mma;
template <> struct fa_mma<__nv_bfloat16> {
    static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                               uint32_t b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi, float &rlo, float &rhi) {
        __nv_bfloat16 l = __float2bfloat16_rn(lo), h = __float2bfloat16_rn(hi);
        rlo = __bfloat162float(l), rhi = __bfloat162float(h);
        return (uint32_t)__bfloat16_as_ushort(l) | ((uint32_t)__bfloat16_as_ushort(h) << 16);
    }
};
template <> struct fa_mma<__half> {
    static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                               uint32_t b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi, float &rlo, float &rhi) {
        __half l = __float2half_rn(lo), h = __float2half_rn(hi);
        rlo = __half2float(l), rhi = __half2float(h);
        return (uint32_t)__half_as_ushort(l) | ((uint32_t)__half_as_ushort(h) << 16);
    }
};

/* Issue the copies of key tile t (keys t FA_BK ..) into buffer kd (K) / kd + tile (V):
 * thread i takes 16-byte column i % CH of rows i / CH, + RS, ...; keys at or past kmax
 * (whose block-table entries may be -1) are zero-filled without a read, so that P V
 * never meets stale shared memory (0 * NaN). */
template <typename E, int HD>
static __device__ __forceinline__ void fa_fetch(E *kd, const E *k_cache, const E *v_cache,
                                                const int32_t *table, int bsz, int64_t nkv, int64_t g, int t,
                                                int kmax) {
    constexpr int LD = fa_layout<HD>::LD, CH = HD / 8, RS = FA_WARPS * 32 / CH;
    static_assert((FA_WARPS * 32) % CH == 0 && FA_BK % RS == 0, "the threads cover the tile exactly");
    E *vd = kd + fa_layout<HD>::tile;
    const int c = threadIdx.x % CH;
#pragma unroll
    for (int j = threadIdx.x / CH; j < FA_BK; j += RS) {
        int key = t * FA_BK + j, n = 0;
        int64_t off = 0;
        if (key < kmax) {
            int b = key / bsz;
            off = (((int64_t)table[b] * bsz + (key - b * bsz)) * nkv + g) * HD + c * 8;
            n = 16;
        }
        cp_async16(smem_u32(kd + j * LD + c * 8), k_cache + off, n);
        cp_async16(smem_u32(vd + j * LD + c * 8), v_cache + off, n);
    }
}

/* Grid: one dimension over (head, sequence, query tile), heads fastest (the query heads
 * of a kv head run side by side and share its K/V in L2), and the last (heaviest, causal)
 * query tiles of every sequence first. */
template <typename E, int HD>
static __global__ void __launch_bounds__(FA_WARPS * 32, 2)
    attention_fa2_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq, const E *k_cache, const E *v_cache,
                         lr_gpu_attn_meta m, int64_t nh, int64_t nkv, float scale, int64_t qtiles) {
    typedef fa_layout<HD> Ly;
    constexpr int LD = Ly::LD, CH = HD / 8, NS = FA_BK / 8 /* S tiles of 8 keys */, NO = HD / 8;
    extern __shared__ __align__(128) unsigned char fa_smem[];
    E *const sm = (E *)fa_smem; /* K0 | V0 | K1 | V1 */
    __shared__ int kmax_w[FA_WARPS];

    const int64_t bid = blockIdx.x, h = bid % nh, rest = bid / nh;
    const int64_t seq = rest % m.num_seqs, tile = rest / m.num_seqs;
    const int64_t row0 = (qtiles - 1 - tile) * FA_BQ, len = m.seq_len[seq];
    if (row0 >= len) return; /* block-uniform, before any barrier */
    const int64_t g = h / (nh / nkv), tok0 = m.seq_start[seq] + row0;
    const int nrows = (int)(len - row0 < FA_BQ ? len - row0 : FA_BQ);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, tq = lane & 3;
    const int32_t *table = m.block_tables + seq * m.max_blocks;
    const int bsz = (int)m.block_size; /* <= INT32_MAX (checked by the launcher) */

    /* This lane's two rows (of the block's 64): ra = warp * 16 + gr and rb = ra + 8, and
     * the keys each sees (0 for rows past the sequence: every score masked). wmax, wmin:
     * the most and fewest keys over the warp's 16 rows (warp-uniform). */
    const int ra = warp * 16 + gr, rb = ra + 8;
    const int nka = ra < nrows ? m.token_keys[tok0 + ra] : 0, nkb = rb < nrows ? m.token_keys[tok0 + rb] : 0;
    int wmax = max(nka, nkb), wmin = min(nka, nkb);
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

    /* Q (rows past the sequence zero-filled) into K1, tile 0 into K0/V0: one group. */
    {
        E *qs = sm + 2 * Ly::tile;
        for (int i = threadIdx.x; i < FA_BQ * CH; i += FA_WARPS * 32) {
            int r = i / CH, c = i % CH;
            const E *src = r < nrows ? q + (tok0 + r) * ldq + h * HD + c * 8 : q;
            cp_async16(smem_u32(qs + r * LD + c * 8), src, r < nrows ? 16 : 0);
        }
    }
    if (ntiles > 0) fa_fetch<E, HD>(sm, k_cache, v_cache, table, bsz, nkv, g, 0, kmax);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    /* The warp's Q rows as A fragments, k-step kk = dims 16kk..16kk+15: matrices (rows
     * 0-7, dims 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15) = a0..a3; lane l addresses
     * row l % 16, dims + 8 (l / 16). */
    uint32_t qa[HD / 16][4];
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++)
        ldsm_x4(qa[kk],
                smem_u32(sm + 2 * Ly::tile + (warp * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8));
    __syncthreads(); /* K1 is free for tile 1 */

    float o[NO][4]; /* O (16 x HD): tile d holds dims 8d..8d+7 */
#pragma unroll
    for (int d = 0; d < NO; d++)
        o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
    /* Running max (in units of log2, like the scaled scores) and this lane's part of the
     * row sums (its 2 columns of every 8); the 4 lanes of a row share the max. */
    float ma = -INFINITY, mb = -INFINITY, la = 0.0f, lb = 0.0f;
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

            /* S (16 x 64): tile j holds keys k0 + 8j .. + 7. B fragments of keys 8j..8j+7:
             * matrices (keys, dims 32kp + 0-7 | 8-15 | 16-23 | 24-31) = b0, b1 of k-step
             * 2kp and b0, b1 of 2kp + 1; lane l addresses key l % 8, dims + 8 (l / 8).
             * Key groups no row of the warp sees are skipped (left 0, masked below). */
            float s[NS][4];
#pragma unroll
            for (int j = 0; j < NS; j++) {
                s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
                if (k0 + 8 * j < wmax) {
#pragma unroll
                    for (int kp = 0; kp < HD / 32; kp++) {
                        uint32_t kb[4];
                        ldsm_x4(kb, smem_u32(ks + (8 * j + (lane & 7)) * LD + kp * 32 + (lane >> 3) * 8));
                        fa_mma<E>::mma(s[j], qa[2 * kp], kb[0], kb[1]);
                        fa_mma<E>::mma(s[j], qa[2 * kp + 1], kb[2], kb[3]);
                    }
                }
            }

            /* Scale to log2 units; mask keys a row may not see (s[j][0..1]: row ra,
             * keys k0 + 8j + 2tq + 0/1; s[j][2..3]: row rb, the same keys). */
            const bool full = wmin - k0 >= FA_BK; /* warp-uniform: every row sees the whole tile */
            float mxa = -INFINITY, mxb = -INFINITY;
#pragma unroll
            for (int j = 0; j < NS; j++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int key = k0 + 8 * j + 2 * tq + e;
                    float va = s[j][e] * sl2, vb = s[j][2 + e] * sl2;
                    if (!full) {
                        va = key < nka ? va : -INFINITY;
                        vb = key < nkb ? vb : -INFINITY;
                    }
                    s[j][e] = va, s[j][2 + e] = vb;
                    mxa = fmaxf(mxa, va), mxb = fmaxf(mxb, vb);
                }
            mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, 1));
            mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, 2));
            mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, 1));
            mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, 2));
            /* A row that has seen no key yet keeps max -inf: its weights are exp2(-inf) = 0
             * against base 0, and corr 1 leaves its zeros alone (no -inf - -inf). */
            const float mna = fmaxf(ma, mxa), mnb = fmaxf(mb, mxb);
            const float ca = mna == -INFINITY ? 1.0f : exp2f(ma - mna),
                        cb = mnb == -INFINITY ? 1.0f : exp2f(mb - mnb);
            const float ba = mna == -INFINITY ? 0.0f : mna, bb = mnb == -INFINITY ? 0.0f : mnb;
            ma = mna, mb = mnb;

            /* P, rounded, straight into A fragments: S tile j is keys 16 (j/2) + 8 (j%2)
             * .. of k-step j / 2, i.e. registers a0, a1 (j even) or a2, a3 (j odd). */
            uint32_t pa[FA_BK / 16][4];
            float sa = 0.0f, sb = 0.0f;
#pragma unroll
            for (int j = 0; j < NS; j++) {
                float r0, r1, r2, r3;
                pa[j >> 1][(j & 1) * 2] = fa_mma<E>::pack(exp2f(s[j][0] - ba), exp2f(s[j][1] - ba), r0, r1);
                pa[j >> 1][(j & 1) * 2 + 1] =
                    fa_mma<E>::pack(exp2f(s[j][2] - bb), exp2f(s[j][3] - bb), r2, r3);
                sa += r0 + r1, sb += r2 + r3;
            }
            la = la * ca + sa, lb = lb * cb + sb;
#pragma unroll
            for (int d = 0; d < NO; d++) {
                o[d][0] *= ca, o[d][1] *= ca;
                o[d][2] *= cb, o[d][3] *= cb;
            }

            /* O += P V. B fragments of k-step kk (keys 16kk..) and dims 16dp..16dp+15 by
             * ldmatrix.trans of V rows: matrices (keys 0-7, dims 0-7), (8-15, 0-7),
             * (0-7, 8-15), (8-15, 8-15) = b0, b1 of O tile 2dp and b0, b1 of 2dp + 1; lane
             * l addresses key l % 16, dims + 8 (l / 16). */
#pragma unroll
            for (int kk = 0; kk < FA_BK / 16; kk++) {
                if (k0 + 16 * kk >= wmax) continue; /* warp-uniform: P is 0 there */
#pragma unroll
                for (int dp = 0; dp < HD / 16; dp++) {
                    uint32_t vb[4];
                    ldsm_x4_t(vb, smem_u32(vs + (16 * kk + (lane & 15)) * LD + dp * 16 + (lane >> 4) * 8));
                    fa_mma<E>::mma(o[2 * dp], pa[kk], vb[0], vb[1]);
                    fa_mma<E>::mma(o[2 * dp + 1], pa[kk], vb[2], vb[3]);
                }
            }
        }
        __syncthreads(); /* the buffer is refetched next iteration (or takes the output) */
    }

    /* Normalise, round once, stage the warp's 16 rows in K0 (its own rows: no block
     * barrier needed, the loop's last one has passed), then write whole rows out in pairs
     * (the launcher checked ctx and ldc for 4-byte alignment). */
    la += __shfl_xor_sync(0xffffffffu, la, 1);
    la += __shfl_xor_sync(0xffffffffu, la, 2);
    lb += __shfl_xor_sync(0xffffffffu, lb, 1);
    lb += __shfl_xor_sync(0xffffffffu, lb, 2);
    const float ia = la > 0.0f ? 1.0f / la : 0.0f, ib = lb > 0.0f ? 1.0f / lb : 0.0f;
    E *os = sm;
#pragma unroll
    for (int d = 0; d < NO; d++) {
        E2<E> pa2, pb2;
        pa2.a = elem<E>::store(o[d][0] * ia), pa2.b = elem<E>::store(o[d][1] * ia);
        pb2.a = elem<E>::store(o[d][2] * ib), pb2.b = elem<E>::store(o[d][3] * ib);
        *(E2<E> *)(os + ra * LD + 8 * d + 2 * tq) = pa2;
        *(E2<E> *)(os + rb * LD + 8 * d + 2 * tq) = pb2;
    }
    __syncwarp();
    for (int i = lane; i < 16 * (HD / 2); i += 32) {
        const int r = warp * 16 + i / (HD / 2), c = 2 * (i % (HD / 2));
        if (r < nrows) *(E2<E> *)(ctx + (tok0 + r) * ldc + h * HD + c) = *(const E2<E> *)(os + r * LD + c);
    }
}

template <typename E, int HD> static int fa2_launch(const attention_args *a, cudaStream_t s) {
    const lr_gpu_attn_meta *m = &a->meta;
    int64_t qtiles = (m->max_seq_len + FA_BQ - 1) / FA_BQ;
    if (qtiles == 0 || m->num_seqs == 0) return LR_OK;
    if (m->num_seqs * qtiles > INT32_MAX / a->nh) return attention_tc<E>(a, s);
    size_t smem = fa_layout<HD>::bytes;
    CUDA_CHECK(cudaFuncSetAttribute(attention_fa2_kernel<E, HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)smem));
    unsigned int grid = (unsigned int)(a->nh * m->num_seqs * qtiles);
    attention_fa2_kernel<E, HD><<<grid, FA_WARPS * 32, smem, s>>>(
        (E *)a->ctx, a->ldc, (const E *)a->q, a->ldq, (const E *)a->k_cache, (const E *)a->v_cache, *m, a->nh,
        a->nkv, a->scale, qtiles);
    LAUNCH_CHECK();
    return LR_OK;
}

template <typename E> static int attention_fa2(const attention_args *a, cudaStream_t s) {
    const lr_gpu_attn_meta *m = &a->meta;
    /* 16-byte copies of K, V and Q rows, 4-byte stores of ctx pairs. */
    bool aligned = ((uintptr_t)a->k_cache & 15) == 0 && ((uintptr_t)a->v_cache & 15) == 0 &&
                   ((uintptr_t)a->q & 15) == 0 && a->ldq % 8 == 0 && ((uintptr_t)a->ctx & 3) == 0 &&
                   a->ldc % 2 == 0;
    if (m->max_seq_len > 1 && (a->hd == 64 || a->hd == 128) && aligned && m->block_size <= INT32_MAX)
        return a->hd == 64 ? fa2_launch<E, 64>(a, s) : fa2_launch<E, 128>(a, s);
    return attention_tc<E>(a, s);
}

/* mma has no float32 operands: F32 takes tc's paths. */
template <> int attention_fa2<float>(const attention_args *a, cudaStream_t s) {
    return attention_tc<float>(a, s);
}

int lr_gpu_attention_fa2(const void *args, cudaStream_t s) {
    const attention_args *a = (const attention_args *)args;
    return LR_DISPATCH_DTYPE(a->dt, attention_fa2, a, s);
}

/* ---- Entry point --------------------------------------------------------------------- */

extern "C" int lr_gpu_attention(const char *variant, void *ctx, int64_t ldc, const void *q, int64_t ldq,
                                const void *k_cache, const void *v_cache, const lr_gpu_attn_meta *meta,
                                int64_t T, int64_t nh, int64_t nkv, int64_t hd, float scale, lr_dtype dt,
                                cudaStream_t s) {
    lr_gpu_launch launch;
    int rc = lr_gpu_variant_find("attention", variant, &launch);
    if (rc) return rc;
    if (!meta) return lr_fail(LR_E_INVAL, "gpu attention: meta is NULL");
    if (T < 0 || nh < 0 || nkv < 0 || hd < 0)
        return lr_fail(LR_E_INVAL,
                       "gpu attention: negative size (T %lld, nh %lld, nkv %lld, "
                       "hd %lld)",
                       (long long)T, (long long)nh, (long long)nkv, (long long)hd);
    if (hd % 2 != 0 || hd > ATTN_MAX_HD)
        return lr_fail(LR_E_INVAL, "gpu attention: head_dim %lld is odd or above %d", (long long)hd,
                       ATTN_MAX_HD);
    if (nh > 0 && (nkv == 0 || nh % nkv != 0))
        return lr_fail(LR_E_INVAL,
                       "gpu attention: %lld query heads are not a multiple of %lld "
                       "kv heads",
                       (long long)nh, (long long)nkv);
    if (ldq < nh * hd || ldc < nh * hd)
        return lr_fail(LR_E_INVAL,
                       "gpu attention: row strides (q %lld, ctx %lld) are below "
                       "nh * hd = %lld",
                       (long long)ldq, (long long)ldc, (long long)(nh * hd));
    if (meta->block_size < 1 || meta->num_seqs < 0 || meta->max_blocks < 0 || meta->max_seq_len < 0 ||
        meta->max_keys < 0)
        return lr_fail(LR_E_INVAL,
                       "gpu attention: bad meta (block_size %lld, num_seqs %lld, "
                       "max_blocks %lld, max_seq_len %lld, max_keys %lld)",
                       (long long)meta->block_size, (long long)meta->num_seqs, (long long)meta->max_blocks,
                       (long long)meta->max_seq_len, (long long)meta->max_keys);
    if (meta->max_keys > INT32_MAX)
        return lr_fail(LR_E_INVAL, "gpu attention: %lld keys exceed the int32 key counts",
                       (long long)meta->max_keys);
    if (dt != LR_F32 && dt != LR_F16 && dt != LR_BF16)
        return lr_fail(LR_E_INVAL, "gpu attention: dtype %s is not F32, F16 or BF16", lr_dtype_name(dt));
    if (T == 0 || nh == 0 || hd == 0) return LR_OK;
    attention_args a = {ctx, ldc, q, ldq, k_cache, v_cache, *meta, T, nh, nkv, hd, scale, dt};
    return launch(&a, s);
}
