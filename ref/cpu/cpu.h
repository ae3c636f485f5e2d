/* cpu.h: the CPU reference backend's private state, shared by cpu_backend.c and the
 * precision-templated forward pass (the templates in ops/, compiled by cpu_f64.c and
 * cpu_f32.c). */
#ifndef LLAMAREF_CPU_H
#define LLAMAREF_CPU_H

#include "backend.h"
#include "ref_ops.h"

#include <time.h>

/* One decoder layer's packed weights on one rank; data in the compute precision. */
typedef struct {
    const void *input_layernorm;          /* (H) */
    const void *qkv_w, *qkv_b;            /* (q_r + 2 kv_r, H), (q_r + 2 kv_r) or NULL */
    const void *o_w, *o_b;                /* (H, q_r), (H) or NULL */
    const void *post_attention_layernorm; /* (H) */
    const void *gate_up_w, *gate_up_b;    /* (2 I_r, H), (2 I_r) or NULL */
    const void *down_w, *down_b;          /* (H, I_r), (H) or NULL */
} cpu_layer;

/* Everything one tensor-parallel rank holds. */
typedef struct {
    lr_tp_layout L;
    lr_plan *plan;
    lr_weights *w;
    const void *embed;   /* (vocab_shard, H) */
    const void *norm;    /* (H) */
    const void *lm_head; /* (vocab_shard, H); the embedding when tied */
    cpu_layer *layers;   /* (num_hidden_layers) */
} cpu_rank;

typedef struct {
    lr_config cfg;
    lr_dtype dt; /* F64 or F32 */
    int tp;
    cpu_rank *ranks; /* (tp) */
    double *inv_freq; /* (head_dim / 2), float64 whatever dt is */
    /* Where each rank's column block lands when a stage is gathered for an observer:
     * q heads, kv heads (replicas land on the same block), intermediate. (tp) each */
    int64_t *col_q, *col_kv, *col_i;
    bool profiling;   /* lr_model_set_profiling */
    lr_profile prof;
    void *hidden;     /* (cap_tokens, H): forward's result */
    void *logits;     /* (cap_tokens, V): compute_logits' result */
    int64_t cap_hidden, cap_logits;
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

/* Profiling: a span of one op kind. Reads the clock only when profiling is on. */
static inline uint64_t cpu_prof_begin(const cpu_model *m) {
    if (!m->profiling) return 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
static inline void cpu_prof_end(cpu_model *m, lr_prof_op op, uint64_t t0) {
    if (!m->profiling) return;
    m->prof.ns[op] += cpu_prof_begin(m) - t0;
    m->prof.calls[op]++;
}

typedef lr_seq_span cpu_seq;

int cpu_forward_f64(cpu_model *m, const lr_batch *b, const cpu_seq *seqs, cpu_kv *kv,
                    const lr_observer *obs, double *out);
int cpu_forward_f32(cpu_model *m, const lr_batch *b, const cpu_seq *seqs, cpu_kv *kv,
                    const lr_observer *obs, float *out);
int cpu_logits_f64(cpu_model *m, const double *hidden, int64_t T, const lr_observer *obs, double *out);
int cpu_logits_f32(cpu_model *m, const float *hidden, int64_t T, const lr_observer *obs, float *out);

#endif
