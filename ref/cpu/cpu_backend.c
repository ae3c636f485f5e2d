/* cpu_backend.c: the CPU reference backend: every rank's plan, its weight cache over the
 * mapped checkpoint (weights.c: the packed, sharded weights converted to the compute
 * precision, F64 or F32, when needed and kept within a memory budget), the RoPE
 * frequencies in float64 (and transformers' float32 ones for a profile that rotates as
 * torch does), and the KV cache; then the forward pass of cpu_f64.c or cpu_f32.c. BF16 and
 * F16 are emulated by the float32 pass (cpu.h): weights rounded to the dtype once as they
 * are converted, and every buffer the rounding map (or lr_options.rounding's profile)
 * keeps in the dtype rounded by the op that writes it (ops/model.c). */
#include "cpu.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void cpu_destroy(void *impl) {
    cpu_model *m = impl;
    if (!m) return;
    cpu_weights_free(m);
    for (int r = 0; m->ranks && r < m->tp; r++)
        lr_plan_free(m->ranks[r].plan);
    free(m->ranks);
    free(m->layouts);
    free(m->inv_freq);
    free(m->inv_freq_torch);
    free(m->hidden);
    free(m->rows);
    free(m->logits);
    free(m->wide_in);
    free(m->wide_out);
    free(m);
}

static int cpu_create(const lr_checkpoint *ck, const lr_options *opt, void **impl) {
    lr_dtype dt = opt->precision;
    if (dt != LR_F64 && dt != LR_F32 && dt != LR_BF16 && dt != LR_F16)
        return lr_fail(LR_E_INVAL, "cpu backend: precision %s is not supported (f64, f32, bf16 or fp16)",
                       lr_dtype_name(dt));
    openblas_set_num_threads(opt->num_threads > 0 ? opt->num_threads : 1);
    cpu_model *m = calloc(1, sizeof *m);
    if (!m) return lr_fail(LR_E_NOMEM, "cpu backend: out of memory");
    m->cfg = *lr_checkpoint_config(ck);
    m->dt = dt;
    m->f64_products = opt->cpu_f64_products;
    m->arith = dt == LR_F64 ? LR_F64 : LR_F32;
    m->tp = opt->tp_size;
    size_t tp = (size_t)m->tp;
    m->ranks = calloc(tp, sizeof *m->ranks);
    m->inv_freq = calloc((size_t)m->cfg.head_dim / 2, sizeof *m->inv_freq);
    m->layouts = calloc(tp, sizeof *m->layouts);
    if (!m->ranks || !m->inv_freq || !m->layouts) {
        cpu_destroy(m);
        return lr_fail(LR_E_NOMEM, "cpu backend: out of memory");
    }
    lr_rope_inv_freq(&m->cfg, m->inv_freq);
    m->attn_like = lr_attention_variant_declared(opt->attention_like); /* checked by the front */
    int rc = lr_rounding_find(opt->rounding, &m->rounding);
    if (rc == LR_OK && lr_rounding_profile_of(m->rounding)->rotary == LR_RND_ROPE_TORCH) {
        if ((m->inv_freq_torch = calloc((size_t)m->cfg.head_dim / 2, sizeof *m->inv_freq_torch)))
            lr_rope_inv_freq_torch(&m->cfg, m->inv_freq_torch);
        else
            rc = lr_fail(LR_E_NOMEM, "cpu backend: out of memory");
    }
    for (int r = 0; r < m->tp && rc == LR_OK; r++) {
        cpu_rank *rk = &m->ranks[r];
        if ((rc = lr_plan_create(&m->cfg, m->tp, r, &rk->plan))) break;
        rk->L = m->layouts[r] = *lr_plan_layout(rk->plan);
    }
    if (rc == LR_OK) rc = cpu_weights_init(m, ck, opt->memory_budget);
    if (rc == LR_OK) m->lm_head = lr_plan_model(m->ranks[0].plan, LR_MW_LM_HEAD);
    if (rc) {
        cpu_destroy(m);
        return rc;
    }
    *impl = m;
    return LR_OK;
}

static void cpu_kv_free(void *p) {
    cpu_kv *c = p;
    if (!c) return;
    free(c->k);
    free(c->v);
    free(c);
}

static int cpu_kv_create(void *impl, int64_t max_seqs, int64_t max_len, void **out) {
    cpu_model *m = impl;
    cpu_kv *c = calloc(1, sizeof *c);
    if (!c) return lr_fail(LR_E_NOMEM, "kv cache: out of memory");
    c->max_seqs = max_seqs;
    c->max_len = max_len;
    c->layers = m->cfg.num_hidden_layers;
    c->tp = m->tp;
    c->kv_size = m->ranks[0].L.kv_size;
    uint64_t n = 1;
    uint64_t dims[] = {(uint64_t)max_seqs, (uint64_t)c->layers, (uint64_t)c->tp, (uint64_t)max_len,
                       (uint64_t)c->kv_size, lr_dtype_size(m->arith)};
    for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++) {
        if (lr_mul_overflows(n, dims[k], &n) || n > ((uint64_t)1 << 40)) {
            free(c);
            return lr_fail(LR_E_CAPACITY, "kv cache: %lld slots x %lld tokens is too large",
                           (long long)max_seqs, (long long)max_len);
        }
    }
    c->k = malloc((size_t)n);
    c->v = malloc((size_t)n);
    if (!c->k || !c->v) {
        cpu_kv_free(c);
        return lr_fail(LR_E_NOMEM, "kv cache: cannot allocate 2 x %llu bytes", (unsigned long long)n);
    }
    *out = c;
    return LR_OK;
}

/* Grows a result buffer to rows x cols elements of the model's precision. */
static int ensure(void **buf, int64_t *cap, int64_t n, size_t es) {
    if (n <= *cap) return LR_OK;
    void *p = realloc(*buf, (size_t)n * es);
    if (!p) return lr_fail(LR_E_NOMEM, "cpu backend: cannot allocate %lld results", (long long)n);
    *buf = p;
    *cap = n;
    return LR_OK;
}

static int cpu_forward(void *impl, const lr_batch *b, const lr_seq_span *spans, void *kv,
                       const lr_observer *obs, const int64_t *rows, int64_t n, lr_tensor *hidden) {
    cpu_model *m = impl;
    int64_t T = b->num_tokens, H = m->cfg.hidden_size;
    int rc = ensure(&m->hidden, &m->cap_hidden, T * H, lr_dtype_size(m->dt));
    if (rc) return rc;
    if (m->dt == LR_F64) {
        rc = cpu_forward_f64(m, b, spans, kv, obs, m->hidden);
    } else if (m->dt == LR_F32) {
        rc = cpu_forward_f32(m, b, spans, kv, obs, m->hidden);
    } else {
        /* float32 values already rounded to the dtype: the narrowing is exact */
        rc = ensure(&m->wide_out, &m->cap_wide_out, T * H, sizeof(float));
        if (rc == LR_OK) rc = cpu_forward_f32(m, b, spans, kv, obs, m->wide_out);
        if (rc == LR_OK) lr_convert(m->hidden, m->dt, m->wide_out, LR_F32, (size_t)(T * H));
    }
    if (rc) return rc;
    *hidden = (lr_tensor){.dtype = m->dt, .ndim = 2, .shape = {T, H}, .data = m->hidden};
    if (!rows) return LR_OK;
    size_t es = lr_dtype_size(m->dt), w = (size_t)H * es;
    if ((rc = ensure(&m->rows, &m->cap_rows, n * H, es))) return rc;
    for (int64_t i = 0; i < n; i++)
        memcpy((char *)m->rows + (size_t)i * w, (const char *)m->hidden + (size_t)rows[i] * w, w);
    *hidden = (lr_tensor){.dtype = m->dt, .ndim = 2, .shape = {n, H}, .data = m->rows};
    return LR_OK;
}

static int cpu_compute_logits(void *impl, const lr_tensor *hidden, const lr_observer *obs,
                              lr_tensor *logits) {
    cpu_model *m = impl;
    int64_t T = hidden->shape[0], V = m->cfg.vocab_size;
    int64_t H = m->cfg.hidden_size;
    int rc = ensure(&m->logits, &m->cap_logits, T * V, lr_dtype_size(m->dt));
    if (rc) return rc;
    if (m->dt == LR_F64) {
        rc = cpu_logits_f64(m, hidden->data, T, obs, m->logits);
    } else if (m->dt == LR_F32) {
        rc = cpu_logits_f32(m, hidden->data, T, obs, m->logits);
    } else {
        /* widened exactly to float32, the product rounded to the dtype by cpu_logits_f32 */
        if ((rc = ensure(&m->wide_in, &m->cap_wide_in, T * H, sizeof(float))) ||
            (rc = ensure(&m->wide_out, &m->cap_wide_out, T * V, sizeof(float))))
            return rc;
        lr_convert(m->wide_in, LR_F32, hidden->data, m->dt, (size_t)(T * H));
        rc = cpu_logits_f32(m, m->wide_in, T, obs, m->wide_out);
        if (rc == LR_OK) lr_convert(m->logits, m->dt, m->wide_out, LR_F32, (size_t)(T * V));
    }
    if (rc) return rc;
    *logits = (lr_tensor){.dtype = m->dt, .ndim = 2, .shape = {T, V}, .data = m->logits};
    return LR_OK;
}

static void cpu_set_profiling(void *impl, bool on) {
    cpu_model *m = impl;
    m->profiling = on;
    if (on) memset(&m->prof, 0, sizeof m->prof);
}

static void cpu_set_faults(void *impl, const lr_fault *faults, size_t n) {
    cpu_model *m = impl;
    m->faults = faults;
    m->num_faults = n;
}

static void cpu_memory(const void *impl, lr_memory *out) {
    const cpu_model *m = impl;
    out->host_weights_budget = m->budget;
    out->host_weights_total = m->total;
    out->host_weights_peak = m->held_peak;
    out->host_weights_converted = m->converted;
}

static void cpu_get_profile(const void *impl, lr_profile *out) {
    const cpu_model *m = impl;
    *out = m->prof;
}

const lr_backend_ops lr_cpu_backend = {
    .name = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .kv_create = cpu_kv_create,
    .kv_free = cpu_kv_free,
    .forward = cpu_forward,
    .compute_logits = cpu_compute_logits,
    .set_profiling = cpu_set_profiling,
    .get_profile = cpu_get_profile,
    .set_faults = cpu_set_faults,
    .memory = cpu_memory,
};
