/* kernels.c: llama-diff's kernel variants in a run: --plugin (load kernel plugins,
 * docs/adding-a-kernel.md) and --kernel FAMILY=NAME checked against the registry and the
 * run's precision before any device is opened. The listing of every variant is ops --list
 * (ops.c). Without the CUDA backend there is no registry: --plugin says so. */
#include "diff.h"

#include <stdio.h>
#include <string.h>

#ifdef LR_HAVE_CUDA
#include "gpu_ops.h"

/* The precision each side that takes --kernel runs at, into p (at most 2); the number. */
static int kernel_precisions(const args *a, lr_dtype *p) {
    int n = 0;
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
    if (a->nplugins && !np)
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

#else /* no CUDA backend: no registry of kernels */

int kernels_prepare(const args *a) {
    if (a->nplugins)
        return bad("--plugin: %s: this llama-diff is built without the CUDA backend, "
                   "which kernel plugins run on (configure with nvcc on the PATH, or --with-cuda=DIR)",
                   a->plugins[0]);
    return 0;
}

#endif
