/* internal.h: helpers shared by the library's own files; not installed. */
#ifndef LLAMAREF_INTERNAL_H
#define LLAMAREF_INTERNAL_H

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "llamaref.h"

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LR_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LR_PRINTF(a, b)
#endif

/* Records "file: field: detail" for lr_last_error() and returns status. */
int lr_fail(int status, const char *fmt, ...) LR_PRINTF(2, 3);

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool lr_mul_overflows(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline bool lr_add_overflows(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}

/* Reads a whole small file (config.json, index.json) into a NUL-terminated buffer,
 * refusing files larger than limit. */
/* LR_OK when the fault names a stage of a model with this config that an op computes. */
int lr_fault_check(const lr_fault *f, const lr_config *cfg);

/* RoPE inverse frequencies (head_dim / 2), float64, with the config's scaling (config.c). */
void lr_rope_inv_freq(const lr_config *cfg, double *inv_freq);
/* The same as transformers makes them, in float32 (config.c; rounding.h's ROPE_TORCH). */
void lr_rope_inv_freq_torch(const lr_config *cfg, double *inv_freq);

/* What structural faults change, defined once for every backend (fault.c). f may be NULL
 * or a fault of another kind: the op as specified. */
/* The epsilon a norm uses: eps, or eps x (1 + EPS) under an rms_eps fault. */
double lr_fault_rms_eps(const lr_fault *f, double eps);
/* The RoPE frequencies (head_dim / 2) a rotary op uses: cfg's, with rope_theta x (1 + EPS)
 * under a theta fault. */
void lr_fault_inv_freq(const lr_fault *f, const lr_config *cfg, double *inv_freq);
/* Keys visible to new token j (0-based) of a sequence with past cached tokens and len new
 * ones: past + j + 1 under the causal mask (shift 0); a mask fault shifts it by +1 or -1,
 * within 1 .. past + len. */
int64_t lr_causal_keys(int64_t past, int64_t j, int64_t len, int shift);
/* stale_kv: the cache position whose entry new token j of a sequence with past cached
 * tokens holds instead of its own (back positions before it), or -1 where it keeps its
 * own: a sequence with nothing cached (a prefill), or no position that far back. Applied
 * in token order, after the batch's keys and values are written. */
int64_t lr_stale_kv_source(int64_t past, int64_t j, int64_t back);

int lr_read_file(const char *path, size_t limit, char **out, size_t *len);

/* The llama.* metadata of a GGUF file as a config.json object (a new reference),
 * unvalidated; lr_gguf_config() validates it. */
struct json_t;
int lr_gguf_config_json(const lr_gguf_file *f, struct json_t **out);
/* The ggml types lr_gguf_dequantize() takes, for messages. */
#define LR_GGML_SUPPORTED "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K"

/* Opens a regular file and maps it read-only (private) when it holds at least min_len
 * bytes (else *map is NULL); *len is its size either way. The caller munmaps. */
int lr_map_file(const char *path, size_t min_len, void **map, size_t *len);

/* Joins dir and name into a fresh string. */
char *lr_path_join(const char *dir, const char *name);

/* Splits "model.layers.{i}[.suffix]": returns the layer and points suffix at "" or the
 * part after the dot; -1 when the name is not a layer stage. */
int64_t lr_stage_split(const char *stage, const char **suffix);

/* Drops the pages of a tensor of a file that lr_st_open mapped from the process's
 * resident set (madvise MADV_DONTNEED on the whole pages it covers); the data stays
 * readable and is read again from the page cache if touched. A no-op for files parsed
 * from a caller's buffer. lr_weights_build calls it once a tensor is converted, so that
 * loading holds the converted weights, not the converted weights and the file too. */
void lr_st_release(const lr_st_file *f, const lr_st_entry *e);
/* The same for a checkpoint's tensor by HF name (no-op when absent). A GGUF tensor,
 * which the checkpoint dequantizes when first read, is freed at the next read of
 * another tensor. */
void lr_checkpoint_release(const lr_checkpoint *ck, const char *name);
/* lr_checkpoint_find with a status: LR_E_MISSING, or LR_E_NOMEM where a GGUF tensor
 * cannot be dequantized for want of memory. */
int lr_checkpoint_tensor(const lr_checkpoint *ck, const char *name, const lr_st_entry **out);

/* Largest dimension accepted anywhere: keeps every product of two dims in int64. */
#define LR_MAX_DIM ((int64_t)1 << 31)

/* The shard index of a sharded checkpoint (model.safetensors.index.json): its
 * weight_map validated (every value a plain file name in the directory, at most 4096
 * distinct files), without touching the file system. checkpoint.c opens the shards. */
typedef struct lr_index lr_index;
/* Parses json (len bytes, need not be NUL-terminated); name labels errors. */
int lr_index_parse(const char *json, size_t len, const char *name, lr_index **out);
void lr_index_free(lr_index *ix);
/* Tensors in file order: the name of tensor i, and in *file (may be NULL) the index of
 * its file in lr_index_file(); NULL when i is out of range. */
size_t lr_index_count(const lr_index *ix);
const char *lr_index_at(const lr_index *ix, size_t i, size_t *file);
/* The distinct file names, in order of first use. */
size_t lr_index_file_count(const lr_index *ix);
const char *lr_index_file(const lr_index *ix, size_t k);
/* The file the index assigns a tensor to, or NULL. */
const char *lr_index_file_of(const lr_index *ix, const char *tensor);

#ifdef __cplusplus
}
#endif
#endif
