/* backend.h: the interface every backend (CPU reference, CUDA) implements. The front
 * (model.c) validates batches and options once; backends see only checked input. */
#ifndef LLAMAREF_BACKEND_H
#define LLAMAREF_BACKEND_H

#include "internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A batch after validation: per sequence, its tokens, cache slot and cached length. */
typedef struct {
    int64_t start, len, slot, past;
} lr_seq_span;

typedef struct lr_backend_ops {
    const char *name;
    /* required */
    int (*create)(const lr_checkpoint *ck, const lr_options *opt, void **impl);
    void (*destroy)(void *impl);
    int (*kv_create)(void *impl, int64_t max_seqs, int64_t max_len, void **kv);
    void (*kv_free)(void *kv);
    /* spans: num_seqs entries; the cache holds span.past tokens of each slot and gets
     * span.len more. hidden: (T, H) in the backend's precision, backend-owned; with rows
     * (checked: n in 1..T, each in 0..T-1), (n, H), row i that of token rows[i]. */
    int (*forward)(void *impl, const lr_batch *b, const lr_seq_span *spans, void *kv, const lr_observer *obs,
                   const int64_t *rows, int64_t n, lr_tensor *hidden);
    /* logits: (T, vocab), backend-owned. */
    int (*compute_logits)(void *impl, const lr_tensor *hidden, const lr_observer *obs,
                          lr_tensor *logits);
    /* optional: per-op timing (lr_model_set_profiling, lr_model_get_profile) */
    void (*set_profiling)(void *impl, bool on);
    void (*get_profile)(const void *impl, lr_profile *out);
    /* optional: GPUs in use (lr_model_num_devices); absent: 0, the host */
    int (*num_devices)(const void *impl);
    /* optional: faults for later forwards (checked; the array stays valid until the next
     * call); absent: the backend takes no faults */
    void (*set_faults)(void *impl, const lr_fault *faults, size_t n);
    /* optional: device memory after loading (lr_model_memory); absent: all 0 */
    void (*memory)(const void *impl, lr_memory *out);
    /* optional: the cache's tokens are forgotten (lr_kv_cache_reset); a backend drops
     * what it keeps about them (the CUDA backend's graphs captured over this cache) */
    void (*kv_reset)(void *kv);
    /* optional: lr_model_graph_stats; absent: LR_E_BACKEND */
    void (*graph_stats)(const void *impl, lr_graph_stats *out);
    /* optional: lr_model_greedy without an observer (hidden checked as for
     * compute_logits); absent: the argmax of compute_logits' logits on the host */
    int (*greedy)(void *impl, const lr_tensor *hidden, int64_t *tokens);
} lr_backend_ops;

/* The vtable of a backend built in, or NULL with a message (backends.c). */
const lr_backend_ops *lr_backend_ops_of(const lr_backend_info *b);

#ifdef __cplusplus
}
#endif
#endif
