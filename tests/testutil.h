/* testutil.h: helpers shared by the Check suites: status assertions, scratch
 * directories and files, F16/BF16 encoding, and synthetic Hugging Face Llama
 * checkpoints (config.json in either style, one safetensors file or an index with two
 * shards) holding deterministic pseudo-random weights that a suite can also read back
 * as exact doubles to compute its own expectations. */
#ifndef LLAMAREF_TESTUTIL_H
#define LLAMAREF_TESTUTIL_H

#include "llamaref.h"

#include <check.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Assertions ------------------------------------------------------------------ */

/* expr must return status want; on failure the message shows both names and the
 * library's last error. */
#define TU_ASSERT_STATUS(expr, want)                                                       \
    do {                                                                                   \
        int tu_rc_ = (expr), tu_want_ = (want);                                            \
        ck_assert_msg(tu_rc_ == tu_want_, "%s returned %s, expected %s (last error: %s)",  \
                      #expr, lr_status_name(tu_rc_), lr_status_name(tu_want_),             \
                      lr_last_error());                                                    \
    } while (0)
#define TU_ASSERT_OK(expr) TU_ASSERT_STATUS(expr, LR_OK)

/* Every string given occurs in lr_last_error(). */
#define TU_ASSERT_ERROR_HAS(...)                                                           \
    do {                                                                                   \
        const char *tu_needles_[] = {__VA_ARGS__, NULL};                                   \
        const char *tu_missing_ = tu_first_missing(lr_last_error(), tu_needles_);          \
        ck_assert_msg(!tu_missing_, "last error \"%s\" does not mention \"%s\"",           \
                      lr_last_error(), tu_missing_);                                       \
    } while (0)

/* An assertion for inner loops: ck_assert_msg records every passing check (a write to
 * the fork pipe), which dominates element-by-element comparisons; this one costs
 * nothing when cond holds. */
#define TU_CHECK(cond, ...)                                                                \
    do {                                                                                   \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                            \
    } while (0)

/* The first of the NULL-terminated needles that does not occur in haystack, or NULL. */
const char *tu_first_missing(const char *haystack, const char *const *needles);

/* ---- Scratch directories and files -------------------------------------------------
 * Helpers that touch the file system abort the running test on failure. */

/* A fresh directory under $LR_TMPDIR (or /tmp), unique per call: "<tag>-XXXXXX". */
char *tu_tmpdir(const char *tag);
/* Removes dir and everything under it, then frees the string; accepts NULL. */
void tu_tmpdir_free(char *dir);
/* dir/name, freshly allocated. */
char *tu_path(const char *dir, const char *name);
void tu_write_file(const char *path, const void *data, size_t len);
void tu_write_text(const char *path, const char *text);
/* Writes a JSON value (compact, keys in insertion order); does not steal j. */
void tu_write_json(const char *path, const json_t *j);
/* The whole file, freshly allocated (NUL-terminated for convenience). */
void *tu_read_file(const char *path, size_t *len);
/* Number of entries of dir whose name contains substr ("" counts everything). */
size_t tu_dir_count(const char *dir, const char *substr);

/* ---- 16-bit floats (independent of the library's own conversions) ---------------- */

uint16_t tu_f16_from_float(float x);  /* round to nearest even, overflow to inf */
uint16_t tu_bf16_from_float(float x); /* round to nearest even */
double tu_f16_to_double(uint16_t h);
double tu_bf16_to_double(uint16_t h);

/* ---- Deterministic values ---------------------------------------------------------- */

/* A value in [-1, 1) with 24 significant bits (so exact in float), a pure function of
 * (seed, key, i). */
double tu_uniform(uint64_t seed, const char *key, uint64_t i);

/* ---- Synthetic checkpoints ----------------------------------------------------------- */

/* One HF tensor. data holds the values exactly as stored in the file (already rounded
 * to dtype), row-major; 1-D tensors have shape[1] == 1. */
typedef struct {
    char *name;
    lr_dtype dtype; /* storage dtype in the file */
    int ndim;
    int64_t shape[2];
    double *data; /* (shape[0], shape[1]) */
} tu_tensor;

/* A model: its config and every HF tensor it implies, in HF order. Weights are
 * uniform in +-1/sqrt(in_features), embeddings in +-1, norm weights in 1 +- 1/4,
 * biases in +-1/8, each rounded to the storage dtype. */
typedef struct {
    lr_config cfg;  /* cfg.config_style (4 or 5) picks the style of config.json */
    lr_dtype dtype; /* F32, F16 or BF16 */
    uint64_t seed;
    size_t n, cap;
    tu_tensor *t;
} tu_model;

typedef enum {
    TU_SINGLE,  /* model.safetensors */
    TU_SHARDED, /* model.safetensors.index.json + model-0000{1,2}-of-00002.safetensors */
} tu_layout;

#define TU_SHARD1 "model-00001-of-00002.safetensors"
#define TU_SHARD2 "model-00002-of-00002.safetensors"

/* A small valid Llama config (transformers 4.x style, default RoPE):
 * vocab 70, hidden 32, intermediate 48, 2 layers, 4 heads, 2 KV heads, head_dim 8. */
void tu_config_small(lr_config *c);
/* config.json for c, in the style c->config_style (4 when 0); a new reference. Every
 * field is written, optional ones included. */
json_t *tu_config_to_json(const lr_config *c);
/* Writes dir/config.json. */
void tu_write_config(const char *dir, const lr_config *c);

/* Every tensor cfg implies (the HF names, as save_pretrained writes them). */
tu_model *tu_model_create(const lr_config *cfg, lr_dtype dtype, uint64_t seed);
void tu_model_free(tu_model *m);
const tu_tensor *tu_model_find(const tu_model *m, const char *name);
/* Element (row, col) of a tensor; col is 0 for 1-D tensors. */
static inline double tu_at(const tu_tensor *t, int64_t row, int64_t col) {
    return t->data[row * t->shape[1] + col];
}
/* Removes a tensor (no-op when absent). */
void tu_model_drop(tu_model *m, const char *name);
/* Adds, or replaces, a tensor with fresh deterministic values of the given shape
 * (d1 ignored when ndim is 1), stored in the model's dtype. */
tu_tensor *tu_model_put(tu_model *m, const char *name, int ndim, int64_t d0, int64_t d1);
/* Writes config.json (from m->cfg) and the weights into dir (which must exist). */
void tu_model_write(const tu_model *m, const char *dir, tu_layout layout);

/* The one-call form: a fresh model written into dir; returns it for expectations. */
tu_model *tu_write_checkpoint(const char *dir, const lr_config *cfg, lr_dtype dtype,
                              tu_layout layout, uint64_t seed);

/* Runs every test of a suite (verbosity from CK_VERBOSITY); returns the exit status. */
int tu_run_suite(Suite *s);

#endif
