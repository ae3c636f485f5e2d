/* backends.c: llama-diff's view of the library's backend table (lr_backend_info): which
 * --backend, --precision, --kernel and --devices a command line may ask for, and the
 * backends command, which runs two backends (or one backend two ways) on one input and
 * compares them stage by stage, B against A. What each backend takes comes from the
 * table alone. */
#include "diff.h"
#include "rounding.h"

#include <stdio.h>
#include <string.h>

/* Whether a backend takes what a message is about. */
typedef bool (*takes_fn)(const lr_backend_info *b, lr_dtype p);
static bool takes_anything(const lr_backend_info *b, lr_dtype p) {
    (void)b, (void)p;
    return true;
}
static bool takes_precision(const lr_backend_info *b, lr_dtype p) { return lr_backend_supports(b, p); }
static bool takes_kernels(const lr_backend_info *b, lr_dtype p) {
    (void)p;
    return b->kernel_variants;
}
static bool takes_devices(const lr_backend_info *b, lr_dtype p) {
    (void)p;
    return b->multi_device;
}
static bool takes_graphs(const lr_backend_info *b, lr_dtype p) {
    (void)p;
    return b->graphs;
}
static bool takes_threads(const lr_backend_info *b, lr_dtype p) {
    (void)p;
    return b->blas_threads;
}

/* Joins k words as a message lists them, "a", "a or b", "a, b or c" with last " or ",
 * or all with ", ". */
static const char *join_words(char *buf, size_t n, const char *const *w, size_t k, const char *last) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < k; i++) {
        int m = snprintf(buf + used, n - used, "%s%s", i == 0 ? "" : i + 1 == k ? last : ", ", w[i]);
        if (m < 0 || (size_t)m >= n - used) break;
        used += (size_t)m;
    }
    return buf;
}

/* The backends built in that take what `takes` asks, "cpu or cuda"; "" when none. */
static const char *backend_names(char *buf, size_t n, takes_fn takes, lr_dtype p) {
    const char *w[16];
    size_t k = 0;
    for (size_t i = 0; i < lr_backend_count() && k < 16; i++)
        if (takes(lr_backend_at(i), p)) w[k++] = lr_backend_at(i)->name;
    return join_words(buf, n, w, k, " or ");
}

/* A backend's precisions, "f64 or f32" (last " or ") or "f64, f32" (last ", "). */
static const char *precision_list(char *buf, size_t n, const lr_backend_info *b, const char *last) {
    const char *w[16];
    size_t k = 0;
    for (int i = 0; i < b->num_precisions && k < 16; i++)
        w[k++] = precision_name(b->precisions[i]);
    return join_words(buf, n, w, k, last);
}

/* The backend a --a/--b spec names ("cuda" of "cuda:bf16,tp=2"), or NULL. */
static const lr_backend_info *spec_backend(const char *spec) {
    char name[32];
    size_t len = spec ? strcspn(spec, ":,") : 0;
    if (len == 0 || len >= sizeof name) return NULL;
    memcpy(name, spec, len);
    name[len] = '\0';
    return lr_backend_find(name);
}

int check_backend(args *a) {
    char list[128], own[64];
    if (is_cmd(a, "backends")) {
        if (a->backend_given || a->precision_given)
            return bad("%s: backends takes each side's backend and precision in --a and --b "
                       "(BACKEND[:PRECISION])",
                       a->backend_given ? "--backend" : "--precision");
        return 0;
    }
    const lr_backend_info *b = lr_backend_find(a->opt.backend);
    if (!b)
        return bad("--backend: \"%s\" is not %s", a->opt.backend,
                   backend_names(list, sizeof list, takes_anything, 0));
    if (!a->precision_given) {
        a->opt.precision = b->precisions[0];
        return 0;
    }
    /* compare runs nothing: --precision only picks the budgets. */
    if (is_cmd(a, "compare") || lr_backend_supports(b, a->opt.precision)) return 0;
    const char *p = precision_name(a->opt.precision);
    if (!*backend_names(list, sizeof list, takes_precision, a->opt.precision))
        return bad("--precision: no backend computes in %s", p);
    return bad("--precision: %s needs --backend %s (%s computes in %s)", p, list, b->name,
               precision_list(own, sizeof own, b, " or "));
}

/* "--kernel: needs --backend cuda", or for backends "needs a cuda side (--a or --b
 * cuda:...)": opt asked of a run whose backends do not take it. */
static int needs(const args *a, const char *opt, takes_fn takes, const char *what) {
    char list[128];
    if (!*backend_names(list, sizeof list, takes, 0))
        return bad("%s: no backend takes %s", opt, what);
    if (!is_cmd(a, "backends")) return bad("%s: needs --backend %s", opt, list);
    const char *first = "";
    for (size_t i = 0; i < lr_backend_count() && !*first; i++)
        if (takes(lr_backend_at(i), 0)) first = lr_backend_at(i)->name;
    return bad("%s: needs a %s side (--a or --b %s:...)", opt, list, first);
}

int check_backend_settings(const args *a) {
    /* backends: --kernel and --devices serve whichever side takes them. */
    const lr_backend_info *x =
        is_cmd(a, "backends") ? spec_backend(a->spec_a) : lr_backend_find(a->opt.backend);
    const lr_backend_info *y = is_cmd(a, "backends") ? spec_backend(a->spec_b) : NULL;
    if (a->opt.kernels && !(x && x->kernel_variants) && !(y && y->kernel_variants))
        return needs(a, "--kernel", takes_kernels, "kernel variants");
    if (a->opt.num_devices && !(x && x->multi_device) && !(y && y->multi_device))
        return needs(a, "--devices", takes_devices, "a device count");
    if (a->opt.cuda_graphs && !(x && x->graphs) && !(y && y->graphs))
        return needs(a, "--cuda-graphs", takes_graphs, "CUDA graphs");
    /* check at bf16 and fp16 also runs the emulated CPU reference (the same-precision
     * verdict, with --decode too), which takes the threads whatever --backend is. */
    bool lowp = a->opt.precision == LR_BF16 || a->opt.precision == LR_F16;
    bool same = (!a->cmd || is_cmd(a, "check")) && lowp;
    const lr_backend_info *cpu = lr_backend_find("cpu");
    if (a->threads_given && !(x && x->blas_threads) && !(y && y->blas_threads) && !(same && cpu && cpu->blas_threads))
        return needs(a, "--threads", takes_threads, "BLAS threads");
    /* the host's weight cache is the CPU reference's, which takes the threads too */
    if (a->opt.memory_budget && !(x && x->blas_threads) && !(y && y->blas_threads) &&
        !(same && cpu && cpu->blas_threads))
        return needs(a, "--memory", takes_threads, "a host memory budget");
    return 0;
}

/* "cpu:f64", "cuda:bf16", "cpu", "cuda:bf16,tp=1,devices=1" -> options. Without a
 * precision, the backend's default (its first). tp= and devices= override --tp and
 * --devices for this side alone (tp N against tp 1, or NCCL against the single-GPU tp
 * mode). */
static int parse_backend_spec(const char *spec, const char *opt, const args *a, lr_options *o) {
    *o = a->opt;
    char head[64], name[16];
    size_t hlen = strcspn(spec, ",");
    if (hlen >= sizeof head)
        return bad("%s: \"%s\" is not BACKEND[:PRECISION][,tp=N][,devices=N]", opt, spec);
    memcpy(head, spec, hlen);
    head[hlen] = '\0';
    const char *colon = strchr(head, ':');
    size_t len = colon ? (size_t)(colon - head) : strlen(head);
    if (len == 0 || len >= sizeof name)
        return bad("%s: \"%s\" is not BACKEND[:PRECISION][,tp=N][,devices=N]", opt, spec);
    memcpy(name, head, len);
    name[len] = '\0';
    char list[256];
    const lr_backend_info *b = lr_backend_find(name);
    if (!b)
        return bad("%s: backend \"%s\" is not %s", opt, name,
                   backend_names(list, sizeof list, takes_anything, 0));
    o->backend = b->name;
    o->precision = b->precisions[0];
    if (colon && (parse_precision(colon + 1, &o->precision) || !lr_backend_supports(b, o->precision))) {
        /* every backend's precisions: "cpu: f64, f32; cuda: bf16, fp16, f32" */
        size_t used = 0;
        list[0] = '\0';
        for (size_t i = 0; i < lr_backend_count(); i++) {
            char own[64];
            const lr_backend_info *x = lr_backend_at(i);
            int m = snprintf(list + used, sizeof list - used, "%s%s: %s", i ? "; " : "", x->name,
                             precision_list(own, sizeof own, x, ", "));
            if (m < 0 || (size_t)m >= sizeof list - used) break;
            used += (size_t)m;
        }
        return bad("%s: precision \"%s\" is not one %s computes in (%s)", opt, colon + 1, b->name, list);
    }
    if (!b->kernel_variants) {
        /* the emulated side rounds P as the other side's attention variant does */
        if (b->rounding_profiles) o->attention_like = lr_attention_variant_in(o->kernels);
        o->kernels = NULL;
    }
    if (!b->multi_device) o->num_devices = 0;
    if (!b->graphs) o->cuda_graphs = false;
    /* ,key=value settings after the precision */
    for (const char *q = spec + hlen; *q == ',';) {
        q++;
        size_t n = strcspn(q, ",");
        char item[64], what[96];
        if (n == 0 || n >= sizeof item)
            return bad("%s: \"%s\": empty or overlong setting after ','", opt, spec);
        memcpy(item, q, n);
        item[n] = '\0';
        q += n;
        char *eq = strchr(item, '=');
        if (!eq) return bad("%s: \"%s\": setting \"%s\" is not KEY=VALUE (tp=N, devices=N)", opt, spec, item);
        *eq = '\0';
        snprintf(what, sizeof what, "%s %s=", opt, item);
        if (strcmp(item, "tp") == 0) {
            if (parse_int(eq + 1, what, 1, 4096, &o->tp_size)) return EXIT_BAD;
        } else if (strcmp(item, "devices") == 0) {
            if (!b->multi_device)
                return bad("%s: devices= is for the %s backend", opt,
                           backend_names(list, sizeof list, takes_devices, 0));
            if (parse_int(eq + 1, what, 1, 64, &o->num_devices)) return EXIT_BAD;
        } else
            return bad("%s: \"%s\": unknown setting \"%s\" (tp=N, devices=N)", opt, spec, item);
    }
    return 0;
}

/* Both sides on one input: A the reference, B under test at B's budgets. */
static int run_backends(const args *a, const lr_batch *b, const char *source) {
    lr_options oa, ob;
    int status;
    if ((status = parse_backend_spec(a->spec_a, "--a", a, &oa)) ||
        (status = parse_backend_spec(a->spec_b, "--b", a, &ob)))
        return status;
    lr_checkpoint *ck = NULL;
    lr_recorder *ra = NULL, *rb = NULL;
    json_t *missing = NULL, *same = NULL, *extra = NULL; /* side a's stages side b lacks; the same-precision verdict */
    bool same_pass = true;
    char la[256], lb[256];
    report r = {.command = "backends", .test_label = lb, .ref_label = la, .precision = ob.precision};
    int rc = lr_checkpoint_open(a->model, &ck);
    if (rc == LR_OK) rc = lr_recorder_create(&ra);
    if (rc == LR_OK) rc = lr_recorder_create(&rb);
    if (rc) {
        status = lib_fail(rc);
        goto out;
    }
    snprintf(la, sizeof la, "%s %s tp %d on %s", oa.backend, precision_name(oa.precision), oa.tp_size,
             source);
    snprintf(lb, sizeof lb, "%s %s tp %d on %s", ob.backend, precision_name(ob.precision), ob.tp_size,
             source);
    args aa = *a, ab = *a;
    aa.nfaults = 0; /* --inject: the side under test only */
    aa.opt = oa;
    ab.opt = ob;
    run_stats sa = {0}, sb = {0};
    if ((status = run_model(&aa, ck, b, ra, NULL, NULL, &sa)) ||
        (status = run_model(&ab, ck, b, rb, NULL, NULL, &sb)))
        goto out;
    snprintf(la + strlen(la), sizeof la - strlen(la), "%s", devices_note(sa.devices, oa.tp_size));
    snprintf(lb + strlen(lb), sizeof lb - strlen(lb), "%s", devices_note(sb.devices, ob.tp_size));
    char mem_note[256];
    if ((status = attach_model(&r.model[0], ck, ob.precision, b, recorder_source, ra)) ||
        (status = attach_model(&r.model[1], ck, oa.precision, b, recorder_source, ra)))
        goto out;
    /* Side b at bf16/fp16 against a float64 or float32 side a: also the same-precision
     * verdict, with side a's stages as the reference (against a side a in bf16 or fp16 the
     * comparison is one of two low-precision runs already); first, since its emulated run's
     * own error is a floor of the budgets. */
    if ((ob.precision == LR_BF16 || ob.precision == LR_F16) && (oa.precision == LR_F64 || oa.precision == LR_F32)) {
        if ((status = same_precision(&ab, ck, b, recorder_source, ra, rb, &same, &same_pass))) goto out;
        r.emulated = json_object_get(json_object_get(same, "factor"), "stages");
    }
    for (size_t i = 0; i < lr_recorder_count(rb); i++) {
        const lr_tensor *x = lr_recorder_at(rb, i), *y = lr_recorder_find(ra, lr_recorder_name(rb, i));
        if (y && (status = report_add(&r, lr_recorder_name(rb, i), x, y))) goto out;
    }
    /* Coverage: a stage side a reported that side b did not is a divergence, listed. */
    missing = json_array();
    for (size_t i = 0; i < lr_recorder_count(ra); i++)
        if (!lr_recorder_find(rb, lr_recorder_name(ra, i)))
            json_array_append_new(missing, json_string(lr_recorder_name(ra, i)));
    r.missing = json_array_size(missing);
    r.missing_first = r.missing ? json_string_value(json_array_get(missing, 0)) : NULL;
    if (r.missing && !a->json) {
        fprintf(stderr, "llama-diff: side b did not report %zu of side a's %zu stages:", r.missing,
                lr_recorder_count(ra));
        for (size_t i = 0; i < r.missing && i < 8; i++)
            fprintf(stderr, " %s", json_string_value(json_array_get(missing, i)));
        fputs(r.missing > 8 ? " ...\n" : "\n", stderr);
    }
    if (same) {
        extra = json_pack("{s:O}", "same_precision", same);
        same_verdict(&r, same, same_pass);
    }
    if (!extra) extra = json_object();
    /* The process's peak covers both sides and the emulated reference; each side's device
     * memory is its own. */
    sa.host_peak_after_run = sb.host_peak_after_run = lr_host_peak_rss();
    r.memory_note = memory_note(&sb, ob.backend, mem_note, sizeof mem_note);
    json_object_set_new(extra, "memory",
                        json_pack("{s:o, s:o}", "a", memory_json(&sa), "b", memory_json(&sb)));
    json_object_set_new(extra, "coverage",
                        json_pack("{s:I, s:I, s:O}", "compared", (json_int_t)(lr_recorder_count(ra) - r.missing),
                                  "reference", (json_int_t)lr_recorder_count(ra), "missing", missing));
    status = report_finish(a, &r, extra);
    json_decref(extra);
    if (same && !a->json && status != EXIT_BAD) same_precision_print(same);
out:
    json_decref(same);
    json_decref(missing);
    report_free(&r);
    lr_recorder_free(ra);
    lr_recorder_free(rb);
    lr_checkpoint_close(ck);
    return status;
}

int cmd_backends(const args *a) {
    if (!a->model || !a->spec_a || !a->spec_b)
        return bad("backends: --model DIR, --a BACKEND[:P] and --b BACKEND[:P] are required");
    input in;
    int status = input_open(a, &in);
    if (!status) status = run_backends(a, &in.b, a->fixture ? a->fixture : "--tokens");
    input_close(&in);
    return status;
}
