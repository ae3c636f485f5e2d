/* attention.c (template, see ops/real.h): LlamaAttention's attention on one rank: the
 * new keys and values go into the cache, then each sequence's queries attend causally
 * to its own cached tokens (never another sequence's), with GQA/MQA head sharing.
 * Both products go through BLAS, skipping the blocks of keys the causal mask hides. The
 * emulated bf16/fp16 path rounds the probabilities where the CUDA path's kernel does
 * (lr_ref_attention_tiled, ref/core/rounding.h), or as torch's kernels do under a
 * rounding profile (lr_ref_attention_torch_flash, _eager). */

/* Queries are taken in blocks of this many rows: block [j0, j1) sees at most past + j1
 * keys, so keys that no row of the block can see are never multiplied. A prefill does
 * about 5/8 of the full (n, n) products at 64 and stays in efficient GEMM shapes. */
#define LR_ATTENTION_BLOCK 64

/* Softmax in place over row[0 .. visible); row[visible .. nk) = 0 (masked). */
static void R(masked_softmax)(real *row, int64_t visible, int64_t nk) {
    real mx = row[0];
    for (int64_t c = 1; c < visible; c++) mx = row[c] > mx ? row[c] : mx;
    real sum = 0;
    for (int64_t c = 0; c < visible; c++) sum += row[c] = REXP(row[c] - mx);
    for (int64_t c = 0; c < visible; c++) row[c] /= sum;
    for (int64_t c = visible; c < nk; c++) row[c] = 0;
}

/* One sequence: queries q (n, ldq) of nh heads, keys and values k, v (past + n, ldkv) of
 * nkv heads, head size hd; query j sees keys 0 .. lr_causal_keys(past, j, n, shift) - 1
 * (shift 0: the causal mask, 0 .. past + j; a mask fault's +1 or -1 otherwise);
 * -> ctx (n, ldc). scores: scratch of max(n, nh / nkv) * (past + n). */
static void R(attention_masked)(real *ctx, int64_t ldc, const real *q, int64_t ldq, const real *k, const real *v,
                                int64_t ldkv, int64_t n, int64_t past, int64_t nh, int64_t nkv, int64_t hd,
                                int shift, real *scores) {
    int64_t group = nh / nkv; /* query heads per kv head */
    real scale = (real)(1.0 / sqrt((double)hd));
    if (n == 1) {
        /* One query (a decode step): the group query heads that share KV head g are a
         * contiguous (group, hd) matrix, so one GEMM per KV head serves them all; a GEMM
         * call per query head costs more in call overhead than in arithmetic here. */
        int64_t nk = past + 1, vis = lr_causal_keys(past, 0, 1, shift);
        for (int64_t g = 0; g < nkv; g++) {
            /* scores (group, nk) = scale * Q_g (group, hd) @ K_g (nk, hd)^T */
            GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)group, (int)nk, (int)hd, scale, q + g * group * hd,
                 (int)hd, k + g * hd, (int)ldkv, 0, scores, (int)nk);
            for (int64_t i = 0; i < group; i++) R(masked_softmax)(scores + i * nk, vis, nk);
            /* ctx_g (group, hd) = P (group, nk) @ V_g (nk, hd) */
            GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)group, (int)hd, (int)nk, 1, scores, (int)nk,
                 v + g * hd, (int)ldkv, 0, ctx + g * group * hd, (int)hd);
        }
        return;
    }
    for (int64_t h = 0; h < nh; h++) {
        int64_t g = h / group;
        for (int64_t j0 = 0; j0 < n; j0 += LR_ATTENTION_BLOCK) {
            int64_t m = n - j0 < LR_ATTENTION_BLOCK ? n - j0 : LR_ATTENTION_BLOCK;
            int64_t nk = lr_causal_keys(past, j0 + m - 1, n, shift); /* keys the block's last query sees */
            /* scores (m, nk) = scale * Q_h[j0 .. j0+m) (m, hd) @ K_g[0 .. nk) (nk, hd)^T */
            GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nk, (int)hd, scale, q + j0 * ldq + h * hd,
                 (int)ldq, k + g * hd, (int)ldkv, 0, scores, (int)nk);
            /* causal: query j0 + i sees keys 0 .. past + j0 + i (shift 0) */
            for (int64_t i = 0; i < m; i++)
                R(masked_softmax)(scores + i * nk, lr_causal_keys(past, j0 + i, n, shift), nk);
            /* ctx_h[j0 .. j0+m) (m, hd) = P (m, nk) @ V_g[0 .. nk) (nk, hd) */
            GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)hd, (int)nk, 1, scores, (int)nk,
                 v + g * hd, (int)ldkv, 0, ctx + j0 * ldc + h * hd, (int)ldc);
        }
    }
}

void R(lr_ref_attention)(real *ctx, int64_t ldc, const real *q, int64_t ldq, const real *k,
                         const real *v, int64_t ldkv, int64_t n, int64_t past, int64_t nh,
                         int64_t nkv, int64_t hd, real *scores) {
    R(attention_masked)(ctx, ldc, q, ldq, k, v, ldkv, n, past, nh, nkv, hd, 0, scores);
}

/* How an online softmax over blocks of keys rounds its weights before P V: FlashAttention's
 * (the CUDA path's 16-bit prefill kernels, fa2 and tc's wmma) or torch's CPU flash kernel. */
typedef struct {
    int64_t tile;        /* keys per block, from key 0 */
    real scale;          /* the float32 scores' factor: scale * log2 e for exp2, scale for exp */
    bool base2;          /* the weights exp2(s - running max); else exp(s - running max) */
    bool sum_of_rounded; /* the row sum over the rounded weights; else over the unrounded */
    bool f64_scores;     /* each score's dot product in float64, rounded once (another order) */
    lr_dtype p_dtype;    /* the weights' rounding */
} R(online_softmax);

/* One sequence as lr_ref_attention with P rounded as `how` says, block by block: S = q.k
 * (float32), s = S * scale, each row's running max, weights w = e(s - max) rounded to
 * p_dtype before P V, the row's output and sum rescaled by e(old max - new max) as the max
 * grows; ctx = O / l, which the caller rounds. scores: scratch as for lr_ref_attention. */
static void R(attention_online_masked)(real *ctx, int64_t ldc, const real *q, int64_t ldq, const real *k,
                                       const real *v, int64_t ldkv, int64_t n, int64_t past, int64_t nh,
                                       int64_t nkv, int64_t hd, const R(online_softmax) *how, int shift,
                                       real *scores) {
    int64_t group = nh / nkv, tile = how->tile;
    for (int64_t h = 0; h < nh; h++) {
        int64_t g = h / group;
        for (int64_t j0 = 0; j0 < n; j0 += LR_ATTENTION_BLOCK) {
            int64_t m = n - j0 < LR_ATTENTION_BLOCK ? n - j0 : LR_ATTENTION_BLOCK;
            int64_t nk = lr_causal_keys(past, j0 + m - 1, n, shift); /* keys the block's last query sees */
            real mx[LR_ATTENTION_BLOCK], l[LR_ATTENTION_BLOCK]; /* each row's running max and sum */
            real *o = ctx + j0 * ldc + h * hd; /* (m, hd), stride ldc: the rows' running output */
            for (int64_t i = 0; i < m; i++) {
                mx[i] = -INFINITY, l[i] = 0;
                memset(o + i * ldc, 0, (size_t)hd * sizeof(real));
            }
            for (int64_t k0 = 0; k0 < nk; k0 += tile) {
                int64_t kt = nk - k0 < tile ? nk - k0 : tile;
                /* S (m, kt) = Q_h[j0 .. j0+m) (m, hd) @ K_g[k0 .. k0+kt) (kt, hd)^T, unscaled */
                if (how->f64_scores)
                    for (int64_t i = 0; i < m; i++)
                        for (int64_t c = 0; c < kt; c++) {
                            const real *qi = q + (j0 + i) * ldq + h * hd, *kc = k + (k0 + c) * ldkv + g * hd;
                            double dot = 0;
                            for (int64_t d = 0; d < hd; d++) dot += (double)qi[d] * (double)kc[d];
                            scores[i * kt + c] = (real)dot;
                        }
                else
                    GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)kt, (int)hd, 1,
                         q + j0 * ldq + h * hd, (int)ldq, k + k0 * ldkv + g * hd, (int)ldkv, 0, scores, (int)kt);
                for (int64_t i = 0; i < m; i++) {
                    real *s = scores + i * kt;
                    int64_t vis = lr_causal_keys(past, j0 + i, n, shift) - k0; /* keys of the block row i sees */
                    vis = vis < 0 ? 0 : vis > kt ? kt : vis;
                    real tmax = -INFINITY;
                    for (int64_t c = 0; c < vis; c++) {
                        s[c] *= how->scale;
                        tmax = s[c] > tmax ? s[c] : tmax;
                    }
                    real mnew = tmax > mx[i] ? tmax : mx[i];
                    /* A row that has seen no key yet: weights 0 against base 0, nothing rescaled. */
                    real base = mnew == -INFINITY ? 0 : mnew, sum = 0;
                    real corr = mnew == -INFINITY ? 1 : how->base2 ? REXP2(mx[i] - mnew) : REXP(mx[i] - mnew);
                    for (int64_t c = 0; c < kt; c++) {
                        real e = c >= vis ? 0 : how->base2 ? REXP2(s[c] - base) : REXP(s[c] - base);
                        s[c] = R(round1)(e, how->p_dtype);
                        sum += how->sum_of_rounded ? s[c] : e;
                    }
                    l[i] = l[i] * corr + sum;
                    mx[i] = mnew;
                    for (int64_t d = 0; d < hd; d++) o[i * ldc + d] *= corr;
                }
                /* O (m, hd) += P (m, kt) @ V_g[k0 .. k0+kt) (kt, hd) */
                GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)hd, (int)kt, 1, scores, (int)kt,
                     v + k0 * ldkv + g * hd, (int)ldkv, 1, o, (int)ldc);
            }
            for (int64_t i = 0; i < m; i++) {
                real inv = l[i] > 0 ? 1 / l[i] : 0;
                for (int64_t d = 0; d < hd; d++) o[i * ldc + d] *= inv;
            }
        }
    }
}

/* FlashAttention's rounding of P (ref/core/rounding.h): tiles of `tile` keys, scores in
 * log2 units (scale * log2 e, both float32), the row sum over the rounded weights. */
static R(online_softmax) R(flash_rounding)(int64_t hd, int64_t tile, lr_dtype p_dtype, bool f64_scores) {
    return (R(online_softmax)){.tile = tile,
                               .scale = (real)(1.0 / sqrt((double)hd)) * (real)1.4426950408889634,
                               .base2 = true,
                               .sum_of_rounded = true,
                               .f64_scores = f64_scores,
                               .p_dtype = p_dtype};
}

/* torch's CPU flash-attention kernel (sdpa under transformers; a rounding profile's
 * ATTN_TORCH_FLASH): blocks of LR_TORCH_FLASH_KV_BLOCK keys, scores times transformers'
 * head_dim ** -0.5 (a float), e = exp(s - running max), the row sum over the unrounded e. */
static R(online_softmax) R(torch_flash_rounding)(int64_t hd, lr_dtype p_dtype) {
    return (R(online_softmax)){.tile = LR_TORCH_FLASH_KV_BLOCK,
                               .scale = (real)(float)pow((double)hd, -0.5),
                               .base2 = false,
                               .sum_of_rounded = false,
                               .p_dtype = p_dtype};
}

void R(lr_ref_attention_tiled)(real *ctx, int64_t ldc, const real *q, int64_t ldq, const real *k,
                               const real *v, int64_t ldkv, int64_t n, int64_t past, int64_t nh,
                               int64_t nkv, int64_t hd, int64_t tile, lr_dtype p_dtype, real *scores) {
    R(online_softmax) how = R(flash_rounding)(hd, tile, p_dtype, false);
    R(attention_online_masked)(ctx, ldc, q, ldq, k, v, ldkv, n, past, nh, nkv, hd, &how, 0, scores);
}

/* One sequence as lr_ref_attention, as transformers' eager attention computes it (a
 * rounding profile's ATTN_TORCH_EAGER, ref/core/rounding.h): s = round(round(q.k) *
 * scale) (the product's output and the scaled scores in p_dtype), the softmax in float32,
 * P = round(e * (1 / sum e)) before P V, P V in float32; ctx left for the caller to
 * round. scores: as for lr_ref_attention. */
static void R(attention_torch_eager_masked)(real *ctx, int64_t ldc, const real *q, int64_t ldq, const real *k,
                                            const real *v, int64_t ldkv, int64_t n, int64_t past, int64_t nh,
                                            int64_t nkv, int64_t hd, lr_dtype p_dtype, int shift,
                                            real *scores) {
    int64_t group = nh / nkv;
    real scale = (real)(float)pow((double)hd, -0.5);
    for (int64_t h = 0; h < nh; h++) {
        int64_t g = h / group;
        for (int64_t j0 = 0; j0 < n; j0 += LR_ATTENTION_BLOCK) {
            int64_t m = n - j0 < LR_ATTENTION_BLOCK ? n - j0 : LR_ATTENTION_BLOCK;
            int64_t nk = lr_causal_keys(past, j0 + m - 1, n, shift);
            GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nk, (int)hd, 1, q + j0 * ldq + h * hd,
                 (int)ldq, k + g * hd, (int)ldkv, 0, scores, (int)nk);
            for (int64_t i = 0; i < m; i++) {
                real *s = scores + i * nk;
                int64_t vis = lr_causal_keys(past, j0 + i, n, shift);
                real mx = -INFINITY, sum = 0;
                for (int64_t c = 0; c < vis; c++) {
                    s[c] = R(round1)(R(round1)(s[c], p_dtype) * scale, p_dtype);
                    mx = s[c] > mx ? s[c] : mx;
                }
                for (int64_t c = 0; c < vis; c++)
                    sum += s[c] = REXP(s[c] - mx);
                real inv = 1 / sum;
                for (int64_t c = 0; c < nk; c++)
                    s[c] = c < vis ? R(round1)(s[c] * inv, p_dtype) : 0;
            }
            GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)hd, (int)nk, 1, scores, (int)nk,
                 v + g * hd, (int)ldkv, 0, ctx + j0 * ldc + h * hd, (int)ldc);
        }
    }
}

void R(lr_ref_attention_torch_flash)(real *ctx, int64_t ldc, const real *q, int64_t ldq, const real *k,
                                     const real *v, int64_t ldkv, int64_t n, int64_t past, int64_t nh,
                                     int64_t nkv, int64_t hd, lr_dtype p_dtype, real *scores) {
    R(online_softmax) how = R(torch_flash_rounding)(hd, p_dtype);
    R(attention_online_masked)(ctx, ldc, q, ldq, k, v, ldkv, n, past, nh, nkv, hd, &how, 0, scores);
}

void R(lr_ref_attention_torch_eager)(real *ctx, int64_t ldc, const real *q, int64_t ldq, const real *k,
                                     const real *v, int64_t ldkv, int64_t n, int64_t past, int64_t nh,
                                     int64_t nkv, int64_t hd, lr_dtype p_dtype, real *scores) {
    R(attention_torch_eager_masked)(ctx, ldc, q, ldq, k, v, ldkv, n, past, nh, nkv, hd, p_dtype, 0, scores);
}

/* qkv (T, q_r + 2 kv_r) after RoPE -> ctx (T, q_r), through the cache. scores: scratch
 * of at least max(max(len), heads / kv heads) * max(past + len) elements. P is rounded
 * where the CUDA path's kernel for this batch rounds it (only ever at bf16 and fp16): the
 * variant m->attn_like names, or the default. */
static void R(attention)(real *ctx, const real *qkv, const cpu_model *m, const cpu_rank *rk,
                         cpu_kv *kv, int64_t layer, const lr_batch *b, const cpu_seq *seqs,
                         const lr_op_mods *mods, real *scores) {
    const lr_tp_layout *L = &rk->L;
    int64_t hd = m->cfg.head_dim, qw = L->q_size + 2 * L->kv_size, kvw = L->kv_size, max_new = 0;
    for (int64_t s = 0; s < b->num_seqs; s++) max_new = seqs[s].len > max_new ? seqs[s].len : max_new;
    lr_rnd_attn how = lr_rounding_profile_of(m->rounding)->attention;
    bool tiled = how == LR_RND_ATTN_VARIANT && lr_attention_rounds_p(m->attn_like, m->dt, hd, max_new);
    for (int64_t s = 0; s < b->num_seqs; s++) {
        const cpu_seq *sq = &seqs[s];
        size_t off = cpu_kv_offset(kv, sq->slot, layer, L->tp_rank);
        real *kc = (real *)kv->k + off, *vc = (real *)kv->v + off; /* (max_len, kv_r) */
        for (int64_t j = 0; j < sq->len; j++) {
            const real *row = qkv + (sq->start + j) * qw;
            memcpy(kc + (sq->past + j) * kvw, row + L->q_size, (size_t)kvw * sizeof(real));
            memcpy(vc + (sq->past + j) * kvw, row + L->q_size + kvw, (size_t)kvw * sizeof(real));
        }
        /* stale_kv: new entries that hold an earlier position's instead (in token order) */
        for (int64_t j = 0; mods->stale_back && j < sq->len; j++) {
            int64_t from = lr_stale_kv_source(sq->past, j, mods->stale_back);
            if (from < 0) continue;
            memcpy(kc + (sq->past + j) * kvw, kc + from * kvw, (size_t)kvw * sizeof(real));
            memcpy(vc + (sq->past + j) * kvw, vc + from * kvw, (size_t)kvw * sizeof(real));
        }
        real *c = ctx + sq->start * L->q_size; /* (len, q_r) */
        const real *x = qkv + sq->start * qw;  /* (len, qw) */
        int64_t nh = L->num_heads, nkv = L->num_kv_heads;
        if (how == LR_RND_ATTN_TORCH_FLASH || tiled) {
            R(online_softmax) o = how == LR_RND_ATTN_TORCH_FLASH
                                      ? R(torch_flash_rounding)(hd, m->dt)
                                      : R(flash_rounding)(hd, LR_ATTN_P_TILE, m->dt, m->f64_products);
            R(attention_online_masked)(c, L->q_size, x, qw, kc, vc, kvw, sq->len, sq->past, nh, nkv, hd, &o,
                                       mods->mask_shift, scores);
        } else if (how == LR_RND_ATTN_TORCH_EAGER)
            R(attention_torch_eager_masked)(c, L->q_size, x, qw, kc, vc, kvw, sq->len, sq->past, nh, nkv, hd,
                                            m->dt, mods->mask_shift, scores);
        else
            R(attention_masked)(c, L->q_size, x, qw, kc, vc, kvw, sq->len, sq->past, nh, nkv, hd, mods->mask_shift,
                                scores);
    }
}
