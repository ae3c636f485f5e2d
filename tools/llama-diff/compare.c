/* compare.c: llama-diff compare DUMP... GOLDEN: a dump under test (llama-golden/1; its
 * stages under HF, vLLM or llama.cpp names, names.c; one file per tensor-parallel rank for
 * vLLM) against a golden of the same inputs, stage by stage in forward order, at the
 * budgets of the dump's compute_dtype unless --precision says otherwise; with --model,
 * budgets scaled by that model's error model as check's are. */
#include "diff.h"
#include "rounding.h"

#include <fnmatch.h>
#include <stdio.h>
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
static const mapped_dump *sort_dump;
static int by_rank_mapped(const void *x, const void *y) {
    int64_t a = stage_rank(sort_dump->s[*(const size_t *)x].name);
    int64_t b = stage_rank(sort_dump->s[*(const size_t *)y].name);
    return a < b ? -1 : a > b;
}

static bool same_inputs(const lr_batch *x, const lr_batch *y) {
    if (x->num_tokens != y->num_tokens || x->num_seqs != y->num_seqs) return false;
    size_t n = (size_t)x->num_tokens * sizeof(int64_t);
    if (memcmp(x->input_ids, y->input_ids, n) || memcmp(x->positions, y->positions, n)) return false;
    if (!x->seq_lens != !y->seq_lens) return x->num_seqs == 1;
    return !x->seq_lens || !memcmp(x->seq_lens, y->seq_lens, (size_t)x->num_seqs * sizeof(int64_t));
}

/* The budget row of a dump: its compute_dtype (one this tool does not know: the loosest
 * row, bf16); without one, the dtype its stages are stored in (an engine's own dump). */
static lr_dtype dtype_of_dump(const lr_fixture *fx, const lr_tensor *first) {
    const char *cd = lr_fixture_metadata(fx, "compute_dtype");
    lr_dtype d = LR_F64;
    if (cd) {
        if (parse_precision_torch(cd, &d)) d = LR_BF16;
    } else if (first) {
        d = first->dtype;
    }
    return d;
}

static const char *nearest(const lr_fixture *ref, const char *name) {
    const char *best = NULL;
    size_t bd = (size_t)-1;
    for (size_t i = 0; i < lr_fixture_stage_count(ref); i++) {
        const char *g = lr_fixture_stage_at(ref, i)->name;
        size_t d = edit_distance(name, g);
        if (d < bd) bd = d, best = g;
    }
    return best;
}

static bool selected(const args *a, const char *name) { return !a->stages || fnmatch(a->stages, name, 0) == 0; }

/* Coverage is part of the verdict: every golden stage (of --stages, when given) must be in
 * the dump under test, unless the engine's names cannot hold it (listed, with why). What
 * the dump holds beyond the golden: stages the golden lacks (listed in JSON), names in no
 * stage table with the nearest golden name, and engine names skipped by the map. */
static json_t *coverage(const args *a, const mapped_dump *t, const lr_fixture *ref, size_t compared,
                        size_t *missing) {
    json_t *miss = json_array(), *extra = json_array(), *beyond = json_array(), *absent = json_array();
    size_t golden = 0, n = lr_fixture_stage_count(ref);
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order || !miss || !extra || !beyond || !absent) {
        json_decref(miss), json_decref(extra), json_decref(beyond), json_decref(absent);
        free(order);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) order[i] = i;
    sort_fx = ref;
    qsort(order, n, sizeof *order, by_rank); /* missing stages in forward order */
    for (size_t i = 0; i < n; i++) {
        const char *g = lr_fixture_stage_at(ref, order[i])->name, *why;
        if (!selected(a, g) || dump_find(t, g)) {
            golden += selected(a, g);
            continue;
        }
        if ((why = dump_not_produced(t, g)))
            json_array_append_new(absent, json_pack("{s:s, s:s}", "name", g, "reason", why));
        else
            golden++, json_array_append_new(miss, json_string(g));
    }
    for (size_t i = 0; i < t->n; i++) {
        const char *x = t->s[i].name;
        if (lr_fixture_stage(ref, x) || !selected(a, x)) continue;
        if (lr_stage_order(x) >= 0)
            json_array_append_new(beyond, json_string(x));
        else
            json_array_append_new(extra, json_pack("{s:s, s:s?}", "name", x, "nearest", nearest(ref, x)));
    }
    size_t k;
    json_t *v;
    json_array_foreach(t->unmapped, k, v) {
        const char *x = json_string_value(json_object_get(v, "name"));
        if (!selected(a, x)) continue;
        json_t *o = json_pack("{s:s, s:s?}", "name", x, "nearest", nearest(ref, x));
        json_object_set(o, "nearest_in_names", json_object_get(v, "nearest_in_names"));
        json_array_append_new(extra, o);
    }
    free(order);
    *missing = json_array_size(miss);
    return json_pack("{s:I, s:I, s:s?, s:s, s:o, s:o, s:o, s:O, s:o}", "compared", (json_int_t)compared, "golden",
                     (json_int_t)golden, "stages", a->stages, "names", t->names, "missing", miss, "unmatched", extra,
                     "not_in_names", absent, "skipped", t->skipped, "not_in_golden", beyond);
}

static void print_coverage(const json_t *cov) {
    json_int_t compared = json_integer_value(json_object_get(cov, "compared"));
    json_int_t golden = json_integer_value(json_object_get(cov, "golden"));
    const char *pattern = json_string_value(json_object_get(cov, "stages"));
    const json_t *miss = json_object_get(cov, "missing"), *extra = json_object_get(cov, "unmatched");
    const json_t *absent = json_object_get(cov, "not_in_names"), *skipped = json_object_get(cov, "skipped");
    const json_t *beyond = json_object_get(cov, "not_in_golden");
    const char *names = json_string_value(json_object_get(cov, "names"));
    printf("coverage: %lld of %lld golden stages compared%s%s%s\n", (long long)compared, (long long)golden,
           pattern ? " (narrowed by --stages " : "", pattern ? pattern : "", pattern ? ")" : "");
    size_t k;
    json_t *v;
    if (json_array_size(absent)) {
        printf("golden stages %s names cannot hold (%zu, not required):\n", names, json_array_size(absent));
        json_array_foreach(absent, k, v) printf("  %s: %s\n", json_string_value(json_object_get(v, "name")),
                                                json_string_value(json_object_get(v, "reason")));
    }
    if (json_array_size(skipped)) {
        printf("skipped: %s names that equal no golden stage (%zu):\n", names, json_array_size(skipped));
        json_array_foreach(skipped, k, v) printf("  %s: %s\n", json_string_value(json_object_get(v, "name")),
                                                 json_string_value(json_object_get(v, "reason")));
    }
    if (json_array_size(beyond))
        printf("not compared: %zu stages the golden does not hold (it holds the sub-stages of some layers only)\n",
               json_array_size(beyond));
    if (json_array_size(miss)) {
        printf("missing from the dump under test (%zu): the run fails\n", json_array_size(miss));
        json_array_foreach(miss, k, v) printf("  %s\n", json_string_value(v));
    }
    if (json_array_size(extra)) {
        printf("in the dump but in no golden stage (%zu):\n", json_array_size(extra));
        json_array_foreach(extra, k, v) {
            const char *near = json_string_value(json_object_get(v, "nearest"));
            const char *own = json_string_value(json_object_get(v, "nearest_in_names"));
            if (own) /* a name under an engine's map: its nearest name there, then the golden's */
                printf("  %s (did you mean %s? nearest golden stage: %s)\n",
                       json_string_value(json_object_get(v, "name")), own, near ? near : "none");
            else
                printf("  %s%s%s%s\n", json_string_value(json_object_get(v, "name")), near ? " (did you mean " : "",
                       near ? near : "", near ? "?)" : "");
        }
    }
}

/* The mapped dump as a stage source (its HF names). */
static const lr_tensor *dump_source(void *user, const char *stage) {
    const ld_stage *x = dump_find(user, stage);
    return x ? &x->t : NULL;
}

/* At bf16/fp16 with a model: the same-precision verdict of the dump (same.c), every op of
 * the emulated reference fed the dump's own input to it. */
static int dump_same_precision(const args *a, const lr_checkpoint *ck, mapped_dump *t, lr_fixture *ref,
                               lr_dtype p, const char *declared_by, json_t **same, bool *pass) {
    lr_recorder *rec;
    int rc = lr_recorder_create(&rec);
    if (rc) return lib_fail(rc);
    lr_observer o = lr_recorder_observer(rec);
    for (size_t i = 0; i < t->n; i++)
        o.on_stage(o.user, t->s[i].name, &t->s[i].t);
    int status = (rc = lr_recorder_status(rec))
                     ? lib_fail(rc)
                     : same_precision_of_dump(a, ck, lr_fixture_batch(ref), p, dump_source, t, rec,
                                              fixture_source, ref, declared_by, same, pass);
    lr_recorder_free(rec);
    return status;
}

int cmd_compare(const args *a) {
    if (a->npos < 2)
        return bad("compare: give the dump under test and the golden: compare DUMP.safetensors GOLDEN.safetensors "
                   "(a tensor-parallel vLLM run: one dump per rank, then the golden)");
    int ntest = a->npos - 1;
    const char *ref_path = a->pos[ntest];
    lr_checkpoint *ck = NULL;
    lr_fixture *ref = NULL;
    mapped_dump t = {0};
    size_t *idx = NULL;
    char test_label[1024];
    report r = {.command = "compare", .test_label = test_label, .ref_label = ref_path};
    json_t *same = NULL; /* the same-precision verdict (bf16/fp16 with --model) */
    bool same_pass = true;
    int rc, status = 0;
    size_t used = 0;
    for (int i = 0; i < ntest && used < sizeof test_label; i++)
        used += (size_t)snprintf(test_label + used, sizeof test_label - used, "%s%s", i ? ", " : "", a->pos[i]);
    if (a->names && strcmp(a->names, "hf") != 0 && used < sizeof test_label)
        snprintf(test_label + used, sizeof test_label - used, " (%s names)", a->names);
    if ((a->model && (rc = lr_checkpoint_open(a->model, &ck))) || (rc = lr_fixture_open(ref_path, &ref)) ||
        (ck && (rc = lr_fixture_check_config(ref, lr_checkpoint_config(ck))))) {
        status = lib_fail(rc);
        goto out;
    }
    if ((status = dump_open(a, a->pos, ntest, ck ? lr_checkpoint_config(ck) : NULL, &t))) goto out;
    if (!same_inputs(lr_fixture_batch(t.fx[0]), lr_fixture_batch(ref))) {
        status = bad("%s: input_ids, positions or seq_lens differ from %s: the dumps are of different inputs",
                     t.path[0], ref_path);
        goto out;
    }
    r.precision = a->precision_given ? a->opt.precision : dtype_of_dump(t.fx[0], t.n ? &t.s[0].t : NULL);
    /* With the model, budgets scale with the error model's prediction for this model and
     * these inputs, as check's do; the golden's own rounding counts at its precision. */
    if (ck && ((status = attach_model(&r.model[0], ck, r.precision, lr_fixture_batch(ref), fixture_source, ref)) ||
               (status = attach_model(&r.model[1], ck, dtype_of_dump(ref, NULL), lr_fixture_batch(ref),
                                      fixture_source, ref))))
        goto out;
    r.budget_note = ck ? "scaled by the error model of --model (docs/error-model.md)"
                       : "unscaled: no --model, so the table's rows as they are (give --model to scale them to the "
                         "model, as check does)";
    /* The same-precision verdict holds the dump to what an engine computing in bf16/fp16
     * computes, so only a dump that says so (its compute_dtype, or --precision) gets it: a
     * BF16 dump of a float32 computation differs from one by its inputs' rounding. First,
     * since its emulated run's own error is a floor of the budgets. */
    bool lowp = r.precision == LR_BF16 || r.precision == LR_F16;
    lr_dtype said;
    const char *cd = lr_fixture_metadata(t.fx[0], "compute_dtype");
    bool computed_in = a->precision_given || (cd && !parse_precision_torch(cd, &said) && said == r.precision);
    /* Where the engine rounds: --rounding, else the dump's `rounding` metadata, else nobody
     * said (the rounding map, each op allowed one rounding more). */
    args as = *a;
    const char *declared_by = a->rounding ? "--rounding" : NULL,
               *md = lr_fixture_metadata(t.fx[0], "rounding");
    if (a->rounding && !ck) {
        status = bad("--rounding: compare uses it only with --model (for the same-precision verdict)");
        goto out;
    }
    if (a->rounding && !lowp) {
        status = bad("--rounding: the same-precision verdict is for a bf16/fp16 dump; %s is judged at %s",
                     t.path[0], precision_name(r.precision));
        goto out;
    }
    if (!a->rounding && md && ck && lowp && computed_in) {
        lr_rounding unused;
        if (lr_rounding_find(md, &unused)) {
            status =
                bad("%s: metadata rounding \"%s\" is no rounding profile (%s); --rounding NAME overrides it",
                    t.path[0], md, lr_rounding_names());
            goto out;
        }
        as.rounding = md;
        declared_by = "metadata";
    }
    as.opt.rounding = as.rounding;
    if (ck && lowp && computed_in &&
        (status = dump_same_precision(&as, ck, &t, ref, r.precision, declared_by, &same, &same_pass)))
        goto out;
    if (same) r.emulated = json_object_get(json_object_get(same, "factor"), "stages");
    size_t n = t.n;
    if (!(idx = malloc((n ? n : 1) * sizeof *idx))) {
        status = bad("out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    sort_dump = &t;
    qsort(idx, n, sizeof *idx, by_rank_mapped);
    size_t common = 0;
    for (size_t i = 0; i < n; i++) {
        const ld_stage *x = &t.s[idx[i]];
        const lr_st_entry *y = lr_fixture_stage(ref, x->name);
        if (!y || !selected(a, x->name)) continue;
        if (x->t.shape[1] != y->t.shape[1]) {
            status = bad("%s: tensor \"%s\"%s%s%s: %lld features, %lld in %s", t.path[0], x->from,
                         strcmp(x->from, x->name) ? " (" : "", strcmp(x->from, x->name) ? x->name : "",
                         strcmp(x->from, x->name) ? ")" : "", (long long)x->t.shape[1], (long long)y->t.shape[1],
                         ref_path);
            goto out;
        }
        common++;
        if ((status = report_add(&r, x->name, &x->t, &y->t))) goto out;
    }
    if (common == 0) {
        status = bad("%s: no stage in common with %s%s%s%s%s", t.path[0], ref_path, a->stages ? " matching " : "",
                     a->stages ? a->stages : "", a->names ? " under --names " : "", a->names ? a->names : "");
        goto out;
    }
    json_t *cov = coverage(a, &t, ref, common, &r.missing), *extra;
    if (!cov || !(extra = json_pack("{s:o, s:s?, s:b}", "coverage", cov, "model", a->model, "budgets_scaled",
                                    ck != NULL))) {
        status = bad("out of memory");
        goto out;
    }
    if (same) {
        json_object_set(extra, "same_precision", same);
        same_verdict(&r, same, same_pass);
    }
    r.missing_first = json_string_value(json_array_get(json_object_get(cov, "missing"), 0));
    status = report_finish(a, &r, extra);
    if (!a->json && status != EXIT_BAD) {
        print_coverage(cov);
        if (same) same_precision_print(same);
        else if (ck && lowp)
            printf("\nsame precision: not run: %s does not say it computed in %s (compute_dtype, or --precision)\n",
                   t.path[0], precision_name(r.precision));
    }
    json_decref(extra);
out:
    json_decref(same);
    free(idx);
    report_free(&r);
    dump_close(&t);
    lr_fixture_free(ref);
    lr_checkpoint_close(ck);
    return status;
}
