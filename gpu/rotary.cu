/* rotary.cu: rotary position embedding in the neox (rotate-half) layout, in place, the
 * twin of ref/ops/rotary.c. The angle positions[t] * inv_freq[i] and its sine and cosine
 * are taken in float64 (a float32 angle loses the low bits of large positions), then
 * rounded to float32 for the rotation. */
#include "common.cuh"

#include <atomic>

/* Every rotary launcher receives an lr_gpu_rotary_args (llamaref_kernels.h). */

/* The fused RoPE + cache write's arguments (not a registry family: the backend's). */
typedef struct {
    void *qkv;
    int64_t ld, T, nh, nkv, hd;
    const int64_t *positions;
    const double *inv_freq;
    void *k_cache, *v_cache;
    const int64_t *slot_mapping;
} lr_gpu_rotary_cache_args;

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
/* Blocks an SM that ptxas is asked to leave room for in the fused RoPE + cache kernel (a
 * build-time knob for run 25's trial; the bits are the same). 1, the tree's: it takes 138
 * registers (the float64 sincos and 16 values a thread), 7 blocks of 64 threads an SM,
 * enough at decode, but only about 14 KB of loads in flight an SM at prefill: the profile
 * charged it 55 us a layer at 2048 tokens (run 24, call D), where its 54 MB take 13 at
 * copy bandwidth. 16 caps a thread at 64 registers (ptxas: no spills; 1024 threads an SM). */
#ifndef ROT_CACHE_MINB
#define ROT_CACHE_MINB 1
#endif
#if ROT_CACHE_MINB > 1
#define ROT_CACHE_BOUNDS __launch_bounds__(ROT_THREADS, ROT_CACHE_MINB)
#else /* no minimum at all (a minimum of 1 makes ptxas take 156) */
#define ROT_CACHE_BOUNDS __launch_bounds__(ROT_THREADS)
#endif

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
                        float y1, y2;
                        rot_pair(x1[k], x2[k], c, sf, y1, y2);
                        st(row + k * hd + i, y1);
                        st(row + k * hd + half + i, y2);
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

/* RoPE and the cache write of a batch in one kernel: what rotary_heads_kernel on the nh + nkv
 * q and k heads of each qkv row, then cache.cu's scatter of the k and v heads to the token's
 * slot, do, in one launch instead of two. Grid (tokens, groups of ROT_HPB of the nh + 2 nkv
 * heads); a q or k head is rotated in place as the heads kernel does it (its thread's
 * float64 sincos, rot_pair, one rounding to E), and a k head's rounded values also go to
 * k_cache; a v head is copied to v_cache. A negative slot (padding) writes no cache entry.
 * The same bits as the two kernels (tests/test_gpu_forward: rope_cache_changes_no_bit). */
template <typename E>
static __global__ void ROT_CACHE_BOUNDS rotary_cache_kernel(E *qkv, int64_t ldq, int64_t T, int64_t nh,
                                                            int64_t nkv, int64_t hd, const int64_t *positions,
                                                            const double *inv_freq, E *k_cache, E *v_cache,
                                                            const int64_t *slot_mapping) {
    const int64_t half = hd / 2, nrot = nh + nkv, nall = nh + 2 * nkv, width = nkv * hd;
    pdl_trigger(); /* launched with programmatic dependent launch (common.cuh) */
    pdl_wait();
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        const double pos = (double)positions[t];
        const int64_t slot = slot_mapping[t];
        E *kd = slot < 0 ? NULL : k_cache + slot * width, *vd = slot < 0 ? NULL : v_cache + slot * width;
        for (int64_t h0 = (int64_t)blockIdx.y * ROT_HPB; h0 < nall; h0 += (int64_t)gridDim.y * ROT_HPB) {
            E *row = qkv + t * ldq + h0 * hd;
            for (int64_t i = threadIdx.x; i < half; i += ROT_THREADS) {
                float c = 0.0f, sf = 0.0f, x1[ROT_HPB], x2[ROT_HPB];
                if (h0 < nrot) {
                    double sn, cd;
                    sincos(pos * inv_freq[i], &sn, &cd);
                    c = (float)cd, sf = (float)sn;
                }
#pragma unroll
                for (int k = 0; k < ROT_HPB; k++)
                    if (h0 + k < nall) x1[k] = ld(row + k * hd + i), x2[k] = ld(row + k * hd + half + i);
#pragma unroll
                for (int k = 0; k < ROT_HPB; k++) {
                    const int64_t h = h0 + k;
                    if (h < nrot) {
                        float y1, y2;
                        rot_pair(x1[k], x2[k], c, sf, y1, y2);
                        const E e1 = elem<E>::store(y1), e2 = elem<E>::store(y2); /* st's rounding */
                        row[k * hd + i] = e1, row[k * hd + half + i] = e2;
                        if (h >= nh && kd) {
                            E *kh = kd + (h - nh) * hd;
                            kh[i] = e1, kh[half + i] = e2;
                        }
                    } else if (h < nall && vd) { /* a v head: its bits, as the scatter copies them */
                        E *vh = vd + (h - nrot) * hd;
                        vh[i] = row[k * hd + i], vh[half + i] = row[k * hd + half + i];
                    }
                }
            }
        }
    }
}

/* "wide": the fused RoPE + cache write for many tokens (a prefill), where rotary_cache_kernel
 * (a thread a frequency across 8 heads, two-byte loads, its float64 sincos before them, 138
 * registers) moves a 2048-token layer's 52 MB at about a third of copy bandwidth (run 30,
 * H100: 56 us a layer). A block a token: each thread first asks for its whole vectors of the
 * row (a task: 16 bytes at j V of a head's first half and 16 at the same place of its
 * second half; 384 tasks a Llama-3-8B bf16 row, 3 a thread), then the first hd / 2 threads
 * take the token's float64 sines and cosines, one a frequency, into shared memory while
 * those loads are in flight; after a barrier every pair is rotated by rot_pair and rounded
 * by elem<E>::store as the other kernels do, so the bits are theirs
 * (tests/test_gpu_linear: rotary_cache_wide). Needs hd / 2 a multiple of V and 16-byte
 * aligned rows and caches; run where lr_gpu_rope_wide() and T >= ROT_WIDE_MIN_T. */
#define ROTW_THREADS 128
#define ROTW_TASKS 4 /* tasks a thread a round; a token's row takes as many rounds as it needs */
#ifndef ROT_WIDE_MIN_T
#define ROT_WIDE_MIN_T 64
#endif

template <typename E>
static __global__ void __launch_bounds__(ROTW_THREADS)
    rotary_cache_wide_kernel(E *qkv, int64_t ldq, int64_t T, int64_t nh, int64_t nkv, int64_t hd,
                             const int64_t *positions, const double *inv_freq, E *k_cache, E *v_cache,
                             const int64_t *slot_mapping) {
    constexpr int V = 16 / sizeof(E);
    extern __shared__ float rotw_cs[]; /* cos (hd / 2), then sin (hd / 2) */
    const int64_t half = hd / 2, vph = half / V, nrot = nh + nkv, tasks = (nh + 2 * nkv) * vph,
                  width = nkv * hd;
    pdl_trigger();
    pdl_wait();
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        const int64_t slot = slot_mapping[t];
        E *row = qkv + t * ldq;
        for (int64_t r0 = 0; r0 < tasks; r0 += ROTW_THREADS * ROTW_TASKS) {
            uint4 lo[ROTW_TASKS], hi[ROTW_TASKS];
#pragma unroll
            for (int u = 0; u < ROTW_TASKS; u++) {
                const int64_t p = r0 + threadIdx.x + (int64_t)u * ROTW_THREADS;
                if (p < tasks) {
                    const int64_t h = p / vph, j = p - h * vph;
                    lo[u] = *(const uint4 *)(row + h * hd + j * V);
                    hi[u] = *(const uint4 *)(row + h * hd + half + j * V);
                }
            }
            if (r0 == 0) { /* the token's angles, once, while the loads are in flight */
                const double pos = (double)positions[t];
                for (int64_t i = threadIdx.x; i < half; i += ROTW_THREADS) {
                    double sn, cd;
                    sincos(pos * inv_freq[i], &sn, &cd);
                    rotw_cs[i] = (float)cd, rotw_cs[half + i] = (float)sn;
                }
                __syncthreads();
            }
#pragma unroll
            for (int u = 0; u < ROTW_TASKS; u++) {
                const int64_t p = r0 + threadIdx.x + (int64_t)u * ROTW_THREADS;
                if (p >= tasks) continue;
                const int64_t h = p / vph, j = p - h * vph;
                E *d1 = row + h * hd + j * V, *d2 = d1 + half;
                if (h < nrot) {
                    const E *x1 = (const E *)&lo[u], *x2 = (const E *)&hi[u];
                    uint4 o1, o2;
                    E *y1 = (E *)&o1, *y2 = (E *)&o2;
#pragma unroll
                    for (int e = 0; e < V; e++) {
                        float r1, r2;
                        rot_pair(elem<E>::load(x1[e]), elem<E>::load(x2[e]), rotw_cs[j * V + e],
                                 rotw_cs[half + j * V + e], r1, r2);
                        y1[e] = elem<E>::store(r1), y2[e] = elem<E>::store(r2);
                    }
                    *(uint4 *)d1 = o1, *(uint4 *)d2 = o2;
                    if (h >= nh && slot >= 0) {
                        E *kh = k_cache + slot * width + (h - nh) * hd + j * V;
                        *(uint4 *)kh = o1, *(uint4 *)(kh + half) = o2;
                    }
                } else if (slot >= 0) { /* a v head: its bits, as the scatter copies them */
                    E *vh = v_cache + slot * width + (h - nrot) * hd + j * V;
                    *(uint4 *)vh = lo[u], *(uint4 *)(vh + half) = hi[u];
                }
            }
        }
        __syncthreads(); /* the angles are rewritten for the block's next token */
    }
}

static std::atomic<uint64_t> rope_wide_launches{0};

extern "C" uint64_t lr_gpu_rope_wide_launches(void) { return rope_wide_launches.load(); }

/* Whether rotary_cache_wide_kernel can take the call: whole 16-byte vectors everywhere. */
template <typename E> static bool rotary_cache_wide_fits(const lr_gpu_rotary_cache_args *a) {
    constexpr int64_t V = 16 / sizeof(E);
    const uintptr_t mis = (uintptr_t)a->qkv | (uintptr_t)a->k_cache | (uintptr_t)a->v_cache;
    return (a->hd / 2) % V == 0 && a->ld % V == 0 && mis % 16 == 0 && a->hd <= ROTARY_MAX_HD;
}

template <typename E> static int rotary_cache(const lr_gpu_rotary_cache_args *a, cudaStream_t s) {
    if (lr_gpu_rope_wide() && a->T >= ROT_WIDE_MIN_T && rotary_cache_wide_fits<E>(a)) {
        unsigned int grid = (unsigned int)(a->T < MAX_ROW_BLOCKS ? a->T : MAX_ROW_BLOCKS);
        LR_LAUNCH(rotary_cache_wide_kernel<E>, grid, ROTW_THREADS, (size_t)a->hd * sizeof(float), s,
                  (E *)a->qkv, a->ld, a->T, a->nh, a->nkv, a->hd, a->positions, a->inv_freq, (E *)a->k_cache,
                  (E *)a->v_cache, a->slot_mapping);
        rope_wide_launches++;
        return LR_OK;
    }
    int64_t groups = (a->nh + 2 * a->nkv + ROT_HPB - 1) / ROT_HPB;
    dim3 grid((unsigned int)(a->T < MAX_ROW_BLOCKS ? a->T : MAX_ROW_BLOCKS),
              (unsigned int)(groups < MAX_ROW_BLOCKS ? groups : MAX_ROW_BLOCKS));
    LR_LAUNCH(rotary_cache_kernel<E>, grid, ROT_THREADS, 0, s, (E *)a->qkv, a->ld, a->T, a->nh, a->nkv, a->hd,
              a->positions, a->inv_freq, (E *)a->k_cache, (E *)a->v_cache, a->slot_mapping);
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

extern "C" int lr_gpu_rotary_cache(void *qkv, int64_t ld, int64_t T, int64_t nh, int64_t nkv, int64_t hd,
                                   const int64_t *positions, const double *inv_freq, void *k_cache,
                                   void *v_cache, const int64_t *slot_mapping, lr_dtype dt, cudaStream_t s) {
    if (T < 0 || nh < 0 || nkv < 0 || hd < 0)
        return lr_fail(LR_E_INVAL, "gpu rotary_cache: negative size (T %lld, nh %lld, nkv %lld, hd %lld)",
                       (long long)T, (long long)nh, (long long)nkv, (long long)hd);
    if (hd % 2 != 0) return lr_fail(LR_E_INVAL, "gpu rotary_cache: head_dim %lld is odd", (long long)hd);
    if (ld < (nh + 2 * nkv) * hd)
        return lr_fail(LR_E_INVAL, "gpu rotary_cache: row stride %lld is below (nh + 2 nkv) * hd = %lld",
                       (long long)ld, (long long)((nh + 2 * nkv) * hd));
    if (dt != LR_F32 && dt != LR_F16 && dt != LR_BF16)
        return lr_fail(LR_E_INVAL, "gpu rotary_cache: dtype %s is not F32, F16 or BF16", lr_dtype_name(dt));
    if (T == 0 || nh + nkv == 0 || hd == 0) return LR_OK;
    lr_gpu_rotary_cache_args a = {qkv,       ld,       T,       nh,      nkv,         hd,
                                  positions, inv_freq, k_cache, v_cache, slot_mapping};
    return LR_DISPATCH_DTYPE(dt, rotary_cache, &a, s);
}
