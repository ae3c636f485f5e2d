/* cache.cu: reshape_and_cache, the write of a batch's keys and values into one layer's
 * paged KV cache (num_blocks, block_size, nkv, hd), as vLLM lays it out. The reference
 * (ref/ops/attention.c) keeps a contiguous cache per sequence instead; the attention
 * test reads the paged layout back through block tables. */
#include "common.cuh"

/* Every cache launcher receives an lr_gpu_cache_args (llamaref_kernels.h). */

#define MAX_ROW_BLOCKS 65535
#define CACHE_THREADS 256

/* One block per token: its key and value rows (nkv * hd each) go whole to its slot, since
 * a slot's (nkv, hd) is contiguous in this layout. Copies without conversion. A negative
 * slot (vLLM's padding token) writes nothing. */
template <typename E>
static __global__ void cache_scatter_kernel(E *k_cache, E *v_cache, const E *qkv, int64_t ldqkv,
                                            int64_t k_col, int64_t v_col, int64_t T, int64_t width,
                                            const int64_t *slot_mapping) {
    pdl_trigger(); /* launched with programmatic dependent launch (common.cuh) */
    pdl_wait();
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        int64_t slot = slot_mapping[t];
        if (slot < 0) continue;
        const E *row = qkv + t * ldqkv;
        E *kd = k_cache + slot * width, *vd = v_cache + slot * width;
        for (int64_t j = threadIdx.x; j < width; j += blockDim.x) {
            kd[j] = row[k_col + j];
            vd[j] = row[v_col + j];
        }
    }
}

template <typename E> static int cache_scatter(const lr_gpu_cache_args *a, cudaStream_t s) {
    unsigned int grid = (unsigned int)(a->T < MAX_ROW_BLOCKS ? a->T : MAX_ROW_BLOCKS);
    LR_LAUNCH(cache_scatter_kernel<E>, grid, CACHE_THREADS, 0, s, (E *)a->k_cache, (E *)a->v_cache,
              (const E *)a->qkv, a->ld, a->k_col, a->v_col, a->T, a->nkv * a->hd, a->slot_mapping);
    return LR_OK;
}

int lr_gpu_cache_scatter(const void *args, cudaStream_t s) {
    const lr_gpu_cache_args *a = (const lr_gpu_cache_args *)args;
    return LR_DISPATCH_DTYPE(a->dt, cache_scatter, a, s);
}

extern "C" int lr_gpu_reshape_and_cache(const char *variant, void *k_cache, void *v_cache, const void *qkv,
                                        int64_t ld, int64_t k_col, int64_t v_col, int64_t T, int64_t nkv,
                                        int64_t hd, int64_t block_size, const int64_t *slot_mapping,
                                        lr_dtype dt, cudaStream_t s) {
    const lr_gpu_kernel *k;
    int rc = lr_gpu_kernel_find("cache", variant, &k);
    if (rc) return rc;
    if (T < 0 || nkv < 0 || hd < 0 || k_col < 0 || v_col < 0)
        return lr_fail(LR_E_INVAL,
                       "gpu reshape_and_cache: negative size or column (T %lld, nkv %lld, "
                       "hd %lld, k_col %lld, v_col %lld)",
                       (long long)T, (long long)nkv, (long long)hd, (long long)k_col, (long long)v_col);
    if (block_size < 1)
        return lr_fail(LR_E_INVAL, "gpu reshape_and_cache: block_size %lld is not positive",
                       (long long)block_size);
    int64_t width = nkv * hd;
    if (k_col + width > ld || v_col + width > ld)
        return lr_fail(LR_E_INVAL,
                       "gpu reshape_and_cache: key columns %lld.. or value columns %lld.. "
                       "(width %lld) pass the row stride %lld",
                       (long long)k_col, (long long)v_col, (long long)width, (long long)ld);
    if (dt != LR_F32 && dt != LR_F16 && dt != LR_BF16)
        return lr_fail(LR_E_INVAL, "gpu reshape_and_cache: dtype %s is not F32, F16 or BF16",
                       lr_dtype_name(dt));
    if (T == 0 || width == 0) return LR_OK;
    lr_gpu_cache_args a = {k_cache, v_cache, qkv, ld, k_col, v_col, T, nkv, hd, block_size, slot_mapping, dt};
    return lr_gpu_kernel_run(k, &a, dt, s);
}
