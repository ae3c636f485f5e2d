/* fault.c: fault injection on the test side. A fault names a stage and perturbs the
 * output of the op that computes it, in place, so that everything downstream sees it;
 * the composer (layer.c) applies it for every backend through the same multiplier,
 * lr_fault_factor, so a fault means the same thing on the CPU and on the GPU. It is how
 * the suite measures what it catches (docs/detection.md). */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"scale", "element", "noise"};

const char *lr_fault_kind_name(lr_fault_kind k) {
    return (unsigned)k < sizeof kind_names / sizeof kind_names[0] ? kind_names[k] : "unknown";
}

int lr_fault_parse(const char *spec, lr_fault *out) {
    memset(out, 0, sizeof *out);
    const char *eq = spec ? strrchr(spec, '=') : NULL;
    if (!eq || eq == spec)
        return lr_fail(LR_E_INVAL, "fault \"%s\": not STAGE=KIND:EPS[:SEED] (kinds: scale, element, noise)",
                       spec ? spec : "");
    size_t n = (size_t)(eq - spec);
    if (n >= sizeof out->stage) return lr_fail(LR_E_INVAL, "fault \"%s\": the stage name is too long", spec);
    memcpy(out->stage, spec, n);
    out->stage[n] = '\0';
    const char *kind = eq + 1, *colon = strchr(kind, ':');
    if (!colon) return lr_fail(LR_E_INVAL, "fault \"%s\": no :EPS after the kind", spec);
    int k = -1;
    for (int i = 0; i < 3; i++)
        if (strlen(kind_names[i]) == (size_t)(colon - kind) && strncmp(kind, kind_names[i], (size_t)(colon - kind)) == 0)
            k = i;
    if (k < 0)
        return lr_fail(LR_E_INVAL, "fault \"%s\": kind \"%.*s\" is not scale, element or noise", spec,
                       (int)(colon - kind), kind);
    out->kind = (lr_fault_kind)k;
    char *end;
    errno = 0;
    out->eps = strtod(colon + 1, &end);
    if (end == colon + 1 || errno || !isfinite(out->eps) || (*end && *end != ':'))
        return lr_fail(LR_E_INVAL, "fault \"%s\": EPS \"%s\" is not a finite number", spec, colon + 1);
    if (out->kind == LR_FAULT_NOISE && out->eps < 0)
        return lr_fail(LR_E_INVAL, "fault \"%s\": noise of RMS %g (must be at least 0)", spec, out->eps);
    if (*end == ':') {
        const char *s = end + 1;
        errno = 0;
        unsigned long long seed = strtoull(s, &end, 10);
        if (end == s || *end || errno || *s == '-')
            return lr_fail(LR_E_INVAL, "fault \"%s\": SEED \"%s\" is not a non-negative integer", spec, s);
        out->seed = (uint64_t)seed;
    }
    return LR_OK;
}

int lr_fault_check(const lr_fault *f, const lr_config *cfg) {
    int64_t order = lr_stage_order(f->stage);
    if (order < 0)
        return lr_fail(LR_E_INVAL, "fault at \"%s\": no such stage (model.embed_tokens, model.layers.N.<stage>, "
                                   "model.norm)",
                       f->stage);
    if (order == lr_stage_order(lr_model_stage_name(LR_MS_LM_HEAD)))
        return lr_fail(LR_E_INVAL, "fault at \"%s\": the logits are not a forward stage; inject at model.norm or before",
                       f->stage);
    if (order > 0 && order != lr_stage_order(lr_model_stage_name(LR_MS_NORM))) {
        int64_t l = (order - 1) / LR_LAYER_STAGE_COUNT, s = (order - 1) % LR_LAYER_STAGE_COUNT;
        if (l >= cfg->num_hidden_layers)
            return lr_fail(LR_E_INVAL, "fault at \"%s\": the model has %lld layers", f->stage,
                           (long long)cfg->num_hidden_layers);
        if (s == LR_LS_LAYER)
            return lr_fail(LR_E_INVAL, "fault at \"%s\": that stage is the residual stream as observed (hidden + "
                                       "residual), no op's output; inject at %s.mlp",
                           f->stage, f->stage);
        if (s == LR_LS_ACT_FN)
            return lr_fail(LR_E_INVAL, "fault at \"%s\": silu(gate) is computed for observers only; inject at the "
                                       "gate_proj, up_proj or down_proj.input stage",
                           f->stage);
    }
    return LR_OK;
}

/* splitmix64: a well-mixed 64-bit hash of (seed, token, feature). */
static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

double lr_fault_factor(const lr_fault *f, int64_t token, int64_t feature, int64_t width) {
    switch (f->kind) {
    case LR_FAULT_SCALE: return 1 + f->eps;
    case LR_FAULT_ELEMENT: return feature == width - 1 ? 1 + f->eps : 1;
    case LR_FAULT_NOISE: {
        /* u uniform on [-sqrt 3, sqrt 3): mean 0, RMS 1 */
        uint64_t h = mix(mix(mix(f->seed) ^ (uint64_t)token) ^ (uint64_t)feature);
        double u = ((double)(h >> 11) * 0x1p-53 * 2 - 1) * sqrt(3.0);
        return 1 + f->eps * u;
    }
    }
    return 1;
}

double lr_fault_apply(const lr_fault *f, double x, int64_t token, int64_t feature, int64_t width, lr_dtype storage) {
    double k = lr_fault_factor(f, token, feature, width);
    if (k == 1) return x;
    uint64_t h = mix(mix(mix(f->seed ^ 0x5bd1e9955bd1e995ull) ^ (uint64_t)token) ^ (uint64_t)feature);
    double dither = (double)(h >> 11) * 0x1p-53 - 0.5; /* in (-1/2, 1/2) */
    return (x + dither * lr_ulp(storage, x)) * k;
}
