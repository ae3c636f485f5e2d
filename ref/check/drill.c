/* drill.c: where an error came in. The layer a stage name belongs to, and the
 * drill-down: inside the first failing stage's layer, the operation the error jumps
 * most at, which is the one that introduced it. */
#include "internal.h"

#include <math.h>

/* A stage's error is compared with its predecessor's, or, where that is smaller, with
 * the error rounding alone should leave at the stage: the error model's prediction, and
 * at least this share of the stage's budget (rounding uses 10% to 70% of an f32 or bf16
 * budget on the fixtures; the f64 budget is far looser than f64 rounding). So an exact
 * predecessor (the embedding, at f64 and f32) does not make rounding look like a jump. */
#define DRILL_FLOOR 0.1

int64_t lr_stage_layer(const char *stage) {
    const char *suffix;
    return stage ? lr_stage_split(stage, &suffix) : -1;
}

/* The relative L2's growth, or the worst token's where that grows more (a bug on a few
 * tokens barely moves the whole tensor's error). */
double lr_drill_growth(const lr_stage_result *x, const lr_stage_result *prev, bool *by_token) {
    bool unused;
    if (!by_token) by_token = &unused;
    *by_token = false;
    if (!isfinite(x->m.rel_l2)) return INFINITY;
    double floor = fmax(x->predicted, DRILL_FLOOR * x->tolerance);
    double before = prev && isfinite(prev->m.rel_l2) ? prev->m.rel_l2 : 0;
    double g = x->m.rel_l2 / fmax(before, floor);
    if (!x->m.elem_checked || !(x->tolerance > 0)) return g; /* no per-token figures */
    /* The worst token's error against the same floor, scaled as its budget is. */
    double tok_floor = floor * lr_metrics_token_budget(&x->m) / x->tolerance;
    double tok_before =
        prev && prev->m.elem_checked && isfinite(prev->m.token_rel_l2) ? prev->m.token_rel_l2 : 0;
    double gt = x->m.token_rel_l2 / fmax(tok_before, tok_floor);
    if (gt > g) {
        *by_token = true;
        return gt;
    }
    return g;
}

int lr_drill_down(const lr_stage_result *res, size_t n, lr_drill *out) {
    if (!out || (n > 0 && !res)) return lr_fail(LR_E_INVAL, "drill-down: no stage results given");
    *out = (lr_drill){.first = -1, .layer = -1, .cause = -1, .growth = 0};
    size_t first = 0;
    while (first < n && res[first].pass)
        first++;
    if (first == n) return LR_OK;
    out->first = (int64_t)first;
    out->layer = lr_stage_layer(res[first].name);
    /* Inside first's layer, or from the start up to first when it is in no layer. The
     * stage before a candidate may lie outside the layer (the previous layer's output). */
    const lr_stage_result *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        const lr_stage_result *x = &res[i];
        if (out->layer >= 0 && lr_stage_layer(x->name) != out->layer) {
            prev = x;
            continue;
        }
        bool by_token;
        double growth = lr_drill_growth(x, prev, &by_token);
        /* A layer's output only sums what its sub-stages already show. */
        if (x->kind != LR_STAGE_LAYER && (out->cause < 0 || growth > out->growth)) {
            out->cause = (int64_t)i;
            out->growth = growth;
            out->by_token = by_token;
        }
        prev = x;
        if (out->layer < 0 && i == first) break;
    }
    return LR_OK;
}
