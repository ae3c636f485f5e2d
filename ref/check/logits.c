/* logits.c: the logits as users see them. Per token, the softmaxes of a run under test
 * and of its reference: the same most likely token or not, how much the top k share,
 * KL(reference || test) and the largest change of a log-probability; summarised over
 * the tokens. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

/* log-softmax of row `row` of t (T, V) into out (V), in double. */
static void log_softmax(const lr_tensor *t, int64_t row, int64_t V, double *out) {
    double mx = -INFINITY, sum = 0;
    for (int64_t v = 0; v < V; v++) {
        out[v] = lr_tensor_get(t, row * V + v);
        mx = out[v] > mx ? out[v] : mx;
    }
    for (int64_t v = 0; v < V; v++)
        sum += exp(out[v] - mx);
    double lse = mx + log(sum);
    for (int64_t v = 0; v < V; v++)
        out[v] -= lse;
}

/* Indices of the k largest entries of x (V) into idx (k), largest first; insertion,
 * since k is small. Ties keep the lower index first. */
static void top_k(const double *x, int64_t V, int64_t k, int64_t *idx) {
    for (int64_t i = 0; i < k; i++)
        idx[i] = -1;
    for (int64_t v = 0; v < V; v++) {
        int64_t j = k;
        while (j > 0 && (idx[j - 1] < 0 || x[v] > x[idx[j - 1]]))
            j--;
        if (j == k) continue;
        for (int64_t m = k - 1; m > j; m--)
            idx[m] = idx[m - 1];
        idx[j] = v;
    }
}

int lr_logits_compare(const lr_tensor *test, const lr_tensor *ref, int64_t k, lr_logits_metrics *out) {
    if (!test || !ref || !out || k < 1) return lr_fail(LR_E_INVAL, "logits: need two tensors and k >= 1");
    if (test->ndim != 2 || ref->ndim != 2 || test->shape[0] != ref->shape[0] ||
        test->shape[1] != ref->shape[1] || ref->shape[1] < 1)
        return lr_fail(LR_E_SHAPE,
                       "logits: test of %d dims [%lld, %lld] against reference of %d dims [%lld, %lld]",
                       test->ndim, (long long)test->shape[0], (long long)test->shape[1], ref->ndim,
                       (long long)ref->shape[0], (long long)ref->shape[1]);
    int64_t T = ref->shape[0], V = ref->shape[1];
    k = V < k ? V : k;
    *out = (lr_logits_metrics){.tokens = T, .k = k};
    double *lp = malloc((size_t)V * sizeof *lp);  /* (V) test log-probabilities */
    double *lq = malloc((size_t)V * sizeof *lq);  /* (V) reference log-probabilities */
    int64_t *ip = malloc((size_t)k * sizeof *ip); /* (k) test's top k */
    int64_t *iq = malloc((size_t)k * sizeof *iq); /* (k) reference's top k */
    if (!lp || !lq || !ip || !iq) {
        free(lp), free(lq), free(ip), free(iq);
        return lr_fail(LR_E_NOMEM, "logits: out of memory for a vocabulary of %lld", (long long)V);
    }
    for (int64_t t = 0; t < T; t++) {
        log_softmax(test, t, V, lp);
        log_softmax(ref, t, V, lq);
        top_k(lp, V, k, ip);
        top_k(lq, V, k, iq);
        out->top1_agree += ip[0] == iq[0];
        int64_t common = 0;
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++)
                common += ip[i] == iq[j];
        out->topk_overlap += (double)common / (double)k;
        double kl = 0;
        for (int64_t v = 0; v < V; v++) {
            kl += exp(lq[v]) * (lq[v] - lp[v]);
            double d = fabs(lp[v] - lq[v]);
            /* a NaN or Inf, once seen, stays */
            out->max_abs_delta_logprob =
                d > out->max_abs_delta_logprob || !isfinite(d) ? d : out->max_abs_delta_logprob;
        }
        out->kl_mean += kl / (double)T;
        if (kl > out->kl_max || t == 0) {
            out->kl_max = kl;
            out->kl_max_token = t;
        }
    }
    if (T > 0) out->topk_overlap /= (double)T;
    free(lp), free(lq), free(ip), free(iq);
    return LR_OK;
}
