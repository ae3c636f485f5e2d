/* same.c: check's same-precision verdict at bf16 and fp16 (docs/detection.md). The
 * backend under test and the emulated CPU reference at the same precision and tp are
 * both run with every op isolated (each op fed the golden's input to it), and held
 * together stage by stage within a budget for float32 accumulation order only
 * (lr_same_precision_budget). The verdict against the float64 golden stays as it is. */
#include "diff.h"

#include <stdio.h>
#include <string.h>

int same_precision(const args *a, const lr_checkpoint *ck, const lr_fixture *fx, json_t **out, bool *pass) {
    lr_recorder *test = NULL, *ref = NULL;
    args at = *a, ar = *a;
    at.isolate = ar.isolate = true;
    at.isolate_ops = ar.isolate_ops = true;
    ar.opt.backend = "cpu";
    ar.opt.kernels = NULL;
    ar.opt.num_devices = 0;
    ar.nfaults = 0; /* faults are the test side's */
    int rc, status;
    if ((rc = lr_recorder_create(&test)) || (rc = lr_recorder_create(&ref))) {
        status = lib_fail(rc);
        goto out;
    }
    if ((status = run_model(&at, ck, lr_fixture_batch(fx), test, fx, NULL)) ||
        (status = run_model(&ar, ck, lr_fixture_batch(fx), ref, fx, NULL)))
        goto out;
    const lr_batch *b = lr_fixture_batch(fx);
    lr_same_budget budget =
        lr_same_precision_budget(a->opt.precision, lr_same_reduction(lr_checkpoint_config(ck), b->num_tokens));
    json_t *stages = json_array();
    const char *first = NULL;
    size_t compared = 0, failed = 0;
    *pass = true;
    for (size_t i = 0; i < lr_recorder_count(test); i++) {
        const char *name = lr_recorder_name(test, i);
        const lr_tensor *r = lr_recorder_find(ref, name);
        if (!r) continue;
        lr_same_metrics m;
        if ((rc = lr_same_compare(lr_recorder_at(test, i), r, a->opt.precision, budget, &m))) {
            json_decref(stages);
            status = lib_fail(rc);
            goto out;
        }
        compared++;
        if (!m.pass) {
            failed++;
            if (!first) first = lr_recorder_name(test, i);
            *pass = false;
        }
        json_array_append_new(stages, json_pack("{s:s, s:f, s:f, s:f, s:I, s:[I,I], s:b}", "name", name, "rel_l2",
                                                m.rel_l2, "budget", m.budget,
                                                "max_ulps", m.max_ulps, "over", (json_int_t)m.over, "worst",
                                                (json_int_t)m.worst_token, (json_int_t)m.worst_feature, "pass",
                                                m.pass));
    }
    char label[96];
    snprintf(label, sizeof label, "cpu:%s (emulated), tp %d, ops isolated", precision_name(a->opt.precision),
             a->opt.tp_size);
    *out = json_pack("{s:s, s:{s:f, s:f, s:f}, s:I, s:I, s:s?, s:o}", "reference", label, "budget", "rel_l2",
                     budget.rel_l2, "ulps", budget.ulps, "floor", budget.floor, "compared", (json_int_t)compared,
                     "failed", (json_int_t)failed, "first_divergence", first, "stages", stages);
    status = 0;
out:
    lr_recorder_free(test);
    lr_recorder_free(ref);
    return status;
}

void same_precision_print(const json_t *same) {
    const json_t *b = json_object_get(same, "budget"), *stages = json_object_get(same, "stages");
    json_int_t compared = json_integer_value(json_object_get(same, "compared"));
    json_int_t failed = json_integer_value(json_object_get(same, "failed"));
    const char *first = json_string_value(json_object_get(same, "first_divergence"));
    double ulps = json_real_value(json_object_get(b, "ulps"));
    printf("\nsame precision, against %s: %lld of %lld stages within %.0f ulp per element and relative L2 %.2e "
           "(more for small stages)%s%s\n",
           json_string_value(json_object_get(same, "reference")), (long long)(compared - failed), (long long)compared,
           ulps, json_real_value(json_object_get(b, "rel_l2")), first ? "; first divergence at " : "",
           first ? first : "");
    size_t k;
    json_t *s;
    json_array_foreach(stages, k, s) {
        if (json_is_true(json_object_get(s, "pass"))) continue;
        const json_t *w = json_object_get(s, "worst");
        printf("  %-42s rel_l2 %.2e (budget %.2e), %lld elements over %.0f ulp, worst %.1f ulp at [%lld, %lld]\n",
               json_string_value(json_object_get(s, "name")), json_real_value(json_object_get(s, "rel_l2")),
               json_real_value(json_object_get(s, "budget")),
               (long long)json_integer_value(json_object_get(s, "over")), ulps,
               json_real_value(json_object_get(s, "max_ulps")), (long long)json_integer_value(json_array_get(w, 0)),
               (long long)json_integer_value(json_array_get(w, 1)));
    }
}
