/* drill.c: where an error came in. The layer a stage name belongs to, and the
 * drill-down: inside the first failing stage's layer, the operation the error jumps
 * most at, which is the one that introduced it. */
#include "internal.h"

#include <math.h>

/* Growth is measured against a floor of this share of a stage's tolerance, so that an
 * exact predecessor (the embedding, in f64) does not make rounding look like a jump. */
#define DRILL_FLOOR 1e-3

int64_t lr_stage_layer(const char *stage) {
    const char *suffix;
    return stage ? lr_stage_split(stage, &suffix) : -1;
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
        double floor = DRILL_FLOOR * x->tolerance;
        double before = prev && isfinite(prev->m.rel_l2) ? fmax(prev->m.rel_l2, floor) : floor;
        double growth = !isfinite(x->m.rel_l2) ? INFINITY : x->m.rel_l2 / before;
        /* A layer's output only sums what its sub-stages already show. */
        if (x->kind != LR_STAGE_LAYER && (out->cause < 0 || growth > out->growth)) {
            out->cause = (int64_t)i;
            out->growth = growth;
        }
        prev = x;
        if (out->layer < 0 && i == first) break;
    }
    return LR_OK;
}
