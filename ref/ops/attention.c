/* attention.c (template, see ops/real.h): LlamaAttention's attention on one rank: the
 * new keys and values go into the cache, then each sequence's queries attend causally
 * to its own cached tokens (never another sequence's), with GQA/MQA head sharing.
 * Both products go through BLAS. */

/* qkv (T, q_r + 2 kv_r) after RoPE -> ctx (T, q_r). scores: scratch of at least
 * max(len) * max(past + len) elements. */
static void R(attention)(real *ctx, const real *qkv, const cpu_model *m, const cpu_rank *rk,
                         cpu_kv *kv, int64_t layer, const lr_batch *b, const cpu_seq *seqs,
                         real *scores) {
    const lr_tp_layout *L = &rk->L;
    int64_t hd = m->cfg.head_dim, qw = L->q_size + 2 * L->kv_size, kvw = L->kv_size;
    int64_t group = L->num_heads / L->num_kv_heads; /* query heads per local kv head */
    real scale = (real)(1.0 / sqrt((double)hd));
    for (int64_t s = 0; s < b->num_seqs; s++) {
        const cpu_seq *sq = &seqs[s];
        size_t off = cpu_kv_offset(kv, sq->slot, layer, L->tp_rank);
        real *kc = (real *)kv->k + off, *vc = (real *)kv->v + off; /* (max_len, kv_r) */
        for (int64_t j = 0; j < sq->len; j++) {
            const real *row = qkv + (sq->start + j) * qw;
            memcpy(kc + (sq->past + j) * kvw, row + L->q_size, (size_t)kvw * sizeof(real));
            memcpy(vc + (sq->past + j) * kvw, row + L->q_size + kvw, (size_t)kvw * sizeof(real));
        }
        int64_t n = sq->len, nk = sq->past + sq->len;
        for (int64_t h = 0; h < L->num_heads; h++) {
            int64_t g = h / group;
            /* scores (n, nk) = scale * Q_h (n, hd) @ K_g (nk, hd)^T */
            GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)nk, (int)hd, scale,
                 qkv + sq->start * qw + h * hd, (int)qw, kc + g * hd, (int)kvw, 0, scores, (int)nk);
            /* causal softmax: query j sees cached tokens 0 .. past + j */
            for (int64_t j = 0; j < n; j++) {
                real *row = scores + j * nk;
                int64_t visible = sq->past + j + 1;
                real mx = row[0];
                for (int64_t c = 1; c < visible; c++) mx = row[c] > mx ? row[c] : mx;
                real sum = 0;
                for (int64_t c = 0; c < visible; c++) sum += row[c] = REXP(row[c] - mx);
                for (int64_t c = 0; c < visible; c++) row[c] /= sum;
                for (int64_t c = visible; c < nk; c++) row[c] = 0;
            }
            /* ctx_h (n, hd) = P (n, nk) @ V_g (nk, hd) */
            GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)hd, (int)nk, 1, scores,
                 (int)nk, vc + g * hd, (int)kvw, 0, ctx + sq->start * L->q_size + h * hd,
                 (int)L->q_size);
        }
    }
}
