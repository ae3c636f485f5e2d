/* cpu.h: the CPU reference backend's private state, shared by cpu_backend.c and the
 * precision-templated forward pass (the templates in ops/, compiled by cpu_f64.c and
 * cpu_f32.c). bf16 and fp16 are emulated: the float32 pass, rounded to the dtype where
 * the CUDA path rounds (the rounding map, ref/core/rounding.h), or where a rounding
 * profile says. */
#ifndef LLAMAREF_CPU_H
#define LLAMAREF_CPU_H

#include "backend.h"
#include "layer.h"
#include "ref_ops.h"
#include "rounding.h"

#include <time.h>

/* A packed tensor in the weight cache (weights.c): converted, or not held. */
typedef struct {
    void *data; /* (shape) in the arithmetic's precision (bf16/fp16: float32 holding
                 * values rounded to the dtype), or NULL */
    size_t bytes;
    uint64_t used; /* the cache's clock at its last use */
} cpu_wslot;

/* Everything one tensor-parallel rank holds. */
typedef struct {
    lr_tp_layout L;
    lr_plan *plan;
    cpu_wslot *slot; /* (plan count): the packed tensors in plan order, held or not */
} cpu_rank;

typedef struct {
    lr_config cfg;
    lr_dtype dt;    /* the model's precision: F64, F32, or BF16/F16 (emulated) */
    lr_dtype arith; /* the arithmetic, which ops/ instantiation runs: F64, or F32 (also BF16, F16) */
    int tp;
    cpu_rank *ranks;        /* (tp) */
    lr_tp_layout *layouts;  /* (tp): each rank's, for the composer */
    int lm_head;            /* plan index of lm_head.weight (the embedding when tied) */
    bool f64_products;      /* lr_options.cpu_f64_products */
    lr_rounding rounding;   /* lr_options.rounding: where the emulated path rounds (rounding.h) */
    const char *attn_like;  /* lr_options.attention_like, as the map declares it; NULL: the default */
    double *inv_freq;       /* (head_dim / 2), float64 whatever dt is */
    double *inv_freq_torch; /* (head_dim / 2): transformers' float32 ones, for ROPE_TORCH; or NULL */
    /* The weight cache (weights.c): the checkpoint it reads (mapped, in its stored dtype;
     * not read again once every tensor is resident), its budget in bytes, what it holds. */
    const lr_checkpoint *ck;
    uint64_t budget, held, held_peak, converted, total;
    uint64_t clock, pin;    /* LRU clock; tensors used at or after pin belong to the running op */
    bool resident;          /* every tensor fitted the budget: converted at create */
    bool profiling;         /* lr_model_set_profiling */
    uint64_t prof_t;        /* the clock at the last profiling mark */
    const lr_fault *faults; /* (num_faults): lr_model_set_faults, owned by the front */
    size_t num_faults;
    lr_profile prof;
    void *hidden;     /* (cap_tokens, H): forward's result, in dt */
    void *rows;       /* (n, H): lr_model_forward_rows' rows of hidden, in dt */
    void *logits;     /* (cap_tokens, V): compute_logits' result, in dt */
    void *wide_in, *wide_out; /* BF16/F16: float32 staging of compute_logits' input, of results */
    int64_t cap_hidden, cap_rows, cap_logits, cap_wide_in, cap_wide_out;
} cpu_model;

/* Keys and values after RoPE, per (sequence slot, layer, rank): (max_len, kv_r). */
typedef struct {
    int64_t max_seqs, max_len, layers, tp, kv_size;
    int64_t *len; /* (max_seqs): tokens held */
    void *k, *v;
} cpu_kv;

static inline size_t cpu_kv_offset(const cpu_kv *c, int64_t slot, int64_t layer, int64_t rank) {
    return (size_t)(((slot * c->layers + layer) * c->tp + rank) * c->max_len * c->kv_size);
}

/* Profiling: the time since the last mark is charged to op kind prof (LR_PROF_NONE:
 * to nothing). Reads the clock only when profiling is on. */
static inline void cpu_prof_mark(cpu_model *m, int prof) {
    if (!m->profiling) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    if (prof != LR_PROF_NONE) {
        m->prof.ns[prof] += now - m->prof_t;
        m->prof.calls[prof]++;
    }
    m->prof_t = now;
}

typedef lr_seq_span cpu_seq;

/* The weight cache (weights.c). budget 0: cpu_default_budget(). */
uint64_t cpu_default_budget(void);
int cpu_weights_init(cpu_model *m, const lr_checkpoint *ck, uint64_t budget);
void cpu_weights_free(cpu_model *m);
/* An op starts: the tensors it fetches stay until the next op starts. */
static inline void cpu_weights_pin(cpu_model *m) { m->pin = m->clock + 1; }
/* Packed tensor index of rank r, converted and held (NULL for index -1). */
int cpu_weight(cpu_model *m, int r, int index, const void **out);
/* The tensor if held now, else NULL. */
const void *cpu_weight_held(const cpu_model *m, int r, int index);
/* Whether the tensor is better read by rows than held: not held, and larger than a
 * quarter of the budget (the embedding and LM head of a large model). */
bool cpu_weight_streamed(const cpu_model *m, int r, int index);
/* Rows [row0, row0 + rows) of the tensor into dst (rows, cols), converted as cpu_weight
 * converts (from the held tensor when there is one). */
int cpu_weight_rows(cpu_model *m, int r, int index, int64_t row0, int64_t rows, void *dst);
/* Done reading rows of the tensor: its mapped pages may go. */
void cpu_weights_release_rows(cpu_model *m, int r, int index);
/* The LM head's rows per BLAS call (ops/model.c, lm_head_rows): one fixed grid over the
 * vocabulary shard, held or read in blocks, so that both make the same calls (OpenBLAS's
 * sgemm, and at more than one thread its dgemm, give an element other bits in a call over
 * more rows). */
#define CPU_LM_HEAD_GEMM_ROWS 256
/* Rows per block when the tensor is read in blocks: a multiple of CPU_LM_HEAD_GEMM_ROWS
 * (so of 64), at most a quarter of the budget or 64 MiB, at least CPU_LM_HEAD_GEMM_ROWS. */
int64_t cpu_weight_block_rows(const cpu_model *m, int r, int index);

int cpu_forward_f64(cpu_model *m, const lr_batch *b, const cpu_seq *seqs, cpu_kv *kv,
                    const lr_observer *obs, double *out);
int cpu_forward_f32(cpu_model *m, const lr_batch *b, const cpu_seq *seqs, cpu_kv *kv,
                    const lr_observer *obs, float *out);
int cpu_logits_f64(cpu_model *m, const double *hidden, int64_t T, const lr_observer *obs, double *out);
int cpu_logits_f32(cpu_model *m, const float *hidden, int64_t T, const lr_observer *obs, float *out);

#endif
