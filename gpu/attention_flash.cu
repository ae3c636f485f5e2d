/* attention_flash.cu: the "flash" attention variant: tiles of 16 query rows against tiles
 * of 32 keys staged from the paged cache in shared memory, online softmax, float32
 * throughout, any dtype and head_dim. tc (attention_tc.cu) hands it the calls it has no
 * kernel for. Shared pieces: attention.cuh. */
#include "attention.cuh"

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
    const int kmax = tile_kmax(m.token_keys, tok0, nrows, &kmax_s);

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

template <typename E, int DPL> static int flash_launch(const lr_gpu_attention_args *a, cudaStream_t s) {
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

template <typename E> static int attention_flash(const lr_gpu_attention_args *a, cudaStream_t s) {
    return ATTN_DPL_LADDER(flash_launch, E, a, s);
}

ATTN_LAUNCHER(lr_gpu_attention_flash, attention_flash)
