/* embedding.cu: VocabParallelEmbedding on one rank, the twin of ref/ops/embedding.c: a
 * masked row lookup. Tokens outside this rank's vocabulary shard give zero rows, so that
 * summing the ranks' outputs (the all-reduce) yields the full embedding. */
#include "common.cuh"

/* Every embedding launcher receives an lr_gpu_embedding_args (llamaref_kernels.h). */

/* Rows are visited grid-stride, so any T fits a grid of at most this many blocks. */
#define MAX_ROW_BLOCKS 65535

/* One block per token row. The row is copied without conversion, so the lookup is exact. */
template <typename E>
static __global__ void embedding_gather_kernel(E *out, const int64_t *ids, int64_t T, const E *w,
                                               int64_t start, int64_t shard, int64_t H) {
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        int64_t local = ids[t] - start;
        E *o = out + t * H;
        if (local >= 0 && local < shard) {
            const E *src = w + local * H;
            for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
                o[i] = src[i];
        } else {
            for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
                st(o + i, 0.0f);
        }
    }
}

template <typename E> static int embedding_gather(const lr_gpu_embedding_args *a, cudaStream_t s) {
    unsigned int grid = (unsigned int)(a->T < MAX_ROW_BLOCKS ? a->T : MAX_ROW_BLOCKS);
    embedding_gather_kernel<E>
        <<<grid, 256, 0, s>>>((E *)a->out, a->ids, a->T, (const E *)a->w, a->start, a->shard, a->H);
    LAUNCH_CHECK();
    return LR_OK;
}

int lr_gpu_embedding_gather(const void *args, cudaStream_t s) {
    const lr_gpu_embedding_args *a = (const lr_gpu_embedding_args *)args;
    return LR_DISPATCH_DTYPE(a->dt, embedding_gather, a, s);
}

extern "C" int lr_gpu_embedding(const char *variant, void *out, const int64_t *ids, int64_t T, const void *w,
                                int64_t start, int64_t shard, int64_t H, lr_dtype dt, cudaStream_t s) {
    const lr_gpu_kernel *k;
    int rc = lr_gpu_kernel_find("embedding", variant, &k);
    if (rc) return rc;
    if (T < 0 || H < 0 || shard < 0)
        return lr_fail(LR_E_INVAL, "gpu embedding: negative size (T %lld, H %lld, shard %lld)", (long long)T,
                       (long long)H, (long long)shard);
    if (dt != LR_F32 && dt != LR_F16 && dt != LR_BF16)
        return lr_fail(LR_E_INVAL, "gpu embedding: dtype %s is not F32, F16 or BF16", lr_dtype_name(dt));
    if (T == 0 || H == 0) return LR_OK;
    lr_gpu_embedding_args a = {out, ids, T, w, start, shard, H, dt};
    return lr_gpu_kernel_run(k, &a, dt, s);
}
