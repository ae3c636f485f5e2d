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
