/* same.c: the same-precision yardstick (issue 15). At bf16 and fp16 a kernel is held
 * against the emulated CPU reference (--backend cpu at the same precision, rounding
 * where the CUDA path rounds; docs/architecture.md, "The rounding map"), both fed the
 * golden's input to every op (op-level isolation), so that what is left between them is
 * the order of float32 accumulations, not bf16's rounding noise. A correct kernel then
 * differs from the reference by at most one unit in the last place of an element, in a
 * small share of elements; a bug far below bf16's noise does not. */
#include "internal.h"
#include "llamaref_ops.h" /* lr_ref_rotary_embedding_emulated */

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Accumulation order: two float32 sums of K terms differ by about sqrt(K) u of the terms'
 * scale (u = ACC_UNIT), so a share f = sqrt(K) u / 2^-m of roundings to m-bit storage land
 * on the other side and move one ulp; the relative L2 of the difference is then about
 * sqrt(f) ulps. The budget is twice that, and never under a tenth of an ulp, nor under
 * what one element a few ulps off makes of a small stage's relative L2 (lr_same_compare
 * adds small / sqrt(elements) ulps). The relative L2 judged counts the stage's worst
 * element as one ulp at most (lr_same_compare): that element is the per-element bound's
 * to judge, and alone it would swallow the budget it is not part of (the H200's fp16
 * down_proj of long-gqa: one element 4 ulps off, at several times its row's RMS, made
 * 1.06 budgets of relative L2 on its own). A massive activation (LR_SAME_MASSIVE) is
 * left out of it, the rest judged against the rest's norm. A bug moves many elements,
 * not one. Per element: one ulp at bf16,
 * with one element per stage allowed up to two (an op may round twice: a GEMM's output, then with its bias;
 * silu(gate), then times up); four at fp16, whose ulps are 8 times finer so float32
 * order shows as more of them. Elements under half their row's RMS count at that size
 * (a sum that cancels has an ulp far below the error of its terms). From the H200 runs
 * against the CUDA path (docs/detection.md). */
/* The unit of float32 accumulation the budget counts: 2^-22, four times round-to-nearest's
 * 2^-24. Tensor cores add products without round-to-nearest (published measurements of
 * NVIDIA tensor cores find truncation), and the H200 shows it: at Llama-3-8B's
 * down_proj (14336 terms, fp16) the CUDA path and the emulated reference differ in 6 times
 * the share of roundings 2^-24 predicts (1.25 of a 2^-24 budget), and at long-gqa's 300
 * (fp16, tp 2) in 1.6 times (1.01 of it). */
#define ACC_UNIT 0x1p-22

static double flip_share(lr_dtype p, int64_t reduction) {
    return sqrt((double)(reduction > 1 ? reduction : 1)) * ACC_UNIT / lr_ulp(p, 1.0);
}

lr_same_budget lr_same_precision_budget(lr_dtype p, int64_t reduction) {
    double ulp = ldexp(lr_ulp(p, 1.0), -1); /* relative spacing at mid-binade */
    double f = flip_share(p, reduction);
    double share = 2 * sqrt(f) > 0.1 ? 2 * sqrt(f) : 0.1;
    /* fp16's ulps are 8 times finer than bf16's, so float32 order shows as more of them:
     * bf16 one ulp, and one element per stage up to two; fp16 four */
    lr_same_budget b = {.rel_l2 = share * ulp,
                        .ulps = p == LR_F16 ? 4 : 1,
                        .floor = 0.5,
                        .small = p == LR_F16 ? 6 : 4,
                        .spare = p == LR_F16 ? 0 : 1,
                        .cap = p == LR_F16 ? 4 : 2,
                        .flip_share = f < 1 ? f : 1};
    return b;
}

int64_t lr_same_reduction(const lr_config *c, int64_t tokens) {
    int64_t k = c->hidden_size;
    int64_t d[] = {c->intermediate_size, c->num_attention_heads * c->head_dim, tokens};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
        k = d[i] > k ? d[i] : k;
    return k;
}

/* P rounded before P V: P = 2^x, x the score times scale log2 e less the running maximum,
 * from a float32 dot product of head_dim terms, so two orders move x by up to
 * head_dim u X (X the largest |x| that matters; LR_SAME_P_RANGE = 16 where it is not
 * known: under it P is below 2^-16 of the row's largest and a flip of it moves no output)
 * and P by ln 2 times that, relatively: a
 * share f_P = head_dim u X ln 2 / ulp of P's roundings flip, each moving the outputs by up
 * to an ulp of P relative to them, as the output's own flips do. So such a kernel gets
 * 2 sqrt(f + f_P) ulps of relative L2 where that is larger, and elements over the ulp
 * bound (up to one ulp more than the cap) in a share of 2^-12 (the H200 at Llama-3-8B's
 * shapes, bf16, 512 tokens: 34 of 2.1M elements over one ulp, a share of 2^-16, none over
 * three). Not one ulp more for every element: a kernel wrong on one feature of each row
 * by 1e-2 (two bf16 ulps; one of SmolLM2's 576 features, a share of 2^-9) would then
 * pass. The op sweep derives and
 * measures the same term against a simulated kernel (tests/test_gpu_ops.c, swept by
 * gpu/opsweep.c in host mode). */
lr_same_budget lr_same_attention_budget(lr_dtype p, int64_t head_dim, int64_t keys, bool rounds_p, double x_range) {
    int64_t k = head_dim > keys ? head_dim : keys;
    lr_same_budget b = lr_same_precision_budget(p, k);
    b.floor_by_feature = true;
    if (!rounds_p) return b;
    double ulp = lr_ulp(p, 1.0);
    double f = flip_share(p, k), f_p = (double)head_dim * ACC_UNIT * x_range * log(2.0) / ulp;
    double rel = 2 * sqrt(f + f_p) * ulp / 2;
    if (rel > b.rel_l2) b.rel_l2 = rel;
    b.cap += 1;
    b.spare_share = ldexp(1.0, -12);
    return b;
}

int64_t lr_same_massive(const lr_tensor *ref) {
    double rr = 0, big = 0;
    int64_t at = -1, n = lr_tensor_numel(ref);
    for (int64_t i = 0; i < n; i++) {
        double y = lr_tensor_get(ref, i);
        if (!isfinite(y)) continue;
        rr += y * y;
        if (fabs(y) > big) big = fabs(y), at = i;
    }
    return at >= 0 && big * big >= LR_SAME_MASSIVE * rr && rr > big * big ? at : -1;
}

/* The flips a stage may hold before it counts against the relative L2's budget: an upper
 * Poisson tail of the expected count lambda (lambda + 4 sqrt(lambda) + 4, under 1e-5 for any
 * lambda), which is a bound already (each element's flip share from its accumulation bound). */
static double flips_allowed(double lambda) {
    return lambda + 4 * sqrt(lambda) + 4;
}

/* acc (NULL: none): per element, what float32 order may move the value before its rounding
 * (lr_same_accumulation_bound), counted beside the element's ulp. */
static int same_compare(const lr_tensor *test, const lr_tensor *ref, const lr_tensor *const *terms, int nterms,
                        const lr_tensor *acc, const lr_tensor *jump, lr_dtype p, lr_same_budget b,
                        lr_same_metrics *m) {
    for (int k = 0; k < nterms; k++)
        if (lr_tensor_numel(terms[k]) != lr_tensor_numel(ref))
            return lr_fail(LR_E_SHAPE, "same precision: a term of the sum has %lld elements, the sum %lld",
                           (long long)lr_tensor_numel(terms[k]), (long long)lr_tensor_numel(ref));
    if (acc && lr_tensor_numel(acc) != lr_tensor_numel(ref))
        return lr_fail(LR_E_SHAPE, "same precision: the accumulation bound has %lld elements, the stage %lld",
                       (long long)lr_tensor_numel(acc), (long long)lr_tensor_numel(ref));
    if (jump && lr_tensor_numel(jump) != lr_tensor_numel(ref))
        return lr_fail(LR_E_SHAPE, "same precision: the flip bound has %lld elements, the stage %lld",
                       (long long)lr_tensor_numel(jump), (long long)lr_tensor_numel(ref));
    if (test->ndim != 2 || ref->ndim != 2 || test->shape[0] != ref->shape[0] ||
        test->shape[1] != ref->shape[1])
        return lr_fail(LR_E_SHAPE, "same precision: shapes differ");
    int64_t T = ref->shape[0], N = ref->shape[1];
    double dd = 0, rr = 0, worst_d = 0, worst_ulp = 0, order = 0, big_y = 0, big_d = 0, forgive[2] = {0, 0};
    int64_t big_at = lr_same_massive(ref), worst_at = -1, forgive_at[2] = {-1, -1};
    *m = (lr_same_metrics){.worst_token = -1, .worst_feature = -1};
    bool debug = getenv("LR_SAME_DEBUG") != NULL;
    enum { TOP = 8 };
    struct {
        double d2, ulps, y, e;
        int64_t at;
    } top[TOP] = {{0}};
    double *col = NULL; /* each feature's RMS over the tokens, where the floor goes by it */
    if (b.floor_by_feature && T >= 4 && (col = calloc((size_t)N, sizeof *col))) {
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = 0; j < N; j++) {
                double y = lr_tensor_get(ref, t * N + j);
                if (isfinite(y)) col[j] += y * y;
            }
        for (int64_t j = 0; j < N; j++)
            col[j] = sqrt(col[j] / (double)T);
    }
    for (int64_t t = 0; t < T; t++) {
        double ss = 0;
        for (int64_t j = 0; j < N; j++) {
            double y = lr_tensor_get(ref, t * N + j);
            ss += y * y;
        }
        double floor_mag = b.floor * sqrt(ss / (double)N); /* small elements: the ulp at this size */
        for (int64_t j = 0; j < N; j++) {
            double x = lr_tensor_get(test, t * N + j), y = lr_tensor_get(ref, t * N + j), d = fabs(x - y);
            if (!isfinite(x) || !isfinite(y)) {
                if (!(isnan(x) && isnan(y)) && x != y) m->nonfinite++;
                continue;
            }
            double at_least = col ? b.floor * col[j] : floor_mag;
            double ulp = lr_ulp(p, fabs(y) > at_least ? y : at_least), own = ulp, e = 0;
            for (int k = 0; k < nterms; k++)
                ulp += lr_ulp(p, lr_tensor_get(terms[k], t * N + j));
            if (acc) {
                /* float32 order moves the value by up to e before it is rounded: a flip
                 * where e < ulp (in a share e / ulp of such elements), e itself beyond */
                e = fabs(lr_tensor_get(acc, t * N + j));
                order += e * ulp + e * e;
                ulp += e;
            }
            double ulps = d / ulp, share = b.flip_share + e / own;
            /* the cap's ulps beyond the largest move one flip of a rounded weight makes */
            double capped = jump ? d / (ulp + fabs(lr_tensor_get(jump, t * N + j))) : ulps;
            m->flips_expected += share < 1 ? share : 1;
            bool flip = d >= 0.5 * own;
            if (flip) {
                m->flips++;
                double one = d < own ? d * d : own * own; /* one ulp of it */
                if (t * N + j != big_at && one > forgive[1]) {
                    forgive[1] = one, forgive_at[1] = t * N + j;
                    if (forgive[1] > forgive[0]) {
                        forgive[1] = forgive[0], forgive_at[1] = forgive_at[0];
                        forgive[0] = one, forgive_at[0] = t * N + j;
                    }
                }
            }
            if (debug && d * d > top[TOP - 1].d2) {
                int k = TOP - 1;
                for (; k > 0 && top[k - 1].d2 < d * d; k--)
                    top[k] = top[k - 1];
                top[k].d2 = d * d, top[k].ulps = d / own, top[k].y = y, top[k].e = e / own, top[k].at = t * N + j;
            }
            dd += d * d;
            rr += y * y;
            if (t * N + j == big_at) big_y = fabs(y), big_d = d;
            if (ulps > b.ulps) m->over++;
            if (capped > m->max_ulps) {
                m->max_ulps = capped;
                worst_d = d;
                worst_ulp = ulp;
                worst_at = t * N + j;
                m->worst_token = t;
                m->worst_feature = j;
            }
        }
    }
    free(col);
    m->rel_l2 = rr > 0 ? sqrt(dd / rr) : sqrt(dd);
    /* A massive activation (one element holding a quarter of the stage's squared norm or
     * more) is the per-element bound's alone: one flip of it would be the whole relative
     * L2, so the rest is judged against the rest's norm. */
    double cc = dd, cr = rr;
    bool massive = big_at >= 0;
    if (massive) {
        cc -= big_d * big_d;
        cr -= big_y * big_y;
    }
    bool worst_left = massive && worst_at == big_at;
    double cut = worst_d > worst_ulp && !worst_left ? worst_d * worst_d - worst_ulp * worst_ulp : 0;
    cc = cc - cut > 0 ? cc - cut : 0;
    m->clipped = cr > 0 ? sqrt(cc / cr) : sqrt(cc);
    /* one element two ulps (of up to twice the mid-binade spacing) off, in a stage of n
     * elements of equal size: 4 / sqrt(n) ulps */
    double small = b.small / sqrt((double)(T * N > 0 ? T * N : 1)) * ldexp(lr_ulp(p, 1.0), -1);
    m->budget = b.rel_l2 > small ? b.rel_l2 : small;
    double by_order = rr > 0 ? 2 * sqrt(order / rr) : 0; /* twice the RMS that order explains */
    if (by_order > m->budget) m->budget = by_order;
    /* The largest flips: where float32 order explains as many flips as the stage has
     * (flips_allowed), the relative L2 is also judged without one ulp of each of its two
     * largest. One flip of an element holding a few per cent of a small stage's squared
     * norm is more than the budget, which counts flips by their expected RMS (SmolLM2's
     * q_proj and k_proj at bf16 on the H200: 13 tokens, one element of 0.4-1.2% one ulp
     * off, 1.06-1.62 budgets, where order explains 5-17 flips; 3 stages of 1812, each with
     * exactly one flip). A fault moves a share of every element (a scale fault of 1e-3
     * flips a tenth to a quarter of a bf16 stage) or many by under half an ulp unrounded,
     * not two. */
    double by_flips = HUGE_VAL;
    for (int k = 0; k < 2; k++) /* the worst element's cut keeps one ulp of it: not forgiven too */
        if (cut > 0 && forgive_at[k] == worst_at) forgive[k] = 0;
    if ((double)m->flips <= flips_allowed(m->flips_expected)) {
        double rest = cc - forgive[0] - forgive[1];
        by_flips = cr > 0 ? sqrt((rest > 0 ? rest : 0) / cr) : 0;
    }
    double spare = (double)b.spare + b.spare_share * (double)(T * N);
    m->pass = m->nonfinite == 0 && (double)m->over <= spare && m->max_ulps <= b.cap &&
              (m->clipped <= m->budget || by_flips <= m->budget);
    if (debug && !m->pass) {
        /* LR_SAME_DEBUG: a failing stage's largest differences, for studying the budget */
        fprintf(stderr, "same-debug: %lld x %lld rel %.3g judged %.3g budget %.3g max %.3g ulps over %lld flips %lld (%.3g expected)\n",
                (long long)T, (long long)N, m->rel_l2, m->clipped, m->budget, m->max_ulps, (long long)m->over,
                (long long)m->flips, m->flips_expected);
        for (int k = 0; k < TOP && top[k].d2 > 0; k++)
            fprintf(stderr, "same-debug:   [%lld, %lld] %.3g ulps, share of ||y||^2 %.3g, of ||d||^2 %.3g, order/ulp %.3g\n",
                    (long long)(top[k].at / N), (long long)(top[k].at % N), top[k].ulps,
                    rr > 0 ? top[k].y * top[k].y / rr : 0, dd > 0 ? top[k].d2 / dd : 0, top[k].e);
    }
    return LR_OK;
}

int lr_same_compare(const lr_tensor *test, const lr_tensor *ref, lr_dtype p, lr_same_budget b, lr_same_metrics *m) {
    return same_compare(test, ref, NULL, 0, NULL, NULL, p, b, m);
}

int lr_same_compare_sum(const lr_tensor *test, const lr_tensor *ref, const lr_tensor *const *terms, int nterms,
                        lr_dtype p, lr_same_budget b, lr_same_metrics *m) {
    return same_compare(test, ref, terms, nterms, NULL, NULL, p, b, m);
}

int lr_same_compare_acc(const lr_tensor *test, const lr_tensor *ref, const lr_tensor *acc, lr_dtype p,
                        lr_same_budget b, lr_same_metrics *m) {
    return same_compare(test, ref, NULL, 0, acc, NULL, p, b, m);
}

int lr_same_compare_flips(const lr_tensor *test, const lr_tensor *ref, const lr_tensor *jump, lr_dtype p,
                          lr_same_budget b, lr_same_metrics *m) {
    return same_compare(test, ref, NULL, 0, NULL, jump, p, b, m);
}

/* A kernel that rounds P = 2^(x - max) to p before P V computes O = sum_j P_j v_j / sum_j
 * P_j over the rounded weights; where float32 order moves x_j across a rounding boundary
 * of P_j, P_j moves by its ulp and O by ulp(P_j) (v_j - O) / l. Where O cancels (far
 * smaller than the P_j v_j it sums) or the row is sharp (l near 1), one such flip is many
 * of O's ulps, as a projection's cancelling sum is (lr_same_accumulation_bound): on the
 * H200 at Llama-3-8B's shapes, 25 and 26 of 2.1 million outputs of two layers 4 and 6 ulps
 * off (run 17). The weights are recomputed here in float64 from q and k, the largest |x|
 * at 0 (the row's max), where their ulps are the kernel's up to the running max's steps.
 * One row, so that a row with past keys (the op sweep's decode batches) is the same call
 * as a causal prefill's. */
double lr_same_flip_row(double *out, const double *q, const double *k, const double *v, int64_t ld,
                        const double *o, int64_t n, int64_t hd, bool divide, lr_dtype p, double *w) {
    double root = sqrt((double)hd), scale = 1 / root, mx = -HUGE_VAL, l = 0, far = 0;
    for (int64_t j = 0; j < n; j++) {
        const double *kj = k + j * ld;
        double dot = 0;
        for (int64_t d = 0; d < hd; d++)
            dot += q[d] * kj[d];
        /* the two differ in the last bit: each caller keeps the rounding it had */
        w[j] = divide ? dot / root : dot * scale;
        mx = w[j] > mx ? w[j] : mx;
        far = fabs(w[j]) > far ? fabs(w[j]) : far;
    }
    for (int64_t j = 0; j < n; j++)
        l += w[j] = exp(w[j] - mx);
    /* a flip's move per |v - O|; the row's max is 2^0 = 1 exactly in any order: no flip */
    for (int64_t j = 0; j < n; j++)
        w[j] = w[j] < 1 ? lr_ulp(p, w[j]) / l : 0;
    for (int64_t d = 0; d < hd; d++) {
        double big = 0;
        for (int64_t j = 0; j < n; j++) {
            double mv = w[j] * fabs(v[j * ld + d] - o[d]);
            big = mv > big ? mv : big;
        }
        out[d] = big;
    }
    return far;
}

/* x (n) as float64 (NULL: out of memory), which lr_same_flip_row reads exactly. */
static double *widen(const float *x, int64_t n) {
    double *y = malloc((size_t)(n > 0 ? n : 1) * sizeof *y);
    for (int64_t i = 0; y && i < n; i++)
        y[i] = x[i];
    return y;
}

/* (T, width) of a stage as float32 values (NULL: out of memory). */
static float *stage_f32(const lr_tensor *t, int64_t T, int64_t width) {
    float *x = malloc((size_t)(T * width) * sizeof *x);
    for (int64_t i = 0; x && i < T * width; i++) x[i] = (float)lr_tensor_get(t, i);
    return x;
}

int lr_same_attention_flip_bound(double *out, const lr_config *cfg, const lr_batch *b, const lr_tensor *q,
                                 const lr_tensor *k, const lr_tensor *v, const lr_tensor *o, lr_dtype p,
                                 bool *applies) {
    int64_t T = b->num_tokens, nh = cfg->num_attention_heads, nkv = cfg->num_key_value_heads, hd = cfg->head_dim;
    int64_t qw = nh * hd, kw = nkv * hd;
    *applies = false;
    if (nkv < 1 || nh % nkv) return LR_OK;
    for (int64_t s = 0, start = 0; s < b->num_seqs; s++) { /* every sequence from position 0 */
        int64_t len = b->seq_lens ? b->seq_lens[s] : T;
        for (int64_t j = 0; j < len; j++)
            if (b->positions && b->positions[start + j] != j) return LR_OK;
        start += len;
    }
    if (lr_tensor_numel(q) != T * nh * hd || lr_tensor_numel(o) != T * nh * hd || lr_tensor_numel(k) != T * nkv * hd ||
        lr_tensor_numel(v) != T * nkv * hd)
        return lr_fail(LR_E_SHAPE, "same precision: attention's flip bound: q, k, v or the output is not (%lld, width)",
                       (long long)T);
    float *qf = stage_f32(q, T, nh * hd), *kf = stage_f32(k, T, nkv * hd), *vf = stage_f32(v, T, nkv * hd),
          *of = stage_f32(o, T, nh * hd), *scratch = malloc((size_t)hd * sizeof *scratch);
    double *inv = malloc((size_t)(hd / 2 > 0 ? hd / 2 : 1) * sizeof *inv), *w = malloc((size_t)T * sizeof *w);
    int64_t *pos = malloc((size_t)T * sizeof *pos);
    double *qd = NULL, *kd = NULL, *vd = NULL, *od = NULL; /* after RoPE, as lr_same_flip_row reads them */
    int rc = LR_OK;
    if (!qf || !kf || !vf || !of || !scratch || !inv || !w || !pos) {
        rc = lr_fail(LR_E_NOMEM, "same precision: out of memory for attention's flip bound");
        goto out;
    }
    for (int64_t s = 0, start = 0; s < b->num_seqs; s++) {
        int64_t len = b->seq_lens ? b->seq_lens[s] : T;
        for (int64_t j = 0; j < len; j++) pos[start + j] = j;
        start += len;
    }
    lr_rope_inv_freq(cfg, inv);
    lr_ref_rotary_embedding_emulated(qf, nh * hd, T, nh, hd, pos, inv, scratch, p);
    lr_ref_rotary_embedding_emulated(kf, nkv * hd, T, nkv, hd, pos, inv, scratch, p);
    qd = widen(qf, T * qw), kd = widen(kf, T * kw), vd = widen(vf, T * kw), od = widen(of, T * qw);
    if (!qd || !kd || !vd || !od) {
        rc = lr_fail(LR_E_NOMEM, "same precision: out of memory for attention's flip bound");
        goto out;
    }
    for (int64_t s = 0, start = 0; s < b->num_seqs; s++) {
        int64_t len = b->seq_lens ? b->seq_lens[s] : T;
        for (int64_t t = start; t < start + len; t++) /* the causal mask: keys start .. t */
            for (int64_t h = 0; h < nh; h++) {
                int64_t row = t * qw + h * hd, g = start * kw + h / (nh / nkv) * hd;
                lr_same_flip_row(out + row, qd + row, kd + g, vd + g, kw, od + row, t - start + 1, hd, false,
                                 p, w);
            }
        start += len;
    }
    *applies = true;
out:
    free(qf), free(kf), free(vf), free(of), free(scratch), free(inv), free(w), free(pos);
    free(qd), free(kd), free(vd), free(od);
    return rc;
}

/* Two float32 orders of a dot product of K terms differ by about sqrt(K) u times the
 * root-sum-square of its terms (a running sum's error is u times the RMS of its partial
 * sums, sqrt(K) of them, each about that size; Higham and Mary's probabilistic bound),
 * whatever the sum itself: where the terms cancel, or one term far larger than the rest is
 * cancelled by them (a trained model's massive activations), that is many ulps of the
 * result. With u = ACC_UNIT, four times round-to-nearest's 2^-24 (above). */
int lr_same_accumulation_bound(double *out, const float *x, const float *w, int64_t T, int64_t N, int64_t K) {
    double unit = sqrt((double)(K > 1 ? K : 1)) * ACC_UNIT;
    float *x2 = malloc((size_t)(T * K) * sizeof *x2), *w2 = malloc((size_t)(N * K) * sizeof *w2),
          *s2 = malloc((size_t)(T * N) * sizeof *s2);
    if (!x2 || !w2 || !s2) {
        free(x2), free(w2), free(s2);
        return lr_fail(LR_E_NOMEM, "same precision: out of memory for an accumulation bound of %lld x %lld",
                       (long long)T, (long long)N);
    }
    for (int64_t i = 0; i < T * K; i++)
        x2[i] = x[i] * x[i];
    for (int64_t i = 0; i < N * K; i++)
        w2[i] = w[i] * w[i];
    /* the squares' sums through BLAS: positive terms, float32 is ample for a bound */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)N, (int)K, 1, x2, (int)K, w2, (int)K, 0, s2,
                (int)N);
    for (int64_t i = 0; i < T * N; i++)
        out[i] = unit * sqrt((double)s2[i]);
    free(x2), free(w2), free(s2);
    return LR_OK;
}
