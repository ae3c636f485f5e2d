/* fault.c: fault injection on the test side. A fault names a stage and perturbs the
 * output of the op that computes it, in place, so that everything downstream sees it;
 * the composer (layer.c) applies it for every backend through the same multiplier,
 * lr_fault_factor, so a fault means the same thing on the CPU and on the GPU. A
 * structural fault (theta, rms_eps, mask, stale_kv, swap_heads) changes how the op
 * computes instead; what it changes is defined here once (lr_fault_rms_eps,
 * lr_fault_inv_freq, lr_causal_keys, lr_stale_kv_source), the composer hands the result
 * to the op (lr_op_mods), and each backend only obeys it. It is how the suite measures
 * what it catches (docs/detection.md). */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"scale", "element", "noise", "theta", "rms_eps", "mask", "stale_kv",
                                         "swap_heads"};
#define NUM_KINDS ((int)(sizeof kind_names / sizeof kind_names[0]))
#define KINDS "scale, element, noise, theta, rms_eps, mask, stale_kv, swap_heads"

const char *lr_fault_kind_name(lr_fault_kind k) {
    return (unsigned)k < (unsigned)NUM_KINDS ? kind_names[k] : "unknown";
}

bool lr_fault_is_structural(lr_fault_kind k) { return k >= LR_FAULT_THETA && k <= LR_FAULT_SWAP_HEADS; }

/* EPS of the kinds that count something (a shift, positions, a head) is an integer. */
static bool is_integer(double x) { return x == floor(x) && fabs(x) < 1e9; }

int lr_fault_parse(const char *spec, lr_fault *out) {
    memset(out, 0, sizeof *out);
    const char *eq = spec ? strrchr(spec, '=') : NULL;
    if (!eq || eq == spec)
        return lr_fail(LR_E_INVAL, "fault \"%s\": not STAGE=KIND:EPS[:SEED] (kinds: " KINDS ")",
                       spec ? spec : "");
    size_t n = (size_t)(eq - spec);
    if (n >= sizeof out->stage) return lr_fail(LR_E_INVAL, "fault \"%s\": the stage name is too long", spec);
    memcpy(out->stage, spec, n);
    out->stage[n] = '\0';
    const char *kind = eq + 1, *colon = strchr(kind, ':');
    if (!colon) return lr_fail(LR_E_INVAL, "fault \"%s\": no :EPS after the kind", spec);
    int k = -1;
    for (int i = 0; i < NUM_KINDS; i++)
        if (strlen(kind_names[i]) == (size_t)(colon - kind) && strncmp(kind, kind_names[i], (size_t)(colon - kind)) == 0)
            k = i;
    if (k < 0)
        return lr_fail(LR_E_INVAL, "fault \"%s\": kind \"%.*s\" is none of " KINDS, spec,
                       (int)(colon - kind), kind);
    out->kind = (lr_fault_kind)k;
    char *end;
    errno = 0;
    out->eps = strtod(colon + 1, &end);
    if (end == colon + 1 || errno || !isfinite(out->eps) || (*end && *end != ':'))
        return lr_fail(LR_E_INVAL, "fault \"%s\": EPS \"%s\" is not a finite number", spec, colon + 1);
    if (out->kind == LR_FAULT_NOISE && out->eps < 0)
        return lr_fail(LR_E_INVAL, "fault \"%s\": noise of RMS %g (must be at least 0)", spec, out->eps);
    if ((out->kind == LR_FAULT_THETA || out->kind == LR_FAULT_RMS_EPS) && !(out->eps > -1))
        return lr_fail(LR_E_INVAL, "fault \"%s\": %s x (1 + %g) is not positive", spec,
                       out->kind == LR_FAULT_THETA ? "rope_theta" : "rms_norm_eps", out->eps);
    if (out->kind == LR_FAULT_MASK && out->eps != 1 && out->eps != -1)
        return lr_fail(LR_E_INVAL, "fault \"%s\": the mask's shift is 1 (a query also sees the next key) or -1 "
                                   "(not its own), not %g",
                       spec, out->eps);
    if (out->kind == LR_FAULT_STALE_KV && !(is_integer(out->eps) && out->eps >= 1))
        return lr_fail(LR_E_INVAL, "fault \"%s\": stale_kv takes the positions back an entry is copied from, an "
                                   "integer of at least 1, not %g",
                       spec, out->eps);
    if (out->kind == LR_FAULT_SWAP_HEADS && !(is_integer(out->eps) && out->eps >= 0))
        return lr_fail(LR_E_INVAL, "fault \"%s\": swap_heads takes a query head h (swapped with h + 1), an "
                                   "integer of at least 0, not %g",
                       spec, out->eps);
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
    if (!lr_fault_is_structural(f->kind)) return LR_OK;
    /* A structural fault names the stage of the op it changes: the norms for rms_eps;
     * attention's output (RoPE and attention are observed together there) for the rest. */
    bool layer = order > 0 && order != lr_stage_order(lr_model_stage_name(LR_MS_NORM));
    int64_t s = layer ? (order - 1) % LR_LAYER_STAGE_COUNT : -1;
    const char *kind = lr_fault_kind_name(f->kind);
    if (f->kind == LR_FAULT_RMS_EPS) {
        if (order == lr_stage_order(lr_model_stage_name(LR_MS_NORM)) || s == LR_LS_INPUT_LAYERNORM ||
            s == LR_LS_POST_ATTENTION_LAYERNORM)
            return LR_OK;
        return lr_fail(LR_E_INVAL, "fault at \"%s\": rms_eps changes an RMSNorm, and no norm computes that stage; "
                                   "inject at model.layers.N.input_layernorm, "
                                   "model.layers.N.post_attention_layernorm or model.norm",
                       f->stage);
    }
    if (s != LR_LS_O_PROJ_INPUT)
        return lr_fail(LR_E_INVAL, "fault at \"%s\": %s changes %s, whose output is observed at "
                                   "model.layers.N.self_attn.o_proj.input (RoPE and attention together); inject there",
                       f->stage, kind, f->kind == LR_FAULT_THETA ? "RoPE" : "attention");
    if (f->kind == LR_FAULT_SWAP_HEADS && f->eps + 1 >= (double)cfg->num_attention_heads)
        return lr_fail(LR_E_INVAL, "fault at \"%s\": swap_heads:%g swaps heads %g and %g, but the model has %lld "
                                   "query heads",
                       f->stage, f->eps, f->eps, f->eps + 1, (long long)cfg->num_attention_heads);
    return LR_OK;
}

double lr_fault_rms_eps(const lr_fault *f, double eps) {
    return f && f->kind == LR_FAULT_RMS_EPS ? eps * (1 + f->eps) : eps;
}

void lr_fault_inv_freq(const lr_fault *f, const lr_config *cfg, double *inv_freq) {
    lr_config c = *cfg;
    if (f && f->kind == LR_FAULT_THETA) c.rope_theta *= 1 + f->eps;
    lr_rope_inv_freq(&c, inv_freq);
}

int64_t lr_causal_keys(int64_t past, int64_t j, int64_t len, int shift) {
    int64_t n = past + j + 1 + shift;
    return n < 1 ? 1 : n > past + len ? past + len : n;
}

int64_t lr_stale_kv_source(int64_t past, int64_t j, int64_t back) {
    if (past <= 0 || back <= 0 || past + j - back < 0) return -1;
    return past + j - back;
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
    default: return 1; /* structural: no factor on the output */
    }
}

double lr_fault_apply(const lr_fault *f, double x, int64_t token, int64_t feature, int64_t width, lr_dtype storage) {
    double k = lr_fault_factor(f, token, feature, width);
    if (k == 1) return x;
    uint64_t h = mix(mix(mix(f->seed ^ 0x5bd1e9955bd1e995ull) ^ (uint64_t)token) ^ (uint64_t)feature);
    double dither = (double)(h >> 11) * 0x1p-53 - 0.5; /* in (-1/2, 1/2) */
    /* in the finer of the spacings on either side of x: at a power of two the spacing
     * below is half the one above, and half an ulp above would round down to the next
     * value, a flip no fault made */
    double u = fmin(lr_ulp(storage, x), lr_ulp(storage, x * (1 - 0x1p-30)));
    return (x + dither * u) * k;
}
