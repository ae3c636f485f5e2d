/* cpu.h: the CPU reference backend's private state, shared by cpu_backend.c and the
 * precision-templated forward pass (the templates in ops/, compiled by cpu_f64.c and
 * cpu_f32.c). bf16 and fp16 are emulated: the float32 pass, rounded to the dtype where
 * the CUDA path rounds (the rounding map, ref/core/rounding.h). */
#ifndef LLAMAREF_CPU_H
#define LLAMAREF_CPU_H

#include "backend.h"
#include "layer.h"
#include "ref_ops.h"
#include "rounding.h"

#include <time.h>

/* Everything one tensor-parallel rank holds. */
typedef struct {
    lr_tp_layout L;
    lr_plan *plan;
    lr_weights *w; /* the packed tensors in plan order, in the arithmetic's precision
                    * (bf16/fp16: float32 holding values rounded to the dtype) */
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
    double *inv_freq;       /* (head_dim / 2), float64 whatever dt is */
    bool profiling;         /* lr_model_set_profiling */
    uint64_t prof_t;        /* the clock at the last profiling mark */
    const lr_fault *faults; /* (num_faults): lr_model_set_faults, owned by the front */
    size_t num_faults;
    lr_profile prof;
    void *hidden;     /* (cap_tokens, H): forward's result, in dt */
    void *logits;     /* (cap_tokens, V): compute_logits' result, in dt */
    void *wide_in, *wide_out; /* BF16/F16: float32 staging of compute_logits' input, of results */
    int64_t cap_hidden, cap_logits, cap_wide_in, cap_wide_out;
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

int cpu_forward_f64(cpu_model *m, const lr_batch *b, const cpu_seq *seqs, cpu_kv *kv,
                    const lr_observer *obs, double *out);
int cpu_forward_f32(cpu_model *m, const lr_batch *b, const cpu_seq *seqs, cpu_kv *kv,
                    const lr_observer *obs, float *out);
int cpu_logits_f64(cpu_model *m, const double *hidden, int64_t T, const lr_observer *obs, double *out);
int cpu_logits_f32(cpu_model *m, const float *hidden, int64_t T, const lr_observer *obs, float *out);

#endif
