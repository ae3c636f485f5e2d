/* attention_simple.cu: the "simple" attention variant, the one meant to be obviously
 * right: one warp per (token, head), one key at a time. Shared pieces: attention.cuh. */
#include "attention.cuh"

#define MAX_BLOCKS 65535

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

template <typename E, int DPL> static int simple_launch(const lr_gpu_attention_args *a, cudaStream_t s) {
    int64_t blocks = (a->T * a->nh + SIMPLE_WARPS - 1) / SIMPLE_WARPS;
    unsigned int grid = (unsigned int)(blocks < MAX_BLOCKS ? blocks : MAX_BLOCKS);
    attention_simple_kernel<E, DPL><<<grid, SIMPLE_WARPS * 32, 0, s>>>(
        (E *)a->ctx, a->ldc, (const E *)a->q, a->ldq, (const E *)a->k_cache, (const E *)a->v_cache, a->meta,
        a->T, a->nh, a->nkv, a->hd, a->scale);
    LAUNCH_CHECK();
    return LR_OK;
}

template <typename E> static int attention_simple(const lr_gpu_attention_args *a, cudaStream_t s) {
    return ATTN_DPL_LADDER(simple_launch, E, a, s);
}

ATTN_LAUNCHER(lr_gpu_attention_simple, attention_simple)
