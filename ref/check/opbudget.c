/* opbudget.c: what one op's output is held to at a dtype (llamaref_ops.h): the criteria
 * against the float64 reference and the same-precision budget against the emulated one.
 * The one place the op sweep's tolerances live (tests/test_gpu_ops, llama-diff ops, and a
 * developer's own harness read them here; docs/adding-a-kernel.md says why each is so).
 *
 * Against the float64 reference, the relative L2 error of an op's output, by the dtype
 * the kernel reads and writes, as unit roundoff u (2^-p for p significand bits) times a
 * factor. Inputs are exactly representable in the dtype and the kernels compute in
 * float32, so the error is the final rounding to the dtype (relative at most u per
 * element, about u/sqrt(3) in RMS) plus float32 arithmetic (u32 = 2^-24 per operation,
 * growing like sqrt(K) over a reduction of K terms).
 *   F16, BF16: the final rounding dominates; 8 u leaves a margin of about 14x over the
 *              expected u/sqrt(3) (F16 3.9e-3, BF16 3.1e-2).
 *   F32:       the output rounding is u32 itself, so the reductions dominate: 128 u
 *              (7.6e-6) covers sqrt(K) u32 for K up to 16384 terms with room for expf
 *              and the 1-ulp sincos.
 * The worst token and every element are held as the model-level verdict holds a stage
 * (lr_stage_criteria, compare.c; docs/tolerances.md): the same multiples of the
 * relative-L2 budget, read from that table, applied to the budget above.
 *
 * At F16 and BF16, against the emulated reference (the same op in float32 arithmetic on
 * the same inputs, rounded where the CUDA path rounds: ref/core/rounding.h), what is left
 * is the order of float32 operations, held in ulps by the model-level same-precision
 * verdict's budget (lr_same_precision_budget, same.c) for the op's own reduction length;
 * attention's adds P's roundings where the kernel rounds P (lr_same_attention_budget). */
#include "internal.h"
#include "llamaref_ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct {
    lr_dtype dt;
    double unit_roundoff, factor;
} rel_l2_budgets[] = {
    {LR_F32, 0x1p-24, 128},
    {LR_F16, 0x1p-11, 8},
    {LR_BF16, 0x1p-8, 8},
};

static const struct {
    const char *name;
    lr_stage_kind kind;
    bool exact;
} ops[] = {
#define OP_ROW(name, kind, exact) {name, kind, exact},
    LR_OP_BUDGET_MAP(OP_ROW)
#undef OP_ROW
};

double lr_op_rel_l2_budget(lr_dtype dt) {
    for (size_t i = 0; i < sizeof rel_l2_budgets / sizeof rel_l2_budgets[0]; i++)
        if (rel_l2_budgets[i].dt == dt) return rel_l2_budgets[i].unit_roundoff * rel_l2_budgets[i].factor;
    return 0;
}

static int check_dtype(lr_dtype dt) {
    if (lr_op_rel_l2_budget(dt) > 0) return LR_OK;
    return lr_fail(LR_E_INVAL, "op budget: dtype %s has none (F32, F16 or BF16)", lr_dtype_name(dt));
}

/* The float64 criteria of an output judged like a stage of this kind. */
static int f64_criteria(lr_stage_kind kind, lr_dtype dt, lr_criteria *out) {
    double b = lr_op_rel_l2_budget(dt);
    lr_criteria s = lr_stage_criteria(kind, dt, -1);
    if (!(s.rel_l2 > 0) || !isfinite(s.token) || !isfinite(s.atol) || !isfinite(s.rtol))
        return lr_fail(LR_E_INVAL, "op budget: no stage criteria for %s at %s", lr_stage_kind_name(kind),
                       lr_dtype_name(dt));
    double k = b / s.rel_l2;
    *out = (lr_criteria){.rel_l2 = b, .token = s.token * k, .atol = s.atol * k, .rtol = s.rtol * k};
    return LR_OK;
}

int lr_op_budget(const char *op, lr_dtype dt, int64_t reduction_len, lr_op_criteria *out) {
    if (!out) return lr_fail(LR_E_INVAL, "lr_op_budget: out is NULL");
    size_t i = 0, n = sizeof ops / sizeof ops[0];
    while (op && i < n && strcmp(ops[i].name, op) != 0)
        i++;
    if (!op || i == n) {
        char list[512] = "";
        size_t used = 0;
        for (size_t j = 0; j < n && used < sizeof list; j++)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", j ? ", " : "", ops[j].name);
        return lr_fail(LR_E_INVAL, "op budget: unknown op \"%s\" (ops: %s)", op ? op : "(null)", list);
    }
    if (reduction_len < 1)
        return lr_fail(LR_E_INVAL, "op budget: %s: reduction_len %lld (at least 1)", op,
                       (long long)reduction_len);
    int rc = check_dtype(dt);
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    out->exact = ops[i].exact;
    out->kind = ops[i].kind;
    if (out->exact) return LR_OK;
    if ((rc = f64_criteria(out->kind, dt, &out->f64))) return rc;
    out->has_same = dt == LR_F16 || dt == LR_BF16;
    /* A norm's one sum of squares scales its whole row: two orders move every output of
     * the row by the same delta, one draw of it, not a mean over many sums, and with few
     * rows (a decode step's one) the draw can be three times its typical size (the CPU
     * simulation of a block RMSNorm at T 1, H 8192 reached 1.16 budgets in 1 of 6 seeds).
     * The flip share grows as sqrt(K): nine times the terms is three times the share. */
    if (out->has_same) out->same = lr_same_precision_budget(dt, out->kind == LR_STAGE_NORM ? 9 * reduction_len : reduction_len);
    return LR_OK;
}

int lr_op_attention_budget(lr_dtype dt, int64_t head_dim, int64_t keys, bool rounds_p, double x_range,
                           lr_op_criteria *out) {
    int64_t k = head_dim > keys ? head_dim : keys;
    int rc = lr_op_budget("attention", dt, k < 1 ? 1 : k, out);
    if (rc) return rc;
    if (head_dim < 1 || keys < 1 || !(x_range >= 0))
        return lr_fail(LR_E_INVAL, "op budget: attention: head_dim %lld, keys %lld, x_range %g",
                       (long long)head_dim, (long long)keys, x_range);
    if (out->has_same) out->same = lr_same_attention_budget(dt, head_dim, keys, rounds_p, x_range);
    return LR_OK;
}
