/* attention.cu: causal attention of a batch of sequences through the paged KV cache, the
 * twin of lr_ref_attention in ref/cpu/ops/attention.c (which the test runs per sequence on
 * contiguous K/V). Query token t of sequence s sees the first token_keys[t] keys of s,
 * found through s's block table; query head h reads kv head h / (nh / nkv). Scores,
 * softmax and the weighted sum are float32, the softmax online (running max and sum,
 * rescaled as the max grows), so no score matrix is ever stored.
 *
 * This file holds the entry point (argument checks, then the variant's launcher) and the
 * caller's workspace; the variants are one file each (attention.cuh lists them). */
#include "attention.cuh"

#include <stdlib.h>


/* ---- Workspace --------------------------------------------------------------------------
 * One device buffer, on the device of the first call that needs it; it only grows (the
 * sizes of a forward are reached in its warm-up, so a captured or timed forward never
 * allocates). */
struct lr_gpu_attn_ws {
    int device; /* where buf lives */
    void *buf;
    size_t cap; /* bytes; 0: nothing allocated yet */
};

extern "C" int lr_gpu_attn_ws_create(lr_gpu_attn_ws **out) {
    if (!out) return lr_fail(LR_E_INVAL, "gpu attention: lr_gpu_attn_ws_create: out is NULL");
    lr_gpu_attn_ws *ws = (lr_gpu_attn_ws *)calloc(1, sizeof *ws);
    if (!ws) return lr_fail(LR_E_NOMEM, "gpu attention: out of memory");
    *out = ws;
    return LR_OK;
}

extern "C" void lr_gpu_attn_ws_free(lr_gpu_attn_ws *ws) {
    if (!ws) return;
    int prev;
    if (ws->buf && cudaGetDevice(&prev) == cudaSuccess && cudaSetDevice(ws->device) == cudaSuccess) {
        cudaFree(ws->buf);
        cudaSetDevice(prev);
    }
    free(ws);
}

extern "C" size_t lr_gpu_attn_ws_bytes(const lr_gpu_attn_ws *ws) { return ws ? ws->cap : 0; }

/* The current device into *dev, refused when the workspace already holds memory on another. */
static int ws_device(const lr_gpu_attn_ws *ws, int *dev) {
    CUDA_CHECK(cudaGetDevice(dev));
    if (ws->cap > 0 && ws->device != *dev)
        return lr_fail(LR_E_INVAL, "gpu attention: workspace on GPU %d, call on GPU %d (one per stream)",
                       ws->device, *dev);
    return LR_OK;
}

int lr_gpu_attn_ws_reserve(lr_gpu_attn_ws *ws, size_t bytes, cudaStream_t s, void **out) {
    int dev = 0, rc = ws_device(ws, &dev);
    if (rc) return rc;
    if (ws->cap < bytes) {
        if (ws->cap > 0) {
            CUDA_CHECK(cudaStreamSynchronize(s));
            CUDA_CHECK(cudaFree(ws->buf));
            ws->buf = NULL;
            ws->cap = 0;
        }
        void *p = NULL;
        CUDA_CHECK(cudaMalloc(&p, bytes));
        ws->buf = p;
        ws->cap = bytes;
        ws->device = dev;
    }
    *out = ws->buf;
    return LR_OK;
}

/* ---- Entry point --------------------------------------------------------------------- */

extern "C" int lr_gpu_attention(const char *variant, void *ctx, int64_t ldc, const void *q, int64_t ldq,
                                const void *k_cache, const void *v_cache, const lr_gpu_attn_meta *meta,
                                int64_t T, int64_t nh, int64_t nkv, int64_t hd, float scale, lr_dtype dt,
                                lr_gpu_attn_ws *ws, cudaStream_t s) {
    const lr_gpu_kernel *k;
    int rc = lr_gpu_kernel_find("attention", variant, &k);
    if (rc) return rc;
    if (!meta) return lr_fail(LR_E_INVAL, "gpu attention: meta is NULL");
    if (!ws) return lr_fail(LR_E_INVAL, "gpu attention: ws is NULL (lr_gpu_attn_ws_create)");
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
    lr_gpu_attention_args a = {ctx, ldc, q, ldq, k_cache, v_cache, *meta, T, nh, nkv, hd, scale, dt, ws,
                               lr_gpu_attn_ws_reserve};
    return lr_gpu_kernel_run(k, &a, dt, s);
}
