/* kernels.c: llama-diff's kernel variants: --plugin (load kernel plugins, docs/adding-a-
 * kernel.md), --kernel FAMILY=NAME checked against the registry and the run's precision
 * before any device is opened, and the kernels command, which lists every variant (in-tree
 * and plugins') with the dtypes it takes and where it rounds. Without the CUDA backend
 * there is no registry: --plugin and kernels say so. */
#include "diff.h"

#include <stdio.h>
#include <string.h>

#ifdef LR_HAVE_CUDA
#include "gpu_ops.h"
#include "rounding.h"

/* The precision each side that takes --kernel runs at, into p (at most 2); the number. */
static int kernel_precisions(const args *a, lr_dtype *p) {
    int n = 0;
    if (is_cmd(a, "kernels")) {
        if (a->precision_given) p[n++] = a->opt.precision;
        return n;
    }
    if (!is_cmd(a, "backends")) {
        const lr_backend_info *b = lr_backend_find(a->opt.backend);
        if (b && b->kernel_variants) p[n++] = a->opt.precision;
        return n;
    }
    /* backends: "cuda:bf16,tp=2"; a spec backends.c refuses later is skipped here. */
    const char *specs[2] = {a->spec_a, a->spec_b};
    for (int i = 0; i < 2; i++) {
        char name[32], prec[16];
        const char *s = specs[i];
        size_t len = s ? strcspn(s, ":,") : 0;
        if (len == 0 || len >= sizeof name) continue;
        memcpy(name, s, len);
        name[len] = '\0';
        const lr_backend_info *b = lr_backend_find(name);
        if (!b || !b->kernel_variants) continue;
        lr_dtype d = b->precisions[0];
        if (s[len] == ':') {
            size_t plen = strcspn(s + len + 1, ",");
            if (plen >= sizeof prec) continue;
            memcpy(prec, s + len + 1, plen);
            prec[plen] = '\0';
            if (parse_precision(prec, &d)) continue;
        }
        p[n++] = d;
    }
    return n;
}

int kernels_prepare(const args *a) {
    lr_dtype prec[2];
    int np = kernel_precisions(a, prec);
    /* A plugin serves a run on the CUDA backend only (no option is accepted and ignored). */
    if (a->nplugins && !np && !is_cmd(a, "kernels"))
        return bad(is_cmd(a, "backends") ? "--plugin: needs a cuda side (--a or --b cuda:...)"
                                         : "--plugin: needs --backend cuda");
    for (int i = 0; i < a->nplugins; i++)
        if (lr_gpu_plugin_load(a->plugins[i]) != LR_OK) return bad("--plugin: %s", lr_last_error());
    if (!a->kernels[0]) return 0;
    char spec[sizeof a->kernels];
    snprintf(spec, sizeof spec, "%s", a->kernels);
    char *save = NULL;
    for (char *item = strtok_r(spec, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) return bad("--kernel: \"%s\" is not FAMILY=NAME", item);
        *eq = '\0';
        if (lr_gpu_variant_check(item, eq + 1) != LR_OK) return bad("--kernel: %s", lr_last_error());
        for (int i = 0; i < np; i++)
            if (lr_gpu_variant_check_dtype(item, eq + 1, prec[i]) != LR_OK)
                return bad("--kernel: %s (the run computes in %s)", lr_last_error(), precision_name(prec[i]));
    }
    return 0;
}

/* The variant --kernel picked for family (the last one named, as the backend takes it),
 * or NULL. */
static const char *picked(const args *a, const char *family, char *buf, size_t n) {
    size_t fl = strlen(family);
    const char *k = a->kernels, *found = NULL;
    while (*k) {
        size_t len = strcspn(k, ",");
        if (len > fl && strncmp(k, family, fl) == 0 && k[fl] == '=') {
            snprintf(buf, n, "%.*s", (int)(len - fl - 1), k + fl + 1);
            found = buf;
        }
        k += len + (k[len] == ',');
    }
    return found;
}

int cmd_kernels(const args *a) {
    size_t n = lr_gpu_variant_count();
    json_t *root =
        a->json ? json_pack("{s:s, s:[], s:[]}", "command", "kernels", "plugins", "variants") : NULL;
    for (int i = 0; root && i < a->nplugins; i++)
        json_array_append_new(json_object_get(root, "plugins"), json_string(a->plugins[i]));
    if (!a->json) printf("%-11s %-20s %-15s %-10s %s\n", "family", "variant", "dtypes", "rounding", "from");
    for (size_t i = 0; i < n; i++) {
        const lr_gpu_variant *v = lr_gpu_variant_at(i);
        char dt[32], pick[64], from[600];
        const char *sel = picked(a, v->family, pick, sizeof pick);
        bool chosen = sel ? strcmp(sel, v->name) == 0 : v->is_default;
        bool rounds = v->rounding & LR_KERNEL_ROUNDS_P;
        /* What the emulated reference does for it (the rounding map, which a plugin's
         * declaration joins when it loads): the same, or the verdict would misjudge it. */
        bool emulated = strcmp(v->family, "attention") == 0 && lr_attention_rounds_p(v->name, LR_BF16, 64, 2);
        lr_gpu_dtypes_name(v->dtypes, dt, sizeof dt);
        if (root) {
            json_t *d = json_array();
            if (v->dtypes & LR_KERNEL_F32) json_array_append_new(d, json_string("F32"));
            if (v->dtypes & LR_KERNEL_F16) json_array_append_new(d, json_string("F16"));
            if (v->dtypes & LR_KERNEL_BF16) json_array_append_new(d, json_string("BF16"));
            json_array_append_new(
                json_object_get(root, "variants"),
                json_pack("{s:s, s:s, s:s, s:b, s:o, s:b, s:b, s:o, s:o, s:b}", "family", v->family, "name",
                          v->name, "description", v->description, "default", v->is_default, "dtypes", d,
                          "rounds_p", rounds, "emulated_rounds_p", emulated, "plugin",
                          v->plugin ? json_string(v->plugin) : json_null(), "source",
                          v->source ? json_string(v->source) : json_null(), "selected", chosen));
            continue;
        }
        if (v->plugin)
            snprintf(from, sizeof from, "plugin %s (%s)", v->plugin, v->source);
        else
            snprintf(from, sizeof from, "in-tree");
        printf("%-11s %-20s %-15s %-10s %s%s\n", v->family, v->name, dt,
               rounds                                ? "P rounded"
               : strcmp(v->family, "attention") == 0 ? "P float32"
                                                     : "default",
               from, v->is_default ? ", default" : "");
        printf("%-11s   %s%s\n", "", v->description, sel && chosen ? "  <- --kernel" : "");
    }
    if (root) {
        json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(root);
    }
    return EXIT_AGREE;
}

#else /* no CUDA backend: no registry of kernels */

int kernels_prepare(const args *a) {
    if (a->nplugins)
        return bad("--plugin: %s: this llama-diff is built without the CUDA backend, "
                   "which kernel plugins run on (configure with nvcc on the PATH, or --with-cuda=DIR)",
                   a->plugins[0]);
    return 0;
}

int cmd_kernels(const args *a) {
    (void)a;
    return bad("kernels: this llama-diff is built without the CUDA backend: no kernel "
               "variants");
}

#endif
