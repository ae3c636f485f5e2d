/* gpu_planted.cu: the planted-bug kernels of gpu_planted.h, for tests/test_gpu_ops only.
 * Written plainly (one block per row or token, grid-stride, float32 arithmetic, one
 * rounding of each output) so that the planted flaw is the only thing wrong with them. */
#include "common.cuh"
#include "gpu_planted.h"

#define PLANTED_THREADS 256
#define PLANTED_MAX_BLOCKS 65535

static unsigned int planted_grid(int64_t rows) {
    return (unsigned int)(rows < PLANTED_MAX_BLOCKS ? rows : PLANTED_MAX_BLOCKS);
}

/* Sum over the block; every thread gets the same value. part: 32 floats of shared
 * memory, free to reuse once this returns to all threads. */
static __device__ float planted_block_sum(float v, float *part) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    __syncthreads(); /* part may still be read from the previous row */
    if (lane == 0) part[warp] = v;
    __syncthreads();
    float total = 0;
    for (int i = 0; i < nwarps; i++)
        total += part[i];
    return total;
}

/* ---- rmsnorm "last-unweighted" ---------------------------------------------------------- */

template <typename E>
static __global__ void planted_rmsnorm_kernel(E *y, float *residual, const E *x, const E *w, int64_t T,
                                              int64_t H, float eps) {
    __shared__ float part[32];
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        const E *xr = x + t * H;
        float *rr = residual ? residual + t * H : NULL;
        E *yr = y + t * H;
        float ss = 0;
        for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
            float v = ld(xr + i);
            if (rr) {
                v += rr[i];
                rr[i] = v;
            }
            ss += v * v;
        }
        ss = planted_block_sum(ss, part);
        float inv = 1.0f / sqrtf(ss / (float)H + eps);
        for (int64_t i = threadIdx.x; i < H; i += blockDim.x) { /* each thread rereads what it wrote */
            float v = rr ? rr[i] : ld(xr + i);
            st(yr + i, i == H - 1 ? v * inv /* the planted bug: no weight */ : v * inv * ld(w + i));
        }
    }
}

template <typename E>
static int planted_rmsnorm(void *y, float *residual, const void *x, const void *w, int64_t T, int64_t H,
                           float eps, cudaStream_t s) {
    if (T == 0) return LR_OK;
    planted_rmsnorm_kernel<E>
        <<<planted_grid(T), PLANTED_THREADS, 0, s>>>((E *)y, residual, (const E *)x, (const E *)w, T, H, eps);
    LAUNCH_CHECK();
    return LR_OK;
}

extern "C" int lr_test_planted_rms_norm(const char *variant, void *y, const void *x, const void *w, int64_t T,
                                        int64_t H, float eps, lr_dtype dt, cudaStream_t s) {
    (void)variant;
    if (T < 0 || H < 1)
        return lr_fail(LR_E_INVAL, "planted rms_norm: T %lld, H %lld", (long long)T, (long long)H);
    return LR_DISPATCH_DTYPE(dt, planted_rmsnorm, y, (float *)NULL, x, w, T, H, eps, s);
}

extern "C" int lr_test_planted_fused_add_rms_norm(const char *variant, void *y, float *residual,
                                                  const void *x, const void *w, int64_t T, int64_t H,
                                                  float eps, lr_dtype dt, cudaStream_t s) {
    (void)variant;
    if (T < 0 || H < 1 || !residual)
        return lr_fail(LR_E_INVAL, "planted fused_add_rms_norm: T %lld, H %lld, residual %p", (long long)T,
                       (long long)H, (void *)residual);
    return LR_DISPATCH_DTYPE(dt, planted_rmsnorm, y, residual, x, w, T, H, eps, s);
}

/* ---- rotary "f32-angle" ---------------------------------------------------------------- */

template <typename E>
static __global__ void planted_rotary_kernel(E *x, int64_t ldx, int64_t T, int64_t nheads, int64_t hd,
                                             const int64_t *positions, const double *inv_freq) {
    int64_t half = hd / 2;
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        float pos = (float)positions[t];
        for (int64_t k = threadIdx.x; k < nheads * half; k += blockDim.x) {
            int64_t h = k / half, i = k % half;
            float sn, c;
            sincosf(pos * (float)inv_freq[i], &sn, &c); /* the planted bug: float32, not float64 */
            E *v = x + t * ldx + h * hd;
            float x1 = ld(v + i), x2 = ld(v + half + i);
            st(v + i, x1 * c - x2 * sn);
            st(v + half + i, x2 * c + x1 * sn);
        }
    }
}

template <typename E>
static int planted_rotary(void *x, int64_t ldx, int64_t T, int64_t nheads, int64_t hd,
                          const int64_t *positions, const double *inv_freq, cudaStream_t s) {
    if (T == 0 || nheads == 0) return LR_OK;
    planted_rotary_kernel<E>
        <<<planted_grid(T), PLANTED_THREADS, 0, s>>>((E *)x, ldx, T, nheads, hd, positions, inv_freq);
    LAUNCH_CHECK();
    return LR_OK;
}

extern "C" int lr_test_planted_rotary(const char *variant, void *x, int64_t ld, int64_t T, int64_t nheads,
                                      int64_t hd, const int64_t *positions, const double *inv_freq,
                                      lr_dtype dt, cudaStream_t s) {
    (void)variant;
    if (T < 0 || nheads < 0 || hd < 2 || hd % 2 || nheads * hd > ld)
        return lr_fail(LR_E_INVAL, "planted rotary: T %lld, nheads %lld, hd %lld, ld %lld", (long long)T,
                       (long long)nheads, (long long)hd, (long long)ld);
    return LR_DISPATCH_DTYPE(dt, planted_rotary, x, ld, T, nheads, hd, positions, inv_freq, s);
}

/* ---- linear "gemv-drop-last": written plainly (one warp per output feature, grid-stride,
 * float32 arithmetic, one rounding of each output), so that the planted flaw is the only
 * thing wrong with it. */
#define PLANTED_WARPS 8
#define PLANTED_MAX_BLOCKS 65535

template <typename E>
static __global__ void planted_gemv_kernel(E *y, const E *x, const E *w, int64_t T, int64_t N, int64_t K) {
    const int lane = threadIdx.x & 31;
    for (int64_t n = (int64_t)blockIdx.x * PLANTED_WARPS + (threadIdx.x >> 5); n < N;
         n += (int64_t)gridDim.x * PLANTED_WARPS) {
        for (int64_t t = 0; t < T; t++) {
            float acc = 0.0f;
            for (int64_t k = lane; k < K - 1; k += 32) /* the bug: K - 1 */
                acc = fmaf(ld(w + n * K + k), ld(x + t * K + k), acc);
            for (int o = 16; o > 0; o >>= 1)
                acc += __shfl_xor_sync(0xffffffffu, acc, o);
            if (lane == 0) st(y + t * N + n, acc);
        }
    }
}

template <typename E>
static int planted_gemv(void *y, const void *x, const void *w, int64_t T, int64_t N, int64_t K,
                        cudaStream_t s) {
    int64_t blocks = (N + PLANTED_WARPS - 1) / PLANTED_WARPS;
    unsigned int grid = (unsigned int)(blocks < PLANTED_MAX_BLOCKS ? blocks : PLANTED_MAX_BLOCKS);
    planted_gemv_kernel<E><<<grid, PLANTED_WARPS * 32, 0, s>>>((E *)y, (const E *)x, (const E *)w, T, N, K);
    LAUNCH_CHECK();
    return LR_OK;
}

extern "C" int lr_test_planted_linear(const char *variant, void *y, const void *x, const void *w, int64_t T,
                                      int64_t N, int64_t K, lr_dtype dt, cublasHandle_t blas,
                                      cudaStream_t s) {
    (void)variant, (void)blas;
    if (T < 0 || N < 0 || K < 1) return lr_fail(LR_E_INVAL, "planted linear: bad sizes");
    if (T == 0 || N == 0) return LR_OK;
    return LR_DISPATCH_DTYPE(dt, planted_gemv, y, x, w, T, N, K, s);
}

/* ---- embedding "shard-edge" -------------------------------------------------------------- */

template <typename E>
static __global__ void planted_embedding_kernel(E *out, const int64_t *ids, int64_t T, const E *w,
                                                int64_t start, int64_t shard, int64_t H) {
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        int64_t local = ids[t] - start;
        E *o = out + t * H;
        if (local >= 0 && local < shard - 1) { /* the planted bug: shard - 1 */
            const E *src = w + local * H;
            for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
                o[i] = src[i];
        } else {
            for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
                st(o + i, 0.0f);
        }
    }
}

template <typename E>
static int planted_embedding(void *out, const int64_t *ids, int64_t T, const void *w, int64_t start,
                             int64_t shard, int64_t H, cudaStream_t s) {
    planted_embedding_kernel<E>
        <<<planted_grid(T), PLANTED_THREADS, 0, s>>>((E *)out, ids, T, (const E *)w, start, shard, H);
    LAUNCH_CHECK();
    return LR_OK;
}

extern "C" int lr_test_planted_embedding(const char *variant, void *out, const int64_t *ids, int64_t T,
                                         const void *w, int64_t start, int64_t shard, int64_t H, lr_dtype dt,
                                         cudaStream_t s) {
    (void)variant;
    if (T < 0 || H < 0 || shard < 0)
        return lr_fail(LR_E_INVAL, "planted embedding: T %lld, H %lld, shard %lld", (long long)T,
                       (long long)H, (long long)shard);
    if (T == 0 || H == 0) return LR_OK;
    return LR_DISPATCH_DTYPE(dt, planted_embedding, out, ids, T, w, start, shard, H, s);
}

/* ---- activation "last-ungated" ----------------------------------------------------------- */

template <typename E>
static __global__ void planted_silu_and_mul_kernel(E *out, const E *gu, int64_t T, int64_t NI) {
    int64_t n = T * NI, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += stride) {
        int64_t t = k / NI, i = k - t * NI;
        const E *row = gu + t * 2 * NI;
        float g = ld(row + i), up = ld(row + NI + i);
        st(out + k, i == NI - 1 ? up /* the planted bug: silu(gate) left out */ : g / (1.0f + expf(-g)) * up);
    }
}

template <typename E>
static int planted_silu_and_mul(void *out, const void *gu, int64_t T, int64_t NI, cudaStream_t s) {
    int64_t blocks = (T * NI + PLANTED_THREADS - 1) / PLANTED_THREADS;
    planted_silu_and_mul_kernel<E>
        <<<planted_grid(blocks), PLANTED_THREADS, 0, s>>>((E *)out, (const E *)gu, T, NI);
    LAUNCH_CHECK();
    return LR_OK;
}

extern "C" int lr_test_planted_silu_and_mul(const char *variant, void *out, const void *gu, int64_t T,
                                            int64_t NI, lr_dtype dt, cudaStream_t s) {
    (void)variant;
    if (T < 0 || NI < 0)
        return lr_fail(LR_E_INVAL, "planted silu_and_mul: T %lld, NI %lld", (long long)T, (long long)NI);
    if (T == 0 || NI == 0) return LR_OK;
    return LR_DISPATCH_DTYPE(dt, planted_silu_and_mul, out, gu, T, NI, s);
}

/* ---- cache "block-edge" ------------------------------------------------------------------ */

template <typename E>
static __global__ void planted_cache_kernel(E *k_cache, E *v_cache, const E *qkv, int64_t ldqkv,
                                            int64_t k_col, int64_t v_col, int64_t T, int64_t width,
                                            int64_t block_size, const int64_t *slot_mapping) {
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        int64_t slot = slot_mapping[t];
        if (slot < 0 || slot % block_size >= block_size - 1) continue; /* the planted bug: block_size - 1 */
        const E *row = qkv + t * ldqkv;
        E *kd = k_cache + slot * width, *vd = v_cache + slot * width;
        for (int64_t j = threadIdx.x; j < width; j += blockDim.x) {
            kd[j] = row[k_col + j];
            vd[j] = row[v_col + j];
        }
    }
}

template <typename E>
static int planted_cache(void *k_cache, void *v_cache, const void *qkv, int64_t ldqkv, int64_t k_col,
                         int64_t v_col, int64_t T, int64_t width, int64_t block_size,
                         const int64_t *slot_mapping, cudaStream_t s) {
    planted_cache_kernel<E><<<planted_grid(T), PLANTED_THREADS, 0, s>>>(
        (E *)k_cache, (E *)v_cache, (const E *)qkv, ldqkv, k_col, v_col, T, width, block_size, slot_mapping);
    LAUNCH_CHECK();
    return LR_OK;
}

extern "C" int lr_test_planted_reshape_and_cache(const char *variant, void *k_cache, void *v_cache,
                                                 const void *qkv, int64_t ld, int64_t k_col, int64_t v_col,
                                                 int64_t T, int64_t nkv, int64_t hd, int64_t block_size,
                                                 const int64_t *slot_mapping, lr_dtype dt, cudaStream_t s) {
    (void)variant;
    int64_t width = nkv * hd;
    if (T < 0 || nkv < 0 || hd < 0 || k_col < 0 || v_col < 0 || block_size < 1 || k_col + width > ld ||
        v_col + width > ld)
        return lr_fail(LR_E_INVAL, "planted reshape_and_cache: bad sizes");
    if (T == 0 || width == 0) return LR_OK;
    return LR_DISPATCH_DTYPE(dt, planted_cache, k_cache, v_cache, qkv, ld, k_col, v_col, T, width, block_size,
                             slot_mapping, s);
}

/* ---- attention "mask-off-by-one" and "stale-key" ------------------------------------------
 * One block per (token, head), two passes over the keys: the scores' maximum, then the
 * weights exp2(s - max) (scores in log2 units), their sum and P V, all in float32, the
 * context rounded once; P is never rounded, as flash keeps it. */
#define PLANTED_ATTN_MAX_HD 256

enum { PLANTED_MASK_OFF_BY_ONE, PLANTED_STALE_KEY };

static __device__ float planted_block_max(float v, float *part) {
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    float m = -INFINITY;
    for (int i = 0; i < nwarps; i++)
        m = fmaxf(m, part[i]);
    return m;
}

/* The score of the token's query (qs, hd) against logical key `key` of the sequence, in log2
 * units; stale: the newest visible key (vis - 1) read from the slot before it. */
template <typename E>
static __device__ float planted_score(const float *qs, const E *k_cache, const int32_t *table, int64_t key,
                                      int64_t vis, int64_t bs, int64_t kvw, int64_t off, int64_t hd,
                                      float sl2, int plant) {
    if (plant == PLANTED_STALE_KEY && key == vis - 1 && key > 0) key--; /* the planted bug */
    const E *kr = k_cache + ((int64_t)table[key / bs] * bs + key % bs) * kvw + off;
    float a = 0;
    for (int64_t d = 0; d < hd; d++)
        a = fmaf(qs[d], ld(kr + d), a);
    return a * sl2;
}

template <typename E>
static __global__ void planted_attention_kernel(E *ctx, int64_t ldc, const E *q, int64_t ldq,
                                                const E *k_cache, const E *v_cache, lr_gpu_attn_meta m,
                                                int64_t T, int64_t nh, int64_t nkv, int64_t hd, float scale,
                                                int plant) {
    __shared__ float qs[PLANTED_ATTN_MAX_HD], ps[PLANTED_THREADS], part[32];
    const float sl2 = scale * 1.4426950408889634f;
    int64_t h = blockIdx.y, off = h / (nh / nkv) * hd, kvw = nkv * hd, bs = m.block_size;
    int tid = threadIdx.x;
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        int64_t seq = m.token_seq[t], vis = m.token_keys[t];
        if (plant == PLANTED_MASK_OFF_BY_ONE && vis < m.seq_past[seq] + m.seq_len[seq])
            vis++; /* the planted bug: the key after the query's own is seen too */
        const int32_t *table = m.block_tables + seq * m.max_blocks;
        __syncthreads(); /* qs and ps may still be read for the previous token */
        for (int64_t d = tid; d < hd; d += blockDim.x)
            qs[d] = ld(q + t * ldq + h * hd + d);
        __syncthreads();
        float mx = -INFINITY;
        for (int64_t key = tid; key < vis; key += blockDim.x)
            mx = fmaxf(mx, planted_score(qs, k_cache, table, key, vis, bs, kvw, off, hd, sl2, plant));
        mx = planted_block_max(mx, part);
        float l = 0, acc = 0; /* this thread's share of the sum; its dimension d = tid of P V */
        for (int64_t k0 = 0; k0 < vis; k0 += blockDim.x) {
            int64_t key = k0 + tid, n = vis - k0 < blockDim.x ? vis - k0 : blockDim.x;
            float p =
                key < vis
                    ? exp2f(planted_score(qs, k_cache, table, key, vis, bs, kvw, off, hd, sl2, plant) - mx)
                    : 0.0f;
            ps[tid] = p;
            l += p;
            __syncthreads();
            if (tid < hd)
                for (int64_t i = 0; i < n; i++) {
                    int64_t kk = k0 + i, slot = (int64_t)table[kk / bs] * bs + kk % bs;
                    acc = fmaf(ps[i], ld(v_cache + slot * kvw + off + tid), acc);
                }
            __syncthreads();
        }
        l = planted_block_sum(l, part);
        if (tid < hd) st(ctx + t * ldc + h * hd + tid, acc / l);
    }
}

template <typename E>
static int planted_attention(void *ctx, int64_t ldc, const void *q, int64_t ldq, const void *k_cache,
                             const void *v_cache, const lr_gpu_attn_meta *m, int64_t T, int64_t nh,
                             int64_t nkv, int64_t hd, float scale, int plant, cudaStream_t s) {
    dim3 grid(planted_grid(T), (unsigned int)nh);
    planted_attention_kernel<E><<<grid, PLANTED_THREADS, 0, s>>>((E *)ctx, ldc, (const E *)q, ldq,
                                                                 (const E *)k_cache, (const E *)v_cache, *m,
                                                                 T, nh, nkv, hd, scale, plant);
    LAUNCH_CHECK();
    return LR_OK;
}

static int planted_attention_checked(void *ctx, int64_t ldc, const void *q, int64_t ldq, const void *k_cache,
                                     const void *v_cache, const lr_gpu_attn_meta *m, int64_t T, int64_t nh,
                                     int64_t nkv, int64_t hd, float scale, lr_dtype dt, int plant,
                                     cudaStream_t s) {
    if (!m || T < 0 || nh < 0 || nkv < 1 || nh % nkv || hd < 1 || hd > PLANTED_ATTN_MAX_HD || nh > 65535 ||
        ldq < nh * hd || ldc < nh * hd || m->block_size < 1)
        return lr_fail(LR_E_INVAL, "planted attention: bad sizes");
    if (T == 0 || nh == 0) return LR_OK;
    return LR_DISPATCH_DTYPE(dt, planted_attention, ctx, ldc, q, ldq, k_cache, v_cache, m, T, nh, nkv, hd,
                             scale, plant, s);
}

extern "C" int lr_test_planted_attention_mask(const char *variant, void *ctx, int64_t ldc, const void *q,
                                              int64_t ldq, const void *k_cache, const void *v_cache,
                                              const lr_gpu_attn_meta *meta, int64_t T, int64_t nh,
                                              int64_t nkv, int64_t hd, float scale, lr_dtype dt,
                                              lr_gpu_attn_ws *ws, cudaStream_t s) {
    (void)variant, (void)ws;
    return planted_attention_checked(ctx, ldc, q, ldq, k_cache, v_cache, meta, T, nh, nkv, hd, scale, dt,
                                     PLANTED_MASK_OFF_BY_ONE, s);
}

extern "C" int lr_test_planted_attention_stale(const char *variant, void *ctx, int64_t ldc, const void *q,
                                               int64_t ldq, const void *k_cache, const void *v_cache,
                                               const lr_gpu_attn_meta *meta, int64_t T, int64_t nh,
                                               int64_t nkv, int64_t hd, float scale, lr_dtype dt,
                                               lr_gpu_attn_ws *ws, cudaStream_t s) {
    (void)variant, (void)ws;
    return planted_attention_checked(ctx, ldc, q, ldq, k_cache, v_cache, meta, T, nh, nkv, hd, scale, dt,
                                     PLANTED_STALE_KEY, s);
}
