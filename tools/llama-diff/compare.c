/* compare.c: llama-diff compare A B: two llama-golden/1 dumps of the same inputs, A under
 * test against B, stage by stage in forward order, at the budgets of A's compute_dtype
 * unless --precision says otherwise. */
#include "diff.h"

#include <stdlib.h>
#include <string.h>

/* Position of a stage in the forward pass (lr_stage_order). A stage the table does not
 * know goes with its layer's output, or after every layer when it names no layer. */
static int64_t stage_rank(const char *name) {
    int64_t o = lr_stage_order(name), l;
    if (o >= 0) return o;
    if ((l = lr_stage_layer(name)) >= 0) return 1 + l * LR_LAYER_STAGE_COUNT + LR_LS_LAYER;
    return lr_stage_order(lr_model_stage_name(LR_MS_NORM)) - 1;
}

static const lr_fixture *sort_fx;
static int by_rank(const void *x, const void *y) {
    int64_t a = stage_rank(lr_fixture_stage_at(sort_fx, *(const size_t *)x)->name);
    int64_t b = stage_rank(lr_fixture_stage_at(sort_fx, *(const size_t *)y)->name);
    return a < b ? -1 : a > b;
}

static bool same_inputs(const lr_batch *x, const lr_batch *y) {
    if (x->num_tokens != y->num_tokens || x->num_seqs != y->num_seqs) return false;
    size_t n = (size_t)x->num_tokens * sizeof(int64_t);
    if (memcmp(x->input_ids, y->input_ids, n) || memcmp(x->positions, y->positions, n)) return false;
    if (!x->seq_lens != !y->seq_lens) return x->num_seqs == 1;
    return !x->seq_lens || !memcmp(x->seq_lens, y->seq_lens, (size_t)x->num_seqs * sizeof(int64_t));
}

/* The budget row of a dump: its compute_dtype (none: float64, the golden's; one this
 * tool does not know: the loosest row, bf16). */
static lr_dtype dtype_of_dump(const lr_fixture *fx) {
    const char *cd = lr_fixture_metadata(fx, "compute_dtype");
    lr_dtype d = LR_F64;
    if (cd && parse_precision_torch(cd, &d)) d = LR_BF16;
    return d;
}

int cmd_compare(const args *a) {
    if (a->npos != 2) return bad("compare: give two dumps: compare A.safetensors B.safetensors");
    const char *test_path = a->pos[0], *ref_path = a->pos[1];
    lr_fixture *t = NULL, *ref = NULL;
    size_t *idx = NULL;
    report r = {.command = "compare", .test_label = test_path, .ref_label = ref_path};
    int rc, status = 0;
    if ((rc = lr_fixture_open(test_path, &t)) || (rc = lr_fixture_open(ref_path, &ref))) {
        status = lib_fail(rc);
        goto out;
    }
    if (!same_inputs(lr_fixture_batch(t), lr_fixture_batch(ref))) {
        status = bad("%s: input_ids, positions or seq_lens differ from %s: the dumps are of different inputs",
                     test_path, ref_path);
        goto out;
    }
    r.precision = a->precision_given ? a->opt.precision : dtype_of_dump(t);
    size_t n = lr_fixture_stage_count(t);
    if (!(idx = malloc((n ? n : 1) * sizeof *idx))) {
        status = bad("out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    sort_fx = t;
    qsort(idx, n, sizeof *idx, by_rank);
    size_t common = 0;
    for (size_t i = 0; i < n; i++) {
        const lr_st_entry *x = lr_fixture_stage_at(t, idx[i]), *y = lr_fixture_stage(ref, x->name);
        if (!y) continue;
        if (x->t.shape[1] != y->t.shape[1]) {
            status = bad("%s: tensor \"%s\": %lld features, %lld in %s", test_path, x->name,
                         (long long)x->t.shape[1], (long long)y->t.shape[1], ref_path);
            goto out;
        }
        common++;
        if ((status = report_add(&r, x->name, &x->t, &y->t))) goto out;
    }
    if (common == 0) {
        status = bad("%s: no stage in common with %s", test_path, ref_path);
        goto out;
    }
    status = report_finish(a, &r, NULL);
out:
    free(idx);
    report_free(&r);
    lr_fixture_free(t);
    lr_fixture_free(ref);
    return status;
}
