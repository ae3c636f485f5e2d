/* model.c (template, see ops/real.h): LlamaDecoderLayer, LlamaModel and
 * LlamaForCausalLM.compute_logits, as vLLM composes them, over every tensor-parallel
 * rank in turn. Where NCCL would all-reduce (embedding, o_proj, down_proj) or
 * all-gather (logits), the reference does the same sums and concatenations here. */

/* Scratch of one forward. Per-rank buffers are arrays of tp pointers. */
typedef struct {
    real *hidden, *residual, *normed; /* (T, H) */
    real **qkv;                       /* (T, q_r + 2 kv_r) */
    real **ctx;                       /* (T, q_r) */
    real **part;                      /* (T, H): a rank's partial sum */
    real **gate_up;                   /* (T, 2 I_r) */
    real **act;                       /* (T, I_r) */
    real *scores;                     /* (max(max len, heads per kv head), max past + len) */
    real *cs;                         /* (head_dim) */
    real *gathered;                   /* (T, max(vocab, H, I, q, kv)) for observers */
} R(work);

static void R(work_free)(R(work) *w, int tp) {
    free(w->hidden), free(w->residual), free(w->normed), free(w->scores), free(w->cs);
    free(w->gathered);
    real **per_rank[] = {w->qkv, w->ctx, w->part, w->gate_up, w->act};
    for (size_t k = 0; k < sizeof per_rank / sizeof per_rank[0]; k++) {
        for (int r = 0; per_rank[k] && r < tp; r++) free(per_rank[k][r]);
        free(per_rank[k]);
    }
}

static real *R(alloc)(int64_t n) { return malloc((size_t)(n > 0 ? n : 1) * sizeof(real)); }

static int R(work_alloc)(R(work) *w, const cpu_model *m, int64_t T, int64_t max_len,
                         int64_t max_keys, bool observed) {
    const lr_config *c = &m->cfg;
    const lr_tp_layout *L = &m->ranks[0].L;
    int64_t H = c->hidden_size, widest = H, group = L->num_heads / L->num_kv_heads;
    int64_t dims[] = {c->vocab_size, c->intermediate_size, c->num_attention_heads * c->head_dim};
    for (size_t k = 0; k < 3; k++) widest = dims[k] > widest ? dims[k] : widest;
    memset(w, 0, sizeof *w);
    bool ok = (w->hidden = R(alloc)(T * H)) && (w->residual = R(alloc)(T * H)) &&
              (w->normed = R(alloc)(T * H)) && (w->scores = R(alloc)((max_len > group ? max_len : group) * max_keys)) &&
              (w->cs = R(alloc)(c->head_dim)) && (!observed || (w->gathered = R(alloc)(T * widest)));
    real ***per_rank[] = {&w->qkv, &w->ctx, &w->part, &w->gate_up, &w->act};
    int64_t sizes[] = {L->q_size + 2 * L->kv_size, L->q_size, H, 2 * L->intermediate, L->intermediate};
    for (size_t k = 0; ok && k < 5; k++) {
        ok = (*per_rank[k] = calloc((size_t)m->tp, sizeof(real *))) != NULL;
        for (int r = 0; ok && r < m->tp; r++) ok = ((*per_rank[k])[r] = R(alloc)(T * sizes[k])) != NULL;
    }
    if (!ok) {
        R(work_free)(w, m->tp);
        return lr_fail(LR_E_NOMEM, "cpu backend: cannot allocate activations for %lld tokens",
                       (long long)T);
    }
    return LR_OK;
}

/* The all-reduce: out = parts[0] + parts[1] + ... in rank order. */
static void R(all_reduce)(real *out, real *const *parts, int tp, int64_t n) {
    memcpy(out, parts[0], (size_t)n * sizeof(real));
    for (int r = 1; r < tp; r++)
        for (int64_t i = 0; i < n; i++) out[i] += parts[r][i];
}

/* Reports a stage; the observer is known to be set. */
static void R(emit)(const lr_observer *obs, const real *x, int64_t T, int64_t N, const char *fmt,
                    ...) LR_PRINTF(5, 6);
static void R(emit)(const lr_observer *obs, const real *x, int64_t T, int64_t N, const char *fmt,
                    ...) {
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    lr_tensor t = {.dtype = LR_REAL_DTYPE, .ndim = 2, .shape = {T, N}, .data = x};
    obs->on_stage(obs->user, name, &t);
}

/* Gathers a column-parallel output for an observer: from each rank's rows (T, ld), the
 * block of width cols at src_col goes to column dst_col(rank) of out (T, N). */
static void R(gather)(real *out, int64_t N, real *const *parts, int64_t ld, int64_t src_col,
                      int64_t cols, const int64_t *dst_col, int tp, int64_t T) {
    for (int r = 0; r < tp; r++)
        for (int64_t t = 0; t < T; t++)
            memcpy(out + t * N + dst_col[r], parts[r] + t * ld + src_col, (size_t)cols * sizeof(real));
}

/* LlamaAttention: normed (T, H) -> hidden (T, H). */
static void R(llama_attention)(cpu_model *m, int64_t l, const lr_batch *b, const cpu_seq *seqs,
                               cpu_kv *kv, R(work) *w, const lr_observer *obs) {
    const lr_config *c = &m->cfg;
    const lr_tp_layout *L0 = &m->ranks[0].L;
    int64_t T = b->num_tokens, H = c->hidden_size, hd = c->head_dim;
    int64_t qw = L0->q_size + 2 * L0->kv_size;
    uint64_t t0 = cpu_prof_begin(m);
    for (int r = 0; r < m->tp; r++) {
        const cpu_rank *rk = &m->ranks[r];
        R(lr_ref_linear)(w->qkv[r], w->normed, rk->layers[l].qkv_w, rk->layers[l].qkv_b, T, qw, H);
    }
    cpu_prof_end(m, LR_PROF_QKV_PROJ, t0);
    if (obs) {
        int64_t nq = c->num_attention_heads * hd, nkv = c->num_key_value_heads * hd;
        R(gather)(w->gathered, nq, w->qkv, qw, 0, L0->q_size, m->col_q, m->tp, T);
        R(emit)(obs, w->gathered, T, nq, "model.layers.%lld.self_attn.q_proj", (long long)l);
        R(gather)(w->gathered, nkv, w->qkv, qw, L0->q_size, L0->kv_size, m->col_kv, m->tp, T);
        R(emit)(obs, w->gathered, T, nkv, "model.layers.%lld.self_attn.k_proj", (long long)l);
        R(gather)(w->gathered, nkv, w->qkv, qw, L0->q_size + L0->kv_size, L0->kv_size, m->col_kv, m->tp, T);
        R(emit)(obs, w->gathered, T, nkv, "model.layers.%lld.self_attn.v_proj", (long long)l);
    }
    for (int r = 0; r < m->tp; r++) {
        const cpu_rank *rk = &m->ranks[r];
        t0 = cpu_prof_begin(m);
        R(lr_ref_rotary_embedding)(w->qkv[r], qw, T, rk->L.num_heads, hd, b->positions, m->inv_freq, w->cs);
        R(lr_ref_rotary_embedding)(w->qkv[r] + rk->L.q_size, qw, T, rk->L.num_kv_heads, hd, b->positions,
                            m->inv_freq, w->cs);
        cpu_prof_end(m, LR_PROF_ROTARY, t0);
        t0 = cpu_prof_begin(m);
        R(attention)(w->ctx[r], w->qkv[r], m, rk, kv, l, b, seqs, w->scores);
        cpu_prof_end(m, LR_PROF_ATTENTION, t0);
    }
    if (obs) {
        int64_t nq = c->num_attention_heads * hd;
        R(gather)(w->gathered, nq, w->ctx, L0->q_size, 0, L0->q_size, m->col_q, m->tp, T);
        R(emit)(obs, w->gathered, T, nq, "model.layers.%lld.self_attn.o_proj.input", (long long)l);
    }
    /* o_proj is row-parallel: partial products, bias once, then the all-reduce. */
    t0 = cpu_prof_begin(m);
    for (int r = 0; r < m->tp; r++) {
        const cpu_layer *ly = &m->ranks[r].layers[l];
        R(lr_ref_linear)(w->part[r], w->ctx[r], ly->o_w, r == 0 ? ly->o_b : NULL, T, H, L0->q_size);
    }
    cpu_prof_end(m, LR_PROF_O_PROJ, t0);
    t0 = cpu_prof_begin(m);
    R(all_reduce)(w->hidden, w->part, m->tp, T * H);
    cpu_prof_end(m, LR_PROF_ALL_REDUCE, t0);
    if (obs) {
        R(emit)(obs, w->hidden, T, H, "model.layers.%lld.self_attn.o_proj", (long long)l);
        R(emit)(obs, w->hidden, T, H, "model.layers.%lld.self_attn", (long long)l);
    }
}

/* LlamaMLP: normed (T, H) -> hidden (T, H). */
static void R(llama_mlp)(cpu_model *m, int64_t l, int64_t T, R(work) *w, const lr_observer *obs) {
    const lr_config *c = &m->cfg;
    int64_t H = c->hidden_size, Ir = m->ranks[0].L.intermediate, NI = c->intermediate_size;
    uint64_t t0 = cpu_prof_begin(m);
    for (int r = 0; r < m->tp; r++) {
        const cpu_layer *ly = &m->ranks[r].layers[l];
        R(lr_ref_linear)(w->gate_up[r], w->normed, ly->gate_up_w, ly->gate_up_b, T, 2 * Ir, H);
    }
    cpu_prof_end(m, LR_PROF_GATE_UP_PROJ, t0);
    if (obs) {
        R(gather)(w->gathered, NI, w->gate_up, 2 * Ir, 0, Ir, m->col_i, m->tp, T);
        R(emit)(obs, w->gathered, T, NI, "model.layers.%lld.mlp.gate_proj", (long long)l);
        R(gather)(w->gathered, NI, w->gate_up, 2 * Ir, Ir, Ir, m->col_i, m->tp, T);
        R(emit)(obs, w->gathered, T, NI, "model.layers.%lld.mlp.up_proj", (long long)l);
        for (int r = 0; r < m->tp; r++) R(lr_ref_silu)(w->act[r], w->gate_up[r], T, Ir);
        R(gather)(w->gathered, NI, w->act, Ir, 0, Ir, m->col_i, m->tp, T);
        R(emit)(obs, w->gathered, T, NI, "model.layers.%lld.mlp.act_fn", (long long)l);
    }
    t0 = cpu_prof_begin(m);
    for (int r = 0; r < m->tp; r++) R(lr_ref_silu_and_mul)(w->act[r], w->gate_up[r], T, Ir);
    cpu_prof_end(m, LR_PROF_SILU_AND_MUL, t0);
    if (obs) {
        R(gather)(w->gathered, NI, w->act, Ir, 0, Ir, m->col_i, m->tp, T);
        R(emit)(obs, w->gathered, T, NI, "model.layers.%lld.mlp.down_proj.input", (long long)l);
    }
    /* down_proj is row-parallel: partial products, bias once, then the all-reduce. */
    t0 = cpu_prof_begin(m);
    for (int r = 0; r < m->tp; r++) {
        const cpu_layer *ly = &m->ranks[r].layers[l];
        R(lr_ref_linear)(w->part[r], w->act[r], ly->down_w, r == 0 ? ly->down_b : NULL, T, H, Ir);
    }
    cpu_prof_end(m, LR_PROF_DOWN_PROJ, t0);
    t0 = cpu_prof_begin(m);
    R(all_reduce)(w->hidden, w->part, m->tp, T * H);
    cpu_prof_end(m, LR_PROF_ALL_REDUCE, t0);
    if (obs) {
        R(emit)(obs, w->hidden, T, H, "model.layers.%lld.mlp.down_proj", (long long)l);
        R(emit)(obs, w->hidden, T, H, "model.layers.%lld.mlp", (long long)l);
    }
}

/* LlamaDecoderLayer with vLLM's (hidden_states, residual) convention: the first layer
 * starts the residual stream; later ones fold the previous output into it. */
static void R(llama_decoder_layer)(cpu_model *m, int64_t l, const lr_batch *b, const cpu_seq *seqs,
                                   cpu_kv *kv, R(work) *w, const lr_observer *obs) {
    int64_t T = b->num_tokens, H = m->cfg.hidden_size;
    double eps = m->cfg.rms_norm_eps;
    const cpu_layer *ly0 = &m->ranks[0].layers[l]; /* norms are replicated: rank 0's */
    uint64_t t0 = cpu_prof_begin(m);
    if (l == 0) {
        memcpy(w->residual, w->hidden, (size_t)(T * H) * sizeof(real));
        R(lr_ref_rms_norm)(w->normed, w->hidden, ly0->input_layernorm, T, H, eps);
    } else {
        R(lr_ref_fused_add_rms_norm)(w->normed, w->residual, w->hidden, ly0->input_layernorm, T, H, eps);
    }
    cpu_prof_end(m, LR_PROF_RMS_NORM, t0);
    if (obs) R(emit)(obs, w->normed, T, H, "model.layers.%lld.input_layernorm", (long long)l);
    R(llama_attention)(m, l, b, seqs, kv, w, obs);
    t0 = cpu_prof_begin(m);
    R(lr_ref_fused_add_rms_norm)(w->normed, w->residual, w->hidden, ly0->post_attention_layernorm, T, H, eps);
    cpu_prof_end(m, LR_PROF_RMS_NORM, t0);
    if (obs) R(emit)(obs, w->normed, T, H, "model.layers.%lld.post_attention_layernorm", (long long)l);
    R(llama_mlp)(m, l, T, w, obs);
    if (obs) {
        /* The residual stream after the layer, as Hugging Face reports it. */
        real *sum = w->normed;
        for (int64_t i = 0; i < T * H; i++) sum[i] = w->hidden[i] + w->residual[i];
        R(emit)(obs, sum, T, H, "model.layers.%lld", (long long)l);
    }
}

/* LlamaModel.forward: input_ids -> final hidden states out (T, H). */
/* Layer isolation: the residual stream entering layer l (or the final norm) replaced by
 * the one the caller supplies. Layer 0 takes it as the embedding; later layers as the
 * residual, with a zero hidden, so that the fused add reproduces it exactly. */
static void R(inject_stream)(const lr_observer *inj, int64_t l, int64_t T, int64_t H, R(work) *w) {
    char name[64];
    if (l == 0)
        snprintf(name, sizeof name, "model.embed_tokens");
    else
        snprintf(name, sizeof name, "model.layers.%lld", (long long)(l - 1));
    const lr_tensor *t = inj->inject(inj->user, name);
    if (!t || lr_tensor_numel(t) != T * H) return;
    real *dst = l == 0 ? w->hidden : w->residual;
    lr_convert(dst, LR_REAL_DTYPE, t->data, t->dtype, (size_t)(T * H));
    if (l > 0) memset(w->hidden, 0, (size_t)(T * H) * sizeof(real));
}

int R(cpu_forward)(cpu_model *m, const lr_batch *b, const cpu_seq *seqs, cpu_kv *kv,
                   const lr_observer *obs, real *out) {
    const lr_observer *inject = obs && obs->inject ? obs : NULL;
    if (obs && !obs->on_stage) obs = NULL;
    const lr_config *c = &m->cfg;
    int64_t T = b->num_tokens, H = c->hidden_size, max_len = 0, max_keys = 0;
    for (int64_t s = 0; s < b->num_seqs; s++) {
        max_len = seqs[s].len > max_len ? seqs[s].len : max_len;
        int64_t keys = seqs[s].past + seqs[s].len;
        max_keys = keys > max_keys ? keys : max_keys;
    }
    R(work) w;
    uint64_t t0 = cpu_prof_begin(m);
    int rc = R(work_alloc)(&w, m, T, max_len, max_keys, obs != NULL);
    cpu_prof_end(m, LR_PROF_SETUP, t0);
    if (rc) return rc;

    /* VocabParallelEmbedding: masked lookups per shard, then the all-reduce. */
    t0 = cpu_prof_begin(m);
    for (int r = 0; r < m->tp; r++) {
        const cpu_rank *rk = &m->ranks[r];
        R(lr_ref_vocab_parallel_embedding)(w.part[r], b->input_ids, T, rk->embed, rk->L.vocab_start,
                                    rk->L.vocab_shard, H);
    }
    R(all_reduce)(w.hidden, w.part, m->tp, T * H);
    cpu_prof_end(m, LR_PROF_EMBEDDING, t0);
    if (obs) R(emit)(obs, w.hidden, T, H, "model.embed_tokens");

    for (int64_t l = 0; l <= c->num_hidden_layers; l++) {
        if (inject) R(inject_stream)(inject, l, T, H, &w);
        if (l < c->num_hidden_layers) R(llama_decoder_layer)(m, l, b, seqs, kv, &w, obs);
    }

    t0 = cpu_prof_begin(m);
    R(lr_ref_fused_add_rms_norm)(out, w.residual, w.hidden, m->ranks[0].norm, T, H, c->rms_norm_eps);
    cpu_prof_end(m, LR_PROF_RMS_NORM, t0);
    if (obs) R(emit)(obs, out, T, H, "model.norm");
    t0 = cpu_prof_begin(m);
    R(work_free)(&w, m->tp);
    cpu_prof_end(m, LR_PROF_SETUP, t0);
    return LR_OK;
}

/* ParallelLMHead + all-gather + unpadding: hidden (T, H) -> out (T, vocab). */
int R(cpu_logits)(cpu_model *m, const real *hidden, int64_t T, const lr_observer *obs, real *out) {
    if (obs && !obs->on_stage) obs = NULL;
    int64_t H = m->cfg.hidden_size, V = m->cfg.vocab_size, shard = m->ranks[0].L.vocab_shard;
    uint64_t t0 = cpu_prof_begin(m);
    if (m->tp == 1 && shard == V) {
        /* One rank and no padding: its shard is the whole output. */
        R(lr_ref_linear)(out, hidden, m->ranks[0].lm_head, NULL, T, V, H);
        cpu_prof_end(m, LR_PROF_LM_HEAD, t0);
        if (obs) R(emit)(obs, out, T, V, "lm_head");
        return LR_OK;
    }
    real *part = R(alloc)(T * shard);
    if (!part) return lr_fail(LR_E_NOMEM, "cpu backend: cannot allocate logits for %lld tokens", (long long)T);
    for (int r = 0; r < m->tp; r++) {
        const cpu_rank *rk = &m->ranks[r];
        R(lr_ref_linear)(part, hidden, rk->lm_head, NULL, T, shard, H);
        int64_t cols = V - rk->L.vocab_start < shard ? V - rk->L.vocab_start : shard;
        for (int64_t t = 0; cols > 0 && t < T; t++)
            memcpy(out + t * V + rk->L.vocab_start, part + t * shard, (size_t)cols * sizeof(real));
    }
    free(part);
    cpu_prof_end(m, LR_PROF_LM_HEAD, t0);
    if (obs) R(emit)(obs, out, T, V, "lm_head");
    return LR_OK;
}
