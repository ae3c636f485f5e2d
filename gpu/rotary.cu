/* rotary.cu: rotary position embedding in the neox (rotate-half) layout, in place, the
 * twin of ref/ops/rotary.c. The angle positions[t] * inv_freq[i] and its sine and cosine
 * are taken in float64 (a float32 angle loses the low bits of large positions), then
 * rounded to float32 for the rotation. */
#include "common.cuh"

/* Every rotary launcher receives an lr_gpu_rotary_args (llamaref_kernels.h). */

#define MAX_ROW_BLOCKS 65535
#define ROTARY_THREADS 128
/* The cos/sin table of one token lives in shared memory: hd floats. */
#define ROTARY_MAX_HD (48 * 1024 / (int64_t)sizeof(float))

/* One block per token: the half-dimension's cos and sin once, then every (head, i) pair
 * of the row. The row loop is block-uniform, so the barriers are reached by all. */
template <typename E>
static __global__ void rotary_neox_kernel(E *x, int64_t ldx, int64_t T, int64_t nheads, int64_t hd,
                                          const int64_t *positions, const double *inv_freq) {
    extern __shared__ float cs[]; /* cos (half), then sin (half) */
    int64_t half = hd / 2;
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        double pos = (double)positions[t];
        for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
            double sn, c;
            sincos(pos * inv_freq[i], &sn, &c);
            cs[i] = (float)c;
            cs[half + i] = (float)sn;
        }
        __syncthreads();
        E *row = x + t * ldx;
        for (int64_t p = threadIdx.x; p < nheads * half; p += blockDim.x) {
            int64_t h = p / half, i = p - h * half;
            E *v = row + h * hd;
            float x1 = ld(v + i), x2 = ld(v + half + i), c = cs[i], sn = cs[half + i];
            st(v + i, x1 * c - x2 * sn);
            st(v + half + i, x2 * c + x1 * sn);
        }
        __syncthreads(); /* cs is rewritten for the next row */
    }
}

template <typename E> static int rotary_neox(const lr_gpu_rotary_args *a, cudaStream_t s) {
    unsigned int grid = (unsigned int)(a->T < MAX_ROW_BLOCKS ? a->T : MAX_ROW_BLOCKS);
    size_t smem = (size_t)a->hd * sizeof(float);
    rotary_neox_kernel<E><<<grid, ROTARY_THREADS, smem, s>>>((E *)a->x, a->ld, a->T, a->nheads, a->hd,
                                                             a->positions, a->inv_freq);
    LAUNCH_CHECK();
    return LR_OK;
}

/* "heads": grid (tokens, groups of ROT_HPB heads); thread i takes frequency i, forms its
 * float64 sine and cosine once, loads the pair (i, i + hd/2) of all the group's heads
 * before storing any, so a token costs one round trip to memory rather than one per
 * pair (the decode case); no shared memory, no barrier. */
#define ROT_HPB 8
#define ROT_THREADS 64

template <typename E>
static __global__ void __launch_bounds__(ROT_THREADS)
    rotary_heads_kernel(E *x, int64_t ldx, int64_t T, int64_t nheads, int64_t hd, const int64_t *positions,
                        const double *inv_freq) {
    int64_t half = hd / 2;
    pdl_trigger(); /* launched with programmatic dependent launch (common.cuh) */
    pdl_wait();
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        double pos = (double)positions[t];
        for (int64_t h0 = (int64_t)blockIdx.y * ROT_HPB; h0 < nheads; h0 += (int64_t)gridDim.y * ROT_HPB) {
            E *row = x + t * ldx + h0 * hd;
            for (int64_t i = threadIdx.x; i < half; i += ROT_THREADS) {
                double sn, cd;
                sincos(pos * inv_freq[i], &sn, &cd);
                float c = (float)cd, sf = (float)sn, x1[ROT_HPB], x2[ROT_HPB];
#pragma unroll
                for (int k = 0; k < ROT_HPB; k++)
                    if (h0 + k < nheads) x1[k] = ld(row + k * hd + i), x2[k] = ld(row + k * hd + half + i);
#pragma unroll
                for (int k = 0; k < ROT_HPB; k++)
                    if (h0 + k < nheads) {
                        st(row + k * hd + i, x1[k] * c - x2[k] * sf);
                        st(row + k * hd + half + i, x2[k] * c + x1[k] * sf);
                    }
            }
        }
    }
}

template <typename E> static int rotary_heads(const lr_gpu_rotary_args *a, cudaStream_t s) {
    int64_t groups = (a->nheads + ROT_HPB - 1) / ROT_HPB;
    dim3 grid((unsigned int)(a->T < MAX_ROW_BLOCKS ? a->T : MAX_ROW_BLOCKS),
              (unsigned int)(groups < MAX_ROW_BLOCKS ? groups : MAX_ROW_BLOCKS));
    LR_LAUNCH(rotary_heads_kernel<E>, grid, ROT_THREADS, 0, s, (E *)a->x, a->ld, a->T, a->nheads, a->hd,
              a->positions, a->inv_freq);
    return LR_OK;
}

int lr_gpu_rotary_heads(const void *args, cudaStream_t s) {
    const lr_gpu_rotary_args *a = (const lr_gpu_rotary_args *)args;
    return LR_DISPATCH_DTYPE(a->dt, rotary_heads, a, s);
}

int lr_gpu_rotary_neox(const void *args, cudaStream_t s) {
    const lr_gpu_rotary_args *a = (const lr_gpu_rotary_args *)args;
    return LR_DISPATCH_DTYPE(a->dt, rotary_neox, a, s);
}

extern "C" int lr_gpu_rotary(const char *variant, void *x, int64_t ld, int64_t T, int64_t nheads, int64_t hd,
                             const int64_t *positions, const double *inv_freq, lr_dtype dt, cudaStream_t s) {
    const lr_gpu_kernel *k;
    int rc = lr_gpu_kernel_find("rotary", variant, &k);
    if (rc) return rc;
    if (T < 0 || nheads < 0 || hd < 0)
        return lr_fail(LR_E_INVAL, "gpu rotary: negative size (T %lld, nheads %lld, hd %lld)", (long long)T,
                       (long long)nheads, (long long)hd);
    if (hd % 2 != 0 || hd > ROTARY_MAX_HD)
        return lr_fail(LR_E_INVAL, "gpu rotary: head_dim %lld is odd or above %lld", (long long)hd,
                       (long long)ROTARY_MAX_HD);
    if (ld < nheads * hd)
        return lr_fail(LR_E_INVAL, "gpu rotary: row stride %lld is below nheads * hd = %lld", (long long)ld,
                       (long long)(nheads * hd));
    if (dt != LR_F32 && dt != LR_F16 && dt != LR_BF16)
        return lr_fail(LR_E_INVAL, "gpu rotary: dtype %s is not F32, F16 or BF16", lr_dtype_name(dt));
    if (T == 0 || nheads == 0 || hd == 0) return LR_OK;
    lr_gpu_rotary_args a = {x, ld, T, nheads, hd, positions, inv_freq, dt};
    return lr_gpu_kernel_run(k, &a, dt, s);
}
