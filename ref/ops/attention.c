/* attention.c (template, see ops/real.h): LlamaAttention's attention on one rank: the
 * new keys and values go into the cache, then each sequence's queries attend causally
 * to its own cached tokens (never another sequence's), with GQA/MQA head sharing.
 * Both products go through BLAS. */

/* One sequence: queries q (n, ldq) of nh heads, keys and values k, v (past + n, ldkv) of
 * nkv heads, head size hd; query j sees keys 0 .. past + j; -> ctx (n, ldc).
 * scores: scratch of n * (past + n). */
void R(lr_ref_attention)(real *ctx, int64_t ldc, const real *q, int64_t ldq, const real *k,
                         const real *v, int64_t ldkv, int64_t n, int64_t past, int64_t nh,
                         int64_t nkv, int64_t hd, real *scores) {
    int64_t nk = past + n, group = nh / nkv; /* query heads per kv head */
    real scale = (real)(1.0 / sqrt((double)hd));
    for (int64_t h = 0; h < nh; h++) {
        int64_t g = h / group;
        /* scores (n, nk) = scale * Q_h (n, hd) @ K_g (nk, hd)^T */
        GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)nk, (int)hd, scale, q + h * hd,
             (int)ldq, k + g * hd, (int)ldkv, 0, scores, (int)nk);
        /* causal softmax: query j sees keys 0 .. past + j */
        for (int64_t j = 0; j < n; j++) {
            real *row = scores + j * nk;
            int64_t visible = past + j + 1;
            real mx = row[0];
            for (int64_t c = 1; c < visible; c++) mx = row[c] > mx ? row[c] : mx;
            real sum = 0;
            for (int64_t c = 0; c < visible; c++) sum += row[c] = REXP(row[c] - mx);
            for (int64_t c = 0; c < visible; c++) row[c] /= sum;
            for (int64_t c = visible; c < nk; c++) row[c] = 0;
        }
        /* ctx_h (n, hd) = P (n, nk) @ V_g (nk, hd) */
        GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)hd, (int)nk, 1, scores, (int)nk,
             v + g * hd, (int)ldkv, 0, ctx + h * hd, (int)ldc);
    }
}

/* qkv (T, q_r + 2 kv_r) after RoPE -> ctx (T, q_r), through the cache. scores: scratch
 * of at least max(len) * max(past + len) elements. */
static void R(attention)(real *ctx, const real *qkv, const cpu_model *m, const cpu_rank *rk,
                         cpu_kv *kv, int64_t layer, const lr_batch *b, const cpu_seq *seqs,
                         real *scores) {
    const lr_tp_layout *L = &rk->L;
    int64_t hd = m->cfg.head_dim, qw = L->q_size + 2 * L->kv_size, kvw = L->kv_size;
    for (int64_t s = 0; s < b->num_seqs; s++) {
        const cpu_seq *sq = &seqs[s];
        size_t off = cpu_kv_offset(kv, sq->slot, layer, L->tp_rank);
        real *kc = (real *)kv->k + off, *vc = (real *)kv->v + off; /* (max_len, kv_r) */
        for (int64_t j = 0; j < sq->len; j++) {
            const real *row = qkv + (sq->start + j) * qw;
            memcpy(kc + (sq->past + j) * kvw, row + L->q_size, (size_t)kvw * sizeof(real));
            memcpy(vc + (sq->past + j) * kvw, row + L->q_size + kvw, (size_t)kvw * sizeof(real));
        }
        R(lr_ref_attention)(ctx + sq->start * L->q_size, L->q_size, qkv + sq->start * qw, qw, kc, vc,
                            kvw, sq->len, sq->past, L->num_heads, L->num_kv_heads, hd, scores);
    }
}
