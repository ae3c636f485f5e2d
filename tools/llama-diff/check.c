/* check.c: llama-diff check (and the default job): runs a backend on a golden fixture's
 * inputs, whole, layer by layer isolated (--isolate) or as a prefill and decode steps
 * (--decode K), and compares every stage the fixture holds. */
#include "diff.h"

#include <stdio.h>
#include <string.h>

int cmd_check(const args *a) {
    if (!a->model || !a->fixture) return bad("check: --model DIR and --fixture FILE are required");
    lr_checkpoint *ck = NULL;
    lr_fixture *fx = NULL;
    lr_recorder *rec = NULL;
    char test_label[512], ref_label[1024];
    report r = {.command = "check",
                .test_label = test_label,
                .ref_label = ref_label,
                .precision = a->opt.precision,
                .isolated = a->isolate,
                .isolation = a->isolate_ops ? LR_ISOLATE_OP : LR_ISOLATE_LAYER};
    int rc, status;
    if ((rc = lr_checkpoint_open(a->model, &ck)) || (rc = lr_fixture_open(a->fixture, &fx)) ||
        (rc = lr_fixture_check_config(fx, lr_checkpoint_config(ck))) || (rc = lr_recorder_create(&rec))) {
        status = lib_fail(rc);
        goto out;
    }
    r.isolated_from = fx;
    char decode_note[48] = "";
    if (a->decode)
        snprintf(decode_note, sizeof decode_note, ", last %d tokens decoded one by one", a->decode);
    snprintf(test_label, sizeof test_label, "%s on %s, backend %s, precision %s, tp %d%s%s", a->model,
             a->fixture, a->opt.backend, precision_name(a->opt.precision), a->opt.tp_size,
             a->isolate ? ", layers isolated" : "", decode_note);
    const char *cd = lr_fixture_metadata(fx, "compute_dtype"), *gen = lr_fixture_metadata(fx, "generator");
    snprintf(ref_label, sizeof ref_label, "%s (%s, %s)", a->fixture, cd ? cd : "?",
             gen ? gen : "unknown generator");
    json_t *decode_steps = NULL;
    run_stats st = {0};
    char mem_note[256];
    /* The golden is float64 arithmetic too: its own rounding counts at f64. */
    if ((status =
             attach_model(&r.model[0], ck, a->opt.precision, lr_fixture_batch(fx), fixture_source, fx)) ||
        (status = attach_model(&r.model[1], ck, LR_F64, lr_fixture_batch(fx), fixture_source, fx)))
        goto out;
    if (a->decode > 0)
        status = run_decode(a, ck, fx, rec, &decode_steps, &st);
    else
        status = run_model(a, ck, lr_fixture_batch(fx), rec, a->isolate ? fixture_source : NULL, fx, &st);
    if (status) goto out;
    snprintf(test_label + strlen(test_label), sizeof test_label - strlen(test_label), "%s",
             devices_note(st.devices, a->opt.tp_size));
    /* bf16 and fp16: also the same-precision verdict, against the emulated reference; run
     * first, since its emulated run's own error is a floor of the budgets. */
    json_t *same = NULL;
    bool same_pass = true;
    bool lowp = a->opt.precision == LR_BF16 || a->opt.precision == LR_F16;
    if (lowp && (status = same_precision(a, ck, lr_fixture_batch(fx), fixture_source, fx, rec, &same, &same_pass)))
        goto out;
    if (same) r.emulated = json_object_get(json_object_get(same, "factor"), "stages");
    /* In the order the backend reported, which is the order of the forward. */
    for (size_t i = 0; i < lr_recorder_count(rec); i++) {
        const lr_st_entry *gold = lr_fixture_stage(fx, lr_recorder_name(rec, i));
        if (!gold) continue; /* an optional stage the fixture does not hold */
        if ((status = report_add(&r, gold->name, lr_recorder_at(rec, i), &gold->t))) {
            json_decref(same);
            goto out;
        }
    }
    if (r.n != lr_fixture_stage_count(fx)) {
        status = bad("%s: %zu stages in the fixture but only %zu reported by the backend", a->fixture,
                     lr_fixture_stage_count(fx), r.n);
        json_decref(same);
        goto out;
    }
    if (decode_steps) decode_steps_judge(decode_steps, &r, !a->json);
    /* the whole command's peak: the emulated reference's run included */
    st.host_peak_after_run = lr_host_peak_rss();
    r.memory_note = memory_note(&st, a->opt.backend, mem_note, sizeof mem_note);
    json_t *extra =
        json_pack("{s:s, s:s, s:s, s:i, s:i, s:b}", "model", a->model, "fixture", a->fixture, "backend",
                  a->opt.backend, "tp", a->opt.tp_size, "devices", st.devices, "isolate", a->isolate);
    json_object_set_new(extra, "memory", memory_json(&st));
    if (decode_steps) json_object_set_new(extra, "decode", decode_steps);
    if (same) {
        json_object_set(extra, "same_precision", same);
        same_verdict(&r, same, same_pass);
    }
    status = report_finish(a, &r, extra);
    json_decref(extra);
    if (same && !a->json && status != EXIT_BAD) same_precision_print(same); /* after the table */
    json_decref(same);
out:
    report_free(&r);
    lr_recorder_free(rec);
    lr_fixture_free(fx);
    lr_checkpoint_close(ck);
    return status;
}
