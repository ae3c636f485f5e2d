/* util.cu: the small helpers of the CUDA backend: the ordered sum that stands in for the
 * all-reduce on one GPU, bias and residual adds, dtype conversion (grid-stride loops over
 * n elements), and the argmax of each row of the logits (greedy decoding). No variants:
 * each has one obvious kernel. */
#include "common.cuh"

#include <stdlib.h>
#include <string.h>

#define UTIL_THREADS 256
#define MAX_BLOCKS 65535

static unsigned int util_grid(int64_t n) {
    int64_t blocks = (n + UTIL_THREADS - 1) / UTIL_THREADS;
    return (unsigned int)(blocks < MAX_BLOCKS ? blocks : MAX_BLOCKS);
}

static bool is_activation_dtype(lr_dtype dt) { return dt == LR_F32 || dt == LR_F16 || dt == LR_BF16; }

/* ---- lr_gpu_sum -----------------------------------------------------------------------
 * The part pointers travel by value as a kernel argument, SUM_PARTS at a time. More parts
 * take several passes through a float32 accumulator, so the result is still the float32
 * sum in part order, rounded to the dtype once. */
#define SUM_PARTS 8

typedef struct {
    const void *p[SUM_PARTS];
} sum_parts;

template <typename E>
static __global__ void sum_kernel(E *out, float *acc, sum_parts parts, int count, bool first, bool last,
                                  int64_t n) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float v = first ? ld((const E *)parts.p[0] + i) : acc[i];
        for (int k = first ? 1 : 0; k < count; k++)
            v += ld((const E *)parts.p[k] + i);
        if (last)
            st(out + i, v);
        else
            acc[i] = v;
    }
}

template <typename E>
static int sum_passes(void *out, float *acc, const void *const *parts, int nparts, int64_t n,
                      cudaStream_t s) {
    for (int k0 = 0; k0 < nparts; k0 += SUM_PARTS) {
        int count = nparts - k0 < SUM_PARTS ? nparts - k0 : SUM_PARTS;
        sum_parts p = {};
        for (int k = 0; k < count; k++)
            p.p[k] = parts[k0 + k];
        sum_kernel<E>
            <<<util_grid(n), UTIL_THREADS, 0, s>>>((E *)out, acc, p, count, k0 == 0, k0 + count == nparts, n);
        LAUNCH_CHECK();
    }
    return LR_OK;
}

template <typename E>
static int sum_launch(void *out, const void *const *parts, int nparts, int64_t n, cudaStream_t s) {
    if (nparts <= SUM_PARTS) return sum_passes<E>(out, NULL, parts, nparts, n, s);
    float *acc = NULL;
    CUDA_CHECK(cudaMallocAsync((void **)&acc, (size_t)n * sizeof(float), s));
    int rc = sum_passes<E>(out, acc, parts, nparts, n, s);
    cudaError_t e = cudaFreeAsync(acc, s);
    if (rc) return rc;
    CUDA_CHECK(e);
    return LR_OK;
}

extern "C" int lr_gpu_sum(void *out, const void *const *parts, int nparts, int64_t n, lr_dtype dt,
                          cudaStream_t s) {
    if (n < 0 || nparts < 1 || !parts)
        return lr_fail(LR_E_INVAL, "gpu sum: %d parts of %lld elements", nparts, (long long)n);
    if (!is_activation_dtype(dt))
        return lr_fail(LR_E_INVAL, "gpu sum: dtype %s is not F32, F16 or BF16", lr_dtype_name(dt));
    if (n == 0) return LR_OK;
    return LR_DISPATCH_DTYPE(dt, sum_launch, out, parts, nparts, n, s);
}

/* ---- lr_gpu_add_bias ------------------------------------------------------------------ */

template <typename E> static __global__ void add_bias_kernel(E *y, const E *b, int64_t T, int64_t N) {
    int64_t n = T * N, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        st(y + i, ld(y + i) + ld(b + i % N));
}

template <typename E>
static int add_bias_launch(void *y, const void *b, int64_t T, int64_t N, cudaStream_t s) {
    add_bias_kernel<E><<<util_grid(T * N), UTIL_THREADS, 0, s>>>((E *)y, (const E *)b, T, N);
    LAUNCH_CHECK();
    return LR_OK;
}

extern "C" int lr_gpu_add_bias(void *y, const void *b, int64_t T, int64_t N, lr_dtype dt, cudaStream_t s) {
    if (T < 0 || N < 0)
        return lr_fail(LR_E_INVAL, "gpu add_bias: negative size (T %lld, N %lld)", (long long)T,
                       (long long)N);
    if (!is_activation_dtype(dt))
        return lr_fail(LR_E_INVAL, "gpu add_bias: dtype %s is not F32, F16 or BF16", lr_dtype_name(dt));
    if (T == 0 || N == 0) return LR_OK;
    return LR_DISPATCH_DTYPE(dt, add_bias_launch, y, b, T, N, s);
}

/* ---- lr_gpu_convert -------------------------------------------------------------------
 * One rounding from source to destination: 16-bit and float32 sources are exact in
 * float32 and go through it; a float64 source is rounded straight to the destination
 * (through float32 it could round twice). */
template <typename D, typename S> struct cvt {
    static __device__ __forceinline__ D go(S v) { return elem<D>::store(elem<S>::load(v)); }
};
template <> struct cvt<float, double> {
    static __device__ __forceinline__ float go(double v) { return __double2float_rn(v); }
};
template <> struct cvt<__half, double> {
    static __device__ __forceinline__ __half go(double v) { return __double2half(v); }
};
template <> struct cvt<__nv_bfloat16, double> {
    static __device__ __forceinline__ __nv_bfloat16 go(double v) { return __double2bfloat16(v); }
};

template <typename D, typename S> static __global__ void convert_kernel(D *dst, const S *src, int64_t n) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = cvt<D, S>::go(src[i]);
}

template <typename D, typename S>
static int convert_launch(void *dst, const void *src, int64_t n, cudaStream_t s) {
    convert_kernel<D, S><<<util_grid(n), UTIL_THREADS, 0, s>>>((D *)dst, (const S *)src, n);
    LAUNCH_CHECK();
    return LR_OK;
}

template <typename S>
static int convert_from(void *dst, lr_dtype ddt, const void *src, int64_t n, cudaStream_t s) {
    switch (ddt) {
    case LR_F32:
        return convert_launch<float, S>(dst, src, n, s);
    case LR_F16:
        return convert_launch<__half, S>(dst, src, n, s);
    case LR_BF16:
        return convert_launch<__nv_bfloat16, S>(dst, src, n, s);
    default:
        return lr_fail(LR_E_INVAL, "gpu convert: no conversion to %s", lr_dtype_name(ddt));
    }
}

extern "C" int lr_gpu_convert(void *dst, lr_dtype ddt, const void *src, lr_dtype sdt, int64_t n,
                              cudaStream_t s) {
    if (n < 0) return lr_fail(LR_E_INVAL, "gpu convert: %lld elements", (long long)n);
    if (!is_activation_dtype(ddt) || !(is_activation_dtype(sdt) || sdt == LR_F64))
        return lr_fail(LR_E_INVAL,
                       "gpu convert: no conversion from %s to %s (sources F64, "
                       "F32, F16, BF16; destinations F32, F16, BF16)",
                       lr_dtype_name(sdt), lr_dtype_name(ddt));
    if (n == 0) return LR_OK;
    switch (sdt) {
    case LR_F64:
        return convert_from<double>(dst, ddt, src, n, s);
    case LR_F32:
        return convert_from<float>(dst, ddt, src, n, s);
    case LR_F16:
        return convert_from<__half>(dst, ddt, src, n, s);
    default:
        return convert_from<__nv_bfloat16>(dst, ddt, src, n, s);
    }
}

/* ---- lr_gpu_add_residual -------------------------------------------------------------- */

template <typename E>
static __global__ void add_residual_kernel(float *out, const E *a, const float *r, int64_t n) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = ld(a + i) + r[i];
}

template <typename E>
static int add_residual_launch(float *out, const void *a, const float *r, int64_t n, cudaStream_t s) {
    add_residual_kernel<E><<<util_grid(n), UTIL_THREADS, 0, s>>>(out, (const E *)a, r, n);
    LAUNCH_CHECK();
    return LR_OK;
}

extern "C" int lr_gpu_add_residual(float *out, const void *a, const float *r, int64_t n, lr_dtype dt,
                                   cudaStream_t s) {
    if (n < 0) return lr_fail(LR_E_INVAL, "gpu add_residual: %lld elements", (long long)n);
    if (!is_activation_dtype(dt))
        return lr_fail(LR_E_INVAL, "gpu add_residual: dtype %s is not F32, F16 or BF16", lr_dtype_name(dt));
    if (n == 0) return LR_OK;
    return LR_DISPATCH_DTYPE(dt, add_residual_launch, out, a, r, n, s);
}

/* ---- lr_gpu_argmax ---------------------------------------------------------------------
 * A block per (chunk, row) (rows grid-strided): its threads scan the chunk's columns,
 * ARGMAX_UNROLL loads in flight each (a decode step's few rows of 128256 logits would
 * otherwise be a few blocks each waiting on one load at a time), then reduce their
 * candidates pairwise. Every comparison is lr_argmax_beats (common.cuh), a total order on
 * (value, index) pairs, so neither the pairing nor the chunking changes the answer. */
#define ARGMAX_THREADS 256
#define ARGMAX_UNROLL 8

template <typename E>
static __global__ void __launch_bounds__(ARGMAX_THREADS)
    argmax_kernel(float *val, int32_t *idx, const E *x, int64_t stride, int64_t T, int64_t n, int64_t chunk,
                  int64_t nchunks) {
    __shared__ float sv[ARGMAX_THREADS];
    __shared__ int32_t si[ARGMAX_THREADS];
    const int64_t c = blockIdx.x, j0 = c * chunk, j1 = j0 + chunk < n ? j0 + chunk : n;
    for (int64_t t = blockIdx.y; t < T; t += gridDim.y) {
        const E *r = x + t * stride;
        float bv = -INFINITY;
        int32_t bi = INT32_MAX;
        for (int64_t jb = j0 + threadIdx.x; jb < j1; jb += ARGMAX_THREADS * ARGMAX_UNROLL) {
            float v[ARGMAX_UNROLL];
#pragma unroll
            for (int u = 0; u < ARGMAX_UNROLL; u++) {
                const int64_t j = jb + u * ARGMAX_THREADS;
                v[u] = j < j1 ? ld(r + j) : -INFINITY;
            }
#pragma unroll
            for (int u = 0; u < ARGMAX_UNROLL; u++) {
                const int64_t j = jb + u * ARGMAX_THREADS;
                if (j < j1 && lr_argmax_beats(bv, bi, v[u], (int32_t)j)) bv = v[u], bi = (int32_t)j;
            }
        }
        sv[threadIdx.x] = bv, si[threadIdx.x] = bi;
        __syncthreads();
        for (int o = ARGMAX_THREADS / 2; o > 0; o >>= 1) {
            if (threadIdx.x < o &&
                lr_argmax_beats(sv[threadIdx.x], si[threadIdx.x], sv[threadIdx.x + o], si[threadIdx.x + o]))
                sv[threadIdx.x] = sv[threadIdx.x + o], si[threadIdx.x] = si[threadIdx.x + o];
            __syncthreads();
        }
        if (threadIdx.x == 0) val[t * nchunks + c] = sv[0], idx[t * nchunks + c] = si[0];
        __syncthreads(); /* sv, si are rewritten for the next row */
    }
}

template <typename E>
static int argmax_launch(float *val, int32_t *idx, const void *x, int64_t ld, int64_t T, int64_t n,
                         int64_t chunk, cudaStream_t s) {
    int64_t nchunks = (n + chunk - 1) / chunk;
    dim3 grid((unsigned int)nchunks, (unsigned int)(T < MAX_BLOCKS ? T : MAX_BLOCKS));
    argmax_kernel<E><<<grid, ARGMAX_THREADS, 0, s>>>(val, idx, (const E *)x, ld, T, n, chunk, nchunks);
    LAUNCH_CHECK();
    return LR_OK;
}

extern "C" int lr_gpu_argmax(float *val, int32_t *idx, const void *x, int64_t ld, int64_t T, int64_t n,
                             int64_t chunk, lr_dtype dt, cudaStream_t s) {
    if (T < 0 || n < 1 || n > INT32_MAX || ld < n || chunk < 1 || (n + chunk - 1) / chunk > INT32_MAX)
        return lr_fail(
            LR_E_INVAL,
            "gpu argmax: T %lld, n %lld, ld %lld, chunk %lld (n in 1..2^31-1, ld >= n, chunk >= 1)",
            (long long)T, (long long)n, (long long)ld, (long long)chunk);
    if (!is_activation_dtype(dt))
        return lr_fail(LR_E_INVAL, "gpu argmax: dtype %s is not F32, F16 or BF16", lr_dtype_name(dt));
    if (T == 0) return LR_OK;
    return LR_DISPATCH_DTYPE(dt, argmax_launch, val, idx, x, ld, T, n, chunk, s);
}

/* ---- The current device's compute capability and SM count, asked once a device ---- */

#define INFO_MAX_DEVICES 64
struct device_info {
    int known, cc_major, sms;
};
static device_info dev_info[INFO_MAX_DEVICES];

static const device_info *current_device_info(void) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= INFO_MAX_DEVICES) return NULL;
    device_info *d = &dev_info[dev];
    if (!d->known) {
        int major = 0, sms = 0;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            return NULL;
        d->cc_major = major, d->sms = sms, d->known = 1;
    }
    return d;
}

extern "C" int lr_gpu_cc_major(void) {
    const device_info *d = current_device_info();
    return d ? d->cc_major : 0;
}

extern "C" int lr_gpu_sm_count(void) {
    const device_info *d = current_device_info();
    return d ? d->sms : 0;
}

/* ---- Switches read from the environment once, which a test may force (gpu_ops.h) --------- */

typedef struct {
    const char *env; /* the variable */
    bool dflt;       /* its value where the variable is unset or neither "0" nor "1" */
    int forced;      /* set by the test: -1 the rule, 0 off, 1 on */
    int read;        /* the environment's answer: -1 not read yet */
} env_switch;

static void switch_set(env_switch *w, int on) { w->forced = on < 0 ? -1 : on != 0; }

static bool switch_on(env_switch *w) {
    if (w->forced >= 0) return w->forced == 1;
    if (w->read < 0) {
        const char *e = getenv(w->env);
        w->read = e && strcmp(e, "0") == 0 ? 0 : e && strcmp(e, "1") == 0 ? 1 : w->dflt;
    }
    return w->read == 1;
}

/* Programmatic dependent launch: on from compute capability 9.0 unless LLAMAREF_PDL=0. */
static env_switch pdl_switch = {"LLAMAREF_PDL", true, -1, -1};

extern "C" void lr_gpu_pdl_set(int on) { switch_set(&pdl_switch, on); }

extern "C" bool lr_gpu_pdl(void) {
    if (pdl_switch.forced >= 0) return pdl_switch.forced == 1;
    return switch_on(&pdl_switch) && lr_gpu_cc_major() >= 9;
}

/* RoPE fused with the cache write: on unless LLAMAREF_ROPE_CACHE=0. */
static env_switch rope_cache_switch = {"LLAMAREF_ROPE_CACHE", true, -1, -1};

extern "C" void lr_gpu_rope_cache_set(int on) { switch_set(&rope_cache_switch, on); }

extern "C" bool lr_gpu_rope_cache(void) { return switch_on(&rope_cache_switch); }

/* The fused RoPE + cache write's kernel for many tokens: on unless LLAMAREF_ROPE_WIDE=0. */
static env_switch rope_wide_switch = {"LLAMAREF_ROPE_WIDE", true, -1, -1};

extern "C" void lr_gpu_rope_wide_set(int on) { switch_set(&rope_wide_switch, on); }

extern "C" bool lr_gpu_rope_wide(void) { return switch_on(&rope_wide_switch); }

/* gate_up_proj and the activation as one kernel: on unless LLAMAREF_SILU_FUSE=0. */
static env_switch silu_fuse_switch = {"LLAMAREF_SILU_FUSE", true, -1, -1};

extern "C" void lr_gpu_silu_fuse_set(int on) { switch_set(&silu_fuse_switch, on); }

extern "C" bool lr_gpu_silu_fuse(void) { return switch_on(&silu_fuse_switch); }

/* qkv_proj with RoPE and the cache write as one kernel: on unless LLAMAREF_QKV_FUSE=0. */
static env_switch qkv_fuse_switch = {"LLAMAREF_QKV_FUSE", true, -1, -1};

extern "C" void lr_gpu_qkv_fuse_set(int on) { switch_set(&qkv_fuse_switch, on); }

extern "C" bool lr_gpu_qkv_fuse(void) { return switch_on(&qkv_fuse_switch); }

/* The layers' norms held for the fused GEMVs after them: off unless LLAMAREF_NORM_FUSE=1. */
static env_switch norm_fuse_switch = {"LLAMAREF_NORM_FUSE", false, -1, -1};

extern "C" void lr_gpu_norm_fuse_set(int on) { switch_set(&norm_fuse_switch, on); }

extern "C" bool lr_gpu_norm_fuse(void) { return switch_on(&norm_fuse_switch); }
