/* attention.cuh: what the attention variants share (private to gpu/attention*.cu): the
 * device helpers (warp reductions, the paged cache's key offset, a tile's key count), the
 * head_dim ladder, the launchers (so that one variant can hand a call it has no kernel
 * for to another: fa2 -> tc -> flash) and the workspace.
 *
 *   attention.cu         lr_gpu_attention (argument checks), the workspace
 *   attention_simple.cu  "simple": one warp per (token, head), one key at a time
 *   attention_flash.cu   "flash": 16 query rows per block, K/V tiles in shared memory
 *   attention_tc.cu      "tc": split-key decode, wmma tensor-core prefill, else flash
 *   attention_fa2.cu     "fa2" (default): FlashAttention-2 on mma.sync, else tc
 *
 * Threads of a warp split the head dimension: lane l owns dimensions l, l + 32, ... (or
 * l DPL .. l DPL + DPL - 1 in tc's decode); DPL (dimensions per lane, hd <= 32 DPL) is a
 * template parameter so those slices live in registers. */
#ifndef LLAMAREF_GPU_ATTENTION_CUH
#define LLAMAREF_GPU_ATTENTION_CUH

#include "common.cuh"

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

#endif
