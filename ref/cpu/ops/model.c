/* model.c (template, see ops/real.h): the CPU reference's ops for the layer composer
 * (ref/core/layer.c, which runs LlamaModel and each LlamaDecoderLayer), and
 * LlamaForCausalLM.compute_logits. Every tensor-parallel rank runs in turn; where NCCL
 * would all-reduce (embedding, o_proj, down_proj) or all-gather (logits), the reference
 * does the same sums and concatenations here. Each op ends by storing what it wrote
 * (R(store)): as it is on the f32 and f64 paths, rounded to the dtype where the rounding
 * map says on the emulated bf16/fp16 path (ref/core/rounding.h), or where the model's
 * rounding profile says (m->rounding: the ops' own roundings inside, the stream's
 * storage). */

/* Scratch of one forward. Per-rank buffers are arrays of tp pointers. */
typedef struct {
    real *hidden, *residual, *normed; /* (T, H) */
    real *sum;                        /* (T, H), observers only */
    real **qkv;                       /* (T, q_r + 2 kv_r) */
    real **ctx;                       /* (T, q_r) */
    real **part;                      /* (T, H): a rank's partial sum */
    real **gate_up;                   /* (T, 2 I_r) */
    real **act;                       /* (T, I_r) */
    real *scores;                     /* (max(max len, heads per kv head), max past + len) */
    real *cs;                         /* (head_dim) */
} R(work);

/* The state of one forward: what the ops see through the composer's void *be. */
typedef struct {
    cpu_model *m;
    const lr_batch *b;
    const cpu_seq *seqs;
    cpu_kv *kv;
    int64_t T;
    R(work) w;
} R(pass);

static void R(work_free)(R(work) *w, int tp) {
    free(w->hidden), free(w->residual), free(w->normed), free(w->sum), free(w->scores), free(w->cs);
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
    int64_t H = c->hidden_size, group = L->num_heads / L->num_kv_heads;
    memset(w, 0, sizeof *w);
    bool ok = (w->hidden = R(alloc)(T * H)) && (w->residual = R(alloc)(T * H)) &&
              (w->normed = R(alloc)(T * H)) && (w->scores = R(alloc)((max_len > group ? max_len : group) * max_keys)) &&
              (w->cs = R(alloc)(c->head_dim)) && (!observed || (w->sum = R(alloc)(T * H)));
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

/* The composer's buffers in this pass. */
static real *R(buf)(R(pass) *p, lr_buf b, int r) {
    R(work) *w = &p->w;
    switch (b) {
    case LR_BUF_HIDDEN: return w->hidden;
    case LR_BUF_RESIDUAL: return w->residual;
    case LR_BUF_NORMED: return w->normed;
    case LR_BUF_SUM: return w->sum;
    case LR_BUF_QKV: return w->qkv[r];
    case LR_BUF_CTX: return w->ctx[r];
    case LR_BUF_PART: return w->part[r];
    case LR_BUF_GATE_UP: return w->gate_up[r];
    case LR_BUF_ACT: return w->act[r];
    default: return NULL;
    }
}

/* Elements of buffer b on one rank: (T, its width). */
static size_t R(buf_numel)(const R(pass) *p, lr_buf b) {
    const lr_tp_layout *L = &p->m->ranks[0].L;
    int64_t w = p->m->cfg.hidden_size;
    switch (b) {
    case LR_BUF_QKV: w = L->q_size + 2 * L->kv_size; break;
    case LR_BUF_CTX: w = L->q_size; break;
    case LR_BUF_GATE_UP: w = 2 * L->intermediate; break;
    case LR_BUF_ACT: w = L->intermediate; break;
    default: break;
    }
    return (size_t)(p->T * w);
}

/* Buffer b of rank r once an op has written it: rounded to the dtype the rounding map
 * (or the model's profile) stores it in (lr_buf_dtype_in), which is nothing on the f32 and
 * f64 paths. */
static void R(store)(R(pass) *p, lr_buf b, int r) {
    R(round_to)(R(buf)(p, b, r), R(buf_numel)(p, b), lr_buf_dtype_in(p->m->rounding, b, p->m->dt));
}

static const lr_rounding_profile *R(profile)(const R(pass) * p) {
    return lr_rounding_profile_of(p->m->rounding);
}

/* A packed tensor of rank r by plan index from the weight cache (weights.c), or NULL
 * for index -1 (no bias); converted now if it is not held. */
static int R(weight)(const R(pass) * p, int r, int index, const real **out) {
    return cpu_weight(p->m, r, index, (const void **)out);
}

/* The lookup, from the held shard, or row by row of the checkpoint for the batch's
 * tokens where the shard is streamed (cpu_weight_streamed): the same rows either way. */
static int R(op_embedding)(void *be, int r, lr_buf out, int weight) {
    R(pass) *p = be;
    cpu_model *m = p->m;
    const lr_tp_layout *L = &m->ranks[r].L;
    int64_t H = m->cfg.hidden_size;
    real *y = R(buf)(p, out, r);
    cpu_weights_pin(m);
    if (cpu_weight_streamed(m, r, weight)) {
        for (int64_t t = 0; t < p->T; t++) {
            int64_t local = p->b->input_ids[t] - L->vocab_start;
            if (local < 0 || local >= L->vocab_shard) {
                memset(y + t * H, 0, (size_t)H * sizeof(real));
                continue;
            }
            int rc = cpu_weight_rows(m, r, weight, local, 1, y + t * H);
            if (rc) return rc;
        }
        cpu_weights_release_rows(m, r, weight);
    } else {
        const real *w;
        int rc = R(weight)(p, r, weight, &w);
        if (rc) return rc;
        R(lr_ref_vocab_parallel_embedding)(y, p->b->input_ids, p->T, w, L->vocab_start, L->vocab_shard, H);
    }
    R(store)(p, out, r);
    return LR_OK;
}

/* Norm weights are replicated: rank 0's. */
static int R(op_rms_norm)(void *be, int weight, bool add, const lr_op_mods *mods) {
    R(pass) *p = be;
    R(work) *w = &p->w;
    int64_t T = p->T, H = p->m->cfg.hidden_size;
    double eps = mods->rms_eps;
    const real *g;
    cpu_weights_pin(p->m);
    int rc = R(weight)(p, 0, weight, &g);
    if (rc) return rc;
    const lr_rounding_profile *rp = R(profile)(p);
    if (add && rp->stream == LR_RND_STREAM_F32 && rp->norm == LR_RND_NORM_ONCE) {
        R(lr_ref_fused_add_rms_norm)(w->normed, w->residual, w->hidden, g, T, H, eps);
        R(store)(p, LR_BUF_RESIDUAL, 0);
    } else {
        /* A profile's stream is rounded before the norm reads it (h = round(x + attn)). */
        if (add)
            for (int64_t i = 0; i < T * H; i++)
                w->residual[i] += w->hidden[i];
        else
            memcpy(w->residual, w->hidden, (size_t)(T * H) * sizeof(real));
        R(store)(p, LR_BUF_RESIDUAL, 0);
        if (rp->norm == LR_RND_NORM_BEFORE_WEIGHT)
            R(lr_ref_rms_norm_torch)(w->normed, w->residual, g, T, H, eps, p->m->dt);
        else
            R(lr_ref_rms_norm)(w->normed, w->residual, g, T, H, eps);
    }
    R(store)(p, LR_BUF_NORMED, 0);
    return LR_OK;
}

/* x (T, K) w (N, K)^T -> y (T, N) in the model's order: BLAS's, or (f64_products, on the
 * float32 paths) each dot product in float64, rounded once: another correct order. */
static int R(product)(const cpu_model *m, real *y, const real *x, const real *w, int64_t T, int64_t N, int64_t K) {
#if LR_REAL == 32
    if (m->f64_products) {
        double *xd = malloc((size_t)(T * K) * sizeof *xd), *wd = malloc((size_t)(N * K) * sizeof *wd),
               *yd = malloc((size_t)(T * N) * sizeof *yd);
        if (!xd || !wd || !yd) {
            free(xd), free(wd), free(yd);
            return lr_fail(LR_E_NOMEM, "cpu backend: out of memory for float64 products (%lld x %lld)",
                           (long long)T, (long long)N);
        }
        for (int64_t i = 0; i < T * K; i++)
            xd[i] = x[i];
        for (int64_t i = 0; i < N * K; i++)
            wd[i] = w[i];
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)N, (int)K, 1, xd, (int)K, wd, (int)K, 0,
                    yd, (int)N);
        for (int64_t i = 0; i < T * N; i++)
            y[i] = (real)yd[i];
        free(xd), free(wd), free(yd);
        return LR_OK;
    }
#else
    (void)m;
#endif
    R(lr_ref_linear)(y, x, w, NULL, T, N, K);
    return LR_OK;
}

/* The product is stored before the bias is added, and the sum again, as the CUDA path
 * rounds the GEMM's output and then the bias add's (the same arithmetic as
 * lr_ref_linear's with the bias on the f32 and f64 paths); a profile's BIAS_ONCE stores
 * the sum alone. */
static int R(op_linear)(void *be, int r, lr_buf out, lr_buf in, int weight, int bias) {
    R(pass) *p = be;
    const lr_packed_desc *d = lr_plan_at(p->m->ranks[r].plan, (size_t)weight); /* (N, K) */
    int64_t T = p->T, N = d->shape[0];
    real *y = R(buf)(p, out, r);
    const real *w, *b; /* (N, K); (N) or NULL */
    cpu_weights_pin(p->m);
    int rc = R(weight)(p, r, weight, &w);
    if (rc == LR_OK) rc = R(weight)(p, r, bias, &b);
    if (rc) return rc;
    if ((rc = R(product)(p->m, y, R(buf)(p, in, r), w, T, N, d->shape[1]))) return rc;
    if (!b || R(profile)(p)->bias == LR_RND_BIAS_TWICE) R(store)(p, out, r);
    if (!b) return LR_OK;
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) y[t * N + n] += b[n];
    R(store)(p, out, r);
    return LR_OK;
}

/* neox RoPE on the rank's q heads, then its k heads (at a theta fault's frequencies); as
 * torch rotates under a profile's ROPE_TORCH (its float32 frequencies, or the fault's as
 * float32). */
static int R(op_rotary)(void *be, int r, const lr_op_mods *mods) {
    R(pass) *p = be;
    const lr_tp_layout *L = &p->m->ranks[r].L;
    int64_t hd = p->m->cfg.head_dim, qw = L->q_size + 2 * L->kv_size;
    real *qkv = p->w.qkv[r];
    const int64_t *pos = p->b->positions;
    if (R(profile)(p)->rotary == LR_RND_ROPE_TORCH) {
        const double *inv = mods->inv_freq ? mods->inv_freq : p->m->inv_freq_torch;
        lr_dtype dt = p->m->dt;
        R(lr_ref_rotary_embedding_torch)(qkv, qw, p->T, L->num_heads, hd, pos, inv, p->w.cs, dt);
        R(lr_ref_rotary_embedding_torch)(qkv + L->q_size, qw, p->T, L->num_kv_heads, hd, pos, inv, p->w.cs, dt);
    } else {
        const double *inv = mods->inv_freq ? mods->inv_freq : p->m->inv_freq;
        R(lr_ref_rotary_embedding)(qkv, qw, p->T, L->num_heads, hd, pos, inv, p->w.cs);
        R(lr_ref_rotary_embedding)(qkv + L->q_size, qw, p->T, L->num_kv_heads, hd, pos, inv, p->w.cs);
    }
    R(store)(p, LR_BUF_QKV, r);
    return LR_OK;
}

static int R(op_attention)(void *be, int r, int64_t layer, const lr_op_mods *mods) {
    R(pass) *p = be;
    R(attention)(p->w.ctx[r], p->w.qkv[r], p->m, &p->m->ranks[r], p->kv, layer, p->b, p->seqs, mods, p->w.scores);
    R(store)(p, LR_BUF_CTX, r);
    return LR_OK;
}

static int R(op_activation)(void *be, int r, bool gated) {
    R(pass) *p = be;
    int64_t Ir = p->m->ranks[r].L.intermediate;
    if (gated && R(profile)(p)->act == LR_RND_ACT_SILU_ROUNDED)
        R(lr_ref_silu_and_mul_torch)(p->w.act[r], p->w.gate_up[r], p->T, Ir, p->m->dt);
    else if (gated)
        R(lr_ref_silu_and_mul)(p->w.act[r], p->w.gate_up[r], p->T, Ir);
    else
        R(lr_ref_silu)(p->w.act[r], p->w.gate_up[r], p->T, Ir);
    R(store)(p, LR_BUF_ACT, r);
    return LR_OK;
}

/* The all-reduce: hidden = part[0] + part[1] + ... in rank order. */
static int R(op_all_reduce)(void *be) {
    R(pass) *p = be;
    int64_t n = p->T * p->m->cfg.hidden_size;
    real *out = p->w.hidden;
    memcpy(out, p->w.part[0], (size_t)n * sizeof(real));
    for (int r = 1; r < p->m->tp; r++)
        for (int64_t i = 0; i < n; i++) out[i] += p->w.part[r][i];
    R(store)(p, LR_BUF_HIDDEN, 0);
    return LR_OK;
}

static int R(op_residual_sum)(void *be) {
    R(pass) *p = be;
    for (int64_t i = 0; i < p->T * p->m->cfg.hidden_size; i++) p->w.sum[i] = p->w.hidden[i] + p->w.residual[i];
    R(store)(p, LR_BUF_SUM, 0);
    return LR_OK;
}

static int R(op_read)(void *be, lr_buf b, int r, int64_t ld, int64_t col, int64_t cols, void *dst, int64_t dst_ld) {
    R(pass) *p = be;
    const real *src = R(buf)(p, b, r);
    for (int64_t t = 0; t < p->T; t++)
        memcpy((real *)dst + t * dst_ld, src + t * ld + col, (size_t)cols * sizeof(real));
    return LR_OK;
}

static int R(op_load_stream)(void *be, bool embedding, const lr_tensor *t) {
    R(pass) *p = be;
    size_t n = (size_t)(p->T * p->m->cfg.hidden_size);
    lr_convert(embedding ? p->w.hidden : p->w.residual, LR_REAL_DTYPE, t->data, t->dtype, n);
    if (!embedding) memset(p->w.hidden, 0, n * sizeof(real));
    R(store)(p, embedding ? LR_BUF_HIDDEN : LR_BUF_RESIDUAL, 0);
    return LR_OK;
}

static int R(op_write)(void *be, lr_buf b, int r, int64_t ld, int64_t col, int64_t cols, const lr_tensor *t,
                       int64_t src_col) {
    R(pass) *p = be;
    real *x = R(buf)(p, b, r);
    size_t es = lr_dtype_size(t->dtype);
    for (int64_t k = 0; k < p->T; k++)
        lr_convert(x + k * ld + col, LR_REAL_DTYPE, (const char *)t->data + (size_t)(k * t->shape[1] + src_col) * es,
                   t->dtype, (size_t)cols);
    R(store)(p, b, r);
    return LR_OK;
}

static int R(op_perturb)(void *be, lr_buf b, int r, int64_t ld, int64_t col, int64_t cols, int64_t dst_col,
                         int64_t width, const lr_fault *f) {
    R(pass) *p = be;
    real *x = R(buf)(p, b, r);
    lr_dtype storage = lr_buf_dtype_in(p->m->rounding, b, p->m->dt);
    for (int64_t t = 0; t < p->T; t++)
        for (int64_t c = 0; c < cols; c++) {
            real *v = &x[t * ld + col + c];
            *v = (real)lr_fault_apply(f, *v, t, dst_col + c, width, storage);
        }
    R(store)(p, b, r);
    return LR_OK;
}

static void R(op_prof_mark)(void *be, int prof) { cpu_prof_mark(((R(pass) *)be)->m, prof); }

static const lr_layer_ops R(layer_ops) = {
    .obs_dtype = LR_REAL_DTYPE,
    .embedding = R(op_embedding),
    .rms_norm = R(op_rms_norm),
    .linear = R(op_linear),
    .rotary = R(op_rotary),
    .attention = R(op_attention),
    .activation = R(op_activation),
    .all_reduce = R(op_all_reduce),
    .residual_sum = R(op_residual_sum),
    .read = R(op_read),
    .load_stream = R(op_load_stream),
    .write = R(op_write),
    .perturb = R(op_perturb),
    .prof_mark = R(op_prof_mark),
};

/* LlamaModel.forward: input_ids -> final hidden states out (T, H). */
int R(cpu_forward)(cpu_model *m, const lr_batch *b, const cpu_seq *seqs, cpu_kv *kv,
                   const lr_observer *obs, real *out) {
    int64_t T = b->num_tokens, H = m->cfg.hidden_size, max_len = 0, max_keys = 0;
    for (int64_t s = 0; s < b->num_seqs; s++) {
        max_len = seqs[s].len > max_len ? seqs[s].len : max_len;
        int64_t keys = seqs[s].past + seqs[s].len;
        max_keys = keys > max_keys ? keys : max_keys;
    }
    R(pass) p = {.m = m, .b = b, .seqs = seqs, .kv = kv, .T = T};
    cpu_prof_mark(m, LR_PROF_NONE);
    int rc = R(work_alloc)(&p.w, m, T, max_len, max_keys, obs && obs->on_stage);
    cpu_prof_mark(m, LR_PROF_SETUP);
    if (rc) return rc;
    lr_composer c = {&R(layer_ops), &m->cfg, m->layouts, m->tp, m->ranks[0].plan, m->faults, m->num_faults};
    rc = lr_compose_forward(&c, &p, T, obs);
    if (rc == LR_OK) memcpy(out, p.w.normed, (size_t)(T * H) * sizeof(real));
    R(work_free)(&p.w, m->tp);
    cpu_prof_mark(m, LR_PROF_SETUP);
    return rc;
}

/* part[:, 0:n] (T rows of ld) = x (T, H) w (n, H)^T, as the LM head multiplies: one
 * product per CPU_LM_HEAD_GEMM_ROWS rows of w, counted from the shard's first row (w is
 * a block starting at a multiple of them), through y (T, CPU_LM_HEAD_GEMM_ROWS). The held
 * shard and the streamed one thereby make the same BLAS calls on the same rows, and their
 * logits are the same bits by construction, whatever BLAS and thread count: a split of
 * the one call is not exact. OpenBLAS 0.3.21's sgemm gives an element other bits
 * depending on where its row falls in the call: at one thread, from 12 tokens on, 2.1 to
 * 10.5 % of the elements differ in blocks of 64 to 16384 rows (8 tokens: 1.1 to 91 %), at
 * K 64, 576 and 4096 over 49152 and 128256 rows; 1 to 7 tokens agree at multiples of 64,
 * but not at 2 threads (52 % at 7 tokens in blocks of 64). Its dgemm, dgemv and sgemv
 * agree at one thread; dgemm does not at 2 (2 tokens: 82 % in blocks of 64 to 1024; the
 * gemvs were not measured there) (docs/measurements/cpu-sgemm-split.c,
 * -2026-12-02.txt). At one thread the grid gives
 * float64's and one token's logits the bits of the one call; float32's prefill logits
 * are the grid's own. 256 rows per call ran within the noise of the one call or faster
 * (sgemm, T 8 to 512). */
static int R(lm_head_rows)(const cpu_model *m, real *part, int64_t ld, const real *x, const real *w, int64_t T,
                           int64_t n, int64_t H, real *y) {
    for (int64_t j = 0; j < n; j += CPU_LM_HEAD_GEMM_ROWS) {
        int64_t nb = n - j < CPU_LM_HEAD_GEMM_ROWS ? n - j : CPU_LM_HEAD_GEMM_ROWS;
        int rc = R(product)(m, y, x, w + j * H, T, nb, H);
        if (rc) return rc;
        for (int64_t t = 0; t < T; t++)
            memcpy(part + t * ld + j, y + t * nb, (size_t)nb * sizeof(real));
    }
    return LR_OK;
}

/* One rank's LM-head shard: hidden (T, H) -> part (T, shard), from the held shard, or
 * where the shard is streamed (cpu_weight_streamed) in blocks of its rows (a multiple of
 * CPU_LM_HEAD_GEMM_ROWS), each converted, multiplied into its columns of part by
 * lm_head_rows and dropped: the same products either way, so the blocks change no number
 * (tests/test_cpu_memory.sh, tools/compare-builds.sh --b-args "--memory 4K"). */
static int R(lm_head_shard)(cpu_model *m, int r, const real *hidden, int64_t T, int64_t shard, real *part) {
    int64_t H = m->cfg.hidden_size;
    cpu_weights_pin(m);
    bool blocks = cpu_weight_streamed(m, r, m->lm_head);
    int64_t rows = blocks ? cpu_weight_block_rows(m, r, m->lm_head) : shard;
    rows = rows < shard ? rows : shard;
    const real *held = NULL;
    real *w = NULL, *y = R(alloc)(T * CPU_LM_HEAD_GEMM_ROWS);
    int rc = blocks ? LR_OK : R(weight)(&(R(pass)){.m = m}, r, m->lm_head, &held);
    if (rc == LR_OK && (!y || (blocks && !(w = R(alloc)(rows * H)))))
        rc = lr_fail(LR_E_NOMEM, "cpu backend: cannot allocate a block of the LM head");
    for (int64_t n0 = 0; rc == LR_OK && n0 < shard; n0 += rows) {
        int64_t nb = shard - n0 < rows ? shard - n0 : rows;
        if (blocks) {
            if ((rc = cpu_weight_rows(m, r, m->lm_head, n0, nb, w))) break;
            cpu_weights_release_rows(m, r, m->lm_head); /* this block's pages of the file */
        }
        rc = R(lm_head_rows)(m, part + n0, shard, hidden, blocks ? w : held + n0 * H, T, nb, H, y);
    }
    free(w);
    free(y);
    return rc;
}

/* ParallelLMHead + all-gather + unpadding: hidden (T, H) -> out (T, vocab), rounded to
 * the model's dtype on the emulated bf16/fp16 path (the CUDA path's logits are in it). */
int R(cpu_logits)(cpu_model *m, const real *hidden, int64_t T, const lr_observer *obs, real *out) {
    if (obs && !obs->on_stage) obs = NULL;
    int64_t V = m->cfg.vocab_size, shard = m->ranks[0].L.vocab_shard;
    lr_tensor t = {.dtype = LR_REAL_DTYPE, .ndim = 2, .shape = {T, V}, .data = out};
    cpu_prof_mark(m, LR_PROF_NONE);
    int rc;
    if (m->tp == 1 && shard == V) {
        /* One rank and no padding: its shard is the whole output. */
        if ((rc = R(lm_head_shard)(m, 0, hidden, T, V, out))) return rc;
        R(round_to)(out, (size_t)(T * V), m->dt);
        cpu_prof_mark(m, LR_PROF_LM_HEAD);
        if (obs) obs->on_stage(obs->user, lr_model_stage_name(LR_MS_LM_HEAD), &t);
        return LR_OK;
    }
    real *part = R(alloc)(T * shard);
    if (!part) return lr_fail(LR_E_NOMEM, "cpu backend: cannot allocate logits for %lld tokens", (long long)T);
    for (int r = 0; r < m->tp; r++) {
        const cpu_rank *rk = &m->ranks[r];
        if ((rc = R(lm_head_shard)(m, r, hidden, T, shard, part))) {
            free(part);
            return rc;
        }
        int64_t cols = V - rk->L.vocab_start < shard ? V - rk->L.vocab_start : shard;
        for (int64_t k = 0; cols > 0 && k < T; k++)
            memcpy(out + k * V + rk->L.vocab_start, part + k * shard, (size_t)cols * sizeof(real));
    }
    free(part);
    R(round_to)(out, (size_t)(T * V), m->dt);
    cpu_prof_mark(m, LR_PROF_LM_HEAD);
    if (obs) obs->on_stage(obs->user, lr_model_stage_name(LR_MS_LM_HEAD), &t);
    return LR_OK;
}
